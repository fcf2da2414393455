use candle_core::{CpuStorage, CustomOp1, Layout, Result as CResult, Shape, Tensor, D};

use super::device::{self, attach};
use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use crate::Result;

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "gaze-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s, l)?;
            let k = l.dims().last().copied().unwrap_or(1).max(1);
            let mut y = Vec::with_capacity(x.len());
            for row in x.chunks(k) {
                let max = row.iter().copied().fold(T::NEG_INFINITY, |m, v| if v > m { v } else { m });
                let start = y.len();
                let mut sum = T::ZERO;
                for &v in row {
                    let e = (v - max).exp();
                    sum += e;
                    y.push(e);
                }
                for e in &mut y[start..] {
                    *e /= sum;
                }
            }
            output(y, l.shape().clone())
        }
        dispatch_float!("softmax", s, run(s, l))
    }

    host_fallback!(op1);

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        // d softmax: y ⊙ (g − Σ g ⊙ y)
        let dot = (grad * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((res * grad.broadcast_sub(&dot)?)?))
    }
}

/// Softmax over the last dimension, numerically stable, with its gradient.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if device::wanted(x) {
        // The device path (see `device.rs`): candle's softmax kernel, the same gradient.
        let value = candle_nn::ops::softmax_last_dim(&x.detach().contiguous()?)?;
        return Ok(attach("gaze-softmax-device", &[x], value, |_, y, grad| {
            let dot = (grad * y)?.sum_keepdim(D::Minus1)?;
            Ok(vec![Some((y * grad.broadcast_sub(&dot)?)?)])
        })?);
    }
    Ok(x.contiguous()?.apply_op1(SoftmaxLastDim)?)
}
