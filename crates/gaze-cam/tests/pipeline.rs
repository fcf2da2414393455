//! The shared pipeline: batches, targets, the tail-only backward, Ablation-CAM's two paths, errors,
//! several layers, the display steps and test-time augmentation.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use gaze_cam::{display_maps, AblationPath, AugSmooth, Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_engine::{probe, ProbeRequest};

fn cam(config: CamConfig) -> Cam {
    Cam::new(config).unwrap()
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let model = TinyCnn::new(3, DType::F32);
    let input = images(4, 9, DType::F32);
    let classes = [2, 0, 4, 1];
    for method in CamMethod::ALL {
        for layer in ["pool1", "conv2"] {
            let c = cam(CamConfig::new(method, [layer]).with_batch(3));
            let batch = c.explain(&model, &input, &Target::per_image(classes)).unwrap();
            assert_eq!(batch.values.dims(), [4, 1, 8, 8]);
            assert_eq!(batch.targets, vec![vec![2], vec![0], vec![4], vec![1]]);
            let mut any_positive = false;
            for (n, &k) in classes.iter().enumerate() {
                let one = c.explain(&model, &input.narrow(0, n, 1).unwrap(), &Target::classes([k])).unwrap();
                let got = flat(&batch.values.narrow(0, n, 1).unwrap());
                let want = flat(&one.values);
                any_positive |= want.iter().any(|v| *v > 0.0);
                let err = rel_err(&got, &want);
                assert!(err < 1e-5, "{method} at {layer}, image {n}: {err}");
            }
            assert!(any_positive, "{method} at {layer}: every map is zero");
        }
    }
}

#[test]
fn one_target_list_applies_to_every_image_and_top_k_ranks_them() {
    let model = TinyCnn::new(3, DType::F32);
    let input = images(3, 4, DType::F32);
    let c = cam(CamConfig::new(CamMethod::GradCam, ["conv2"]));
    // A single class explains every image of the batch (pytorch-grad-cam explains only the first).
    let all = c.explain(&model, &input, &Target::classes([3])).unwrap();
    assert_eq!(all.targets, vec![vec![3]; 3]);
    let per = c.explain(&model, &input, &Target::per_image([3, 3, 3])).unwrap();
    assert!(rel_err(&flat(&all.values), &flat(&per.values)) == 0.0);
    for n in 0..3 {
        assert!(flat(&all.values.narrow(0, n, 1).unwrap()).iter().any(|v| *v != 0.0));
    }
    // Top-2: each image's two best classes, best first, as separate maps.
    let top = c.explain(&model, &input, &Target::top(2)).unwrap();
    assert_eq!(top.values.dims(), [3, 2, 8, 8]);
    let logits = gaze_engine::TapModel::forward(&model, &input).unwrap().to_vec2::<f32>().unwrap();
    for (n, row) in logits.iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        assert_eq!(top.targets[n], order[..2].to_vec());
        let listed = c.explain(&model, &input.narrow(0, n, 1).unwrap(), &Target::classes(order[..2].to_vec())).unwrap();
        let err = rel_err(&flat(&top.values.narrow(0, n, 1).unwrap()), &flat(&listed.values));
        assert!(err < 1e-6, "{err}");
    }
    let scores = top.scores.unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(scores[0][0], logits[0][top.targets[0][0]]);
}

#[test]
fn grad_cam_differentiates_only_the_tail() {
    let model = TinyCnn::new(3, DType::F32);
    let input = images(2, 1, DType::F32);
    cam(CamConfig::new(CamMethod::GradCam, ["conv2"])).explain(&model, &input, &Target::top_class()).unwrap();
    assert_eq!(model.head_tracked.get(), Some(false), "the head before the layer was part of the autograd graph");
    // The check can fail: asking for the input gradient makes the head tracked.
    probe(&model, &input, &Target::top_class(), &ProbeRequest::input()).unwrap();
    assert_eq!(model.head_tracked.get(), Some(true));
}

#[test]
fn ablation_cam_by_forward_from_equals_ablation_by_substitution() {
    let input = images(3, 2, DType::F32);
    let target = Target::per_image_lists(vec![vec![0, 1], vec![2, 3], vec![4, 0]]);
    for layer in ["pool1", "conv2", "relu2"] {
        let model = TinyCnn::new(8, DType::F32);
        let by_tail = cam(CamConfig::new(CamMethod::AblationCam, [layer])
            .with_ablation_path(AblationPath::ForwardFrom)
            .with_batch(5))
        .explain(&model, &input, &target)
        .unwrap();
        let by_substitution = cam(CamConfig::new(CamMethod::AblationCam, [layer])
            .with_ablation_path(AblationPath::Substitute)
            .with_batch(7))
        .explain(&model, &input, &target)
        .unwrap();
        let err = rel_err(&flat(&by_tail.values), &flat(&by_substitution.values));
        assert!(err < 1e-5, "{layer}: {err}");
        assert!(flat(&by_tail.values).iter().any(|v| *v > 0.0));

        // On a model that cannot start at the layer, `auto` substitutes and gives the same maps,
        // and `forward-from` is an error naming the layers it can start at.
        let no_cut = TinyCnn::new(8, DType::F32).with_cuts(&["gap"]);
        let auto = cam(CamConfig::new(CamMethod::AblationCam, [layer])).explain(&no_cut, &input, &target).unwrap();
        assert!(rel_err(&flat(&auto.values), &flat(&by_tail.values)) < 1e-5);
        let err = cam(CamConfig::new(CamMethod::AblationCam, [layer]).with_ablation_path(AblationPath::ForwardFrom))
            .explain(&no_cut, &input, &target)
            .unwrap_err()
            .to_string();
        assert!(err.contains(layer) && err.contains("gap"), "{err}");
    }
}

#[test]
fn ablating_a_fraction_of_channels_leaves_the_others_at_weight_zero() {
    let model = TinyCnn::new(8, DType::F32);
    let input = images(2, 2, DType::F32);
    let target = Target::per_image([1, 2]);
    let full = cam(CamConfig::new(CamMethod::AblationCam, ["conv2"])).explain(&model, &input, &target).unwrap();
    let half = cam(CamConfig::new(CamMethod::AblationCam, ["conv2"]).with_ratio_channels_to_ablate(1.0 / 3.0))
        .explain(&model, &input, &target)
        .unwrap();
    assert_eq!(half.values.dims(), full.values.dims());
    assert!(rel_err(&flat(&half.values), &flat(&full.values)) > 1e-3);
}

#[test]
fn a_bad_layer_name_lists_the_valid_layers() {
    let model = TinyCnn::new(3, DType::F32);
    let input = images(1, 1, DType::F32);
    for method in CamMethod::ALL {
        let err = cam(CamConfig::new(method, ["conv9"]))
            .explain(&model, &input, &Target::top_class())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`conv9`"), "{method}: {err}");
        for name in LAYERS {
            assert!(err.contains(name), "{method}: {err}");
        }
    }
    // A layer without a spatial map is refused with its shape.
    let err = cam(CamConfig::new(CamMethod::GradCam, ["gap"]))
        .explain(&model, &input, &Target::top_class())
        .unwrap_err()
        .to_string();
    assert!(err.contains("gap") && err.contains("[1, 6]"), "{err}");
    // A wrongly shaped input names its shape.
    let err = cam(CamConfig::new(CamMethod::GradCam, ["conv2"]))
        .explain(&model, &input.flatten_from(2).unwrap(), &Target::top_class())
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, C, H, W]"), "{err}");
}

#[test]
fn several_layers_stack_when_they_share_a_size_and_average_in_the_display() {
    let model = TinyCnn::new(5, DType::F32);
    let input = images(2, 3, DType::F32);
    let target = Target::per_image([0, 3]);
    let method = CamMethod::GradCam;
    let single = |layer: &str| cam(CamConfig::new(method, [layer])).explain(&model, &input, &target).unwrap().values;
    let both = cam(CamConfig::new(method, ["conv2", "relu2"])).explain(&model, &input, &target).unwrap();
    assert_eq!(both.values.dims(), [2, 1, 2, 8, 8]);
    assert_eq!(both.meta.layers, ["conv2", "relu2"]);
    for (l, layer) in ["conv2", "relu2"].iter().enumerate() {
        let got = flat(&both.values.narrow(2, l, 1).unwrap());
        assert!(rel_err(&got, &flat(&single(layer))) < 1e-6, "{layer}");
    }

    // Layers of different sizes: no stacked tensor, but per-layer maps and a display.
    let c = cam(CamConfig::new(method, ["relu1", "relu2"]));
    let err = c.explain(&model, &input, &target).unwrap_err().to_string();
    assert!(err.contains("relu2") && err.contains("explain_layers"), "{err}");
    let layers = c.explain_layers(&model, &input, &target).unwrap();
    assert_eq!(layers.layers[0].1.dims(), [2, 1, 16, 16]);
    assert_eq!(layers.layers[1].1.dims(), [2, 1, 8, 8]);
    let shown = c.explain_display(&model, &input, &target).unwrap();
    assert_eq!(shown.values.dims(), [2, 1, SIZE, SIZE]);

    // The display by hand: per layer min-max and half-pixel bilinear resize, then ReLU, mean over
    // layers and min-max again.
    let mut want = Vec::new();
    for n in 0..2 {
        let per_layer: Vec<Vec<f64>> = layers
            .layers
            .iter()
            .map(|(_, m)| {
                let (h, w) = (m.dims()[2], m.dims()[3]);
                let v = flat(&m.narrow(0, n, 1).unwrap());
                bilinear(&min_max(&v), h, w, SIZE, SIZE, false)
            })
            .collect();
        let mean: Vec<f64> =
            (0..SIZE * SIZE).map(|p| per_layer.iter().map(|m| m[p].max(0.0)).sum::<f64>() / 2.0).collect();
        want.extend(min_max(&mean));
    }
    let err = rel_err(&flat(&shown.values), &want);
    assert!(err < 1e-5, "{err}");
    let direct = display_maps(&layers.layers.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), (SIZE, SIZE)).unwrap();
    assert!(rel_err(&flat(&direct), &want) < 1e-5);
}

#[test]
fn aug_smooth_averages_the_deaugmented_maps_of_every_augmentation() {
    let model = TinyCnn::new(6, DType::F32);
    let input = images(2, 7, DType::F32);
    let aug = AugSmooth::default();
    let config = CamConfig::new(CamMethod::GradCamPlusPlus, ["conv2"]);
    let smoothed = cam(config.clone().with_aug_smooth(Some(aug.clone())));
    // The top class is resolved once, on the original images.
    let original_top = cam(config.clone()).explain(&model, &input, &Target::top_class()).unwrap().targets;
    let raw = smoothed.explain(&model, &input, &Target::top_class()).unwrap();
    assert_eq!(raw.targets, original_top);
    let shown = smoothed.explain_display(&model, &input, &Target::top_class()).unwrap();

    let fixed = Target::per_image_lists(original_top.clone());
    let plain = cam(config);
    let mut raw_sum = vec![0.0; 2 * 64];
    let mut shown_sum = vec![0.0; 2 * SIZE * SIZE];
    let transforms = aug.transforms();
    for &(flip, factor) in &transforms {
        let mut x = input.affine(factor, 0.0).unwrap();
        if flip {
            x = x.flip(&[3]).unwrap();
        }
        let unflip = |t: Tensor| if flip { t.flip(&[3]).unwrap() } else { t };
        let r = unflip(plain.explain(&model, &x, &fixed).unwrap().values);
        let s = unflip(plain.explain_display(&model, &x, &fixed).unwrap().values);
        raw_sum.iter_mut().zip(flat(&r)).for_each(|(a, b)| *a += b);
        shown_sum.iter_mut().zip(flat(&s)).for_each(|(a, b)| *a += b);
    }
    let k = transforms.len() as f64;
    let raw_want: Vec<f64> = raw_sum.iter().map(|v| v / k).collect();
    let shown_want: Vec<f64> = shown_sum.iter().map(|v| v / k).collect();
    assert!(rel_err(&flat(&raw.values), &raw_want) < 1e-5);
    assert!(rel_err(&flat(&shown.values), &shown_want) < 1e-5);
    // Different from the unsmoothed map, so the augmentation did something.
    let unsmoothed = plain.explain(&model, &input, &fixed).unwrap();
    assert!(rel_err(&flat(&unsmoothed.values), &raw_want) > 1e-3);
}

#[test]
fn metadata_names_the_method_layers_score_and_options() {
    let model = TinyCnn::new(3, DType::F32);
    let input = images(1, 1, DType::F32);
    let attr = cam(CamConfig::new(CamMethod::ScoreCam, ["conv2"]).with_batch(8))
        .explain(&model, &input, &Target::top_class())
        .unwrap();
    assert_eq!(attr.meta.method, "scorecam");
    assert_eq!(attr.meta.layers, ["conv2"]);
    assert_eq!(attr.meta.score, "logit");
    assert_eq!(attr.meta.options["batch"], "8");
    assert_eq!(attr.meta.options["relu"], "true");
    assert_eq!(Explainer::<TinyCnn>::method(&cam(CamConfig::new(CamMethod::GradCamPlusPlus, ["x"]))), "gradcam++");
}

#[test]
fn a_run_from_the_layers_activation_gives_the_maps_of_the_images() {
    let model = TinyCnn::new(5, DType::F32);
    let input = images(3, 6, DType::F32);
    let target = Target::per_image_lists(vec![vec![0, 4], vec![2, 1], vec![3, 3]]);
    for method in CamMethod::ALL.into_iter().filter(|m| !m.is_perturbation()) {
        for layer in ["pool1", "conv2", "relu2"] {
            let c = cam(CamConfig::new(method, [layer]));
            let want = c.explain(&model, &input, &target).unwrap();
            let a = probe(
                &model,
                &input,
                &target,
                &ProbeRequest { record_layers: vec![layer.into()], ..Default::default() },
            )
            .unwrap()
            .activations
            .remove(layer)
            .unwrap();
            let images_before = model.images_run.get();
            let got = c.explain_from_layer(&model, &a, &target).unwrap();
            assert_eq!(model.images_run.get(), images_before, "{method} at {layer} ran the head");
            assert_eq!(got.targets, want.targets);
            assert_eq!(got.values.dims(), want.values.dims());
            let err = rel_err(&flat(&got.values), &flat(&want.values));
            assert!(err < 1e-6, "{method} at {layer}: {err}");
            assert!(flat(&got.values).iter().any(|v| *v != 0.0), "{method} at {layer}: every map is zero");
        }
    }
    // What needs the images, several layers, a layer the model cannot start at, and a map
    // without space are errors that say so.
    let a = probe(&model, &input, &target, &ProbeRequest { record_layers: vec!["conv2".into()], ..Default::default() })
        .unwrap()
        .activations
        .remove("conv2")
        .unwrap();
    for method in [CamMethod::ScoreCam, CamMethod::AblationCam] {
        let err = cam(CamConfig::new(method, ["conv2"])).explain_from_layer(&model, &a, &target).unwrap_err();
        assert!(err.to_string().contains(method.name()), "{err}");
    }
    let err = cam(CamConfig::new(CamMethod::GradCam, ["conv2"]).with_aug_smooth(Some(AugSmooth::default())))
        .explain_from_layer(&model, &a, &target)
        .unwrap_err();
    assert!(err.to_string().contains("aug_smooth"), "{err}");
    let err = cam(CamConfig::new(CamMethod::GradCam, ["conv2", "relu2"]))
        .explain_from_layer(&model, &a, &target)
        .unwrap_err();
    assert!(err.to_string().contains("one layer"), "{err}");
    let no_cut = TinyCnn::new(5, DType::F32).with_cuts(&["gap"]);
    let err = cam(CamConfig::new(CamMethod::GradCam, ["conv2"])).explain_from_layer(&no_cut, &a, &target).unwrap_err();
    assert!(err.to_string().contains("conv2") && err.to_string().contains("gap"), "{err}");
    let flat_a = a.flatten_from(1).unwrap();
    let err =
        cam(CamConfig::new(CamMethod::GradCam, ["conv2"])).explain_from_layer(&model, &flat_a, &target).unwrap_err();
    assert!(err.to_string().contains("conv2") && err.to_string().contains("[N, C, h, w]"), "{err}");
}
