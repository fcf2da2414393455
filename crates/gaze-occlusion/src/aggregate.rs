//! From the scores of the occluded copies to maps: Captum's averaged differences and tf-explain's
//! `1 − p` grid.

use crate::patches::PatchGrid;

/// Captum's `Occlusion` attribution of one image, `[T, C, H, W]` row-major:
/// for every element, the mean over the windows covering it of `base[t] − scores[p, t]`.
///
/// `scores` holds `P × T` values, window-major; accumulation is in `f64`.
pub fn captum_map(base: &[f64], scores: &[f64], grid: &PatchGrid, shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    let t_count = base.len();
    let plane = c * h * w;
    let mut counts = vec![0u32; plane];
    let mut sums = vec![0f64; t_count * plane];
    for (p, patch) in grid.patches.iter().enumerate() {
        for ci in patch.start[0]..patch.end[0] {
            for hi in patch.start[1]..patch.end[1] {
                let row = (ci * h + hi) * w;
                for wi in patch.start[2]..patch.end[2] {
                    counts[row + wi] += 1;
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
    sums.iter()
        .enumerate()
        .map(|(i, s)| match counts[i % plane] {
            0 => 0.0,
            n => (s / n as f64) as f32,
        })
        .collect()
}

/// tf-explain's `OcclusionSensitivity` map of one image, `[T, H, W]` row-major: `1 − scores[p, t]`
/// on the patch grid, resized to the image bilinearly (cv2's `INTER_LINEAR`).
pub fn tf_explain_map(scores: &[f64], t_count: usize, grid: &PatchGrid, size: (usize, usize)) -> Vec<f32> {
    let (gh, gw) = (grid.counts[1], grid.counts[2]);
    let mut out = Vec::with_capacity(t_count * size.0 * size.1);
    for t in 0..t_count {
        let cells: Vec<f32> = (0..gh * gw).map(|p| (1.0 - scores[p * t_count + t]) as f32).collect();
        out.extend(resize_bilinear(&cells, (gh, gw), size));
    }
    out
}

/// Bilinear resizing of one `src.0 × src.1` plane to `dst.0 × dst.1`, with half-pixel centres and
/// edge clamping: OpenCV's `INTER_LINEAR` on floats, PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)` without antialiasing.
pub fn resize_bilinear(plane: &[f32], src: (usize, usize), dst: (usize, usize)) -> Vec<f32> {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patches::{captum_patches, tf_explain_patches};

    #[test]
    fn overlapping_windows_are_averaged() {
        // One row of 4 pixels, windows of 2 with stride 1: at 0, 1, 2.
        let grid = captum_patches([1, 1, 4], [1, 1, 2], [1, 1, 1]).unwrap();
        let map = captum_map(&[10.0], &[7.0, 4.0, 9.0], &grid, [1, 1, 4]);
        assert_eq!(map, [3.0, 4.5, 3.5, 1.0]);
    }

    #[test]
    fn resize_matches_half_pixel_bilinear() {
        // 2 → 4: source coordinates −0.25 (clamped), 0.25, 0.75, 1.25 (clamped at the last pixel).
        let out = resize_bilinear(&[0.0, 4.0], (1, 2), (1, 4));
        assert_eq!(out, [0.0, 1.0, 3.0, 4.0]);
        let same = resize_bilinear(&[1.0, 2.0, 3.0, 4.0], (2, 2), (2, 2));
        assert_eq!(same, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn tf_explain_cells_are_one_minus_score() {
        let grid = tf_explain_patches([1, 2, 4], (1, 2)).unwrap();
        let map = tf_explain_map(&[0.25, 0.5, 0.75, 1.0], 1, &grid, (2, 2));
        assert_eq!(map, [0.75, 0.5, 0.25, 0.0]);
    }
}
