//! RISE on hand-made models whose outputs depend on known image regions.

use candle_core::{DType, Device, Tensor};
use gaze_core::{Explainer, Result, Score, Target};
use gaze_engine::{TapModel, Taps};
use gaze_rise::{MaskPlan, Rise, RiseConfig};

/// Logit 0: the mean of the image over rows `r0..r1`, columns `c0..c1`; logit 1: the mean over the
/// whole image; logit 2: the mean of the top-left pixel over channels, doubled.
struct Regional {
    rows: (usize, usize),
    cols: (usize, usize),
    device: Device,
}

impl TapModel for Regional {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let region =
            x.narrow(2, self.rows.0, self.rows.1 - self.rows.0)?.narrow(3, self.cols.0, self.cols.1 - self.cols.0)?;
        let a = region.flatten_from(1)?.mean_keepdim(1)?;
        let b = x.flatten_from(1)?.mean_keepdim(1)?;
        let c = (x.narrow(2, 0, 1)?.narrow(3, 0, 1)?.flatten_from(1)?.mean_keepdim(1)? * 2.0)?;
        let logits = Tensor::cat(&[a, b, c], 1)?;
        taps.tap("logits", logits)
    }

    fn layer_names(&self) -> Vec<String> {
        vec!["logits".into()]
    }

    fn num_classes(&self) -> usize {
        3
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 24, 24]
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

fn model() -> Regional {
    Regional { rows: (8, 14), cols: (12, 18), device: Device::Cpu }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn images(n: usize, h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..n * 3 * h * w).map(|i| 0.5 + 0.5 * ((i * 7919 % 101) as f32 / 101.0)).collect();
    Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu).unwrap()
}

#[test]
fn the_map_is_the_score_weighted_mask_average() {
    let m = model();
    let x = images(1, 24, 24);
    let plan = MaskPlan::random(5, 4, 0.4, (24, 24), 3).unwrap();
    let config = RiseConfig { plan: Some(plan.clone()), batch: 2, fill: 0.25, ..RiseConfig::default() };
    let got = Rise::new(config).explain(&m, &x, &Target::classes([0, 2])).unwrap();
    assert_eq!(got.values.dims(), [1, 2, 1, 24, 24]);
    assert_eq!(got.meta.options["seed"], "plan");
    for (t, class) in [0usize, 2].into_iter().enumerate() {
        let mut want = vec![0f64; 24 * 24];
        for i in 0..plan.len() {
            let mask: Vec<f64> = plan.mask(i).into_iter().map(f64::from).collect();
            let mt = Tensor::from_vec(plan.mask(i), (1, 1, 24, 24), &Device::Cpu).unwrap();
            let copy = (x.broadcast_mul(&mt).unwrap()
                + (mt.affine(-0.25, 0.25).unwrap()).broadcast_as(x.shape()).unwrap())
            .unwrap();
            let score = values(&m.forward(&copy).unwrap())[class];
            for (wv, mv) in want.iter_mut().zip(&mask) {
                *wv += score * mv / (5.0 * 0.4);
            }
        }
        let got = values(&got.values.get(0).unwrap().get(t).unwrap());
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-5, "target {t}: {err}");
    }
}

#[test]
fn a_fixed_seed_reproduces_the_map() {
    let m = model();
    let x = images(1, 24, 24);
    let run = |seed| {
        let config = RiseConfig { masks: 40, grid: 5, seed, ..RiseConfig::default() };
        values(&Rise::new(config).explain(&m, &x, &Target::classes([0])).unwrap().values)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let m = model();
    let x = images(3, 24, 24);
    let rise = Rise::new(RiseConfig { masks: 30, grid: 4, batch: 7, ..RiseConfig::default() });
    let target = Target::per_image_lists(vec![vec![0, 1], vec![2, 0], vec![1, 1]]);
    let all = rise.explain(&m, &x, &target.clone().with_score(Score::Probability)).unwrap();
    for (i, list) in [vec![0, 1], vec![2, 0], vec![1, 1]].into_iter().enumerate() {
        let one = rise
            .explain(&m, &x.narrow(0, i, 1).unwrap(), &Target::classes(list).with_score(Score::Probability))
            .unwrap();
        assert_eq!(values(&all.values.get(i).unwrap()), values(&one.values.get(0).unwrap()));
    }
    let unbatched = Rise::new(RiseConfig { batch: 1, ..rise.config.clone() })
        .explain(&m, &x, &target.with_score(Score::Probability))
        .unwrap();
    let diff =
        values(&unbatched.values).iter().zip(values(&all.values)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-6, "{diff}");
}

#[test]
fn the_map_concentrates_where_the_output_looks() {
    let m = model();
    let x = Tensor::ones((1, 3, 24, 24), DType::F32, &Device::Cpu).unwrap();
    let config = RiseConfig { masks: 1000, grid: 6, seed: 1, batch: 250, ..RiseConfig::default() };
    let map = values(&Rise::new(config).explain(&m, &x, &Target::classes([0])).unwrap().values);
    let inside = |r: usize, c: usize| (8..14).contains(&r) && (12..18).contains(&c);
    // Far: more than one cell (4 pixels) away from the region.
    let far = |r: usize, c: usize| !(4..18).contains(&r) || !(8..22).contains(&c);
    let mean = |f: &dyn Fn(usize, usize) -> bool| {
        let v: Vec<f64> = (0..24 * 24).filter(|i| f(i / 24, i % 24)).map(|i| map[i]).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (m_in, m_far) = (mean(&inside), mean(&far));
    let peak = (0..map.len()).max_by(|&a, &b| map[a].total_cmp(&map[b])).unwrap();
    assert!(inside(peak / 24, peak % 24), "peak at {:?}", (peak / 24, peak % 24));
    let mut ranked: Vec<usize> = (0..map.len()).collect();
    ranked.sort_by(|&a, &b| map[b].total_cmp(&map[a]));
    let top_inside = ranked[..36].iter().filter(|&&i| inside(i / 24, i % 24)).count();
    println!("inside {m_in:.4}, far {m_far:.4}, top-36 inside {top_inside}");
    assert!(m_in > m_far + 0.05, "inside {m_in}, far {m_far}");
    assert!(top_inside >= 24, "{top_inside} of the 36 highest pixels are in the region");
}

#[test]
fn bad_options_name_the_value() {
    let m = model();
    let x = images(1, 24, 24);
    let t = Target::classes([0]);
    let e = Rise::new(RiseConfig { grid: 30, ..RiseConfig::default() }).explain(&m, &x, &t).unwrap_err().to_string();
    assert!(e.contains("--grid") && e.contains("1..=24"), "{e}");
    let plan = MaskPlan::random(2, 2, 0.5, (8, 8), 0).unwrap();
    let e = Rise::new(RiseConfig { plan: Some(plan), ..RiseConfig::default() })
        .explain(&m, &x, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("(8, 8)") && e.contains("(24, 24)"), "{e}");
    // A plan edited through its public fields is checked again, not trusted.
    let mut plan = MaskPlan::random(2, 4, 0.5, (24, 24), 0).unwrap();
    plan.cells.truncate(5);
    let e = Rise::new(RiseConfig { plan: Some(plan.clone()), ..RiseConfig::default() })
        .explain(&m, &x, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 cells for 2 shifts"), "{e}");
    let mut plan = MaskPlan::random(2, 4, 0.5, (24, 24), 0).unwrap();
    plan.keep = 0.0;
    let e = Rise::new(RiseConfig { plan: Some(plan), ..RiseConfig::default() }).explain(&m, &x, &t).unwrap_err();
    assert!(e.to_string().contains("--keep"), "{e}");
    let e = Rise::new(RiseConfig { masks: 3, batch: 0, ..RiseConfig::default() })
        .explain(&m, &x, &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--batch"), "{e}");
}

#[test]
fn a_fill_that_is_not_finite_is_refused() {
    let m = model();
    let x = images(1, 24, 24);
    for fill in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let cfg = RiseConfig { masks: 4, fill, ..RiseConfig::default() };
        assert!(cfg.check().is_err());
        let e = Rise::new(cfg).explain(&m, &x, &Target::classes([0])).unwrap_err().to_string();
        assert!(e.contains("RISE fill") && e.contains(&format!("`{fill}`")) && e.contains("finite"), "{e}");
    }
    assert!(RiseConfig { fill: -3.5, ..RiseConfig::default() }.check().is_ok());
}

#[test]
fn seeded_masks_drawn_per_batch_are_the_random_plans_masks() {
    let m = model();
    let x = images(2, 24, 24);
    let t = Target::classes([0, 2]);
    let seeded = RiseConfig { masks: 37, grid: 5, keep: 0.3, seed: 11, batch: 8, ..RiseConfig::default() };
    let plan = MaskPlan::random(37, 5, 0.3, (24, 24), 11).unwrap();
    let planned = RiseConfig { plan: Some(plan), ..seeded.clone() };
    let a = Rise::new(seeded).explain(&m, &x, &t).unwrap();
    let b = Rise::new(planned).explain(&m, &x, &t).unwrap();
    assert_eq!(values(&a.values), values(&b.values));
    assert_eq!(a.meta.options["masks"], "37");
}

/// A huge mask count used to draw every mask before the first forward pass (49 GB for 10⁹ masks
/// on a 7 × 7 grid, and an abort); the masks are drawn a batch at a time, so the run reaches the
/// model at once and stops where the model does.
#[test]
fn a_huge_mask_count_does_not_draw_every_mask_up_front() {
    let inner = model();
    let m = gaze_testkit::StopAfter::new(&inner, 3);
    let x = images(1, 24, 24);
    let config = RiseConfig { masks: 1_000_000_000_000, batch: 4, ..RiseConfig::default() };
    let err = Rise::new(config).explain(&m, &x, &Target::classes([0])).unwrap_err().to_string();
    assert_eq!(err, "stopped");
    assert_eq!(m.left(), 0, "the run went through the model's passes before it stopped");
}
