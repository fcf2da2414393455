//! A bounds-checked wrapper around the `gemm` crate for the host kernels of the ops.

use candle_core::Result;
use gemm::Parallelism;

use super::kernel::Float;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major view with row stride `rs`.
    pub fn rows(data: &'a [T], rs: usize) -> Self {
        Mat { data, rs, cs: 1 }
    }

    /// The transpose of a row-major matrix with row stride `rs`.
    pub fn transposed(data: &'a [T], rs: usize) -> Self {
        Mat { data, rs: 1, cs: rs }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// The parallelism the kernels give `gemm`: every thread candle would use.
pub fn parallelism() -> Parallelism {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `dst ← a · b` (or `dst ← dst + a · b` when `accumulate`), where `a` is `m × k`, `b` is `k × n`
/// and `dst` is `m × n`, row-major with row stride `dst_rs`.
///
/// Every view is checked to lie inside its slice before `gemm` runs, so a wrong size is an error
/// and never a memory fault.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let dst_fits = (m - 1) * dst_rs + n <= dst.len();
    if !dst_fits || !a.fits(m, k) || !b.fits(k, n) {
        candle_core::bail!(
            "gaze matmul: a view does not fit its buffer (m {m}, n {n}, k {k}, dst {} rs {dst_rs}, a {} ({}, {}), b {} ({}, {}))",
            dst.len(),
            a.data.len(),
            a.rs,
            a.cs,
            b.data.len(),
            b.rs,
            b.cs
        );
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(T::ZERO);
            }
        }
        return Ok(());
    }
    // SAFETY: the checks above keep every element gemm reads or writes inside its slice, `dst` is
    // borrowed mutably so it aliases neither operand, and `T` is `f32` or `f64`, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: Mat<'_, f64>, b: Mat<'_, f64>) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    out[i * n + j] += a.data[i * a.rs + l * a.cs] * b.data[l * b.rs + j * b.cs];
                }
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_product_with_transposes_and_accumulation() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
        let av = Mat::rows(&a, k);
        let bv = Mat::rows(&b, n);
        let mut dst = vec![1.0; m * n];
        matmul(m, n, k, &mut dst, n, true, av, bv).unwrap();
        for (d, e) in dst.iter().zip(&naive(m, n, k, av, bv)) {
            assert!((d - (e + 1.0)).abs() < 1e-12);
        }
        // The transpose of `a` (k × m) times an m × n matrix, written with a wider row stride.
        let c: Vec<f64> = (0..m * n).map(|i| (i as f64 * 0.13).sin()).collect();
        let atv = Mat::transposed(&a, k);
        let cv = Mat::rows(&c, n);
        let mut wide = vec![7.0; k * (n + 2)];
        matmul(k, n, m, &mut wide, n + 2, false, atv, cv).unwrap();
        let expected = naive(k, n, m, atv, cv);
        for i in 0..k {
            for j in 0..n {
                assert!((wide[i * (n + 2) + j] - expected[i * n + j]).abs() < 1e-12);
            }
            assert_eq!(wide[i * (n + 2) + n], 7.0);
        }
    }

    #[test]
    fn a_view_outside_its_buffer_is_an_error() {
        let a = vec![0.0f64; 6];
        let mut dst = vec![0.0f64; 4];
        let r = matmul(2, 2, 4, &mut dst, 2, false, Mat::rows(&a, 4), Mat::rows(&a, 2));
        assert!(r.is_err());
    }
}
