//! The pointing game and the energy-based pointing game: does a map point at the labelled object?

use candle_core::Tensor;
use gaze_core::{Error, Result};

use crate::maps::{HostMaps, HostMasks, MapScores};

/// The pointing game of Zhang et al., "Top-down Neural Attention by Excitation Backprop" (ECCV
/// 2016, <https://arxiv.org/abs/1608.00507>): a map scores a hit when its maximum lies within
/// `tolerance` pixels (Euclidean) of the object's mask.
///
/// The paper allows 15 pixels at 224×224; the default, 3 pixels at 64×64, is a little tighter
/// (4.7% of the side against 6.7%).
/// Where several pixels share the maximum, the score is the share of them that hit: the expected
/// hit of a random tie-break, so a constant map scores the share of the image near the object
/// rather than whatever its first pixel happens to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointingGame {
    pub tolerance: f32,
}

impl Default for PointingGame {
    fn default() -> Self {
        PointingGame { tolerance: 3.0 }
    }
}

impl PointingGame {
    /// Scores maps `[N, H, W]` or `[N, T, H, W]` against masks `[N, H, W]` (one per image) or
    /// `[N, T, H, W]` (one per map): 1 for a hit, 0 for a miss, a share for tied maxima.
    pub fn score(&self, maps: &Tensor, masks: &Tensor) -> Result<MapScores> {
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(Error::InvalidOption {
                option: "pointing-game tolerance".into(),
                value: self.tolerance.to_string(),
                expected: "a finite number of pixels >= 0".into(),
            });
        }
        let maps = HostMaps::read(maps, "maps")?;
        let masks = HostMasks::read(masks, &maps)?;
        // No offset reaches further than the map's diagonal, so a huge tolerance is clamped to it
        // (every pixel is then near every other) rather than listing (2r + 1)² offsets.
        let (h, w) = (maps.h as isize, maps.w as isize);
        let diagonal = ((h * h + w * w) as f32).sqrt().ceil();
        let tolerance = self.tolerance.min(diagonal);
        let reach = tolerance.floor() as isize;
        let tol2 = tolerance * tolerance;
        let offsets: Vec<(isize, isize)> = (-reach..=reach)
            .flat_map(|dy| (-reach..=reach).map(move |dx| (dy, dx)))
            .filter(|&(dy, dx)| ((dy * dy + dx * dx) as f32) <= tol2)
            .collect();
        let mut values = Vec::with_capacity(maps.n * maps.t);
        for n in 0..maps.n {
            for t in 0..maps.t {
                let map = maps.map(n, t);
                let mask = masks.mask(n, t);
                let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let near = |i: usize| {
                    let (y, x) = ((i / maps.w) as isize, (i % maps.w) as isize);
                    offsets.iter().any(|&(dy, dx)| {
                        let (yy, xx) = (y + dy, x + dx);
                        yy >= 0 && yy < h && xx >= 0 && xx < w && mask[(yy * w + xx) as usize]
                    })
                };
                let (mut maxima, mut hits) = (0usize, 0usize);
                for (i, &v) in map.iter().enumerate() {
                    if v == max {
                        maxima += 1;
                        hits += near(i) as usize;
                    }
                }
                values.push(hits as f32 / maxima as f32);
            }
        }
        Ok(MapScores { images: maps.n, targets: maps.t, values })
    }
}

/// The energy-based pointing game of Wang et al., "Score-CAM: Score-Weighted Visual Explanations
/// for Convolutional Neural Networks" (CVPR workshops 2020, <https://arxiv.org/abs/1910.01279>):
/// the share of a map's positive energy that falls inside the object's mask,
/// `Σ_{mask} max(m, 0) / Σ max(m, 0)`.
///
/// Takes maps `[N, H, W]` or `[N, T, H, W]` and masks `[N, H, W]` or `[N, T, H, W]`; a map with no
/// positive value scores 0.
pub fn energy_pointing_game(maps: &Tensor, masks: &Tensor) -> Result<MapScores> {
    let maps = HostMaps::read(maps, "maps")?;
    let masks = HostMasks::read(masks, &maps)?;
    let mut values = Vec::with_capacity(maps.n * maps.t);
    for n in 0..maps.n {
        for t in 0..maps.t {
            let (mut inside, mut total) = (0f64, 0f64);
            for (&v, &m) in maps.map(n, t).iter().zip(masks.mask(n, t)) {
                let e = v.max(0.0) as f64;
                total += e;
                if m {
                    inside += e;
                }
            }
            values.push(if total > 0.0 { (inside / total) as f32 } else { 0.0 });
        }
    }
    Ok(MapScores { images: maps.n, targets: maps.t, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn square_mask() -> Vec<f32> {
        // An 8×8 image whose object is the 2×2 square at rows 2..4, columns 2..4.
        let mut m = vec![0f32; 64];
        for y in 2..4 {
            for x in 2..4 {
                m[y * 8 + x] = 1.0;
            }
        }
        m
    }

    fn tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn a_perfect_map_scores_one_and_a_far_peak_zero() {
        let mask = tensor(square_mask(), &[1, 8, 8]);
        let perfect = tensor(square_mask(), &[1, 8, 8]);
        let game = PointingGame { tolerance: 0.0 };
        assert_eq!(game.score(&perfect, &mask).unwrap().values, vec![1.0]);
        let mut far = vec![0f32; 64];
        far[63] = 1.0;
        assert_eq!(game.score(&tensor(far, &[1, 8, 8]), &mask).unwrap().values, vec![0.0]);
    }

    #[test]
    fn the_tolerance_counts_peaks_near_the_object() {
        let mask = tensor(square_mask(), &[1, 8, 8]);
        // A peak at row 3, column 5: two pixels right of the object's last column.
        let mut near = vec![0f32; 64];
        near[3 * 8 + 5] = 1.0;
        let near = tensor(near, &[1, 8, 8]);
        let at = |tolerance| PointingGame { tolerance }.score(&near, &mask).unwrap().values[0];
        assert_eq!(at(1.9), 0.0);
        assert_eq!(at(2.0), 1.0);
        // A tolerance beyond the map's diagonal reaches every pixel, without listing its offsets.
        let far_corner = {
            let mut v = vec![0f32; 64];
            v[63] = 1.0;
            tensor(v, &[1, 8, 8])
        };
        let huge = PointingGame { tolerance: 1e30 }.score(&far_corner, &mask).unwrap();
        assert_eq!(huge.values, vec![1.0]);
    }

    #[test]
    fn tied_maxima_score_their_share_of_hits() {
        let mask = tensor(square_mask(), &[1, 8, 8]);
        let constant = tensor(vec![0.5; 64], &[1, 8, 8]);
        let got = PointingGame { tolerance: 0.0 }.score(&constant, &mask).unwrap().values[0];
        assert_eq!(got, 4.0 / 64.0);
    }

    #[test]
    fn targets_have_their_own_maps_and_share_the_image_mask() {
        let mask = tensor([square_mask(), vec![0.0; 63].into_iter().chain([1.0]).collect()].concat(), &[2, 8, 8]);
        let mut far = vec![0f32; 64];
        far[63] = 2.0;
        // Image 0: target 0 perfect, target 1 points at the corner; image 1 (object in the corner):
        // the reverse.
        let maps = tensor([square_mask(), far.clone(), square_mask(), far].concat(), &[2, 2, 8, 8]);
        let got = PointingGame::default().score(&maps, &mask).unwrap();
        assert_eq!(got.values, vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(got.get(1, 1), Some(1.0));
        assert_eq!(got.mean(), 0.5);
    }

    #[test]
    fn energy_is_the_positive_share_inside_the_mask() {
        let mask = tensor(square_mask(), &[1, 8, 8]);
        assert_eq!(energy_pointing_game(&tensor(square_mask(), &[1, 8, 8]), &mask).unwrap().values, vec![1.0]);
        let mut m = vec![0f32; 64];
        m[2 * 8 + 2] = 3.0; // inside
        m[0] = 1.0; // outside
        m[1] = -5.0; // negative: ignored
        assert_eq!(energy_pointing_game(&tensor(m, &[1, 8, 8]), &mask).unwrap().values, vec![0.75]);
        let negative = tensor(vec![-1.0; 64], &[1, 8, 8]);
        assert_eq!(energy_pointing_game(&negative, &mask).unwrap().values, vec![0.0]);
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_value() {
        let mask = tensor(square_mask(), &[1, 8, 8]);
        let err = PointingGame { tolerance: -1.0 }.score(&mask, &mask).unwrap_err().to_string();
        assert!(err.contains("`-1`") && err.contains(">= 0"), "{err}");
        let nan = tensor(vec![f32::NAN; 64], &[1, 8, 8]);
        let err = PointingGame::default().score(&nan, &mask).unwrap_err().to_string();
        assert!(err.contains("maps contains 64 NaN"), "{err}");
    }
}
