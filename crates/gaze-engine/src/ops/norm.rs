//! Inference-mode batch normalisation as one per-channel affine op, so that constant parameters
//! never get a gradient, alone or fused with the ReLU that follows it.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach, relu_grad};
use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use super::linear::same_dtype;
use super::relu::{positive, ReluBackward, ReluMode};
use super::threads;
use crate::{Error, Result};

/// `[N, C, S]`: images, channels, and elements per channel plane.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    s: usize,
}

/// `y = x · scale[c] + shift[c]` over the channels of `[N, C, ...]`, and with `relu` a ReLU after
/// it as one graph node: the forward pass applies `max(·, 0)` to each affine value as it is
/// written, so the graph keeps one tensor where the two ops keep two, and the backward pass applies
/// the ReLU's rule (by its output, which is positive where its input is) before the affine's
/// backward.
struct ChannelAffine {
    d: Dims,
    relu: Option<ReluMode>,
}

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        match self.relu {
            None => "gaze-channel-affine",
            Some(_) => "gaze-channel-affine-relu",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            d: Dims,
            relu: bool,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s1, l1)?;
            let scale = slice::<T>(s2, l2)?;
            let shift = slice::<T>(s3, l3)?;
            let y = threads::collect(x.len(), d.s, x.len(), |i, yp| {
                let (a, b) = (scale[i % d.c], shift[i % d.c]);
                for (v, &u) in yp.iter_mut().zip(&x[i * d.s..]) {
                    let y = u * a + b;
                    v.write(if relu { positive(y) } else { y });
                }
                Ok(())
            })?;
            output(y, l1.shape().clone())
        }
        let relu = self.relu.is_some();
        dispatch_float!("batch_norm", s1, run(self.d, relu, (s1, l1), (s2, l2), (s3, l3)))
    }

    host_fallback!(op3);

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !(x.track_op() || scale.track_op() || shift.track_op()) {
            return Ok((None, None, None));
        }
        let grad = match self.relu {
            Some(mode) => res.apply_op2_no_bwd(&grad.contiguous()?, &ReluBackward(mode))?,
            None => grad.contiguous()?,
        };
        let d = self.d;
        let dx = if x.track_op() { Some(grad.apply_op2_no_bwd(scale, &AffineBackward::Input(d))?) } else { None };
        let dscale = if scale.track_op() { Some(grad.apply_op2_no_bwd(x, &AffineBackward::Scale(d))?) } else { None };
        let dshift = if shift.track_op() { Some(grad.reshape((d.n, d.c, d.s))?.sum((0, 2))?) } else { None };
        Ok((dx, dscale, dshift))
    }
}

/// The gradients of [`ChannelAffine`]: `(dy, scale) ↦ dy · scale[c]` for the input and
/// `(dy, x) ↦ Σ dy · x` per channel for the scale.
enum AffineBackward {
    Input(Dims),
    Scale(Dims),
}

impl CustomOp2 for AffineBackward {
    fn name(&self) -> &'static str {
        "gaze-channel-affine-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &AffineBackward,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let dy = slice::<T>(s1, l1)?;
            let other = slice::<T>(s2, l2)?;
            match *op {
                AffineBackward::Input(d) => {
                    let dx = threads::collect(dy.len(), d.s, dy.len(), |i, dxp| {
                        let a = other[i % d.c];
                        for (v, &g) in dxp.iter_mut().zip(&dy[i * d.s..]) {
                            v.write(g * a);
                        }
                        Ok(())
                    })?;
                    output(dx, l1.shape().clone())
                }
                AffineBackward::Scale(d) => {
                    let ds: Vec<T> = threads::collect(d.c, 1, dy.len(), |c, out| {
                        let mut acc = T::ZERO;
                        for n in 0..d.n {
                            let at = (n * d.c + c) * d.s;
                            for (&g, &x) in dy[at..at + d.s].iter().zip(&other[at..at + d.s]) {
                                acc += g * x;
                            }
                        }
                        out[0].write(acc);
                        Ok(())
                    })?;
                    output(ds, d.c)
                }
            }
        }
        dispatch_float!("batch_norm backward", s1, run(self, (s1, l1), (s2, l2)))
    }

    host_fallback!(op2);
}

/// Inference-mode batch normalisation of `x: [N, C, ...]` (usually `[N, C, H, W]`) with running
/// statistics, as PyTorch's `batch_norm(training=False)`:
/// `y = (x − mean) / √(var + eps) · weight + bias` per channel, computed as PyTorch does,
/// `x · α + β` with `α = weight / √(var + eps)` and `β = bias − mean · α`.
///
/// The parameters and statistics are constants unless they are variables or results of tracked
/// ops; only then does the backward pass compute their gradients.
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (d, x, alpha, beta) = affine_operands(x, weight, bias, running_mean, running_var, eps)?;
    if device::wanted(&x) {
        return Ok(device_affine(&x, &alpha, &beta, None)?);
    }
    Ok(x.apply_op3(&alpha, &beta, ChannelAffine { d, relu: None })?)
}

/// [`batch_norm`] then [`relu`](fn@super::relu) with the backward rule `mode`, as one graph node:
/// `max(batch_norm(x, …), 0)`.
///
/// The values and every gradient are those of the two ops in sequence (the ReLU's gradient is 0
/// where the normalised value is 0 or less, as PyTorch's), but the graph keeps only the ReLU's
/// output, where the two ops keep the normalised tensor too.
/// A model uses it where nothing asks for the batch normalisation's own output.
pub fn batch_norm_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    mode: ReluMode,
) -> Result<Tensor> {
    let (d, x, alpha, beta) = affine_operands(x, weight, bias, running_mean, running_var, eps)?;
    if device::wanted(&x) {
        return Ok(device_affine(&x, &alpha, &beta, Some(mode))?);
    }
    Ok(x.apply_op3(&alpha, &beta, ChannelAffine { d, relu: Some(mode) })?)
}

/// Checks batch normalisation's operands and returns the dimensions with the input, the scale
/// `α = weight / √(var + eps)` and the shift `β = bias − mean · α`, contiguous.
fn affine_operands(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<(Dims, Tensor, Tensor, Tensor)> {
    let dims = x.dims();
    if dims.len() < 2 {
        return Err(Error::Shape {
            what: "batch_norm input".into(),
            expected: "[N, C, ...] (usually [N, C, H, W])".into(),
            got: dims.to_vec(),
        });
    }
    let (n, c) = (dims[0], dims[1]);
    let s = dims[2..].iter().product();
    for (name, t) in
        [("weight", weight), ("bias", bias), ("running mean", running_mean), ("running variance", running_var)]
    {
        if t.dims() != [c] {
            return Err(Error::Shape {
                what: format!("batch_norm {name}"),
                expected: format!("[{c}], one value per channel"),
                got: t.dims().to_vec(),
            });
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::InvalidOption {
            option: "batch_norm eps".into(),
            value: eps.to_string(),
            expected: "a finite number ≥ 0".into(),
        });
    }
    same_dtype(
        "batch_norm",
        &[
            ("weight", weight),
            ("input", x),
            ("bias", bias),
            ("running mean", running_mean),
            ("running variance", running_var),
        ],
    )?;
    let alpha = ((running_var + eps)?.sqrt()?.recip()? * weight)?;
    let beta = (bias - (running_mean * &alpha)?)?;
    Ok((Dims { n, c, s }, x.contiguous()?, alpha.contiguous()?, beta.contiguous()?))
}

/// Batch normalisation (and its ReLU) on the device path (see `device.rs`): `x · α + β` per
/// channel by candle's broadcast ops. When the scale or the shift is tracked, candle's gradients
/// of those ops (exact) give theirs; otherwise the value is attached with the input's gradient
/// alone, `g · α` (after the ReLU's rule).
fn device_affine(x: &Tensor, alpha: &Tensor, beta: &Tensor, relu: Option<ReluMode>) -> CResult<Tensor> {
    let mut shape = vec![1; x.rank()];
    shape[1] = alpha.dim(0)?;
    let (alpha, beta) = (alpha.reshape(shape.as_slice())?, beta.reshape(shape.as_slice())?);
    if alpha.track_op() || beta.track_op() {
        let y = x.broadcast_mul(&alpha)?.broadcast_add(&beta)?;
        return match relu {
            Some(mode) => super::relu(&y, mode).map_err(candle_core::Error::wrap),
            None => Ok(y),
        };
    }
    let value = x.detach().broadcast_mul(&alpha)?.broadcast_add(&beta)?;
    let value = if relu.is_some() { value.relu()? } else { value };
    attach("gaze-batch-norm-device", &[x], value, move |_, y, grad| {
        let grad = match relu {
            Some(mode) => relu_grad(mode, y, grad)?,
            None => grad.clone(),
        };
        Ok(vec![Some(grad.broadcast_mul(&alpha)?)])
    })
}
