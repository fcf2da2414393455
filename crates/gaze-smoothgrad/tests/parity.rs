//! Parity with the Python peers on the width-reduced VGG16 and ResNet-50 fixtures written by
//! `cargo xtask golden` (see `fixtures/README.md`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use gaze_core::Target;
use gaze_models::{Classifier, ModelKind};

const MODELS: [ModelKind; 3] = [ModelKind::Vgg16, ModelKind::ResNet50, ModelKind::Xception];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).unwrap()
}

fn model(kind: ModelKind) -> Box<dyn Classifier> {
    let path = fixtures().join(format!("models/{}.safetensors", kind.name()));
    gaze_models::load(kind, Some(&path), &Device::Cpu).unwrap()
}

/// One class per image, from the fixture's `targets`.
fn targets(fx: &HashMap<String, Tensor>) -> Target {
    let t = fx["targets"].to_vec1::<i64>().unwrap();
    Target::per_image(t.into_iter().map(|c| c as usize))
}

/// The relative max-abs error, with the fixture as the reference.
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    gaze_core::numeric::rel_max_abs_err(&a.to_dtype(DType::F32).unwrap(), b).unwrap()
}

use gaze_core::Explainer;
use gaze_saliency::Gradient;
use gaze_smoothgrad::{Aggregate, Noise, SmoothGrad};

#[test]
fn the_noise_tunnel_matches_captum_with_the_same_draws() {
    for kind in MODELS {
        let fx = tensors(&format!("peers/grad.{}.safetensors", kind.name()));
        let net = model(kind);
        let (x, target) = (&fx["input"], targets(&fx));
        for aggregate in Aggregate::ALL {
            let got = SmoothGrad::new(Gradient::saliency())
                .with_noise(Noise::Plan(fx["smoothgrad.noise"].clone()))
                .with_aggregate(aggregate)
                .with_batch(4)
                .explain(&*net, x, &target)
                .unwrap();
            let want = &fx[&format!("smoothgrad.{}.attr", aggregate.name())];
            let err = rel(&got.values.squeeze(1).unwrap(), want);
            assert!(err < 1e-4, "{} {aggregate}: {err}", kind.name());
        }
    }
}
