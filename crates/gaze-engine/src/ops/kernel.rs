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
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn exp(self) -> Self {
        f32::exp(self)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn exp(self) -> Self {
        f64::exp(self)
    }
}

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
