use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach, relu_grad};
use super::kernel::{dispatch_float, host_fallback, map, output, slice, zip_map, Float};
use super::linear::same_dtype;
use crate::{Error, Result};

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
            let y = map(slice::<T>(s, l)?, positive)?;
            output(y, l.shape().clone())
        }
        dispatch_float!("relu", s, run(s, l))
    }

    host_fallback!(op1);

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &ReluBackward(self.0))?))
    }
}

/// `max(v, 0)`, with 0 for a NaN: the forward rule of every ReLU mode.
#[inline]
pub(super) fn positive<T: Float>(v: T) -> T {
    if v > T::ZERO {
        v
    } else {
        T::ZERO
    }
}

/// The gradient of [`Relu`]: `(x, g) ↦ dx` by the rule of the mode, in one pass over both.
///
/// `x` may be the ReLU's input or its output: both are positive at the same places, and the rule
/// reads nothing else of `x` (the fused convolution and ReLU passes its output).
pub(super) struct ReluBackward(pub(super) ReluMode);

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "gaze-relu-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            mode: ReluMode,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let (x, g) = (slice::<T>(s1, l1)?, slice::<T>(s2, l2)?);
            let dx = match mode {
                ReluMode::Deconvnet => map(g, |g| backward_rule(mode, T::ZERO, g))?,
                _ => zip_map(x, g, |x, g| backward_rule(mode, x, g))?,
            };
            output(dx, l1.shape().clone())
        }
        dispatch_float!("relu backward", s1, run(self.0, (s1, l1), (s2, l2)))
    }

    host_fallback!(op2);
}

/// The gradient a ReLU with the rule `mode` passes back for the output gradient `g` at an element
/// where its input (or output) is `x`: `g` where `x > 0` (Normal), `max(g, 0)` where `x > 0`
/// (Guided), `max(g, 0)` (Deconvnet, which reads no `x`); 0 elsewhere.
#[inline(always)]
pub(super) fn backward_rule<T: Float>(mode: ReluMode, x: T, g: T) -> T {
    let pos = |v: T| if v > T::ZERO { v } else { T::ZERO };
    match mode {
        ReluMode::Normal if x > T::ZERO => g,
        ReluMode::Guided if x > T::ZERO => pos(g),
        ReluMode::Deconvnet => pos(g),
        _ => T::ZERO,
    }
}

/// `max(x, 0)` with the backward rule of `mode`.
pub fn relu(x: &Tensor, mode: ReluMode) -> Result<Tensor> {
    if device::wanted(x) {
        let value = x.detach().relu()?;
        return Ok(attach("gaze-relu-device", &[x], value, move |_, y, grad| {
            Ok(vec![Some(relu_grad(mode, y, grad)?)])
        })?);
    }
    Ok(x.contiguous()?.apply_op1(Relu(mode))?)
}

/// A sum of two tensors of one shape followed by a ReLU as one graph node: the graph keeps the
/// ReLU's output only, where the two ops keep the sum too, and the backward pass applies the
/// ReLU's rule (by its output) and hands that gradient to both terms, as a sum's backward does.
struct AddRelu(ReluMode);

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "gaze-add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let y = zip_map(slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, |a, b| positive(a + b))?;
            output(y, l1.shape().clone())
        }
        dispatch_float!("add relu", s1, run((s1, l1), (s2, l2)))
    }

    host_fallback!(op2);

    fn bwd(&self, a: &Tensor, b: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        if !(a.track_op() || b.track_op()) {
            return Ok((None, None));
        }
        let grad = res.apply_op2_no_bwd(&grad.contiguous()?, &ReluBackward(self.0))?;
        let da = if a.track_op() { Some(grad.clone()) } else { None };
        let db = if b.track_op() { Some(grad) } else { None };
        Ok((da, db))
    }
}

/// `max(a + b, 0)` for two tensors of one shape, with the backward rule `mode`, as one graph node.
///
/// The values and gradients are those of `a + b` then [`relu`](fn@relu), but the graph keeps only
/// the ReLU's output, where the two ops keep the sum too.
/// A residual network uses it for a block's sum and ReLU where nothing asks for the sum.
pub fn add_relu(a: &Tensor, b: &Tensor, mode: ReluMode) -> Result<Tensor> {
    if a.dims() != b.dims() {
        return Err(Error::Shape {
            what: "add_relu second operand".into(),
            expected: format!("{:?}, the shape of the first", a.dims()),
            got: b.dims().to_vec(),
        });
    }
    same_dtype("add_relu", &[("first operand", a), ("second operand", b)])?;
    if device::wanted(a) {
        let value = (a.detach() + b.detach())?.relu()?;
        return Ok(attach("gaze-add-relu-device", &[a, b], value, move |operands, y, grad| {
            let g = relu_grad(mode, y, grad)?;
            Ok(operands.iter().map(|t| t.track_op().then(|| g.clone())).collect())
        })?);
    }
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu(mode))?)
}
