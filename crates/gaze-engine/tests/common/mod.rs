//! Shared helpers of the engine's tests: seeded random tensors and a finite-difference check of
//! gradients.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The step of the central differences.
pub const EPS: f64 = 1e-6;
/// The largest error allowed, relative to the largest gradient.
pub const TOL: f64 = 1e-6;
/// The most elements a check perturbs, so that every test stays fast.
pub const MAX_ELEMENTS: usize = 800;

/// An `f64` tensor of the given shape, uniform in [-1, 1), the same for the same seed.
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("a tensor of the given shape")
}

/// A variable holding [`random`] values.
pub fn var(shape: &[usize], seed: u64) -> Var {
    Var::from_tensor(&random(shape, seed)).expect("a variable")
}

/// A constant tensor with the values of `v`, tracked by nothing.
pub fn constant(v: &Var) -> Tensor {
    v.as_tensor().detach()
}

/// The elements of a tensor, flattened, as `f64`.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f64>()).expect("readable values")
}

/// `Σ f() ⊙ r` for a fixed random `r` of the output's shape.
fn loss(f: &dyn Fn() -> gaze_engine::Result<Tensor>, r: &Tensor) -> Tensor {
    let y = f().expect("the function under test runs");
    (y * r).and_then(|t| t.sum_all()).expect("the loss")
}

/// The largest absolute value.
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Checks the backward pass of `f` against central differences for every variable in `vars`.
///
/// The loss is `Σ f() ⊙ R` with `R` random and fixed (seed `seed`), so that every output element
/// weighs differently; the gradient of each variable from `backward` must match the difference
/// quotient `(L(x + ε eᵢ) − L(x − ε eᵢ)) / 2ε` in every element to within [`TOL`] times the
/// largest gradient of that variable, and that gradient must not vanish.
pub fn check_gradients(label: &str, vars: &[(&str, &Var)], f: impl Fn() -> gaze_engine::Result<Tensor>, seed: u64) {
    let y = f().expect("the function under test runs");
    let r = random(y.dims(), seed);
    let grads = loss(&f, &r).backward().expect("backward runs");
    for (name, v) in vars {
        let analytic = values(grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{label}: no gradient for {name}")));
        let base = values(v.as_tensor());
        assert!(
            base.len() <= MAX_ELEMENTS,
            "{label}: {name} has {} elements; keep finite-difference checks small",
            base.len()
        );
        assert_eq!(analytic.len(), base.len(), "{label}: gradient size of {name}");
        let shape = v.as_tensor().dims().to_vec();
        let set =
            |data: &[f64]| v.set(&Tensor::from_vec(data.to_vec(), shape.as_slice(), &Device::Cpu).unwrap()).unwrap();
        let mut numeric = Vec::with_capacity(base.len());
        let mut probe = base.clone();
        for i in 0..base.len() {
            probe[i] = base[i] + EPS;
            set(&probe);
            let plus = loss(&f, &r).to_scalar::<f64>().unwrap();
            probe[i] = base[i] - EPS;
            set(&probe);
            let minus = loss(&f, &r).to_scalar::<f64>().unwrap();
            probe[i] = base[i];
            numeric.push((plus - minus) / (2.0 * EPS));
        }
        set(&base);
        let scale = max_abs(&analytic).max(max_abs(&numeric));
        assert!(scale > 1e-8, "{label}: the gradient of {name} vanishes");
        let (worst, at) = analytic
            .iter()
            .zip(&numeric)
            .map(|(a, n)| (a - n).abs())
            .enumerate()
            .fold((0.0, 0), |(m, at), (i, e)| if e > m { (e, i) } else { (m, at) });
        assert!(
            worst <= TOL * scale,
            "{label}: gradient of {name} differs from finite differences by {worst:e} at element {at} \
             (analytic {}, numeric {}, largest gradient {scale:e})",
            analytic[at],
            numeric[at]
        );
    }
}

/// Asserts two tensors are equal to within `tol` in every element.
pub fn assert_close(label: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.dims(), b.dims(), "{label}: shapes differ");
    let (a, b) = (values(a), values(b));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol, "{label}: element {i} differs: {x} vs {y}");
    }
}
