//! 2-D convolution with any stride, padding, dilation and groups, on `gemm` (im2col), on
//! Winograd's minimal filtering (`winograd`, for dense 3×3 stride-1 convolutions on planes large
//! enough) or, for depthwise convolutions, a direct loop; its backward computes only the gradients
//! that are needed.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach, every, pad, spread, sum};
use super::kernel::{copy_short, dispatch_float, fill_short, host_fallback, output, slice, Float};
use super::linear::same_dtype;
use super::matmul::{matmul, matmul_serial, Mat};
use super::pool::rank4;
use super::relu::{positive, ReluBackward, ReluMode};
use super::threads::{self, SharedOut};
use super::winograd::{self, Plan};
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
    /// The most elements an im2col tile holds: the output is processed in tiles of pixels (and
    /// the input gradient in bands of rows) small enough to stay in the cache between the copy
    /// and the multiply.
    cols_budget: usize,
    /// Whether a 3×3 stride-1 convolution may run as Winograd's F(4×4, 3×3) (see
    /// [`Geom::winograd`]); off only to test the general path on the same shapes.
    allow_winograd: bool,
}

/// The default of [`Geom::cols_budget`]: 256 Ki elements (1 MiB in `f32`).
const COLS_BUDGET: usize = 1 << 18;

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
            allow_winograd: true,
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

    /// A dense 3×3 convolution with stride 1, no dilation and padding up to 2 (so that its input
    /// gradient is one too): computed by Winograd's F(4×4, 3×3), not by im2col and gemm.
    /// `enabled` is the process's setting ([`winograd::winograd_enabled`]).
    fn winograd(&self, enabled: bool) -> bool {
        enabled
            && self.allow_winograd
            && (self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.groups) == (3, 3, 1, 1, 1, 1, 1)
            && self.ph <= 2
            && self.pw <= 2
    }

    /// The forward pass as [`winograd::conv`] sees it.
    fn plan(&self) -> Plan {
        Plan { n: self.n, cin: self.cin, h: self.h, w: self.w, cout: self.cout, ph: self.ph, pw: self.pw }
    }

    /// The input gradient as [`winograd::conv`] sees it: the output gradient convolved with the
    /// flipped kernels, channel roles swapped, padding `2 − p`.
    fn plan_input_grad(&self) -> Plan {
        Plan { n: self.n, cin: self.cout, h: self.oh, w: self.ow, cout: self.cin, ph: 2 - self.ph, pw: 2 - self.pw }
    }

    /// The Winograd variant the forward pass runs as, if any.
    fn forward_variant(&self) -> CResult<Option<winograd::Variant>> {
        let enabled = winograd::winograd_enabled().map_err(candle_core::Error::wrap)?;
        Ok(self.winograd(enabled).then(|| self.plan().variant()).flatten())
    }

    /// The Winograd variant the input gradient runs as, if any.
    fn input_grad_variant(&self) -> CResult<Option<winograd::Variant>> {
        let enabled = winograd::winograd_enabled().map_err(candle_core::Error::wrap)?;
        Ok(self.winograd(enabled).then(|| self.plan_input_grad().variant()).flatten())
    }

    /// One input channel per group: computed by direct loops, not by im2col and gemm.
    fn direct(&self) -> bool {
        self.cin_g() == 1
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

    /// Fills `cols` (`k × (p1 − p0)` row-major) with the im2col matrix of the group's input
    /// channels `x` (`cin_g` planes) for the output pixels `p0..p1` in row-major order.
    fn im2col<T: Float>(&self, x: &[T], (p0, p1): (usize, usize), cols: &mut [T]) {
        self.im2col_rows(x, (p0, p1), cols, p1 - p0)
    }

    /// [`im2col`](Geom::im2col) into rows `rs` elements apart: row `r` fills
    /// `cols[r · rs..r · rs + p1 − p0]`, so that several images' matrices can sit side by side.
    fn im2col_rows<T: Float>(&self, x: &[T], (p0, p1): (usize, usize), cols: &mut [T], rs: usize) {
        let width = p1 - p0;
        let (kh, kw, hw, ow) = (self.kh, self.kw, self.h * self.w, self.ow);
        for (r, row) in cols.chunks_mut(rs).take(self.k()).map(|row| &mut row[..width]).enumerate() {
            let (c, ki, kj) = (r / (kh * kw), (r / kw) % kh, r % kw);
            let plane = &x[c * hw..(c + 1) * hw];
            let (ox0, ox1, ix0) = self.col_span(kj);
            let mut p = p0;
            while p < p1 {
                let (oy, a) = (p / ow, p % ow);
                let b = ow.min(a + (p1 - p));
                let out = &mut row[p - p0..p - p0 + (b - a)];
                p += b - a;
                let Some(iy) = self.in_row(oy, ki) else {
                    out.fill(T::ZERO);
                    continue;
                };
                // The columns `lo..hi` of `a..b` read the input; a segment can end before `ox0`.
                let lo = a.max(ox0).min(b);
                let hi = b.min(ox1).max(lo);
                out[..lo - a].fill(T::ZERO);
                out[hi - a..].fill(T::ZERO);
                if hi == lo {
                    continue;
                }
                let src = &plane[iy * self.w..(iy + 1) * self.w];
                let dst = &mut out[lo - a..hi - a];
                let ix = ix0 + (lo - ox0) * self.sw;
                if self.sw == 1 {
                    dst.copy_from_slice(&src[ix..ix + dst.len()]);
                } else {
                    for (d, s) in dst.iter_mut().zip(src[ix..].iter().step_by(self.sw)) {
                        *d = *s;
                    }
                }
            }
        }
    }

    /// Adds the im2col-shaped gradient `cols` of output rows `oy0..oy1` (for input channels
    /// `c0..`, `kh · kw` rows each, as [`im2col`](Geom::im2col) lays them out) into the input rows
    /// `iy0..iy1` of those channels: `dx[c]` is the band of rows `iy0..iy1` of channel `c0 + c`.
    fn col2im_rows<T: Float>(
        &self,
        cols: &[T],
        (oy0, oy1): (usize, usize),
        (iy0, iy1): (usize, usize),
        dx: &mut [&mut [T]],
    ) {
        self.col2im_strided(cols, (oy1 - oy0) * self.ow, (oy0, oy1), (iy0, iy1), dx)
    }

    /// [`col2im_rows`](Geom::col2im_rows) from rows `rs` elements apart: row `r` is
    /// `cols[r · rs..r · rs + (oy1 − oy0) · ow]`, one of several images' matrices side by side.
    fn col2im_strided<T: Float>(
        &self,
        cols: &[T],
        rs: usize,
        (oy0, oy1): (usize, usize),
        (iy0, iy1): (usize, usize),
        dx: &mut [&mut [T]],
    ) {
        let width = (oy1 - oy0) * self.ow;
        let (kh, kw) = (self.kh, self.kw);
        for (r, row) in cols.chunks(rs).take(dx.len() * kh * kw).map(|row| &row[..width]).enumerate() {
            let (c, ki, kj) = (r / (kh * kw), (r / kw) % kh, r % kw);
            let (ox0, ox1, ix0) = self.col_span(kj);
            if ox0 >= ox1 {
                continue;
            }
            let band = &mut *dx[c];
            for (oy, grad) in (oy0..oy1).zip(row.chunks_exact(self.ow)) {
                let Some(iy) = self.in_row(oy, ki) else {
                    continue;
                };
                if iy < iy0 || iy >= iy1 {
                    continue;
                }
                let dst = &mut band[(iy - iy0) * self.w..(iy - iy0 + 1) * self.w];
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
    }

    /// The output rows whose windows reach input rows `iy0..iy1`.
    fn out_rows_reaching(&self, (iy0, iy1): (usize, usize)) -> (usize, usize) {
        let reach = (self.kh - 1) * self.dh;
        let lo = (iy0 + self.ph).saturating_sub(reach).div_ceil(self.sh);
        let hi = ((iy1 - 1 + self.ph) / self.sh + 1).min(self.oh);
        (lo.min(hi), hi)
    }
}

/// A 2-D stencil on one plane, the core of the stride-1 direct convolutions:
/// `out(r, c) = Σ_t weight_t · pad(r + dy_t, c + dx_t)` for `r < rows`, `c < cols`, where
/// `pad(r, c) = src(r − top, c − left)` inside `src` (`h × w`) and 0 outside (a negative `top` or
/// `left` crops).
///
/// The padded plane is laid out in `buf` with rows `cols + max dx` wide, and [`Float::stencil`]
/// computes up to 32 outputs of a row at a time with every tap.
struct Stencil {
    h: usize,
    w: usize,
    top: isize,
    left: isize,
    rows: usize,
    cols: usize,
    /// The largest tap offsets, which set the padded plane's extent.
    reach: (usize, usize),
}

impl Stencil {
    /// The width of a row of the padded plane and of the accumulator.
    fn width(&self) -> usize {
        self.cols + self.reach.1
    }

    /// The elements of the padded plane, with room for the last blocks of outputs that
    /// [`Float::stencil`] computes whole.
    fn len(&self) -> usize {
        (self.rows + self.reach.0) * self.width() + 32
    }

    /// Copies `src` into the padded plane `buf`.
    fn pad<T: Float>(&self, src: &[T], buf: &mut [T]) {
        let width = self.width();
        let rows = self.rows + self.reach.0;
        buf[rows * width..].fill(T::ZERO);
        for (r, row) in buf[..rows * width].chunks_exact_mut(width).enumerate() {
            let sr = r as isize - self.top;
            if sr < 0 || sr >= self.h as isize {
                fill_short(row, T::ZERO);
                continue;
            }
            let src_row = &src[sr as usize * self.w..(sr as usize + 1) * self.w];
            // Columns `c` with `0 ≤ c − left < w`.
            let c0 = self.left.clamp(0, width as isize) as usize;
            let c1 = (self.left + self.w as isize).clamp(0, width as isize) as usize;
            let c1 = c1.max(c0);
            fill_short(&mut row[..c0], T::ZERO);
            fill_short(&mut row[c1..], T::ZERO);
            let s0 = (c0 as isize - self.left) as usize;
            copy_short(&mut row[c0..c1], &src_row[s0..s0 + (c1 - c0)]);
        }
    }
}

/// The forward pass of a stride-1 direct convolution, one output plane per task, as a
/// [`Stencil`] over the zero-padded input plane.
fn direct_forward_s1<T: Float>(g: &Geom, x: &[T], w: &[T], b: &[T], y: &mut [T]) -> CResult<()> {
    let (hw, p, kk, cout_g) = (g.h * g.w, g.plane(), g.kh * g.kw, g.cout_g());
    let st = Stencil {
        h: g.h,
        w: g.w,
        top: g.ph as isize,
        left: g.pw as isize,
        rows: g.oh,
        cols: g.ow,
        reach: ((g.kh - 1) * g.dh, (g.kw - 1) * g.dw),
    };
    let width = st.width();
    threads::chunks_mut(y, p, y.len() * kk, |i, out| {
        let (n, co) = (i / g.cout, i % g.cout);
        let ci = co / cout_g;
        let kernel = &w[co * kk..(co + 1) * kk];
        let taps: Vec<(usize, T)> =
            (0..kk).map(|t| ((t / g.kw) * g.dh * width + (t % g.kw) * g.dw, kernel[t])).collect();
        T::with_scratch(st.len(), |buf| {
            st.pad(&x[(n * g.cin + ci) * hw..(n * g.cin + ci + 1) * hw], buf);
            T::stencil(buf, width, &taps, b[co], false, st.cols, out);
        });
        Ok(())
    })
}

/// The input gradient of a stride-1 direct convolution, one input plane per task: the output
/// gradients of its group, zero-padded by the kernel's reach less the forward padding, through
/// the flipped kernels.
fn direct_input_grad_s1<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T]) -> CResult<()> {
    let (hw, p, kk, cout_g) = (g.h * g.w, g.plane(), g.kh * g.kw, g.cout_g());
    let reach = ((g.kh - 1) * g.dh, (g.kw - 1) * g.dw);
    let st = Stencil {
        h: g.oh,
        w: g.ow,
        top: reach.0 as isize - g.ph as isize,
        left: reach.1 as isize - g.pw as isize,
        rows: g.h,
        cols: g.w,
        reach,
    };
    let width = st.width();
    threads::chunks_mut(dx, hw, dy.len() * kk, |i, plane| {
        let (n, ci) = (i / g.cin, i % g.cin);
        T::with_scratch(st.len(), |buf| {
            for (j, co) in (ci * cout_g..(ci + 1) * cout_g).enumerate() {
                st.pad(&dy[(n * g.cout + co) * p..(n * g.cout + co + 1) * p], buf);
                let kernel = &w[co * kk..(co + 1) * kk];
                let taps: Vec<(usize, T)> = (0..kk)
                    .map(|t| {
                        let (ki, kj) = (t / g.kw, t % g.kw);
                        ((g.kh - 1 - ki) * g.dh * width + (g.kw - 1 - kj) * g.dw, kernel[t])
                    })
                    .collect();
                T::stencil(buf, width, &taps, T::ZERO, j > 0, st.cols, plane);
            }
        });
        Ok(())
    })
}

/// Runs `f(out_plane, in_plane, weights)` for each output plane of a direct (one input channel
/// per group) convolution, in parallel: `weights` is the `kh · kw` kernel of that output channel.
fn direct_forward<T: Float>(g: &Geom, x: &[T], w: &[T], b: &[T], y: &mut [T]) -> CResult<()> {
    let (hw, p, kk) = (g.h * g.w, g.plane(), g.kh * g.kw);
    let cout_g = g.cout_g();
    threads::chunks_mut(y, p, y.len() * kk, |i, out| {
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
        Ok(())
    })
}

/// The input gradient of a direct convolution: each input plane gathers from the output planes
/// of its group.
fn direct_input_grad<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T]) -> CResult<()> {
    let (p, kk) = (g.plane(), g.kh * g.kw);
    let cout_g = g.cout_g();
    threads::chunks_mut(dx, g.h * g.w, dy.len() * kk, |i, plane| {
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
        Ok(())
    })
}

/// The weight gradient of a direct convolution: one kernel per output channel, summed over the
/// batch.
fn direct_weight_grad<T: Float>(g: &Geom, x: &[T], dy: &[T], dw: &mut [T]) -> CResult<()> {
    let (hw, p, kk) = (g.h * g.w, g.plane(), g.kh * g.kw);
    let cout_g = g.cout_g();
    threads::chunks_mut(dw, kk, dy.len() * kk, |co, kernel| {
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
        Ok(())
    })
}

/// One job of a parallel kernel: an image, a group, and two ranges splitting that image's work
/// (pixels and output channels for the forward pass, input channels and input rows for the input
/// gradient).
type Job = (usize, usize, (usize, usize), (usize, usize));

/// Splits `len` into `parts` near-equal ranges, each a multiple of `unit` except the last.
fn ranges(len: usize, parts: usize, unit: usize) -> Vec<(usize, usize)> {
    let step = len.div_ceil(parts.max(1)).div_ceil(unit.max(1)).max(1) * unit.max(1);
    (0..len).step_by(step).map(|lo| (lo, (lo + step).min(len))).collect()
}

/// How many parts each of `base` independent jobs is split into so that `threads` threads get
/// an even share: 1 when there are jobs enough, otherwise about two jobs per thread (so that a
/// thread slowed by other work on the machine leaves its second job to another).
fn splits(base: usize, threads: usize) -> usize {
    if base >= 4 * threads || threads <= 1 {
        1
    } else {
        (2 * threads).div_ceil(base)
    }
}

/// The forward convolution: for each image, group and tile of output pixels, the im2col matrix of
/// the tile (built by the thread that uses it, in a buffer it reuses) times the weights, added to
/// the bias; a 1×1 convolution multiplies the input itself.
fn forward<T: Float>(g: &Geom, x: &[T], w: &[T], b: &[T], epilogue: Epilogue<'_, T>) -> CResult<Vec<T>> {
    forward_split(g, threads::count()?, x, w, b, epilogue)
}

/// What a forward convolution does to its outputs after the bias: nothing, a ReLU, or a residual
/// added before the ReLU (`max(y + r, 0)`, `r` of the output's shape).
///
/// The im2col jobs (and those of a batch's small planes side by side) apply it to each block of
/// outputs right after writing it, while the block is in the core's cache, where a pass after
/// the convolution reads and writes the whole output again: 3–13% less time on ResNet-50's 1×1
/// and strided layers at batch 16 (alternating calls in one process). Winograd's and the direct
/// path make the pass; on Winograd's layers, applying it per output channel as the tiles are
/// written measured the same as the pass.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a, T> {
    None,
    Relu,
    AddRelu(&'a [T]),
}

impl<T: Float> Epilogue<'_, T> {
    /// Applies the epilogue to `out`, the outputs from element `at` of the whole output.
    #[inline]
    pub(crate) fn apply(self, at: usize, out: &mut [T]) {
        match self {
            Epilogue::None => {}
            Epilogue::Relu => out.iter_mut().for_each(|v| *v = positive(*v)),
            Epilogue::AddRelu(r) => out.iter_mut().zip(&r[at..]).for_each(|(v, &r)| *v = positive(*v + r)),
        }
    }

    /// Fails unless a residual has `len` elements, the output's.
    fn check(self, len: usize) -> CResult<()> {
        match self {
            Epilogue::AddRelu(r) if r.len() != len => {
                candle_core::bail!("conv2d_add_relu: a residual of {} elements for {len}", r.len())
            }
            _ => Ok(()),
        }
    }
}

/// [`forward`] on the pool the caller runs on, its work split for `threads` threads.
fn forward_split<T: Float>(
    g: &Geom,
    threads: usize,
    x: &[T],
    w: &[T],
    b: &[T],
    epilogue: Epilogue<'_, T>,
) -> CResult<Vec<T>> {
    let p = g.plane();
    epilogue.check(g.n * g.cout * p)?;
    if g.n * g.cout * p == 0 {
        return Ok(Vec::new());
    }
    if let Some(variant) = g.forward_variant()? {
        let mut y = winograd::convolve(g.plan(), variant, threads, winograd::Input::plain(x), w, false, Some(b))?;
        epilogue_pass(g, &mut y, epilogue)?;
        return Ok(y);
    }
    if g.direct() {
        let mut y = threads::filled(g.n * g.cout * p, T::ZERO)?;
        if g.sh == 1 && g.sw == 1 {
            direct_forward_s1(g, x, w, b, &mut y)?;
        } else {
            direct_forward(g, x, w, b, &mut y)?;
        }
        epilogue_pass(g, &mut y, epilogue)?;
        return Ok(y);
    }
    // Not zeroed first: the jobs below write every element (the bias, then the product added).
    let total = g.n * g.cout * p;
    let mut y: Vec<T> = Vec::with_capacity(total);
    {
        let out = SharedOut::uninit(&mut y.spare_capacity_mut()[..total]);
        let (k, cin_g, cout_g, hw) = (g.k(), g.cin_g(), g.cout_g(), g.h * g.w);
        if g.groups == 1 && g.n > 1 && p < SMALL_PLANE {
            forward_images_side_by_side(g, threads, (x, w, b), out, epilogue)?;
            // SAFETY: the jobs wrote every element (see `forward_images_side_by_side`).
            unsafe { y.set_len(total) };
            return Ok(y);
        }
        let base = g.n * g.groups;
        // Tiles of at least 128 pixels, so that packing the weights for each tile's multiply
        // stays small beside the multiply; then blocks of output channels when the tiles are too
        // few to share out.
        // A 1×1 convolution multiplies its input as it is: the weights are the smaller operand
        // when the plane has more pixels than there are output channels, so the jobs split the
        // pixels (each job packs only its own columns of the input) and keep every channel.
        let (pixel_tiles, row_parts) = if g.pointwise() && p > cout_g {
            (ranges(p, splits(base, threads), 16), vec![(0, cout_g)])
        } else {
            let width = if g.pointwise() { p } else { (g.cols_budget / k.max(1)).max(128) };
            let pixel_tiles = ranges(p, p.div_ceil(width.max(1)), 16);
            let parts = splits(base * pixel_tiles.len(), threads).min(cout_g.div_ceil(16));
            (pixel_tiles, ranges(cout_g, parts, 16))
        };
        let jobs: Vec<Job> = (0..g.n)
            .flat_map(|n| (0..g.groups).map(move |grp| (n, grp)))
            .flat_map(|(n, grp)| pixel_tiles.iter().map(move |&t| (n, grp, t)))
            .flat_map(|(n, grp, t)| row_parts.iter().map(move |&m| (n, grp, t, m)))
            .collect();
        // The jobs cover every image, group, pixel tile and block of output channels.
        threads::run(jobs.len(), g.n * g.cout * p * k, |j| {
            let (n, grp, (p0, p1), (m0, m1)) = jobs[j];
            let co = grp * cout_g;
            let at = (n * g.cout + co + m0) * p + p0;
            for (i, &bias) in b[co + m0..co + m1].iter().enumerate() {
                // SAFETY: this job alone writes rows `m0..m1`, columns `p0..p1` of its group;
                // the product below reads them after this writes them.
                unsafe { out.slice_uninit(at + i * p, p1 - p0)? }.fill(std::mem::MaybeUninit::new(bias));
            }
            let wg = Mat::rows(&w[(co + m0) * k..(co + m1) * k], k);
            let xg = &x[(n * g.cin + grp * cin_g) * hw..(n * g.cin + (grp + 1) * cin_g) * hw];
            let mnk = (m1 - m0, p1 - p0, k);
            if g.pointwise() {
                // SAFETY: as above.
                unsafe { out.matmul(at, p, mnk, true, wg, Mat::rows(&xg[p0..], hw))? };
            } else {
                T::with_scratch(k * (p1 - p0), |cols| {
                    g.im2col(xg, (p0, p1), cols);
                    // SAFETY: as above.
                    unsafe { out.matmul(at, p, mnk, true, wg, Mat::rows(cols, p1 - p0)) }
                })?;
            }
            if !matches!(epilogue, Epilogue::None) {
                for i in 0..m1 - m0 {
                    // SAFETY: as above.
                    epilogue.apply(at + i * p, unsafe { out.slice(at + i * p, p1 - p0)? });
                }
            }
            Ok(())
        })?;
    }
    // SAFETY: every job succeeded, and together they wrote all `total` elements.
    unsafe { y.set_len(total) };
    Ok(y)
}

/// Below this many output pixels per image, a batch's images run side by side in one product
/// ([`forward_images_side_by_side`]): with one product per image, the weights are packed again
/// for each image's few columns. Measured on ResNet-50's layers at batch 16: a 3×3 convolution
/// with stride 2 onto 7 × 7 took 21% less time side by side; onto 14 × 14 (196 pixels) the
/// copies cost what the packing saves.
const SMALL_PLANE: usize = 100;

/// The columns a block of images side by side aims at.
const BLOCK_COLUMNS: usize = 256;

/// The blocks of images that run side by side: about [`BLOCK_COLUMNS`] output pixels each.
fn image_blocks(g: &Geom) -> Vec<(usize, usize)> {
    ranges(g.n, (g.n * g.plane() / BLOCK_COLUMNS).clamp(1, g.n), 1)
}

/// The forward convolution of a batch of small planes (one group): blocks of images, each
/// block's im2col matrices (or, for a 1×1 convolution, its input planes) side by side in one
/// matrix of about [`BLOCK_COLUMNS`] columns or more, multiplied by the weights at once (the weights
/// packed once per block, not once per image) into a scratch product, which is then written to
/// each image's output with the bias; blocks of output channels when the image blocks are too
/// few to share out.
///
/// Every element of `out` is written (the blocks cover every image, the row parts every channel),
/// and the epilogue applied to it as it is.
fn forward_images_side_by_side<T: Float>(
    g: &Geom,
    threads: usize,
    (x, w, b): (&[T], &[T], &[T]),
    out: SharedOut<T>,
    epilogue: Epilogue<'_, T>,
) -> CResult<()> {
    let (k, p, hw) = (g.k(), g.plane(), g.h * g.w);
    let blocks = image_blocks(g);
    let row_parts = ranges(g.cout, splits(blocks.len(), threads).min(g.cout.div_ceil(16)), 16);
    let jobs: Vec<((usize, usize), (usize, usize))> =
        blocks.iter().flat_map(|&i| row_parts.iter().map(move |&m| (i, m))).collect();
    threads::run(jobs.len(), g.n * g.cout * p * k, |j| {
        let ((i0, i1), (m0, m1)) = jobs[j];
        let width = (i1 - i0) * p;
        T::with_scratch(k * width, |cols| {
            for i in i0..i1 {
                let (xi, dst) = (&x[i * g.cin * hw..(i + 1) * g.cin * hw], &mut cols[(i - i0) * p..]);
                if g.pointwise() {
                    for (c, plane) in xi.chunks_exact(hw).enumerate() {
                        dst[c * width..c * width + p].copy_from_slice(plane);
                    }
                } else {
                    g.im2col_rows(xi, (0, p), dst, width);
                }
            }
            T::with_scratch((m1 - m0) * width, |prod| {
                let wm = Mat::rows(&w[m0 * k..m1 * k], k);
                matmul_serial(m1 - m0, width, k, prod, width, false, wm, Mat::rows(cols, width))?;
                for i in i0..i1 {
                    let at = (i * g.cout + m0) * p;
                    // SAFETY: this job alone writes channels `m0..m1` of images `i0..i1`.
                    let dst = unsafe { out.slice_uninit(at, (m1 - m0) * p)? };
                    for ((row, src), &bias) in dst.chunks_exact_mut(p).zip(prod.chunks_exact(width)).zip(&b[m0..m1]) {
                        for (d, &s) in row.iter_mut().zip(&src[(i - i0) * p..(i - i0 + 1) * p]) {
                            d.write(s + bias);
                        }
                    }
                    // SAFETY: as above; the loop wrote every element of the block.
                    epilogue.apply(at, unsafe { out.slice(at, (m1 - m0) * p)? });
                }
                Ok(())
            })
        })
    })
}

/// The input gradient: for each image, group, block of input channels and band of input rows,
/// the transposed weights times the output gradient of the rows that reach the band, scattered
/// back (col2im) into that band only, so that no two threads write the same element; a 1×1
/// convolution multiplies the output gradient itself.
fn input_grad<T: Float>(g: &Geom, dy: &[T], w: &[T]) -> CResult<Vec<T>> {
    input_grad_split(g, threads::count()?, dy, w)
}

/// [`input_grad`] on the pool the caller runs on, its work split for `threads` threads.
fn input_grad_split<T: Float>(g: &Geom, threads: usize, dy: &[T], w: &[T]) -> CResult<Vec<T>> {
    input_grad_col2im(g, threads, dy, w)
}

/// The input gradient by gemm and col2im.
fn input_grad_col2im<T: Float>(g: &Geom, threads: usize, dy: &[T], w: &[T]) -> CResult<Vec<T>> {
    let hw = g.h * g.w;
    if g.n * g.cin * hw == 0 {
        return Ok(Vec::new());
    }
    if let Some(variant) = g.input_grad_variant()? {
        return winograd::convolve(g.plan_input_grad(), variant, threads, winograd::Input::plain(dy), w, true, None);
    }
    let mut dx = threads::filled(g.n * g.cin * hw, T::ZERO)?;
    {
        if g.direct() {
            if g.sh == 1 && g.sw == 1 {
                direct_input_grad_s1(g, dy, w, &mut dx)?;
            } else {
                direct_input_grad(g, dy, w, &mut dx)?;
            }
            return Ok(dx);
        }
        let (k, p, cin_g, cout_g, kk) = (g.k(), g.plane(), g.cin_g(), g.cout_g(), g.kh * g.kw);
        if g.groups == 1 && g.n > 1 && p < SMALL_PLANE {
            input_grad_images_side_by_side(g, threads, dy, w, &mut dx)?;
            return Ok(dx);
        }
        let base = g.n * g.groups;
        let parts = splits(base, threads);
        // Blocks of whole input channels when there are enough of them, bands of rows otherwise;
        // a 1×1 convolution whose plane has more pixels than input channels always splits the
        // rows, so that each job packs only its own band of the output gradient.
        let rows_first = g.pointwise() && hw > cin_g;
        let (chunks, bands) = if cin_g >= 4 * parts && !rows_first {
            (ranges(cin_g, parts, 1), vec![(0, g.h)])
        } else {
            (vec![(0, cin_g)], ranges(g.h, parts, 1))
        };
        let jobs: Vec<Job> = (0..g.n)
            .flat_map(|n| (0..g.groups).map(move |grp| (n, grp)))
            .flat_map(|(n, grp)| chunks.iter().map(move |&c| (n, grp, c)))
            .flat_map(|(n, grp, c)| bands.iter().map(move |&r| (n, grp, c, r)))
            .collect();
        let out = SharedOut::new(&mut dx);
        threads::run(jobs.len(), g.n * g.cout * p * k, |j| {
            let (n, grp, (c0, c1), (iy0, iy1)) = jobs[j];
            let dyg = &dy[(n * g.cout + grp * cout_g) * p..(n * g.cout + (grp + 1) * cout_g) * p];
            let wg = &w[grp * cout_g * k..(grp + 1) * cout_g * k];
            let plane0 = (n * g.cin + grp * cin_g + c0) * hw;
            if g.pointwise() {
                // dx[c0..c1, rows iy0..iy1] = Wᵀ[c0..c1, :] · dy[:, rows iy0..iy1].
                let wgt = Mat { data: &wg[c0..], rs: 1, cs: k };
                let src = Mat::rows(&dyg[iy0 * g.w..], p);
                let mnk = (c1 - c0, (iy1 - iy0) * g.w, cout_g);
                // SAFETY: this job alone writes these channels' rows `iy0..iy1`.
                return unsafe { out.matmul(plane0 + iy0 * g.w, hw, mnk, false, wgt, src) };
            }
            let (oy_lo, oy_hi) = g.out_rows_reaching((iy0, iy1));
            if oy_lo >= oy_hi {
                return Ok(());
            }
            let rows = (c1 - c0) * kk;
            let per_band = (g.cols_budget / (rows * g.ow).max(1)).clamp(1, oy_hi - oy_lo);
            let wgt = Mat { data: &wg[c0 * kk..], rs: 1, cs: k };
            let mut bands = Vec::with_capacity(c1 - c0);
            for c in 0..c1 - c0 {
                // SAFETY: this job alone writes rows `iy0..iy1` of channels `c0..c1`.
                bands.push(unsafe { out.slice(plane0 + c * hw + iy0 * g.w, (iy1 - iy0) * g.w)? });
            }
            T::with_scratch(rows * per_band * g.ow, |cols| {
                for oy0 in (oy_lo..oy_hi).step_by(per_band) {
                    let oy1 = (oy0 + per_band).min(oy_hi);
                    let width = (oy1 - oy0) * g.ow;
                    let cols = &mut cols[..rows * width];
                    let src = Mat::rows(&dyg[oy0 * g.ow..], p);
                    matmul_serial(rows, width, cout_g, cols, width, false, wgt, src)?;
                    g.col2im_rows(cols, (oy0, oy1), (iy0, iy1), &mut bands);
                }
                Ok(())
            })
        })?;
    }
    Ok(dx)
}

/// The input gradient of a batch of small planes (one group), as
/// [`forward_images_side_by_side`] runs the forward pass: blocks of images, each block's output
/// gradients side by side in one matrix, multiplied by the transposed weights at once (for a
/// block of input channels) and scattered back (col2im) into each image's input gradient `dx`
/// (zero on entry); a 1×1 convolution writes the product directly.
fn input_grad_images_side_by_side<T: Float>(g: &Geom, threads: usize, dy: &[T], w: &[T], dx: &mut [T]) -> CResult<()> {
    let (k, p, hw, kk) = (g.k(), g.plane(), g.h * g.w, g.kh * g.kw);
    let blocks = image_blocks(g);
    let most = blocks.iter().map(|&(i0, i1)| (i1 - i0) * p).max().unwrap_or(1);
    // Blocks of input channels: enough to share out, and few enough rows of the product per
    // block to stay within four times the im2col budget.
    let parts = splits(blocks.len(), threads).max((k * most).div_ceil(4 * g.cols_budget)).min(g.cin);
    let chans = ranges(g.cin, parts, 1);
    let jobs: Vec<((usize, usize), (usize, usize))> =
        blocks.iter().flat_map(|&i| chans.iter().map(move |&c| (i, c))).collect();
    let out = SharedOut::new(dx);
    threads::run(jobs.len(), g.n * g.cout * p * k, |j| {
        let ((i0, i1), (c0, c1)) = jobs[j];
        let width = (i1 - i0) * p;
        T::with_scratch(g.cout * width, |grads| {
            for i in i0..i1 {
                for (co, src) in dy[i * g.cout * p..(i + 1) * g.cout * p].chunks_exact(p).enumerate() {
                    grads[co * width + (i - i0) * p..co * width + (i - i0 + 1) * p].copy_from_slice(src);
                }
            }
            let rows = (c1 - c0) * kk;
            T::with_scratch(rows * width, |prod| {
                let wt = Mat { data: &w[c0 * kk..], rs: 1, cs: k };
                matmul_serial(rows, width, g.cout, prod, width, false, wt, Mat::rows(grads, width))?;
                for i in i0..i1 {
                    // SAFETY: this job alone writes channels `c0..c1` of images `i0..i1`.
                    let planes = unsafe { out.slice((i * g.cin + c0) * hw, (c1 - c0) * hw)? };
                    let src = &prod[(i - i0) * p..];
                    if g.pointwise() {
                        for (c, plane) in planes.chunks_exact_mut(hw).enumerate() {
                            plane.copy_from_slice(&src[c * width..c * width + p]);
                        }
                    } else {
                        let mut bands: Vec<&mut [T]> = planes.chunks_exact_mut(hw).collect();
                        g.col2im_strided(src, width, (0, g.oh), (0, g.h), &mut bands);
                    }
                }
                Ok(())
            })
        })
    })
}

/// The weight gradient: the output gradient times the transposed im2col matrix, tile by tile,
/// each product split over the threads.
fn weight_grad<T: Float>(g: &Geom, x: &[T], dy: &[T]) -> CResult<Vec<T>> {
    let (k, p, cin_g, cout_g, hw) = (g.k(), g.plane(), g.cin_g(), g.cout_g(), g.h * g.w);
    let mut dw = vec![T::ZERO; g.cout * k];
    if dw.is_empty() {
        return Ok(dw);
    }
    {
        if g.direct() {
            direct_weight_grad(g, x, dy, &mut dw)?;
            return Ok(dw);
        }
        let width = if g.pointwise() { p } else { (g.cols_budget / k.max(1)).clamp(16, p.max(16)) };
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
                for (p0, p1) in ranges(p, p.div_ceil(width), 1) {
                    cols.resize(k * (p1 - p0), T::ZERO);
                    g.im2col(xg, (p0, p1), &mut cols);
                    let src = Mat::rows(&dyg[p0..], p);
                    matmul(cout_g, k, p1 - p0, dwg, k, true, src, Mat::transposed(&cols, p1 - p0))?;
                }
            }
        }
    }
    Ok(dw)
}

/// A convolution, and with `relu` a ReLU after it as one graph node: the forward pass applies
/// `max(·, 0)` in place on the convolution's output, so the graph keeps one tensor where the two
/// ops keep two, and the backward pass applies the ReLU's rule (by its output, which is positive
/// where its input is) before the convolution's backward.
struct Conv2d {
    g: Geom,
    relu: Option<ReluMode>,
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        match self.relu {
            None => "gaze-conv2d",
            Some(_) => "gaze-conv2d-relu",
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
            g: &Geom,
            relu: bool,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let epilogue = if relu { Epilogue::Relu } else { Epilogue::None };
            let y = forward(g, slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, slice::<T>(s3, l3)?, epilogue)?;
            output(y, (g.n, g.cout, g.oh, g.ow))
        }
        let relu = self.relu.is_some();
        dispatch_float!("conv2d", s1, run(&self.g, relu, (s1, l1), (s2, l2), (s3, l3)))
    }

    host_fallback!(op3);

    /// The input's gradient, and the weight's and bias's only when they are tracked; with `relu`,
    /// of the gradient after the ReLU's rule.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !(x.track_op() || weight.track_op() || bias.track_op()) {
            return Ok((None, None, None));
        }
        if let Some(mode) = self.relu {
            // Only the input's gradient, by Winograd's convolution: it reads the output gradient
            // through the ReLU's rule as it copies it in, so no gated gradient is written first.
            if x.track_op() && !weight.track_op() && !bias.track_op() && self.g.input_grad_variant()?.is_some() {
                let dx = grad.contiguous()?.apply_op3_no_bwd(res, weight, &GatedInputGrad(self.g, mode))?;
                return Ok((Some(dx), None, None));
            }
        }
        let grad = match self.relu {
            Some(mode) => res.apply_op2_no_bwd(&grad.contiguous()?, &ReluBackward(mode))?,
            None => grad.contiguous()?,
        };
        let (dx, dw) = input_and_weight_grads(&self.g, x, weight, &grad)?;
        let db = if bias.track_op() { Some(grad.sum((0, 2, 3))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The epilogue as a pass over the whole output, plane by plane on the ops' threads, for the
/// paths that do not apply it block by block.
fn epilogue_pass<T: Float>(g: &Geom, y: &mut [T], epilogue: Epilogue<'_, T>) -> CResult<()> {
    if matches!(epilogue, Epilogue::None) {
        return Ok(());
    }
    let p = g.plane().max(1);
    threads::chunks_mut(y, p, y.len(), |i, plane| {
        epilogue.apply(i * p, plane);
        Ok(())
    })
}

/// The convolution's input gradient and weight gradient for the output gradient `grad` (after any
/// ReLU's rule), each only when its operand is tracked.
fn input_and_weight_grads(
    g: &Geom,
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
) -> CResult<(Option<Tensor>, Option<Tensor>)> {
    let dx = if x.track_op() { Some(grad.apply_op2_no_bwd(weight, &ConvBackward::Input(*g))?) } else { None };
    let dw = if weight.track_op() { Some(x.apply_op2_no_bwd(grad, &ConvBackward::Weight(*g))?) } else { None };
    Ok((dx, dw))
}

/// The input gradient of a convolution followed by a ReLU with the rule `mode`, for a shape whose
/// input gradient runs as Winograd's convolution: `(dy, y, W) ↦ dx`, `y` the ReLU's output.
struct GatedInputGrad(Geom, ReluMode);

impl CustomOp3 for GatedInputGrad {
    fn name(&self) -> &'static str {
        "gaze-conv2d-relu-input-backward"
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
            GatedInputGrad(g, mode): &GatedInputGrad,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let (dy, y, w) = (slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, slice::<T>(s3, l3)?);
            let Some(variant) = g.input_grad_variant()? else {
                candle_core::bail!("conv2d relu backward: the shape has no Winograd input gradient");
            };
            let input = winograd::Input { x: dy, gate: Some((y, *mode)) };
            let dx = winograd::convolve(g.plan_input_grad(), variant, threads::count()?, input, w, true, None)?;
            output(dx, (g.n, g.cin, g.h, g.w))
        }
        dispatch_float!("conv2d relu backward", s1, run(self, (s1, l1), (s2, l2), (s3, l3)))
    }

    host_fallback!(op3);
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
    let bias_given = bias;
    let (geom, x, weight, bias) = operands(x, weight, bias, cfg)?;
    if device::wanted(&x) {
        if let Some(y) = device_conv(&geom, &x, &weight, bias_given)? {
            return Ok(y);
        }
    }
    Ok(x.apply_op3(&weight, &bias, Conv2d { g: geom, relu: None })?)
}

/// [`conv2d`] then [`relu`](fn@super::relu) with the backward rule `mode`, as one graph node:
/// `max(conv2d(x, weight, bias, cfg), 0)`.
///
/// The values and every gradient are those of the two ops in sequence (the ReLU's gradient is 0
/// where the convolution's output is 0 or less, as PyTorch's), but the graph keeps only the ReLU's
/// output, where the two ops keep the convolution's output too, and no pass over memory is
/// spent on a separate ReLU.
/// A model uses it where nothing asks for the convolution's own output.
pub fn conv2d_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
    mode: ReluMode,
) -> Result<Tensor> {
    let bias_given = bias;
    let (geom, x, weight, bias) = operands(x, weight, bias, cfg)?;
    if device::wanted(&x) {
        if let Some(y) = device_conv(&geom, &x, &weight, bias_given)? {
            return super::relu(&y, mode);
        }
    }
    Ok(x.apply_op3(&weight, &bias, Conv2d { g: geom, relu: Some(mode) })?)
}

/// [`conv2d`], plus `residual` (a tensor of the output's shape), then [`relu`](fn@super::relu)
/// with the backward rule `mode`, as one graph node: `max(conv2d(x, weight, bias, cfg) + residual, 0)`.
///
/// The values and every gradient are those of the three ops in sequence, but the graph keeps
/// only the ReLU's output, where they keep the convolution's output and the sum too; a residual
/// block ends with it (ResNet-50's `conv3`, its batch norm folded in, and the residual sum) where
/// nothing asks for the convolution's output.
/// A bias that is tracked (a variable) needs a gradient of its own; then the three ops run one by
/// one.
pub fn conv2d_add_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: &Tensor,
    cfg: Conv2dConfig,
    mode: ReluMode,
) -> Result<Tensor> {
    if bias.is_some_and(|b| b.track_op()) {
        return super::add_relu(&conv2d(x, weight, bias, cfg)?, residual, mode);
    }
    let bias_given = bias;
    let (g, x, weight, bias) = operands(x, weight, bias, cfg)?;
    let out = [g.n, g.cout, g.oh, g.ow];
    if residual.dims() != out {
        return Err(Error::Shape {
            what: "conv2d_add_relu residual".into(),
            expected: format!("{out:?}, the convolution's output"),
            got: residual.dims().to_vec(),
        });
    }
    same_dtype("conv2d_add_relu", &[("input", &x), ("residual", residual)])?;
    if device::wanted(&x) {
        if let Some(y) = device_conv(&g, &x, &weight, bias_given)? {
            return super::add_relu(&y, residual, mode);
        }
    }
    let bias = bias.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    Ok(x.apply_op3(&weight, &residual.contiguous()?, Conv2dAddRelu { g, mode, bias })?)
}

/// [`conv2d_add_relu`]'s op: `(x, W, r) ↦ max(conv(x, W) + b + r, 0)` with the bias `b` a constant.
struct Conv2dAddRelu {
    g: Geom,
    mode: ReluMode,
    bias: Vec<f64>,
}

impl CustomOp3 for Conv2dAddRelu {
    fn name(&self) -> &'static str {
        "gaze-conv2d-add-relu"
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
            op: &Conv2dAddRelu,
            (s1, l1): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> CResult<(CpuStorage, Shape)> {
            let g = &op.g;
            let bias: Vec<T> = op.bias.iter().map(|&b| T::from_f64(b)).collect();
            let residual = slice::<T>(s3, l3)?;
            let y = forward(g, slice::<T>(s1, l1)?, slice::<T>(s2, l2)?, &bias, Epilogue::AddRelu(residual))?;
            output(y, (g.n, g.cout, g.oh, g.ow))
        }
        dispatch_float!("conv2d_add_relu", s1, run(self, (s1, l1), (s2, l2), (s3, l3)))
    }

    host_fallback!(op3);

    /// The gradient after the ReLU's rule goes to the residual as it is and through the
    /// convolution's backward to the input (and to the weight when it is tracked).
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        residual: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !(x.track_op() || weight.track_op() || residual.track_op()) {
            return Ok((None, None, None));
        }
        let grad = res.apply_op2_no_bwd(&grad.contiguous()?, &ReluBackward(self.mode))?;
        let (dx, dw) = input_and_weight_grads(&self.g, x, weight, &grad)?;
        let dr = if residual.track_op() { Some(grad) } else { None };
        Ok((dx, dw, dr))
    }
}

/// The device path of the convolutions (see `device.rs`): candle's convolution on the device
/// (cuDNN's with the `cudnn` feature) for the value, and for the input's gradient the transposed
/// convolution written as a convolution of the output gradient (spread by the stride, padded by
/// the kernel's reach less the padding) with the kernels flipped and each group's input and output
/// channels swapped, so that groups keep working; the weight's gradient, when the weight is
/// tracked, on the host kernels. A bias that is not tracked is added into the value, a tracked
/// one by candle's broadcast sum (whose gradient is exact).
///
/// `None` when candle's kernels cannot express the geometry: different strides or dilations
/// along the two axes.
fn device_conv(g: &Geom, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Option<Tensor>> {
    if g.sh != g.sw || g.dh != g.dw {
        return Ok(None);
    }
    let (ph, pw) = (g.ph as isize, g.pw as isize);
    let xp = pad(&pad(&x.detach(), 2, ph, ph, None)?, 3, pw, pw, None)?;
    let depthwise = g.groups > 1 && g.cin == g.groups && g.cout == g.groups;
    let mut value = if depthwise {
        let taps = depthwise_taps(g, &weight.detach())?;
        sum(taps.into_iter().map(|(at, w)| device_tap(g, &xp, at)?.broadcast_mul(&w)), "conv2d")?
    } else {
        xp.conv2d(&weight.detach(), 0, g.sh, g.dh, g.groups)?
    };
    let bias_shape = (1, g.cout, 1, 1);
    if let Some(b) = bias.filter(|b| !b.track_op()) {
        value = value.broadcast_add(&b.detach().reshape(bias_shape)?)?;
    }
    let geom = *g;
    let y = attach("gaze-conv2d-device", &[x, weight], value, move |operands, _, grad| {
        let (x, w) = (operands[0], operands[1]);
        let dx = match (x.track_op(), depthwise) {
            (false, _) => None,
            (true, false) => Some(device_input_grad(&geom, grad, &w.detach())?),
            (true, true) => Some(device_depthwise_input_grad(&geom, grad, &w.detach())?),
        };
        let dw = if w.track_op() {
            Some(x.detach().contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &ConvBackward::Weight(geom))?)
        } else {
            None
        };
        Ok(vec![dx, dw])
    })?;
    Ok(Some(match bias.filter(|b| b.track_op()) {
        Some(b) => y.broadcast_add(&b.reshape(bias_shape)?)?,
        None => y,
    }))
}

/// A depthwise convolution's kernel taps: for each offset `(i, j)` of the kernel, the channels'
/// weights there as `[1, C, 1, 1]`.
fn depthwise_taps(g: &Geom, w: &Tensor) -> CResult<Vec<((usize, usize), Tensor)>> {
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for i in 0..g.kh {
        for j in 0..g.kw {
            taps.push(((i, j), w.narrow(2, i, 1)?.narrow(3, j, 1)?.reshape((1, g.cout, 1, 1))?));
        }
    }
    Ok(taps)
}

/// The elements of the padded input `xp` that kernel offset `(i, j)` reads for every output
/// (`[N, C, OH, OW]`).
fn device_tap(g: &Geom, xp: &Tensor, (i, j): (usize, usize)) -> CResult<Tensor> {
    let rows = every(xp, 2, i * g.dh, g.oh, g.sh)?;
    every(&rows, 3, j * g.dw, g.ow, g.sw)
}

/// The input gradient of a depthwise convolution (one kernel per channel) on the device path:
/// the output gradient times each offset's weights, placed where that offset reads and summed,
/// then the padding cut off. candle runs a grouped convolution as one convolution per group (a
/// kernel launch per channel on a GPU); the depthwise value and gradient run as a few
/// element-wise passes per kernel offset instead.
fn device_depthwise_input_grad(g: &Geom, dy: &Tensor, w: &Tensor) -> CResult<Tensor> {
    let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let placed = depthwise_taps(g, w)?.into_iter().map(|((i, j), wij)| {
        let rows = spread(&dy.broadcast_mul(&wij)?, 2, i * g.dh, g.sh, hp)?;
        spread(&rows, 3, j * g.dw, g.sw, wp)
    });
    let dxp = sum(placed, "conv2d input gradient")?;
    dxp.narrow(2, g.ph, g.h)?.narrow(3, g.pw, g.w)
}

/// The input gradient of a convolution on the device path: input pixel `i` receives
/// `Σ_j dy[o]·w[j]` over the taps with `o·s − p + j·d = i`, which is a stride-1 convolution
/// (dilation `d`) of the output gradient spread out by the stride `s` and padded by `d·(k − 1) − p`
/// before and `H + p − ((OH − 1)·s + 1)` after (a negative count cuts), with the kernels flipped.
fn device_input_grad(g: &Geom, dy: &Tensor, w: &Tensor) -> CResult<Tensor> {
    let (s, d) = (g.sh, g.dh);
    let (lh, lw) = ((g.oh - 1) * s + 1, (g.ow - 1) * s + 1);
    let spread_dy = spread(&spread(dy, 2, 0, s, lh)?, 3, 0, s, lw)?;
    let before = |k: usize, p: usize| (d * (k - 1)) as isize - p as isize;
    let after = |len: usize, p: usize, reach: usize| (len + p) as isize - reach as isize;
    let padded = pad(&spread_dy, 2, before(g.kh, g.ph), after(g.h, g.ph, lh), None)?;
    let padded = pad(&padded, 3, before(g.kw, g.pw), after(g.w, g.pw, lw), None)?;
    let (groups, cout_g, cin_g) = (g.groups, g.cout_g(), g.cin_g());
    let flipped = w
        .reshape((groups, cout_g, cin_g, g.kh, g.kw))?
        .transpose(1, 2)?
        .reshape((g.cin, cout_g, g.kh, g.kw))?
        .flip(&[2, 3])?
        .contiguous()?;
    padded.contiguous()?.conv2d(&flipped, 0, 1, d, groups)
}

/// Checks a convolution's operands and returns its geometry with the input, the weight and the
/// bias (zeros when there is none), contiguous.
fn operands(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> Result<(Geom, Tensor, Tensor, Tensor)> {
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
    same_dtype("conv2d", &[("weight", weight), ("input", x), ("bias", &bias)])?;
    Ok((geom, x.contiguous()?, weight.contiguous()?, bias))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| ((i as f64 + 1.0) * seed).sin()).collect()
    }

    /// The convolution written out as its definition: `y`, and the gradients of `Σ y · dy` with
    /// respect to `x` and `w`.
    #[allow(clippy::needless_range_loop)]
    fn naive(g: &Geom, x: &[f64], w: &[f64], b: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (cin_g, cout_g) = (g.cin_g(), g.cout_g());
        let mut y = vec![0.0; g.n * g.cout * g.plane()];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        for n in 0..g.n {
            for co in 0..g.cout {
                let grp = co / cout_g;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let at = ((n * g.cout + co) * g.oh + oy) * g.ow + ox;
                        let mut acc = b[co];
                        for c in 0..cin_g {
                            let ci = grp * cin_g + c;
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
                                    let ix = (ox * g.sw + kj * g.dw) as isize - g.pw as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((co * cin_g + c) * g.kh + ki) * g.kw + kj;
                                    acc += w[wi] * x[xi];
                                    dx[xi] += w[wi] * dy[at];
                                    dw[wi] += x[xi] * dy[at];
                                }
                            }
                        }
                        y[at] = acc;
                    }
                }
            }
        }
        (y, dx, dw)
    }

    /// Every way the kernels split their work (tiles of pixels, blocks of output rows, blocks of
    /// input channels, bands of input rows, for any number of threads) gives the convolution's
    /// definition.
    #[test]
    fn every_split_of_the_work_gives_the_definition() {
        let cases = [
            ([2, 4, 11, 8], [6, 4, 3, 2], Conv2dConfig::default().padding(1)),
            ([1, 4, 11, 8], [6, 4, 3, 2], Conv2dConfig::default().stride_hw((2, 3)).padding_hw((1, 2)).dilation(2)),
            ([2, 4, 11, 8], [6, 2, 3, 3], Conv2dConfig::default().stride(2).groups(2)),
            ([1, 3, 13, 9], [5, 3, 3, 3], Conv2dConfig::default().stride(2)),
            ([1, 20, 9, 7], [40, 20, 1, 1], Conv2dConfig::default()),
            ([2, 70, 3, 5], [80, 70, 1, 1], Conv2dConfig::default()),
            ([1, 6, 9, 7], [8, 6, 1, 1], Conv2dConfig::default().stride(2)),
            ([1, 18, 10, 10], [33, 18, 3, 3], Conv2dConfig::default().padding(1)),
            ([2, 3, 12, 12], [4, 3, 7, 7], Conv2dConfig::default().stride(2).padding(3)),
            // Batches of small planes, several blocks of images side by side (3 and 2 blocks).
            ([9, 3, 9, 9], [4, 3, 3, 3], Conv2dConfig::default().padding(1)),
            ([6, 8, 9, 10], [6, 8, 1, 1], Conv2dConfig::default()),
            // Depthwise: stride 1 (the stencil), a channel multiplier with dilation, padding
            // beyond the kernel's reach, and stride 2 (the direct loops).
            ([2, 6, 9, 7], [6, 1, 3, 3], Conv2dConfig::default().padding(1).groups(6)),
            ([1, 4, 8, 9], [8, 1, 3, 2], Conv2dConfig::default().dilation(2).padding_hw((2, 1)).groups(4)),
            ([1, 3, 5, 6], [3, 1, 3, 3], Conv2dConfig::default().padding_hw((3, 0)).groups(3)),
            ([1, 4, 9, 9], [4, 1, 3, 3], Conv2dConfig::default().stride(2).padding(1).groups(4)),
            // Padding as wide as the dilated kernel's reach, in groups: tiles that end before the
            // first column a tap reads.
            ([2, 4, 10, 9], [6, 2, 3, 3], Conv2dConfig::default().dilation(2).padding_hw((1, 4)).groups(2)),
            // Shapes Winograd's variants take (forward and input gradient): F(2×2, 3×3), then
            // F(4×4, 3×3) with padding 1, and with padding 0 and 2 (so 2 and 0 for the gradient).
            ([1, 16, 30, 30], [16, 16, 3, 3], Conv2dConfig::default().padding(1)),
            ([2, 16, 31, 33], [20, 16, 3, 3], Conv2dConfig::default().padding(1)),
            ([1, 16, 47, 45], [16, 16, 3, 3], Conv2dConfig::default().padding_hw((0, 2))),
        ];
        let mut winograd_cases = 0;
        for (x_dims, w_dims, cfg) in cases {
            let whole = Geom::new(&x_dims, &w_dims, cfg).unwrap();
            let x = data(x_dims.iter().product(), 0.37);
            let w = data(w_dims.iter().product(), 0.71);
            let b = data(whole.cout, 1.3);
            let dy = data(whole.n * whole.cout * whole.plane(), 0.53);
            let (y, dx, dw) = naive(&whole, &x, &w, &b, &dy);
            let fast =
                |g: &Geom| g.winograd(true) && g.plan().variant().is_some() && g.plan_input_grad().variant().is_some();
            winograd_cases += usize::from(fast(&whole));
            assert!(!fast(&Geom { allow_winograd: false, ..whole }));
            for (budget, allow) in
                [COLS_BUDGET, whole.k() * 16, whole.k() * whole.ow, 1].into_iter().flat_map(|b| [(b, true), (b, false)])
            {
                for threads in [1, 2, 3, 5] {
                    let g = Geom { cols_budget: budget, allow_winograd: allow, ..whole };
                    let got = (
                        forward_split(&g, threads, &x, &w, &b, Epilogue::None).unwrap(),
                        input_grad_split(&g, threads, &dy, &w).unwrap(),
                        weight_grad(&g, &x, &dy).unwrap(),
                    );
                    for (what, a, e) in [("y", &got.0, &y), ("dx", &got.1, &dx), ("dw", &got.2, &dw)] {
                        assert_eq!(a.len(), e.len());
                        for (i, (u, v)) in a.iter().zip(e.iter()).enumerate() {
                            assert!(
                                (u - v).abs() < 1e-10,
                                "{cfg:?} {x_dims:?} budget {budget} Winograd {allow} threads {threads}: {what}[{i}] {u} vs {v}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(winograd_cases, 3, "the last three shapes run Winograd's variants both ways");
    }

    /// In `f32`, a batch gives each image the values of a call on that image alone up to float
    /// rounding, forward and input gradient, on shapes where the batch runs Winograd's F(4×4, 3×3)
    /// and the single image F(4×4, 3×3), F(2×2, 3×3) or im2col: the algorithm is chosen per call
    /// by the batch's tiles (a batch amortises the transformed kernels over more tiles) and its
    /// tiles are grouped across images, so the sums differ by rounding only: within 1e-4 of the
    /// largest value, the tolerance that holds the models to PyTorch (measured 1.6e-5 with 16
    /// channels; the transforms' own f32 error is measured in `winograd.rs`).
    #[test]
    fn a_batch_matches_its_images_one_by_one_in_f32() {
        let cases = [
            ([3, 16, 45, 47], [16, 16, 3, 3], Conv2dConfig::default().padding(1)),
            ([3, 16, 30, 30], [24, 16, 3, 3], Conv2dConfig::default().padding(1)),
            ([16, 16, 13, 11], [16, 16, 3, 3], Conv2dConfig::default().padding(1)),
        ];
        let close = |a: &[f32], b: &[f32]| {
            let peak = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            a.iter().zip(b).all(|(u, v)| (u - v).abs() <= 1e-4 * peak)
        };
        let f32s = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        for (x_dims, w_dims, cfg) in cases {
            let whole = Geom::new(&x_dims, &w_dims, cfg).unwrap();
            let one = Geom::new(&[1, x_dims[1], x_dims[2], x_dims[3]], &w_dims, cfg).unwrap();
            let x = f32s(data(x_dims.iter().product(), 0.37));
            let w = f32s(data(w_dims.iter().product(), 0.71));
            let b = f32s(data(whole.cout, 1.3));
            let dy = f32s(data(whole.n * whole.cout * whole.plane(), 0.53));
            let y = forward_split(&whole, 2, &x, &w, &b, Epilogue::None).unwrap();
            let dx = input_grad_split(&whole, 2, &dy, &w).unwrap();
            let (xs, ys) = (x.len() / whole.n, y.len() / whole.n);
            for i in 0..whole.n {
                let yi = forward_split(&one, 2, &x[i * xs..(i + 1) * xs], &w, &b, Epilogue::None).unwrap();
                let dxi = input_grad_split(&one, 2, &dy[i * ys..(i + 1) * ys], &w).unwrap();
                assert!(close(&yi, &y[i * ys..(i + 1) * ys]), "{x_dims:?}: image {i}'s output");
                assert!(close(&dxi, &dx[i * xs..(i + 1) * xs]), "{x_dims:?}: image {i}'s input gradient");
            }
        }
    }
}
