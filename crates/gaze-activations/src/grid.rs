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
    pub fn height(&self) -> usize {
        self.rows * self.tile.0
    }

    pub fn width(&self) -> usize {
        self.cols * self.tile.1
    }

    /// The grid as a tensor `[rows · h, cols · w]`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.values.clone(), (self.height(), self.width()), device)?)
    }

    /// The grid as a map, to colour with any of `gaze-render`'s colormaps.
    pub fn to_map(&self) -> Result<Map> {
        Map::new(self.values.clone(), (self.height(), self.width()))
    }

    /// The grid as tf-explain saves it: grey levels `uint8(clip(v, 0, 1) · 255)` (truncated).
    pub fn to_image(&self) -> RgbImage {
        let w = self.width();
        RgbImage::from_fn(w as u32, self.height() as u32, |x, y| {
            let v = self.values[y as usize * w + x as usize];
            let g = (v.clamp(0.0, 1.0) * 255.0) as u8;
            Rgb([g, g, g])
        })
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
        assert_eq!(g.to_image().get_pixel(5, 1), &Rgb([255, 255, 255]));
        assert_eq!(g.to_image().get_pixel(0, 0), &Rgb([42, 42, 42]));
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
}
