use candle_core::{CpuStorage, CustomOp1, Layout, Result as CResult, Shape, Tensor};

use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use crate::Result;

/// The backward rule of a ReLU.
///
/// The forward pass is `max(x, 0)` in every mode; the modes differ only in the gradient they pass
/// back for an upstream gradient `g`:
/// - `Normal`: `g · [x > 0]` (PyTorch's rule: the gradient at exactly 0 is 0);
/// - `Guided`: `max(g, 0) · [x > 0]` (guided backpropagation, Springenberg et al. 2015,
///   <https://arxiv.org/abs/1412.6806>);
/// - `Deconvnet`: `max(g, 0)` (Zeiler and Fergus 2014, <https://arxiv.org/abs/1311.2901>).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReluMode {
    #[default]
    Normal,
    Guided,
    Deconvnet,
}

struct Relu(ReluMode);

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "gaze-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s, l)?;
            let y: Vec<T> = x.iter().map(|&v| if v > T::ZERO { v } else { T::ZERO }).collect();
            output(y, l.shape().clone())
        }
        dispatch_float!("relu", s, run(s, l))
    }

    host_fallback!(op1);

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let g = match self.0 {
            ReluMode::Normal => (grad * arg.gt(0.0)?.to_dtype(grad.dtype())?)?,
            ReluMode::Guided => (grad.relu()? * arg.gt(0.0)?.to_dtype(grad.dtype())?)?,
            ReluMode::Deconvnet => grad.relu()?,
        };
        Ok(Some(g))
    }
}

/// `max(x, 0)` with the backward rule of `mode`.
pub fn relu(x: &Tensor, mode: ReluMode) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(Relu(mode))?)
}
