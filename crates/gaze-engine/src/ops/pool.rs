//! Max, average and adaptive average pooling with PyTorch's forward and backward.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result as CResult, Shape, Tensor};

use super::device::{self, attach, constant, every, pad, spread, sum};
use super::kernel::{dispatch_float, host_fallback, output, slice, Float};
use super::threads::{self, SharedOut};
use crate::{Error, Result};

/// The geometry of a 2-D pooling: window, stride, padding, and PyTorch's rounding options.
///
/// Build it with [`Pool2dConfig::new`] (square window and stride, no padding, floor rounding, padded
/// zeros counted by average pooling) and refine it with the builder methods:
/// `Pool2dConfig::new(3, 2).padding(1).ceil_mode(true)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// The window's (height, width).
    pub kernel: (usize, usize),
    /// The step between windows, (vertical, horizontal).
    pub stride: (usize, usize),
    /// Implicit padding on each side, (vertical, horizontal); at most half the window.
    /// Max pooling pads with −∞, average pooling with zeros.
    pub padding: (usize, usize),
    /// Round the output size up instead of down (PyTorch's `ceil_mode`); the last window must still
    /// start inside the input or the left padding.
    pub ceil_mode: bool,
    /// Whether average pooling divides by the window's size including padding (PyTorch's
    /// `count_include_pad`, true by default); ignored by max pooling.
    pub count_include_pad: bool,
}

impl Pool2dConfig {
    /// A square `kernel × kernel` window moved by `stride` in both directions.
    pub fn new(kernel: usize, stride: usize) -> Self {
        Self::rect((kernel, kernel), (stride, stride))
    }

    /// A `(kh, kw)` window moved by `(sh, sw)`.
    pub fn rect(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        Pool2dConfig { kernel, stride, padding: (0, 0), ceil_mode: false, count_include_pad: true }
    }

    /// The same padding on all four sides.
    pub fn padding(self, padding: usize) -> Self {
        self.padding_hw((padding, padding))
    }

    /// Padding `(top and bottom, left and right)`.
    pub fn padding_hw(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }

    /// PyTorch's `ceil_mode`.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }

    /// PyTorch's `count_include_pad` (average pooling only).
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
}

/// A validated pooling over `planes` planes of `h × w` giving `oh × ow`.
#[derive(Clone, Copy, Debug)]
struct Geom {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    cfg: Pool2dConfig,
}

impl Geom {
    fn new(op: &str, dims: &[usize], cfg: Pool2dConfig) -> Result<Self> {
        let [n, c, h, w] = rank4(op, dims)?;
        let check = |name: &str, (a, b): (usize, usize), ok: bool, expected: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidOption {
                    option: format!("{op} {name}"),
                    value: format!("({a}, {b})"),
                    expected: expected.to_string(),
                })
            }
        };
        check("kernel", cfg.kernel, cfg.kernel.0 >= 1 && cfg.kernel.1 >= 1, "sizes of at least 1")?;
        check("stride", cfg.stride, cfg.stride.0 >= 1 && cfg.stride.1 >= 1, "steps of at least 1")?;
        check(
            "padding",
            cfg.padding,
            cfg.padding.0 <= cfg.kernel.0 / 2 && cfg.padding.1 <= cfg.kernel.1 / 2,
            &format!(
                "at most half the kernel, ({}, {}) for kernel ({}, {})",
                cfg.kernel.0 / 2,
                cfg.kernel.1 / 2,
                cfg.kernel.0,
                cfg.kernel.1
            ),
        )?;
        let oh = out_size(h, cfg.kernel.0, cfg.stride.0, cfg.padding.0, cfg.ceil_mode);
        let ow = out_size(w, cfg.kernel.1, cfg.stride.1, cfg.padding.1, cfg.ceil_mode);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok(Geom { planes: n * c, h, w, oh, ow, cfg }),
            _ => Err(Error::Shape {
                what: format!(
                    "{op} input (kernel ({}, {}), padding ({}, {}))",
                    cfg.kernel.0, cfg.kernel.1, cfg.padding.0, cfg.padding.1
                ),
                expected: format!(
                    "[N, C, H, W] with H ≥ {} and W ≥ {}",
                    cfg.kernel.0.saturating_sub(2 * cfg.padding.0).max(1),
                    cfg.kernel.1.saturating_sub(2 * cfg.padding.1).max(1)
                ),
                got: dims.to_vec(),
            }),
        }
    }

    /// The clipped input range of output row `o` along one axis, and the window's length
    /// counted PyTorch's way for average pooling (clipped to the padded input only).
    fn window(o: usize, k: usize, s: usize, p: usize, len: usize) -> (usize, usize, usize) {
        let start = (o * s) as isize - p as isize;
        let end_padded = (start + k as isize).min((len + p) as isize);
        let padded = (end_padded - start).max(0) as usize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).min(len as isize)).max(0) as usize;
        (lo, hi.max(lo), padded)
    }

    /// The elements of one window.
    fn window_len(&self) -> usize {
        self.cfg.kernel.0 * self.cfg.kernel.1
    }

    /// The outputs `lo..hi` of a row whose windows lie wholly inside the input's columns.
    fn inner_cols(&self) -> (usize, usize) {
        let (k, s, p) = (self.cfg.kernel.1, self.cfg.stride.1, self.cfg.padding.1);
        let lo = p.div_ceil(s).min(self.ow);
        let hi = if self.w + p >= k { ((self.w + p - k) / s + 1).min(self.ow) } else { 0 };
        (lo, hi.max(lo))
    }

    fn rows(&self, oy: usize) -> (usize, usize, usize) {
        let c = &self.cfg;
        Self::window(oy, c.kernel.0, c.stride.0, c.padding.0, self.h)
    }

    fn cols(&self, ox: usize) -> (usize, usize, usize) {
        let c = &self.cfg;
        Self::window(ox, c.kernel.1, c.stride.1, c.padding.1, self.w)
    }
}

/// PyTorch's `pooling_output_shape` for dilation 1: `None` when no window fits.
fn out_size(len: usize, k: usize, s: usize, p: usize, ceil: bool) -> Option<usize> {
    let numer = (len + 2 * p) as isize - k as isize + if ceil { s as isize - 1 } else { 0 };
    if numer < 0 {
        return None;
    }
    let mut out = numer as usize / s + 1;
    if ceil && (out - 1) * s >= len + p {
        out -= 1;
    }
    (out >= 1).then_some(out)
}

pub(crate) fn rank4(op: &str, dims: &[usize]) -> Result<[usize; 4]> {
    match dims {
        &[n, c, h, w] if h > 0 && w > 0 => Ok([n, c, h, w]),
        _ => Err(Error::Shape {
            what: format!("{op} input"),
            expected: "[N, C, H, W] with H, W ≥ 1".to_string(),
            got: dims.to_vec(),
        }),
    }
}

/// Where the maximum of the window `(rows, cols)` of `plane` lies: PyTorch's CPU rule, the first
/// maximum in row-major order (a NaN counts as a maximum).
#[inline]
fn argmax<T: Float>(plane: &[T], w: usize, rows: (usize, usize), cols: (usize, usize)) -> usize {
    let mut best = T::NEG_INFINITY;
    let mut at = rows.0 * w + cols.0;
    // Branch-free: a window's maximum lies anywhere, so a branch per element mispredicts often.
    for iy in rows.0..rows.1 {
        let base = iy * w + cols.0;
        let row = &plane[base..iy * w + cols.1];
        for (j, &v) in row.iter().enumerate() {
            #[allow(clippy::eq_op)]
            let take = (v > best) | (v != v);
            best = if take { v } else { best };
            at = if take { base + j } else { at };
        }
    }
    at
}

/// Max pooling of one plane `xp` into `yp`, with where each maximum lies into `ap` (or
/// [`NO_INPUT`]): [`argmax`]'s rule for every output. The outputs whose window lies wholly inside
/// the input's columns (`inner`, see [`Geom::inner_cols`]) run a row of outputs at a time through
/// [`Float::window_max`], the window's elements in row-major order (so ties and NaNs resolve as in
/// [`argmax`]), each read from its input row split by the phase of the stride, where consecutive
/// outputs' elements lie side by side (which the kernel keeps in vector registers); the others run
/// one window at a time.
fn max_pool_plane<T: Float>(g: &Geom, inner: (usize, usize), xp: &[T], yp: &mut [T], ap: &mut [u32]) {
    // The window's input rows split by the stride's phase (column `c · sw + q` of the row in slot
    // `s` at `phases[(s · sw + q) · per + c]`), in the thread's scratch buffer.
    let (kh, sw, per) = (g.cfg.kernel.0, g.cfg.stride.1, g.w.div_ceil(g.cfg.stride.1));
    T::with_scratch(if sw > 1 { kh * sw * per } else { 0 }, |phases| max_pool_rows(g, inner, xp, yp, ap, phases))
}

/// [`max_pool_plane`] with `phases` (`kh · sw · ⌈w / sw⌉` elements when the stride `sw` exceeds 1).
fn max_pool_rows<T: Float>(
    g: &Geom,
    (lo, hi): (usize, usize),
    xp: &[T],
    yp: &mut [T],
    ap: &mut [u32],
    phases: &mut [T],
) {
    let (kw, sw, pw, w) = (g.cfg.kernel.1, g.cfg.stride.1, g.cfg.padding.1, g.w);
    let per = w.div_ceil(sw);
    // Each window element of the row of outputs: where output `lo`'s value lies in the source
    // (the plane, or the phases) and its index in the plane.
    let mut elements: Vec<(usize, u32)> = Vec::with_capacity(g.cfg.kernel.0 * kw);
    for oy in 0..g.oh {
        let (r0, r1, _) = g.rows(oy);
        let (yr, ar) = (&mut yp[oy * g.ow..(oy + 1) * g.ow], &mut ap[oy * g.ow..(oy + 1) * g.ow]);
        for ox in (0..lo).chain(hi..g.ow) {
            let (c0, c1, _) = g.cols(ox);
            if r0 < r1 && c0 < c1 {
                let i = argmax(xp, w, (r0, r1), (c0, c1));
                (yr[ox], ar[ox]) = (xp[i], i as u32);
            } else {
                (yr[ox], ar[ox]) = (T::NEG_INFINITY, NO_INPUT);
            }
        }
        if lo >= hi {
            continue;
        }
        let (best, at) = (&mut yr[lo..hi], &mut ar[lo..hi]);
        if r0 >= r1 {
            best.fill(T::NEG_INFINITY);
            at.fill(NO_INPUT);
            continue;
        }
        elements.clear();
        for (slot, iy) in (r0..r1).enumerate() {
            let row = &xp[iy * w..(iy + 1) * w];
            if sw > 1 {
                T::split_phases(row, sw, per, &mut phases[slot * sw * per..(slot + 1) * sw * per]);
            }
            for j in 0..kw {
                // Window column `j` of output `ox` is input column `ox · sw − pw + j`.
                let c = lo * sw + j - pw;
                let offset = if sw > 1 { (slot * sw + c % sw) * per + c / sw } else { iy * w + c };
                elements.push((offset, (iy * w + c) as u32));
            }
        }
        let src = if sw > 1 { &phases[..(r1 - r0) * sw * per] } else { xp };
        T::window_max(best, at, src, &elements, sw as u32);
    }
}

/// Marks an output whose window lies wholly in the padding, which has no maximum to route to.
const NO_INPUT: u32 = u32::MAX;

/// Where each output of a max pooling took its value from, as an index in its input plane.
type Argmax = Arc<Vec<u32>>;

/// Max pooling; its forward pass keeps where each window's maximum lies (an index in its plane,
/// or [`NO_INPUT`]), so its backward pass is a scatter.
struct MaxPool {
    geom: Geom,
    argmax: Mutex<Option<Argmax>>,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "gaze-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(g: &Geom, s: &CpuStorage, l: &Layout) -> CResult<((CpuStorage, Shape), Option<Argmax>)> {
            let x = slice::<T>(s, l)?;
            let (hw, p) = (g.h * g.w, g.oh * g.ow);
            let mut y = threads::filled(g.planes * p, T::ZERO)?;
            // Planes too large for 32-bit indices are pooled without keeping them.
            let keep = hw < NO_INPUT as usize;
            let mut at = threads::filled(if keep { g.planes * p } else { 0 }, NO_INPUT)?;
            if p > 0 {
                let indices = SharedOut::new(&mut at);
                let inner = g.inner_cols();
                threads::chunks_mut(&mut y, p, g.planes * p * g.window_len(), |i, yp| {
                    let xp = &x[i * hw..(i + 1) * hw];
                    if !keep {
                        for (o, v) in yp.iter_mut().enumerate() {
                            let ((r0, r1, _), (c0, c1, _)) = (g.rows(o / g.ow), g.cols(o % g.ow));
                            *v = if r0 < r1 && c0 < c1 {
                                xp[argmax(xp, g.w, (r0, r1), (c0, c1))]
                            } else {
                                T::NEG_INFINITY
                            };
                        }
                        return Ok(());
                    }
                    // SAFETY: plane `i` of the indices is written by this job only.
                    let ap = unsafe { indices.slice(i * p, p)? };
                    max_pool_plane(g, inner, xp, yp, ap);
                    Ok(())
                })?;
            }
            let d = l.dims();
            Ok((output(y, (d[0], d[1], g.oh, g.ow))?, keep.then(|| Arc::new(at))))
        }
        let (out, at) = dispatch_float!("max_pool2d", s, run(&self.geom, s, l))?;
        *self.argmax.lock().unwrap_or_else(|e| e.into_inner()) = at;
        Ok(out)
    }

    host_fallback!(op1);

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        let kept = self.argmax.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match kept {
            Some(argmax) => Ok(Some(grad.apply_op1_no_bwd(&MaxPoolScatter { geom: self.geom, argmax })?)),
            None => Ok(Some(arg.apply_op2_no_bwd(&grad, &MaxPoolBackward(self.geom))?)),
        }
    }
}

/// The gradient of max pooling from the kept indices: `dy ↦ dx`, each output's gradient added
/// to the input element it came from.
struct MaxPoolScatter {
    geom: Geom,
    argmax: Argmax,
}

impl CustomOp1 for MaxPoolScatter {
    fn name(&self) -> &'static str {
        "gaze-max-pool2d-scatter"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(g: &Geom, argmax: &[u32], s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let dy = slice::<T>(s, l)?;
            let (hw, p) = (g.h * g.w, g.oh * g.ow);
            if dy.len() != g.planes * p || argmax.len() != dy.len() {
                candle_core::bail!("max_pool2d backward: gradient shape {:?}", l.dims());
            }
            let mut dx = threads::filled(g.planes * hw, T::ZERO)?;
            if p > 0 {
                threads::chunks_mut(&mut dx, hw, dy.len(), |i, dxp| {
                    let (dyp, ap) = (&dy[i * p..(i + 1) * p], &argmax[i * p..(i + 1) * p]);
                    for (&at, &d) in ap.iter().zip(dyp) {
                        if let Some(v) = dxp.get_mut(at as usize) {
                            *v += d;
                        }
                    }
                    Ok(())
                })?;
            }
            let d = l.dims();
            output(dx, (d[0], d[1], g.h, g.w))
        }
        dispatch_float!("max_pool2d backward", s, run(&self.geom, &self.argmax, s, l))
    }

    host_fallback!(op1);
}

/// The gradient of max pooling: `(x, dy) ↦ dx`, each window's gradient to its first maximum.
struct MaxPoolBackward(Geom);

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "gaze-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(
            g: &Geom,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s1, l1)?;
            let dy = slice::<T>(s2, l2)?;
            if dy.len() != g.planes * g.oh * g.ow {
                candle_core::bail!("max_pool2d backward: gradient shape {:?}", l2.dims());
            }
            let mut dx = threads::filled(x.len(), T::ZERO)?;
            if g.oh * g.ow > 0 {
                let (hw, p) = (g.h * g.w, g.oh * g.ow);
                threads::chunks_mut(&mut dx, hw, dy.len() * g.window_len(), |i, dxp| {
                    let (xp, dyp) = (&x[i * hw..(i + 1) * hw], &dy[i * p..(i + 1) * p]);
                    for oy in 0..g.oh {
                        let (r0, r1, _) = g.rows(oy);
                        for ox in 0..g.ow {
                            let (c0, c1, _) = g.cols(ox);
                            if r0 < r1 && c0 < c1 {
                                dxp[argmax(xp, g.w, (r0, r1), (c0, c1))] += dyp[oy * g.ow + ox];
                            }
                        }
                    }
                    Ok(())
                })?;
            }
            output(dx, l1.shape().clone())
        }
        dispatch_float!("max_pool2d backward", s1, run(&self.0, s1, l1, s2, l2))
    }

    host_fallback!(op2);
}

struct AvgPool(Geom);

impl Geom {
    /// The clipped window of output `(oy, ox)` and PyTorch's divisor for it.
    #[inline]
    fn avg_window(&self, oy: usize, ox: usize) -> ((usize, usize), (usize, usize), usize) {
        let (r0, r1, ph) = self.rows(oy);
        let (c0, c1, pw) = self.cols(ox);
        let divisor = if self.cfg.count_include_pad { ph * pw } else { (r1 - r0) * (c1 - c0) };
        ((r0, r1), (c0, c1), divisor)
    }
}

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "gaze-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(g: &Geom, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s, l)?;
            let mut y = vec![T::ZERO; g.planes * g.oh * g.ow];
            if g.oh * g.ow > 0 {
                threads::chunks_mut(&mut y, g.oh * g.ow, x.len() * g.window_len(), |i, yp| {
                    let xp = &x[i * (g.h * g.w)..(i + 1) * (g.h * g.w)];
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let ((r0, r1), (c0, c1), div) = g.avg_window(oy, ox);
                            if r0 >= r1 || c0 >= c1 || div == 0 {
                                continue;
                            }
                            let mut sum = T::ZERO;
                            for iy in r0..r1 {
                                for &v in &xp[iy * g.w + c0..iy * g.w + c1] {
                                    sum += v;
                                }
                            }
                            yp[oy * g.ow + ox] = sum / T::from_f64(div as f64);
                        }
                    }
                    Ok(())
                })?;
            }
            let d = l.dims();
            output(y, (d[0], d[1], g.oh, g.ow))
        }
        dispatch_float!("avg_pool2d", s, run(&self.0, s, l))
    }

    host_fallback!(op1);

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&AvgPoolBackward(self.0))?))
    }
}

/// The gradient of average pooling: `dy ↦ dx`, each window's gradient spread over its clipped
/// window divided by the forward's divisor.
struct AvgPoolBackward(Geom);

impl CustomOp1 for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "gaze-avg-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(g: &Geom, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let dy = slice::<T>(s, l)?;
            let mut dx = vec![T::ZERO; g.planes * g.h * g.w];
            if g.oh * g.ow > 0 {
                threads::chunks_mut(&mut dx, g.h * g.w, dy.len() * g.window_len(), |i, dxp| {
                    let dyp = &dy[i * (g.oh * g.ow)..(i + 1) * (g.oh * g.ow)];
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let ((r0, r1), (c0, c1), div) = g.avg_window(oy, ox);
                            if r0 >= r1 || c0 >= c1 || div == 0 {
                                continue;
                            }
                            let d = dyp[oy * g.ow + ox] / T::from_f64(div as f64);
                            for iy in r0..r1 {
                                for v in &mut dxp[iy * g.w + c0..iy * g.w + c1] {
                                    *v += d;
                                }
                            }
                        }
                    }
                    Ok(())
                })?;
            }
            let d = l.dims();
            output(dx, (d[0], d[1], g.h, g.w))
        }
        dispatch_float!("avg_pool2d backward", s, run(&self.0, s, l))
    }

    host_fallback!(op1);
}

/// Max pooling of `x: [N, C, H, W]` as PyTorch's `max_pool2d` (dilation 1): padding counts as −∞,
/// `ceil_mode` rounds as PyTorch does, and the backward pass gives each window's whole gradient
/// to the first maximum in row-major order (PyTorch's CPU rule), accumulating where windows
/// overlap.
pub fn max_pool2d(x: &Tensor, cfg: Pool2dConfig) -> Result<Tensor> {
    let geom = Geom::new("max_pool2d", x.dims(), cfg)?;
    if device::wanted(x) {
        return Ok(device_max_pool(&geom, x)?);
    }
    Ok(x.contiguous()?.apply_op1(MaxPool { geom, argmax: Mutex::new(None) })?)
}

/// Average pooling of `x: [N, C, H, W]` as PyTorch's `avg_pool2d`: zero padding, `ceil_mode`,
/// and the divisor of each window either its size clipped to the padded input
/// (`count_include_pad`) or the number of input elements it covers.
pub fn avg_pool2d(x: &Tensor, cfg: Pool2dConfig) -> Result<Tensor> {
    let geom = Geom::new("avg_pool2d", x.dims(), cfg)?;
    if device::wanted(x) {
        return Ok(device_avg_pool(&geom, x)?);
    }
    Ok(x.contiguous()?.apply_op1(AvgPool(geom))?)
}

/// An adaptive pooling from `h × w` to `oh × ow` with PyTorch's windows:
/// rows `floor(i·h/oh) .. ceil((i+1)·h/oh)`, and the same for columns.
#[derive(Clone, Copy, Debug)]
struct Adaptive {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Adaptive {
    #[inline]
    fn range(i: usize, len: usize, out: usize) -> (usize, usize) {
        (i * len / out, ((i + 1) * len).div_ceil(out))
    }
}

struct AdaptiveAvgPool(Adaptive);

impl CustomOp1 for AdaptiveAvgPool {
    fn name(&self) -> &'static str {
        "gaze-adaptive-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(a: &Adaptive, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let x = slice::<T>(s, l)?;
            let mut y = vec![T::ZERO; a.planes * a.oh * a.ow];
            threads::chunks_mut(&mut y, a.oh * a.ow, x.len(), |i, yp| {
                let xp = &x[i * (a.h * a.w)..(i + 1) * (a.h * a.w)];
                for oy in 0..a.oh {
                    let (r0, r1) = Adaptive::range(oy, a.h, a.oh);
                    for ox in 0..a.ow {
                        let (c0, c1) = Adaptive::range(ox, a.w, a.ow);
                        let mut sum = T::ZERO;
                        for iy in r0..r1 {
                            for &v in &xp[iy * a.w + c0..iy * a.w + c1] {
                                sum += v;
                            }
                        }
                        yp[oy * a.ow + ox] = sum / T::from_f64(((r1 - r0) * (c1 - c0)) as f64);
                    }
                }
                Ok(())
            })?;
            let d = l.dims();
            output(y, (d[0], d[1], a.oh, a.ow))
        }
        dispatch_float!("adaptive_avg_pool2d", s, run(&self.0, s, l))
    }

    host_fallback!(op1);

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&AdaptiveAvgPoolBackward(self.0))?))
    }
}

struct AdaptiveAvgPoolBackward(Adaptive);

impl CustomOp1 for AdaptiveAvgPoolBackward {
    fn name(&self) -> &'static str {
        "gaze-adaptive-avg-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        fn run<T: Float>(a: &Adaptive, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
            let dy = slice::<T>(s, l)?;
            let mut dx = vec![T::ZERO; a.planes * a.h * a.w];
            threads::chunks_mut(&mut dx, a.h * a.w, dy.len().max(a.planes * a.h * a.w), |i, dxp| {
                let dyp = &dy[i * (a.oh * a.ow)..(i + 1) * (a.oh * a.ow)];
                for oy in 0..a.oh {
                    let (r0, r1) = Adaptive::range(oy, a.h, a.oh);
                    for ox in 0..a.ow {
                        let (c0, c1) = Adaptive::range(ox, a.w, a.ow);
                        let d = dyp[oy * a.ow + ox] / T::from_f64(((r1 - r0) * (c1 - c0)) as f64);
                        for iy in r0..r1 {
                            for v in &mut dxp[iy * a.w + c0..iy * a.w + c1] {
                                *v += d;
                            }
                        }
                    }
                }
                Ok(())
            })?;
            let d = l.dims();
            output(dx, (d[0], d[1], a.h, a.w))
        }
        dispatch_float!("adaptive_avg_pool2d backward", s, run(&self.0, s, l))
    }

    host_fallback!(op1);
}

/// Adaptive average pooling of `x: [N, C, H, W]` to `[N, C, oh, ow]` as PyTorch's
/// `adaptive_avg_pool2d`: output row `i` averages input rows `floor(i·H/oh) .. ceil((i+1)·H/oh)`
/// (and the same for columns), so windows may overlap or differ in size.
pub fn adaptive_avg_pool2d(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    let [n, c, h, w] = rank4("adaptive_avg_pool2d", x.dims())?;
    if out.0 == 0 || out.1 == 0 {
        return Err(Error::InvalidOption {
            option: "adaptive_avg_pool2d output size".to_string(),
            value: format!("({}, {})", out.0, out.1),
            expected: "sizes of at least 1".to_string(),
        });
    }
    let a = Adaptive { planes: n * c, h, w, oh: out.0, ow: out.1 };
    if device::wanted(x) && h % a.oh == 0 && w % a.ow == 0 {
        return Ok(device_even_adaptive_avg_pool(&a, x)?);
    }
    Ok(x.contiguous()?.apply_op1(AdaptiveAvgPool(a))?)
}

/// The device path's padded input of a pooling: `cfg.padding` before each axis and enough after
/// it for the last window (more than the padding in `ceil_mode`, less when the last input rows
/// are in no window), filled with `fill` (zeros when `None`).
fn device_padded(g: &Geom, x: &Tensor, fill: Option<f64>) -> CResult<Tensor> {
    let c = &g.cfg;
    let after = |o: usize, s: usize, k: usize, len: usize, p: usize| ((o - 1) * s + k) as isize - (len + p) as isize;
    let rows = pad(x, 2, c.padding.0 as isize, after(g.oh, c.stride.0, c.kernel.0, g.h, c.padding.0), fill)?;
    pad(&rows, 3, c.padding.1 as isize, after(g.ow, c.stride.1, c.kernel.1, g.w, c.padding.1), fill)
}

/// The window offsets `(i, j)` of a pooling in row-major order, each with the elements of the
/// padded input `xp` it reads for every output (`[N, C, OH, OW]`).
fn device_windows<'a>(g: &'a Geom, xp: &'a Tensor) -> impl Iterator<Item = CResult<((usize, usize), Tensor)>> + 'a {
    let c = g.cfg;
    (0..c.kernel.0).flat_map(move |i| (0..c.kernel.1).map(move |j| (i, j))).map(move |(i, j)| {
        let rows = every(xp, 2, i, g.oh, c.stride.0)?;
        Ok(((i, j), every(&rows, 3, j, g.ow, c.stride.1)?))
    })
}

/// The inverse of one window offset of [`device_windows`]: `per_output` (`[N, C, OH, OW]`) placed
/// where offset `(i, j)` reads, in a zero tensor of the padded input's size (`hp × wp`).
fn device_place(g: &Geom, per_output: &Tensor, (i, j): (usize, usize), (hp, wp): (usize, usize)) -> CResult<Tensor> {
    let rows = spread(per_output, 2, i, g.cfg.stride.0, hp)?;
    spread(&rows, 3, j, g.cfg.stride.1, wp)
}

/// The gradient for the unpadded input from the gradient for the padded one.
fn device_unpad(g: &Geom, dxp: &Tensor) -> CResult<Tensor> {
    let c = &g.cfg;
    let rows = dxp.narrow(2, c.padding.0, g.h.min(dxp.dim(2)? - c.padding.0))?;
    let rows = pad(&rows, 2, 0, g.h as isize - rows.dim(2)? as isize, None)?;
    let cols = rows.narrow(3, c.padding.1, g.w.min(rows.dim(3)? - c.padding.1))?;
    pad(&cols, 3, 0, g.w as isize - cols.dim(3)? as isize, None)
}

/// Max pooling on the device path (see `device.rs`): candle's max pooling of the input padded
/// with −∞; the backward pass visits the window offsets in row-major order and gives each
/// window's gradient to the first offset that holds its maximum, as the host kernel does.
fn device_max_pool(g: &Geom, x: &Tensor) -> CResult<Tensor> {
    let xp = device_padded(g, &x.detach(), Some(f64::NEG_INFINITY))?;
    let c = g.cfg;
    let value = xp.max_pool2d_with_stride(c.kernel, c.stride)?;
    let geom = *g;
    attach("gaze-max-pool2d-device", &[x], value, move |operands, y, grad| {
        let xp = device_padded(&geom, &operands[0].detach(), Some(f64::NEG_INFINITY))?;
        let (hp, wp) = (xp.dim(2)?, xp.dim(3)?);
        let y = y.detach();
        let mut taken = y.zeros_like()?;
        let mut dxp = xp.zeros_like()?;
        for window in device_windows(&geom, &xp) {
            let (offset, xs) = window?;
            let first = (xs.eq(&y)?.to_dtype(y.dtype())? * taken.affine(-1.0, 1.0)?)?;
            taken = (taken + &first)?;
            dxp = (dxp + device_place(&geom, &(grad * first)?, offset, (hp, wp))?)?;
        }
        Ok(vec![Some(device_unpad(&geom, &dxp)?)])
    })
}

/// PyTorch's divisors of average pooling (`[OH, OW]`, as `f64`): each window's size clipped to
/// the padded input, or with `count_include_pad` off the number of input elements it covers.
fn avg_divisors(g: &Geom) -> Vec<f64> {
    let size = |(lo, hi, padded): (usize, usize, usize)| if g.cfg.count_include_pad { padded } else { hi - lo };
    let rows: Vec<usize> = (0..g.oh).map(|o| size(g.rows(o))).collect();
    let cols: Vec<usize> = (0..g.ow).map(|o| size(g.cols(o))).collect();
    rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r * c) as f64)).collect()
}

/// Average pooling on the device path (see `device.rs`): the window sums (candle's average
/// pooling of the zero-padded input times the window's size) over PyTorch's divisors; the
/// backward pass gives every element of a window its gradient over the divisor.
fn device_avg_pool(g: &Geom, x: &Tensor) -> CResult<Tensor> {
    let c = g.cfg;
    let divisors = constant(avg_divisors(g), (g.oh, g.ow), x)?;
    let xp = device_padded(g, &x.detach(), None)?;
    let sums = xp.avg_pool2d_with_stride(c.kernel, c.stride)?.affine((c.kernel.0 * c.kernel.1) as f64, 0.0)?;
    let value = sums.broadcast_div(&divisors)?;
    let (geom, hp, wp) = (*g, xp.dim(2)?, xp.dim(3)?);
    attach("gaze-avg-pool2d-device", &[x], value, move |_, _, grad| {
        let share = grad.broadcast_div(&divisors)?;
        let offsets = (0..c.kernel.0).flat_map(|i| (0..c.kernel.1).map(move |j| (i, j)));
        let dxp = sum(offsets.map(|at| device_place(&geom, &share, at, (hp, wp))), "avg_pool2d")?;
        Ok(vec![Some(device_unpad(&geom, &dxp)?)])
    })
}

/// Adaptive average pooling on the device path (see `device.rs`) where the output's size divides
/// the input's: PyTorch's windows are then the blocks of an average pooling with the block as
/// kernel and stride, and each input element receives its block's gradient over the block's size.
fn device_even_adaptive_avg_pool(a: &Adaptive, x: &Tensor) -> CResult<Tensor> {
    let (kh, kw) = (a.h / a.oh, a.w / a.ow);
    let value = x.detach().avg_pool2d_with_stride((kh, kw), (kh, kw))?;
    let a = *a;
    attach("gaze-adaptive-avg-pool2d-device", &[x], value, move |_, _, grad| {
        let (n, c) = (grad.dim(0)?, grad.dim(1)?);
        let share = grad.affine(1.0 / (kh * kw) as f64, 0.0)?.reshape((n, c, a.oh, 1, a.ow, 1))?;
        let dx = share.broadcast_as((n, c, a.oh, kh, a.ow, kw))?.contiguous()?.reshape((n, c, a.h, a.w))?;
        Ok(vec![Some(dx)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max pooling's row-at-a-time plane routine against [`argmax`] window by window: values and
    /// indices, on planes with many ties (values from a few levels), NaNs and −∞, for widths from 1
    /// to 149, for strides,
    /// paddings, ceil mode and rectangular windows, in `f32` and `f64`.
    fn agrees<T: Float>(to: impl Fn(f64) -> T) {
        let configs = [
            Pool2dConfig::new(2, 2),
            Pool2dConfig::new(3, 2).padding(1),
            Pool2dConfig::new(3, 2).padding(1).ceil_mode(true),
            Pool2dConfig::new(2, 1),
            Pool2dConfig::new(3, 1).padding(1),
            Pool2dConfig::new(2, 3),
            Pool2dConfig::new(3, 3).ceil_mode(true),
            Pool2dConfig::rect((3, 2), (2, 3)).padding_hw((1, 1)).ceil_mode(true),
            Pool2dConfig::rect((2, 5), (1, 2)).padding_hw((1, 2)),
        ];
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut interior = 0;
        for cfg in configs {
            // Wide rows too, so that the vector path runs whole blocks and tails.
            for (h, w) in
                [(1, 1), (3, 4), (7, 9), (8, 8), (5, 23), (11, 40), (3, 33), (4, 47), (2, 64), (3, 100), (2, 149)]
            {
                let Ok(g) = Geom::new("test", &[1, 1, h, w], cfg) else { continue };
                let x: Vec<T> = (0..h * w)
                    .map(|_| match next() % 23 {
                        0 => to(f64::NAN),
                        1 => to(f64::NEG_INFINITY),
                        r => to((r % 4) as f64 - 1.5),
                    })
                    .collect();
                let p = g.oh * g.ow;
                let (mut y, mut at) = (vec![T::ZERO; p], vec![0u32; p]);
                let inner = g.inner_cols();
                interior += inner.1 - inner.0;
                max_pool_plane(&g, inner, &x, &mut y, &mut at);
                for o in 0..p {
                    let ((r0, r1, _), (c0, c1, _)) = (g.rows(o / g.ow), g.cols(o % g.ow));
                    let want = argmax(&x, w, (r0, r1), (c0, c1));
                    #[allow(clippy::eq_op)]
                    let same = |a: T, b: T| a == b || (a != a && b != b);
                    assert_eq!(at[o], want as u32, "{cfg:?} on {h}×{w}, output {o}");
                    assert!(same(y[o], x[want]), "{cfg:?} on {h}×{w}, output {o}");
                }
            }
        }
        assert!(interior > 100, "the row-at-a-time path ran on {interior} outputs only");
    }

    #[test]
    fn max_pool_rows_pick_the_maxima_windows_pick() {
        agrees::<f32>(|v| v as f32);
        agrees::<f64>(|v| v);
    }
}
