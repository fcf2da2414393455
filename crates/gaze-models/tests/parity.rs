//! VGG16, ResNet-50 and Xception against PyTorch on the width-reduced fixtures of `cargo xtask
//! golden`: logits, intermediate activations and input gradients within 1e-4 relative, batches
//! equal to their images one by one, and the timm layout of VGG16 equal to torchvision's.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use common::{io, tensors, weights};
use gaze_core::numeric::rel_max_abs_err;
use gaze_engine::Taps;
use gaze_models::{load, Classifier, ModelKind, Preprocess};

const TOLERANCE: f32 = 1e-4;

fn model(kind: ModelKind) -> Box<dyn Classifier> {
    load(kind, Some(&weights(kind.name())), &Device::Cpu).unwrap()
}

fn close(what: &str, ours: &Tensor, reference: &Tensor, tolerance: f32) {
    let ours = ours.reshape(reference.shape()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let err = rel_max_abs_err(&ours, reference).unwrap();
    assert!(err < tolerance, "{what}: relative max-abs error {err:e} (tolerance {tolerance:e})");
}

/// Logits and every recorded activation of the fixture, through the library.
fn forward_matches_pytorch(kind: ModelKind) {
    let model = model(kind);
    let io = io(kind.name());
    let acts: Vec<&str> = io.keys().filter_map(|k| k.strip_prefix("act.")).collect();
    assert!(!acts.is_empty());
    let mut taps = acts.iter().fold(Taps::none(), |t, a| t.record(*a));
    let logits = model.forward_taps(&io["input"], &mut taps).unwrap();
    taps.check_requests().unwrap();
    close(&format!("{} logits", kind.name()), &logits, &io["logits"], TOLERANCE);
    for a in acts {
        let ours = taps.activation(a).unwrap();
        close(&format!("{} activation {a}", kind.name()), ours, &io[&format!("act.{a}")], TOLERANCE);
    }
}

/// The gradient of logit 1 of each image with respect to the input, against PyTorch's.
fn input_gradient_matches_pytorch(kind: ModelKind) {
    let model = model(kind);
    let io = io(kind.name());
    let x = Var::from_tensor(&io["input"]).unwrap();
    let logits = model.forward(x.as_tensor()).unwrap();
    let grads = logits.i((.., 1)).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(x.as_tensor()).expect("a gradient reaches the input");
    close(&format!("{} input gradient", kind.name()), g, &io["grad_input.class1"], TOLERANCE);
}

/// A batch gives the same logits and activations as its images one by one (up to the rounding of
/// f32 sums blocked differently for different batch sizes).
fn batch_equals_images_one_by_one(kind: ModelKind, layer: &str) {
    let model = model(kind);
    let input = &io(kind.name())["input"];
    let mut taps = Taps::none().record(layer);
    let logits = model.forward_taps(input, &mut taps).unwrap();
    let act = taps.activation(layer).unwrap().clone();
    for n in 0..input.dim(0).unwrap() {
        let mut taps = Taps::none().record(layer);
        let one = model.forward_taps(&input.narrow(0, n, 1).unwrap(), &mut taps).unwrap();
        close(&format!("{} logits of image {n}", kind.name()), &one, &logits.narrow(0, n, 1).unwrap(), 1e-5);
        let a = taps.activation(layer).unwrap();
        close(&format!("{} {layer} of image {n}", kind.name()), a, &act.narrow(0, n, 1).unwrap(), 1e-5);
    }
}

/// Starting the forward pass at a cut point with the recorded activation gives the same logits.
fn forward_from_cut_point(kind: ModelKind, layer: &str) {
    let model = model(kind);
    assert!(model.cut_points().iter().any(|c| c == layer), "{layer} is a cut point of {}", kind.name());
    let input = &io(kind.name())["input"];
    let mut taps = Taps::none().record(layer);
    let logits = model.forward_taps(input, &mut taps).unwrap();
    let act = taps.activation(layer).unwrap().clone();
    let mut tail_taps = Taps::none().record(layer);
    let tail = model.forward_from(layer, &act, &mut tail_taps).unwrap();
    close(&format!("{} from {layer}", kind.name()), &tail, &logits, 1e-6);
    assert_eq!(tail_taps.seen().first().map(String::as_str), Some(layer));
}

#[test]
fn vgg16_matches_pytorch() {
    forward_matches_pytorch(ModelKind::Vgg16);
    input_gradient_matches_pytorch(ModelKind::Vgg16);
}

#[test]
fn resnet50_matches_pytorch() {
    forward_matches_pytorch(ModelKind::ResNet50);
    input_gradient_matches_pytorch(ModelKind::ResNet50);
}

#[test]
fn xception_matches_pytorch() {
    forward_matches_pytorch(ModelKind::Xception);
    input_gradient_matches_pytorch(ModelKind::Xception);
}

#[test]
fn batches_equal_their_images_one_by_one() {
    batch_equals_images_one_by_one(ModelKind::Vgg16, "features.29");
    batch_equals_images_one_by_one(ModelKind::ResNet50, "layer4.2.conv3");
    batch_equals_images_one_by_one(ModelKind::Xception, "block12.rep.0");
}

#[test]
fn models_start_at_their_cut_points() {
    for layer in ["features.16", "features.29", "avgpool", "classifier.4"] {
        forward_from_cut_point(ModelKind::Vgg16, layer);
    }
    for layer in ["maxpool", "layer2.1", "layer3", "avgpool"] {
        forward_from_cut_point(ModelKind::ResNet50, layer);
    }
    for layer in ["act2", "block1", "block6", "block12", "conv3", "act4"] {
        forward_from_cut_point(ModelKind::Xception, layer);
    }
    let resnet = model(ModelKind::ResNet50);
    let act = Tensor::zeros((1, 8, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let err = resnet.forward_from("layer1.0.conv2", &act, &mut Taps::none()).unwrap_err().to_string();
    assert!(err.contains("inside a residual block") && err.contains("layer1.0"), "{err}");
}

/// timm's VGG16 layout (`pre_logits.fc1/fc2` as convolutions, `head.fc`) holds the same numbers as
/// torchvision's; on the fixture's 64×64 input the 2×2 feature map is pooled up to 7×7 in both, so
/// the logits are PyTorch's.
#[test]
fn vgg16_loads_timms_layout() {
    let tv = tensors(&weights("vgg16"), DType::F32);
    let mut timm: HashMap<String, Tensor> =
        tv.iter().filter(|(k, _)| k.starts_with("features.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let (h1, c49) = tv["classifier.0.weight"].dims2().unwrap();
    let c = c49 / 49;
    timm.insert("pre_logits.fc1.weight".into(), tv["classifier.0.weight"].reshape((h1, c, 7, 7)).unwrap());
    timm.insert("pre_logits.fc1.bias".into(), tv["classifier.0.bias"].clone());
    let (h2, _) = tv["classifier.3.weight"].dims2().unwrap();
    timm.insert("pre_logits.fc2.weight".into(), tv["classifier.3.weight"].reshape((h2, h1, 1, 1)).unwrap());
    timm.insert("pre_logits.fc2.bias".into(), tv["classifier.3.bias"].clone());
    timm.insert("head.fc.weight".into(), tv["classifier.6.weight"].clone());
    timm.insert("head.fc.bias".into(), tv["classifier.6.bias"].clone());
    let path = common::scratch("timm-vgg").join("vgg16-timm.safetensors");
    candle_core::safetensors::save(&timm, &path).unwrap();

    let model = load(ModelKind::Vgg16, Some(&path), &Device::Cpu).unwrap();
    let names = model.layer_names();
    assert!(names.iter().any(|n| n == "pre_logits.fc1") && names.iter().any(|n| n == "head.fc"), "{names:?}");
    assert_eq!(model.resolve_layer("fc2").unwrap(), "pre_logits.act2");
    assert_eq!(model.resolve_layer("predictions").unwrap(), "head.fc");
    let io = io("vgg16");
    let mut taps = Taps::none().record("features.29");
    let logits = model.forward_taps(&io["input"], &mut taps).unwrap();
    close("timm vgg16 logits", &logits, &io["logits"], TOLERANCE);
    close("timm vgg16 features.29", taps.activation("features.29").unwrap(), &io["act.features.29"], TOLERANCE);
    std::fs::remove_file(&path).ok();
}

#[test]
fn each_model_has_its_preprocessing() {
    let vgg = model(ModelKind::Vgg16);
    assert_eq!(vgg.preprocess(), Preprocess::imagenet_torchvision());
    assert_eq!(model(ModelKind::ResNet50).preprocess(), Preprocess::imagenet_torchvision());
    assert_eq!(model(ModelKind::Xception).preprocess(), Preprocess::Tf { size: 299 });
    assert_eq!(model(ModelKind::Xception).input_shape(), [3, 299, 299]);
    assert_eq!(vgg.kind(), ModelKind::Vgg16);
}

#[test]
fn default_cam_layers_are_taps() {
    for (kind, layer) in
        [(ModelKind::Vgg16, "features.29"), (ModelKind::ResNet50, "layer4"), (ModelKind::Xception, "act4")]
    {
        let model = model(kind);
        assert_eq!(model.default_layer().as_deref(), Some(layer));
        assert!(model.layer_names().iter().any(|n| n == layer));
    }
}
