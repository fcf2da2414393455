//! Each variant against a direct computation from its formula: gradients by finite differences,
//! weights and sums in plain loops, on an f64 model.

mod common;

use candle_core::DType;
use common::*;
use gaze_cam::{Cam, CamConfig, CamMethod, GradientFilter};
use gaze_core::{Explainer, Score, Target};

const N: usize = 2;
/// The classes explained for each image (two targets each).
const TARGETS: [[usize; 2]; N] = [[1, 3], [4, 0]];

fn run(config: CamConfig, probability: bool) -> (Vec<f64>, Vec<usize>) {
    let model = TinyCnn::new(11, DType::F64);
    let input = images(N, 5, DType::F64);
    let mut target = Target::per_image_lists(TARGETS.iter().map(|t| t.to_vec()).collect());
    if probability {
        target = target.with_score(Score::Probability);
    }
    let attr = Cam::new(config).unwrap().explain(&model, &input, &target).unwrap();
    assert_eq!(attr.targets, vec![vec![1, 3], vec![4, 0]]);
    (flat(&attr.values), attr.values.dims().to_vec())
}

/// The reference maps `[N, T, hw]` flattened: `map(a, g, c, hw)` for each image and target, with
/// `g` the finite-difference gradient.
fn reference(layer: &str, probability: bool, map: impl Fn(&[f64], &[f64], usize, usize) -> Vec<f64>) -> Vec<f64> {
    let model = TinyCnn::new(11, DType::F64);
    let input = images(N, 5, DType::F64);
    let mut out = Vec::new();
    for (n, classes) in TARGETS.iter().enumerate() {
        let (a, dims) = activation(&model, &input, layer, n);
        let (c, hw) = (dims[0], dims[1] * dims[2]);
        for &k in classes {
            let g = fd_gradient(&model, layer, &a, &dims, k, probability);
            out.extend(map(&a, &g, c, hw));
        }
    }
    out
}

fn check(method: CamMethod, layer: &str, map: impl Fn(&[f64], &[f64], usize, usize) -> Vec<f64>) {
    let (got, dims) = run(CamConfig::new(method, [layer]), false);
    assert_eq!(dims, [N, 2, 8, 8], "{method}");
    let want = reference(layer, false, map);
    let err = rel_err(&got, &want);
    assert!(err < 1e-6, "{method} at {layer}: relative error {err}");
    assert!(want.iter().any(|v| *v > 0.0), "{method}: the reference map is all zero");
}

fn spatial_sum(x: &[f64], k: usize, hw: usize) -> f64 {
    x[k * hw..(k + 1) * hw].iter().sum()
}

#[test]
fn grad_cam_is_the_mean_gradient_weighted_sum() {
    for layer in ["pool1", "conv2"] {
        check(CamMethod::GradCam, layer, |a, g, c, hw| {
            let w: Vec<f64> = (0..c).map(|k| spatial_sum(g, k, hw) / hw as f64).collect();
            relu(weighted_sum(a, &w, hw))
        });
    }
}

#[test]
fn grad_cam_plus_plus_follows_its_alpha_formula() {
    check(CamMethod::GradCamPlusPlus, "pool1", |a, g, c, hw| {
        let w: Vec<f64> = (0..c)
            .map(|k| {
                let s = spatial_sum(a, k, hw);
                (0..hw)
                    .map(|p| {
                        let gi = g[k * hw + p];
                        if gi == 0.0 {
                            return 0.0;
                        }
                        let alpha = gi * gi / (2.0 * gi * gi + s * gi * gi * gi + 1e-6);
                        gi.max(0.0) * alpha
                    })
                    .sum()
            })
            .collect();
        relu(weighted_sum(a, &w, hw))
    });
}

#[test]
fn xgrad_cam_normalises_by_the_activation_sum() {
    check(CamMethod::XGradCam, "pool1", |a, g, c, hw| {
        let w: Vec<f64> = (0..c)
            .map(|k| {
                let s = spatial_sum(a, k, hw) + 1e-7;
                (0..hw).map(|p| g[k * hw + p] * a[k * hw + p] / s).sum()
            })
            .collect();
        relu(weighted_sum(a, &w, hw))
    });
}

#[test]
fn hires_cam_is_element_wise() {
    check(CamMethod::HiResCam, "conv2", |a, g, c, hw| {
        relu((0..hw).map(|p| (0..c).map(|k| g[k * hw + p] * a[k * hw + p]).sum()).collect())
    });
}

#[test]
fn layer_cam_keeps_positive_gradients() {
    check(CamMethod::LayerCam, "pool1", |a, g, c, hw| {
        relu((0..hw).map(|p| (0..c).map(|k| g[k * hw + p].max(0.0) * a[k * hw + p]).sum()).collect())
    });
}

#[test]
fn eigen_cam_projects_on_the_first_component() {
    for layer in ["pool1", "conv2"] {
        check(CamMethod::EigenCam, layer, |a, _, c, hw| relu(projection(a, c, hw)));
    }
    // Without ReLU the signed projection comes back, with the salient side positive.
    let (got, _) = run(CamConfig::new(CamMethod::EigenCam, ["conv2"]).with_relu(false), false);
    let want = reference("conv2", false, |a, _, c, hw| projection(a, c, hw));
    assert!(rel_err(&got, &want) < 1e-6);
    assert!(want.iter().any(|v| *v < 0.0));
}

#[test]
fn eigen_smooth_projects_the_weighted_activations() {
    let (got, _) = run(CamConfig::new(CamMethod::GradCam, ["pool1"]).with_eigen_smooth(true), false);
    let want = reference("pool1", false, |a, g, c, hw| {
        let weighted: Vec<f64> = (0..c)
            .flat_map(|k| {
                let w = spatial_sum(g, k, hw) / hw as f64;
                a[k * hw..(k + 1) * hw].iter().map(move |v| v * w)
            })
            .collect();
        relu(projection(&weighted, c, hw))
    });
    let err = rel_err(&got, &want);
    assert!(err < 1e-6, "{err}");
}

#[test]
fn tf_explain_style_uses_guided_gradients_of_the_probability_without_relu() {
    let config = CamConfig::tf_explain("conv2");
    assert_eq!(config.gradients, GradientFilter::Guided);
    let (got, _) = run(config, true);
    let want = reference("conv2", true, |a, g, c, hw| {
        let w: Vec<f64> = (0..c)
            .map(|k| {
                (0..hw)
                    .map(|p| {
                        let (ai, gi) = (a[k * hw + p], g[k * hw + p]);
                        if ai > 0.0 && gi > 0.0 {
                            gi
                        } else {
                            0.0
                        }
                    })
                    .sum::<f64>()
                    / hw as f64
            })
            .collect();
        weighted_sum(a, &w, hw)
    });
    let err = rel_err(&got, &want);
    assert!(err < 1e-6, "{err}");
    assert!(want.iter().any(|v| *v < 0.0), "the reference should keep negative values");
}

/// Score-CAM's maps `[N, T, hw]` flattened, from the formula: each channel upsampled, min-max
/// normalised, the image masked with it and run through `model` one masked image at a time.
fn score_cam_reference(model: &TinyCnn, input: &candle_core::Tensor, layer: &str) -> Vec<f64> {
    let x = flat(input);
    let px = SIZE * SIZE;
    let mut want = Vec::new();
    for (n, classes) in TARGETS.iter().enumerate() {
        let (a, dims) = activation(model, input, layer, n);
        let (c, h, w) = (dims[0], dims[1], dims[2]);
        let image = &x[n * 3 * px..(n + 1) * 3 * px];
        let mut outputs = Vec::new();
        for k in 0..c {
            let up = bilinear(&a[k * h * w..(k + 1) * h * w], h, w, SIZE, SIZE, true);
            let lo = up.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = up.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mask: Vec<f64> = up.iter().map(|v| (v - lo) / (hi - lo + 1e-8)).collect();
            let masked: Vec<f64> = image.iter().enumerate().map(|(i, v)| v * mask[i % px]).collect();
            let t = candle_core::Tensor::from_vec(masked, (1, 3, SIZE, SIZE), &candle_core::Device::Cpu).unwrap();
            let logits = gaze_engine::TapModel::forward(model, &t).unwrap();
            outputs.push(flat(&logits));
        }
        for &cls in classes {
            let s: Vec<f64> = outputs.iter().map(|o| o[cls]).collect();
            let wts = scored(&s, true);
            want.extend(relu(weighted_sum(&a, &wts, h * w)));
        }
    }
    want
}

/// Score-CAM through the crate on `model`, with the number of images the model ran.
fn score_cam(model: &TinyCnn, layer: &str, batch: usize) -> (Vec<f64>, usize) {
    let input = images(N, 5, DType::F64);
    let target = Target::per_image_lists(TARGETS.iter().map(|t| t.to_vec()).collect());
    let before = model.images_run.get();
    let cam = Cam::new(CamConfig::new(CamMethod::ScoreCam, [layer]).with_batch(batch)).unwrap();
    let attr = cam.explain(model, &input, &target).unwrap();
    (flat(&attr.values), model.images_run.get() - before)
}

#[test]
fn score_cam_weighs_channels_by_the_softmax_of_masked_scores() {
    let model = TinyCnn::new(11, DType::F64);
    let input = images(N, 5, DType::F64);
    for layer in ["pool1", "conv2"] {
        // A batch of 5 does not divide the 2·C masked inputs: the last chunk is partial.
        let (got, _) = score_cam(&model, layer, 5);
        let err = rel_err(&got, &score_cam_reference(&model, &input, layer));
        assert!(err < 1e-9, "{layer}: {err}");
    }
}

#[test]
fn score_cam_runs_the_zero_image_once_for_all_channels_that_are_zero() {
    let input = images(N, 5, DType::F64);
    let live = TinyCnn::new(11, DType::F64);
    let dead = TinyCnn::new(11, DType::F64).with_dead_channel(2);
    for layer in ["relu1", "pool1"] {
        // The model as it is has no channel that is zero everywhere on these images.
        for n in 0..N {
            let (a, dims) = activation(&live, &input, layer, n);
            let hw = dims[1] * dims[2];
            assert!(a.chunks(hw).all(|ch| ch.iter().any(|v| *v != 0.0)), "{layer}: a zero channel in image {n}");
            let (a, _) = activation(&dead, &input, layer, n);
            assert!(a[2 * hw..3 * hw].iter().all(|v| *v == 0.0), "{layer}: channel 2 is not dead");
        }
        let (_, live_runs) = score_cam(&live, layer, 3);
        let (got, dead_runs) = score_cam(&dead, layer, 3);
        // Channel 2 of both images becomes one run of the zero image.
        assert_eq!(dead_runs, live_runs - N + 1, "{layer}: images run");
        let err = rel_err(&got, &score_cam_reference(&dead, &input, layer));
        assert!(err < 1e-9, "{layer}: {err}");
    }
}

#[test]
fn ablation_cam_is_the_relative_score_drop() {
    let model = TinyCnn::new(11, DType::F64);
    let input = images(N, 5, DType::F64);
    // relu2 has 0 as its minimum (ablation by zeroing); conv2 is signed (ablation by min − 1e7).
    for layer in ["relu2", "conv2"] {
        let (got, _) = run(CamConfig::new(CamMethod::AblationCam, [layer]).with_batch(4), false);
        let mut want = Vec::new();
        let mut zeroed = false;
        for (n, classes) in TARGETS.iter().enumerate() {
            let (a, dims) = activation(&model, &input, layer, n);
            let (c, hw) = (dims[0], dims[1] * dims[2]);
            let min = a.iter().copied().fold(f64::INFINITY, f64::min);
            let value = if min == 0.0 { 0.0 } else { min - 1e7 };
            zeroed |= min == 0.0;
            let original = tail(&model, layer, std::slice::from_ref(&a), &dims).remove(0);
            let ablated: Vec<Vec<f64>> = (0..c)
                .map(|k| {
                    let mut b = a.clone();
                    b[k * hw..(k + 1) * hw].iter_mut().for_each(|v| *v = value);
                    b
                })
                .collect();
            let outs = tail(&model, layer, &ablated, &dims);
            for &cls in classes {
                let s = original[cls];
                let w: Vec<f64> = outs.iter().map(|o| (s - o[cls]) / s).collect();
                want.extend(relu(weighted_sum(&a, &w, hw)));
            }
        }
        assert_eq!(zeroed, layer == "relu2", "{layer}: the ablation value path");
        let err = rel_err(&got, &want);
        assert!(err < 1e-9, "{layer}: {err}");
        assert!(want.iter().any(|v| *v > 0.0));
    }
}
