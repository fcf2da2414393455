//! The probe and the taps on a small chain model: gradients at taps equal tail-only gradients, a
//! batch equals its images one by one, several targets stack, and unknown layers list the valid ones.

use candle_core::{DType, Device, Tensor, Var};
use gaze_core::Target;
use gaze_engine::ops::{self, Conv2dConfig, Pool2dConfig};
use gaze_engine::{probe, Error, ProbeRequest, Result, TapModel, Taps};

/// conv(3→4, 3×3, pad 1) → relu → max pool 2 → conv(4→6, 3×3, stride 2) → relu → global average
/// pool → linear(6→5), in f64, every layer a cut point.
struct Chain {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    wf: Tensor,
    bf: Tensor,
    device: Device,
}

const NAMES: [&str; 7] = ["conv1", "relu1", "pool1", "conv2", "relu2", "gap", "fc"];

/// Deterministic pseudo-random values in [-scale, scale].
fn values(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

impl Chain {
    fn new(seed: u64) -> Self {
        Chain {
            w1: values(&[4, 3, 3, 3], seed, 0.5),
            b1: values(&[4], seed + 1, 0.1),
            w2: values(&[6, 4, 3, 3], seed + 2, 0.4),
            b2: values(&[6], seed + 3, 0.1),
            wf: values(&[5, 6], seed + 4, 0.8),
            bf: values(&[5], seed + 5, 0.1),
            device: Device::Cpu,
        }
    }

    fn stage(&self, i: usize, x: &Tensor, taps: &Taps) -> Result<Tensor> {
        match i {
            0 => ops::conv2d(x, &self.w1, Some(&self.b1), Conv2dConfig { padding: (1, 1), ..Default::default() }),
            1 | 4 => taps.relu(x),
            2 => ops::max_pool2d(x, Pool2dConfig::new(2, 2)),
            3 => ops::conv2d(x, &self.w2, Some(&self.b2), Conv2dConfig { stride: (2, 2), ..Default::default() }),
            5 => Ok(ops::adaptive_avg_pool2d(x, (1, 1))?.flatten_from(1)?),
            _ => ops::linear(x, &self.wf, Some(&self.bf)),
        }
    }

    fn run(&self, from: usize, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        for (i, name) in NAMES.iter().enumerate().skip(from) {
            x = self.stage(i, &x, taps)?;
            x = taps.tap(name, x)?;
        }
        Ok(x)
    }
}

impl TapModel for Chain {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        self.run(0, x.clone(), taps)
    }
    fn layer_names(&self) -> Vec<String> {
        NAMES.iter().map(|s| s.to_string()).collect()
    }
    fn num_classes(&self) -> usize {
        5
    }
    fn input_shape(&self) -> [usize; 3] {
        [3, 10, 14]
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn cut_points(&self) -> Vec<String> {
        self.layer_names()
    }
    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let i = NAMES
            .iter()
            .position(|n| *n == layer)
            .ok_or_else(|| Error::UnknownLayer { name: layer.into(), valid: self.layer_names() })?;
        let x = taps.tap(NAMES[i], activation.clone())?;
        self.run(i + 1, x, taps)
    }
}

fn images(n: usize, seed: u64) -> Tensor {
    values(&[n, 3, 10, 14], seed + 100, 1.0)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn gradient_at_a_tap_equals_the_gradient_of_the_tail_alone() {
    let model = Chain::new(1);
    let x = images(2, 1);
    let target = Target::per_image([3, 1]);
    let p = probe(&model, &x, &target, &ProbeRequest::layers(["pool1"])).unwrap();
    let g = p.gradients["pool1"].clone(); // [N, T, C, h, w]
    assert!(max_abs_diff(&g, &g.zeros_like().unwrap()) > 0.0, "the gradient is all zero");

    // The tail alone, started from the recorded activation made a variable.
    let act = Var::from_tensor(&p.activations["pool1"]).unwrap();
    let logits = model.forward_from("pool1", act.as_tensor(), &mut Taps::none()).unwrap();
    let picked = gaze_core::select(&logits, &p.targets).unwrap();
    let grads = picked.sum_all().unwrap().backward().unwrap();
    let expected = grads.get(act.as_tensor()).unwrap().unsqueeze(1).unwrap();
    assert!(max_abs_diff(&g, &expected) < 1e-12);
}

#[test]
fn a_batch_gives_the_same_gradients_as_its_images_one_by_one() {
    let model = Chain::new(2);
    let x = images(3, 2);
    let classes = [4, 0, 2];
    let request = ProbeRequest { input_gradient: true, ..ProbeRequest::layers(["relu1", "conv2"]) };
    let batch = probe(&model, &x, &Target::per_image(classes), &request).unwrap();
    for (n, &c) in classes.iter().enumerate() {
        let one = probe(&model, &x.narrow(0, n, 1).unwrap(), &Target::classes([c]), &request).unwrap();
        for layer in ["relu1", "conv2"] {
            let b = batch.gradients[layer].narrow(0, n, 1).unwrap();
            assert!(max_abs_diff(&b, &one.gradients[layer]) < 1e-12, "{layer}");
        }
        let b = batch.input_gradient.as_ref().unwrap().narrow(0, n, 1).unwrap();
        assert!(max_abs_diff(&b, one.input_gradient.as_ref().unwrap()) < 1e-12);
        let s = batch.scores.narrow(0, n, 1).unwrap();
        assert!(max_abs_diff(&s, &one.scores) < 1e-12);
    }
}

#[test]
fn several_targets_stack_along_the_second_dimension() {
    let model = Chain::new(3);
    let x = images(2, 3);
    let p = probe(&model, &x, &Target::top(3), &ProbeRequest::layers(["conv2"])).unwrap();
    assert_eq!(p.targets.len(), 2);
    assert_eq!(p.scores.dims(), &[2, 3]);
    let g = &p.gradients["conv2"];
    assert_eq!(g.dims()[..2], [2, 3]);
    for t in 0..3 {
        let single = Target::per_image(p.targets.iter().map(|l| l[t]));
        let one = probe(&model, &x, &single, &ProbeRequest::layers(["conv2"])).unwrap();
        let got = g.narrow(1, t, 1).unwrap();
        assert!(max_abs_diff(&got, &one.gradients["conv2"]) < 1e-12, "target {t}");
    }
    // Ranked best first.
    let s = p.scores.to_vec2::<f64>().unwrap();
    assert!(s.iter().all(|r| r[0] >= r[1] && r[1] >= r[2]));
}

#[test]
fn the_head_is_not_tracked_without_an_input_gradient() {
    let model = Chain::new(4);
    let x = images(1, 4);
    let mut taps = Taps::none().record("conv1").gradient("conv2");
    model.forward_taps(&x, &mut taps).unwrap();
    assert!(!taps.activation("conv1").unwrap().track_op(), "the head was tracked");
    assert!(taps.activation("conv2").unwrap().track_op());
}

#[test]
fn the_input_gradient_matches_finite_differences() {
    let model = Chain::new(5);
    let x = images(1, 5);
    let p = probe(&model, &x, &Target::classes([2]), &ProbeRequest::input()).unwrap();
    let g = p.input_gradient.unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let flat = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let f = |v: &[f64]| {
        let t = Tensor::from_slice(v, x.dims(), &Device::Cpu).unwrap();
        model.forward(&t).unwrap().get(0).unwrap().get(2).unwrap().to_scalar::<f64>().unwrap()
    };
    let eps = 1e-6;
    for i in (0..flat.len()).step_by(7) {
        let mut plus = flat.clone();
        plus[i] += eps;
        let mut minus = flat.clone();
        minus[i] -= eps;
        let fd = (f(&plus) - f(&minus)) / (2.0 * eps);
        assert!((fd - g[i]).abs() < 1e-6, "element {i}: fd {fd}, analytic {}", g[i]);
    }
}

#[test]
fn probability_scores_are_softmax_of_the_logits() {
    let model = Chain::new(7);
    let x = images(2, 7);
    let target = Target::classes([1, 3]).with_score(gaze_core::Score::Probability);
    let p = probe(&model, &x, &target, &ProbeRequest::input()).unwrap();
    let sums = p.outputs.sum(1).unwrap().to_vec1::<f64>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12));
    // The probabilities of all classes sum to one, so their input gradients sum to zero.
    let all = Target::classes(0..5).with_score(gaze_core::Score::Probability);
    let p = probe(&model, &x, &all, &ProbeRequest::input()).unwrap();
    let total = p.input_gradient.unwrap().sum(1).unwrap();
    assert!(max_abs_diff(&total, &total.zeros_like().unwrap()) < 1e-12);
}

#[test]
fn unknown_layers_and_bad_targets_are_clear_errors() {
    let model = Chain::new(6);
    let x = images(1, 6);
    let err = probe(&model, &x, &Target::top_class(), &ProbeRequest::layers(["conv9"])).unwrap_err().to_string();
    assert!(err.contains("conv9") && err.contains("conv1, relu1, pool1, conv2, relu2, gap, fc"), "{err}");
    let err = probe(&model, &x, &Target::classes([5]), &ProbeRequest::input()).unwrap_err().to_string();
    assert!(err.contains("class index 5") && err.contains("5 classes"), "{err}");
    assert_eq!(x.dtype(), DType::F64);
}
