//! Occlusion against a written-out Captum definition and a literal tf-explain loop, and the
//! incremental re-computation against the full one.

mod common;

use candle_core::{DType, Tensor};
use common::{images, naive_captum, rel_err, values, Branchy, Vgg};
use gaze_core::{Explainer, Score, Target};
use gaze_engine::ops;
use gaze_engine::TapModel;
use gaze_occlusion::incremental::{full_forward, IncrementalConfig};
use gaze_occlusion::{Fill, IncrementalOcclusion, Occlusion, OcclusionConfig, OcclusionStyle};

#[test]
fn descriptions_match_the_models_forward_passes() {
    let x = images(1, 2, 20, 24, DType::F64);
    let vgg = Vgg::new(7, DType::F64);
    assert!(rel_err(&values(&full_forward(&vgg, &x).unwrap()), &values(&vgg.forward(&x).unwrap())) < 1e-12);
    let x = images(2, 2, 15, 13, DType::F64);
    let net = Branchy::new(8, DType::F64);
    assert!(rel_err(&values(&full_forward(&net, &x).unwrap()), &values(&net.forward(&x).unwrap())) < 1e-12);
}

#[test]
fn captum_style_matches_the_definition() {
    // Non-square images, strides that do not divide (D − w): the last windows are cut off.
    let model = Vgg::new(3, DType::F64);
    let x = images(4, 2, 20, 24, DType::F64);
    let classes = vec![vec![1, 3], vec![1, 3]];
    let config = OcclusionConfig::captum((5, 6), (3, 4)).with_fill(Fill::Mean).with_batch(7);
    let got = Occlusion::new(config).explain(&model, &x, &Target::classes([1, 3])).unwrap();
    assert_eq!(got.values.dims(), [2, 2, 3, 20, 24]);
    assert_eq!(got.targets, classes);
    let baseline = Fill::Mean.baseline(&x).unwrap();
    let want = naive_captum(&model, &x, &baseline, &classes, [3, 5, 6], [1, 3, 4], false);
    let err = rel_err(&values(&got.values), &want);
    assert!(err < 1e-6, "relative error {err}");
}

#[test]
fn channel_windows_and_probabilities_match_the_definition() {
    let model = Branchy::new(5, DType::F64);
    let x = images(6, 1, 15, 13, DType::F64);
    let config = OcclusionConfig {
        window: (4, 3),
        window_channels: Some(2),
        stride: Some((3, 2)),
        stride_channels: Some(1),
        fill: Some(Fill::PerChannel(vec![0.5, -1.0, 2.0])),
        ..OcclusionConfig::default()
    };
    let target = Target::classes([2]).with_score(Score::Probability);
    let got = Occlusion::new(config).explain(&model, &x, &target).unwrap();
    let baseline = Fill::PerChannel(vec![0.5, -1.0, 2.0]).baseline(&x).unwrap();
    let want = naive_captum(&model, &x, &baseline, &[vec![2]], [2, 4, 3], [1, 3, 2], true);
    let err = rel_err(&values(&got.values), &want);
    assert!(err < 1e-6, "relative error {err}");
    assert_eq!(got.meta.options["window-channels"], "2");
    assert_eq!(got.meta.score, "probability");
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let model = Vgg::new(11, DType::F32);
    let x = images(12, 3, 20, 24, DType::F32);
    let target = Target::per_image_lists(vec![vec![0, 4], vec![2, 2], vec![3, 1]]);
    let occ = Occlusion::new(OcclusionConfig::captum((6, 6), (4, 4)).with_batch(5));
    let all = occ.explain(&model, &x, &target).unwrap();
    let inc = IncrementalOcclusion(Occlusion::new(OcclusionConfig::captum((6, 6), (4, 4)).with_batch(16)));
    let all_inc = inc.explain(&model, &x, &target).unwrap();
    let lists = [vec![0, 4], vec![2, 2], vec![3, 1]];
    for (i, list) in lists.iter().enumerate() {
        let one = occ.explain(&model, &x.narrow(0, i, 1).unwrap(), &Target::classes(list.clone())).unwrap();
        // Equal up to float rounding: the engine's kernels may sum in another order for other batch
        // sizes.
        assert!(rel_err(&values(&all.values.get(i).unwrap()), &values(&one.values.get(0).unwrap())) < 1e-5);
        let one_inc = inc.explain(&model, &x.narrow(0, i, 1).unwrap(), &Target::classes(list.clone())).unwrap();
        assert!(rel_err(&values(&all_inc.values.get(i).unwrap()), &values(&one_inc.values.get(0).unwrap())) < 1e-5);
        assert_eq!(all.targets[i], one.targets[0]);
    }
    // The batch size changes nothing but the grouping of forward passes.
    let single =
        Occlusion::new(OcclusionConfig::captum((6, 6), (4, 4)).with_batch(1)).explain(&model, &x, &target).unwrap();
    assert!(rel_err(&values(&single.values), &values(&all.values)) < 1e-5);
}

fn check_incremental<M: TapModel + gaze_occlusion::Incremental>(
    model: &M,
    x: &Tensor,
    config: OcclusionConfig,
    tolerance: f64,
) -> gaze_occlusion::IncrementalReport {
    let target = Target::top(2);
    let occ = Occlusion::new(config);
    let full = occ.explain(model, x, &target).unwrap();
    let (inc, report) = occ.explain_incremental(model, x, &target).unwrap();
    assert_eq!(full.targets, inc.targets);
    let err = rel_err(&values(&inc.values), &values(&full.values));
    assert!(err < tolerance, "relative error {err} with {:?}", occ.config);
    report
}

#[test]
fn incremental_equals_full_recomputation_on_a_chain() {
    let model = Vgg::new(21, DType::F64);
    let x = images(22, 2, 20, 24, DType::F64);
    for (window, stride, threshold) in [
        ((4, 4), (4, 4), 0.5),
        ((5, 3), (2, 3), 1.0),
        ((1, 1), (1, 1), 0.5),
        ((11, 13), (5, 6), 0.5),
        ((4, 4), (3, 3), 0.0),
    ] {
        let mut config = OcclusionConfig::captum(window, stride).with_fill(Fill::Constant(0.3)).with_batch(9);
        config.incremental = IncrementalConfig { full_threshold: threshold };
        check_incremental(&model, &x, config, 1e-9);
    }
    // tf-explain's style runs on the same occluded copies.
    let config = OcclusionConfig::tf_explain(7).with_fill(Fill::Blur { sigma: 1.0 });
    check_incremental(&model, &x, config, 1e-9);
}

#[test]
fn incremental_equals_full_recomputation_with_strides_dilation_and_residuals() {
    let model = Branchy::new(31, DType::F64);
    let x = images(32, 2, 15, 13, DType::F64);
    for (window, stride, channels) in [((3, 3), (2, 2), None), ((1, 1), (1, 1), Some(1)), ((6, 5), (3, 5), None)] {
        let mut config = OcclusionConfig::captum(window, stride).with_fill(Fill::Mean).with_batch(6);
        config.window_channels = channels;
        config.incremental = IncrementalConfig { full_threshold: 0.9 };
        check_incremental(&model, &x, config, 1e-9);
    }
}

#[test]
fn a_full_threshold_outside_zero_to_one_is_refused() {
    let model = Vgg::new(21, DType::F64);
    let x = images(22, 1, 20, 24, DType::F64);
    for threshold in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
        let mut config = OcclusionConfig::captum((4, 4), (4, 4));
        config.incremental = IncrementalConfig { full_threshold: threshold };
        let err =
            Occlusion::new(config).explain_incremental(&model, &x, &Target::classes([1])).unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{threshold}`")) && err.contains("full threshold") && err.contains("[0, 1]"),
            "{err}"
        );
    }
}

#[test]
fn incremental_in_f32_agrees_up_to_rounding() {
    let model = Vgg::new(41, DType::F32);
    let x = images(42, 1, 20, 24, DType::F32);
    check_incremental(&model, &x, OcclusionConfig::captum((6, 6), (3, 3)), 1e-4);
}

#[test]
fn the_report_gives_the_share_of_each_stage_recomputed() {
    let model = Vgg::new(51, DType::F32);
    let x = images(52, 1, 20, 24, DType::F32);
    let config = OcclusionConfig::captum((4, 4), (4, 4));
    let report = check_incremental(&model, &x, config, 1e-4);
    assert_eq!(report.samples, 5 * 6);
    let share: Vec<(&str, f64)> = report.stages.iter().map(|s| (s.name.as_str(), s.share)).collect();
    // A 4×4 patch grows to 6×6 through conv1 (and relu1), 8×8 through conv2, 4×4 after pool1 (or
    // 5×5 when the patch straddles two pooling windows; here patches align with them), 6×6
    // through conv3 and 3×3 (straddling) after pool2.
    let expect = [36.0 / 480.0, 36.0 / 480.0, 64.0 / 480.0, 64.0 / 480.0, 16.0 / 120.0];
    for (i, e) in expect.iter().enumerate() {
        assert!((share[i].1 - e).abs() < 1e-12, "{}: {} vs {e}", share[i].0, share[i].1);
    }
    assert!((share[5].1 - 36.0 / 120.0).abs() < 1e-12, "{:?}", share[5]);
    assert!((share[6].1 - 9.0 / 30.0).abs() < 1e-12, "{:?}", share[6]);
}

/// tf-explain's `get_sensitivity_map`, loop for loop (its row/column swap included), with the
/// 127.5 fill; the resize is PyTorch's bilinear with `align_corners = False`, which cv2's
/// `INTER_LINEAR` equals when enlarging.
fn literal_tf_explain<M: TapModel>(model: &M, image: &Tensor, class: usize, ps: usize) -> Vec<f64> {
    let (_, h, w) = image.dims3().unwrap();
    let (gh, gw) = (h.div_ceil(ps), w.div_ceil(ps));
    let mut patches = Vec::new();
    for top_left_x in (0..h).step_by(ps) {
        for top_left_y in (0..w).step_by(ps) {
            let mut mask = vec![0f64; h * w];
            for r in top_left_y..(top_left_y + ps).min(h) {
                for c in top_left_x..(top_left_x + ps).min(w) {
                    mask[r * w + c] = 1.0;
                }
            }
            let m = Tensor::from_vec(mask, (1, h, w), image.device()).unwrap().to_dtype(image.dtype()).unwrap();
            let grey = (m.ones_like().unwrap() * 127.5).unwrap();
            let kept = image.broadcast_mul(&(1.0 - &m).unwrap()).unwrap();
            patches.push(kept.broadcast_add(&(grey * &m).unwrap()).unwrap());
        }
    }
    let predictions = model.forward(&Tensor::stack(&patches, 0).unwrap()).unwrap();
    let predictions = ops::softmax_last_dim(&predictions).unwrap();
    let mut map = vec![0f64; gh * gw];
    let mut k = 0;
    for index_x in 0..gw {
        for index_y in 0..gh {
            let p = values(&predictions.get(k).unwrap())[class];
            map[index_y * gw + index_x] = 1.0 - p;
            k += 1;
        }
    }
    let map = Tensor::from_vec(map, (1, 1, gh, gw), image.device()).unwrap();
    values(&ops::upsample_bilinear2d(&map, (h, w), false).unwrap())
}

#[test]
fn tf_explain_style_matches_tf_explain_on_square_images() {
    let model = Branchy::new(61, DType::F64);
    let x = (images(62, 2, 14, 14, DType::F64) * 255.0).unwrap();
    let target = Target::classes([1]).with_score(Score::Probability);
    let got = Occlusion::new(OcclusionConfig::tf_explain(5)).explain(&model, &x, &target).unwrap();
    assert_eq!(got.values.dims(), [2, 1, 1, 14, 14]);
    for i in 0..2 {
        let want = literal_tf_explain(&model, &x.get(i).unwrap(), 1, 5);
        let err = rel_err(&values(&got.values.get(i).unwrap()), &want);
        assert!(err < 1e-6, "image {i}: relative error {err}");
    }
}

#[test]
fn tf_explain_style_keeps_non_square_maps_in_place() {
    // Cell (i, j) of the map is the patch at row i, column j, and the map has the image's shape.
    let model = Vgg::new(71, DType::F64);
    let x = images(72, 1, 20, 24, DType::F64);
    let target = Target::classes([0]);
    let config = OcclusionConfig::tf_explain(8).with_fill(Fill::Constant(0.0));
    let got = Occlusion::new(config).explain(&model, &x, &target).unwrap();
    assert_eq!(got.values.dims(), [1, 1, 1, 20, 24]);
    let (gh, gw) = (3, 3);
    let mut cells = Vec::new();
    for i in 0..gh {
        for j in 0..gw {
            let mut mask = vec![1f64; 20 * 24];
            for r in i * 8..(i * 8 + 8).min(20) {
                for c in j * 8..(j * 8 + 8).min(24) {
                    mask[r * 24 + c] = 0.0;
                }
            }
            let m = Tensor::from_vec(mask, (1, 1, 20, 24), &candle_core::Device::Cpu).unwrap();
            let logits = model.forward(&x.broadcast_mul(&m).unwrap()).unwrap();
            cells.push(1.0 - values(&logits)[0]);
        }
    }
    let map = Tensor::from_vec(cells, (1, 1, gh, gw), &candle_core::Device::Cpu).unwrap();
    let want = values(&ops::upsample_bilinear2d(&map, (20, 24), false).unwrap());
    assert!(rel_err(&values(&got.values), &want) < 1e-6);
}

#[test]
fn bad_options_name_the_value_and_what_is_valid() {
    let model = Vgg::new(1, DType::F32);
    let x = images(2, 1, 20, 24, DType::F32);
    let t = Target::top_class();
    let run = |config: OcclusionConfig| Occlusion::new(config).explain(&model, &x, &t).unwrap_err().to_string();
    let e = run(OcclusionConfig::captum((21, 4), (2, 2)));
    assert!(e.contains("`21`") && e.contains("1..=20"), "{e}");
    let e = run(OcclusionConfig::captum((4, 4), (2, 5)));
    assert!(e.contains("stride (width)") && e.contains("`5`"), "{e}");
    let e = run(OcclusionConfig { stride: Some((2, 2)), ..OcclusionConfig::tf_explain(4) });
    assert!(e.contains("--stride") && e.contains("4,4"), "{e}");
    let e = run(OcclusionConfig::captum((4, 4), (2, 2)).with_batch(0));
    assert!(e.contains("--batch"), "{e}");
    let e = Occlusion::default().explain(&model, &x.get(0).unwrap(), &t).unwrap_err().to_string();
    assert!(e.contains("[N, C, H, W]"), "{e}");
    let e = OcclusionStyle::parse("keras").unwrap_err().to_string();
    assert!(e.contains("`keras`") && e.contains("captum or tf-explain"), "{e}");
    assert_eq!(OcclusionStyle::parse("tf-explain").unwrap(), OcclusionStyle::TfExplain);
    assert_eq!(gaze_occlusion::parse_pair("--window", "16,8").unwrap(), (16, 8));
    assert!(gaze_occlusion::parse_pair("--window", "0,8").is_err());
}

/// A description whose geometry disagrees with what its stage computes.
struct Wrong(Vgg);

impl gaze_occlusion::Incremental for Wrong {
    fn stages(&self) -> Vec<gaze_occlusion::incremental::Stage> {
        let mut s = self.0.stages();
        s[0].geometry = gaze_occlusion::incremental::Geometry::square(5, 1, 2);
        s
    }
    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> gaze_core::Result<Tensor> {
        self.0.run_stage(index, inputs)
    }
    fn head(&self, features: &Tensor) -> gaze_core::Result<Tensor> {
        self.0.head(features)
    }
}

#[test]
fn a_wrong_description_is_an_error_naming_the_stage() {
    let model = Wrong(Vgg::new(1, DType::F32));
    let x = images(2, 1, 20, 24, DType::F32);
    let e = Occlusion::new(OcclusionConfig::captum((3, 3), (3, 3)))
        .explain_incremental(&model, &x, &Target::top_class())
        .unwrap_err()
        .to_string();
    assert!(e.contains("stage `conv1`"), "{e}");
}
