//! Bilinear resizing exactly as PyTorch's `interpolate(mode="bilinear")`, with its gradient.

use candle_core::{CpuStorage, CustomOp1, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach, constant};
use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use super::pool::rank4;
use super::threads;
use crate::{Error, Result};

/// A validated resize of `planes` planes from `h × w` to `oh × ow`.
#[derive(Clone, Copy, Debug)]
struct Geom {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    align_corners: bool,
}

/// Where output index `o` reads along one axis: the two source indices and their weights.
#[derive(Clone, Copy, Debug)]
struct Tap<T> {
    i0: usize,
    i1: usize,
    l0: T,
    l1: T,
}

/// PyTorch's `compute_source_index_and_lambda` for every output index of one axis, computed in
/// the tensor's own precision as PyTorch does.
fn taps<T: Float>(input: usize, out: usize, align_corners: bool) -> Vec<Tap<T>> {
    if input == out {
        return (0..out).map(|i| Tap { i0: i, i1: i, l0: T::ONE, l1: T::ZERO }).collect();
    }
    let f = |v: usize| T::from_f64(v as f64);
    let half = T::from_f64(0.5);
    let scale = if align_corners {
        if out > 1 {
            f(input - 1) / f(out - 1)
        } else {
            T::ZERO
        }
    } else {
        f(input) / f(out)
    };
    (0..out)
        .map(|o| {
            let src = if align_corners {
                scale * f(o)
            } else {
                let s = scale * (f(o) + half) - half;
                if s < T::ZERO {
                    T::ZERO
                } else {
                    s
                }
            };
            let i0 = (src.to_f64().floor() as usize).min(input - 1);
            let mut l1 = src - f(i0);
            if l1 < T::ZERO {
                l1 = T::ZERO;
            }
            if l1 > T::ONE {
                l1 = T::ONE;
            }
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            Tap { i0, i1, l0: T::ONE - l1, l1 }
        })
        .collect()
}

struct Bilinear(Geom);

impl CustomOp1 for Bilinear {
    fn name(&self) -> &'static str {
        "gaze-upsample-bilinear2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(g: &Geom, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s, l)?;
            let ty = taps::<T>(g.h, g.oh, g.align_corners);
            let tx = taps::<T>(g.w, g.ow, g.align_corners);
            let mut y = vec![T::ZERO; g.planes * g.oh * g.ow];
            threads::chunks_mut(&mut y, g.oh * g.ow, 4 * g.planes * g.oh * g.ow, |i, yp| {
                let xp = &x[i * (g.h * g.w)..(i + 1) * (g.h * g.w)];
                for (row, a) in yp.chunks_exact_mut(g.ow).zip(&ty) {
                    let (r0, r1) = (&xp[a.i0 * g.w..][..g.w], &xp[a.i1 * g.w..][..g.w]);
                    for (v, b) in row.iter_mut().zip(&tx) {
                        *v = a.l0 * (b.l0 * r0[b.i0] + b.l1 * r0[b.i1]) + a.l1 * (b.l0 * r1[b.i0] + b.l1 * r1[b.i1]);
                    }
                }
                Ok(())
            })?;
            let d = l.dims();
            output(y, (d[0], d[1], g.oh, g.ow))
        }
        dispatch_float!("upsample_bilinear2d", s, run(&self.0, s, l))
    }

    host_fallback!(op1);

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&BilinearBackward(self.0))?))
    }
}

/// The gradient of [`Bilinear`]: each output's gradient goes to its four sources with the
/// forward's weights.
struct BilinearBackward(Geom);

impl CustomOp1 for BilinearBackward {
    fn name(&self) -> &'static str {
        "gaze-upsample-bilinear2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(g: &Geom, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let dy = slice::<T>(s, l)?;
            let ty = taps::<T>(g.h, g.oh, g.align_corners);
            let tx = taps::<T>(g.w, g.ow, g.align_corners);
            let mut dx = vec![T::ZERO; g.planes * g.h * g.w];
            threads::chunks_mut(&mut dx, g.h * g.w, 4 * dy.len(), |i, dxp| {
                let dyp = &dy[i * (g.oh * g.ow)..(i + 1) * (g.oh * g.ow)];
                for (row, a) in dyp.chunks_exact(g.ow).zip(&ty) {
                    for (&d, b) in row.iter().zip(&tx) {
                        let (top, bottom) = (a.l0 * d, a.l1 * d);
                        dxp[a.i0 * g.w + b.i0] += b.l0 * top;
                        dxp[a.i0 * g.w + b.i1] += b.l1 * top;
                        dxp[a.i1 * g.w + b.i0] += b.l0 * bottom;
                        dxp[a.i1 * g.w + b.i1] += b.l1 * bottom;
                    }
                }
                Ok(())
            })?;
            let d = l.dims();
            output(dx, (d[0], d[1], g.h, g.w))
        }
        dispatch_float!("upsample_bilinear2d backward", s, run(&self.0, s, l))
    }

    host_fallback!(op1);
}

/// Resizes `x: [N, C, H, W]` to `[N, C, oh, ow]` exactly as PyTorch's
/// `interpolate(x, size=(oh, ow), mode="bilinear", align_corners=...)` (without antialiasing, so
/// shrinking samples the input rather than averaging it), with the matching gradient.
///
/// With `align_corners` the corner pixels' centres map onto each other
/// (`src = o · (H − 1) / (oh − 1)`); without it, pixel areas do
/// (`src = max((o + ½) · H / oh − ½, 0)`).
pub fn upsample_bilinear2d(x: &Tensor, out: (usize, usize), align_corners: bool) -> Result<Tensor> {
    let [n, c, h, w] = rank4("upsample_bilinear2d", x.dims())?;
    if out.0 == 0 || out.1 == 0 {
        return Err(Error::InvalidOption {
            option: "upsample_bilinear2d output size".into(),
            value: format!("({}, {})", out.0, out.1),
            expected: "sizes of at least 1".into(),
        });
    }
    let g = Geom { planes: n * c, h, w, oh: out.0, ow: out.1, align_corners };
    if device::wanted(x) {
        return Ok(device_bilinear(&g, x)?);
    }
    Ok(x.contiguous()?.apply_op1(Bilinear(g))?)
}

/// The interpolation matrix of one axis (`out × input`, row `o` holding output `o`'s two
/// weights), from the taps computed in `T`'s precision as the host kernel computes them.
fn tap_matrix<T: Float>(input: usize, out: usize, align_corners: bool) -> Vec<f64> {
    let mut m = vec![0.0; out * input];
    for (o, t) in taps::<T>(input, out, align_corners).into_iter().enumerate() {
        m[o * input + t.i0] += t.l0.to_f64();
        m[o * input + t.i1] += t.l1.to_f64();
    }
    m
}

/// `a · t · bᵀ` for each plane of `t: [N, C, H, W]`, with `a: [OH, H]` and `b: [OW, W]`.
fn separable(t: &Tensor, a: &Tensor, b: &Tensor) -> CResult<Tensor> {
    let (n, c, h, w) = t.dims4()?;
    let (oh, ow) = (a.dim(0)?, b.dim(0)?);
    let cols = t.contiguous()?.reshape((n * c * h, w))?.matmul(&b.t()?)?;
    let cols = cols.reshape((n * c, h, ow))?.transpose(1, 2)?.contiguous()?.reshape((n * c * ow, h))?;
    let both = cols.matmul(&a.t()?)?;
    both.reshape((n * c, ow, oh))?.transpose(1, 2)?.contiguous()?.reshape((n, c, oh, ow))
}

/// Bilinear resizing on the device path (see `device.rs`): two products with the axes'
/// interpolation matrices (the host kernel's weights), and for the gradient two products with
/// their transposes.
fn device_bilinear(g: &Geom, x: &Tensor) -> CResult<Tensor> {
    let (rows, cols) = match x.dtype() {
        candle_core::DType::F64 => {
            (tap_matrix::<f64>(g.h, g.oh, g.align_corners), tap_matrix::<f64>(g.w, g.ow, g.align_corners))
        }
        _ => (tap_matrix::<f32>(g.h, g.oh, g.align_corners), tap_matrix::<f32>(g.w, g.ow, g.align_corners)),
    };
    let a = constant(rows, (g.oh, g.h), x)?;
    let b = constant(cols, (g.ow, g.w), x)?;
    let value = separable(&x.detach(), &a, &b)?;
    let (at, bt) = (a.t()?.contiguous()?, b.t()?.contiguous()?);
    attach("gaze-upsample-bilinear2d-device", &[x], value, move |_, _, grad| Ok(vec![Some(separable(grad, &at, &bt)?)]))
}
