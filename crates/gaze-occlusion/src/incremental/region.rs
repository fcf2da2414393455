//! Regions of a feature map and how they travel through a stage.

use candle_core::Tensor;
use gaze_core::Result;
use gaze_engine::spatial::Geometry;

/// A half-open interval `start..end` of positions along one axis.
///
/// An input window may reach outside the map (`start < 0` or `end > len`) where the stage pads;
/// an empty span has `end <= start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: isize,
    pub end: isize,
}

impl Span {
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    pub fn new(start: isize, end: isize) -> Self {
        Span { start, end }
    }

    /// `0..len`.
    pub fn whole(len: usize) -> Self {
        Span::new(0, len as isize)
    }

    pub fn len(&self) -> usize {
        (self.end - self.start).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The positions in both spans.
    pub fn intersect(self, other: Span) -> Span {
        let start = self.start.max(other.start);
        Span::new(start, self.end.min(other.end).max(start))
    }

    /// The smallest span holding both.
    pub fn hull(self, other: Span) -> Span {
        match (self.is_empty(), other.is_empty()) {
            (true, _) => other,
            (_, true) => self,
            _ => Span::new(self.start.min(other.start), self.end.max(other.end)),
        }
    }
}

/// A rectangle of a feature map: rows, then columns.
pub type Rect = [Span; 2];

/// A sliding window along one axis: kernel, stride, padding and dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AxisWindow {
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub d: usize,
}

impl AxisWindow {
    /// The window of `geometry` along axis `a` (0 for rows, 1 for columns).
    pub fn of(geometry: &Geometry, a: usize) -> Self {
        let pick = |v: (usize, usize)| if a == 0 { v.0 } else { v.1 };
        AxisWindow {
            k: pick(geometry.kernel),
            s: pick(geometry.stride),
            p: pick(geometry.padding),
            d: pick(geometry.dilation),
        }
    }

    fn reach(&self) -> isize {
        ((self.k - 1) * self.d) as isize
    }

    /// The outputs in `0..out_len` whose window reads any input in `changed`.
    ///
    /// Output `o` reads inputs `o·s − p + j·d` for `j < k`, so it is affected when
    /// `o·s − p ≤ changed.end − 1` and `o·s − p + (k − 1)·d ≥ changed.start`.
    /// With dilation the affected outputs may skip some positions; the span covers them all.
    pub fn affected(&self, changed: Span, out_len: usize) -> Span {
        if changed.is_empty() {
            return Span::EMPTY;
        }
        let (s, p) = (self.s as isize, self.p as isize);
        let lo = div_ceil(changed.start + p - self.reach(), s).max(0);
        let hi = ((changed.end - 1 + p).div_euclid(s) + 1).min(out_len as isize);
        if hi <= lo {
            Span::EMPTY
        } else {
            Span::new(lo, hi)
        }
    }

    /// The inputs that outputs `out` read, in the coordinates of the unpadded input (reaching
    /// outside it where the stage pads).
    pub fn needed(&self, out: Span) -> Span {
        let (s, p) = (self.s as isize, self.p as isize);
        Span::new(out.start * s - p, (out.end - 1) * s - p + self.reach() + 1)
    }
}

fn div_ceil(a: isize, b: isize) -> isize {
    -((-a).div_euclid(b))
}

/// Places a span of length `len` inside `0..size` so that it holds `exact` (or at 0 when `exact` is
/// empty): batched crops all have the same size, so a region near the far edge is moved inwards.
pub(crate) fn place(exact: Span, len: usize, size: usize) -> Span {
    let start = if exact.is_empty() { 0 } else { exact.start.min((size - len) as isize).max(0) };
    Span::new(start, start + len as isize)
}

/// `base` `[C, h, w]` with `src` `[C, sh, sw]` written at `(top, left)`.
pub(crate) fn paste(base: &Tensor, src: &Tensor, top: usize, left: usize) -> Result<Tensor> {
    let (_, h, w) = base.dims3()?;
    let (_, sh, sw) = src.dims3()?;
    if sh == h && sw == w {
        return Ok(src.clone());
    }
    let mut band = Vec::with_capacity(3);
    let rows = base.narrow(1, top, sh)?;
    if left > 0 {
        band.push(rows.narrow(2, 0, left)?);
    }
    band.push(src.clone());
    if left + sw < w {
        band.push(rows.narrow(2, left + sw, w - left - sw)?);
    }
    let band = if band.len() == 1 { src.clone() } else { Tensor::cat(&band, 2)? };
    let mut parts = Vec::with_capacity(3);
    if top > 0 {
        parts.push(base.narrow(1, 0, top)?);
    }
    parts.push(band);
    if top + sh < h {
        parts.push(base.narrow(1, top + sh, h - top - sh)?);
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(&parts, 1)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const CONV3: AxisWindow = AxisWindow { k: 3, s: 1, p: 1, d: 1 };
    const POOL2: AxisWindow = AxisWindow { k: 2, s: 2, p: 0, d: 1 };

    #[test]
    fn regions_grow_through_convolutions_and_shrink_through_pools() {
        assert_eq!(CONV3.affected(Span::new(4, 8), 16), Span::new(3, 9));
        assert_eq!(CONV3.affected(Span::new(0, 2), 16), Span::new(0, 3));
        assert_eq!(CONV3.affected(Span::new(14, 16), 16), Span::new(13, 16));
        assert_eq!(POOL2.affected(Span::new(3, 8), 8), Span::new(1, 4));
        assert_eq!(CONV3.needed(Span::new(0, 3)), Span::new(-1, 4));
        assert_eq!(POOL2.needed(Span::new(1, 4)), Span::new(2, 8));
        // A 1×1 convolution with stride 2 ignores odd positions.
        let skip = AxisWindow { k: 1, s: 2, p: 0, d: 1 };
        assert!(skip.affected(Span::new(3, 4), 4).is_empty());
        // Dilation widens the reach.
        let dil = AxisWindow { k: 3, s: 1, p: 2, d: 2 };
        assert_eq!(dil.affected(Span::new(5, 6), 10), Span::new(3, 8));
        assert_eq!(dil.needed(Span::new(3, 8)), Span::new(1, 10));
    }

    #[test]
    fn affected_outputs_are_exactly_those_reading_the_change() {
        for w in [CONV3, POOL2, AxisWindow { k: 3, s: 2, p: 1, d: 1 }, AxisWindow { k: 3, s: 1, p: 2, d: 2 }] {
            let n_in = 11usize;
            let n_out = (n_in + 2 * w.p - (w.k - 1) * w.d - 1) / w.s + 1;
            for a in 0..n_in as isize {
                for b in a + 1..=n_in as isize {
                    let got = w.affected(Span::new(a, b), n_out);
                    let reads = |o: isize| {
                        (0..w.k as isize).any(|j| {
                            let i = o * w.s as isize - w.p as isize + j * w.d as isize;
                            i >= a && i < b
                        })
                    };
                    let truth: Vec<isize> = (0..n_out as isize).filter(|&o| reads(o)).collect();
                    if truth.is_empty() {
                        assert!(got.is_empty() || w.d > 1, "{w:?} {a}..{b}");
                    } else if w.d == 1 {
                        assert_eq!((got.start, got.end - 1), (truth[0], *truth.last().unwrap()), "{w:?} {a}..{b}");
                    } else {
                        // With gaps in the kernel the span may hold outputs that read nothing changed.
                        assert!(got.start <= truth[0] && got.end > *truth.last().unwrap(), "{w:?} {a}..{b}");
                    }
                }
            }
        }
    }

    #[test]
    fn placement_keeps_the_region_inside() {
        assert_eq!(place(Span::new(6, 8), 4, 8), Span::new(4, 8));
        assert_eq!(place(Span::new(1, 3), 4, 8), Span::new(1, 5));
        assert_eq!(place(Span::EMPTY, 4, 8), Span::new(0, 4));
    }

    #[test]
    fn paste_assembles_tiles() {
        let d = Device::Cpu;
        let base = Tensor::zeros((1, 3, 4), candle_core::DType::F32, &d).unwrap();
        let src = Tensor::ones((1, 2, 2), candle_core::DType::F32, &d).unwrap();
        let out = paste(&base, &src, 1, 1).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(out[0], vec![vec![0., 0., 0., 0.], vec![0., 1., 1., 0.], vec![0., 1., 1., 0.]]);
    }
}
