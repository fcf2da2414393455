//! Gradients flow through every model, depthwise convolutions and batch norms included: the input
//! gradient of one logit, in f64, against central finite differences at a few input positions.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use common::{io, weights};
use gaze_models::{Checkpoint, Classifier, ModelKind};

/// A width-reduced model in f64.
fn model_f64(name: &str) -> Box<dyn Classifier> {
    let kind: ModelKind = name.parse().unwrap();
    let ckpt = Checkpoint::open(&weights(name), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    gaze_models::load_checkpoint(kind, &ckpt, &Device::Cpu).unwrap()
}

/// Logit `class` of the only image of `x`.
fn logit(model: &dyn Classifier, x: &Tensor, class: usize) -> f64 {
    model.forward(x).unwrap().i((0, class)).unwrap().to_scalar::<f64>().unwrap()
}

/// A small deterministic generator of positions (a linear congruential sequence).
struct Positions(u64);

impl Positions {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

fn finite_differences_match(name: &str, class: usize, seed: u64) {
    let model = model_f64(name);
    let input = io(name)["input"].narrow(0, 0, 1).unwrap().to_dtype(DType::F64).unwrap();
    let x = Var::from_tensor(&input).unwrap();
    let out = model.forward(x.as_tensor()).unwrap().i((0, class)).unwrap();
    let grad = out.backward().unwrap().get(x.as_tensor()).expect("a gradient reaches the input").clone();
    let grad = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let scale = grad.iter().fold(0f64, |m, g| m.max(g.abs()));
    assert!(scale > 0.0, "{name}: the input gradient is zero everywhere");

    let dims = input.dims().to_vec();
    let flat = input.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let h = 1e-6;
    let mut positions = Positions(seed);
    let mut informative = 0;
    for _ in 0..5 {
        let i = positions.next(flat.len());
        let shifted = |d: f64| {
            let mut v = flat.clone();
            v[i] += d;
            Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).unwrap()
        };
        let fd = (logit(model.as_ref(), &shifted(h), class) - logit(model.as_ref(), &shifted(-h), class)) / (2.0 * h);
        let err = (fd - grad[i]).abs();
        assert!(
            err <= 1e-6 * scale + 1e-9,
            "{name}: at input position {i} the gradient is {} but finite differences give {fd} (scale {scale})",
            grad[i]
        );
        informative += usize::from(grad[i].abs() > 1e-3 * scale);
    }
    assert!(informative >= 3, "{name}: too few positions with a non-negligible gradient to check");
}

#[test]
fn vgg16_gradient_matches_finite_differences() {
    finite_differences_match("vgg16", 1, 11);
}

#[test]
fn resnet50_gradient_matches_finite_differences() {
    finite_differences_match("resnet50", 4, 12);
}

#[test]
fn xception_gradient_matches_finite_differences() {
    finite_differences_match("xception", 7, 13);
}
