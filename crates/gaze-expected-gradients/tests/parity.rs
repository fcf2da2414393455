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
use gaze_expected_gradients::{ExpectedGradients, SamplePlan, Space};

fn plan(index: &Tensor, alpha: &Tensor, noise: Option<&Tensor>) -> SamplePlan {
    SamplePlan {
        indices: index
            .to_vec2::<i64>()
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(|i| i as usize).collect())
            .collect(),
        alphas: alpha.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap(),
        noise: noise.cloned(),
    }
}

#[test]
fn input_space_matches_captums_gradient_shap_with_the_same_draws() {
    for kind in MODELS {
        let fx = tensors(&format!("peers/grad.{}.safetensors", kind.name()));
        let net = model(kind);
        let (x, target) = (&fx["input"], targets(&fx));
        let p = plan(&fx["gradient-shap.baseline_index"], &fx["gradient-shap.alpha"], Some(&fx["gradient-shap.noise"]));
        let got = ExpectedGradients::new(fx["gradient-shap.baselines"].clone())
            .with_plan(p)
            .with_batch(4)
            .explain_with_variance(&*net, x, &target)
            .unwrap();
        let err = rel(&got.attribution.values.squeeze(1).unwrap(), &fx["gradient-shap.attr"]);
        assert!(err < 1e-4, "{}: {err}", kind.name());
    }
}

#[test]
fn shaps_gradient_explainer_matches_at_the_input_and_at_layers() {
    let fx = tensors("peers/shap.vgg16.safetensors");
    let net = model(ModelKind::Vgg16);
    let x = &fx["input"];
    let ranks: Vec<Vec<usize>> = fx["ranks"]
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|c| c as usize).collect())
        .collect();
    let p = plan(&fx["plan.background_index"], &fx["plan.alpha"], None);
    for (key, space) in [
        ("values.input", Space::Input),
        ("values.features.9", Space::Layer("features.9".into())),
        ("values.features.22", Space::Layer("features.22".into())),
    ] {
        let got = ExpectedGradients::new(fx["background"].clone())
            .with_space(space)
            .with_plan(p.clone())
            .with_batch(7)
            .explain(&*net, x, &Target::top(2))
            .unwrap();
        assert_eq!(got.targets, ranks, "{key}");
        // shap stacks the ranks last: [N, *shape, rank].
        let want = &fx[key];
        let rank = want.rank();
        let mut order: Vec<usize> = vec![0, rank - 1];
        order.extend(1..rank - 1);
        let want = want.permute(order).unwrap().contiguous().unwrap();
        let err = rel(&got.values, &want);
        assert!(err < 1e-4, "{key}: {err}");
    }
}
