//! Where the occluding windows go: Captum's sliding windows and tf-explain's patch grid.

use gaze_core::{Error, Result};

/// One occluding window: a half-open box of channels, rows and columns of the input, already
/// clipped to the input's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patch {
    /// `[channel, row, column]` of the first element covered.
    pub start: [usize; 3],
    /// `[channel, row, column]` one past the last element covered.
    pub end: [usize; 3],
}

impl Patch {
    /// The number of elements along axis `a` (0 channels, 1 rows, 2 columns).
    pub fn len(&self, a: usize) -> usize {
        self.end[a] - self.start[a]
    }

    /// Whether the patch covers nothing (never true for the patches this module makes).
    pub fn is_empty(&self) -> bool {
        (0..3).any(|a| self.len(a) == 0)
    }

    /// Whether element `(c, h, w)` is covered.
    pub fn contains(&self, c: usize, h: usize, w: usize) -> bool {
        [c, h, w].iter().enumerate().all(|(a, &i)| i >= self.start[a] && i < self.end[a])
    }
}

/// All the windows of one image, in row-major order of their grid positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchGrid {
    /// The number of window positions along channels, rows and columns.
    pub counts: [usize; 3],
    /// The windows, channel-major, then row-major: window `(i, j, k)` is at
    /// `(i · counts[1] + j) · counts[2] + k`.
    pub patches: Vec<Patch>,
}

impl PatchGrid {
    pub fn len(&self) -> usize {
        self.patches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }
}

const AXES: [&str; 3] = ["channels", "height", "width"];

/// Captum's `Occlusion` windows for an input of shape `[C, H, W]`.
///
/// Along each axis of length `D`, with window `w` and stride `s`, there are
/// `ceil((D − w) / s) + 1` windows starting at `0, s, 2s, …`; when `s` does not divide `D − w`, the
/// last one starts past `D − w` and is cut off at the edge (Captum pads its window tensor by a
/// negative amount there), so it is smaller than the others.
/// As in Captum, a window larger than the input is an error, and so is a stride larger than the
/// window along an axis the window does not fill (some elements would never be covered).
pub fn captum_patches(shape: [usize; 3], window: [usize; 3], stride: [usize; 3]) -> Result<PatchGrid> {
    let mut starts: [Vec<usize>; 3] = Default::default();
    for a in 0..3 {
        let (d, w, s) = (shape[a], window[a], stride[a]);
        if w == 0 || w > d {
            return Err(Error::InvalidOption {
                option: format!("occlusion window ({})", AXES[a]),
                value: w.to_string(),
                expected: format!("a size in 1..={d} (the input's {})", AXES[a]),
            });
        }
        if s == 0 || (w < d && s > w) {
            return Err(Error::InvalidOption {
                option: format!("occlusion stride ({})", AXES[a]),
                value: s.to_string(),
                expected: format!("a step in 1..={w} (at most the window, so that every element is covered)"),
            });
        }
        let count = (d - w).div_ceil(s) + 1;
        starts[a] = (0..count).map(|k| k * s).collect();
    }
    let mut patches = Vec::with_capacity(starts.iter().map(Vec::len).product());
    for &c in &starts[0] {
        for &h in &starts[1] {
            for &w in &starts[2] {
                let start = [c, h, w];
                let end = [0, 1, 2].map(|a| (start[a] + window[a]).min(shape[a]));
                patches.push(Patch { start, end });
            }
        }
    }
    Ok(PatchGrid { counts: [starts[0].len(), starts[1].len(), starts[2].len()], patches })
}

/// tf-explain's `OcclusionSensitivity` patches for an input of shape `[C, H, W]`: non-overlapping
/// `ph × pw` patches over all channels on a `ceil(H / ph) × ceil(W / pw)` grid, truncated at the
/// bottom and right edges.
///
/// Patch `(i, j)` covers rows `i·ph..` and columns `j·pw..`, and its value goes to cell `(i, j)` of
/// the map: tf-explain swaps rows and columns here, which scrambles the maps of non-square images
/// (see the crate documentation); on square images the two agree.
pub fn tf_explain_patches(shape: [usize; 3], patch: (usize, usize)) -> Result<PatchGrid> {
    let [c, h, w] = shape;
    for (axis, p, d) in [(1, patch.0, h), (2, patch.1, w)] {
        if p == 0 || p > d {
            return Err(Error::InvalidOption {
                option: format!("occlusion patch ({})", AXES[axis]),
                value: p.to_string(),
                expected: format!("a size in 1..={d} (the input's {})", AXES[axis]),
            });
        }
    }
    let (gh, gw) = (h.div_ceil(patch.0), w.div_ceil(patch.1));
    let mut patches = Vec::with_capacity(gh * gw);
    for i in 0..gh {
        for j in 0..gw {
            let start = [0, i * patch.0, j * patch.1];
            let end = [c, (start[1] + patch.0).min(h), (start[2] + patch.1).min(w)];
            patches.push(Patch { start, end });
        }
    }
    Ok(PatchGrid { counts: [1, gh, gw], patches })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captum_counts_and_cut_off_last_window() {
        // D = 10, w = 3, s = 2: ceil(7 / 2) + 1 = 5 windows at 0, 2, 4, 6, 8; the last is cut to 8..10.
        let g = captum_patches([1, 10, 3], [1, 3, 3], [1, 2, 1]).unwrap();
        assert_eq!(g.counts, [1, 5, 1]);
        let rows: Vec<(usize, usize)> = g.patches.iter().map(|p| (p.start[1], p.end[1])).collect();
        assert_eq!(rows, [(0, 3), (2, 5), (4, 7), (6, 9), (8, 10)]);
        // When the stride divides D − w the last window fits exactly.
        let g = captum_patches([3, 8, 8], [3, 4, 4], [1, 2, 2]).unwrap();
        assert_eq!(g.counts, [1, 3, 3]);
        assert_eq!(g.patches[8], Patch { start: [0, 4, 4], end: [3, 8, 8] });
    }

    #[test]
    fn captum_rejects_what_captum_rejects() {
        let e = captum_patches([3, 8, 8], [3, 9, 2], [1, 1, 1]).unwrap_err().to_string();
        assert!(e.contains("window (height)") && e.contains("1..=8"), "{e}");
        let e = captum_patches([3, 8, 8], [3, 2, 2], [1, 3, 1]).unwrap_err().to_string();
        assert!(e.contains("stride (height)") && e.contains("1..=2"), "{e}");
        // A stride larger than a window that fills its axis is harmless, as in Captum.
        assert_eq!(captum_patches([3, 8, 8], [3, 2, 2], [5, 2, 2]).unwrap().counts, [1, 4, 4]);
    }

    #[test]
    fn tf_explain_grid_truncates_at_the_edges() {
        let g = tf_explain_patches([3, 10, 7], (4, 4)).unwrap();
        assert_eq!(g.counts, [1, 3, 2]);
        assert_eq!(g.patches[5], Patch { start: [0, 8, 4], end: [3, 10, 7] });
        assert!(g.patches[5].contains(2, 9, 6) && !g.patches[5].contains(2, 7, 6));
    }
}
