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
}

thread_local! {
    static SCRATCH_F32: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static SCRATCH_F64: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

macro_rules! float_impl {
    ($t:ident, $scratch:ident, $blas:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            fn exp(self) -> Self {
                $t::exp(self)
            }

            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                $scratch.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        if buf.len() < len {
                            buf.resize(len, 0.0);
                        }
                        f(&mut buf[..len])
                    }
                    // A kernel nested in another on the same thread gets a buffer of its own.
                    Err(_) => f(&mut vec![0.0; len]),
                })
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
        }
    };
}

float_impl!(f32, SCRATCH_F32, sgemm);
float_impl!(f64, SCRATCH_F64, dgemm);

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
