//! Deletion and insertion: how fast does a target's score fall when the pixels a map ranks highest
//! are removed first, and how fast does it rise when they are put back first?

use candle_core::{DType, Tensor};
use gaze_core::{numeric::ensure_finite, Error, Result, Score};
use gaze_engine::scored_outputs;

use crate::maps::{HostMaps, MapScores};

/// Which curve to trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CausalMode {
    /// Start from the image and replace its pixels by the substrate, most important first; a
    /// faithful map gives a low area under the curve.
    Deletion,
    /// Start from the substrate and put the image's pixels back, most important first; a faithful
    /// map gives a high area under the curve.
    Insertion,
}

impl CausalMode {
    pub fn name(self) -> &'static str {
        match self {
            CausalMode::Deletion => "deletion",
            CausalMode::Insertion => "insertion",
        }
    }
}

/// What removed pixels become (deletion) or what the image starts from (insertion), in the model's
/// input space.
#[derive(Clone, Debug)]
pub enum Substrate {
    /// Zeros: RISE's deletion substrate (the mean of the data for zero-centred inputs).
    Zeros,
    /// One value for every channel.
    Constant(f32),
    /// The image blurred by a Gaussian of `sigma` pixels on a `size`×`size` kernel with zero
    /// padding: RISE's insertion substrate (`size` 11, `sigma` 5). `size` is odd and at most
    /// [`Substrate::MAX_BLUR_SIZE`].
    Blur { size: usize, sigma: f32 },
    /// A given tensor: `[N, C, H, W]` like the inputs, or `[C, H, W]` for every image.
    Given(Tensor),
}

impl Substrate {
    /// The largest kernel side of [`Substrate::Blur`]: 8001 taps, the `8σ + 1` of the largest blur
    /// sigma (1000 pixels) that baselines and fills accept.
    pub const MAX_BLUR_SIZE: usize = 8 * gaze_core::numeric::MAX_BLUR_SIGMA as usize + 1;

    /// The substrate of every image, `[N, C, H, W]`.
    fn build(&self, inputs: &Tensor) -> Result<Tensor> {
        match self {
            Substrate::Zeros => Ok(inputs.zeros_like()?),
            Substrate::Constant(v) => {
                if !v.is_finite() {
                    return Err(Error::InvalidOption {
                        option: "substrate".into(),
                        value: v.to_string(),
                        expected: "a finite value".into(),
                    });
                }
                Ok((inputs.zeros_like()? + *v as f64)?)
            }
            Substrate::Blur { size, sigma } => blur(inputs, *size, *sigma),
            Substrate::Given(t) => {
                let t = t.to_dtype(DType::F32)?.to_device(inputs.device())?;
                let t = if t.rank() == 3 { t.unsqueeze(0)? } else { t };
                let (n, c, h, w) = inputs.dims4()?;
                match *t.dims() {
                    [1, tc, th, tw] if (tc, th, tw) == (c, h, w) => Ok(t.broadcast_as((n, c, h, w))?.contiguous()?),
                    [tn, tc, th, tw] if (tn, tc, th, tw) == (n, c, h, w) => Ok(t),
                    _ => Err(Error::Shape {
                        what: "substrate".into(),
                        expected: format!("[{n}, {c}, {h}, {w}] or [{c}, {h}, {w}] like the inputs"),
                        got: t.dims().to_vec(),
                    }),
                }
            }
        }
    }
}

/// A Gaussian blur of `[N, C, H, W]` with zero padding, as RISE's `conv2d(x, gkern, padding=k//2)`.
fn blur(inputs: &Tensor, size: usize, sigma: f32) -> Result<Tensor> {
    if size & 1 == 0 || size > Substrate::MAX_BLUR_SIZE || !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::InvalidOption {
            option: "blur substrate".into(),
            value: format!("size {size}, sigma {sigma}"),
            expected: format!("an odd kernel size of at most {} and a positive finite sigma", Substrate::MAX_BLUR_SIZE),
        });
    }
    let (n, c, h, w) = inputs.dims4()?;
    let r = (size / 2) as isize;
    let mut kernel: Vec<f32> = (-r..=r).map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let data = inputs.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; data.len()];
    let mut tmp = vec![0f32; h * w];
    for (plane, dst) in data.chunks(h * w).zip(out.chunks_mut(h * w)) {
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, &kv) in kernel.iter().enumerate() {
                    let xx = x as isize + k as isize - r;
                    if xx >= 0 && xx < w as isize {
                        acc += kv * plane[y * w + xx as usize];
                    }
                }
                tmp[y * w + x] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, &kv) in kernel.iter().enumerate() {
                    let yy = y as isize + k as isize - r;
                    if yy >= 0 && yy < h as isize {
                        acc += kv * tmp[yy as usize * w + x];
                    }
                }
                dst[y * w + x] = acc;
            }
        }
    }
    Ok(Tensor::from_vec(out, (n, c, h, w), inputs.device())?)
}

/// Deletion or insertion as in Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of
/// Black-box Models" (BMVC 2018, <https://arxiv.org/abs/1806.07421>).
///
/// The pixels of each image are ranked by its map, highest first (ties by position, row-major).
/// At step `k` of `steps`, the first `round(k · H · W / steps)` pixels (every channel) come from the
/// end point: the substrate for deletion, the image for insertion; the others from the start point.
/// The curve is the target's score at each of the `steps + 1` points, and the metric is its area by
/// the trapezoidal rule over the removed fraction in `[0, 1]`.
/// All perturbed images of all maps go through the model in batches of `batch`.
#[derive(Clone, Debug)]
pub struct CausalMetric {
    pub mode: CausalMode,
    /// The number of steps, in `1..=`[`CausalMetric::MAX_STEPS`].
    pub steps: usize,
    pub substrate: Substrate,
    /// The score traced (RISE uses the softmax probability).
    pub score: Score,
    /// The most perturbed images per forward pass.
    pub batch: usize,
}

/// The curves and their areas, for every image and target.
#[derive(Clone, Debug)]
pub struct CausalCurves {
    pub mode: CausalMode,
    /// The fraction of pixels taken from the end point at each step, `steps + 1` values.
    pub fractions: Vec<f32>,
    /// The scores `[N, T, steps + 1]`, row-major.
    pub curves: Vec<f32>,
    /// The area under each curve.
    pub auc: MapScores,
}

impl CausalCurves {
    /// The curve of image `n`'s `t`-th map.
    pub fn curve(&self, n: usize, t: usize) -> Option<&[f32]> {
        let len = self.fractions.len();
        let start = (n * self.auc.targets + t) * len;
        (n < self.auc.images && t < self.auc.targets).then(|| &self.curves[start..start + len])
    }

    /// The mean curve over every map.
    pub fn mean_curve(&self) -> Vec<f32> {
        let len = self.fractions.len();
        let count = (self.curves.len() / len.max(1)).max(1) as f64;
        (0..len)
            .map(|k| (self.curves.iter().skip(k).step_by(len).map(|&v| v as f64).sum::<f64>() / count) as f32)
            .collect()
    }
}

/// The trapezoidal area under `curve`, sampled at equal steps over `[0, 1]`.
pub fn trapezoid_auc(curve: &[f32]) -> f32 {
    match curve.len() {
        0 => 0.0,
        1 => curve[0],
        len => {
            let sum: f64 = curve.iter().map(|&v| v as f64).sum();
            ((sum - (curve[0] as f64 + curve[len - 1] as f64) / 2.0) / (len - 1) as f64) as f32
        }
    }
}

impl CausalMetric {
    /// The most steps a curve takes: 65536, each one forward row per map.
    pub const MAX_STEPS: usize = 1 << 16;

    /// RISE's deletion: zeros as the substrate, the probability, 32 steps.
    pub fn deletion() -> Self {
        CausalMetric {
            mode: CausalMode::Deletion,
            steps: 32,
            substrate: Substrate::Zeros,
            score: Score::Probability,
            batch: 64,
        }
    }

    /// RISE's insertion: from the blurred image (11×11 kernel, sigma 5), the probability, 32 steps.
    pub fn insertion() -> Self {
        CausalMetric {
            mode: CausalMode::Insertion,
            steps: 32,
            substrate: Substrate::Blur { size: 11, sigma: 5.0 },
            score: Score::Probability,
            batch: 64,
        }
    }

    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    pub fn with_substrate(mut self, substrate: Substrate) -> Self {
        self.substrate = substrate;
        self
    }

    pub fn with_score(mut self, score: Score) -> Self {
        self.score = score;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Traces the curves of `maps` (`[N, H, W]` or `[N, T, H, W]`, at the inputs' resolution) for
    /// `inputs` `[N, C, H, W]` and the classes `targets` `[N][T]`, with `model` mapping a batch of
    /// inputs to logits `[B, K]`.
    pub fn run<F>(&self, mut model: F, inputs: &Tensor, maps: &Tensor, targets: &[Vec<usize>]) -> Result<CausalCurves>
    where
        F: FnMut(&Tensor) -> Result<Tensor>,
    {
        if self.steps == 0 || self.batch == 0 {
            return Err(Error::InvalidOption {
                option: format!("{} steps and batch", self.mode.name()),
                value: format!("{} steps, batch {}", self.steps, self.batch),
                expected: "at least 1 of each".into(),
            });
        }
        if self.steps > Self::MAX_STEPS {
            return Err(Error::InvalidOption {
                option: format!("{} steps", self.mode.name()),
                value: self.steps.to_string(),
                expected: format!("a step count in 1..={}", Self::MAX_STEPS),
            });
        }
        let maps = HostMaps::read(maps, "maps")?;
        let (n, c, h, w) = inputs.dims4().map_err(|_| Error::Shape {
            what: "inputs".into(),
            expected: "[N, C, H, W]".into(),
            got: inputs.dims().to_vec(),
        })?;
        if (maps.n, maps.h, maps.w) != (n, h, w) {
            return Err(Error::Shape {
                what: "maps".into(),
                expected: format!("[{n}, T, {h}, {w}] at the inputs' resolution (see `pixel_maps` to resize)"),
                got: vec![maps.n, maps.t, maps.h, maps.w],
            });
        }
        if targets.len() != n || targets.iter().any(|t| t.len() != maps.t) {
            return Err(Error::Shape {
                what: "targets".into(),
                expected: format!("{n} lists of {} classes, one per map", maps.t),
                got: targets.iter().map(Vec::len).collect(),
            });
        }
        if !inputs.dtype().is_float() {
            return Err(Error::InvalidOption {
                option: format!("{} inputs dtype", self.mode.name()),
                value: format!("{:?}", inputs.dtype()),
                expected: "a floating-point dtype (F32, F64, F16 or BF16)".into(),
            });
        }
        ensure_finite(inputs, "inputs")?;
        let image = inputs.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let substrate = self.substrate.build(inputs)?.flatten_all()?.to_vec1::<f32>()?;
        let (start, end) = match self.mode {
            CausalMode::Deletion => (&image, &substrate),
            CausalMode::Insertion => (&substrate, &image),
        };

        let plane = h * w;
        let points = self.steps + 1;
        let count = |k: usize| (k * plane + self.steps / 2) / self.steps;
        let orders: Vec<Vec<usize>> = (0..n * maps.t)
            .map(|i| {
                let map = maps.map(i / maps.t, i % maps.t);
                let mut order: Vec<usize> = (0..plane).collect();
                order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
                order
            })
            .collect();

        // Every (map, step) pair is one forward row; rows go through the model in batches.
        let total = n.checked_mul(maps.t).and_then(|v| v.checked_mul(points)).ok_or_else(|| Error::Shape {
            what: "maps".into(),
            expected: format!("fewer maps for {points} points each"),
            got: vec![maps.n, maps.t, maps.h, maps.w],
        })?;
        let mut curves = Vec::with_capacity(total);
        let item = c * plane;
        let mut row = 0;
        while row < total {
            let len = self.batch.min(total - row);
            let mut data = Vec::with_capacity(len * item);
            let mut classes = Vec::with_capacity(len);
            for r in row..row + len {
                let (map_index, k) = (r / points, r % points);
                let img = map_index / maps.t;
                let base = img * item;
                let offset = data.len();
                data.extend_from_slice(&start[base..base + item]);
                for &p in &orders[map_index][..count(k)] {
                    for ch in 0..c {
                        data[offset + ch * plane + p] = end[base + ch * plane + p];
                    }
                }
                classes.push(targets[img][map_index % maps.t]);
            }
            let batch = Tensor::from_vec(data, (len, c, h, w), inputs.device())?;
            let logits = model(&batch)?;
            let outputs = scored_outputs(&logits, &self.score)?;
            let (rows, k) = outputs.dims2().map_err(|_| Error::Shape {
                what: "model outputs".into(),
                expected: format!("[{len}, classes]"),
                got: outputs.dims().to_vec(),
            })?;
            if rows != len {
                return Err(Error::Shape {
                    what: "model outputs".into(),
                    expected: format!("[{len}, classes]"),
                    got: outputs.dims().to_vec(),
                });
            }
            let outputs = outputs.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (out, &class) in outputs.iter().zip(&classes) {
                if class >= k {
                    return Err(Error::ClassOutOfRange { class, num_classes: k });
                }
                curves.push(out[class]);
            }
            row += len;
        }
        let auc = curves.chunks(points).map(trapezoid_auc).collect();
        Ok(CausalCurves {
            mode: self.mode,
            fractions: (0..points).map(|k| count(k) as f32 / plane as f32).collect(),
            curves,
            auc: MapScores { images: n, targets: maps.t, values: auc },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn trapezoid_matches_rise_auc() {
        // RISE: (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1)
        assert_eq!(trapezoid_auc(&[1.0, 0.5, 0.0]), 0.5);
        assert_eq!(trapezoid_auc(&[1.0, 1.0, 0.0, 0.0]), 0.5);
        assert_eq!(trapezoid_auc(&[0.25]), 0.25);
    }

    #[test]
    fn blur_keeps_a_constant_interior_and_darkens_the_border() {
        let x = Tensor::ones((1, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
        let b = blur(&x, 5, 1.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((b[8 * 16 + 8] - 1.0).abs() < 1e-5);
        assert!(b[0] < 0.7);
        assert!(blur(&x, 4, 1.0).unwrap_err().to_string().contains("odd kernel size"));
        let err = blur(&x, usize::MAX, 1.0).unwrap_err().to_string();
        assert!(err.contains("at most 8001"), "{err}");
        assert_eq!(blur(&x, Substrate::MAX_BLUR_SIZE, 1.0).unwrap().dims(), &[1, 1, 16, 16]);
    }

    fn never_called(_: &Tensor) -> Result<Tensor> {
        panic!("the model must not run on refused options")
    }

    #[test]
    fn absurd_steps_and_integer_inputs_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::ones((1, 3, 4, 4), DType::F32, &dev).unwrap();
        let maps = Tensor::ones((1, 4, 4), DType::F32, &dev).unwrap();
        let err = CausalMetric::deletion().with_steps(usize::MAX).run(never_called, &x, &maps, &[vec![0]]);
        let err = err.unwrap_err().to_string();
        assert!(err.contains("deletion steps") && err.contains("1..=65536"), "{err}");
        let ints = Tensor::ones((1, 3, 4, 4), DType::I64, &dev).unwrap();
        let err = CausalMetric::deletion().run(never_called, &ints, &maps, &[vec![0]]).unwrap_err().to_string();
        assert!(err.contains("`I64` for deletion inputs dtype") && err.contains("floating-point"), "{err}");
    }

    #[test]
    fn given_substrates_must_fit_the_inputs() {
        let x = Tensor::ones((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let s = Substrate::Given(Tensor::zeros((3, 4, 4), DType::F32, &Device::Cpu).unwrap());
        assert_eq!(s.build(&x).unwrap().dims(), &[2, 3, 4, 4]);
        let s = Substrate::Given(Tensor::zeros((3, 4, 5), DType::F32, &Device::Cpu).unwrap());
        assert!(s.build(&x).unwrap_err().to_string().contains("[2, 3, 4, 4] or [3, 4, 4]"));
    }
}
