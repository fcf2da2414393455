//! From maps to pictures: colouring, blending, and images from tensors.

use candle_core::Tensor;
use gaze_core::{Error, Result};
use image::{Rgb, RgbImage, Rgba, RgbaImage};

use crate::colormap::to_byte;
use crate::map::tensor_values;
use crate::{Colormap, Limits, Map, Normalize};

/// Colours `map` with `cmap` after normalising it with `norm`: one RGBA pixel per value.
///
/// The alpha channel is the colormap's (opaque except for [`Colormap::RedTransparentBlue`]; NaN
/// values are fully transparent).
pub fn colorize(map: &Map, cmap: Colormap, norm: &Normalize) -> Result<RgbaImage> {
    let limits = norm.limits(map.values())?;
    Ok(colorize_with_limits(map, cmap, &limits))
}

/// Colours `map` with `cmap` between given limits (for example limits shared by several maps).
pub fn colorize_with_limits(map: &Map, cmap: Colormap, limits: &Limits) -> RgbaImage {
    let (h, w) = map.size();
    let mut out = RgbaImage::new(w as u32, h as u32);
    for (pixel, &v) in out.pixels_mut().zip(map.values()) {
        *pixel = Rgba(cmap.rgba(limits.position(v)));
    }
    out
}

/// Blends `heat` over `image`: each pixel becomes `(1 − a)·image + a·heat` with
/// `a = heat_weight · alpha(heat)`.
///
/// With an opaque colormap this is pytorch-grad-cam's `show_cam_on_image` with
/// `image_weight = 1 − heat_weight` (its default is 0.5), without its final division by the
/// brightest pixel; with a transparent colormap it is the usual "over" compositing, scaled by
/// `heat_weight`.
/// The weights always sum to one, so no pixel saturates (unlike tf-explain 0.3.1's
/// `addWeighted(image, 0.7, heatmap, 1.0)`).
/// `heat_weight` must lie in `[0, 1]` and both pictures must have the same size.
pub fn overlay(image: &RgbImage, heat: &RgbaImage, heat_weight: f32) -> Result<RgbImage> {
    if !(0.0..=1.0).contains(&heat_weight) {
        return Err(Error::InvalidOption {
            option: "heat weight".into(),
            value: heat_weight.to_string(),
            expected: "a weight in [0, 1]".into(),
        });
    }
    if image.dimensions() != heat.dimensions() {
        return Err(Error::Shape {
            what: "heat map for the overlay".into(),
            expected: format!(
                "the image's size {}×{} (height×width); resize the map first",
                image.height(),
                image.width()
            ),
            got: vec![heat.height() as usize, heat.width() as usize],
        });
    }
    let mut out = image.clone();
    for (o, h) in out.pixels_mut().zip(heat.pixels()) {
        let a = heat_weight * f32::from(h[3]) / 255.0;
        for c in 0..3 {
            let v = (1.0 - a) * f32::from(o[c]) + a * f32::from(h[c]);
            o[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

/// Options of [`overlay_map`]: pytorch-grad-cam's `show_cam_on_image` look by default
/// (OpenCV's jet, min-max, half image and half heat).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlayOptions {
    pub cmap: Colormap,
    pub normalize: Normalize,
    /// The weight of the heat map, in `[0, 1]`; the image gets `1 − heat_weight`.
    pub heat_weight: f32,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        OverlayOptions { cmap: Colormap::JetOpencv, normalize: Normalize::MinMax, heat_weight: 0.5 }
    }
}

/// Draws `map` over `image`: finds the limits on the map at its own resolution, resizes it to the
/// image bilinearly ([`Map::resize_bilinear`]), colours it and blends it ([`overlay`]).
///
/// This is the order of pytorch-grad-cam's `scale_cam_image` then `show_cam_on_image`: normalise,
/// then upsample, so that the resized map keeps the colours of the values the method produced.
pub fn overlay_map(image: &RgbImage, map: &Map, opts: &OverlayOptions) -> Result<RgbImage> {
    let limits = opts.normalize.limits(map.values())?;
    let size = (image.height() as usize, image.width() as usize);
    let resized = map.resize_bilinear(size)?;
    let heat = colorize_with_limits(&resized, opts.cmap, &limits);
    overlay(image, &heat, opts.heat_weight)
}

/// `image` shown at `opacity` over white: `opacity·image + (1 − opacity)·white`, the way
/// matplotlib draws an image with `alpha` on an empty white axis.
pub fn fade(image: &RgbImage, opacity: f32) -> Result<RgbImage> {
    if !(0.0..=1.0).contains(&opacity) {
        return Err(Error::InvalidOption {
            option: "opacity".into(),
            value: opacity.to_string(),
            expected: "an opacity in [0, 1]".into(),
        });
    }
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            let v = opacity * f32::from(p[c]) + (1.0 - opacity) * 255.0;
            p[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

/// A grayscale picture of `image` for use under a heat map: its luminance ([`Map::luminance`])
/// stretched from its darkest to its brightest pixel (as matplotlib's `imshow(gray, cmap="gray")`
/// does), shown at `opacity` over white ([`fade`]).
/// SHAP's `image_plot` uses an opacity of 0.15.
pub fn grayscale_underlay(image: &RgbImage, opacity: f32) -> Result<RgbImage> {
    let gray = colorize(&Map::luminance(image)?, Colormap::Gray, &Normalize::MinMax)?;
    fade(&rgba_to_rgb(&gray, Rgb([255, 255, 255])), opacity)
}

/// Flattens an RGBA picture onto a solid background colour.
pub fn rgba_to_rgb(image: &RgbaImage, background: Rgb<u8>) -> RgbImage {
    let mut out = RgbImage::new(image.width(), image.height());
    for (o, p) in out.pixels_mut().zip(image.pixels()) {
        let a = f32::from(p[3]) / 255.0;
        for c in 0..3 {
            let v = a * f32::from(p[c]) + (1.0 - a) * f32::from(background[c]);
            o[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The range the values of an image tensor are in, for [`image_from_tensor`].
///
/// Saying it explicitly avoids tf-explain's fault of guessing from the values, which multiplies a
/// float image already in `[0, 255]` by 255 again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelRange {
    /// Floats in `[0, 1]`.
    Unit,
    /// Values in `[0, 255]`, floats or whole numbers.
    Byte,
    /// Floats in `[−1, 1]` (Xception's and Inception's preprocessing).
    Signed,
    /// Any values, stretched from the smallest to the largest (for preprocessed model inputs).
    MinMax,
}

/// Turns an image tensor `[3, H, W]` (or `[1, H, W]`, `[H, W]` for grayscale), of any float dtype,
/// into an RGB picture, reading its values in the stated `range`.
///
/// Values outside the range by more than 1 % of its width are an error that names the range the
/// values actually span, so that an image in `[0, 255]` read as `[0, 1]` fails loudly instead of
/// showing white.
pub fn image_from_tensor(t: &Tensor, range: PixelRange) -> Result<RgbImage> {
    let (c, h, w) = match *t.dims() {
        [c @ (1 | 3), h, w] => (c, h, w),
        [h, w] => (1, h, w),
        _ => {
            return Err(Error::Shape {
                what: "image tensor".into(),
                expected: "[3, H, W], [1, H, W] or [H, W]".into(),
                got: t.dims().to_vec(),
            })
        }
    };
    if h == 0 || w == 0 {
        return Err(Error::Shape {
            what: "image tensor".into(),
            expected: "a height and width of at least 1".into(),
            got: t.dims().to_vec(),
        });
    }
    let values = tensor_values(t)?;
    let non_finite = values.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        return Err(Error::NonFinite { what: "image tensor".into(), count: non_finite });
    }
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (from, to) = match range {
        PixelRange::Unit => (0.0, 1.0),
        PixelRange::Byte => (0.0, 255.0),
        PixelRange::Signed => (-1.0, 1.0),
        PixelRange::MinMax => (lo, hi),
    };
    let slack = 0.01 * (to - from);
    if range != PixelRange::MinMax && (lo < from - slack || hi > to + slack) {
        let hint = if hi > 1.5 && range != PixelRange::Byte {
            "; an image with values up to 255 is PixelRange::Byte"
        } else {
            ""
        };
        return Err(Error::InvalidOption {
            option: "pixel range".into(),
            value: format!("{range:?}"),
            expected: format!("a range holding the image's values, which span [{lo}, {hi}]{hint}"),
        });
    }
    let span = to - from;
    let plane = h * w;
    let mut out = RgbImage::new(w as u32, h as u32);
    for (i, p) in out.pixels_mut().enumerate() {
        for ch in 0..3 {
            let v = values[if c == 3 { ch * plane + i } else { i }];
            p[ch] = if span > 0.0 { to_byte((v - from) / span) } else { 0 };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn overlay_weights_sum_to_one() {
        let image = RgbImage::from_pixel(2, 1, Rgb([200, 100, 0]));
        let heat = RgbaImage::from_pixel(2, 1, Rgba([0, 0, 255, 255]));
        let out = overlay(&image, &heat, 0.5).unwrap();
        assert_eq!(out.get_pixel(0, 0), &Rgb([100, 50, 128]));
        // A transparent heat pixel leaves the image untouched.
        let clear = RgbaImage::from_pixel(2, 1, Rgba([0, 0, 255, 0]));
        assert_eq!(overlay(&image, &clear, 1.0).unwrap(), image);
        assert!(overlay(&image, &heat, 1.5).is_err());
        let small = RgbaImage::new(1, 1);
        let err = overlay(&image, &small, 0.5).unwrap_err().to_string();
        assert!(err.contains("resize the map first"), "{err}");
    }

    #[test]
    fn a_constant_map_overlays_without_nan() {
        let image = RgbImage::from_pixel(4, 4, Rgb([10, 20, 30]));
        let map = Map::filled(3.0, (2, 2)).unwrap();
        let out = overlay_map(&image, &map, &OverlayOptions::default()).unwrap();
        // Min-max on a constant map puts every value at the colormap's start (OpenCV jet: dark blue).
        let start = Colormap::JetOpencv.rgba(0.0);
        let want = Rgb([
            ((10.0 + f32::from(start[0])) / 2.0).round() as u8,
            ((20.0 + f32::from(start[1])) / 2.0).round() as u8,
            ((30.0 + f32::from(start[2])) / 2.0).round() as u8,
        ]);
        assert!(out.pixels().all(|p| *p == want), "{:?}", out.get_pixel(0, 0));
    }

    #[test]
    fn image_tensors_are_read_in_their_stated_range() {
        let dev = Device::Cpu;
        let t = Tensor::new(&[[[0.0f32, 127.5]], [[255.0, 0.0]], [[51.0, 255.0]]], &dev).unwrap();
        let img = image_from_tensor(&t, PixelRange::Byte).unwrap();
        assert_eq!(img.get_pixel(0, 0), &Rgb([0, 255, 51]));
        assert_eq!(img.get_pixel(1, 0), &Rgb([128, 0, 255]));
        // The same floats read as [0, 1]: the mistake tf-explain makes is an error here.
        let err = image_from_tensor(&t, PixelRange::Unit).unwrap_err().to_string();
        assert!(err.contains("[0, 255]") && err.contains("PixelRange::Byte"), "{err}");
        let signed = Tensor::new(&[[-1.0f32, 0.0, 1.0]], &dev).unwrap();
        let img = image_from_tensor(&signed, PixelRange::Signed).unwrap();
        assert_eq!(img.get_pixel(1, 0), &Rgb([128, 128, 128]));
        let img = image_from_tensor(&(signed * 7.0).unwrap(), PixelRange::MinMax).unwrap();
        assert_eq!(img.get_pixel(2, 0), &Rgb([255, 255, 255]));
    }

    #[test]
    fn the_underlay_is_stretched_and_faded() {
        let mut image = RgbImage::from_pixel(2, 1, Rgb([100, 100, 100]));
        image.put_pixel(1, 0, Rgb([110, 110, 110]));
        let under = grayscale_underlay(&image, 0.15).unwrap();
        // Darkest pixel: black at 15 % over white; brightest: white.
        assert_eq!(under.get_pixel(0, 0), &Rgb([217, 217, 217]));
        assert_eq!(under.get_pixel(1, 0), &Rgb([255, 255, 255]));
    }
}
