//! Image decoding and per-model preprocessing.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits, RgbImage};

use crate::{Error, Result};

/// The largest image side gaze decodes, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory the decoder may allocate for one image, in bytes.
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// How an image becomes a model input `[3, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Preprocess {
    /// torchvision's ImageNet transform: resize the shorter side to `resize` (bilinear), centre-crop
    /// `crop`×`crop`, scale to [0, 1], then `(x − mean) / std` per channel.
    Torchvision { resize: u32, crop: u32, mean: [f32; 3], std: [f32; 3] },
    /// Keras's `caffe` mode (VGG16, ResNet50 in Keras): resize to `size`×`size`, RGB → BGR, subtract
    /// the ImageNet BGR means, no scaling.
    Caffe { size: u32 },
    /// Keras's `tf` mode (Xception): resize to `size`×`size`, scale to [−1, 1].
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
                let (nw, nh) = if w <= h {
                    (*resize, ((*resize as u64 * h as u64) / w.max(1) as u64) as u32)
                } else {
                    (((*resize as u64 * w as u64) / h.max(1) as u64) as u32, *resize)
                };
                let resized = image::imageops::resize(image, nw.max(1), nh.max(1), FilterType::Triangle);
                let left = (nw.saturating_sub(*crop) as f64 / 2.0).round() as u32;
                let top = (nh.saturating_sub(*crop) as f64 / 2.0).round() as u32;
                image::imageops::crop_imm(&resized, left, top, (*crop).min(nw), (*crop).min(nh)).to_image()
            }
            Preprocess::Caffe { size } | Preprocess::Tf { size } => {
                image::imageops::resize(image, *size, *size, FilterType::Triangle)
            }
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
        self.normalize(&self.resize(image), device)
    }
}

/// Decodes an image file with size limits, converting grayscale, alpha and 16-bit images to 8-bit
/// RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bad = |reason: String| Error::Image { path: path.to_path_buf(), reason };
    let mut reader = ImageReader::open(path)
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })?
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read the file ({e})")))?;
    if reader.format().is_none() {
        return Err(bad("not a recognised image format; expected PNG or JPEG".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let image: DynamicImage = reader.decode().map_err(|e| bad(format!("cannot decode ({e})")))?;
    Ok(image.to_rgb8())
}
