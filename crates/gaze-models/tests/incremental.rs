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

#[test]
fn xception_description_runs_the_model() {
    same_logits(ModelKind::Xception, &io("xception")["input"]);
    same_logits(ModelKind::Xception, &input(2, 75, 66));
    let m = model(ModelKind::Xception);
    let stages = checked_stages(m.incremental().unwrap()).unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    // The stem's two convolutions, then `block1`: two separable convolutions (depthwise and
    // pointwise each), its max pool, its skip branch reading the stem's output, and the sum.
    assert_eq!(
        names[..9],
        [
            "conv1",
            "conv2",
            "block1.rep.0.conv1",
            "block1.rep.0",
            "block1.rep.3.conv1",
            "block1.rep.3",
            "block1.rep.5",
            "block1.skip",
            "block1"
        ]
    );
    assert_eq!(stages[7].inputs, vec![2]);
    assert_eq!(stages[8].inputs, vec![7, 8]);
    // A middle-flow block has no skip branch: its sum reads the block's input.
    let block4 = stages.iter().position(|s| s.name == "block4").unwrap();
    let block3 = stages.iter().position(|s| s.name == "block3").unwrap();
    assert_eq!(stages[block4].inputs, vec![block4, block3 + 1]);
    // 12 blocks with 2, 2, 2, 3 × 8 and 2 separable convolutions, 4 pools, 4 skips, 12 sums, the
    // stem's 2 and the exit's 2 separable convolutions.
    assert_eq!(stages.len(), 2 + 2 * 32 + 4 + 4 + 12 + 2 * 2);
    assert_eq!(names.last(), Some(&"conv4"));
}

#[test]
fn a_description_checks_its_input_as_the_model_does() {
    for (kind, bad, message) in [
        (ModelKind::Vgg16, input(1, 8, 8), "VGG16 input: expected shape [N, 3, H, W] with N >= 1 and H, W >= 32"),
        (
            ModelKind::ResNet50,
            Tensor::zeros((1, 1, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
            "ResNet input",
        ),
        (ModelKind::Xception, input(1, 5, 40), "Xception input"),
    ] {
        let m = model(kind);
        let err = full_forward(m.incremental().unwrap(), &bad).unwrap_err().to_string();
        assert!(err.contains(message), "{}: {err}", kind.name());
        // The same message as the model's own forward pass.
        assert_eq!(err, m.forward(&bad).unwrap_err().to_string());
    }
}
