//! A small CNN built in the tests, and plain reference computations written from the papers'
//! formulas on `Vec<f64>`, independent of the crate's tensor code.

#![allow(dead_code)]

use std::cell::Cell;

use candle_core::{DType, Device, Tensor};
use gaze_engine::ops::{self, Conv2dConfig, Pool2dConfig};
use gaze_engine::{Error, Result, TapModel, Taps};
use rand::{Rng, SeedableRng};

/// conv1 (3→4, 3×3) · relu1 · pool1 (max 2×2) · conv2 (4→6, 3×3) · relu2 · gap · fc (6→5).
/// Every tap is a cut point unless `cuts` says otherwise.
pub struct TinyCnn {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    wf: Tensor,
    bf: Tensor,
    pub cuts: Vec<String>,
    /// Whether the head's first activation tracked the autograd graph in the last forward pass.
    pub head_tracked: Cell<Option<bool>>,
    /// How many images the model has run from its input (`forward_taps`).
    pub images_run: Cell<usize>,
    device: Device,
}

pub const LAYERS: [&str; 7] = ["conv1", "relu1", "pool1", "conv2", "relu2", "gap", "fc"];
pub const CLASSES: usize = 5;
pub const SIZE: usize = 16;

pub fn uniform(rng: &mut rand::rngs::StdRng, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).and_then(|t| t.to_dtype(dtype)).expect("a tensor from a vector")
}

impl TinyCnn {
    pub fn new(seed: u64, dtype: DType) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        TinyCnn {
            w1: uniform(&mut rng, &[4, 3, 3, 3], 0.5, dtype),
            b1: uniform(&mut rng, &[4], 0.2, dtype),
            w2: uniform(&mut rng, &[6, 4, 3, 3], 0.4, dtype),
            b2: uniform(&mut rng, &[6], 0.2, dtype),
            wf: uniform(&mut rng, &[CLASSES, 6], 1.0, dtype),
            bf: uniform(&mut rng, &[CLASSES], 0.1, dtype),
            cuts: LAYERS.iter().map(|s| s.to_string()).collect(),
            head_tracked: Cell::new(None),
            images_run: Cell::new(0),
            device: Device::Cpu,
        }
    }

    /// The model with conv1's output channel `k` pushed far below zero (its bias −1000), so that
    /// `relu1` and `pool1` are zero everywhere on that channel for inputs in [-1, 1].
    pub fn with_dead_channel(mut self, k: usize) -> Self {
        let mut b: Vec<f64> = flat(&self.b1);
        b[k] = -1000.0;
        let dtype = self.b1.dtype();
        self.b1 = Tensor::from_vec(b, 4, &Device::Cpu).and_then(|t| t.to_dtype(dtype)).expect("a bias");
        self
    }

    pub fn with_cuts(mut self, cuts: &[&str]) -> Self {
        self.cuts = cuts.iter().map(|s| s.to_string()).collect();
        self
    }

    fn run(&self, from: usize, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        let conv = Conv2dConfig { padding: (1, 1), ..Default::default() };
        for (i, name) in LAYERS.iter().enumerate().skip(from) {
            x = match i {
                0 => {
                    let y = ops::conv2d(&x, &self.w1, Some(&self.b1), conv)?;
                    self.head_tracked.set(Some(y.track_op()));
                    y
                }
                1 | 4 => taps.relu(&x)?,
                2 => ops::max_pool2d(&x, Pool2dConfig::new(2, 2))?,
                3 => ops::conv2d(&x, &self.w2, Some(&self.b2), conv)?,
                5 => ops::adaptive_avg_pool2d(&x, (1, 1))?.flatten_from(1)?,
                _ => ops::linear(&x, &self.wf, Some(&self.bf))?,
            };
            x = taps.tap(name, x)?;
        }
        Ok(x)
    }
}

impl TapModel for TinyCnn {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        self.images_run.set(self.images_run.get() + x.dim(0)?);
        self.run(0, x.clone(), taps)
    }

    fn layer_names(&self) -> Vec<String> {
        LAYERS.iter().map(|s| s.to_string()).collect()
    }

    fn num_classes(&self) -> usize {
        CLASSES
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, SIZE, SIZE]
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn cut_points(&self) -> Vec<String> {
        self.cuts.clone()
    }

    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let i = LAYERS
            .iter()
            .position(|n| *n == layer)
            .filter(|_| self.cuts.iter().any(|c| c == layer))
            .ok_or_else(|| Error::UnsupportedLayer { name: layer.into(), reason: "not a cut point".into() })?;
        let x = taps.tap(LAYERS[i], activation.clone())?;
        self.run(i + 1, x, taps)
    }
}

/// A batch of `n` random images `[n, 3, SIZE, SIZE]` in [-1, 1].
pub fn images(n: usize, seed: u64, dtype: DType) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    uniform(&mut rng, &[n, 3, SIZE, SIZE], 1.0, dtype)
}

/// A tensor's values as `f64`, flattened.
pub fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f64>()).expect("a tensor's values")
}

/// The largest absolute difference over the largest absolute reference value.
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// The activation `[C, h, w]` of image `n` at `layer`, as `f64`.
pub fn activation(model: &TinyCnn, input: &Tensor, layer: &str, n: usize) -> (Vec<f64>, Vec<usize>) {
    let mut taps = Taps::none().record(layer);
    model.forward_taps(&input.narrow(0, n, 1).expect("one image"), &mut taps).expect("forward");
    let a = taps.activation(layer).expect("recorded").clone();
    let dims = a.dims()[1..].to_vec();
    (flat(&a), dims)
}

/// The outputs a score selects: logits or softmax probabilities.
pub fn scored(logits: &[f64], probability: bool) -> Vec<f64> {
    if !probability {
        return logits.to_vec();
    }
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The tail's outputs for a batch of activations at `layer` (each `[C, h, w]` as f64).
pub fn tail(model: &TinyCnn, layer: &str, acts: &[Vec<f64>], dims: &[usize]) -> Vec<Vec<f64>> {
    let mut shape = vec![acts.len()];
    shape.extend_from_slice(dims);
    let data: Vec<f64> = acts.iter().flatten().copied().collect();
    let x = Tensor::from_vec(data, shape, &Device::Cpu).expect("activations");
    let out = model.forward_from(layer, &x, &mut Taps::none()).expect("tail forward");
    out.to_vec2::<f64>().expect("outputs")
}

/// The gradient of output `class` (logit or probability) with respect to the activation `a` at
/// `layer`, by central finite differences in f64 (the model must be f64).
pub fn fd_gradient(
    model: &TinyCnn,
    layer: &str,
    a: &[f64],
    dims: &[usize],
    class: usize,
    probability: bool,
) -> Vec<f64> {
    let h = 1e-6;
    let mut batch = Vec::with_capacity(2 * a.len());
    for i in 0..a.len() {
        for sign in [1.0, -1.0] {
            let mut p = a.to_vec();
            p[i] += sign * h;
            batch.push(p);
        }
    }
    let out = tail(model, layer, &batch, dims);
    (0..a.len())
        .map(|i| {
            let plus = scored(&out[2 * i], probability)[class];
            let minus = scored(&out[2 * i + 1], probability)[class];
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

/// `Σ_k w_k A_k` over channels, `a` laid out `[C, hw]`.
pub fn weighted_sum(a: &[f64], w: &[f64], hw: usize) -> Vec<f64> {
    let mut m = vec![0.0; hw];
    for (k, wk) in w.iter().enumerate() {
        for p in 0..hw {
            m[p] += wk * a[k * hw + p];
        }
    }
    m
}

pub fn relu(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| x.max(0.0)).collect()
}

/// The eigenvector of the largest eigenvalue of a symmetric matrix, by cyclic Jacobi rotations.
pub fn jacobi_top(mut a: Vec<f64>, n: usize) -> (f64, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-26 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let best = (0..n).max_by(|&i, &j| a[i * n + i].total_cmp(&a[j * n + j])).unwrap_or(0);
    (a[best * n + best], (0..n).map(|k| v[k * n + best]).collect())
}

/// pytorch-grad-cam's `get_2d_projection` of `a` `[C, hw]` with its sign correction (the map is
/// negated when |min| > |max|), computed from the Jacobi eigenvectors of XᵀX.
pub fn projection(a: &[f64], c: usize, hw: usize) -> Vec<f64> {
    let mut x = a.to_vec();
    for ch in x.chunks_mut(hw) {
        let m = ch.iter().sum::<f64>() / hw as f64;
        ch.iter_mut().for_each(|v| *v -= m);
    }
    let mut g = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..c {
            g[i * c + j] = (0..hw).map(|p| x[i * hw + p] * x[j * hw + p]).sum();
        }
    }
    let (_, v) = jacobi_top(g, c);
    let mut p = weighted_sum(&x, &v, hw);
    let lo = p.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.abs() > hi.abs() {
        p.iter_mut().for_each(|v| *v = -*v);
    }
    p
}

/// Bilinear resizing of an `[h, w]` map to `[oh, ow]`: aligned corners, or half-pixel centres
/// clamped at 0 (OpenCV's `INTER_LINEAR`, PyTorch's `align_corners=False`).
pub fn bilinear(m: &[f64], h: usize, w: usize, oh: usize, ow: usize, align: bool) -> Vec<f64> {
    let src = |d: usize, inn: usize, out: usize| -> f64 {
        if align {
            if out > 1 {
                d as f64 * (inn as f64 - 1.0) / (out as f64 - 1.0)
            } else {
                0.0
            }
        } else {
            ((d as f64 + 0.5) * inn as f64 / out as f64 - 0.5).max(0.0)
        }
    };
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        let sy = src(y, h, oh);
        let y0 = (sy.floor() as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let fy = sy - y0 as f64;
        for x in 0..ow {
            let sx = src(x, w, ow);
            let x0 = (sx.floor() as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            let fx = sx - x0 as f64;
            let top = m[y0 * w + x0] * (1.0 - fx) + m[y0 * w + x1] * fx;
            let bot = m[y1 * w + x0] * (1.0 - fx) + m[y1 * w + x1] * fx;
            out[y * ow + x] = top * (1.0 - fy) + bot * fy;
        }
    }
    out
}

/// pytorch-grad-cam's per-map min-max: `(m − min) / (1e-7 + max(m − min))`.
pub fn min_max(m: &[f64]) -> Vec<f64> {
    let lo = m.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = m.iter().map(|v| v - lo).fold(f64::NEG_INFINITY, f64::max);
    m.iter().map(|v| (v - lo) / (1e-7 + hi)).collect()
}
