//! Reading the images or the tensor file a command works on.

use std::io::Read;
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
                stems.push(file_stem(path));
            }
            Ok(Batch { input: Tensor::stack(&inputs, 0)?, stems, images: resized })
        }
    }
}

/// An image file's stem, as its pictures are named (`image` when it has none in UTF-8).
pub fn file_stem(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_string()
}

/// The image files named by `paths`: a file as it is, a folder as its PNG and JPEG files (by name,
/// not descending into sub-folders).
/// A folder without any is an error naming it.
pub fn image_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| gaze_core::Error::Io { path: path.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.is_file()
                    && f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            })
            .collect();
        if inside.is_empty() {
            return Err(UsageError(format!("the folder {} holds no PNG or JPEG images", path.display())).into());
        }
        inside.sort();
        files.extend(inside);
    }
    Ok(files)
}

fn read_tensor_file(model: &dyn Classifier, path: &Path, device: &Device) -> Result<Batch> {
    let [channels, _, _] = model.input_shape();
    let input = load_input_tensor(path, channels, device)?;
    let n = input.dim(0)?;
    Ok(Batch { input, stems: (0..n).map(|i| format!("input-{i}")).collect(), images: Vec::new() })
}

/// What a file named on the command line holds, judged by its first bytes, not its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An image the decoder recognises (PNG or JPEG).
    Image,
    /// A safetensors file: an 8-byte little-endian header length, then a JSON header starting with
    /// `{` that fits in the file.
    Tensors,
    /// Neither.
    Other,
}

/// Sniffs `path`: a safetensors file by its header, an image by the decoder's format guess.
/// Errors only when the file cannot be read, naming it.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    let io = |source| gaze_core::Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(9);
    file.by_ref().take(9).read_to_end(&mut head).map_err(io)?;
    if is_safetensors_head(&head, len) {
        return Ok(FileKind::Tensors);
    }
    let guess = image::ImageReader::open(path).map_err(io)?.with_guessed_format().map_err(io)?.format();
    Ok(if guess.is_some() { FileKind::Image } else { FileKind::Other })
}

/// Whether the first bytes `head` of a file of `len` bytes begin a safetensors file: a header length
/// `n` (8 bytes, little-endian) with `8 + n` within the file, and a header that opens with `{`.
fn is_safetensors_head(head: &[u8], len: u64) -> bool {
    let Some((size, rest)) = head.split_first_chunk::<8>() else { return false };
    let n = u64::from_le_bytes(*size);
    n >= 2 && n.checked_add(8).is_some_and(|end| end <= len) && rest.first() == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safetensors_head_is_told_by_its_length_and_brace() {
        let mut head = 20u64.to_le_bytes().to_vec();
        head.push(b'{');
        assert!(is_safetensors_head(&head, 28));
        assert!(is_safetensors_head(&head, 1000));
        assert!(!is_safetensors_head(&head, 27), "a header longer than the file");
        head[8] = b'[';
        assert!(!is_safetensors_head(&head, 1000), "a header that is not a JSON object");
        assert!(!is_safetensors_head(b"\x89PNG\r\n\x1a\n\0", 1000));
        assert!(!is_safetensors_head(&u64::MAX.to_le_bytes(), u64::MAX), "no room for the brace");
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.push(b'{');
        assert!(!is_safetensors_head(&huge, u64::MAX), "a length that overflows");
    }
}
