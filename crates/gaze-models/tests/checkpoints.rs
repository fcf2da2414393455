//! Checkpoints that do not fit get errors naming the key, what was expected and what was found;
//! heads of other class counts load and name their classes; layer names and Keras aliases agree
//! with what the forward pass reaches.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{scratch, tensors, weights};
use gaze_engine::{layer_shapes, Taps};
use gaze_models::{load, Classifier, ModelKind};

fn model(kind: ModelKind) -> Box<dyn Classifier> {
    load(kind, Some(&weights(kind.name())), &Device::Cpu).unwrap()
}

/// The fixture of `model` with `edit` applied, saved under a scratch folder.
fn edited(model: &str, file: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let mut t = tensors(&weights(model), DType::F32);
    edit(&mut t);
    let path = scratch("checkpoints").join(file);
    candle_core::safetensors::save(&t, &path).unwrap();
    path
}

fn load_error(kind: ModelKind, path: &std::path::Path) -> String {
    match load(kind, Some(path), &Device::Cpu) {
        Ok(_) => panic!("{} loaded {}", kind.name(), path.display()),
        Err(e) => {
            assert!(e.is_user_error(), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn a_checkpoint_of_another_architecture_names_the_missing_key() {
    let err = load_error(ModelKind::Vgg16, &weights("resnet50"));
    assert!(err.contains("`classifier.0.weight`") && err.contains("`pre_logits.fc1.weight`"), "{err}");
    let err = load_error(ModelKind::ResNet50, &weights("vgg16"));
    assert!(err.contains("missing tensor `conv1.weight`"), "{err}");
    let err = load_error(ModelKind::Xception, &weights("resnet50"));
    assert!(err.contains("`conv1.weight` has shape [4, 3, 7, 7]; expected [out, 3, 3, 3]"), "{err}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let path = edited("vgg16", "vgg-conv.safetensors", |t| {
        t.insert("features.2.weight".into(), Tensor::zeros((8, 5, 3, 3), DType::F32, &Device::Cpu).unwrap());
    });
    let err = load_error(ModelKind::Vgg16, &path);
    assert!(err.contains("`features.2.weight` has shape [8, 5, 3, 3]; expected [out, 4, 3, 3]"), "{err}");

    let path = edited("resnet50", "resnet-bn.safetensors", |t| {
        t.insert("layer2.1.bn2.running_var".into(), Tensor::ones(3, DType::F32, &Device::Cpu).unwrap());
    });
    let err = load_error(ModelKind::ResNet50, &path);
    assert!(err.contains("`layer2.1.bn2.running_var` has shape [3]; expected [8]"), "{err}");

    let path = edited("xception", "xception-dw.safetensors", |t| {
        t.insert("block5.rep.4.conv1.weight".into(), Tensor::zeros((45, 45, 3, 3), DType::F32, &Device::Cpu).unwrap());
    });
    let err = load_error(ModelKind::Xception, &path);
    assert!(err.contains("`block5.rep.4.conv1.weight` has shape [45, 45, 3, 3]; expected [45, 1, 3, 3]"), "{err}");

    // A tensor the configuration does not read is still checked when the weights are loaded.
    let path = edited("vgg16", "vgg-bias.safetensors", |t| {
        t.insert("features.0.bias".into(), Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap());
    });
    let err = load_error(ModelKind::Vgg16, &path);
    assert!(err.contains("features.0.bias"), "{err}");

    let path = edited("resnet50", "resnet-no-downsample.safetensors", |t| {
        t.retain(|k, _| !k.starts_with("layer3.0.downsample."));
    });
    let err = load_error(ModelKind::ResNet50, &path);
    assert!(err.contains("missing tensor `layer3.0.downsample.0.weight`"), "{err}");
}

#[test]
fn heads_of_any_size_load_and_name_their_classes() {
    let small = model(ModelKind::ResNet50);
    assert_eq!(small.num_classes(), 12);
    assert_eq!(small.label(3).as_deref(), Some("class 3"));
    assert_eq!(small.class_id(3), None);
    assert_eq!(small.label(12), None);

    let path = edited("resnet50", "resnet-imagenet-head.safetensors", |t| {
        let width = t["fc.weight"].dim(1).unwrap();
        t.insert("fc.weight".into(), Tensor::randn(0f32, 0.05, (1000, width), &Device::Cpu).unwrap());
        t.insert("fc.bias".into(), Tensor::zeros(1000, DType::F32, &Device::Cpu).unwrap());
    });
    let imagenet = load(ModelKind::ResNet50, Some(&path), &Device::Cpu).unwrap();
    assert_eq!(imagenet.num_classes(), 1000);
    assert_eq!(imagenet.label(285).as_deref(), Some("Egyptian_cat"));
    assert_eq!(imagenet.class_id(285).as_deref(), Some("n02124075"));
    let x = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(imagenet.forward(&x).unwrap().dims(), &[2, 1000]);
}

#[test]
fn layer_names_are_the_taps_in_forward_order() {
    for (kind, size) in [(ModelKind::Vgg16, 64), (ModelKind::ResNet50, 64), (ModelKind::Xception, 71)] {
        let model = model(kind);
        let shapes = layer_shapes(model.as_ref(), Some([3, size, size])).unwrap();
        let seen: Vec<String> = shapes.iter().map(|s| s.name.clone()).collect();
        assert_eq!(seen, model.layer_names(), "{}", kind.name());
        assert!(shapes.iter().all(|s| s.shape.first() == Some(&1)), "{}", kind.name());
        for cut in model.cut_points() {
            assert!(seen.contains(&cut), "{}: cut point {cut} is not a tap", kind.name());
        }
    }
}

#[test]
fn keras_names_are_aliases() {
    let vgg = model(ModelKind::Vgg16);
    for (keras, tap) in [
        ("block1_conv1", "features.1"),
        ("block1_pool", "features.4"),
        ("block2_pool", "features.9"),
        ("block3_conv1", "features.11"),
        ("block4_conv3", "features.22"),
        ("block5_conv3", "features.29"),
        ("block5_pool", "features.30"),
        ("fc1", "classifier.1"),
        ("fc2", "classifier.4"),
        ("predictions", "classifier.6"),
        ("features.3", "features.3"),
    ] {
        assert_eq!(vgg.resolve_layer(keras).unwrap(), tap, "vgg16 {keras}");
    }
    let xception = model(ModelKind::Xception);
    for (keras, tap) in [
        ("block1_conv1", "conv1"),
        ("block1_conv2", "conv2"),
        ("block1_conv2_act", "act2"),
        ("block2_sepconv1", "block1.rep.0"),
        ("block2_sepconv2_act", "block1.rep.2"),
        ("block2_pool", "block1.rep.5"),
        ("block3_sepconv1_act", "block2.rep.0"),
        ("block4_sepconv2_bn", "block3.rep.5"),
        ("block6_sepconv1", "block5.rep.1"),
        ("block12_sepconv3_bn", "block11.rep.8"),
        ("block13_sepconv2", "block12.rep.4"),
        ("block13_pool", "block12.rep.6"),
        ("block14_sepconv1", "conv3"),
        ("block14_sepconv2_act", "act4"),
        ("avg_pool", "global_pool"),
        ("predictions", "fc"),
    ] {
        assert_eq!(xception.resolve_layer(keras).unwrap(), tap, "xception {keras}");
    }
    for model in [&vgg, &xception] {
        let names = model.layer_names();
        for name in &names {
            assert_eq!(&model.resolve_layer(name).unwrap(), name);
        }
    }
    // An alias is tapped under its module name, and a Keras name may start the forward pass.
    let x = common::io("vgg16")["input"].clone();
    let mut taps = Taps::none().record(vgg.resolve_layer("block4_conv3").unwrap());
    let logits = vgg.forward_taps(&x, &mut taps).unwrap();
    let act = taps.activation("features.22").unwrap().clone();
    let tail = vgg.forward_from("block4_conv3", &act, &mut Taps::none()).unwrap();
    assert!(gaze_core::numeric::rel_max_abs_err(&tail, &logits).unwrap() < 1e-6);

    let err = vgg.resolve_layer("block6_conv1").unwrap_err().to_string();
    assert!(err.contains("unknown layer `block6_conv1`") && err.contains("block4_conv3 (= features.22)"), "{err}");
}

#[test]
fn inputs_of_the_wrong_shape_are_refused() {
    let vgg = model(ModelKind::Vgg16);
    let x = Tensor::zeros((1, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let err = vgg.forward(&x).unwrap_err().to_string();
    assert!(err.contains("VGG16 input") && err.contains("H, W >= 32") && err.contains("[1, 3, 16, 16]"), "{err}");
    let x = Tensor::zeros((1, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(model(ModelKind::Xception).forward(&x).is_err());
}

#[test]
fn models_without_weights_say_so() {
    for kind in [ModelKind::Vgg16, ModelKind::ResNet50, ModelKind::Xception] {
        let err = match load(kind, None, &Device::Cpu) {
            Ok(_) => panic!("{} loaded without weights", kind.name()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("--weights") && err.contains(kind.name()), "{err}");
    }
}

/// A checkpoint converted to f64 builds a model that computes in f64 and agrees with the f32 one;
/// a type the ops do not compute in is refused by name.
#[test]
fn a_checkpoint_in_f64_builds_an_f64_model_and_other_types_are_refused() {
    let ckpt = gaze_models::Checkpoint::open(&weights("vgg16"), &Device::Cpu).unwrap();
    let x = common::io("vgg16")["input"].clone();
    let want = model(ModelKind::Vgg16).forward(&x).unwrap();
    let ckpt = ckpt.to_dtype(DType::F64).unwrap();
    let net = gaze_models::load_checkpoint(ModelKind::Vgg16, &ckpt, &Device::Cpu).unwrap();
    let got = net.forward(&x.to_dtype(DType::F64).unwrap()).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let err = gaze_core::numeric::rel_max_abs_err(&got.to_dtype(DType::F32).unwrap(), &want).unwrap();
    assert!(err < 1e-4, "{err}");
    let err = ckpt.to_dtype(DType::F16).err().expect("f16 is refused").to_string();
    assert!(err.contains("F16") && err.contains("F32 or F64"), "{err}");
}

/// The fixture of `model` with the classifier `prefix` cut to no rows: weight `[0, in]`, bias
/// `[0]`.
fn without_classes(t: &mut HashMap<String, Tensor>, prefix: &str) {
    let cpu = &Device::Cpu;
    let inputs = t[&format!("{prefix}.weight")].dim(1).unwrap();
    t.insert(format!("{prefix}.weight"), Tensor::zeros((0, inputs), DType::F32, cpu).unwrap());
    t.insert(format!("{prefix}.bias"), Tensor::zeros(0, DType::F32, cpu).unwrap());
}

/// A head without classes used to load, and then every prediction and explanation failed with
/// a message about something else; each architecture refuses it at load, naming the key.
#[test]
fn a_classifier_with_no_classes_is_rejected_at_load_for_every_architecture() {
    let vgg_timm = |t: &mut HashMap<String, Tensor>| {
        let (h1, c49) = t["classifier.0.weight"].dims2().unwrap();
        let (h2, _) = t["classifier.3.weight"].dims2().unwrap();
        let fc1 = t["classifier.0.weight"].reshape((h1, c49 / 49, 7, 7)).unwrap();
        let fc2 = t["classifier.3.weight"].reshape((h2, h1, 1, 1)).unwrap();
        for (from, to) in
            [("classifier.0", "pre_logits.fc1"), ("classifier.3", "pre_logits.fc2"), ("classifier.6", "head.fc")]
        {
            let w = t.remove(&format!("{from}.weight")).unwrap();
            let b = t.remove(&format!("{from}.bias")).unwrap();
            t.insert(format!("{to}.weight"), w);
            t.insert(format!("{to}.bias"), b);
        }
        t.insert("pre_logits.fc1.weight".into(), fc1);
        t.insert("pre_logits.fc2.weight".into(), fc2);
        without_classes(t, "head.fc");
    };
    type Edit = Box<dyn Fn(&mut HashMap<String, Tensor>)>;
    let cases: Vec<(ModelKind, &str, Edit)> = vec![
        (ModelKind::Vgg16, "classifier.6.weight", Box::new(|t| without_classes(t, "classifier.6"))),
        (ModelKind::Vgg16, "head.fc.weight", Box::new(vgg_timm)),
        (ModelKind::ResNet50, "fc.weight", Box::new(|t| without_classes(t, "fc"))),
        (ModelKind::Xception, "fc.weight", Box::new(|t| without_classes(t, "fc"))),
    ];
    for (kind, key, edit) in cases {
        let path = edited(kind.name(), &format!("{}-{key}-no-classes.safetensors", kind.name()), |t| edit(t));
        let err = load_error(kind, &path);
        assert!(
            err.contains(&format!("tensor `{key}` has shape [0, "))
                && err.contains("0 classes")
                && err.contains("at least one class"),
            "{} ({key}): {err}",
            kind.name()
        );
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    let mut demo = candle_core::safetensors::load_buffer(gaze_models::DEMO_WEIGHTS, &Device::Cpu).unwrap();
    without_classes(&mut demo, "fc");
    let path = scratch("checkpoints").join("demo-no-classes.safetensors");
    candle_core::safetensors::save(&demo, &path).unwrap();
    let err = load_error(ModelKind::Demo, &path);
    assert!(err.contains("tensor `fc.weight` has shape [0, ") && err.contains("at least one class"), "{err}");
}
