//! The fully connected layer `y = x·Wᵀ + b` on `gemm`, with gradients only where they are needed.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach};
use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use super::matmul::{matmul, Mat};
use super::threads::{self, SharedOut};
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
                LinearBackward::Input(d) => output(input_grad(d, dy, other)?, (d.n, d.inp)),
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

/// At most this many images take [`input_grad`]'s sum of live rows; a larger batch is one product.
const FEW_IMAGES: usize = 4;

/// The input gradient `dx = dy·W` of a layer with `dy: [n, out]` and `W: [out, in]`.
///
/// Row `o` of `W` adds `dy[i, o]·W[o]` to image `i`'s gradient, nothing where the output's
/// gradient is zero for every image; behind a ReLU about half of a layer's outputs have a zero
/// gradient. With a few images ([`FEW_IMAGES`]) and at least an eighth of the rows silent, the
/// gradient is summed from the live rows only, so the silent ones are never read (on VGG16's
/// first classifier layer, 400 MB of weights read once per image, about half of them), the
/// columns split over the threads; otherwise it is one matrix product.
/// A silent row's weights are skipped even where they are infinite or NaN, whose product with 0
/// the full product would carry into the gradient as NaN.
fn input_grad<T: Float>(d: Dims, dy: &[T], w: &[T]) -> CResult<Vec<T>> {
    let mut dx = vec![T::ZERO; d.n * d.inp];
    if d.n <= FEW_IMAGES {
        let live: Vec<usize> = (0..d.out).filter(|&o| (0..d.n).any(|i| dy[i * d.out + o] != T::ZERO)).collect();
        if live.len() * 8 <= d.out * 7 {
            live_rows_into(d, &live, dy, w, &mut dx)?;
            return Ok(dx);
        }
    }
    matmul(d.n, d.inp, d.out, &mut dx, d.inp, false, Mat::rows(dy, d.out), Mat::rows(w, d.inp))?;
    Ok(dx)
}

/// `dx[i] += Σ_{o ∈ live} dy[i, o]·W[o]` for every image `i`, in parts of columns run in
/// parallel, each part in blocks of columns whose rows of `dx` stay in the core's cache.
fn live_rows_into<T: Float>(d: Dims, live: &[usize], dy: &[T], w: &[T], dx: &mut [T]) -> CResult<()> {
    if dy.len() != d.n * d.out || w.len() != d.out * d.inp || dx.len() != d.n * d.inp {
        candle_core::bail!("linear input gradient: operands do not fit {d:?}");
    }
    let parts = (2 * threads::count()?).min(d.inp.div_ceil(64)).max(1);
    let step = d.inp.div_ceil(parts).div_ceil(16) * 16;
    // One image's part stays in cache whole; several images' rows in blocks of 64 Ki elements.
    let block = if d.n == 1 { step } else { ((1 << 16) / d.n).max(1024) };
    let out = SharedOut::new(dx);
    threads::run(d.inp.div_ceil(step), live.len() * d.inp * d.n, |p| {
        let (c0, c1) = (p * step, ((p + 1) * step).min(d.inp));
        // SAFETY: part `p` alone writes columns `c0..c1` of each image's row.
        let mut rows: Vec<&mut [T]> =
            (0..d.n).map(|i| unsafe { out.slice(i * d.inp + c0, c1 - c0) }).collect::<CResult<_>>()?;
        for b0 in (c0..c1).step_by(block) {
            let b1 = (b0 + block).min(c1);
            for &o in live {
                let wr = &w[o * d.inp + b0..o * d.inp + b1];
                for (i, row) in rows.iter_mut().enumerate() {
                    let a = dy[i * d.out + o];
                    for (x, &v) in row[b0 - c0..b1 - c0].iter_mut().zip(wr) {
                        *x += a * v;
                    }
                }
            }
        }
        Ok(())
    })
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
    same_dtype("linear", &[("weight", weight), ("input", x), ("bias", &bias)])?;
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

/// Fails unless every operand has the dtype of the first one (an op's weight comes first, so that
/// an input of another dtype is the value the error names).
pub(crate) fn same_dtype(op: &str, operands: &[(&str, &Tensor)]) -> Result<()> {
    let Some((_, first)) = operands.first() else {
        return Ok(());
    };
    for (name, t) in operands {
        if t.dtype() != first.dtype() {
            return Err(Error::InvalidOption {
                option: format!("{op} {name} dtype"),
                value: format!("{:?}", t.dtype()),
                expected: format!(
                    "{:?}, the dtype of the {} (a model computes in its weights' dtype: convert the input to it)",
                    first.dtype(),
                    operands[0].0
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| ((i as f64 + 1.0) * seed).sin()).collect()
    }

    /// The sum of live rows gives the full product's gradient, for one image and several, with
    /// rows silent for every image, rows silent for some images only, and no live row at all;
    /// the widths make parts and blocks of columns end off their multiples.
    #[test]
    fn the_live_rows_give_the_products_gradient() {
        for (n, inp, out) in [(1, 3000, 40), (3, 2500, 33), (4, 70, 9), (1, 5, 1)] {
            let d = Dims { n, inp, out };
            let w = data(out * inp, 0.37);
            let mut dy = data(n * out, 0.71);
            for o in 0..out {
                for i in 0..n {
                    // Every third output is silent for all images, every fifth for image 0 only.
                    if o % 3 == 0 || (o % 5 == 0 && i == 0) {
                        dy[i * out + o] = if o % 2 == 0 { 0.0 } else { -0.0 };
                    }
                }
            }
            let mut want = vec![0.0; n * inp];
            matmul(n, inp, out, &mut want, inp, false, Mat::rows(&dy, out), Mat::rows(&w, inp)).unwrap();
            let live: Vec<usize> = (0..out).filter(|&o| (0..n).any(|i| dy[i * out + o] != 0.0)).collect();
            assert!(live.len() < out);
            let mut got = vec![0.0; n * inp];
            live_rows_into(d, &live, &dy, &w, &mut got).unwrap();
            for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((g - e).abs() < 1e-12, "{d:?}: dx[{k}] {g} vs {e}");
            }
            // Through the dispatch: the same gradient, in f64 and in f32.
            let via = input_grad(d, &dy, &w).unwrap();
            assert!(via.iter().zip(&want).all(|(g, e)| (g - e).abs() < 1e-12), "{d:?}: input_grad");
            let (dy32, w32): (Vec<f32>, Vec<f32>) =
                (dy.iter().map(|&v| v as f32).collect(), w.iter().map(|&v| v as f32).collect());
            let via32 = input_grad(d, &dy32, &w32).unwrap();
            for (g, e) in via32.iter().zip(&want) {
                assert!((*g as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{d:?}: f32 {g} vs {e}");
            }
            // No live row: a zero gradient.
            let zeros = vec![0.0; n * out];
            assert!(input_grad(d, &zeros, &w).unwrap().iter().all(|&g| g == 0.0));
        }
    }
}
