//! 2-D convolution with any stride, padding, dilation and groups, on `gemm` (im2col) or, for
//! depthwise convolutions, a direct loop; its backward computes only the gradients that are needed.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result as CResult, Shape, Tensor};
use rayon::prelude::*;

use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use super::linear::same_dtype;
use super::matmul::{matmul, Mat};
use super::pool::rank4;
use crate::{Error, Result};

/// The geometry of a 2-D convolution, PyTorch's `Conv2d` arguments.
///
/// `Conv2dConfig::default()` is stride 1, no padding, dilation 1 and one group; the builder
/// methods set one of them for both axes (`Conv2dConfig::default().stride(2).padding(1)`) and
/// their `_hw` forms set `(vertical, horizontal)` separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// The step between output positions, `(vertical, horizontal)`.
    pub stride: (usize, usize),
    /// Zero padding on each side, `(top and bottom, left and right)`.
    pub padding: (usize, usize),
    /// The spacing of the kernel's taps, `(vertical, horizontal)`.
    pub dilation: (usize, usize),
    /// The number of groups: input and output channels are split into this many groups, each
    /// convolved separately (`groups` = input channels is a depthwise convolution).
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

impl Conv2dConfig {
    /// The same stride along both axes.
    pub fn stride(self, stride: usize) -> Self {
        self.stride_hw((stride, stride))
    }

    /// The stride `(vertical, horizontal)`.
    pub fn stride_hw(mut self, stride: (usize, usize)) -> Self {
        self.stride = stride;
        self
    }

    /// The same padding on all four sides.
    pub fn padding(self, padding: usize) -> Self {
        self.padding_hw((padding, padding))
    }

    /// The padding `(top and bottom, left and right)`.
    pub fn padding_hw(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }

    /// The same dilation along both axes.
    pub fn dilation(self, dilation: usize) -> Self {
        self.dilation_hw((dilation, dilation))
    }

    /// The dilation `(vertical, horizontal)`.
    pub fn dilation_hw(mut self, dilation: (usize, usize)) -> Self {
        self.dilation = dilation;
        self
    }

    /// The number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// A validated convolution: every size the kernels need.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    groups: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    /// The most elements an im2col buffer holds; larger outputs are processed in bands of rows.
    cols_budget: usize,
}

/// The default of [`Geom::cols_budget`]: 4 Mi elements (16 MiB in `f32`).
const COLS_BUDGET: usize = 1 << 22;

impl Geom {
    fn new(x: &[usize], weight: &[usize], cfg: Conv2dConfig) -> Result<Self> {
        let [n, cin, h, w] = rank4("conv2d", x)?;
        let invalid = |option: &str, (a, b): (usize, usize), expected: &str| Error::InvalidOption {
            option: format!("conv2d {option}"),
            value: format!("({a}, {b})"),
            expected: expected.to_string(),
        };
        if cfg.stride.0 == 0 || cfg.stride.1 == 0 {
            return Err(invalid("stride", cfg.stride, "steps of at least 1"));
        }
        if cfg.dilation.0 == 0 || cfg.dilation.1 == 0 {
            return Err(invalid("dilation", cfg.dilation, "spacings of at least 1"));
        }
        let groups = cfg.groups;
        if groups == 0 || cin % groups != 0 {
            return Err(Error::InvalidOption {
                option: "conv2d groups".into(),
                value: groups.to_string(),
                expected: format!("a divisor of the {cin} input channels"),
            });
        }
        let (cout, kh, kw) = match *weight {
            [cout, cin_g, kh, kw] if cin_g * groups == cin && kh > 0 && kw > 0 => (cout, kh, kw),
            _ => {
                return Err(Error::Shape {
                    what: "conv2d weight".into(),
                    expected: format!(
                        "[C_out, {}, kh, kw] (PyTorch's layout) for {cin} input channels in {groups} group(s)",
                        cin / groups
                    ),
                    got: weight.to_vec(),
                })
            }
        };
        if cout % groups != 0 {
            return Err(Error::InvalidOption {
                option: "conv2d groups".into(),
                value: groups.to_string(),
                expected: format!("a divisor of the weight's {cout} output channels"),
            });
        }
        let (sh, sw) = cfg.stride;
        let (ph, pw) = cfg.padding;
        let (dh, dw) = cfg.dilation;
        let span_h = dh * (kh - 1) + 1;
        let span_w = dw * (kw - 1) + 1;
        if h + 2 * ph < span_h || w + 2 * pw < span_w {
            return Err(Error::Shape {
                what: format!("conv2d input (padding ({ph}, {pw}), dilated kernel {span_h}×{span_w})"),
                expected: format!("[N, {cin}, H, W] with H + 2·{ph} ≥ {span_h} and W + 2·{pw} ≥ {span_w}"),
                got: x.to_vec(),
            });
        }
        Ok(Geom {
            n,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            oh: (h + 2 * ph - span_h) / sh + 1,
            ow: (w + 2 * pw - span_w) / sw + 1,
            groups,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
            cols_budget: COLS_BUDGET,
        })
    }

    fn cin_g(&self) -> usize {
        self.cin / self.groups
    }

    fn cout_g(&self) -> usize {
        self.cout / self.groups
    }

    /// The rows of the im2col matrix of one group: `cin_g · kh · kw`.
    fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    fn plane(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1×1 kernel with stride 1 and no padding: the input is its own im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// One input channel per group: computed by direct loops, not by im2col and gemm.
    fn direct(&self) -> bool {
        self.cin_g() == 1
    }

    /// The bands of output rows processed at once, each with an im2col buffer within budget.
    fn bands(&self) -> impl Iterator<Item = (usize, usize)> {
        let per_row = (self.k() * self.ow).max(1);
        let rows = (self.cols_budget / per_row).clamp(1, self.oh.max(1));
        let oh = self.oh;
        (0..oh).step_by(rows).map(move |r| (r, (r + rows).min(oh)))
    }

    /// The input row read by output row `oy` through kernel row `ki`, if inside the input.
    #[inline]
    fn in_row(&self, oy: usize, ki: usize) -> Option<usize> {
        let iy = (oy * self.sh + ki * self.dh).checked_sub(self.ph)?;
        (iy < self.h).then_some(iy)
    }

    /// For kernel column `kj`: the output columns `ox0..ox1` whose input column
    /// `ox · sw + kj · dw − pw` lies inside the input, and the input column of `ox0`.
    #[inline]
    fn col_span(&self, kj: usize) -> (usize, usize, usize) {
        let off = kj * self.dw;
        let ox0 = if off >= self.pw { 0 } else { (self.pw - off).div_ceil(self.sw) };
        let limit = self.w + self.pw;
        let ox1 = if limit > off { (limit - off).div_ceil(self.sw).min(self.ow) } else { 0 };
        if ox0 >= ox1 {
            return (0, 0, 0);
        }
        (ox0, ox1, ox0 * self.sw + off - self.pw)
    }

    /// Fills `cols` (`k × band` row-major, `band = (oy1 − oy0) · ow`) with the im2col matrix of
    /// the group's input channels `x` (`cin_g` planes) for output rows `oy0..oy1`.
    fn im2col<T: Float>(&self, x: &[T], (oy0, oy1): (usize, usize), cols: &mut [T]) {
        let band = (oy1 - oy0) * self.ow;
        let (kh, kw, hw) = (self.kh, self.kw, self.h * self.w);
        cols.par_chunks_mut(band).enumerate().for_each(|(r, row)| {
            let (c, ki, kj) = (r / (kh * kw), (r / kw) % kh, r % kw);
            let plane = &x[c * hw..(c + 1) * hw];
            let (ox0, ox1, ix0) = self.col_span(kj);
            for (oy, out) in (oy0..oy1).zip(row.chunks_exact_mut(self.ow)) {
                let Some(iy) = self.in_row(oy, ki) else {
                    out.fill(T::ZERO);
                    continue;
                };
                let src = &plane[iy * self.w..(iy + 1) * self.w];
                out[..ox0].fill(T::ZERO);
                out[ox1..].fill(T::ZERO);
                let dst = &mut out[ox0..ox1];
                if self.sw == 1 {
                    dst.copy_from_slice(&src[ix0..ix0 + dst.len()]);
                } else {
                    for (d, s) in dst.iter_mut().zip(src[ix0..].iter().step_by(self.sw)) {
                        *d = *s;
                    }
                }
            }
        });
    }

    /// Adds the im2col-shaped gradient `cols` (as [`im2col`](Geom::im2col) lays it out) back into
    /// the group's input planes `dx`.
    fn col2im<T: Float>(&self, cols: &[T], (oy0, oy1): (usize, usize), dx: &mut [T]) {
        let band = (oy1 - oy0) * self.ow;
        let (kh, kw, hw) = (self.kh, self.kw, self.h * self.w);
        dx.par_chunks_mut(hw).zip(cols.par_chunks(kh * kw * band)).for_each(|(plane, rows)| {
            for (r, row) in rows.chunks_exact(band).enumerate() {
                let (ki, kj) = (r / kw, r % kw);
                let (ox0, ox1, ix0) = self.col_span(kj);
                for (oy, grad) in (oy0..oy1).zip(row.chunks_exact(self.ow)) {
                    let Some(iy) = self.in_row(oy, ki) else {
                        continue;
                    };
                    let dst = &mut plane[iy * self.w..(iy + 1) * self.w];
                    let src = &grad[ox0..ox1];
                    if self.sw == 1 {
                        for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst[ix0..].iter_mut().step_by(self.sw).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        });
    }
}

/// Runs `f(out_plane, in_plane, weights)` for each output plane of a direct (one input channel
/// per group) convolution, in parallel: `weights` is the `kh · kw` kernel of that output channel.
fn direct_forward<T: Float>(g: &Geom, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    let (hw, p, kk) = (g.h * g.w, g.plane(), g.kh * g.kw);
    let cout_g = g.cout_g();
    y.par_chunks_mut(p).enumerate().for_each(|(i, out)| {
        let (n, co) = (i / g.cout, i % g.cout);
        let ci = co / cout_g;
        let plane = &x[(n * g.cin + ci) * hw..(n * g.cin + ci + 1) * hw];
        let kernel = &w[co * kk..(co + 1) * kk];
        out.fill(b[co]);
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let wv = kernel[ki * g.kw + kj];
                let (ox0, ox1, ix0) = g.col_span(kj);
                for (oy, row) in out.chunks_exact_mut(g.ow).enumerate() {
                    let Some(iy) = g.in_row(oy, ki) else {
                        continue;
                    };
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let dst = &mut row[ox0..ox1];
                    if g.sw == 1 {
                        let len = dst.len();
                        for (d, s) in dst.iter_mut().zip(&src[ix0..ix0 + len]) {
                            *d += wv * *s;
                        }
                    } else {
                        for (d, s) in dst.iter_mut().zip(src[ix0..].iter().step_by(g.sw)) {
                            *d += wv * *s;
                        }
                    }
                }
            }
        }
    });
}

/// The input gradient of a direct convolution: each input plane gathers from the output planes
/// of its group.
fn direct_input_grad<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T]) {
    let (p, kk) = (g.plane(), g.kh * g.kw);
    let cout_g = g.cout_g();
    dx.par_chunks_mut(g.h * g.w).enumerate().for_each(|(i, plane)| {
        let (n, ci) = (i / g.cin, i % g.cin);
        for co in ci * cout_g..(ci + 1) * cout_g {
            let grad = &dy[(n * g.cout + co) * p..(n * g.cout + co + 1) * p];
            let kernel = &w[co * kk..(co + 1) * kk];
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let wv = kernel[ki * g.kw + kj];
                    let (ox0, ox1, ix0) = g.col_span(kj);
                    for (oy, row) in grad.chunks_exact(g.ow).enumerate() {
                        let Some(iy) = g.in_row(oy, ki) else {
                            continue;
                        };
                        let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                        let src = &row[ox0..ox1];
                        if g.sw == 1 {
                            for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                                *d += wv * *s;
                            }
                        } else {
                            for (d, s) in dst[ix0..].iter_mut().step_by(g.sw).zip(src) {
                                *d += wv * *s;
                            }
                        }
                    }
                }
            }
        }
    });
}

/// The weight gradient of a direct convolution: one kernel per output channel, summed over the
/// batch.
fn direct_weight_grad<T: Float>(g: &Geom, x: &[T], dy: &[T], dw: &mut [T]) {
    let (hw, p, kk) = (g.h * g.w, g.plane(), g.kh * g.kw);
    let cout_g = g.cout_g();
    dw.par_chunks_mut(kk).enumerate().for_each(|(co, kernel)| {
        let ci = co / cout_g;
        for n in 0..g.n {
            let plane = &x[(n * g.cin + ci) * hw..(n * g.cin + ci + 1) * hw];
            let grad = &dy[(n * g.cout + co) * p..(n * g.cout + co + 1) * p];
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let (ox0, ox1, ix0) = g.col_span(kj);
                    let mut acc = T::ZERO;
                    for (oy, row) in grad.chunks_exact(g.ow).enumerate() {
                        let Some(iy) = g.in_row(oy, ki) else {
                            continue;
                        };
                        let src = &plane[iy * g.w..(iy + 1) * g.w];
                        let gr = &row[ox0..ox1];
                        if g.sw == 1 {
                            for (a, b) in gr.iter().zip(&src[ix0..ix0 + gr.len()]) {
                                acc += *a * *b;
                            }
                        } else {
                            for (a, b) in gr.iter().zip(src[ix0..].iter().step_by(g.sw)) {
                                acc += *a * *b;
                            }
                        }
                    }
                    kernel[ki * g.kw + kj] += acc;
                }
            }
        }
    });
}

fn forward<T: Float>(g: &Geom, x: &[T], w: &[T], b: &[T]) -> CResult<Vec<T>> {
    let p = g.plane();
    let mut y = vec![T::ZERO; g.n * g.cout * p];
    if y.is_empty() {
        return Ok(y);
    }
    if g.direct() {
        direct_forward(g, x, w, b, &mut y);
        return Ok(y);
    }
    for (plane, &bias) in y.chunks_exact_mut(p).zip(b.iter().cycle()) {
        plane.fill(bias);
    }
    let (k, cin_g, cout_g, hw) = (g.k(), g.cin_g(), g.cout_g(), g.h * g.w);
    let mut cols = Vec::new();
    for n in 0..g.n {
        for grp in 0..g.groups {
            let xg = &x[(n * g.cin + grp * cin_g) * hw..(n * g.cin + (grp + 1) * cin_g) * hw];
            let wg = Mat::rows(&w[grp * cout_g * k..(grp + 1) * cout_g * k], k);
            let yg = &mut y[(n * g.cout + grp * cout_g) * p..(n * g.cout + (grp + 1) * cout_g) * p];
            if g.pointwise() {
                matmul(cout_g, p, k, yg, p, true, wg, Mat::rows(xg, hw))?;
                continue;
            }
            for band in g.bands() {
                let width = (band.1 - band.0) * g.ow;
                cols.resize(k * width, T::ZERO);
                g.im2col(xg, band, &mut cols);
                let dst = &mut yg[band.0 * g.ow..];
                matmul(cout_g, width, k, dst, p, true, wg, Mat::rows(&cols, width))?;
            }
        }
    }
    Ok(y)
}

fn input_grad<T: Float>(g: &Geom, dy: &[T], w: &[T]) -> CResult<Vec<T>> {
    let hw = g.h * g.w;
    let mut dx = vec![T::ZERO; g.n * g.cin * hw];
    if dx.is_empty() {
        return Ok(dx);
    }
    if g.direct() {
        direct_input_grad(g, dy, w, &mut dx);
        return Ok(dx);
    }
    let (k, p, cin_g, cout_g) = (g.k(), g.plane(), g.cin_g(), g.cout_g());
    let mut cols = Vec::new();
    for n in 0..g.n {
        for grp in 0..g.groups {
            let dyg = &dy[(n * g.cout + grp * cout_g) * p..(n * g.cout + (grp + 1) * cout_g) * p];
            let wgt = Mat::transposed(&w[grp * cout_g * k..(grp + 1) * cout_g * k], k);
            let dxg = &mut dx[(n * g.cin + grp * cin_g) * hw..(n * g.cin + (grp + 1) * cin_g) * hw];
            if g.pointwise() {
                matmul(k, p, cout_g, dxg, hw, false, wgt, Mat::rows(dyg, p))?;
                continue;
            }
            for band in g.bands() {
                let width = (band.1 - band.0) * g.ow;
                cols.resize(k * width, T::ZERO);
                let src = Mat { data: &dyg[band.0 * g.ow..], rs: p, cs: 1 };
                matmul(k, width, cout_g, &mut cols, width, false, wgt, src)?;
                g.col2im(&cols, band, dxg);
            }
        }
    }
    Ok(dx)
}

fn weight_grad<T: Float>(g: &Geom, x: &[T], dy: &[T]) -> CResult<Vec<T>> {
    let (k, p, cin_g, cout_g, hw) = (g.k(), g.plane(), g.cin_g(), g.cout_g(), g.h * g.w);
    let mut dw = vec![T::ZERO; g.cout * k];
    if dw.is_empty() {
        return Ok(dw);
    }
    if g.direct() {
        direct_weight_grad(g, x, dy, &mut dw);
        return Ok(dw);
    }
    let mut cols = Vec::new();
    for n in 0..g.n {
        for grp in 0..g.groups {
            let xg = &x[(n * g.cin + grp * cin_g) * hw..(n * g.cin + (grp + 1) * cin_g) * hw];
            let dyg = &dy[(n * g.cout + grp * cout_g) * p..(n * g.cout + (grp + 1) * cout_g) * p];
            let dwg = &mut dw[grp * cout_g * k..(grp + 1) * cout_g * k];
            if g.pointwise() {
                let xt = Mat::transposed(xg, hw);
                matmul(cout_g, k, p, dwg, k, true, Mat::rows(dyg, p), xt)?;
                continue;
            }
            for band in g.bands() {
                let width = (band.1 - band.0) * g.ow;
                cols.resize(k * width, T::ZERO);
                g.im2col(xg, band, &mut cols);
                let src = Mat { data: &dyg[band.0 * g.ow..], rs: p, cs: 1 };
                matmul(cout_g, k, width, dwg, k, true, src, Mat::transposed(&cols, width))?;
            }
        }
    }
    Ok(dw)
}

struct Conv2d(Geom);

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "gaze-conv2d"
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
            g: &Geom,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let y = forward(g, slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, slice::<T>(s3, l3)?)?;
            output(y, (g.n, g.cout, g.oh, g.ow))
        }
        dispatch_float!("conv2d", s1, run(&self.0, (s1, l1), (s2, l2), (s3, l3)))
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
        let dx = if x.track_op() { Some(grad.apply_op2_no_bwd(weight, &ConvBackward::Input(self.0))?) } else { None };
        let dw = if weight.track_op() { Some(x.apply_op2_no_bwd(&grad, &ConvBackward::Weight(self.0))?) } else { None };
        let db = if bias.track_op() { Some(grad.sum((0, 2, 3))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The gradients of [`Conv2d`]: `(dy, W) ↦ dx` (the transposed convolution, by gemm and col2im)
/// and `(x, dy) ↦ dW` (gemm of the output gradient with the im2col matrix's transpose).
enum ConvBackward {
    Input(Geom),
    Weight(Geom),
}

impl CustomOp2 for ConvBackward {
    fn name(&self) -> &'static str {
        "gaze-conv2d-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            op: &ConvBackward,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let (a, b) = (slice::<T>(s1, l1)?, slice::<T>(s2, l2)?);
            match op {
                ConvBackward::Input(g) => output(input_grad(g, a, b)?, (g.n, g.cin, g.h, g.w)),
                ConvBackward::Weight(g) => output(weight_grad(g, a, b)?, (g.cout, g.cin_g(), g.kh, g.kw)),
            }
        }
        dispatch_float!("conv2d backward", s1, run(self, (s1, l1), (s2, l2)))
    }

    host_fallback!(op2);
}

/// A 2-D convolution as PyTorch's `conv2d`: `x: [N, C_in, H, W]`, `weight: [C_out, C_in / groups,
/// kh, kw]` (PyTorch's layout), `bias: [C_out]`, giving `[N, C_out, H_out, W_out]` with
/// `H_out = ⌊(H + 2·padding − dilation·(kh − 1) − 1) / stride⌋ + 1` (and the same for W).
///
/// Any stride, padding, dilation and groups work on non-square inputs.
/// The backward pass computes the input's gradient, and the weight's and bias's only when they
/// are variables or results of tracked ops; a constant weight never gets a gradient.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, cfg: Conv2dConfig) -> Result<Tensor> {
    let geom = Geom::new(x.dims(), weight.dims(), cfg)?;
    let bias = match bias {
        Some(b) if b.dims() == [geom.cout] => b.contiguous()?,
        Some(b) => {
            return Err(Error::Shape {
                what: "conv2d bias".into(),
                expected: format!("[{}], one value per output channel", geom.cout),
                got: b.dims().to_vec(),
            })
        }
        None => Tensor::zeros(geom.cout, x.dtype(), x.device())?,
    };
    same_dtype("conv2d", &[("input", x), ("weight", weight), ("bias", &bias)])?;
    Ok(x.contiguous()?.apply_op3(&weight.contiguous()?, &bias, Conv2d(geom))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| ((i as f64 + 1.0) * seed).sin()).collect()
    }

    /// Processing the output in bands of one or two rows gives the same results as one band.
    #[test]
    fn bands_of_rows_give_the_same_results_as_one_band() {
        let configs = [
            Conv2dConfig::default().padding(1),
            Conv2dConfig::default().stride_hw((2, 3)).padding_hw((1, 2)).dilation(2),
            Conv2dConfig::default().stride(2).groups(2),
            Conv2dConfig::default().stride(2),
        ];
        for cfg in configs {
            let (x_dims, w_dims) = ([2, 4, 11, 8], [6, 4 / cfg.groups, 3, 2]);
            let whole = Geom::new(&x_dims, &w_dims, cfg).unwrap();
            let x = data(x_dims.iter().product(), 0.37);
            let w = data(w_dims.iter().product(), 0.71);
            let b = data(6, 1.3);
            let dy = data(whole.n * whole.cout * whole.plane(), 0.53);
            let reference = (
                forward(&whole, &x, &w, &b).unwrap(),
                input_grad(&whole, &dy, &w).unwrap(),
                weight_grad(&whole, &x, &dy).unwrap(),
            );
            for rows in [1, 2] {
                let banded = Geom { cols_budget: whole.k() * whole.ow * rows, ..whole };
                assert!(banded.bands().count() > 1);
                let got = (
                    forward(&banded, &x, &w, &b).unwrap(),
                    input_grad(&banded, &dy, &w).unwrap(),
                    weight_grad(&banded, &x, &dy).unwrap(),
                );
                for (a, b) in [(&got.0, &reference.0), (&got.1, &reference.1), (&got.2, &reference.2)] {
                    assert_eq!(a.len(), b.len());
                    for (u, v) in a.iter().zip(b.iter()) {
                        assert!((u - v).abs() < 1e-12, "{cfg:?} in bands of {rows}: {u} vs {v}");
                    }
                }
            }
        }
    }
}
