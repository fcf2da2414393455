//! The ops on devices other than the host (CUDA): the device path.
//!
//! There the host kernels would copy every operand to the host and back, so each op instead runs
//! its forward pass with candle's own kernels for the device (cuDNN's convolutions with the
//! `cudnn` feature, cuBLAS's products, candle's pooling), without a graph, and attaches gaze's
//! backward pass to the value: a graph node whose gradient is gaze's definition (PyTorch's),
//! written as candle tensor ops that run on the same device. candle's own gradients are never
//! used for the ops whose candle gradient is wrong or costly (ReLU at 0, pooling, convolutions,
//! softmax, products with a constant weight); sums and products of tensors keep candle's, which
//! are exact.
//!
//! The device path runs on any device, the host included: [`set_device_path_on_host`] turns it on
//! for host tensors too, so that the tests compare it with the host kernels value for value and
//! gradient for gradient.
//! The ops' tests in `device_tests.rs` hold every op's device path to its host kernels, values
//! and gradients.
//! A configuration that candle's kernels cannot express (a convolution with different strides or
//! dilations along the two axes, a convolution's weight gradient, which no attribution method
//! asks for) keeps the host kernels, copying to the host and back.
//!
//! This module owns the plumbing: [`attach`], the reshaping helpers [`pad`], [`every`] and
//! [`spread`], and [`sum`]; each op's device path lives beside its host kernels (`device_*` in `conv.rs`,
//! `pool.rs`, …).

use std::cell::Cell;

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result as CResult, Shape, Tensor};

thread_local! {
    static ON_HOST: Cell<bool> = const { Cell::new(false) };
}

/// Runs the device path for host tensors too (`true`), or the host kernels (`false`, the
/// default), for the ops called from the calling thread (a backward pass runs on the thread that
/// calls it). For tests and comparisons: on the host the device path is slower than the host
/// kernels, and equal to them up to float rounding.
pub fn set_device_path_on_host(on: bool) {
    ON_HOST.with(|c| c.set(on));
}

/// Whether [`set_device_path_on_host`] turned the device path on for host tensors on the calling
/// thread.
pub fn device_path_on_host() -> bool {
    ON_HOST.with(Cell::get)
}

/// Whether an op on `t` takes the device path: `t` lies on a device other than the host, or the
/// device path is on for the host too.
pub(super) fn wanted(t: &Tensor) -> bool {
    !t.device().is_cpu() || device_path_on_host()
}

/// The gradients of an attached value: given its operands, the value and the gradient of the
/// value, one gradient per operand (`None` where the operand is not tracked).
pub(super) type Backward = dyn Fn(&[&Tensor], &Tensor, &Tensor) -> CResult<Vec<Option<Tensor>>> + Send + Sync;

/// The graph node of [`attach`]: its forward pass copies the value (its last operand), its
/// backward pass calls `backward`.
struct Attach {
    name: &'static str,
    backward: Box<Backward>,
}

/// A copy of a storage's elements in its layout's order, on the storage's device.
fn copy_value<S: BackendStorage<Device = D>, D: BackendDevice<Storage = S>>(s: &S, l: &Layout) -> CResult<(S, Shape)> {
    // SAFETY: `copy_strided_src` writes every element of the new storage before anyone reads it.
    let mut out = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut out, 0, l)?;
    Ok((out, l.shape().clone()))
}

/// Gradient `i` of `grads` (taken out), or a clear error when `backward` returned fewer.
fn nth(grads: &mut [Option<Tensor>], i: usize, name: &str) -> CResult<Option<Tensor>> {
    match grads.get_mut(i) {
        Some(g) => Ok(g.take()),
        None => candle_core::bail!("{name}: the backward pass returned {} gradients, {} wanted", grads.len(), i + 1),
    }
}

impl CustomOp2 for Attach {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        copy_value(s, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> CResult<(candle_core::CudaStorage, Shape)> {
        copy_value(s, l)
    }

    fn bwd(&self, a: &Tensor, _: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let mut g = (self.backward)(&[a], res, grad)?;
        Ok((nth(&mut g, 0, self.name)?, None))
    }
}

impl CustomOp3 for Attach {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        s: &CpuStorage,
        l: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        copy_value(s, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> CResult<(candle_core::CudaStorage, Shape)> {
        copy_value(s, l)
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = (self.backward)(&[a, b], res, grad)?;
        Ok((nth(&mut g, 0, self.name)?, nth(&mut g, 1, self.name)?, None))
    }
}

/// `value` (computed from `operands` without a graph) as a graph node whose backward pass is
/// `backward`; `value` itself when no operand is tracked (nothing will ask for a gradient).
/// One or two operands.
pub(super) fn attach(
    name: &'static str,
    operands: &[&Tensor],
    value: Tensor,
    backward: impl Fn(&[&Tensor], &Tensor, &Tensor) -> CResult<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> CResult<Tensor> {
    #[cfg(test)]
    tests::ATTACHED.with(|c| c.set(c.get() + 1));
    let value = value.detach();
    if !operands.iter().any(|t| t.track_op()) {
        return Ok(value);
    }
    let op = Attach { name, backward: Box::new(backward) };
    match operands {
        [a] => a.apply_op2(&value, op),
        [a, b] => a.apply_op3(b, &value, op),
        _ => candle_core::bail!("{name}: {} operands to attach a gradient to, one or two expected", operands.len()),
    }
}

/// `t` with `left` elements before and `right` after it along `dim`, each `fill` (zeros when
/// `None`); a negative count removes that many elements from that end instead.
pub(super) fn pad(t: &Tensor, dim: usize, left: isize, right: isize, fill: Option<f64>) -> CResult<Tensor> {
    let len = t.dim(dim)? as isize;
    let (cut_l, cut_r) = ((-left).max(0), (-right).max(0));
    if cut_l + cut_r > len {
        candle_core::bail!("pad: removing {cut_l} + {cut_r} of {len} elements along dimension {dim}");
    }
    let mut t =
        if cut_l + cut_r > 0 { t.narrow(dim, cut_l as usize, (len - cut_l - cut_r) as usize)? } else { t.clone() };
    let (left, right) = (left.max(0) as usize, right.max(0) as usize);
    if left + right == 0 {
        return Ok(t);
    }
    match fill {
        None | Some(0.0) => t = t.pad_with_zeros(dim, left, right)?,
        Some(v) => {
            let block = |n: usize| -> CResult<Tensor> {
                let mut dims = t.dims().to_vec();
                dims[dim] = n;
                Tensor::ones(dims, t.dtype(), t.device())?.affine(v, 0.0)
            };
            let mut parts = Vec::with_capacity(3);
            if left > 0 {
                parts.push(block(left)?);
            }
            parts.push(t.clone());
            if right > 0 {
                parts.push(block(right)?);
            }
            t = Tensor::cat(&parts, dim)?;
        }
    }
    Ok(t)
}

/// The `count` elements `start, start + step, …` of `t` along `dim` (which must exist).
pub(super) fn every(t: &Tensor, dim: usize, start: usize, count: usize, step: usize) -> CResult<Tensor> {
    let t = t.narrow(dim, start, (count - 1) * step + 1)?;
    if step == 1 {
        return Ok(t);
    }
    // Pad to `count · step` elements, view them as `count × step` and keep the first column.
    let t = t.pad_with_zeros(dim, 0, step - 1)?;
    let mut dims = t.dims().to_vec();
    dims.splice(dim..=dim, [count, step]);
    t.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

/// The inverse of [`every`]: a tensor of `len` elements along `dim`, zero except at
/// `offset, offset + step, …`, which hold `t`'s elements in order.
pub(super) fn spread(t: &Tensor, dim: usize, offset: usize, step: usize, len: usize) -> CResult<Tensor> {
    let count = t.dim(dim)?;
    let reach = (count.max(1) - 1) * step + 1;
    if offset + reach > len {
        candle_core::bail!("spread: {count} elements {step} apart from {offset} do not fit in {len}");
    }
    let t = if step > 1 {
        let t = t.unsqueeze(dim + 1)?.pad_with_zeros(dim + 1, 0, step - 1)?;
        let mut dims = t.dims().to_vec();
        dims.splice(dim..=dim + 1, [count * step]);
        t.reshape(dims)?.narrow(dim, 0, reach)?
    } else {
        t.clone()
    };
    t.pad_with_zeros(dim, offset, len - offset - reach)
}

/// The mask `[value > 0]` of `value`'s dtype: where a ReLU passes its gradient.
fn positive_mask(value: &Tensor) -> CResult<Tensor> {
    value.gt(&value.zeros_like()?)?.to_dtype(value.dtype())
}

/// The gradient of a ReLU with rule `mode` for the upstream gradient `grad`, where `value` is the
/// ReLU's input or output (both are positive at the same places).
pub(super) fn relu_grad(mode: super::ReluMode, value: &Tensor, grad: &Tensor) -> CResult<Tensor> {
    use super::ReluMode;
    let value = value.detach();
    match mode {
        ReluMode::Normal => grad * positive_mask(&value)?,
        ReluMode::Guided => grad.relu()? * positive_mask(&value)?,
        ReluMode::Deconvnet => grad.relu(),
    }
}

/// The sum of `terms` (at least one, all of one shape): a kernel's taps or a window's offsets.
pub(super) fn sum(terms: impl IntoIterator<Item = CResult<Tensor>>, what: &str) -> CResult<Tensor> {
    let mut total: Option<Tensor> = None;
    for term in terms {
        let term = term?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    total.ok_or_else(|| candle_core::Error::Msg(format!("{what}: nothing to sum")))
}

/// A host vector as a tensor of `t`'s dtype on `t`'s device.
pub(super) fn constant(values: Vec<f64>, shape: impl Into<Shape>, like: &Tensor) -> CResult<Tensor> {
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)?.to_dtype(like.dtype())?.to_device(like.device())
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
