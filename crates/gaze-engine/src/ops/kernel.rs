//! Plumbing shared by the ops: reading host storage as slices and running host kernels for any
//! device.

use candle_core::{CpuStorage, Layout, Result, Shape, WithDType};

/// A float type the host kernels run on (`f32` or `f64`).
pub trait Float:
    WithDType
    + Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + std::ops::DivAssign
    + Send
    + Sync
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn exp(self) -> Self;

    /// Runs `f` on a scratch buffer of `len` elements owned by the calling thread and reused
    /// across calls, so the kernels' temporary matrices cost no allocation and no page faults
    /// after the first call.
    /// Its contents on entry are unspecified.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;

    /// `dst ← a·b (+ dst)` on the calling thread, where `a` is `m × k` with strides
    /// `(a_rs, a_cs)`, `b` is `k × n` with strides `(b_rs, b_cs)` and `dst` is row-major with
    /// row stride `dst_rs`.
    ///
    /// # Safety
    /// Every element read or written lies inside its buffer, and `dst` aliases neither operand.
    unsafe fn gemm_serial(
        mnk: (usize, usize, usize),
        dst: *mut Self,
        dst_rs: usize,
        accumulate: bool,
        a: (*const Self, usize, usize),
        b: (*const Self, usize, usize),
    );

    /// A stencil over a plane laid out in rows of `width` elements:
    /// `out[r · cols + c] = init(r · cols + c) + Σ_(off, w) w · buf[r · width + c + off]` for
    /// `r < out.len() / cols` and `c < cols`, where `init` is `bias` or, when `accumulate`, the
    /// value already in `out`.
    /// Up to 32 outputs of a row are computed at a time with every tap, in registers (AVX2 and FMA
    /// where the CPU has them).
    /// `buf` must hold every element a tap reads, up to 32 past the last output's.
    fn stencil(
        buf: &[Self],
        width: usize,
        taps: &[(usize, Self)],
        bias: Self,
        accumulate: bool,
        cols: usize,
        out: &mut [Self],
    );
    /// Max pooling's step for one window element over a row of outputs: for each `k`, where
    /// `v[k]` is larger than `best[k]` or is a NaN, `best[k] ← v[k]` and `at[k] ← base + k · step`
    /// (AVX2 for `f32` where the CPU has it).
    fn take_larger(best: &mut [Self], at: &mut [u32], v: &[Self], base: u32, step: u32);
}

/// Copies a short slice without a call into the C library: blocks of eight elements, then one at
/// a time (rows of small feature maps are a few dozen elements, where a `memcpy` call costs more
/// than the copy).
#[inline]
pub fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len().min(src.len());
    let (mut d8, mut s8) = (dst[..n].chunks_exact_mut(8), src[..n].chunks_exact(8));
    for (d, s) in (&mut d8).zip(&mut s8) {
        for (d, s) in d.iter_mut().zip(s) {
            *d = *s;
        }
    }
    for (d, s) in d8.into_remainder().iter_mut().zip(s8.remainder()) {
        *d = *s;
    }
}

/// Fills a short slice without a call into the C library (see [`copy_short`]).
#[inline]
pub fn fill_short<T: Copy>(dst: &mut [T], v: T) {
    let mut d8 = dst.chunks_exact_mut(8);
    for d in &mut d8 {
        for d in d.iter_mut() {
            *d = v;
        }
    }
    for d in d8.into_remainder() {
        *d = v;
    }
}

/// The portable stencil of [`Float::stencil`], one output at a time.
fn stencil_scalar<T: Float>(
    buf: &[T],
    width: usize,
    taps: &[(usize, T)],
    bias: T,
    accumulate: bool,
    cols: usize,
    out: &mut [T],
) {
    for (r, row) in out.chunks_exact_mut(cols).enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            let at = r * width + c;
            let mut sum = if accumulate { *v } else { bias };
            for &(off, w) in taps {
                sum += w * buf[at + off];
            }
            *v = sum;
        }
    }
}

/// The `f32` stencil of [`Float::stencil`] with AVX2 and FMA: up to four blocks of eight outputs
/// at a time, each block's sums in a register, so that a tap's multiply-adds for different blocks
/// do not wait on one another.
///
/// # Safety
/// The CPU must have AVX2 and FMA, `out.len()` must be a multiple of `cols` (at least 1), and
/// `buf` must hold every element read: with `rows = out.len() / cols`, at least
/// `(rows − 1) · width + ⌈cols / 8⌉ · 8 + max tap offset` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn stencil_f32_avx2(
    buf: &[f32],
    width: usize,
    taps: &[(usize, f32)],
    bias: f32,
    accumulate: bool,
    cols: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    let src = buf.as_ptr();
    macro_rules! group {
        ($nb:literal, $row:ident, $at:ident, $n:ident) => {{
            let mut sum = [_mm256_set1_ps(bias); $nb];
            if accumulate {
                let mut tmp = [0f32; $nb * LANES];
                copy_short(&mut tmp[..$n], &$row[..$n]);
                for b in 0..$nb {
                    sum[b] = _mm256_loadu_ps(tmp.as_ptr().add(b * LANES));
                }
            }
            for &(off, w) in taps {
                let wv = _mm256_set1_ps(w);
                let p = src.add($at + off);
                for b in 0..$nb {
                    sum[b] = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(b * LANES)), wv, sum[b]);
                }
            }
            let dst = $row.as_mut_ptr();
            for b in 0..$nb {
                let left = $n - b * LANES;
                if left >= LANES {
                    _mm256_storeu_ps(dst.add(b * LANES), sum[b]);
                } else {
                    // Lanes `l < left` are stored, the others left alone.
                    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left as i32), lanes);
                    _mm256_maskstore_ps(dst.add(b * LANES), mask, sum[b]);
                }
            }
        }};
    }
    for (r, row) in out.chunks_exact_mut(cols).enumerate() {
        let mut c = 0;
        while c < cols {
            let n = (cols - c).min(4 * LANES);
            let (at, part) = (r * width + c, &mut row[c..c + n]);
            match n.div_ceil(LANES) {
                1 => group!(1, part, at, n),
                2 => group!(2, part, at, n),
                3 => group!(3, part, at, n),
                _ => group!(4, part, at, n),
            }
            c += n;
        }
    }
}

thread_local! {
    /// Each thread's scratch buffers, one per level of nesting in use (a kernel that keeps a
    /// buffer while its jobs run, as Winograd's convolution keeps its transformed kernels, and
    /// the jobs that the calling thread runs itself): a buffer is taken for a call and put back
    /// after it, so that neither level allocates after the first call.
    static SCRATCH_F32: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH_F64: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

macro_rules! float_impl {
    ($t:ident, $scratch:ident, $blas:ident, $stencil_fast:ident, $take_larger:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            fn exp(self) -> Self {
                $t::exp(self)
            }

            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                let mut buf = $scratch.with(|cell| cell.borrow_mut().pop()).unwrap_or_default();
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
                let r = f(&mut buf[..len]);
                $scratch.with(|cell| cell.borrow_mut().push(buf));
                r
            }

            unsafe fn gemm_serial(
                mnk: (usize, usize, usize),
                dst: *mut Self,
                dst_rs: usize,
                accumulate: bool,
                a: (*const Self, usize, usize),
                b: (*const Self, usize, usize),
            ) {
                // SAFETY: forwarded from the caller.
                #[cfg(gaze_openblas)]
                if unsafe { super::matmul::blas::$blas(mnk, dst, dst_rs, accumulate, a, b) } {
                    return;
                }
                // SAFETY: forwarded from the caller.
                unsafe { super::matmul::gemm_crate(mnk, dst, dst_rs, accumulate, a, b) }
            }

            fn stencil(
                buf: &[Self],
                width: usize,
                taps: &[(usize, Self)],
                bias: Self,
                accumulate: bool,
                cols: usize,
                out: &mut [Self],
            ) {
                if cols == 0 || out.is_empty() {
                    return;
                }
                $stencil_fast(buf, width, taps, bias, accumulate, cols, out)
            }

            fn take_larger(best: &mut [Self], at: &mut [u32], v: &[Self], base: u32, step: u32) {
                $take_larger(best, at, v, base, step)
            }
        }
    };
}

/// The portable [`Float::take_larger`].
fn take_larger_scalar<T: Float>(best: &mut [T], at: &mut [u32], v: &[T], base: u32, step: u32) {
    for (k, ((b, a), &v)) in best.iter_mut().zip(at.iter_mut()).zip(v).enumerate() {
        #[allow(clippy::eq_op)]
        let take = (v > *b) | (v != v);
        if take {
            (*b, *a) = (v, base.wrapping_add((k as u32).wrapping_mul(step)));
        }
    }
}

/// The `f32` [`Float::take_larger`]: eight outputs at a time with AVX2 where the CPU has it.
fn take_larger_f32(best: &mut [f32], at: &mut [u32], v: &[f32], base: u32, step: u32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { take_larger_f32_avx2(best, at, v, base, step) };
    }
    take_larger_scalar(best, at, v, base, step)
}

/// [`take_larger_f32`] with AVX2: a compare, a NaN test and two blends per eight outputs.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn take_larger_f32_avx2(best: &mut [f32], at: &mut [u32], v: &[f32], base: u32, step: u32) {
    use std::arch::x86_64::*;
    let n = best.len().min(at.len()).min(v.len());
    let full = n / 8 * 8;
    let mut idx = _mm256_add_epi32(
        _mm256_set1_epi32(base as i32),
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(step as i32)),
    );
    let inc = _mm256_set1_epi32(step.wrapping_mul(8) as i32);
    let (bp, ap, vp) = (best.as_mut_ptr(), at.as_mut_ptr(), v.as_ptr());
    for i in (0..full).step_by(8) {
        // SAFETY: `i + 8 ≤ n`, within all three slices.
        unsafe {
            let b = _mm256_loadu_ps(bp.add(i));
            let x = _mm256_loadu_ps(vp.add(i));
            let take = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, b), _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            _mm256_storeu_ps(bp.add(i), _mm256_blendv_ps(b, x, take));
            let a = _mm256_loadu_si256(ap.add(i) as *const __m256i);
            let a = _mm256_blendv_epi8(a, idx, _mm256_castps_si256(take));
            _mm256_storeu_si256(ap.add(i) as *mut __m256i, a);
        }
        idx = _mm256_add_epi32(idx, inc);
    }
    let tail = base.wrapping_add((full as u32).wrapping_mul(step));
    take_larger_scalar(&mut best[full..n], &mut at[full..n], &v[full..n], tail, step)
}

/// The `f32` stencil: AVX2 and FMA where the CPU has them and the buffer is long enough for
/// whole blocks, the portable loop otherwise.
fn stencil_f32(
    buf: &[f32],
    width: usize,
    taps: &[(usize, f32)],
    bias: f32,
    accumulate: bool,
    cols: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let rows = out.len() / cols;
        let reach = taps.iter().map(|t| t.0).max().unwrap_or(0);
        let whole = rows >= 1 && rows * cols == out.len();
        let needed = rows.saturating_sub(1) * width + cols.div_ceil(8) * 8 + reach;
        if whole && buf.len() >= needed && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, `out` is whole rows, and `buf` holds every element
            // the blocks read (checked just above).
            return unsafe { stencil_f32_avx2(buf, width, taps, bias, accumulate, cols, out) };
        }
    }
    stencil_scalar(buf, width, taps, bias, accumulate, cols, out)
}

float_impl!(f32, SCRATCH_F32, sgemm, stencil_f32, take_larger_f32);
float_impl!(f64, SCRATCH_F64, dgemm, stencil_scalar, take_larger_scalar);

/// The elements of a contiguous host tensor as a slice.
pub fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("gaze op: operand is not contiguous (layout {l:?})"),
    }
}

/// Runs a generic host kernel on the dtype of a storage:
/// `dispatch_float!("relu", storage, run(storage, layout))` calls `run::<f32>(..)` or
/// `run::<f64>(..)`, and fails with a clear message on other dtypes.
macro_rules! dispatch_float {
    ($name:expr, $storage:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => $f::<f32>($($arg),*),
            candle_core::CpuStorage::F64(_) => $f::<f64>($($arg),*),
            other => candle_core::bail!(
                "{}: dtype {:?} is not supported; use f32 or f64",
                $name,
                candle_core::backend::BackendStorage::dtype(other)
            ),
        }
    };
}
pub(crate) use dispatch_float;

/// Implements `cuda_fwd` and `metal_fwd` of a custom op by copying to the host, running `cpu_fwd`
/// and copying back.
macro_rules! host_fallback {
    (op1) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s: &candle_core::CudaStorage,
            l: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            use candle_core::backend::{BackendDevice, BackendStorage};
            let host = s.to_cpu_storage()?;
            let (out, shape) = self.cpu_fwd(&host, l)?;
            Ok((s.device().storage_from_cpu_storage_owned(out)?, shape))
        }
    };
    (op2) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s1: &candle_core::CudaStorage,
            l1: &candle_core::Layout,
            s2: &candle_core::CudaStorage,
            l2: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            use candle_core::backend::{BackendDevice, BackendStorage};
            let h1 = s1.to_cpu_storage()?;
            let h2 = s2.to_cpu_storage()?;
            let (out, shape) = self.cpu_fwd(&h1, l1, &h2, l2)?;
            Ok((s1.device().storage_from_cpu_storage_owned(out)?, shape))
        }
    };
    (op3) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s1: &candle_core::CudaStorage,
            l1: &candle_core::Layout,
            s2: &candle_core::CudaStorage,
            l2: &candle_core::Layout,
            s3: &candle_core::CudaStorage,
            l3: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            use candle_core::backend::{BackendDevice, BackendStorage};
            let h1 = s1.to_cpu_storage()?;
            let h2 = s2.to_cpu_storage()?;
            let h3 = s3.to_cpu_storage()?;
            let (out, shape) = self.cpu_fwd(&h1, l1, &h2, l2, &h3, l3)?;
            Ok((s1.device().storage_from_cpu_storage_owned(out)?, shape))
        }
    };
}
pub(crate) use host_fallback;

/// Wraps a result vector as host storage with its shape.
pub fn output<T: WithDType>(data: Vec<T>, shape: impl Into<Shape>) -> Result<(CpuStorage, Shape)> {
    Ok((T::to_cpu_storage_owned(data), shape.into()))
}

/// Elements per task of the elementwise kernels: below this a thread costs more than it saves.
const ELEMENTWISE_CHUNK: usize = 1 << 15;

/// `f(x[i])` for every element, on the ops' threads for large inputs.
pub fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Result<Vec<T>> {
    zip_map(x, x, |v, _| f(v))
}

/// `f(a[i], b[i])` for every element of two slices of the same length, on the ops' threads for
/// large inputs.
pub fn zip_map<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Result<Vec<T>> {
    if a.len() != b.len() {
        candle_core::bail!("gaze kernel: operands of {} and {} elements", a.len(), b.len());
    }
    let chunk = if a.len() < 2 * ELEMENTWISE_CHUNK { a.len() } else { ELEMENTWISE_CHUNK };
    super::threads::collect(a.len(), chunk, a.len(), |i, out| {
        let at = i * chunk;
        for (o, (&a, &b)) in out.iter_mut().zip(a[at..].iter().zip(&b[at..])) {
            o.write(f(a, b));
        }
        Ok(())
    })
}
