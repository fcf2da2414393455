//! The projection of activations on their first principal component (Eigen-CAM, `eigen_smooth`).
//!
//! pytorch-grad-cam's `get_2d_projection` reshapes one image's activations `[C, h, w]` to a matrix
//! `X` of `h·w` rows and `C` columns, centres each column, takes the first right singular vector
//! `v₁` of `X` and returns `X v₁` as an `[h, w]` map.
//! `X v₁ = σ₁ u₁`, so only the leading eigenpair of the smaller of the two Gram matrices `XᵀX`
//! (`C × C`) and `XXᵀ` (`h·w × h·w`) is needed; it is found here in `f64` by a Householder
//! reduction to tridiagonal form, bisection for the largest eigenvalue and inverse iteration for
//! its vector.
//!
//! The sign of a singular vector is arbitrary, and pytorch-grad-cam's `get_2d_projection` keeps
//! whatever sign its LAPACK build returns (it differs between OpenBLAS and MKL, issue #315).
//! gaze fixes it the way pytorch-grad-cam's own `get_2d_projection_with_sign_correction` does
//! (Seg-Eigen-CAM, Eq. 13): the map is negated when its most negative value is larger in magnitude
//! than its most positive one, so that the salient region is positive.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Projects each item of `x` `[B, C, h, w]` on the first principal component of its channels:
/// `[B, h, w]`, with the sign convention described in the module documentation.
/// NaN values count as 0, as in pytorch-grad-cam.
/// Every dimension must be at least 1.
pub fn first_component_projection(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = match *x.dims() {
        [b, c, h, w] if b > 0 && c > 0 && h > 0 && w > 0 => (b, c, h, w),
        _ => {
            return Err(Error::Shape {
                what: "activations to project".into(),
                expected: "[B, C, h, w] with every dimension at least 1".into(),
                got: x.dims().to_vec(),
            })
        }
    };
    let hw = h * w;
    let data = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let mut out = Vec::with_capacity(b * hw);
    for item in data.chunks(c * hw).take(b) {
        out.extend(project_one(item, c, hw));
    }
    let t = Tensor::from_vec(out, (b, h, w), x.device())?;
    Ok(t.to_dtype(x.dtype())?)
}

/// The projection of one item, `data` laid out `[C, hw]`.
pub(crate) fn project_one(data: &[f64], c: usize, hw: usize) -> Vec<f64> {
    if c == 0 || hw == 0 {
        return vec![0.0; hw];
    }
    // Column `k` of X is channel `k`; centre it over the positions.
    let mut x: Vec<f64> = data.iter().map(|v| if v.is_nan() { 0.0 } else { *v }).collect();
    for ch in x.chunks_mut(hw) {
        let mean = ch.iter().sum::<f64>() / hw as f64;
        for v in ch.iter_mut() {
            *v -= mean;
        }
    }
    let mut p = if c <= hw {
        // XᵀX is C × C: G[i][j] = Σ_p X[p][i] X[p][j] = channel i · channel j.
        let mut g = vec![0.0; c * c];
        for i in 0..c {
            for j in 0..=i {
                let s: f64 = x[i * hw..(i + 1) * hw].iter().zip(&x[j * hw..(j + 1) * hw]).map(|(a, b)| a * b).sum();
                g[i * c + j] = s;
                g[j * c + i] = s;
            }
        }
        let (_, v) = leading_eigenpair(&mut g, c);
        // p = X v.
        let mut p = vec![0.0; hw];
        for (k, vk) in v.iter().enumerate() {
            for (pp, xv) in p.iter_mut().zip(&x[k * hw..(k + 1) * hw]) {
                *pp += xv * vk;
            }
        }
        p
    } else {
        // XXᵀ is hw × hw: G[p][q] = Σ_k X[p][k] X[q][k].
        let mut g = vec![0.0; hw * hw];
        for ch in x.chunks(hw) {
            for p in 0..hw {
                let xp = ch[p];
                if xp == 0.0 {
                    continue;
                }
                let row = &mut g[p * hw..(p + 1) * hw];
                for (q, xq) in ch.iter().enumerate() {
                    row[q] += xp * xq;
                }
            }
        }
        let (lambda, u) = leading_eigenpair(&mut g, hw);
        let sigma = lambda.max(0.0).sqrt();
        u.into_iter().map(|v| v * sigma).collect()
    };
    // pytorch-grad-cam's sign correction: the salient region is positive.
    let (min, max) = p.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if min.abs() > max.abs() {
        for v in p.iter_mut() {
            *v = -*v;
        }
    }
    p
}

/// The largest eigenvalue of the symmetric `n × n` matrix `a` (row-major, overwritten) and a unit
/// eigenvector for it, whose largest-magnitude component is positive.
pub(crate) fn leading_eigenpair(a: &mut [f64], n: usize) -> (f64, Vec<f64>) {
    if n == 1 {
        return (a[0], vec![1.0]);
    }
    // Householder reduction to tridiagonal form: T = Hₙ₋₃ ⋯ H₀ A H₀ ⋯ Hₙ₋₃.
    let mut reflectors: Vec<Vec<f64>> = Vec::with_capacity(n.saturating_sub(2));
    for k in 0..n.saturating_sub(2) {
        let m = n - k - 1;
        let mut v: Vec<f64> = (0..m).map(|i| a[(k + 1 + i) * n + k]).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            reflectors.push(Vec::new());
            continue;
        }
        let alpha = if v[0] >= 0.0 { -norm } else { norm };
        v[0] -= alpha;
        let vnorm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if vnorm == 0.0 {
            reflectors.push(Vec::new());
            continue;
        }
        for x in v.iter_mut() {
            *x /= vnorm;
        }
        // The trailing block B ← H B H with H = I − 2vvᵀ: B − 2(v wᵀ + w vᵀ), w = Bv − (vᵀBv) v.
        let off = k + 1;
        let mut p = vec![0.0; m];
        for i in 0..m {
            let row = &a[(off + i) * n + off..(off + i) * n + off + m];
            p[i] = row.iter().zip(&v).map(|(x, y)| x * y).sum();
        }
        let kk: f64 = p.iter().zip(&v).map(|(x, y)| x * y).sum();
        let wv: Vec<f64> = p.iter().zip(&v).map(|(pi, vi)| pi - kk * vi).collect();
        for i in 0..m {
            for j in 0..m {
                a[(off + i) * n + off + j] -= 2.0 * (v[i] * wv[j] + wv[i] * v[j]);
            }
        }
        a[(k + 1) * n + k] = alpha;
        a[k * n + k + 1] = alpha;
        for i in 1..m {
            a[(k + 1 + i) * n + k] = 0.0;
            a[k * n + k + 1 + i] = 0.0;
        }
        reflectors.push(v);
    }
    let d: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    let e: Vec<f64> = (0..n - 1).map(|i| a[(i + 1) * n + i]).collect();

    let lambda = largest_tridiagonal_eigenvalue(&d, &e);
    let mut y = tridiagonal_eigenvector(&d, &e, lambda);

    // Back to A's basis: y ← H₀ (H₁ (⋯ Hₙ₋₃ y)).
    for (k, v) in reflectors.iter().enumerate().rev() {
        if v.is_empty() {
            continue;
        }
        let tail = &mut y[k + 1..];
        let dot: f64 = tail.iter().zip(v).map(|(a, b)| a * b).sum();
        for (t, vi) in tail.iter_mut().zip(v) {
            *t -= 2.0 * dot * vi;
        }
    }
    normalise_sign(&mut y);
    (lambda, y)
}

/// The number of eigenvalues of the tridiagonal matrix (`d` diagonal, `e` off-diagonal) below `x`
/// (Sturm sequence).
fn count_below(d: &[f64], e: &[f64], x: f64) -> usize {
    let mut count = 0;
    let mut q = d[0] - x;
    if q < 0.0 {
        count += 1;
    }
    for i in 1..d.len() {
        let denom = if q == 0.0 { f64::MIN_POSITIVE } else { q };
        q = d[i] - x - e[i - 1] * e[i - 1] / denom;
        if q < 0.0 {
            count += 1;
        }
    }
    count
}

/// The largest eigenvalue of a symmetric tridiagonal matrix, by bisection between Gershgorin
/// bounds.
fn largest_tridiagonal_eigenvalue(d: &[f64], e: &[f64]) -> f64 {
    let n = d.len();
    let radius = |i: usize| {
        let left = if i > 0 { e[i - 1].abs() } else { 0.0 };
        let right = if i + 1 < n { e[i].abs() } else { 0.0 };
        left + right
    };
    let mut lo = (0..n).map(|i| d[i] - radius(i)).fold(f64::INFINITY, f64::min);
    let mut hi = (0..n).map(|i| d[i] + radius(i)).fold(f64::NEG_INFINITY, f64::max);
    let scale = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
    for _ in 0..256 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo <= 4.0 * f64::EPSILON * scale {
            break;
        }
        if count_below(d, e, mid) == n {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A unit eigenvector of the tridiagonal matrix for its largest eigenvalue `lambda`, by inverse
/// iteration on `(λ' I − T)`, which is positive definite for λ' just above `lambda`.
fn tridiagonal_eigenvector(d: &[f64], e: &[f64], lambda: f64) -> Vec<f64> {
    let n = d.len();
    let norm = d.iter().map(|x| x.abs()).chain(e.iter().map(|x| x.abs())).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let shift = lambda + 64.0 * n as f64 * f64::EPSILON * norm;
    // A start vector with no special structure, so that it is not orthogonal to the answer.
    let mut x: Vec<f64> = (0..n).map(|i| 1.0 + 0.1 * ((i * 7919 % 97) as f64 / 97.0)).collect();
    let tiny = f64::EPSILON * norm;
    for _ in 0..4 {
        // Solve (shift − T) y = x with the Thomas algorithm: diagonal shift − d, off-diagonal −e.
        let mut c = vec![0.0; n];
        let mut r = vec![0.0; n];
        let mut piv = shift - d[0];
        if piv.abs() < tiny {
            piv = tiny;
        }
        c[0] = if n > 1 { -e[0] / piv } else { 0.0 };
        r[0] = x[0] / piv;
        for i in 1..n {
            let mut p = (shift - d[i]) - (-e[i - 1]) * c[i - 1];
            if p.abs() < tiny {
                p = tiny;
            }
            c[i] = if i + 1 < n { -e[i] / p } else { 0.0 };
            r[i] = (x[i] - (-e[i - 1]) * r[i - 1]) / p;
        }
        let mut y = vec![0.0; n];
        y[n - 1] = r[n - 1];
        for i in (0..n - 1).rev() {
            y[i] = r[i] - c[i] * y[i + 1];
        }
        let len = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        if !(len.is_finite() && len > 0.0) {
            break;
        }
        x = y.into_iter().map(|v| v / len).collect();
    }
    let len = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    x.into_iter().map(|v| v / len).collect()
}

/// Makes the largest-magnitude component positive (the first one on ties).
fn normalise_sign(v: &mut [f64]) {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if x.abs() > v[best].abs() {
            best = i;
        }
    }
    if v.get(best).is_some_and(|x| *x < 0.0) {
        for x in v.iter_mut() {
            *x = -*x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn residual(a: &[f64], n: usize, lambda: f64, v: &[f64]) -> f64 {
        (0..n)
            .map(|i| {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                (av - lambda * v[i]).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn empty_activations_are_refused() {
        let dev = candle_core::Device::Cpu;
        for dims in [[1, 0, 4, 4], [0, 2, 4, 4], [1, 2, 0, 4], [1, 2, 4, 0]] {
            let x = Tensor::zeros(&dims, DType::F32, &dev).unwrap();
            let err = first_component_projection(&x).unwrap_err().to_string();
            assert!(err.contains("activations to project") && err.contains("at least 1"), "{dims:?}: {err}");
        }
        let x = Tensor::ones((1, 2, 4, 4), DType::F32, &dev).unwrap();
        assert_eq!(first_component_projection(&x).unwrap().dims(), &[1, 4, 4]);
    }

    #[test]
    fn leading_eigenpair_of_random_symmetric_matrices() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in [2, 3, 5, 17, 40] {
            // A Gram matrix, so positive semidefinite, as in the projection.
            let m = n + 3;
            let x: Vec<f64> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = (0..m).map(|k| x[k * n + i] * x[k * n + j]).sum();
                }
            }
            let orig = a.clone();
            let (lambda, v) = leading_eigenpair(&mut a, n);
            assert!(residual(&orig, n, lambda, &v) < 1e-9 * lambda, "n={n}");
            // It is the largest: the Rayleigh quotient of any basis vector is at most λ.
            for i in 0..n {
                assert!(orig[i * n + i] <= lambda + 1e-9);
            }
        }
    }

    #[test]
    fn diagonal_and_degenerate_matrices() {
        let mut a = vec![1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 2.0];
        let (lambda, v) = leading_eigenpair(&mut a, 3);
        assert!((lambda - 5.0).abs() < 1e-12);
        assert!((v[1] - 1.0).abs() < 1e-12 && v[0].abs() < 1e-12);
        let mut z = vec![0.0; 9];
        let (lambda, v) = leading_eigenpair(&mut z, 3);
        assert_eq!(lambda, 0.0);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn both_gram_paths_agree() {
        // The same X through the C ≤ hw path and, transposed in role, the other one: compare the
        // projection against a direct power iteration on XᵀX.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (c, hw) in [(3, 10), (10, 3), (6, 6)] {
            let data: Vec<f64> = (0..c * hw).map(|_| rng.random_range(0.0..1.0)).collect();
            let p = project_one(&data, c, hw);
            // Reference: centre, power-iterate XᵀX many times, p = X v, sign-correct.
            let mut x = data.clone();
            for ch in x.chunks_mut(hw) {
                let m = ch.iter().sum::<f64>() / hw as f64;
                ch.iter_mut().for_each(|v| *v -= m);
            }
            let mut v = vec![1.0; c];
            for _ in 0..5000 {
                let xv: Vec<f64> = (0..hw).map(|q| (0..c).map(|k| x[k * hw + q] * v[k]).sum()).collect();
                let mut nv: Vec<f64> = (0..c).map(|k| (0..hw).map(|q| x[k * hw + q] * xv[q]).sum()).collect();
                let len = nv.iter().map(|a| a * a).sum::<f64>().sqrt();
                nv.iter_mut().for_each(|a| *a /= len);
                v = nv;
            }
            let mut r: Vec<f64> = (0..hw).map(|q| (0..c).map(|k| x[k * hw + q] * v[k]).sum()).collect();
            let (lo, hi) = r.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            if lo.abs() > hi.abs() {
                r.iter_mut().for_each(|a| *a = -*a);
            }
            let err = p.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-7, "c={c} hw={hw} err={err}");
        }
    }
}
