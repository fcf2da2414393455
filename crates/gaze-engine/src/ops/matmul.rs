//! The matrix multiply under the host kernels: bounds-checked views over one single-threaded
//! kernel, and a parallel form that splits the product over the ops' threads.
//!
//! The kernel is OpenBLAS's `sgemm`/`dgemm` (or `gemv` for a single row or column) when the
//! `openblas` feature is on and the build found the library (see `build.rs`), and the pure-Rust
//! `gemm` crate otherwise.
//! OpenBLAS is told to stay on one thread: the ops split the work themselves, so a multiply called
//! from each of the ops' threads never starts threads of its own.

use candle_core::Result;

use super::kernel::Float;
use super::threads::{self, SharedOut};

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

    /// Rows `r0..r0 + rows` of the view (the caller checks that they exist).
    fn row_block(&self, r0: usize) -> Self {
        Mat { data: &self.data[(r0 * self.rs).min(self.data.len())..], ..*self }
    }

    /// Columns `c0..` of the view (the caller checks that they exist).
    fn col_block(&self, c0: usize) -> Self {
        Mat { data: &self.data[(c0 * self.cs).min(self.data.len())..], ..*self }
    }
}

impl<T: Float> SharedOut<T> {
    /// `dst ← a · b` (or `dst + a · b`) into the `m × n` block at `offset` with row stride `rs`,
    /// on the calling thread.
    ///
    /// # Safety
    /// No other thread may read or write the block while this runs.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul(
        &self,
        offset: usize,
        rs: usize,
        (m, n, k): (usize, usize, usize),
        accumulate: bool,
        a: Mat<'_, T>,
        b: Mat<'_, T>,
    ) -> Result<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        // SAFETY: `slice` checks the block lies inside the buffer; the caller keeps other threads
        // off it.
        let dst = unsafe { self.slice(offset, (m - 1) * rs + n)? };
        matmul_serial(m, n, k, dst, rs, accumulate, a, b)
    }
}

fn check<T>(m: usize, n: usize, k: usize, dst: &[T], dst_rs: usize, a: &Mat<'_, T>, b: &Mat<'_, T>) -> Result<()> {
    let dst_fits = m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len();
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
    Ok(())
}

/// `dst ← a · b` (or `dst ← dst + a · b` when `accumulate`) on the calling thread, where `a` is
/// `m × k`, `b` is `k × n` and `dst` is `m × n`, row-major with row stride `dst_rs`.
///
/// Every view is checked to lie inside its slice before the kernel runs, so a wrong size is an
/// error and never a memory fault.
#[allow(clippy::too_many_arguments)]
pub fn matmul_serial<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
) -> Result<()> {
    check(m, n, k, dst, dst_rs, &a, &b)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(T::ZERO);
            }
        }
        return Ok(());
    }
    // SAFETY: `check` keeps every element the kernel reads or writes inside its slice, and `dst`
    // is borrowed mutably, so it aliases neither operand.
    unsafe {
        T::gemm_serial(
            (m, n, k),
            dst.as_mut_ptr(),
            dst_rs,
            accumulate,
            (a.data.as_ptr(), a.rs, a.cs),
            (b.data.as_ptr(), b.rs, b.cs),
        )
    };
    Ok(())
}

/// The same product as [`matmul_serial`], split over the ops' threads in blocks of rows of `dst`
/// or, when there are fewer rows than columns, blocks of columns.
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
    check(m, n, k, dst, dst_rs, &a, &b)?;
    let threads = threads::count()?;
    // Below about a million multiply-adds a second thread costs more than it saves.
    if threads <= 1 || m * n * k < 1 << 20 {
        return matmul_serial(m, n, k, dst, dst_rs, accumulate, a, b);
    }
    let out = SharedOut::new(dst);
    let split_rows = m >= n || n < 64;
    let (len, unit) = if split_rows { (m, 16) } else { (n, 64) };
    let parts = threads.min(len.div_ceil(unit)).max(1);
    let step = len.div_ceil(parts).div_ceil(unit) * unit;
    threads::run(len.div_ceil(step), m * n * k, |p| {
        let (lo, hi) = (p * step, ((p + 1) * step).min(len));
        // SAFETY: part `p` writes rows (or columns) `lo..hi` of `dst` only, and parts do not
        // overlap.
        unsafe {
            if split_rows {
                out.matmul(lo * dst_rs, dst_rs, (hi - lo, n, k), accumulate, a.row_block(lo), b)
            } else {
                out.matmul(lo, dst_rs, (m, hi - lo, k), accumulate, a, b.col_block(lo))
            }
        }
    })
}

/// The gemm crate's kernel on one thread: `dst ← a·b (+ dst)`.
///
/// # Safety
/// Every element read or written lies inside its buffer and `dst` aliases neither operand.
pub(crate) unsafe fn gemm_crate<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    (a, a_rs, a_cs): (*const T, usize, usize),
    (b, b_rs, b_cs): (*const T, usize, usize),
) {
    // SAFETY: forwarded from the caller; `T` is `f32` or `f64`, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a,
            a_cs as isize,
            a_rs as isize,
            b,
            b_cs as isize,
            b_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// OpenBLAS through its CBLAS interface, for views with one unit stride.
#[cfg(gaze_openblas)]
pub(crate) mod blas {
    use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE};
    use std::os::raw::c_int;
    use std::sync::Once;

    extern "C" {
        fn openblas_set_num_threads(num_threads: c_int);
    }

    static SINGLE_THREADED: Once = Once::new();

    /// A view's transpose flag and leading dimension in row-major CBLAS terms, if it has a unit
    /// stride whose other stride covers the row.
    fn layout(rs: usize, cs: usize, cols: usize, rows: usize) -> Option<(CBLAS_TRANSPOSE, c_int)> {
        if cs == 1 && rs >= cols.max(1) {
            Some((CBLAS_TRANSPOSE::CblasNoTrans, c_int::try_from(rs).ok()?))
        } else if rs == 1 && cs >= rows.max(1) {
            Some((CBLAS_TRANSPOSE::CblasTrans, c_int::try_from(cs).ok()?))
        } else {
            None
        }
    }

    fn flip(t: CBLAS_TRANSPOSE) -> CBLAS_TRANSPOSE {
        match t {
            CBLAS_TRANSPOSE::CblasNoTrans => CBLAS_TRANSPOSE::CblasTrans,
            _ => CBLAS_TRANSPOSE::CblasNoTrans,
        }
    }

    macro_rules! blas_gemm {
        ($name:ident, $t:ty, $gemm:ident, $gemv:ident) => {
            /// Runs the product on OpenBLAS; `false` when a view's strides do not suit it.
            ///
            /// # Safety
            /// As for [`super::gemm_crate`].
            pub(crate) unsafe fn $name(
                (m, n, k): (usize, usize, usize),
                dst: *mut $t,
                dst_rs: usize,
                accumulate: bool,
                (a, a_rs, a_cs): (*const $t, usize, usize),
                (b, b_rs, b_cs): (*const $t, usize, usize),
            ) -> bool {
                let (Ok(mi), Ok(ni), Ok(ki), Ok(ldc)) =
                    (c_int::try_from(m), c_int::try_from(n), c_int::try_from(k), c_int::try_from(dst_rs))
                else {
                    return false;
                };
                let (Some((ta, lda)), Some((tb, ldb))) = (layout(a_rs, a_cs, k, m), layout(b_rs, b_cs, n, k)) else {
                    return false;
                };
                if dst_rs < n {
                    return false;
                }
                SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });
                let beta = if accumulate { 1.0 } else { 0.0 };
                let row = CBLAS_LAYOUT::CblasRowMajor;
                // SAFETY: the caller keeps every element inside its buffer; the flags and leading
                // dimensions describe the same views the caller checked.
                unsafe {
                    // `gemv` takes the stored matrix's own rows and columns: `k × n` for an
                    // untransposed `b`, `n × k` for a transposed one (and the same for `a`).
                    if m == 1 {
                        // One row: dst = a·b is the vector product bᵀ·aᵀ.
                        let (rows, cols) =
                            if matches!(tb, CBLAS_TRANSPOSE::CblasNoTrans) { (ki, ni) } else { (ni, ki) };
                        cblas_sys::$gemv(row, flip(tb), rows, cols, 1.0, b, ldb, a, a_cs as c_int, beta, dst, 1);
                    } else if n == 1 {
                        let (rows, cols) =
                            if matches!(ta, CBLAS_TRANSPOSE::CblasNoTrans) { (mi, ki) } else { (ki, mi) };
                        cblas_sys::$gemv(row, ta, rows, cols, 1.0, a, lda, b, b_rs as c_int, beta, dst, ldc);
                    } else {
                        cblas_sys::$gemm(row, ta, tb, mi, ni, ki, 1.0, a, lda, b, ldb, beta, dst, ldc);
                    }
                }
                true
            }
        };
    }

    blas_gemm!(sgemm, f32, cblas_sgemm, cblas_sgemv);
    blas_gemm!(dgemm, f64, cblas_dgemm, cblas_dgemv);
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

    /// Products large enough to be split over threads, in rows and in columns, with every
    /// combination of transposes, single rows and single columns (the vector products), in `f32`
    /// against `f64`.
    #[test]
    fn split_and_vector_products_match_a_naive_product() {
        for (m, n, k) in [(1, 300, 70), (300, 1, 70), (1, 1, 50), (130, 90, 120), (20, 700, 80), (700, 20, 80)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
                let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
                let av = if ta { Mat::transposed(&a, m) } else { Mat::rows(&a, k) };
                let bv = if tb { Mat::transposed(&b, k) } else { Mat::rows(&b, n) };
                let expected = naive(m, n, k, av, bv);
                let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
                let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                let av32 = Mat { data: &a32[..], rs: av.rs, cs: av.cs };
                let bv32 = Mat { data: &b32[..], rs: bv.rs, cs: bv.cs };
                let mut got = vec![0.5f32; m * n];
                matmul(m, n, k, &mut got, n, true, av32, bv32).unwrap();
                let mut got64 = vec![0.0f64; m * n];
                matmul(m, n, k, &mut got64, n, false, av, bv).unwrap();
                for ((g, g64), e) in got.iter().zip(&got64).zip(&expected) {
                    assert!((*g as f64 - 0.5 - e).abs() < 1e-3 * (1.0 + e.abs()), "{m}×{n}×{k} {ta} {tb}: {g} vs {e}");
                    assert!((g64 - e).abs() < 1e-10, "{m}×{n}×{k} {ta} {tb}: {g64} vs {e}");
                }
            }
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
