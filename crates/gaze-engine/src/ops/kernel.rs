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
    /// Max pooling over a row of outputs, window element after window element: output `k` starts
    /// at −∞ with the index `elements[0].1 + k · step`, and for each element `(offset, base)` in
    /// order, where `src[offset + k]` is larger than the output's value or is a NaN, the output
    /// takes that value and the index `base + k · step`. Every `offset + best.len()` must be at
    /// most `src.len()`. AVX2 for `f32` where the CPU has it: eight outputs stay in registers
    /// while the window's elements pass.
    fn window_max(best: &mut [Self], at: &mut [u32], src: &[Self], elements: &[(usize, u32)], step: u32);
    /// Splits `row` by the phase of the stride `sw`: `row[c · sw + q]` goes to `out[q · per + c]`
    /// (`out` holds `sw · per` elements, `per ≥ ⌈row.len() / sw⌉`; the ones no column maps to are
    /// left as they were). AVX2 for `f32` and a stride of 2 where the CPU has it.
    fn split_phases(row: &[Self], sw: usize, per: usize, out: &mut [Self]);
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
    ($t:ident, $scratch:ident, $blas:ident, $stencil_fast:ident, $window_max:ident, $split_phases:ident) => {
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

            fn window_max(best: &mut [Self], at: &mut [u32], src: &[Self], elements: &[(usize, u32)], step: u32) {
                $window_max(best, at, src, elements, step)
            }

            fn split_phases(row: &[Self], sw: usize, per: usize, out: &mut [Self]) {
                $split_phases(row, sw, per, out)
            }
        }
    };
}

/// The portable [`Float::split_phases`].
fn split_phases_scalar<T: Copy>(row: &[T], sw: usize, per: usize, out: &mut [T]) {
    for (q, phase) in out.chunks_exact_mut(per).take(sw).enumerate() {
        for (d, &v) in phase.iter_mut().zip(row.iter().skip(q).step_by(sw)) {
            *d = v;
        }
    }
}

/// The `f32` [`Float::split_phases`]: a stride of 2 with AVX2, sixteen values at a time.
fn split_phases_f32(row: &[f32], sw: usize, per: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if sw == 2 && out.len() >= 2 * per && per >= row.len().div_ceil(2) && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, and the two phases of `row` fit in `out` (checked).
        return unsafe { split_phases_2_f32_avx2(row, per, out) };
    }
    split_phases_scalar(row, sw, per, out)
}

/// [`split_phases_f32`] for a stride of 2: each sixteen values, two permutes and two lane swaps
/// put the eight even ones in the first phase and the eight odd ones in the second.
///
/// # Safety
/// The CPU must have AVX2; `out.len() ≥ 2 · per` and `per ≥ ⌈row.len() / 2⌉`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn split_phases_2_f32_avx2(row: &[f32], per: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let blocks = row.len() / 16;
    let split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let (rp, op) = (row.as_ptr(), out.as_mut_ptr());
    for b in 0..blocks {
        // SAFETY: values `16 · b .. 16 · b + 16` lie in `row`; outputs `8 · b .. 8 · b + 8` of
        // each phase lie in it, since `8 · b + 8 ≤ row.len() / 2 ≤ per`.
        unsafe {
            let lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(rp.add(16 * b)), split);
            let hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(rp.add(16 * b + 8)), split);
            _mm256_storeu_ps(op.add(8 * b), _mm256_permute2f128_ps::<0x20>(lo, hi));
            _mm256_storeu_ps(op.add(per + 8 * b), _mm256_permute2f128_ps::<0x31>(lo, hi));
        }
    }
    let done = 16 * blocks;
    for (k, &v) in row[done..].iter().enumerate() {
        let c = done + k;
        out[(c % 2) * per + c / 2] = v;
    }
}

/// The portable [`Float::window_max`].
fn window_max_scalar<T: Float>(best: &mut [T], at: &mut [u32], src: &[T], elements: &[(usize, u32)], step: u32) {
    window_max_from(best, at, src, elements, step, 0)
}

/// [`window_max_scalar`] for the outputs from `start` on.
fn window_max_from<T: Float>(
    best: &mut [T],
    at: &mut [u32],
    src: &[T],
    elements: &[(usize, u32)],
    step: u32,
    start: usize,
) {
    let Some(&(_, first)) = elements.first() else { return };
    for (k, (b, a)) in best.iter_mut().zip(at.iter_mut()).enumerate().skip(start) {
        let (mut v, mut i) = (T::NEG_INFINITY, first.wrapping_add((k as u32).wrapping_mul(step)));
        for &(offset, base) in elements {
            let x = src[offset + k];
            #[allow(clippy::eq_op)]
            if (x > v) | (x != x) {
                (v, i) = (x, base.wrapping_add((k as u32).wrapping_mul(step)));
            }
        }
        (*b, *a) = (v, i);
    }
}

/// The `f32` [`Float::window_max`]: eight outputs at a time with AVX2 where the CPU has it.
fn window_max_f32(best: &mut [f32], at: &mut [u32], src: &[f32], elements: &[(usize, u32)], step: u32) {
    let n = best.len().min(at.len());
    assert!(
        elements.iter().all(|&(offset, _)| offset + n <= src.len()),
        "a window element's values run past the plane"
    );
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, and every element's `n` values lie in `src` (checked above).
        return unsafe { window_max_f32_avx2(best, at, src, elements, step) };
    }
    window_max_scalar(best, at, src, elements, step)
}

/// [`window_max_f32`] with AVX2: per block of eight outputs, a load, a compare, a NaN test and two
/// blends per window element, the value and index in registers until the block is stored.
///
/// # Safety
/// The CPU must have AVX2, and `offset + min(best.len(), at.len()) ≤ src.len()` for every element.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn window_max_f32_avx2(best: &mut [f32], at: &mut [u32], src: &[f32], elements: &[(usize, u32)], step: u32) {
    use std::arch::x86_64::*;
    let Some(&(_, first)) = elements.first() else { return };
    let n = best.len().min(at.len());
    let full = n / 8 * 8;
    let lanes = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(step as i32));
    let (bp, ap, sp) = (best.as_mut_ptr(), at.as_mut_ptr(), src.as_ptr());
    for i in (0..full).step_by(8) {
        let shift = (i as u32).wrapping_mul(step);
        let mut v = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut a = _mm256_add_epi32(_mm256_set1_epi32(first.wrapping_add(shift) as i32), lanes);
        for &(offset, base) in elements {
            // SAFETY: `offset + i + 8 ≤ offset + n ≤ src.len()` (the caller's bound).
            let x = unsafe { _mm256_loadu_ps(sp.add(offset + i)) };
            let take = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(x, v), _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            v = _mm256_blendv_ps(v, x, take);
            let idx = _mm256_add_epi32(_mm256_set1_epi32(base.wrapping_add(shift) as i32), lanes);
            a = _mm256_blendv_epi8(a, idx, _mm256_castps_si256(take));
        }
        // SAFETY: `i + 8 ≤ n`, within `best` and `at`.
        unsafe {
            _mm256_storeu_ps(bp.add(i), v);
            _mm256_storeu_si256(ap.add(i) as *mut __m256i, a);
        }
    }
    window_max_from(best, at, src, elements, step, full)
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

float_impl!(f32, SCRATCH_F32, sgemm, stencil_f32, window_max_f32, split_phases_f32);
float_impl!(f64, SCRATCH_F64, dgemm, stencil_scalar, window_max_scalar, split_phases_scalar);

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
