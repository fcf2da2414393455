//! A batch of 8 images with 8 different targets gives, for every CAM method, the maps of 8 single
//! calls, on the width-reduced VGG16 and ResNet-50 of `fixtures/models` (the real architectures).

use std::path::PathBuf;

use candle_core::{DType, Device};
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_models::{Classifier, ModelKind};

mod common;
use common::{flat, rel_err, uniform};
use rand::SeedableRng;

fn model(kind: ModelKind) -> Box<dyn Classifier> {
    let path: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "..", "..", "fixtures", "models", &format!("{}.safetensors", kind.name())]
            .iter()
            .collect();
    gaze_models::load(kind, Some(&path), &Device::Cpu).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

fn check(kind: ModelKind, layer: &str) {
    let model = model(kind);
    let [c, h, w] = model.input_shape();
    // A fixed input: the bound below depends on it (Ablation-CAM divides by each target's score).
    let input = uniform(&mut rand::rngs::StdRng::seed_from_u64(5), &[8, c, h, w], 2.0, DType::F32);
    let classes: Vec<usize> = (0..8).map(|i| (i * 5 + 1) % model.num_classes()).collect();
    let mut distinct = classes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "the fixture needs 8 classes: {classes:?}");
    for method in CamMethod::ALL {
        // A chunk of 3 puts the chunk boundaries inside the batch.
        let cam = Cam::new(CamConfig::new(method, [layer]).with_batch(3)).unwrap();
        let batch = cam.explain(model.as_ref(), &input, &Target::per_image(classes.clone())).unwrap();
        assert_eq!(batch.targets, classes.iter().map(|&k| vec![k]).collect::<Vec<_>>());
        let mut nonzero = 0;
        for (n, &k) in classes.iter().enumerate() {
            let one = cam.explain(model.as_ref(), &input.narrow(0, n, 1).unwrap(), &Target::classes([k])).unwrap();
            let want = flat(&one.values);
            nonzero += usize::from(want.iter().any(|v| *v != 0.0));
            let err = rel_err(&flat(&batch.values.narrow(0, n, 1).unwrap()), &want);
            // Score-CAM and Ablation-CAM weigh channels by differences of logits of masked or
            // ablated copies, which run in chunks of other sizes in the two calls: the matrix
            // multiplies round differently, and the weights turn that into up to 3e-4 on
            // ResNet-50 for this input.
            let tolerance = if method.is_perturbation() { 1e-3 } else { 1e-4 };
            assert!(err < tolerance, "{} {method} at {layer}, image {n} (class {k}): {err}", kind.name());
        }
        assert!(nonzero > 0, "{} {method} at {layer}: every map is zero", kind.name());
    }
}

#[test]
fn vgg16_batches_of_eight_targets_equal_single_calls() {
    check(ModelKind::Vgg16, "features.29");
}

#[test]
fn resnet50_batches_of_eight_targets_equal_single_calls() {
    check(ModelKind::ResNet50, "layer4");
}
