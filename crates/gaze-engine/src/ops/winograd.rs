//! Winograd's minimal filtering for 3×3 convolutions with stride 1 (A. Lavin and S. Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016).
//!
//! F(m×m, 3×3) computes an m×m tile of one output channel from an (m+2)×(m+2) tile of each input
//! channel as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`: the element-wise products, summed over the input
//! channels, are (m+2)² matrix products (one per position ξ of the transformed tile) of the
//! transformed weights `U_ξ` (`C_out × C_in`) with the transformed input tiles `V_ξ`
//! (`C_in × tiles`), so a tile costs (m+2)² multiply-adds per channel pair where the direct
//! convolution costs 9m²: 2.25× fewer for F(2×2, 3×3), 4× fewer for F(4×4, 3×3).
//!
//! The input gradient of a 3×3 stride-1 convolution with padding `p` is the same kind of
//! convolution of the output gradient, with the kernels flipped, the channel roles swapped and
//! padding `2 − p`, so one routine serves both passes.
//!
//! Layout: the work is split into jobs of (band of tile rows, of one image or several in turn;
//! block of output channels). Each job copies the input rows its tiles read into a buffer of its
//! thread, zero-padded to whole tiles and with blocks of eight channels innermost, transforms its
//! tiles eight channels at a time (one per SIMD lane, AVX2 where the CPU has it), multiplies, and
//! transforms the products back eight tiles at a time into its band of output rows.
//! The kernels are transformed once per call, in parallel, into a buffer of the calling thread.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::Result;

use super::kernel::Float;
use super::matmul::{matmul_serial, Mat};
use super::relu::{backward_rule, ReluMode};
use super::threads::{self, SharedOut};

/// The environment variable that turns Winograd's convolutions off (`0`, `off` or `false`) or on
/// (`1`, `on` or `true`, the default).
pub const WINOGRAD_VAR: &str = "GAZE_WINOGRAD";

/// 0: not yet read from [`WINOGRAD_VAR`]; 1: on; 2: off.
static WINOGRAD: AtomicU8 = AtomicU8::new(0);

/// Whether 3×3 stride-1 convolutions may run as Winograd's F(4×4, 3×3) or F(2×2, 3×3) (on by
/// default; see [`set_winograd`]).
///
/// Fails when `GAZE_WINOGRAD` is set to something other than `0`, `off`, `false`, `1`, `on` or
/// `true`.
pub fn winograd_enabled() -> crate::Result<bool> {
    match WINOGRAD.load(Ordering::Relaxed) {
        1 => return Ok(true),
        2 => return Ok(false),
        _ => {}
    }
    let on = match std::env::var(WINOGRAD_VAR) {
        Err(std::env::VarError::NotPresent) => true,
        Ok(v) if ["1", "on", "true"].contains(&v.trim()) => true,
        Ok(v) if ["0", "off", "false"].contains(&v.trim()) => false,
        Ok(v) => return Err(invalid_switch(v)),
        Err(std::env::VarError::NotUnicode(v)) => return Err(invalid_switch(v.to_string_lossy().into_owned())),
    };
    WINOGRAD.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    Ok(on)
}

fn invalid_switch(value: String) -> crate::Error {
    crate::Error::InvalidOption {
        option: WINOGRAD_VAR.into(),
        value,
        expected: "1, on or true (Winograd's convolutions where they pay), or 0, off or false (im2col and gemm for every convolution)".into(),
    }
}

/// Lets 3×3 stride-1 convolutions run as Winograd's F(m×m, 3×3) where it pays (`true`, the
/// default) or runs every convolution as im2col and gemm (`false`); it overrides `GAZE_WINOGRAD`.
///
/// Both compute the same convolution; they round differently. Winograd's transforms add a few
/// float32 roundings: on a 256-channel layer F(4×4, 3×3) errs by about 4e-6 of the output's
/// largest magnitude, F(2×2, 3×3) by 5e-7, a plain ordered sum in `f32` by 1.3e-6. Turn it off to
/// compare with another library bit-closer, at about twice the time of VGG-like layers.
pub fn set_winograd(enabled: bool) {
    WINOGRAD.store(if enabled { 1 } else { 2 }, Ordering::Relaxed);
}

/// Tiles transformed together, one per SIMD lane.
const L: usize = 8;

/// A column of lanes: element `k` of eight tiles.
type Lanes<T> = [T; L];

/// F(m×m, 3×3) with `A = m + 2`: its matrices (the definition) and the products with them that
/// the kernels run, written out so that each is a few vector adds and multiplies.
// The matrices are the definition; the kernels run the written-out products, which the tests
// check against them.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) trait Transform<const A: usize, const M: usize> {
    /// `Bᵀ`: the input tile's transform.
    const BT: [[f64; A]; A];
    /// `G`: the kernel's transform.
    const G: [[f64; 3]; A];
    /// `Aᵀ`: the inverse transform to the output tile.
    const AT: [[f64; A]; M];
    /// `y = Bᵀ x`, lane by lane.
    fn bt<T: Float>(x: &[Lanes<T>; A], y: &mut [Lanes<T>; A]);
    /// `y = G x`, lane by lane.
    fn g<T: Float>(x: &[Lanes<T>; 3], y: &mut [Lanes<T>; A]);
    /// `y = Aᵀ x`, lane by lane.
    fn at<T: Float>(x: &[Lanes<T>; A], y: &mut [Lanes<T>; M]);
}

/// F(2×2, 3×3): 16 products per tile where the direct convolution has 36 (interpolation points
/// 0, ±1, ∞).
pub(crate) struct F2;

impl Transform<4, 2> for F2 {
    const BT: [[f64; 4]; 4] =
        [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]];
    const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    const AT: [[f64; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

    #[inline(always)]
    fn bt<T: Float>(x: &[Lanes<T>; 4], y: &mut [Lanes<T>; 4]) {
        for l in 0..L {
            let [x0, x1, x2, x3] = [x[0][l], x[1][l], x[2][l], x[3][l]];
            y[0][l] = x0 - x2;
            y[1][l] = x1 + x2;
            y[2][l] = x2 - x1;
            y[3][l] = x1 - x3;
        }
    }

    #[inline(always)]
    fn g<T: Float>(x: &[Lanes<T>; 3], y: &mut [Lanes<T>; 4]) {
        let half = T::from_f64(0.5);
        for l in 0..L {
            let [x0, x1, x2] = [x[0][l], x[1][l], x[2][l]];
            let even = half * (x0 + x2);
            y[0][l] = x0;
            y[1][l] = even + half * x1;
            y[2][l] = even - half * x1;
            y[3][l] = x2;
        }
    }

    #[inline(always)]
    fn at<T: Float>(x: &[Lanes<T>; 4], y: &mut [Lanes<T>; 2]) {
        for l in 0..L {
            let [x0, x1, x2, x3] = [x[0][l], x[1][l], x[2][l], x[3][l]];
            y[0][l] = x0 + x1 + x2;
            y[1][l] = x1 - x2 - x3;
        }
    }
}

/// F(4×4, 3×3): 36 products per tile where the direct convolution has 144 (interpolation points
/// 0, ±1, ±2, ∞).
pub(crate) struct F4;

impl Transform<6, 4> for F4 {
    const BT: [[f64; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];
    const G: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    const AT: [[f64; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    #[inline(always)]
    fn bt<T: Float>(x: &[Lanes<T>; 6], y: &mut [Lanes<T>; 6]) {
        let (two, four, five) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
        for l in 0..L {
            let [x0, x1, x2, x3, x4, x5] = [x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]];
            let (a, b) = (x4 - four * x2, x3 - four * x1);
            let (c, d) = (x4 - x2, two * (x3 - x1));
            y[0][l] = four * x0 - five * x2 + x4;
            y[1][l] = a + b;
            y[2][l] = a - b;
            y[3][l] = c + d;
            y[4][l] = c - d;
            y[5][l] = four * x1 - five * x3 + x5;
        }
    }

    #[inline(always)]
    fn g<T: Float>(x: &[Lanes<T>; 3], y: &mut [Lanes<T>; 6]) {
        let (q, s, t, tw) =
            (T::from_f64(0.25), T::from_f64(1.0 / 6.0), T::from_f64(1.0 / 24.0), T::from_f64(1.0 / 12.0));
        for l in 0..L {
            let [x0, x1, x2] = [x[0][l], x[1][l], x[2][l]];
            let (even, odd) = (t * x0 + s * x2, tw * x1);
            y[0][l] = q * x0;
            y[1][l] = T::ZERO - s * (x0 + x1 + x2);
            y[2][l] = T::ZERO - s * (x0 - x1 + x2);
            y[3][l] = even + odd;
            y[4][l] = even - odd;
            y[5][l] = x2;
        }
    }

    #[inline(always)]
    fn at<T: Float>(x: &[Lanes<T>; 6], y: &mut [Lanes<T>; 4]) {
        let (two, four, eight) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        for l in 0..L {
            let [x0, x1, x2, x3, x4, x5] = [x[0][l], x[1][l], x[2][l], x[3][l], x[4][l], x[5][l]];
            let (p12, m12, p34, m34) = (x1 + x2, x1 - x2, x3 + x4, x3 - x4);
            y[0][l] = x0 + p12 + p34;
            y[1][l] = m12 + two * m34;
            y[2][l] = p12 + four * p34;
            y[3][l] = m12 + eight * m34 + x5;
        }
    }
}

/// `f · x · fᵀ` of a `K × K` block of lanes into `R × R`, for a 1-D transform `f` (`K` → `R`):
/// the columns first, then the rows.
#[inline(always)]
fn both<T: Float, const R: usize, const K: usize>(
    f: fn(&[Lanes<T>; K], &mut [Lanes<T>; R]),
    x: &[[Lanes<T>; K]; K],
    y: &mut [[Lanes<T>; R]; R],
) {
    let mut t = [[[T::ZERO; L]; K]; R];
    let (mut col, mut out) = ([[T::ZERO; L]; K], [[T::ZERO; L]; R]);
    for j in 0..K {
        for k in 0..K {
            col[k] = x[k][j];
        }
        f(&col, &mut out);
        for i in 0..R {
            t[i][j] = out[i];
        }
    }
    for (ti, yi) in t.iter().zip(y.iter_mut()) {
        f(ti, yi);
    }
}

/// A convolution's shape as the routine sees it: `n` images of `cin` planes `h × w` in, `cout`
/// planes `oh × ow` out, with `(ph, pw)` zero rows and columns around the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Plan {
    fn oh(&self) -> usize {
        self.h + 2 * self.ph - 2
    }

    fn ow(&self) -> usize {
        self.w + 2 * self.pw - 2
    }

    /// The tiles of side `m` that cover the output of all the images.
    fn tiles(&self, m: usize) -> usize {
        self.n * self.oh().div_ceil(m) * self.ow().div_ceil(m)
    }

    /// The variant that pays on this shape, if any: F(4×4, 3×3) when there are tiles enough to
    /// amortise its kernels (four times the weights' size, transformed on each call) and its
    /// wider transforms, F(2×2, 3×3) on smaller planes, and none (im2col and gemm) below that or
    /// with few channels, where the transforms cost more than they save (measured on VGG16's and
    /// ResNet-50's layers at batch 1 and 8).
    pub(crate) fn variant(&self) -> Option<Variant> {
        if self.cin < 16 || self.cout < 16 {
            None
        } else if self.tiles(4) >= 128 {
            Some(Variant::F4)
        } else if self.tiles(2) >= 128 {
            Some(Variant::F2)
        } else {
            None
        }
    }
}

/// Which F(m×m, 3×3) a convolution runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    F2,
    F4,
}

/// The convolution of `x` (`[n, cin, h, w]`, with the plan's padding) with the 3×3 kernels `w`
/// (`[cout, cin, 3, 3]`; with `swap`, `w` is `[cin, cout, 3, 3]` and the kernels are its flipped
/// transposes, as the input gradient needs), plus `bias`: `[n, cout, oh, ow]`.
/// The transformed kernels live in a buffer of the calling thread, reused across calls.
pub(crate) fn convolve<T: Float>(
    p: Plan,
    variant: Variant,
    threads: usize,
    x: Input<'_, T>,
    w: &[T],
    swap: bool,
    bias: Option<&[T]>,
) -> Result<Vec<T>> {
    fn go<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
        p: Plan,
        threads: usize,
        x: Input<'_, T>,
        w: &[T],
        swap: bool,
        bias: Option<&[T]>,
    ) -> Result<Vec<T>> {
        T::with_scratch(A * A * p.cout * p.cin, |u| {
            let dims = if swap { (p.cin, p.cout) } else { (p.cout, p.cin) };
            kernels::<T, A, M, W>(w, dims, swap, u)?;
            conv::<T, A, M, W>(p, threads, x, u, bias)
        })
    }
    match variant {
        Variant::F2 => go::<T, 4, 2, F2>(p, threads, x, w, swap, bias),
        Variant::F4 => go::<T, 6, 4, F4>(p, threads, x, w, swap, bias),
    }
}

/// A convolution's input as [`convolve`] reads it: `x`, or, with a gate `(r, mode)`, the
/// gradient a ReLU with the rule `mode` passes back for the output gradient `x` where the
/// ReLU's output is `r` (of `x`'s layout): the input gradient of a convolution followed by a
/// ReLU reads its output gradient through the ReLU's rule as it copies it, with no pass of its
/// own.
#[derive(Clone, Copy)]
pub(crate) struct Input<'a, T> {
    pub x: &'a [T],
    pub gate: Option<(&'a [T], ReluMode)>,
}

impl<'a, T> Input<'a, T> {
    /// `x` as it is.
    pub(crate) fn plain(x: &'a [T]) -> Self {
        Input { x, gate: None }
    }
}

/// Runs `f` compiled for AVX2 and FMA when the CPU has them, as it is otherwise; `f` and what
/// it calls must be `#[inline(always)]` for the lanes to become vector registers.
macro_rules! simd {
    ($f:ident :: <$($t:ty),*> ($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { avx2::$f::<$($t),*>($($arg),*) }
            } else {
                $f::<$($t),*>($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f::<$($t),*>($($arg),*)
        }
    }};
}

/// The kernels of this module compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    /// [`super::kernels_into`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernels_into<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
        w: &[T],
        dims: (usize, usize),
        swap: bool,
        o: usize,
        out: &mut [T],
    ) {
        super::kernels_into::<T, A, M, W>(w, dims, swap, o, out)
    }

    /// [`super::run_job`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_job<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
        job: &Job,
        xp: Input<'_, T>,
        u: &[T],
        bias: Option<&[T]>,
        dst: &mut [&mut [MaybeUninit<T>]],
        buf: &mut [T],
    ) -> Result<()> {
        super::run_job::<T, A, M, W>(job, xp, u, bias, dst, buf)
    }
}

/// The transformed kernels `U[o][ξ][i] = (G g Gᵀ)_ξ` into `u` (`A² · C_out · C_in` elements),
/// for `w` in PyTorch's layout `[C_out, C_in, 3, 3]`: with `swap`, those of the input gradient
/// (`o` an input channel, `i` an output channel, `g` the kernel flipped in both axes), otherwise
/// those of the forward pass.
pub(crate) fn kernels<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
    w: &[T],
    (cout, cin): (usize, usize),
    swap: bool,
    u: &mut [T],
) -> Result<()> {
    if w.len() != cout * cin * 9 || u.len() != A * A * cout * cin {
        candle_core::bail!(
            "winograd kernels: {} weights and {} slots for {cout} × {cin} 3×3 kernels",
            w.len(),
            u.len()
        );
    }
    let per = A * A * if swap { cout } else { cin };
    threads::chunks_mut(u, per, u.len() * 8, |o, chunk| {
        simd!(kernels_into::<T, A, M, W>(w, (cout, cin), swap, o, chunk));
        Ok(())
    })
}

/// `U[o]` of [`kernels`] into `out` (`A² · ins` elements).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn kernels_into<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
    w: &[T],
    (cout, cin): (usize, usize),
    swap: bool,
    o: usize,
    out: &mut [T],
) {
    let ins = if swap { cout } else { cin };
    for i0 in (0..ins).step_by(L) {
        let lanes = (ins - i0).min(L);
        let mut g = [[[T::ZERO; L]; 3]; 3];
        for l in 0..lanes {
            let (co, ci) = if swap { (i0 + l, o) } else { (o, i0 + l) };
            let k = &w[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
            for a in 0..3 {
                for b in 0..3 {
                    g[a][b][l] = if swap { k[(2 - a) * 3 + 2 - b] } else { k[a * 3 + b] };
                }
            }
        }
        // G g Gᵀ: the columns through G, then the rows.
        let mut t = [[[T::ZERO; L]; 3]; A];
        let (mut col, mut tcol) = ([[T::ZERO; L]; 3], [[T::ZERO; L]; A]);
        for j in 0..3 {
            for k in 0..3 {
                col[k] = g[k][j];
            }
            W::g(&col, &mut tcol);
            for i in 0..A {
                t[i][j] = tcol[i];
            }
        }
        for (i, ti) in t.iter().enumerate() {
            W::g(ti, &mut tcol);
            for (j, v) in tcol.iter().enumerate() {
                let at = (i * A + j) * ins + i0;
                put(&mut out[at..at + lanes], v);
            }
        }
    }
}

/// The first `dst.len()` (at most [`L`]) lanes of `v` into `dst`, without a call into the C
/// library when all lanes are stored.
#[inline(always)]
fn put<T: Float>(dst: &mut [T], v: &Lanes<T>) {
    if let Ok(d) = <&mut Lanes<T>>::try_from(&mut *dst) {
        *d = *v;
    } else {
        for (d, v) in dst.iter_mut().zip(v) {
            *d = *v;
        }
    }
}

/// The first `src.len()` (at most [`L`]) lanes of `v` from `src`, the others 0.
#[inline(always)]
fn get<T: Float>(src: &[T], v: &mut Lanes<T>) {
    if let Ok(s) = <&Lanes<T>>::try_from(src) {
        *v = *s;
    } else {
        *v = [T::ZERO; L];
        for (v, s) in v.iter_mut().zip(src) {
            *v = *s;
        }
    }
}

/// The convolution of `x` (`[n, cin, h, w]`) with the transformed kernels `u` of [`kernels`]
/// (`cout` of them over `cin` channels), plus `bias` when given: `[n, cout, oh, ow]`, split for
/// `threads` threads.
///
pub(crate) fn conv<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
    p: Plan,
    threads: usize,
    x: Input<'_, T>,
    u: &[T],
    bias: Option<&[T]>,
) -> Result<Vec<T>> {
    let (oh, ow) = (p.oh(), p.ow());
    let (th, tw) = (oh.div_ceil(M), ow.div_ceil(M));
    let wp = tw * M + 2;
    let gate_fits = x.gate.is_none_or(|(r, _)| r.len() == x.x.len());
    if x.x.len() != p.n * p.cin * p.h * p.w || u.len() != p.cout * A * A * p.cin || !gate_fits {
        candle_core::bail!("winograd conv: operands do not fit {p:?}");
    }
    let total = p.n * p.cout * oh * ow;
    if total == 0 {
        return Ok(Vec::new());
    }
    // Not zeroed first: the jobs' tiles write every output element (the bands cover every row of
    // every image, the blocks every channel, a band's tiles every row and column of it).
    let mut y: Vec<T> = Vec::with_capacity(total);
    // Bands of tile rows (of every image in turn) with at most 256 tiles each, fewer when the
    // transformed input and output of a band would pass 4 Mi elements, and at least two bands
    // per thread where there are rows enough; then blocks of output channels when the bands are
    // too few to keep every thread busy (each block transforms the band's input again).
    let rows = p.n * th;
    let per_tile = A * A * (p.cin + p.cout);
    let want = ((1usize << 22) / per_tile.max(1)).clamp(L, 256);
    let rows_per_band = want.div_ceil(tw).min(rows.div_ceil(2 * threads.max(1))).clamp(1, rows);
    let bands: Vec<(usize, usize)> =
        (0..rows).step_by(rows_per_band).map(|r| (r, (r + rows_per_band).min(rows))).collect();
    let parts = if bands.len() >= threads || threads <= 1 {
        1
    } else {
        (2 * threads).div_ceil(bands.len()).min(p.cout.div_ceil(16))
    };
    let step = p.cout.div_ceil(parts.max(1)).max(1);
    let blocks: Vec<(usize, usize)> = (0..p.cout).step_by(step).map(|c| (c, (c + step).min(p.cout))).collect();
    let jobs: Vec<((usize, usize), (usize, usize))> =
        bands.iter().flat_map(|&b| blocks.iter().map(move |&c| (b, c))).collect();
    let out = SharedOut::uninit(&mut y.spare_capacity_mut()[..total]);
    let work = rows * tw * A * A * p.cin * p.cout;
    threads::run(jobs.len(), work, |j| {
        let ((r0, r1), (c0, c1)) = jobs[j];
        let mut job = Job { p, wp, ow, chans: (c0, c1), tiles: Vec::new(), images: Vec::new() };
        // The band's tiles, and its output rows: for each image it touches, for each channel
        // of the block.
        let mut dst = Vec::with_capacity((r1 - r0) * (c1 - c0));
        let mut slab = 0;
        for img in r0 / th..=(r1 - 1) / th {
            let (first, last) = (r0.max(img * th) - img * th, r1.min((img + 1) * th) - img * th);
            let (lo, hi) = (first * M, (last * M).min(oh));
            let image = Segment { image: img, first_row: first * M, rows: (last - first) * M + 2, at: slab };
            for ty in first..last {
                for tx in 0..tw {
                    job.tiles.push(Tile {
                        input: image.at + ((ty - first) * M * wp + tx * M) * L,
                        image: job.images.len(),
                        row: ty * M - lo,
                        col: tx * M,
                    });
                }
            }
            slab += p.cin.div_ceil(L) * image.rows * wp * L;
            job.images.push((image, hi - lo));
            for co in c0..c1 {
                // SAFETY: this job alone writes output rows `lo..hi` of channel `co` of image
                // `img`: the bands share no tile rows, the blocks no channels.
                dst.push(unsafe { out.slice_uninit(((img * p.cout + co) * oh + lo) * ow, (hi - lo) * ow)? });
            }
        }
        let bias = bias.map(|b| &b[c0..c1]);
        let len = slab + A * A * (p.cin + (c1 - c0)) * job.tiles.len();
        T::with_scratch(len, |buf| simd!(run_job::<T, A, M, W>(&job, x, u, bias, &mut dst, buf)))
    })?;
    // SAFETY: every job succeeded, and together they wrote all `total` elements (see above).
    unsafe { y.set_len(total) };
    Ok(y)
}

/// The input rows of one image that a job's tiles read, copied with their zero padding into the
/// job's buffer: padded rows `first_row..first_row + rows` (input row `first_row − ph` first),
/// each `wp` wide, in blocks of [`L`] channels with the block's channels innermost
/// (`[block][row][column][channel]`, channels past the last zero), from element `at` of the
/// buffer: a tile's element for a block of channels is one vector load.
#[derive(Clone, Copy)]
struct Segment {
    image: usize,
    first_row: usize,
    rows: usize,
    at: usize,
}

/// One tile of a job: where its input tile starts in the job's padded copy of the first block of
/// channels (see [`Segment`]), and where its output tile starts in the job's band of the image's
/// output.
#[derive(Clone, Copy)]
struct Tile {
    input: usize,
    image: usize,
    row: usize,
    col: usize,
}

/// One job of [`conv`]: its tiles, the output rows of each image they cover, and the output
/// channels `chans`.
struct Job {
    p: Plan,
    wp: usize,
    ow: usize,
    chans: (usize, usize),
    tiles: Vec<Tile>,
    /// Each image the job touches: its padded input rows and the rows of its output band.
    images: Vec<(Segment, usize)>,
}

/// Transforms the job's input tiles, multiplies them by the kernels and writes the output tiles:
/// `dst[i · channels + o]` is the band of image `i` (of the job's) and channel `chans.0 + o`;
/// `buf` holds the padded input rows (the segments') and the transformed tiles
/// (`A² · (cin + channels) · tiles` elements).
#[inline(always)]
fn run_job<T: Float, const A: usize, const M: usize, W: Transform<A, M>>(
    job: &Job,
    Input { x, gate }: Input<'_, T>,
    u: &[T],
    bias: Option<&[T]>,
    dst: &mut [&mut [MaybeUninit<T>]],
    buf: &mut [T],
) -> Result<()> {
    let Job { p, wp, ow, chans: (c0, c1), ref tiles, ref images } = *job;
    let cin = p.cin;
    let (cr, nt) = (c1 - c0, tiles.len());
    let blocks = cin.div_ceil(L);
    let slab = images.last().map_or(0, |(s, _)| s.at + blocks * s.rows * wp * L);
    let (vl, ml) = (A * A * cin * nt, A * A * cr * nt);
    if buf.len() < slab + vl + ml {
        candle_core::bail!("winograd conv: a scratch buffer of {} elements for {}", buf.len(), slab + vl + ml);
    }
    {
        let (xp, rest) = buf.split_at_mut(slab);
        // The input rows the tiles read, zero-padded, channels innermost in blocks of `L`.
        for (seg, _) in images {
            let block = seg.rows * wp * L;
            for cb in 0..blocks {
                let dst = &mut xp[seg.at + cb * block..seg.at + (cb + 1) * block];
                for (r, row) in dst.chunks_exact_mut(wp * L).enumerate() {
                    let iy = (seg.first_row + r).checked_sub(p.ph).filter(|&iy| iy < p.h);
                    let Some(iy) = iy else {
                        row.fill(T::ZERO);
                        continue;
                    };
                    row[..p.pw * L].fill(T::ZERO);
                    row[(p.pw + p.w) * L..].fill(T::ZERO);
                    for l in 0..L {
                        let c = cb * L + l;
                        if c >= cin {
                            for ix in 0..p.w {
                                row[(p.pw + ix) * L + l] = T::ZERO;
                            }
                            continue;
                        }
                        let at = ((seg.image * cin + c) * p.h + iy) * p.w;
                        let src = &x[at..at + p.w];
                        match gate {
                            None => {
                                for (ix, &v) in src.iter().enumerate() {
                                    row[(p.pw + ix) * L + l] = v;
                                }
                            }
                            Some((r, mode)) => {
                                for (ix, (&v, &r)) in src.iter().zip(&r[at..at + p.w]).enumerate() {
                                    row[(p.pw + ix) * L + l] = backward_rule(mode, r, v);
                                }
                            }
                        }
                    }
                }
            }
        }
        let xp = &*xp;
        let (v, mm) = rest.split_at_mut(vl);
        // The input tiles, transformed, a block of `L` channels at a time: V[t][ξ][c], so that a
        // tile's stores stay within a few kilobytes.
        let mut d = [[[T::ZERO; L]; A]; A];
        let mut tv = [[[T::ZERO; L]; A]; A];
        for (t, tile) in tiles.iter().enumerate() {
            let block = images[tile.image].0.rows * wp * L;
            for cb in 0..blocks {
                let at = tile.input + cb * block;
                for (i, di) in d.iter_mut().enumerate() {
                    let row = &xp[at + i * wp * L..at + (i * wp + A) * L];
                    for (dij, px) in di.iter_mut().zip(row.chunks_exact(L)) {
                        get(px, dij);
                    }
                }
                both(W::bt, &d, &mut tv);
                let lanes = (cin - cb * L).min(L);
                for (xi, vals) in tv.iter().flatten().enumerate() {
                    let at = (t * A * A + xi) * cin + cb * L;
                    put(&mut v[at..at + lanes], vals);
                }
            }
        }
        // The products: M_ξ = U_ξ[c0..c1] · V_ξ (V_ξ's column `t` at `V[t][ξ]`).
        for xi in 0..A * A {
            let a = Mat { data: &u[(c0 * A * A + xi) * cin..], rs: A * A * cin, cs: 1 };
            let b = Mat { data: &v[xi * cin..], rs: 1, cs: A * A * cin };
            matmul_serial(cr, nt, cin, &mut mm[xi * cr * nt..(xi + 1) * cr * nt], nt, false, a, b)?;
        }
        // The output tiles: Aᵀ M A (+ bias) into the bands.
        let mut m = [[[T::ZERO; L]; A]; A];
        let mut y = [[[T::ZERO; L]; M]; M];
        for o in 0..cr {
            let b = bias.map_or(T::ZERO, |b| b[o]);
            for (t0, group) in tiles.chunks(L).enumerate().map(|(g, ts)| (g * L, ts)) {
                let lanes = group.len();
                for (xi, vals) in m.iter_mut().flatten().enumerate() {
                    let at = (xi * cr + o) * nt + t0;
                    get(&mm[at..at + lanes], vals);
                }
                both(W::at, &m, &mut y);
                for (l, tile) in group.iter().enumerate() {
                    let (band, rows) = (&mut dst[tile.image * cr + o], images[tile.image].1);
                    for (i, yi) in y.iter().enumerate().take(rows.saturating_sub(tile.row)) {
                        let row = &mut band[(tile.row + i) * ow..(tile.row + i + 1) * ow];
                        for (j, yij) in yi.iter().enumerate().take(ow.saturating_sub(tile.col)) {
                            row[tile.col + j].write(yij[l] + b);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| ((i as f64 + 1.0) * seed).sin()).collect()
    }

    /// The definition: a 3×3 cross-correlation with zero padding, each output summed channel by
    /// channel in `T` (plus `b` when given).
    fn naive<T: Float>(p: Plan, x: &[T], w: &[T], b: Option<&[T]>) -> Vec<T> {
        let (oh, ow) = (p.oh(), p.ow());
        let mut y = vec![T::ZERO; p.n * p.cout * oh * ow];
        for n in 0..p.n {
            for co in 0..p.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.map_or(T::ZERO, |b| b[co]);
                        for ci in 0..p.cin {
                            for a in 0..3 {
                                for c in 0..3 {
                                    let (iy, ix) =
                                        ((oy + a) as isize - p.ph as isize, (ox + c) as isize - p.pw as isize);
                                    if iy < 0 || ix < 0 || iy >= p.h as isize || ix >= p.w as isize {
                                        continue;
                                    }
                                    acc += w[((co * p.cin + ci) * 3 + a) * 3 + c]
                                        * x[((n * p.cin + ci) * p.h + iy as usize) * p.w + ix as usize];
                                }
                            }
                        }
                        y[((n * p.cout + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn check<const A: usize, const M: usize, W: Transform<A, M>>(tol: f64) {
        for (n, cin, h, w, cout, ph, pw) in [
            (1, 3, 7, 9, 5, 1, 1),
            (2, 9, 13, 6, 17, 0, 2),
            (1, 1, 3, 3, 1, 0, 0),
            (3, 20, 5, 11, 10, 2, 1),
            (1, 4, 1, 1, 3, 1, 1),
        ] {
            let p = Plan { n, cin, h, w, cout, ph, pw };
            let x = data(n * cin * h * w, 0.37);
            let wt = data(cout * cin * 9, 0.71);
            let b = data(cout, 1.3);
            let want = naive(p, &x, &wt, Some(&b));
            let mut u = vec![0.0; A * A * cout * cin];
            kernels::<f64, A, M, W>(&wt, (cout, cin), false, &mut u).unwrap();
            for threads in [1, 2, 5] {
                let got = conv::<f64, A, M, W>(p, threads, Input::plain(&x), &u, Some(&b)).unwrap();
                assert_eq!(got.len(), want.len());
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!((g - e).abs() < tol, "F({M}) {p:?} threads {threads}: y[{i}] {g} vs {e}");
                }
            }
            // The swapped kernels give the input gradient: the convolution of the output
            // gradient with padding 2 − p is Wᵀ applied to it.
            let (oh, ow) = (p.oh(), p.ow());
            let dy = data(n * cout * oh * ow, 0.53);
            let mut dx = vec![0.0; x.len()];
            for ni in 0..n {
                for co in 0..cout {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let g = dy[((ni * cout + co) * oh + oy) * ow + ox];
                            for ci in 0..cin {
                                for a in 0..3 {
                                    for c in 0..3 {
                                        let (iy, ix) =
                                            ((oy + a) as isize - ph as isize, (ox + c) as isize - pw as isize);
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                            continue;
                                        }
                                        dx[((ni * cin + ci) * h + iy as usize) * w + ix as usize] +=
                                            wt[((co * cin + ci) * 3 + a) * 3 + c] * g;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let mut us = vec![0.0; A * A * cout * cin];
            kernels::<f64, A, M, W>(&wt, (cout, cin), true, &mut us).unwrap();
            let q = Plan { n, cin: cout, h: oh, w: ow, cout: cin, ph: 2 - ph, pw: 2 - pw };
            let got = conv::<f64, A, M, W>(q, 2, Input::plain(&dy), &us, None).unwrap();
            for (i, (g, e)) in got.iter().zip(&dx).enumerate() {
                assert!((g - e).abs() < tol, "F({M}) {p:?}: dx[{i}] {g} vs {e}");
            }
        }
    }

    /// The written-out transforms are the products with the matrices.
    fn transforms_are_the_matrices<const A: usize, const M: usize, W: Transform<A, M>>() {
        fn lanes<const K: usize>(seed: f64) -> [Lanes<f64>; K] {
            std::array::from_fn(|k| std::array::from_fn(|l| ((k * L + l) as f64 * seed + 0.3).sin()))
        }
        fn product<const R: usize, const K: usize>(c: &[[f64; K]; R], x: &[Lanes<f64>; K]) -> [Lanes<f64>; R] {
            std::array::from_fn(|i| std::array::from_fn(|l| (0..K).map(|k| c[i][k] * x[k][l]).sum()))
        }
        fn close<const R: usize>(a: &[Lanes<f64>; R], b: &[Lanes<f64>; R], what: &str) {
            for (u, v) in a.iter().flatten().zip(b.iter().flatten()) {
                assert!((u - v).abs() < 1e-12, "{what}: {u} vs {v}");
            }
        }
        let (x, x3) = (lanes::<A>(0.77), lanes::<3>(1.9));
        let (mut y, mut ym) = ([[0.0; L]; A], [[0.0; L]; M]);
        W::bt(&x, &mut y);
        close(&y, &product(&W::BT, &x), "Bᵀ");
        W::g(&x3, &mut y);
        close(&y, &product(&W::G, &x3), "G");
        W::at(&x, &mut ym);
        close(&ym, &product(&W::AT, &x), "Aᵀ");
    }

    #[test]
    fn written_out_transforms_are_the_matrices() {
        transforms_are_the_matrices::<4, 2, F2>();
        transforms_are_the_matrices::<6, 4, F4>();
    }

    #[test]
    fn f2_gives_the_definition() {
        check::<4, 2, F2>(1e-11);
    }

    #[test]
    fn f4_gives_the_definition() {
        check::<6, 4, F4>(1e-11);
    }

    /// In `f32`, each variant stays within a few float32 roundings of the exact convolution on a
    /// layer of a real network's scale (256 channels of post-ReLU activations, He-initialised
    /// kernels): summing the 2304 products of an output in order errs by 1.3e-6 of the output's
    /// largest magnitude, F(2×2, 3×3) by 5e-7 and F(4×4, 3×3) by 4e-6; each is held to 4 times
    /// the ordered sum's error.
    #[test]
    fn f32_error_stays_near_float32_rounding() {
        let p = Plan { n: 1, cin: 256, h: 20, w: 20, cout: 24, ph: 1, pw: 1 };
        let x: Vec<f64> = data(p.n * p.cin * p.h * p.w, 0.37).iter().map(|v| v.max(0.0)).collect();
        let scale = (2.0 / (9.0 * p.cin as f64)).sqrt() * 3f64.sqrt();
        let wt: Vec<f64> = data(p.cout * p.cin * 9, 0.71).iter().map(|v| v * scale).collect();
        let b = vec![0.0; p.cout];
        let want = naive(p, &x, &wt, Some(&b));
        let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (x32, w32): (Vec<f32>, Vec<f32>) =
            (x.iter().map(|&v| v as f32).collect(), wt.iter().map(|&v| v as f32).collect());
        let direct = naive(p, &x32, &w32, None);
        let direct_err = direct.iter().zip(&want).fold(0.0f64, |m, (&g, &e)| m.max((g as f64 - e).abs())) / peak;
        for variant in [Variant::F2, Variant::F4] {
            let got = convolve(p, variant, 2, Input::plain(&x32), &w32, false, None).unwrap();
            let err = got.iter().zip(&want).fold(0.0f64, |m, (&g, &e)| m.max((g as f64 - e).abs())) / peak;
            assert!(
                err < 4.0 * direct_err,
                "{variant:?}: largest error {err:e} of the output's peak, the ordered sum's {direct_err:e}"
            );
        }
    }
}
