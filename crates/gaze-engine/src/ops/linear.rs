//! The fully connected layer `y = x·Wᵀ + b` on `gemm`, with gradients only where they are needed.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach};
use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use super::matmul::{matmul, Mat};
use crate::{Error, Result};

/// `[N, in] × [out, in] + [out]`, the sizes checked when the op was built.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    inp: usize,
    out: usize,
}

struct Linear(Dims);

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "gaze-linear"
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
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s1, l1)?;
            let w = slice::<T>(s2, l2)?;
            let b = slice::<T>(s3, l3)?;
            let mut y = Vec::with_capacity(d.n * d.out);
            for _ in 0..d.n {
                y.extend_from_slice(b);
            }
            matmul(d.n, d.out, d.inp, &mut y, d.out, true, Mat::rows(x, d.inp), Mat::transposed(w, d.inp))?;
            output(y, (d.n, d.out))
        }
        dispatch_float!("linear", s1, run(self.0, (s1, l1), (s2, l2), (s3, l3)))
    }

    host_fallback!(op3);

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() { Some(grad.apply_op2_no_bwd(weight, &LinearBackward::Input(self.0))?) } else { None };
        let dw =
            if weight.track_op() { Some(grad.apply_op2_no_bwd(x, &LinearBackward::Weight(self.0))?) } else { None };
        let db = if bias.track_op() { Some(grad.sum(0)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The gradients of [`Linear`]: `(dy, W) ↦ dy·W` for the input, `(dy, x) ↦ dyᵀ·x` for the weight.
enum LinearBackward {
    Input(Dims),
    Weight(Dims),
}

impl CustomOp2 for LinearBackward {
    fn name(&self) -> &'static str {
        "gaze-linear-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &LinearBackward,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let dy = slice::<T>(s1, l1)?;
            let other = slice::<T>(s2, l2)?;
            match *op {
                LinearBackward::Input(d) => {
                    let mut dx = vec![T::ZERO; d.n * d.inp];
                    let (dy, w) = (Mat::rows(dy, d.out), Mat::rows(other, d.inp));
                    matmul(d.n, d.inp, d.out, &mut dx, d.inp, false, dy, w)?;
                    output(dx, (d.n, d.inp))
                }
                LinearBackward::Weight(d) => {
                    let mut dw = vec![T::ZERO; d.out * d.inp];
                    let (dyt, x) = (Mat::transposed(dy, d.out), Mat::rows(other, d.inp));
                    matmul(d.out, d.inp, d.n, &mut dw, d.inp, false, dyt, x)?;
                    output(dw, (d.out, d.inp))
                }
            }
        }
        dispatch_float!("linear backward", s1, run(self, (s1, l1), (s2, l2)))
    }

    host_fallback!(op2);
}

/// A fully connected layer: `x: [N, in]`, `weight: [out, in]` (PyTorch's layout), `bias: [out]`,
/// giving `x·Wᵀ + b: [N, out]`.
///
/// The backward pass computes the input's gradient, and the weight's and bias's only when they
/// are variables or results of tracked ops; a constant weight never gets a gradient.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (n, inp) = match x.dims() {
        &[n, inp] => (n, inp),
        d => return Err(Error::Shape { what: "linear input".into(), expected: "[N, in]".into(), got: d.to_vec() }),
    };
    let out = match weight.dims() {
        &[out, i] if i == inp => out,
        d => {
            return Err(Error::Shape {
                what: "linear weight".into(),
                expected: format!("[out, {inp}] for an input of {inp} features"),
                got: d.to_vec(),
            })
        }
    };
    let bias_given = bias;
    let bias = match bias {
        Some(b) if b.dims() == [out] => b.contiguous()?,
        Some(b) => {
            return Err(Error::Shape {
                what: "linear bias".into(),
                expected: format!("[{out}]"),
                got: b.dims().to_vec(),
            })
        }
        None => Tensor::zeros(out, x.dtype(), x.device())?,
    };
    same_dtype("linear", &[("input", x), ("weight", weight), ("bias", &bias)])?;
    if device::wanted(x) {
        return Ok(device_linear(x, weight, bias_given)?);
    }
    let dims = Dims { n, inp, out };
    Ok(x.contiguous()?.apply_op3(&weight.contiguous()?, &bias, Linear(dims))?)
}

/// The linear layer on the device path (see `device.rs`): candle's product (cuBLAS's on CUDA),
/// with a backward pass that computes the weight's gradient only when the weight is tracked
/// (candle's would always compute it); an untracked bias is added into the value, a tracked one
/// by candle's broadcast sum.
fn device_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> CResult<Tensor> {
    let mut value = x.detach().matmul(&weight.detach().t()?)?;
    if let Some(b) = bias.filter(|b| !b.track_op()) {
        value = value.broadcast_add(&b.detach())?;
    }
    let y = attach("gaze-linear-device", &[x, weight], value, |operands, _, grad| {
        let (x, w) = (operands[0], operands[1]);
        let dx = if x.track_op() { Some(grad.matmul(&w.detach())?) } else { None };
        let dw = if w.track_op() { Some(grad.t()?.matmul(&x.detach())?) } else { None };
        Ok(vec![dx, dw])
    })?;
    match bias.filter(|b| b.track_op()) {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Fails unless every operand has the dtype of the first one.
pub(crate) fn same_dtype(op: &str, operands: &[(&str, &Tensor)]) -> Result<()> {
    let Some((_, first)) = operands.first() else {
        return Ok(());
    };
    for (name, t) in operands {
        if t.dtype() != first.dtype() {
            return Err(Error::InvalidOption {
                option: format!("{op} {name} dtype"),
                value: format!("{:?}", t.dtype()),
                expected: format!("{:?}, the dtype of the {}", first.dtype(), operands[0].0),
            });
        }
    }
    Ok(())
}
