//! Parity with the Python peers on the width-reduced VGG16, ResNet-50 and Xception fixtures written
//! by `cargo xtask golden` (see `fixtures/README.md`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use gaze_core::Target;
use gaze_models::{Classifier, ModelKind};

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

const MODELS: [ModelKind; 3] = [ModelKind::Vgg16, ModelKind::ResNet50, ModelKind::Xception];

use gaze_core::Explainer;
use gaze_saliency::{Gradient, GradientKind, GuidedGradCam};

/// The layer each fixture's guided Grad-CAM explains.
fn deep_layer(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Vgg16 => "features.29",
        ModelKind::ResNet50 => "layer4",
        _ => "act4",
    }
}

/// Every gradient map and guided Grad-CAM against the fixture's `.attr`: Captum's result on VGG16
/// and ResNet-50, where the generator checked that it equals the method's definition, and the
/// definition on Xception, where Captum's ReLU hooks differ from it (next test).
#[test]
fn gradient_maps_match_captum() {
    for kind in MODELS {
        let fx = tensors(&format!("peers/grad.{}.safetensors", kind.name()));
        let net = model(kind);
        let (x, target) = (&fx["input"], targets(&fx));
        for method in GradientKind::ALL {
            let got = Gradient::new(method).explain(&*net, x, &target).unwrap();
            let want = &fx[&format!("{}.attr", method.name())];
            let err = rel(&got.values.squeeze(1).unwrap(), want);
            assert!(err < 1e-4, "{} {method}: {err}", kind.name());
        }
        let layer = deep_layer(kind);
        let got = GuidedGradCam::new(layer).explain(&*net, x, &target).unwrap();
        let want = &fx[&format!("guided-gradcam.{layer}.attr")];
        let err = rel(&got.values.squeeze(1).unwrap(), want);
        assert!(err < 1e-4, "{} guided-gradcam: {err}", kind.name());
    }
}

/// On Xception, Captum's `GuidedBackprop`, `Deconvolution` and `GuidedGradCam` are not their
/// definitions: its hooks rewrite the gradient of each ReLU's input tensor, and a block's input
/// feeds both its first ReLU and its skip branch, so the rule is applied to the sum of both
/// branches' gradients (guided backprop) or drops the skip branch's (deconvnet). gaze applies each
/// rule to the ReLU's own gradient; the fixture keeps Captum's results as `.captum`, and this test
/// pins that they are far from gaze's (so a regenerated fixture where Captum changed is noticed).
#[test]
fn captums_relu_hooks_differ_from_the_definition_on_xception() {
    let fx = tensors("peers/grad.xception.safetensors");
    let net = model(ModelKind::Xception);
    let (x, target) = (&fx["input"], targets(&fx));
    for method in [GradientKind::GuidedBackprop, GradientKind::Deconvnet] {
        let got = Gradient::new(method).explain(&*net, x, &target).unwrap();
        let captum = &fx[&format!("{}.captum", method.name())];
        let err = rel(&got.values.squeeze(1).unwrap(), captum);
        assert!(err > 0.1, "{method}: gaze is within {err} of Captum's hooked result");
    }
}
