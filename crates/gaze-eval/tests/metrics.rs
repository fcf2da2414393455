//! The metrics give the known answers on hand-made maps and models, batch or not.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use gaze_core::{Result, Score, Target};
use gaze_engine::ops::{self, Conv2dConfig};
use gaze_engine::{probe, ProbeRequest, TapModel, Taps};
use gaze_eval::{
    evaluate, randomize_weights, sanity_check, CausalMetric, EvaluationConfig, PointingGame, Randomization, Rng,
    Substrate,
};

const SIDE: usize = 8;

/// The object: the 4×4 square at rows 1..5, columns 2..6 of an 8×8 image.
fn mask() -> Vec<f32> {
    (0..SIDE * SIDE)
        .map(|i| if (1..5).contains(&(i / SIDE)) && (2..6).contains(&(i % SIDE)) { 1.0 } else { 0.0 })
        .collect()
}

fn random_map(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed, 0);
    (0..SIDE * SIDE).map(|_| rng.unit() as f32).collect()
}

fn tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A hand-made model: logit 0 is the mean of the input over the object (every channel), logit 1 is
/// the mean over the rest of the image.
fn region_model(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let m = tensor(mask(), &[1, 1, h, w]);
    let inside = (x.broadcast_mul(&m)?.sum((1, 2, 3))? / (16.0 * c as f64))?;
    let outside = (x.broadcast_mul(&(1.0 - &m)?)?.sum((1, 2, 3))? / (48.0 * c as f64))?;
    let logits = Tensor::stack(&[inside, outside], 1)?;
    assert_eq!(logits.dims(), &[b, 2]);
    Ok(logits)
}

fn ones(n: usize) -> Tensor {
    Tensor::ones((n, 3, SIDE, SIDE), DType::F32, &Device::Cpu).unwrap()
}

fn deletion() -> CausalMetric {
    CausalMetric::deletion().with_steps(16).with_score(Score::Logit)
}

#[test]
fn deleting_in_the_order_of_a_perfect_map_loses_the_score_fastest() {
    let perfect = deletion().run(region_model, &ones(1), &tensor(mask(), &[1, SIDE, SIDE]), &[vec![0]]).unwrap();
    // 4 pixels per step: the object is gone after 4 of 16 steps.
    assert_eq!(perfect.curve(0, 0).unwrap()[..6], [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]);
    assert_eq!(perfect.auc.values, vec![0.125]);
    for seed in 0..5 {
        let random =
            deletion().run(region_model, &ones(1), &tensor(random_map(seed), &[1, SIDE, SIDE]), &[vec![0]]).unwrap();
        assert!(random.auc.values[0] > 0.25, "seed {seed}: {:?}", random.auc.values);
    }
    // The inverted map deletes the object last.
    let inverted: Vec<f32> = mask().iter().map(|m| 1.0 - m).collect();
    let worst = deletion().run(region_model, &ones(1), &tensor(inverted, &[1, SIDE, SIDE]), &[vec![0]]).unwrap();
    assert_eq!(worst.auc.values, vec![0.875]);
}

#[test]
fn inserting_in_the_order_of_a_perfect_map_recovers_the_score_fastest() {
    let insertion = CausalMetric::insertion().with_steps(16).with_score(Score::Logit).with_substrate(Substrate::Zeros);
    let perfect = insertion.run(region_model, &ones(1), &tensor(mask(), &[1, SIDE, SIDE]), &[vec![0]]).unwrap();
    assert_eq!(perfect.auc.values, vec![0.875]);
    let random = insertion.run(region_model, &ones(1), &tensor(random_map(1), &[1, SIDE, SIDE]), &[vec![0]]).unwrap();
    assert!(random.auc.values[0] < perfect.auc.values[0]);
    assert_eq!(perfect.fractions.len(), 17);
    assert_eq!(perfect.fractions[4], 0.25);
}

#[test]
fn a_batch_gives_the_same_curves_as_its_images_one_by_one() {
    // Two images of different brightness, two targets each with their own maps.
    let inputs = Tensor::cat(&[ones(1), (ones(1) * 2.0).unwrap()], 0).unwrap();
    let maps: Vec<f32> = [mask(), random_map(3), random_map(4), mask()].concat();
    let maps = tensor(maps, &[2, 2, SIDE, SIDE]);
    let targets = vec![vec![0, 1], vec![1, 0]];
    let metric = deletion().with_substrate(Substrate::Constant(-1.0)).with_score(Score::Probability);
    let whole = metric.clone().with_batch(1000).run(region_model, &inputs, &maps, &targets).unwrap();
    let small = metric.clone().with_batch(3).run(region_model, &inputs, &maps, &targets).unwrap();
    assert_eq!(whole.curves, small.curves);
    for n in 0..2 {
        let one = metric
            .run(region_model, &inputs.narrow(0, n, 1).unwrap(), &maps.narrow(0, n, 1).unwrap(), &targets[n..n + 1])
            .unwrap();
        for t in 0..2 {
            assert_eq!(one.curve(0, t).unwrap(), whole.curve(n, t).unwrap(), "image {n}, target {t}");
            assert_eq!(one.auc.get(0, t), whole.auc.get(n, t));
        }
    }
}

#[test]
fn causal_metrics_check_their_inputs() {
    let m = tensor(mask(), &[1, SIDE, SIDE]);
    let err = deletion().run(region_model, &ones(1), &m, &[vec![2]]).unwrap_err().to_string();
    assert!(err.contains("class index 2") && err.contains("2 classes"), "{err}");
    let err = deletion().run(region_model, &ones(2), &m, &[vec![0]]).unwrap_err().to_string();
    assert!(err.contains("[2, T, 8, 8]"), "{err}");
    let err = deletion().with_steps(0).run(region_model, &ones(1), &m, &[vec![0]]).unwrap_err().to_string();
    assert!(err.contains("0 steps"), "{err}");
}

#[test]
fn evaluate_runs_every_metric_on_one_set_of_maps() {
    let m = tensor(mask(), &[1, SIDE, SIDE]);
    let config = EvaluationConfig {
        pointing: PointingGame { tolerance: 0.0 },
        deletion: Some(deletion()),
        insertion: Some(CausalMetric::insertion().with_steps(16).with_score(Score::Logit)),
    };
    let e = evaluate(region_model, &ones(1), &m, &m, &[vec![0]], &config).unwrap();
    assert_eq!(e.pointing.values, vec![1.0]);
    assert_eq!(e.energy.values, vec![1.0]);
    assert_eq!(e.deletion.unwrap().auc.values, vec![0.125]);
    assert!(e.insertion.unwrap().auc.values[0] > 0.5);
}

/// A small convolutional network for the sanity checks: conv 3→8 (3×3), ReLU, global average pool,
/// linear 8→3.
struct Tiny {
    weights: HashMap<String, Tensor>,
}

impl Tiny {
    fn new(seed: u64) -> Self {
        let base: HashMap<String, Tensor> = [
            ("conv.weight", vec![8, 3, 3, 3]),
            ("conv.bias", vec![8]),
            ("fc.weight", vec![3, 8]),
            ("fc.bias", vec![3]),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), Tensor::zeros(s, DType::F32, &Device::Cpu).unwrap()))
        .collect();
        // "Trained" weights: any fixed draw will do for a model whose maps must change.
        let layers = ["conv".to_string(), "fc".to_string()];
        Tiny { weights: randomize_weights(&base, &layers, seed).unwrap() }
    }

    fn w(&self, key: &str) -> &Tensor {
        &self.weights[key]
    }
}

impl TapModel for Tiny {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let cfg = Conv2dConfig { padding: (1, 1), ..Default::default() };
        let y = taps.tap("conv", ops::conv2d(x, self.w("conv.weight"), Some(self.w("conv.bias")), cfg)?)?;
        let y = ops::adaptive_avg_pool2d(&taps.relu(&y)?, (1, 1))?.flatten_from(1)?;
        taps.tap("fc", ops::linear(&y, self.w("fc.weight"), Some(self.w("fc.bias")))?)
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["conv".into(), "fc".into()]
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn input_shape(&self) -> [usize; 3] {
        [3, 12, 12]
    }
    fn device(&self) -> &Device {
        &Device::Cpu
    }
}

/// Saliency: the largest absolute input gradient over channels, `[N, T, H, W]`.
fn saliency(model: &Tiny, input: &Tensor, classes: &[usize]) -> Result<Tensor> {
    let p = probe(model, input, &Target::per_image(classes.iter().copied()), &ProbeRequest::input())?;
    Ok(p.input_gradient.expect("asked for").abs()?.max(2)?)
}

fn images() -> Tensor {
    let mut rng = Rng::new(99, 0);
    let v: Vec<f32> = (0..4 * 3 * 12 * 12).map(|_| rng.range(-1.0, 1.0) as f32).collect();
    tensor(v, &[4, 3, 12, 12])
}

#[test]
fn saliency_changes_under_cascading_randomisation() {
    let model = Tiny::new(1);
    let x = images();
    let classes = vec![0, 1, 2, 0];
    let layers = vec!["fc".to_string(), "conv".to_string()];
    let report = sanity_check(&layers, Randomization::Cascading, |randomised| {
        let m = Tiny { weights: randomize_weights(&model.weights, randomised, 1234)? };
        saliency(&m, &x, &classes)
    })
    .unwrap();
    assert_eq!(report.steps.len(), 2);
    assert_eq!(report.steps[1].layers, layers);
    let last = &report.steps[1];
    assert!(last.spearman_abs.mean() < 0.5, "{:?}", last.spearman_abs);
    assert!(last.ssim.mean() < 0.5, "{:?}", last.ssim);
    assert!(report.insensitive_steps(0.9).is_empty());
}

#[test]
fn a_method_that_ignores_the_model_fails_the_sanity_check() {
    let x = images();
    // An "edge detector" of the input alone: the same maps whatever the weights.
    let layers = vec!["fc".to_string(), "conv".to_string()];
    let report = sanity_check(&layers, Randomization::Independent, |_| Ok(x.sum(1)?.unsqueeze(1)?)).unwrap();
    assert_eq!(report.steps[0].layers, vec!["fc".to_string()]);
    assert_eq!(report.steps[1].layers, vec!["conv".to_string()]);
    for step in &report.steps {
        assert!(step.spearman.values.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        assert!(step.ssim.values.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }
    assert_eq!(report.insensitive_steps(0.99).len(), 2);
}

#[test]
fn randomisation_touches_only_the_named_layers_and_is_reproducible() {
    let model = Tiny::new(2);
    let fc = vec!["fc".to_string()];
    let a = randomize_weights(&model.weights, &fc, 5).unwrap();
    let b = randomize_weights(&model.weights, &["conv".to_string(), "fc".to_string()], 5).unwrap();
    let vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(vec(&a["conv.weight"]), vec(&model.weights["conv.weight"]));
    assert_ne!(vec(&a["fc.weight"]), vec(&model.weights["fc.weight"]));
    assert_eq!(vec(&a["fc.weight"]), vec(&b["fc.weight"]), "a layer's draw does not depend on the others");
    // PyTorch's default range: 1/√fan_in with fan_in = 8 for the classifier.
    assert!(vec(&a["fc.weight"]).iter().all(|v| v.abs() <= 1.0 / 8f32.sqrt()));
    let err = randomize_weights(&model.weights, &["conv2".to_string()], 5).unwrap_err().to_string();
    assert!(err.contains("conv2") && err.contains("conv, fc"), "{err}");
}

#[test]
fn sanity_checks_reject_maps_that_change_shape() {
    let layers = vec!["fc".to_string()];
    let err = sanity_check(&layers, Randomization::Cascading, |r| {
        let n = if r.is_empty() { 2 } else { 1 };
        Ok(Tensor::zeros((n, 8, 8), DType::F32, &Device::Cpu)?)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("like the original maps"), "{err}");
}

#[test]
fn sanity_checks_reject_maps_smaller_than_the_ssim_window() {
    let layers = vec!["fc".to_string()];
    let mut calls = 0;
    let err = sanity_check(&layers, Randomization::Cascading, |_| {
        calls += 1;
        Ok(Tensor::zeros((2, 6, 8), DType::F32, &Device::Cpu)?)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("original maps") && err.contains("at least 7×7") && err.contains("[2, 1, 6, 8]"), "{err}");
    assert!(!err.contains("ssim inputs"), "{err}");
    assert_eq!(calls, 1, "the randomised maps are not computed once the original maps are refused");
}
