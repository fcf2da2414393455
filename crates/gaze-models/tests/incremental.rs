//! The incremental descriptions (`gaze_engine::spatial::Incremental`) of VGG16, ResNet-50 and
//! Xception run the same network as the models' own forward passes, on the fixture checkpoints, at
//! the fixtures' input size and at an odd non-square one (strided layers round their sizes down).
//! That occlusion through them equals the full re-computation is tested in `gaze-occlusion`.

mod common;

use candle_core::{Device, Tensor};
use common::{io, weights};
use gaze_core::numeric::rel_max_abs_err;
use gaze_engine::spatial::{checked_stages, full_forward};
use gaze_models::{load, Classifier, ModelKind};

fn model(kind: ModelKind) -> Box<dyn Classifier> {
    load(kind, Some(&weights(kind.name())), &Device::Cpu).unwrap()
}

/// A deterministic input `[n, 3, h, w]` in about [-2, 2].
fn input(n: usize, h: usize, w: usize) -> Tensor {
    let len = n * 3 * h * w;
    let v: Vec<f32> = (0..len).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 4.0).collect();
    Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu).unwrap()
}

/// The description's logits equal the model's on `x`.
fn same_logits(kind: ModelKind, x: &Tensor) {
    let m = model(kind);
    let description = m.incremental().unwrap_or_else(|| panic!("{} has no incremental description", kind.name()));
    let ours = full_forward(description, x).unwrap();
    let reference = m.forward(x).unwrap();
    assert_eq!(ours.dims(), reference.dims());
    let err = rel_max_abs_err(&ours, &reference).unwrap();
    assert!(err < 1e-5, "{} {:?}: description against forward: {err:e}", kind.name(), x.dims());
}

/// The stages' names, in order.
fn stage_names(kind: ModelKind) -> Vec<String> {
    let m = model(kind);
    checked_stages(m.incremental().unwrap()).unwrap().into_iter().map(|s| s.name).collect()
}

#[test]
fn vgg16_description_runs_the_model() {
    same_logits(ModelKind::Vgg16, &io("vgg16")["input"]);
    same_logits(ModelKind::Vgg16, &input(1, 45, 38));
    assert_eq!(stage_names(ModelKind::Vgg16).len(), 18);
}

#[test]
fn resnet50_description_runs_the_model() {
    same_logits(ModelKind::ResNet50, &io("resnet50")["input"]);
    same_logits(ModelKind::ResNet50, &input(2, 45, 38));
    let names = stage_names(ModelKind::ResNet50);
    // The stem's two stages, then per block three convolutions and the sum, and a downsample
    // branch in the first block of each of the four stages.
    assert_eq!(names.len(), 2 + 16 * 4 + 4);
    assert_eq!(
        names[..7],
        ["conv1", "maxpool", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.0.downsample", "layer1.0"]
    );
    let m = model(ModelKind::ResNet50);
    let stages = checked_stages(m.incremental().unwrap()).unwrap();
    // The sum of the first block reads its `conv3` and its downsample branch; that of the second
    // reads its `conv3` and the first block's output.
    assert_eq!(stages[6].inputs, vec![5, 6]);
    assert_eq!(stages[10].inputs, vec![10, 7]);
    // `layer2.0.conv2` carries the stride.
    let conv2 = stages.iter().find(|s| s.name == "layer2.0.conv2").unwrap();
    assert_eq!(conv2.geometry.stride, (2, 2));
}
