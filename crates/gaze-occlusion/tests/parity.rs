//! Parity with Captum's `Occlusion` on the width-reduced VGG16, ResNet-50 and Xception fixtures written by
//! `cargo xtask golden` (see `fixtures/README.md`): a 3×8×8 window, stride 3×4×4, baseline 0;
//! both also through the incremental re-computation, which equals the full one within 1e-5.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use gaze_core::numeric::rel_max_abs_err;
use gaze_core::{Explainer, Target};
use gaze_engine::TapModel;
use gaze_models::{Checkpoint, ModelKind, Vgg16};
use gaze_occlusion::incremental::full_forward;
use gaze_occlusion::{Fill, IncrementalReport, Occlusion, OcclusionConfig};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).unwrap()
}

fn targets(fx: &HashMap<String, Tensor>) -> Target {
    let t = fx["targets"].to_vec1::<i64>().unwrap();
    Target::per_image(t.into_iter().map(|c| c as usize))
}

fn captum_config() -> OcclusionConfig {
    OcclusionConfig::captum((8, 8), (4, 4)).with_fill(Fill::Constant(0.0)).with_batch(64)
}

fn rel(got: &Tensor, want: &Tensor) -> f32 {
    rel_max_abs_err(&got.squeeze(1).unwrap().to_dtype(DType::F32).unwrap(), want).unwrap()
}

#[test]
fn occlusion_matches_captum_on_vgg16_full_and_incremental() {
    let fx = tensors("peers/grad.vgg16.safetensors");
    let ckpt = Checkpoint::open(&fixtures().join("models/vgg16.safetensors"), &Device::Cpu).unwrap();
    let model = Vgg16::from_checkpoint(&ckpt, &Device::Cpu).unwrap();
    // The command line reaches the description through `Classifier::incremental`.
    let loaded =
        gaze_models::load(ModelKind::Vgg16, Some(&fixtures().join("models/vgg16.safetensors")), &Device::Cpu).unwrap();
    assert!(loaded.incremental().is_some());
    let (x, target) = (&fx["input"], targets(&fx));
    let want = &fx["occlusion.attr"];
    // The description runs the same network as the model.
    let err = rel_max_abs_err(&full_forward(&model, x).unwrap(), &model.forward(x).unwrap()).unwrap();
    assert!(err < 1e-5, "description against forward: {err}");
    let occ = Occlusion::new(captum_config());
    let full = occ.explain(&model, x, &target).unwrap();
    assert!(rel(&full.values, want) < 1e-4, "full: {}", rel(&full.values, want));
    let (inc, report) = occ.explain_incremental(&model, x, &target).unwrap();
    assert!(rel(&inc.values, want) < 1e-4, "incremental: {}", rel(&inc.values, want));
    // The fixture's inputs are 40×40: 9 × 9 windows per image.
    let (n, _, h, w) = x.dims4().unwrap();
    assert_eq!(report.samples, n * ((h - 8) / 4 + 1) * ((w - 8) / 4 + 1));
    assert_eq!(report.stages.len(), 18);
    // An 8×8 window grows to 10×10 through the first convolution.
    assert_eq!(report.stages[0].share, 100.0 / (h * w) as f64, "{:?}", report.stages[0]);
}

/// Captum's occlusion of a reduced model's fixture against gaze's full and incremental paths, and
/// the two paths against each other; the incremental path's report, for the model's own checks.
fn full_and_incremental_match_captum(kind: ModelKind) -> IncrementalReport {
    let fx = tensors(&format!("peers/grad.{}.safetensors", kind.name()));
    let path = fixtures().join(format!("models/{}.safetensors", kind.name()));
    let model = gaze_models::load(kind, Some(&path), &Device::Cpu).unwrap();
    let description = model.incremental().expect("the model describes its stages");
    let (x, target) = (&fx["input"], targets(&fx));
    let want = &fx["occlusion.attr"];
    let occ = Occlusion::new(captum_config());
    let full = occ.explain(&*model, x, &target).unwrap();
    assert!(rel(&full.values, want) < 1e-4, "{kind:?} full: {}", rel(&full.values, want));
    let (inc, report) = occ.explain_incremental(description, x, &target).unwrap();
    assert!(rel(&inc.values, want) < 1e-4, "{kind:?} incremental: {}", rel(&inc.values, want));
    let err = rel_max_abs_err(&inc.values, &full.values).unwrap();
    assert!(err < 1e-5, "{kind:?} incremental against full: {err}");
    report
}

#[test]
fn occlusion_matches_captum_on_resnet50_full_and_incremental() {
    let report = full_and_incremental_match_captum(ModelKind::ResNet50);
    // The stem recomputes only around each window, and so does the first residual sum (at these
    // 64×64 inputs the windows' regions cover most of the maps from `layer1.1` on).
    assert_eq!(report.stages.len(), 2 + 16 * 4 + 4);
    assert!(report.stages[0].share < 0.25, "{:?}", report.stages[0]);
    let sum = report.stages.iter().find(|s| s.name == "layer1.0").unwrap();
    assert!(sum.share > 0.0 && sum.share < 1.0, "{sum:?}");
}

#[test]
fn occlusion_matches_captum_on_xception_full_and_incremental() {
    let report = full_and_incremental_match_captum(ModelKind::Xception);
    // The stem recomputes only around each window.
    assert!(report.stages[0].share < 0.5, "{:?}", report.stages[0]);
}

/// Other windows, fills and non-square inputs on Xception: the incremental re-computation against
/// the full one, which runs the model itself.
#[test]
fn occlusion_on_xception_incremental_equals_full() {
    let io = tensors("models/xception.io.safetensors");
    let model =
        gaze_models::load(ModelKind::Xception, Some(&fixtures().join("models/xception.safetensors")), &Device::Cpu)
            .unwrap();
    let description = model.incremental().expect("Xception describes its stages");
    // Two non-square images (the second with its rows reversed), two targets each.
    let x = io["input"].to_dtype(DType::F32).unwrap().narrow(3, 3, 61).unwrap().contiguous().unwrap();
    let x = Tensor::cat(&[&x.narrow(0, 0, 1).unwrap(), &x.narrow(0, 0, 1).unwrap().flip(&[2]).unwrap()], 0).unwrap();
    let target = Target::classes([1, 7]);
    for config in [
        OcclusionConfig::captum((9, 7), (5, 4)).with_fill(Fill::Mean).with_batch(40),
        OcclusionConfig::tf_explain(12).with_batch(16),
    ] {
        let occ = Occlusion::new(config);
        let full = occ.explain(&*model, &x, &target).unwrap();
        let (inc, report) = occ.explain_incremental(description, &x, &target).unwrap();
        assert_eq!(inc.targets, full.targets);
        let err = rel_max_abs_err(&inc.values, &full.values).unwrap();
        assert!(err < 1e-5, "{:?}: incremental against full: {err}", occ.config.style);
        // The stem and the first separable convolutions recompute only around each window.
        assert!(report.stages[0].share < 0.5, "{:?}", report.stages[0]);
        let first_sum = report.stages.iter().find(|s| s.name == "block1").unwrap();
        assert!(first_sum.share < 1.0, "{first_sum:?}");
    }
}
