//! The fused batch normalisation and ReLU, and the fused sum and ReLU, against the ops in
//! sequence, in every ReLU mode, and against central finite differences.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{check_gradients, constant, random, values, var};
use gaze_engine::ops::{add_relu, batch_norm, batch_norm_relu, relu, ReluMode};

const MODES: [ReluMode; 3] = [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet];
const EPS: f64 = 1e-5;

fn var_of(v: Vec<f64>, shape: &[usize]) -> Var {
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

/// Batch-norm operands for `[3, 4, 5, 6]` whose normalised values are exactly 0 on all of channel
/// 1 (weight 0, bias 0) and wherever the input is 0 on channel 2 (mean 0, bias 0), with inputs of
/// exactly 0 on a third of channel 2: the rules at 0 are exercised.
fn bn_operands(seed: u64) -> [Var; 5] {
    let shape = [3, 4, 5, 6];
    let mut x = values(&random(&shape, seed));
    for (i, v) in x.iter_mut().enumerate() {
        if (i / 30) % 4 == 2 && i % 3 == 0 {
            *v = 0.0;
        }
    }
    let mut weight = values(&random(&[4], seed + 1));
    let mut bias = values(&random(&[4], seed + 2));
    let mut mean = values(&random(&[4], seed + 3));
    let var: Vec<f64> = values(&random(&[4], seed + 4)).iter().map(|v| v * v + 0.5).collect();
    weight[1] = 0.0;
    bias[1] = 0.0;
    bias[2] = 0.0;
    mean[2] = 0.0;
    [var_of(x, &shape), var_of(weight, &[4]), var_of(bias, &[4]), var_of(mean, &[4]), var_of(var, &[4])]
}

/// The output and the gradient of `Σ y ⊙ r` with respect to each variable.
fn run(y: Tensor, vars: &[&Var], r: &Tensor) -> Vec<Vec<f64>> {
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![values(&y)];
    for v in vars {
        out.push(values(grads.get(v.as_tensor()).expect("a gradient for every variable")));
    }
    out
}

#[test]
fn batch_norm_relu_equals_batch_norm_then_relu_in_every_mode_bit_for_bit() {
    let [x, w, b, m, v] = bn_operands(100);
    let t = |v: &Var| v.as_tensor().clone();
    let probe = batch_norm(&t(&x), &t(&w), &t(&b), &t(&m), &t(&v), EPS).unwrap();
    let y = values(&probe);
    assert!(y.iter().filter(|v| **v == 0.0).count() > 30, "outputs of exactly 0 beyond channel 1");
    assert!(y.iter().any(|v| *v < 0.0) && y.iter().any(|v| *v > 0.0), "outputs of both signs");
    let r = random(probe.dims(), 105);
    for mode in MODES {
        let fused =
            run(batch_norm_relu(&t(&x), &t(&w), &t(&b), &t(&m), &t(&v), EPS, mode).unwrap(), &[&x, &w, &b, &m, &v], &r);
        let unfused = run(
            relu(&batch_norm(&t(&x), &t(&w), &t(&b), &t(&m), &t(&v), EPS).unwrap(), mode).unwrap(),
            &[&x, &w, &b, &m, &v],
            &r,
        );
        for (what, (a, e)) in ["y", "dx", "dweight", "dbias", "dmean", "dvar"].iter().zip(fused.iter().zip(&unfused)) {
            assert_eq!(a, e, "{mode:?}: {what}");
        }
    }
}

#[test]
fn batch_norm_relu_equals_batch_norm_then_relu_in_f32_with_constant_parameters() {
    let [x, w, b, m, v] = bn_operands(200);
    let x = Var::from_tensor(&x.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
    let c = |v: &Var| constant(v).to_dtype(DType::F32).unwrap();
    let (w, b, m, v) = (c(&w), c(&b), c(&m), c(&v));
    let r = random(x.dims(), 205).to_dtype(DType::F32).unwrap();
    for mode in MODES {
        let fused = batch_norm_relu(x.as_tensor(), &w, &b, &m, &v, EPS, mode).unwrap();
        let unfused = relu(&batch_norm(x.as_tensor(), &w, &b, &m, &v, EPS).unwrap(), mode).unwrap();
        let grads = (&fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&w).is_none() && grads.get(&m).is_none(), "{mode:?}: constants get no gradient");
        assert_eq!(run(fused, &[&x], &r), run(unfused, &[&x], &r), "{mode:?}");
    }
    // Nothing tracked: no gradient at all, and no error.
    let y = batch_norm_relu(&x.as_tensor().detach(), &w, &b, &m, &v, EPS, ReluMode::Normal).unwrap();
    assert!(y.sum_all().unwrap().backward().is_ok());
}

#[test]
fn batch_norm_relu_gradients_match_finite_differences() {
    let x = var(&[2, 3, 4, 5], 301);
    let (w, b, m) = (var(&[3], 302), var(&[3], 303), var(&[3], 304));
    let v = var_of(values(&random(&[3], 305)).iter().map(|v| v * v + 0.5).collect(), &[3]);
    check_gradients(
        "batch_norm_relu",
        &[("x", &x), ("weight", &w), ("bias", &b), ("running mean", &m), ("running variance", &v)],
        || batch_norm_relu(&x, &w, &b, &m, &v, EPS, ReluMode::Normal),
        306,
    );
}

#[test]
fn batch_norm_relu_on_a_batch_equals_each_image() {
    let x = random(&[3, 4, 5, 6], 401);
    let [_, w, b, m, v] = bn_operands(402);
    let (w, b, m, v) = (constant(&w), constant(&b), constant(&m), constant(&v));
    for mode in MODES {
        let batch = values(&batch_norm_relu(&x, &w, &b, &m, &v, EPS, mode).unwrap());
        let one_by_one: Vec<f64> = (0..3)
            .flat_map(|i| values(&batch_norm_relu(&x.narrow(0, i, 1).unwrap(), &w, &b, &m, &v, EPS, mode).unwrap()))
            .collect();
        assert_eq!(batch, one_by_one, "{mode:?}");
    }
}

#[test]
fn batch_norm_relu_rejects_what_batch_norm_rejects() {
    let x = random(&[2, 4, 3, 3], 501);
    let p = random(&[4], 502);
    let bad = random(&[3], 503);
    let e = batch_norm_relu(&x, &p, &p, &bad, &p, EPS, ReluMode::Normal).unwrap_err().to_string();
    assert!(e.contains("running mean") && e.contains("[4]"), "{e}");
    let e = batch_norm_relu(&random(&[4], 504), &p, &p, &p, &p, EPS, ReluMode::Guided).unwrap_err().to_string();
    assert!(e.contains("[N, C"), "{e}");
    let e = batch_norm_relu(&x, &p, &p, &p, &p, f64::NAN, ReluMode::Deconvnet).unwrap_err().to_string();
    assert!(e.contains("eps"), "{e}");
    let e = batch_norm_relu(&x, &p.to_dtype(DType::F32).unwrap(), &p, &p, &p, EPS, ReluMode::Normal)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dtype"), "{e}");
}

/// Two terms of `[3, 4, 5, 6]` whose sum is exactly 0 at every seventh element.
fn add_operands(seed: u64) -> (Var, Var) {
    let a = values(&random(&[3, 4, 5, 6], seed));
    let mut b = values(&random(&[3, 4, 5, 6], seed + 1));
    for (i, v) in b.iter_mut().enumerate() {
        if i % 7 == 0 {
            *v = -a[i];
        }
    }
    (var_of(a, &[3, 4, 5, 6]), var_of(b, &[3, 4, 5, 6]))
}

#[test]
fn add_relu_equals_sum_then_relu_in_every_mode_bit_for_bit() {
    let (a, b) = add_operands(600);
    let sum = (a.as_tensor() + b.as_tensor()).unwrap();
    assert!(values(&sum).iter().filter(|v| **v == 0.0).count() >= 50, "sums of exactly 0");
    let r = random(sum.dims(), 602);
    for mode in MODES {
        let fused = run(add_relu(&a, &b, mode).unwrap(), &[&a, &b], &r);
        let unfused = run(relu(&(a.as_tensor() + b.as_tensor()).unwrap(), mode).unwrap(), &[&a, &b], &r);
        for (what, (x, e)) in ["y", "da", "db"].iter().zip(fused.iter().zip(&unfused)) {
            assert_eq!(x, e, "{mode:?}: {what}");
        }
    }
}

#[test]
fn add_relu_in_f32_with_one_constant_term() {
    let (a, b) = add_operands(700);
    let a = Var::from_tensor(&a.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
    let b = constant(&b).to_dtype(DType::F32).unwrap();
    let r = random(a.dims(), 702).to_dtype(DType::F32).unwrap();
    for mode in MODES {
        let fused = add_relu(a.as_tensor(), &b, mode).unwrap();
        let grads = (&fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&b).is_none(), "{mode:?}: a constant gets no gradient");
        let unfused = relu(&(a.as_tensor() + &b).unwrap(), mode).unwrap();
        assert_eq!(run(fused, &[&a], &r), run(unfused, &[&a], &r), "{mode:?}");
    }
    let y = add_relu(&a.as_tensor().detach(), &b, ReluMode::Normal).unwrap();
    assert!(y.sum_all().unwrap().backward().is_ok());
}

#[test]
fn add_relu_gradients_match_finite_differences() {
    let (a, b) = (var(&[2, 3, 4, 5], 801), var(&[2, 3, 4, 5], 802));
    check_gradients("add_relu", &[("a", &a), ("b", &b)], || add_relu(&a, &b, ReluMode::Normal), 803);
}

#[test]
fn add_relu_of_a_transposed_term_reads_its_layout() {
    let a = random(&[2, 3, 4, 5], 901);
    let b = random(&[2, 3, 5, 4], 902).transpose(2, 3).unwrap();
    let fused = values(&add_relu(&a, &b, ReluMode::Guided).unwrap());
    let unfused = values(&relu(&(&a + &b).unwrap(), ReluMode::Guided).unwrap());
    assert_eq!(fused, unfused);
}

#[test]
fn add_relu_rejects_mismatched_terms() {
    let a = random(&[2, 3, 4, 5], 1001);
    let e = add_relu(&a, &random(&[2, 3, 5, 4], 1002), ReluMode::Normal).unwrap_err().to_string();
    assert!(e.contains("[2, 3, 4, 5]") && e.contains("[2, 3, 5, 4]"), "{e}");
    let e = add_relu(&a, &a.to_dtype(DType::F32).unwrap(), ReluMode::Normal).unwrap_err().to_string();
    assert!(e.contains("dtype") && e.contains("F32"), "{e}");
}
