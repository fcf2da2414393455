//! tf-explain's activation grid.

use candle_core::{DType, Device, Tensor};
use gaze_core::{Error, Result};
use gaze_render::{Map, Rgb, RgbImage};

/// The feature maps of a batch tiled into one picture, as tf-explain's `ExtractActivations` lays
/// them out.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationGrid {
    /// `rows · h × cols · w` values in `[0, 1]`, row-major.
    pub values: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    /// The size `(h, w)` of one tile.
    pub tile: (usize, usize),
}

impl ActivationGrid {
    /// `rows · h`, saturating at `usize::MAX` for a grid built by hand with absurd sizes (which
    /// [`to_map`](Self::to_map) and [`to_image`](Self::to_image) then refuse).
    pub fn height(&self) -> usize {
        self.rows.saturating_mul(self.tile.0)
    }

    /// `cols · w`, saturating as [`height`](Self::height) does.
    pub fn width(&self) -> usize {
        self.cols.saturating_mul(self.tile.1)
    }

    /// The grid as a tensor `[rows · h, cols · w]`; an error when `values` does not hold that many
    /// values.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let (h, w) = (self.height(), self.width());
        if h.checked_mul(w) != Some(self.values.len()) {
            return Err(Error::Shape {
                what: "activation grid values".into(),
                expected: format!(
                    "{h}×{w} values ({} rows of {}×{} tiles, {} columns)",
                    self.rows, self.tile.0, self.tile.1, self.cols
                ),
                got: vec![self.values.len()],
            });
        }
        Ok(Tensor::from_vec(self.values.clone(), (h, w), device)?)
    }

    /// The grid as a map, to colour with any of `gaze-render`'s colormaps.
    ///
    /// An error when `values` does not hold `rows · h × cols · w` values or the size is not one a
    /// [`Map`] takes (at least 1×1, at most 2³⁰ values).
    pub fn to_map(&self) -> Result<Map> {
        Map::new(self.values.clone(), (self.height(), self.width()))
    }

    /// The grid as tf-explain saves it: grey levels `uint8(clip(v, 0, 1) · 255)` (truncated).
    ///
    /// The same errors as [`to_map`](Self::to_map), for a grid whose fields were set by hand.
    pub fn to_image(&self) -> Result<RgbImage> {
        let map = self.to_map()?;
        let (h, w) = (map.height(), map.width());
        let too_wide = || Error::Shape {
            what: "activation grid".into(),
            expected: format!("at most {} pixels a side for an image", u32::MAX),
            got: vec![h, w],
        };
        let (w32, h32) = (u32::try_from(w).map_err(|_| too_wide())?, u32::try_from(h).map_err(|_| too_wide())?);
        let values = map.values();
        Ok(RgbImage::from_fn(w32, h32, |x, y| {
            let v = values[y as usize * w + x as usize];
            let g = (v.clamp(0.0, 1.0) * 255.0) as u8;
            Rgb([g, g, g])
        }))
    }
}

/// The tiles of `maps` (`[N, 1, C, h, w]` as [`Activations`](crate::Activations) returns them, or
/// `[N, C, h, w]`), image-major then channel-minor (tile `n · C + c`).
fn tiles(maps: &Tensor) -> Result<(Vec<f32>, usize, (usize, usize))> {
    let dims = maps.dims().to_vec();
    let (count, h, w) = match dims.as_slice() {
        [n, 1, c, h, w] | [n, c, h, w] => (n * c, *h, *w),
        _ => {
            return Err(Error::Shape {
                what: "feature maps".into(),
                expected: "[N, 1, C, h, w] or [N, C, h, w]".into(),
                got: dims,
            })
        }
    };
    if count == 0 || h == 0 || w == 0 {
        return Err(Error::Shape {
            what: "feature maps".into(),
            expected: "at least one non-empty map".into(),
            got: dims,
        });
    }
    let data = maps.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((data, count, (h, w)))
}

/// tf-explain's `filter_display` and normalisation: the `n = N · C` maps tiled image-major,
/// channel-minor, row by row on a `ceil(√n) × ceil(√n)` grid without borders, the missing tiles
/// zero, then one min-max over the whole grid (padding tiles included).
/// A constant grid becomes zeros, where tf-explain divides by zero.
pub fn activation_grid(maps: &Tensor) -> Result<ActivationGrid> {
    let (data, count, (h, w)) = tiles(maps)?;
    let side = (count as f64).sqrt().ceil() as usize;
    let side = if (side - 1) * (side - 1) >= count { side - 1 } else { side };
    let (rows, cols) = (side, side);
    let width = cols * w;
    let mut values = vec![0f32; rows * h * width];
    for (t, tile) in data.chunks(h * w).enumerate() {
        let (r, c) = (t / cols, t % cols);
        for y in 0..h {
            let dst = (r * h + y) * width + c * w;
            values[dst..dst + w].copy_from_slice(&tile[y * w..(y + 1) * w]);
        }
    }
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = hi - lo;
    for v in &mut values {
        *v = if range > 0.0 { (*v - lo) / range } else { 0.0 };
    }
    Ok(ActivationGrid { values, rows, cols, tile: (h, w) })
}

/// The maps as separate tiles in the same order, for `gaze_render::grid_maps` (labelled tiles with
/// padding and a colormap, instead of tf-explain's bare grid).
pub fn feature_map_tiles(maps: &Tensor) -> Result<Vec<Map>> {
    let (data, _, (h, w)) = tiles(maps)?;
    data.chunks(h * w).map(|t| Map::new(t.to_vec(), (h, w))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_image_major_and_globally_normalised() {
        // Two images, three channels of 1×2 each: five tiles of values 0..=5 (one image-channel has 5).
        let v: Vec<f32> = (0..12).map(|i| (i / 2) as f32 + 1.0).collect();
        let maps = Tensor::from_vec(v, (2, 1, 3, 1, 2), &Device::Cpu).unwrap();
        let g = activation_grid(&maps).unwrap();
        // Six tiles on a 3 × 3 grid; the three missing tiles are zeros and set the minimum.
        assert_eq!((g.rows, g.cols, g.tile), (3, 3, (1, 2)));
        let row0: Vec<f32> = g.values[..6].iter().map(|v| v * 6.0).collect();
        assert_eq!(row0, [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        let row1: Vec<f32> = g.values[6..12].iter().map(|v| v * 6.0).collect();
        assert_eq!(row1, [4.0, 4.0, 5.0, 5.0, 6.0, 6.0]);
        assert!(g.values[12..].iter().all(|&v| v == 0.0));
        assert_eq!(g.to_image().unwrap().get_pixel(5, 1), &Rgb([255, 255, 255]));
        assert_eq!(g.to_image().unwrap().get_pixel(0, 0), &Rgb([42, 42, 42]));
    }

    #[test]
    fn perfect_squares_have_no_padding_and_constants_do_not_divide_by_zero() {
        let maps = Tensor::full(3.0f32, (1, 4, 2, 2), &Device::Cpu).unwrap();
        let g = activation_grid(&maps).unwrap();
        assert_eq!((g.rows, g.cols), (2, 2));
        assert!(g.values.iter().all(|&v| v == 0.0));
        let e = activation_grid(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).unwrap_err().to_string();
        assert!(e.contains("[N, 1, C, h, w]"), "{e}");
        assert_eq!(feature_map_tiles(&maps).unwrap().len(), 4);
    }

    #[test]
    fn grids_built_by_hand_with_the_wrong_values_are_errors() {
        let short = ActivationGrid { values: vec![], rows: 1, cols: 1, tile: (2, 2) };
        let image = short.to_image().unwrap_err().to_string();
        let map = short.to_map().unwrap_err().to_string();
        assert_eq!(image, map);
        assert!(image.contains("2×2 = 4 values") && image.contains("[0]"), "{image}");
        let empty = ActivationGrid { values: vec![], rows: 0, cols: 1, tile: (2, 2) };
        assert!(empty.to_image().is_err());
        let absurd = ActivationGrid { values: vec![0.5], rows: usize::MAX, cols: usize::MAX, tile: (2, 2) };
        assert_eq!(absurd.height(), usize::MAX);
        assert!(absurd.to_image().is_err() && absurd.to_map().is_err());
        let err = absurd.to_tensor(&Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("activation grid values") && err.contains("[1]"), "{err}");
        assert!(short.to_tensor(&Device::Cpu).is_err());
        let ok = ActivationGrid { values: vec![0.0, 1.0], rows: 1, cols: 1, tile: (1, 2) };
        assert_eq!(ok.to_image().unwrap().get_pixel(1, 0), &Rgb([255, 255, 255]));
    }
}
