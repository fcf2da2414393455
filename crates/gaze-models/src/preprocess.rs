//! Image decoding and per-model preprocessing.
//!
//! Resizing follows Pillow, which torchvision and Keras resize with, bit for bit: the convolution
//! resampler with 8-bit fixed-point weights and a rounded 8-bit intermediate image for bilinear and
//! bicubic (which average over the whole footprint when shrinking, "antialiasing"), and Pillow's
//! accumulated sampling positions for nearest neighbour.
//! So a tensor made here equals the one PyTorch or Keras makes from the same file.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::{Error, Result};

/// The largest image side gaze decodes, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory the decoder may allocate for one image, in bytes.
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// How an image becomes a model input `[3, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Preprocess {
    /// torchvision's ImageNet transform: resize the shorter side to `resize` (Pillow's bilinear,
    /// which antialiases), centre-crop `crop`×`crop` (offsets rounded half to even, as Python's
    /// `round`), scale to [0, 1], then `(x − mean) / std` per channel.
    Torchvision { resize: u32, crop: u32, mean: [f32; 3], std: [f32; 3] },
    /// Keras's `caffe` mode (VGG16, ResNet50 in Keras): `load_img` to `size`×`size` (Pillow's
    /// nearest neighbour, no crop), RGB → BGR, subtract the ImageNet BGR means, no scaling.
    Caffe { size: u32 },
    /// Keras's `tf` mode (Xception): `load_img` to `size`×`size` (Pillow's nearest neighbour, no
    /// crop), scale to [−1, 1].
    Tf { size: u32 },
}

impl Preprocess {
    /// torchvision's ImageNet transform at 224.
    pub fn imagenet_torchvision() -> Self {
        Preprocess::Torchvision { resize: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }

    /// The model input's height and width.
    pub fn input_size(&self) -> (usize, usize) {
        let s = match self {
            Preprocess::Torchvision { crop, .. } => *crop,
            Preprocess::Caffe { size } | Preprocess::Tf { size } => *size,
        } as usize;
        (s, s)
    }

    /// The image resized (and cropped) to the model's input size, before normalisation: what a
    /// picture of the attribution is drawn over.
    pub fn resize(&self, image: &RgbImage) -> RgbImage {
        match self {
            Preprocess::Torchvision { resize, crop, .. } => {
                let (w, h) = image.dimensions();
                // torchvision's `Resize(int)`: the shorter side to `resize`, the longer one scaled
                // and truncated.
                let (nw, nh) = if w <= h {
                    (*resize, ((*resize as u64 * h as u64) / w.max(1) as u64) as u32)
                } else {
                    (((*resize as u64 * w as u64) / h.max(1) as u64) as u32, *resize)
                };
                let resized = resize_pil(image, nw.max(1), nh.max(1), Filter::Bilinear);
                let left = round_half_even_half(nw.saturating_sub(*crop));
                let top = round_half_even_half(nh.saturating_sub(*crop));
                image::imageops::crop_imm(&resized, left, top, (*crop).min(nw), (*crop).min(nh)).to_image()
            }
            Preprocess::Caffe { size } | Preprocess::Tf { size } => resize_pil(image, *size, *size, Filter::Nearest),
        }
    }

    /// Normalises an image already at the input size into `[3, H, W]` f32.
    pub fn normalize(&self, image: &RgbImage, device: &Device) -> Result<Tensor> {
        let (w, h) = image.dimensions();
        let (w, h) = (w as usize, h as usize);
        let mut data = vec![0f32; 3 * h * w];
        for (x, y, p) in image.enumerate_pixels() {
            let i = y as usize * w + x as usize;
            for c in 0..3 {
                let v = p[c] as f32;
                let (channel, value) = match self {
                    Preprocess::Torchvision { mean, std, .. } => (c, (v / 255.0 - mean[c]) / std[c]),
                    Preprocess::Caffe { .. } => {
                        const BGR_MEAN: [f32; 3] = [103.939, 116.779, 123.68];
                        (2 - c, v - BGR_MEAN[2 - c])
                    }
                    Preprocess::Tf { .. } => (c, v / 127.5 - 1.0),
                };
                data[channel * h * w + i] = value;
            }
        }
        Ok(Tensor::from_vec(data, (3, h, w), device)?)
    }

    /// Resizes and normalises: the model input `[3, H, W]`.
    pub fn apply(&self, image: &RgbImage, device: &Device) -> Result<Tensor> {
        self.validate()?;
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::Shape {
                what: "preprocessed image".into(),
                expected: "an image of at least 1×1 pixels".into(),
                got: vec![image.height() as usize, image.width() as usize],
            });
        }
        self.normalize(&self.resize(image), device)
    }

    /// Checks the sizes and statistics: every size in `1..=`[`MAX_IMAGE_SIDE`], the standard
    /// deviations positive and finite. The built-in preprocessings pass;
    /// [`apply`](Preprocess::apply) checks a hand-made one first ([`resize`](Preprocess::resize)
    /// assumes a valid one).
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, value: String, expected: String| {
            Err(Error::InvalidOption { option: format!("preprocessing {option}"), value, expected })
        };
        let sizes: &[(&str, u32)] = match self {
            Preprocess::Torchvision { resize, crop, .. } => &[("resize", *resize), ("crop", *crop)],
            Preprocess::Caffe { size } | Preprocess::Tf { size } => &[("size", *size)],
        };
        for &(name, v) in sizes {
            if v == 0 || v > MAX_IMAGE_SIDE {
                return bad(name, v.to_string(), format!("a side of 1 to {MAX_IMAGE_SIDE} pixels"));
            }
        }
        if let Preprocess::Torchvision { std, .. } = self {
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return bad("std", s.to_string(), "positive, finite standard deviations".into());
            }
        }
        Ok(())
    }
}

/// `round(d / 2)` with Python's rounding (half to even), as torchvision's `CenterCrop` computes
/// its offsets.
fn round_half_even_half(d: u32) -> u32 {
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// A resampling filter, as Pillow defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.NEAREST`: Keras's `load_img` default.
    Nearest,
    /// `Image.BILINEAR`: torchvision's `Resize` default (a triangle filter widened when shrinking).
    Bilinear,
    /// `Image.BICUBIC` (Keys' cubic with a = −0.5, widened when shrinking): timm's usual choice.
    Bicubic,
}

/// Resizes `image` to `width`×`height` exactly as Pillow's `Image.resize(size, filter)` does.
pub fn resize_pil(image: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = image.dimensions();
    if (w, h) == (width, height) || width == 0 || height == 0 || w == 0 || h == 0 {
        return if (w, h) == (width, height) { image.clone() } else { RgbImage::new(width, height) };
    }
    match filter {
        Filter::Nearest => resize_nearest(image, width, height),
        Filter::Bilinear | Filter::Bicubic => {
            let mut out = image.clone();
            if width != w {
                out = resample_horizontal(&out, width, filter);
            }
            if height != h {
                out = resample_vertical(&out, height, filter);
            }
            out
        }
    }
}

/// Pillow's `ImagingScaleAffine`: the source of output pixel `x` is `floor(s/2 + x·s)` with
/// `s = in / out`, the position accumulated in f64 step by step as Pillow does.
fn resize_nearest(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let positions = |inp: u32, out: u32| -> Vec<Option<u32>> {
        let step = inp as f64 / out as f64;
        let mut at = step * 0.5;
        (0..out)
            .map(|_| {
                let i = if at < 0.0 { -1 } else { at as i64 };
                at += step;
                (i >= 0 && i < inp as i64).then_some(i as u32)
            })
            .collect()
    };
    let xs = positions(w, width);
    let ys = positions(h, height);
    let mut out = RgbImage::new(width, height);
    for (y, sy) in ys.iter().enumerate() {
        let Some(sy) = sy else { continue };
        for (x, sx) in xs.iter().enumerate() {
            if let Some(sx) = sx {
                out.put_pixel(x as u32, y as u32, *image.get_pixel(*sx, *sy));
            }
        }
    }
    out
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc`: for each output position, the first
/// input index and the fixed-point weights of the inputs it averages.
fn coefficients(in_size: u32, out_size: u32, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let (kernel, support): (fn(f64) -> f64, f64) = match filter {
        Filter::Bicubic => (bicubic, 2.0),
        _ => (triangle, 1.0),
    };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let raw: Vec<f64> = (xmin..xmax).map(|x| kernel((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = raw.iter().sum();
            let fixed = raw
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let scaled = k * (1u32 << PRECISION_BITS) as f64;
                    (if k < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
                })
                .collect();
            (xmin as usize, fixed)
        })
        .collect()
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `clip8`: the fixed-point sum back to a byte.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The weighted sum of `len` samples of channel `c`, `at(i)` giving sample `i`, rounded as Pillow.
fn weighted(weights: &[i32], at: impl Fn(usize) -> u8) -> u8 {
    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
    for (i, &k) in weights.iter().enumerate() {
        acc += at(i) as i64 * k as i64;
    }
    clip8(acc)
}

fn resample_horizontal(image: &RgbImage, width: u32, filter: Filter) -> RgbImage {
    let (w, h) = image.dimensions();
    let coeffs = coefficients(w, width, filter);
    let mut out = RgbImage::new(width, h);
    for y in 0..h {
        for (x, (start, weights)) in coeffs.iter().enumerate() {
            let mut p = [0u8; 3];
            for (c, v) in p.iter_mut().enumerate() {
                *v = weighted(weights, |i| image.get_pixel((start + i) as u32, y)[c]);
            }
            out.put_pixel(x as u32, y, image::Rgb(p));
        }
    }
    out
}

fn resample_vertical(image: &RgbImage, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = image.dimensions();
    let coeffs = coefficients(h, height, filter);
    let mut out = RgbImage::new(w, height);
    for (y, (start, weights)) in coeffs.iter().enumerate() {
        for x in 0..w {
            let mut p = [0u8; 3];
            for (c, v) in p.iter_mut().enumerate() {
                *v = weighted(weights, |i| image.get_pixel(x, (start + i) as u32)[c]);
            }
            out.put_pixel(x, y as u32, image::Rgb(p));
        }
    }
    out
}

/// Decodes an image file with size limits, converting grayscale, alpha and 16-bit images to 8-bit
/// RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let reader = ImageReader::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    decode(reader, path)
}

/// Decodes an image held in memory exactly as [`load_image`] decodes a file (same formats, same
/// limits, same conversions); `name` names it in errors.
pub fn load_image_bytes(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    decode(ImageReader::new(Cursor::new(bytes)), name)
}

/// Guesses the format from the first bytes, reads the header, refuses an image larger than
/// [`MAX_IMAGE_SIDE`] pixels a side or than [`MAX_IMAGE_BYTES`] of decoded pixels (naming its size
/// and the limits, before any pixel memory is taken), and decodes to 8-bit RGB with the same limits
/// set on the decoder.
fn decode<R: BufRead + Seek>(reader: ImageReader<R>, path: &Path) -> Result<RgbImage> {
    let bad = |reason: String| Error::Image { path: path.to_path_buf(), reason };
    let mut reader = reader.with_guessed_format().map_err(|e| bad(format!("cannot read the file ({e})")))?;
    if reader.format().is_none() {
        return Err(bad("not a recognised image format; expected PNG or JPEG".into()));
    }
    // The decoder is made with only the memory limit, so that it reads the header and the size can
    // be checked here, with a message that names it.
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(|e| bad(format!("cannot decode ({e})")))?;
    let (width, height) = decoder.dimensions();
    let bytes = decoder.total_bytes();
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || bytes > MAX_IMAGE_BYTES {
        return Err(bad(format!(
            "the image is {width}×{height} pixels ({} decoded); gaze decodes images of at most \
             {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} pixels and {} decoded",
            human_bytes(bytes),
            human_bytes(MAX_IMAGE_BYTES)
        )));
    }
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    let decoded = limits
        .reserve(bytes)
        .and_then(|()| decoder.set_limits(limits))
        .and_then(|()| DynamicImage::from_decoder(decoder))
        .map_err(|e| bad(format!("cannot decode ({e})")))?;
    Ok(decoded.to_rgb8())
}

/// A byte count in the largest binary unit that keeps it at least 1, to one decimal (`1.5 GiB`).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Reads a preprocessed model input from a safetensors file: the tensor named `input`, shape
/// `[N, channels, H, W]` with N, H and W at least 1, stored as f32, f16, bf16 or f64, with only
/// finite values; returned as f32 on `device`.
///
/// This is what the command line's `--input FILE` reads; it bypasses decoding and preprocessing.
pub fn load_input_tensor(path: &Path, channels: usize, device: &Device) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    input_tensor_from_bytes(&bytes, path, channels, device)
}

/// [`load_input_tensor`] over the bytes of a safetensors file; `path` names it in errors.
pub fn input_tensor_from_bytes(bytes: &[u8], path: &Path, channels: usize, device: &Device) -> Result<Tensor> {
    let bad = |reason: String| Error::InputTensor { path: path.to_path_buf(), reason };
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let view = st.tensor("input").map_err(|_| {
        let mut names = st.names();
        names.sort();
        bad(format!(
            "no tensor named `input`; it has: {}",
            if names.is_empty() { "no tensors".into() } else { names.join(", ") }
        ))
    })?;
    let what = format!("tensor `input` in {}", path.display());
    let dtype = match view.dtype() {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::F64 => DType::F64,
        other => return Err(bad(format!("tensor `input` has dtype {other:?}; expected f32, f16, bf16 or f64"))),
    };
    match view.shape() {
        [n, c, h, w] if *c == channels && *n > 0 && *h > 0 && *w > 0 => {}
        other => {
            return Err(Error::Shape {
                what,
                expected: format!("[N, {channels}, H, W] with N, H and W at least 1"),
                got: other.to_vec(),
            })
        }
    }
    let input = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
        .map_err(|e| bad(format!("tensor `input`: {e}")))?
        .to_dtype(DType::F32)?;
    gaze_core::numeric::ensure_finite(&input, &what)?;
    Ok(input.to_device(device)?)
}
