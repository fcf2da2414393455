//! # gaze-testkit
//!
//! Test support shared by the method crates (saliency, SmoothGrad, integrated and expected
//! gradients, RISE), used only as a dev-dependency: a small VGG-like model with seeded random
//! weights, a tap after every stage, every stage a cut point, and counters of how often the head
//! and the tail run; [`StopAfter`], a model that fails after a few passes, for tests that a huge
//! sample count is not allocated up front; [`rel`], the relative error the tests compare with; and
//! [`huge_png`], the oversized image of the bad-input tables of gaze-models and the command line.
//!
//! It owns nothing a user runs: no method, no model of the zoo, and it must never become a
//! dependency of a library crate.
//! Tests that need a different small model (the CAM and occlusion crates) keep their own.

use std::cell::Cell;

use candle_core::{DType, Device, Tensor};
use gaze_core::Result;
use gaze_engine::ops::{adaptive_avg_pool2d, conv2d, linear, max_pool2d, Conv2dConfig, Pool2dConfig};
use gaze_engine::{TapModel, Taps};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The non-linearity after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// `taps.relu`, so guided backprop and deconvnet change its backward rule.
    Relu,
    /// `tanh`, smooth, for integrals that converge fast.
    Tanh,
}

/// conv1 (3→4, 3×3) · relu1 · pool1 (max 2×2) · conv2 (4→6, 3×3) · relu2 · pool2 (adaptive
/// average to 2×2) · fc (24→5), every layer a tap and a cut point.
pub struct Net {
    conv1: (Tensor, Tensor),
    conv2: (Tensor, Tensor),
    fc: (Tensor, Tensor),
    act: Act,
    device: Device,
    /// Full forward passes (`forward_taps`), counted per call.
    pub head_runs: Cell<usize>,
    /// Tail-only passes (`forward_from`), counted per call.
    pub tail_runs: Cell<usize>,
    /// The largest batch either pass was given.
    pub largest_batch: Cell<usize>,
}

/// The layer (tap) names in forward order.
pub const LAYERS: [&str; 7] = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc"];
/// The input shape, `[C, H, W]`.
pub const INPUT: [usize; 3] = [3, 8, 8];
/// The number of outputs.
pub const CLASSES: usize = 5;

fn random(rng: &mut StdRng, shape: &[usize], scale: f64, dtype: DType, device: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| scale * (rng.random::<f64>() * 2.0 - 1.0)).collect();
    Tensor::from_vec(v, shape, device).unwrap().to_dtype(dtype).unwrap()
}

impl Net {
    /// Weights drawn uniformly with a variance-preserving scale from `seed`, in `dtype`.
    pub fn new(seed: u64, act: Act, dtype: DType) -> Self {
        let device = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut layer = |w: &[usize], fan_in: usize| {
            let s = (3.0 / fan_in as f64).sqrt();
            (random(&mut rng, w, s, dtype, &device), random(&mut rng, &w[..1], 0.1, dtype, &device))
        };
        let conv1 = layer(&[4, 3, 3, 3], 27);
        let conv2 = layer(&[6, 4, 3, 3], 36);
        let fc = layer(&[CLASSES, 24], 24);
        Net {
            conv1,
            conv2,
            fc,
            act,
            device,
            head_runs: Cell::new(0),
            tail_runs: Cell::new(0),
            largest_batch: Cell::new(0),
        }
    }

    /// A seeded random batch of `n` inputs, uniform in `[-1, 1]`.
    pub fn input(&self, n: usize, seed: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let [c, h, w] = INPUT;
        random(&mut rng, &[n, c, h, w], 1.0, self.conv1.0.dtype(), &self.device)
    }

    fn act(&self, x: &Tensor, taps: &Taps) -> Result<Tensor> {
        match self.act {
            Act::Relu => taps.relu(x),
            Act::Tanh => Ok(x.tanh()?),
        }
    }

    /// Runs the stages after the `from`-th (all of them for `None`).
    fn run(&self, from: Option<usize>, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        let start = from.map_or(0, |i| i + 1);
        for (i, name) in LAYERS.iter().enumerate().skip(start) {
            x = match i {
                0 => conv2d(&x, &self.conv1.0, Some(&self.conv1.1), Conv2dConfig::default().padding(1))?,
                1 | 4 => self.act(&x, taps)?,
                2 => max_pool2d(&x, Pool2dConfig::new(2, 2))?,
                3 => conv2d(&x, &self.conv2.0, Some(&self.conv2.1), Conv2dConfig::default().padding(1))?,
                5 => adaptive_avg_pool2d(&x, (2, 2))?,
                _ => linear(&x.flatten_from(1)?, &self.fc.0, Some(&self.fc.1))?,
            };
            x = taps.tap(name, x)?;
        }
        Ok(x)
    }
}

impl TapModel for Net {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        self.head_runs.set(self.head_runs.get() + 1);
        self.largest_batch.set(self.largest_batch.get().max(x.dim(0)?));
        self.run(None, x.clone(), taps)
    }

    fn layer_names(&self) -> Vec<String> {
        LAYERS.iter().map(|s| s.to_string()).collect()
    }

    fn num_classes(&self) -> usize {
        CLASSES
    }

    fn input_shape(&self) -> [usize; 3] {
        INPUT
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn cut_points(&self) -> Vec<String> {
        self.layer_names()
    }

    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        self.tail_runs.set(self.tail_runs.get() + 1);
        self.largest_batch.set(self.largest_batch.get().max(activation.dim(0)?));
        let i = LAYERS
            .iter()
            .position(|l| *l == layer)
            .ok_or_else(|| gaze_core::Error::UnknownLayer { name: layer.into(), valid: self.layer_names() })?;
        let x = taps.tap(LAYERS[i], activation.clone())?;
        self.run(Some(i), x, taps)
    }
}

/// A model seen without its cut points: every pass starts at the input, so a method takes the
/// path it takes where a layer is not a cut point (inside a residual block).
pub struct NoCuts<'a, M: ?Sized>(pub &'a M);

impl<M: TapModel + ?Sized> TapModel for NoCuts<'_, M> {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        self.0.forward_taps(x, taps)
    }

    fn layer_names(&self) -> Vec<String> {
        self.0.layer_names()
    }

    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }

    fn input_shape(&self) -> [usize; 3] {
        self.0.input_shape()
    }

    fn device(&self) -> &Device {
        self.0.device()
    }
}

/// A model that refuses every full forward pass after its first `passes` (with the error
/// `stopped`): a test of a huge sample count runs into it at once unless the method allocates
/// something for every sample first.
pub struct StopAfter<'a, M: ?Sized> {
    model: &'a M,
    left: Cell<usize>,
}

impl<'a, M: ?Sized> StopAfter<'a, M> {
    pub fn new(model: &'a M, passes: usize) -> Self {
        StopAfter { model, left: Cell::new(passes) }
    }

    /// The passes still allowed.
    pub fn left(&self) -> usize {
        self.left.get()
    }
}

impl<M: TapModel + ?Sized> TapModel for StopAfter<'_, M> {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let left = self.left.get();
        if left == 0 {
            return Err(gaze_core::Error::msg("stopped"));
        }
        self.left.set(left - 1);
        self.model.forward_taps(x, taps)
    }

    fn layer_names(&self) -> Vec<String> {
        self.model.layer_names()
    }

    fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    fn input_shape(&self) -> [usize; 3] {
        self.model.input_shape()
    }

    fn device(&self) -> &Device {
        self.model.device()
    }
}

/// The largest absolute difference between two tensors, over the largest absolute value of `b`.
pub fn rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// A valid PNG whose header claims 100000×100000 RGB pixels, with a few bytes of image data: a
/// decoder without limits would try to allocate 30 GB for it.
pub fn huge_png() -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A stored (uncompressed) zlib stream of a few zero bytes.
    chunk(&mut png, b"IDAT", &[0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    png
}
