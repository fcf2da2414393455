//! Reading the images or the tensor file a command works on.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{Device, Tensor};
use gaze_models::{load_image, load_input_tensor, Classifier};
use image::RgbImage;

use crate::UsageError;

/// A batch ready for the model, with what the user named it by.
pub struct Batch {
    /// `[N, 3, H, W]`, preprocessed.
    pub input: Tensor,
    /// A stem per image: the file stem, or `input-<n>` for a tensor file.
    pub stems: Vec<String>,
    /// The images at the model's input size (none for a tensor file).
    pub images: Vec<RgbImage>,
}

/// Reads `images` through the model's preprocessing, or the tensor `input` from a safetensors file.
pub fn read_batch(model: &dyn Classifier, images: &[PathBuf], tensor_file: Option<&Path>) -> Result<Batch> {
    let device = model.device().clone();
    match (images.is_empty(), tensor_file) {
        (true, None) => Err(UsageError("give at least one IMAGE or --input FILE.safetensors".into()).into()),
        (false, Some(_)) => Err(UsageError("give IMAGE files or --input FILE, not both".into()).into()),
        (true, Some(path)) => read_tensor_file(model, path, &device),
        (false, None) => {
            let pre = model.preprocess();
            let mut inputs = Vec::with_capacity(images.len());
            let mut resized = Vec::with_capacity(images.len());
            let mut stems = Vec::with_capacity(images.len());
            for path in images {
                let image = load_image(path)?;
                let small = pre.resize(&image);
                inputs.push(pre.normalize(&small, &device)?);
                resized.push(small);
                stems.push(path.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_string());
            }
            Ok(Batch { input: Tensor::stack(&inputs, 0)?, stems, images: resized })
        }
    }
}

fn read_tensor_file(model: &dyn Classifier, path: &Path, device: &Device) -> Result<Batch> {
    let [channels, _, _] = model.input_shape();
    let input = load_input_tensor(path, channels, device)?;
    let n = input.dim(0)?;
    Ok(Batch { input, stems: (0..n).map(|i| format!("input-{i}")).collect(), images: Vec::new() })
}
