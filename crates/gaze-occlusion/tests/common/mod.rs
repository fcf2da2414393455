//! Small models for the tests: a VGG-like chain and a branchy network with strided, dilated and
//! residual stages, each with its own forward pass and its incremental description.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use gaze_core::Result;
use gaze_engine::ops::{self, Conv2dConfig, Pool2dConfig, ReluMode};
use gaze_engine::{TapModel, Taps};
use gaze_occlusion::incremental::{Geometry, Incremental, Stage};

/// A deterministic generator of weights in [-1, 1).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    pub fn tensor(&mut self, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| self.next() * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
    }
}

pub struct Conv {
    pub w: Tensor,
    pub b: Tensor,
}

impl Conv {
    pub fn new(rng: &mut Lcg, cin: usize, cout: usize, k: usize, dtype: DType) -> Self {
        let scale = 1.5 / ((cin * k * k) as f64).sqrt();
        Conv { w: rng.tensor(&[cout, cin, k, k], scale, dtype), b: rng.tensor(&[cout], 0.1, dtype) }
    }

    pub fn run(&self, x: &Tensor, stride: usize, padding: usize, dilation: usize) -> Result<Tensor> {
        ops::conv2d(
            x,
            &self.w,
            Some(&self.b),
            Conv2dConfig {
                stride: (stride, stride),
                padding: (padding, padding),
                dilation: (dilation, dilation),
                groups: 1,
            },
        )
    }
}

pub struct Head {
    pub w: Tensor,
    pub b: Tensor,
}

impl Head {
    pub fn new(rng: &mut Lcg, channels: usize, classes: usize, dtype: DType) -> Self {
        let fan_in = channels * 4;
        Head {
            w: rng.tensor(&[classes, fan_in], 2.0 / (fan_in as f64).sqrt(), dtype),
            b: rng.tensor(&[classes], 0.1, dtype),
        }
    }

    /// Adaptive average pooling to 2×2, flatten, linear: position-sensitive at any input size.
    pub fn run(&self, x: &Tensor) -> Result<Tensor> {
        let x = ops::adaptive_avg_pool2d(x, (2, 2))?.flatten_from(1)?;
        ops::linear(&x, &self.w, Some(&self.b))
    }
}

fn relu(x: &Tensor) -> Result<Tensor> {
    ops::relu(x, ReluMode::Normal)
}

/// conv 3→4 (3×3), ReLU, conv 4→4, ReLU, max pool 2, conv 4→6 with ReLU, max pool 2, head.
/// The ReLUs after the first two convolutions are stages of their own (pointwise), the third is
/// folded into its convolution's stage.
pub struct Vgg {
    pub convs: Vec<Conv>,
    pub head: Head,
    pub device: Device,
}

impl Vgg {
    pub fn new(seed: u64, dtype: DType) -> Self {
        let mut rng = Lcg(seed);
        let convs = vec![
            Conv::new(&mut rng, 3, 4, 3, dtype),
            Conv::new(&mut rng, 4, 4, 3, dtype),
            Conv::new(&mut rng, 4, 6, 3, dtype),
        ];
        let head = Head::new(&mut rng, 6, 5, dtype);
        Vgg { convs, head, device: Device::Cpu }
    }
}

impl TapModel for Vgg {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let x = taps.tap("conv1", self.convs[0].run(x, 1, 1, 1)?)?;
        let x = taps.tap("relu1", taps.relu(&x)?)?;
        let x = taps.tap("conv2", self.convs[1].run(&x, 1, 1, 1)?)?;
        let x = taps.tap("relu2", taps.relu(&x)?)?;
        let x = taps.tap("pool1", ops::max_pool2d(&x, Pool2dConfig::new(2, 2))?)?;
        let x = self.convs[2].run(&x, 1, 1, 1)?;
        let x = taps.tap("conv3", taps.relu(&x)?)?;
        let x = taps.tap("pool2", ops::max_pool2d(&x, Pool2dConfig::new(2, 2))?)?;
        self.head.run(&x)
    }

    fn layer_names(&self) -> Vec<String> {
        ["conv1", "relu1", "conv2", "relu2", "pool1", "conv3", "pool2"].map(String::from).to_vec()
    }

    fn num_classes(&self) -> usize {
        5
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 20, 24]
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

impl Incremental for Vgg {
    fn stages(&self) -> Vec<Stage> {
        let conv = Geometry::square(3, 1, 1);
        let pool = Geometry::square(2, 2, 0);
        vec![
            Stage::conv("conv1", conv),
            Stage::pointwise("relu1"),
            Stage::conv("conv2", conv),
            Stage::pointwise("relu2"),
            Stage::max_pool("pool1", pool),
            Stage::conv("conv3", conv),
            Stage::max_pool("pool2", pool),
        ]
    }

    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> Result<Tensor> {
        let x = &inputs[0];
        match index {
            0 => self.convs[0].run(x, 1, 0, 1),
            2 => self.convs[1].run(x, 1, 0, 1),
            5 => relu(&self.convs[2].run(x, 1, 0, 1)?),
            1 | 3 => relu(x),
            _ => ops::max_pool2d(x, Pool2dConfig::new(2, 2)),
        }
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.head.run(features)
    }
}

/// A network with a strided convolution, a dilated one, a padded max pool, a strided 1×1 shortcut
/// and a residual sum:
/// node 1 = ReLU(conv 3×3 stride 2 pad 1 (input)); node 2 = ReLU(conv 3×3 dilation 2 pad 2 (node 1));
/// node 3 = max pool 3×3 stride 2 pad 1 (node 2); node 4 = conv 1×1 stride 2 (node 1);
/// node 5 = ReLU(node 3 + node 4); node 6 = conv 3×3 pad 1 (node 5); head.
pub struct Branchy {
    pub convs: Vec<Conv>,
    pub head: Head,
    pub device: Device,
}

impl Branchy {
    pub fn new(seed: u64, dtype: DType) -> Self {
        let mut rng = Lcg(seed);
        let convs = vec![
            Conv::new(&mut rng, 3, 4, 3, dtype),
            Conv::new(&mut rng, 4, 4, 3, dtype),
            Conv::new(&mut rng, 4, 4, 1, dtype),
            Conv::new(&mut rng, 4, 5, 3, dtype),
        ];
        let head = Head::new(&mut rng, 5, 4, dtype);
        Branchy { convs, head, device: Device::Cpu }
    }
}

impl TapModel for Branchy {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let a = taps.tap("stem", relu(&self.convs[0].run(x, 2, 1, 1)?)?)?;
        let b = taps.tap("dilated", relu(&self.convs[1].run(&a, 1, 2, 2)?)?)?;
        let p = ops::max_pool2d(&b, Pool2dConfig::new(3, 2).padding(1))?;
        let s = self.convs[2].run(&a, 2, 0, 1)?;
        let r = taps.tap("sum", relu(&(p + s)?)?)?;
        let c = self.convs[3].run(&r, 1, 1, 1)?;
        self.head.run(&c)
    }

    fn layer_names(&self) -> Vec<String> {
        ["stem", "dilated", "sum"].map(String::from).to_vec()
    }

    fn num_classes(&self) -> usize {
        4
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 15, 13]
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

impl Incremental for Branchy {
    fn stages(&self) -> Vec<Stage> {
        vec![
            Stage::conv("stem", Geometry::square(3, 2, 1)),
            Stage::conv("dilated", Geometry::square(3, 1, 2).dilated((2, 2))),
            Stage::max_pool("pool", Geometry::square(3, 2, 1)),
            Stage::conv("shortcut", Geometry::square(1, 2, 0)).reading([1]),
            Stage::pointwise("sum").reading([3, 4]),
            Stage::conv("conv", Geometry::square(3, 1, 1)),
        ]
    }

    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> Result<Tensor> {
        let x = &inputs[0];
        match index {
            0 => relu(&self.convs[0].run(x, 2, 0, 1)?),
            1 => relu(&self.convs[1].run(x, 1, 0, 2)?),
            2 => ops::max_pool2d(x, Pool2dConfig::new(3, 2)),
            3 => self.convs[2].run(x, 2, 0, 1),
            4 => relu(&(x + &inputs[1])?),
            _ => self.convs[3].run(x, 1, 0, 1),
        }
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.head.run(features)
    }
}

/// Captum's `Occlusion` written out from its definition, with masks:
/// windows at `k · stride` for `k < ceil((D − w) / s) + 1` along each axis, cut at the edge;
/// attribution = Σ (score(x) − score(x·(1 − m) + b·m)) · m / Σ m.
/// Returns `[N, T, C, H, W]` as f64.
pub fn naive_captum<M: TapModel>(
    model: &M,
    x: &Tensor,
    baseline: &Tensor,
    classes: &[Vec<usize>],
    window: [usize; 3],
    stride: [usize; 3],
    probability: bool,
) -> Vec<f64> {
    let (n, c, h, w) = x.dims4().unwrap();
    let dims = [c, h, w];
    let counts: Vec<usize> =
        (0..3).map(|a| ((dims[a] - window[a]) as f64 / stride[a] as f64).ceil() as usize + 1).collect();
    let score = |t: &Tensor| -> Vec<f64> {
        let logits = model.forward(&t.unsqueeze(0).unwrap()).unwrap();
        let out = if probability { ops::softmax_last_dim(&logits).unwrap() } else { logits };
        out.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
    };
    let mut result = Vec::new();
    assert_eq!(classes.len(), n);
    for (i, image_classes) in classes.iter().enumerate() {
        let xi = x.get(i).unwrap();
        let bi = baseline.get(i).unwrap();
        let base = score(&xi);
        let t_count = image_classes.len();
        let mut total = vec![0f64; t_count * c * h * w];
        let mut weight = vec![0f64; c * h * w];
        for kc in 0..counts[0] {
            for kh in 0..counts[1] {
                for kw in 0..counts[2] {
                    let start = [kc * stride[0], kh * stride[1], kw * stride[2]];
                    let mut mask = vec![0f64; c * h * w];
                    for ci in 0..c {
                        for hi in 0..h {
                            for wi in 0..w {
                                let inside = [ci, hi, wi]
                                    .iter()
                                    .enumerate()
                                    .all(|(a, &p)| p >= start[a] && p < start[a] + window[a]);
                                if inside {
                                    mask[(ci * h + hi) * w + wi] = 1.0;
                                }
                            }
                        }
                    }
                    let m =
                        Tensor::from_vec(mask.clone(), (c, h, w), &Device::Cpu).unwrap().to_dtype(x.dtype()).unwrap();
                    let occluded = ((&xi * (1.0 - &m).unwrap()).unwrap() + (&bi * &m).unwrap()).unwrap();
                    let s = score(&occluded);
                    for (t, &class) in image_classes.iter().enumerate() {
                        let diff = base[class] - s[class];
                        for (j, mv) in mask.iter().enumerate() {
                            total[t * c * h * w + j] += diff * mv;
                        }
                    }
                    for (j, mv) in mask.iter().enumerate() {
                        weight[j] += mv;
                    }
                }
            }
        }
        for t in 0..t_count {
            for j in 0..c * h * w {
                result.push(total[t * c * h * w + j] / weight[j]);
            }
        }
    }
    result
}

/// The largest absolute difference divided by the largest absolute reference value.
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Images `[n, 3, h, w]` with values in [0, 1).
pub fn images(seed: u64, n: usize, h: usize, w: usize, dtype: DType) -> Tensor {
    let mut rng = Lcg(seed);
    (rng.tensor(&[n, 3, h, w], 0.5, dtype) + 0.5).unwrap()
}
