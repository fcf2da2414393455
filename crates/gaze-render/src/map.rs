//! [`Map`]: one attribution map as rows of `f32`, and the display steps on it: reducing channels,
//! keeping a sign, resizing.

use candle_core::{DType, Tensor};
use gaze_core::{Error, Result};
use image::RgbImage;

/// One two-dimensional map of values (an attribution, a feature map, a grayscale image), stored
/// row by row: the value at row `y`, column `x` is `values[y * width + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Map {
    values: Vec<f32>,
    height: usize,
    width: usize,
}

/// How [`Map::reduce_channels`] turns a `[C, H, W]` map into an `[H, W]` one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The signed sum over channels: what Captum's `visualize_image_attr` and SHAP's `image_plot`
    /// show.
    #[default]
    Sum,
    /// The largest absolute value over channels: the saliency map of Simonyan et al.
    /// (<https://arxiv.org/abs/1312.6034>).
    AbsMax,
    /// The sum of absolute values over channels: tf-explain's grayscale step for its gradient
    /// methods.
    AbsSum,
}

/// Which part of a signed map to show, as Captum's `visualize_image_attr` signs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sign {
    /// Every value as it is (Captum's `all`).
    #[default]
    All,
    /// `max(x, 0)` (Captum's `positive`).
    Positive,
    /// The magnitude of the negative part, `max(−x, 0)`, so that the most negative values show
    /// brightest (Captum's `negative`, which divides by a negative threshold to the same effect).
    Negative,
    /// `|x|` (Captum's `absolute_value`).
    Absolute,
}

impl Map {
    /// A map of `height` rows and `width` columns from its values, row by row.
    pub fn new(values: Vec<f32>, (height, width): (usize, usize)) -> Result<Map> {
        check_size(height, width)?;
        if values.len() != height * width {
            return Err(Error::Shape {
                what: "map values".into(),
                expected: format!("{height}×{width} = {} values", height * width),
                got: vec![values.len()],
            });
        }
        Ok(Map { values, height, width })
    }

    /// A map of `(height, width)` filled with `value`.
    pub fn filled(value: f32, (height, width): (usize, usize)) -> Result<Map> {
        check_size(height, width)?;
        Map::new(vec![value; height * width], (height, width))
    }

    /// A map from a tensor of shape `[H, W]` (or `[1, H, W]`), of any float dtype, on any device.
    pub fn from_tensor(t: &Tensor) -> Result<Map> {
        let dims = t.dims();
        let (h, w) = match *dims {
            [h, w] | [1, h, w] => (h, w),
            _ => {
                return Err(Error::Shape {
                    what: "map tensor".into(),
                    expected: "[H, W] or [1, H, W]".into(),
                    got: dims.to_vec(),
                })
            }
        };
        Map::new(tensor_values(t)?, (h, w))
    }

    /// Reduces a `[C, H, W]` map (values row by row within each channel) to `[H, W]`.
    pub fn reduce_channels(
        values: &[f32],
        (channels, height, width): (usize, usize, usize),
        reduction: Reduction,
    ) -> Result<Map> {
        check_size(height, width)?;
        let plane = height * width;
        if channels == 0 || channels.checked_mul(plane) != Some(values.len()) {
            return Err(Error::Shape {
                what: "channel map values".into(),
                expected: format!("{channels}×{height}×{width} values with at least one channel"),
                got: vec![values.len()],
            });
        }
        let mut out = vec![0.0f32; plane];
        for channel in values.chunks_exact(plane) {
            for (o, &v) in out.iter_mut().zip(channel) {
                match reduction {
                    Reduction::Sum => *o += v,
                    Reduction::AbsSum => *o += v.abs(),
                    // NaN propagates, as numpy's max does.
                    Reduction::AbsMax => *o = if v.is_nan() || o.is_nan() { f32::NAN } else { o.max(v.abs()) },
                }
            }
        }
        Map::new(out, (height, width))
    }

    /// A map from a tensor of shape `[C, H, W]` (reduced over channels) or `[H, W]` (taken as it is).
    pub fn from_channels_tensor(t: &Tensor, reduction: Reduction) -> Result<Map> {
        match *t.dims() {
            [h, w] => Map::new(tensor_values(t)?, (h, w)),
            [c, h, w] => Map::reduce_channels(&tensor_values(t)?, (c, h, w), reduction),
            _ => Err(Error::Shape {
                what: "map tensor".into(),
                expected: "[C, H, W] or [H, W]".into(),
                got: t.dims().to_vec(),
            }),
        }
    }

    /// The maps of an attribution's values, `[N, T, C, H, W]` (each reduced over channels) or
    /// `[N, T, H, W]`, as `maps[n][t]`.
    pub fn batch_from_tensor(values: &Tensor, reduction: Reduction) -> Result<Vec<Vec<Map>>> {
        let dims = values.dims().to_vec();
        let (n, t, c, h, w) = match dims[..] {
            [n, t, h, w] => (n, t, 1, h, w),
            [n, t, c, h, w] => (n, t, c, h, w),
            _ => {
                return Err(Error::Shape {
                    what: "attribution values".into(),
                    expected: "[N, T, C, H, W] or [N, T, H, W]".into(),
                    got: dims,
                })
            }
        };
        let all = tensor_values(values)?;
        let per_map = c * h * w;
        if per_map == 0 {
            return Err(Error::Shape {
                what: "attribution values".into(),
                expected: "maps with at least one channel, row and column".into(),
                got: dims,
            });
        }
        let mut maps = all.chunks_exact(per_map);
        (0..n)
            .map(|_| {
                (0..t)
                    .map(|_| {
                        let chunk = maps.next().unwrap_or_default();
                        Map::reduce_channels(chunk, (c, h, w), reduction)
                    })
                    .collect()
            })
            .collect()
    }

    /// The luminance of an RGB image in `[0, 1]`, with the weights SHAP's `image_plot` uses
    /// (`0.2989 R + 0.5870 G + 0.1140 B`, those of MATLAB's `rgb2gray`).
    pub fn luminance(image: &RgbImage) -> Result<Map> {
        let values = image
            .pixels()
            .map(|p| (0.2989 * f32::from(p[0]) + 0.5870 * f32::from(p[1]) + 0.1140 * f32::from(p[2])) / 255.0)
            .collect();
        Map::new(values, (image.height() as usize, image.width() as usize))
    }

    /// The values, row by row.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values, row by row, taken out of the map.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// The number of rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The value at row `y`, column `x`, if inside the map.
    pub fn get(&self, y: usize, x: usize) -> Option<f32> {
        (y < self.height && x < self.width).then(|| self.values[y * self.width + x])
    }

    /// The map as a tensor of shape `[H, W]` on the CPU.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.values, (self.height, self.width), &candle_core::Device::Cpu)?)
    }

    /// Keeps the part of the map `sign` names (see [`Sign`]).
    pub fn with_sign(mut self, sign: Sign) -> Map {
        let f: fn(f32) -> f32 = match sign {
            Sign::All => return self,
            // NaN stays NaN, as numpy's maximum keeps it.
            Sign::Positive => |v| if v.is_nan() { v } else { v.max(0.0) },
            Sign::Negative => |v| if v.is_nan() { v } else { (-v).max(0.0) },
            Sign::Absolute => f32::abs,
        };
        for v in &mut self.values {
            *v = f(*v);
        }
        self
    }

    /// Resizes the map to `(height, width)` by bilinear interpolation with half-pixel centres.
    ///
    /// This is OpenCV's `cv2.resize(..., INTER_LINEAR)` on float32 maps (what pytorch-grad-cam's
    /// `scale_cam_image` uses) and equally torch's `interpolate(mode="bilinear",
    /// align_corners=False)`: output pixel `i` samples the input at `(i + 0.5)·in/out − 0.5`,
    /// clamped to the edge pixels.
    /// When shrinking, it does not average over the pixels it skips (neither peer does).
    pub fn resize_bilinear(&self, (height, width): (usize, usize)) -> Result<Map> {
        check_size(height, width)?;
        let ys = axis_weights(self.height, height);
        let xs = axis_weights(self.width, width);
        let mut out = Vec::with_capacity(height * width);
        for &(y0, y1, fy) in &ys {
            let row0 = &self.values[y0 * self.width..(y0 + 1) * self.width];
            let row1 = &self.values[y1 * self.width..(y1 + 1) * self.width];
            for &(x0, x1, fx) in &xs {
                let top = row0[x0] + (row0[x1] - row0[x0]) * fx;
                let bottom = row1[x0] + (row1[x1] - row1[x0]) * fx;
                out.push(top + (bottom - top) * fy);
            }
        }
        Map::new(out, (height, width))
    }

    /// Resizes the map to `(height, width)` by nearest neighbour, each output pixel taking the
    /// input pixel its centre falls in: blocks of equal value, the way matplotlib shows a small
    /// array enlarged.
    pub fn resize_nearest(&self, (height, width): (usize, usize)) -> Result<Map> {
        check_size(height, width)?;
        let pick = |i: usize, from: usize, to: usize| ((2 * i + 1) * from / (2 * to)).min(from - 1);
        let mut out = Vec::with_capacity(height * width);
        for y in 0..height {
            let sy = pick(y, self.height, height);
            for x in 0..width {
                out.push(self.values[sy * self.width + pick(x, self.width, width)]);
            }
        }
        Map::new(out, (height, width))
    }
}

/// The most values a map holds (4 GiB of `f32`).
pub const MAX_MAP_VALUES: usize = gaze_core::numeric::MAX_MAP_VALUES;

/// An error unless a map of `height × width` has both sides at least 1 and at most
/// [`MAX_MAP_VALUES`] values.
fn check_size(height: usize, width: usize) -> Result<()> {
    if height == 0 || width == 0 || height.checked_mul(width).is_none_or(|n| n > MAX_MAP_VALUES) {
        return Err(Error::InvalidOption {
            option: "map size".into(),
            value: format!("{height}×{width}"),
            expected: format!("a height and width of at least 1 and at most {MAX_MAP_VALUES} values"),
        });
    }
    Ok(())
}

/// For each output index: the two input indices and the weight of the second, with half-pixel
/// centres and the source coordinate clamped to the edge pixels.
fn axis_weights(from: usize, to: usize) -> Vec<(usize, usize, f32)> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|i| {
            let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(from - 1);
            let i1 = (i0 + 1).min(from - 1);
            let frac = if i0 == from - 1 { 0.0 } else { src - i0 as f64 };
            (i0, i1, frac as f32)
        })
        .collect()
}

/// The values of a tensor as `f32`, row-major, copied to the host.
pub(crate) fn tensor_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_wrong_length_is_an_error_naming_the_shape() {
        let err = Map::new(vec![0.0; 5], (2, 3)).unwrap_err().to_string();
        assert!(err.contains("2×3 = 6 values"), "{err}");
        assert!(Map::new(vec![], (0, 0)).is_err());
    }

    #[test]
    fn sizes_that_overflow_or_are_empty_are_errors_not_panics() {
        for size in [(usize::MAX, 2), (1 << 40, 1 << 40), (0, 3)] {
            let err = Map::new(vec![], size).unwrap_err().to_string();
            assert!(err.contains("map size"), "{size:?}: {err}");
            assert!(Map::filled(0.0, size).is_err(), "{size:?}");
            assert!(Map::filled(0.0, (2, 2)).unwrap().resize_bilinear(size).is_err(), "{size:?}");
        }
        for dims in [(2, 0, 0), (1, 0, 5), (usize::MAX, 2, 2)] {
            assert!(Map::reduce_channels(&[], dims, Reduction::Sum).is_err(), "{dims:?}");
        }
        assert!(Map::luminance(&RgbImage::new(0, 0)).is_err());
        assert_eq!(Map::luminance(&RgbImage::new(3, 2)).unwrap().size(), (2, 3));
    }

    #[test]
    fn channel_reductions() {
        let v = [1.0, -2.0, -3.0, 0.5];
        let sum = Map::reduce_channels(&v, (2, 1, 2), Reduction::Sum).unwrap();
        assert_eq!(sum.values(), &[-2.0, -1.5]);
        let abs_max = Map::reduce_channels(&v, (2, 1, 2), Reduction::AbsMax).unwrap();
        assert_eq!(abs_max.values(), &[3.0, 2.0]);
        let abs_sum = Map::reduce_channels(&v, (2, 1, 2), Reduction::AbsSum).unwrap();
        assert_eq!(abs_sum.values(), &[4.0, 2.5]);
    }

    #[test]
    fn signs_follow_captum() {
        let m = Map::new(vec![-2.0, 0.0, 3.0], (1, 3)).unwrap();
        assert_eq!(m.clone().with_sign(Sign::All).values(), &[-2.0, 0.0, 3.0]);
        assert_eq!(m.clone().with_sign(Sign::Positive).values(), &[0.0, 0.0, 3.0]);
        assert_eq!(m.clone().with_sign(Sign::Negative).values(), &[2.0, 0.0, 0.0]);
        assert_eq!(m.with_sign(Sign::Absolute).values(), &[2.0, 0.0, 3.0]);
    }

    #[test]
    fn tensors_of_attributions_split_into_maps() {
        let t = Tensor::arange(0f32, 24.0, &Device::Cpu).unwrap().reshape((2, 1, 3, 2, 2)).unwrap();
        let maps = Map::batch_from_tensor(&t, Reduction::Sum).unwrap();
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].len(), 1);
        // Channels 0, 4, 8 of the first image: 0 + 4 + 8 = 12 at the first pixel.
        assert_eq!(maps[0][0].values(), &[12.0, 15.0, 18.0, 21.0]);
        assert_eq!(maps[1][0].values(), &[48.0, 51.0, 54.0, 57.0]);
        let bad = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(Map::batch_from_tensor(&bad, Reduction::Sum).is_err());
    }

    #[test]
    fn nearest_resize_repeats_pixels() {
        let m = Map::new(vec![1.0, 2.0, 3.0, 4.0], (2, 2)).unwrap();
        let big = m.resize_nearest((4, 4)).unwrap();
        assert_eq!(big.values(), &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn bilinear_resize_of_a_constant_is_constant_and_identity_is_exact() {
        let m = Map::filled(0.25, (3, 5)).unwrap();
        let r = m.resize_bilinear((7, 2)).unwrap();
        assert!(r.values().iter().all(|&v| v == 0.25));
        let m = Map::new((0..12).map(|v| v as f32).collect(), (3, 4)).unwrap();
        assert_eq!(m.resize_bilinear((3, 4)).unwrap(), m);
    }
}
