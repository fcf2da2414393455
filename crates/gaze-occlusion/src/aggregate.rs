//! From the scores of the occluded copies to maps: Captum's averaged differences and tf-explain's
//! `1 − p` grid.

use gaze_core::{Error, Result};

use crate::patches::PatchGrid;

/// The most values one map of [`captum_map`], [`tf_explain_map`] or [`resize_bilinear`] holds
/// (`T · C · H · W`, 4 GiB of f32).
pub const MAX_MAP_VALUES: usize = gaze_core::numeric::MAX_MAP_VALUES;

/// `dims`' product when it is at least 1 and at most [`MAX_MAP_VALUES`]; an error naming `what`
/// otherwise.
fn map_len(what: &str, dims: &[usize]) -> Result<usize> {
    match dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(len) if len <= MAX_MAP_VALUES && !dims.contains(&0) => Ok(len),
        _ => Err(Error::Shape {
            what: what.into(),
            expected: format!("sides of at least 1 and at most {MAX_MAP_VALUES} values in all"),
            got: dims.to_vec(),
        }),
    }
}

/// Checks that `scores` holds one value per window and target.
fn check_scores(scores: &[f64], windows: usize, targets: usize) -> Result<()> {
    if windows.checked_mul(targets) != Some(scores.len()) {
        return Err(Error::Shape {
            what: "occlusion scores".into(),
            expected: format!("{windows} windows × {targets} targets, window-major"),
            got: vec![scores.len()],
        });
    }
    Ok(())
}

/// Captum's `Occlusion` attribution of one image, `[T, C, H, W]` row-major:
/// for every element, the mean over the windows covering it of `base[t] − scores[p, t]`.
///
/// `scores` holds `P × T` values, window-major; accumulation is in `f64`.
/// Scores of another length, windows outside `shape`, an empty `shape` and maps above
/// [`MAX_MAP_VALUES`] values are errors.
pub fn captum_map(base: &[f64], scores: &[f64], grid: &PatchGrid, shape: [usize; 3]) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    let t_count = base.len();
    let plane = map_len("occlusion map [C, H, W]", &shape)?;
    map_len("occlusion maps [T, C, H, W]", &[t_count.max(1), c, h, w])?;
    check_scores(scores, grid.len(), t_count)?;
    if let Some(patch) = grid.patches.iter().find(|p| (0..3).any(|a| p.start[a] > p.end[a] || p.end[a] > shape[a])) {
        return Err(Error::InvalidOption {
            option: "occlusion window".into(),
            value: format!("{:?}..{:?}", patch.start, patch.end),
            expected: format!("a box inside the input's shape {shape:?}"),
        });
    }
    let mut counts = vec![0u32; plane];
    let mut sums = vec![0f64; t_count * plane];
    for (p, patch) in grid.patches.iter().enumerate() {
        for ci in patch.start[0]..patch.end[0] {
            for hi in patch.start[1]..patch.end[1] {
                let row = (ci * h + hi) * w;
                for wi in patch.start[2]..patch.end[2] {
                    counts[row + wi] = counts[row + wi].saturating_add(1);
                }
            }
        }
        for t in 0..t_count {
            let diff = base[t] - scores[p * t_count + t];
            let sums = &mut sums[t * plane..(t + 1) * plane];
            for ci in patch.start[0]..patch.end[0] {
                for hi in patch.start[1]..patch.end[1] {
                    let row = (ci * h + hi) * w;
                    for s in &mut sums[row + patch.start[2]..row + patch.end[2]] {
                        *s += diff;
                    }
                }
            }
        }
    }
    Ok(sums
        .iter()
        .enumerate()
        .map(|(i, s)| match counts[i % plane] {
            0 => 0.0,
            n => (s / n as f64) as f32,
        })
        .collect())
}

/// tf-explain's `OcclusionSensitivity` map of one image, `[T, H, W]` row-major: `1 − scores[p, t]`
/// on the patch grid, resized to the image bilinearly (cv2's `INTER_LINEAR`).
///
/// `scores` holds one value per cell of the grid's `counts[1] × counts[2]` cells and target,
/// cell-major; scores of another length, an empty grid or size and maps above
/// [`MAX_MAP_VALUES`] values are errors.
pub fn tf_explain_map(scores: &[f64], t_count: usize, grid: &PatchGrid, size: (usize, usize)) -> Result<Vec<f32>> {
    let (gh, gw) = (grid.counts[1], grid.counts[2]);
    let cells = map_len("tf-explain patch grid", &[gh, gw])?;
    map_len("occlusion maps [T, H, W]", &[t_count.max(1), size.0, size.1])?;
    check_scores(scores, cells, t_count)?;
    let mut out = Vec::with_capacity(t_count * size.0 * size.1);
    for t in 0..t_count {
        let cells: Vec<f32> = (0..cells).map(|p| (1.0 - scores[p * t_count + t]) as f32).collect();
        out.extend(resize_bilinear(&cells, (gh, gw), size)?);
    }
    Ok(out)
}

/// Bilinear resizing of one `src.0 × src.1` plane to `dst.0 × dst.1`, with half-pixel centres and
/// edge clamping: OpenCV's `INTER_LINEAR` on floats, PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)` without antialiasing.
///
/// Both sizes must be at least 1×1 and at most [`MAX_MAP_VALUES`] values, and `plane` must hold
/// `src.0 · src.1` values.
pub fn resize_bilinear(plane: &[f32], src: (usize, usize), dst: (usize, usize)) -> Result<Vec<f32>> {
    let len = map_len("plane to resize", &[src.0, src.1])?;
    map_len("resized plane", &[dst.0, dst.1])?;
    if plane.len() != len {
        return Err(Error::Shape {
            what: "plane to resize".into(),
            expected: format!("{len} values for {}×{}", src.0, src.1),
            got: vec![plane.len()],
        });
    }
    let taps = |d: usize, s: usize| -> Vec<(usize, usize, f32)> {
        let scale = s as f64 / d as f64;
        (0..d)
            .map(|i| {
                let f = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (f.floor() as usize).min(s - 1);
                let i1 = (i0 + 1).min(s - 1);
                let frac = if i0 == s - 1 { 0.0 } else { f - i0 as f64 };
                (i0, i1, frac as f32)
            })
            .collect()
    };
    let rows = taps(dst.0, src.0);
    let cols = taps(dst.1, src.1);
    let mut out = Vec::with_capacity(dst.0 * dst.1);
    for &(y0, y1, fy) in &rows {
        for &(x0, x1, fx) in &cols {
            let a = plane[y0 * src.1 + x0] * (1.0 - fx) + plane[y0 * src.1 + x1] * fx;
            let b = plane[y1 * src.1 + x0] * (1.0 - fx) + plane[y1 * src.1 + x1] * fx;
            out.push(a * (1.0 - fy) + b * fy);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patches::{captum_patches, tf_explain_patches};

    #[test]
    fn overlapping_windows_are_averaged() {
        // One row of 4 pixels, windows of 2 with stride 1: at 0, 1, 2.
        let grid = captum_patches([1, 1, 4], [1, 1, 2], [1, 1, 1]).unwrap();
        let map = captum_map(&[10.0], &[7.0, 4.0, 9.0], &grid, [1, 1, 4]).unwrap();
        assert_eq!(map, [3.0, 4.5, 3.5, 1.0]);
    }

    #[test]
    fn resize_matches_half_pixel_bilinear() {
        // 2 → 4: source coordinates −0.25 (clamped), 0.25, 0.75, 1.25 (clamped at the last pixel).
        let out = resize_bilinear(&[0.0, 4.0], (1, 2), (1, 4)).unwrap();
        assert_eq!(out, [0.0, 1.0, 3.0, 4.0]);
        let same = resize_bilinear(&[1.0, 2.0, 3.0, 4.0], (2, 2), (2, 2)).unwrap();
        assert_eq!(same, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn tf_explain_cells_are_one_minus_score() {
        let grid = tf_explain_patches([1, 2, 4], (1, 2)).unwrap();
        let map = tf_explain_map(&[0.25, 0.5, 0.75, 1.0], 1, &grid, (2, 2)).unwrap();
        assert_eq!(map, [0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn scores_that_do_not_match_the_windows_are_errors() {
        let grid = captum_patches([1, 1, 4], [1, 1, 2], [1, 1, 1]).unwrap();
        for scores in [&[7.0, 4.0][..], &[7.0, 4.0, 9.0, 1.0][..], &[][..]] {
            let err = captum_map(&[10.0], scores, &grid, [1, 1, 4]).unwrap_err().to_string();
            assert!(err.contains("occlusion scores") && err.contains("3 windows × 1 targets"), "{err}");
        }
        // Two targets need six scores.
        let err = captum_map(&[10.0, 5.0], &[7.0, 4.0, 9.0], &grid, [1, 1, 4]).unwrap_err().to_string();
        assert!(err.contains("3 windows × 2 targets") && err.contains("[3]"), "{err}");
        // A grid of windows beyond the shape it is applied to.
        let err = captum_map(&[10.0], &[7.0, 4.0, 9.0], &grid, [1, 1, 3]).unwrap_err().to_string();
        assert!(err.contains("occlusion window") && err.contains("[1, 1, 3]"), "{err}");
        let err = captum_map(&[10.0], &[], &PatchGrid { counts: [0; 3], patches: vec![] }, [usize::MAX, 2, 2]);
        assert!(err.unwrap_err().to_string().contains("at most 1073741824 values"));

        let grid = tf_explain_patches([1, 2, 4], (1, 2)).unwrap();
        let err = tf_explain_map(&[0.25, 0.5, 0.75], 1, &grid, (2, 2)).unwrap_err().to_string();
        assert!(err.contains("occlusion scores") && err.contains("4 windows × 1 targets"), "{err}");
        let err = tf_explain_map(&[0.25; 4], 2, &grid, (2, 2)).unwrap_err().to_string();
        assert!(err.contains("4 windows × 2 targets"), "{err}");
        let err = tf_explain_map(&[0.25; 4], 1, &grid, (0, 2)).unwrap_err().to_string();
        assert!(err.contains("[1, 0, 2]"), "{err}");
    }

    #[test]
    fn resizing_checks_its_sizes_and_plane() {
        let err = resize_bilinear(&[], (0, 0), (2, 2)).unwrap_err().to_string();
        assert!(err.contains("plane to resize") && err.contains("at least 1"), "{err}");
        let err = resize_bilinear(&[1.0, 2.0], (2, 2), (4, 4)).unwrap_err().to_string();
        assert!(err.contains("plane to resize") && err.contains("4 values for 2×2") && err.contains("[2]"), "{err}");
        let err = resize_bilinear(&[1.0], (1, 1), (usize::MAX, 2)).unwrap_err().to_string();
        assert!(err.contains("resized plane") && err.contains("at most 1073741824"), "{err}");
        assert!(resize_bilinear(&[1.0], (1, 1), (0, 2)).is_err());
        assert_eq!(resize_bilinear(&[1.0], (1, 1), (2, 3)).unwrap(), [1.0; 6]);
    }
}
