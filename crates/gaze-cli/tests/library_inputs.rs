//! Every method's `explain`, called as a library user calls it, refuses a batch it cannot explain
//! truthfully: NaN or infinite pixels (the models' ReLUs would turn a NaN into 0 and the map would
//! look normal), no image, an empty plane, a non-float dtype; and per-image target lists that do
//! not match the batch.

use candle_core::{DType, Device, Tensor};
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_models::{Classifier, ModelKind};

type Method = (&'static str, Box<dyn Explainer<dyn Classifier>>);

fn methods() -> Vec<Method> {
    let background = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let mut all: Vec<Method> = Vec::new();
    for name in ["gradcam", "scorecam", "eigencam"] {
        let cam = Cam::new(CamConfig::new(CamMethod::parse(name).unwrap(), ["relu4"])).unwrap();
        all.push((name, Box::new(cam)));
    }
    for kind in gaze_saliency::GradientKind::ALL {
        all.push((kind.name(), Box::new(gaze_saliency::Gradient::new(kind))));
    }
    all.push(("guided-gradcam", Box::new(gaze_saliency::GuidedGradCam::new("relu4"))));
    all.push((
        "smoothgrad",
        Box::new(gaze_smoothgrad::SmoothGrad::new(gaze_saliency::Gradient::new(gaze_saliency::GradientKind::Saliency))),
    ));
    all.push(("integrated-gradients", Box::new(gaze_integrated_gradients::IntegratedGradients::default())));
    all.push(("expected-gradients", Box::new(gaze_expected_gradients::ExpectedGradients::new(background))));
    all.push((
        "occlusion",
        Box::new(gaze_occlusion::Occlusion::new(gaze_occlusion::OcclusionConfig::captum((16, 16), (16, 16)))),
    ));
    all.push(("rise", Box::new(gaze_rise::Rise::new(gaze_rise::RiseConfig { masks: 8, ..Default::default() }))));
    all.push((
        "activations",
        Box::new(gaze_activations::Activations::new(gaze_activations::ActivationsConfig::new("relu4"))),
    ));
    all
}

#[test]
fn every_method_refuses_a_batch_it_cannot_explain() {
    let dev = Device::Cpu;
    let model = gaze_models::load(ModelKind::Demo, None, &dev).unwrap();
    let model: &dyn Classifier = model.as_ref();
    let mut values = vec![0.25f32; 2 * 3 * 64 * 64];
    values[5] = f32::NAN;
    values[3 * 64 * 64 + 7] = f32::INFINITY;
    let nan = Tensor::from_vec(values, (2, 3, 64, 64), &dev).unwrap();
    let good = Tensor::full(0.25f32, (2, 3, 64, 64), &dev).unwrap();
    let cases: [(&str, Tensor, &str); 4] = [
        ("NaN pixels", nan, "input contains 2 NaN or infinite values"),
        ("no image", Tensor::zeros((0, 3, 64, 64), DType::F32, &dev).unwrap(), "at least one image"),
        ("an empty plane", Tensor::zeros((1, 3, 0, 64), DType::F32, &dev).unwrap(), "at least one image"),
        ("integer pixels", good.to_dtype(DType::I64).unwrap(), "floating-point"),
    ];
    for (name, method) in methods() {
        for (what, input, message) in &cases {
            let result = method.explain(model, input, &Target::classes([1]));
            let err = match result {
                Ok(a) => panic!("{name} explained {what}: {:?}", a.values.dims()),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(message), "{name} on {what}: {err}");
        }
        // A float batch of another dtype than the model's weights: the input's dtype is named.
        {
            let err = method.explain(model, &good.to_dtype(DType::F64).unwrap(), &Target::classes([1])).unwrap_err();
            let err = err.to_string();
            assert!(
                err.contains("`F64` for conv2d input dtype; expected F32, the dtype of the weight"),
                "{name}: {err}"
            );
        }
        // Per-image lists for three images, for a batch of two.
        let err = method
            .explain(model, &good, &Target::per_image_lists(vec![vec![1], vec![2], vec![3]]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("3 target lists were given for a batch of 2 images"), "{name}: {err:?}");
    }
}

#[test]
fn baselines_and_backgrounds_with_nan_are_refused() {
    let dev = Device::Cpu;
    let model = gaze_models::load(ModelKind::Demo, None, &dev).unwrap();
    let model: &dyn Classifier = model.as_ref();
    let x = Tensor::full(0.25f32, (1, 3, 64, 64), &dev).unwrap();
    let mut v = vec![0.0f32; 3 * 64 * 64];
    v[11] = f32::NAN;
    let nan = Tensor::from_vec(v, (1, 3, 64, 64), &dev).unwrap();
    let t = Target::classes([1]);
    let ig = gaze_integrated_gradients::IntegratedGradients::default()
        .with_baseline(gaze_integrated_gradients::Baseline::Tensor(nan.clone()));
    let err = ig.explain(model, &x, &t).unwrap_err().to_string();
    assert!(err.contains("the baseline contains 1 NaN"), "{err}");
    let eg = gaze_expected_gradients::ExpectedGradients::new(nan.clone());
    let err = eg.explain(model, &x, &t).unwrap_err().to_string();
    assert!(err.contains("the background set contains 1 NaN"), "{err}");
    let occlusion = gaze_occlusion::Occlusion::new(
        gaze_occlusion::OcclusionConfig::captum((16, 16), (16, 16)).with_fill(gaze_occlusion::Fill::Baseline(nan)),
    );
    let err = occlusion.explain(model, &x, &t).unwrap_err().to_string();
    assert!(err.contains("the occlusion baseline contains 1 NaN"), "{err}");
}
