//! The output folder of `gaze explain`: pictures and the raw file, written atomically, never
//! replacing a file unless asked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use gaze_core::Attribution;
use gaze_render::{save_png, write_atomic, RgbaImage, WriteOptions};
use safetensors::tensor::TensorView;

pub struct OutputDir {
    dir: PathBuf,
    opts: WriteOptions,
}

impl OutputDir {
    /// Creates the folder (and its parents) if needed.
    pub fn create(dir: &Path, overwrite: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| gaze_core::Error::Io { path: dir.to_path_buf(), source })?;
        Ok(OutputDir { dir: dir.to_path_buf(), opts: WriteOptions { overwrite } })
    }

    /// Writes a picture as `DIR/name`.
    pub fn write_png(&self, name: &str, image: &RgbaImage) -> Result<PathBuf> {
        let path = self.dir.join(name);
        save_png(&path, image, self.opts)?;
        Ok(path)
    }

    /// Writes `DIR/attributions.safetensors`: `attribution` f32 [N, T, ...] before any display step,
    /// `targets` i64 [N, T], and the metadata (method, model, layers, score, every option).
    pub fn write_raw(&self, attribution: &Attribution, method: &str) -> Result<PathBuf> {
        let path = self.dir.join("attributions.safetensors");
        let values = attribution.values.to_dtype(DType::F32)?.contiguous()?;
        let targets: Vec<i64> = attribution.targets.iter().flatten().map(|&c| c as i64).collect();
        let n = attribution.batch();
        let t = attribution.targets_per_image();
        let targets = Tensor::from_vec(targets, (n, t), &candle_core::Device::Cpu)?;
        let value_bytes = bytes_f32(&values)?;
        let target_bytes: Vec<u8> =
            targets.flatten_all()?.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            ("attribution", TensorView::new(safetensors::Dtype::F32, values.dims().to_vec(), &value_bytes)?),
            ("targets", TensorView::new(safetensors::Dtype::I64, vec![n, t], &target_bytes)?),
        ];
        let meta = &attribution.meta;
        let mut metadata: HashMap<String, String> = meta.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        metadata.insert("method".into(), method.into());
        metadata.insert("layers".into(), meta.layers.join(","));
        metadata.insert("score".into(), meta.score.clone());
        metadata.insert("resolution".into(), meta.resolution.name().into());
        let bytes = safetensors::serialize(views, Some(metadata)).context("serialising the attributions")?;
        let bytes = sorted_header(bytes)?;
        write_atomic(&path, self.opts, |w| std::io::Write::write_all(w, &bytes))?;
        Ok(path)
    }
}

/// The safetensors file `bytes` with its header's keys (tensors and metadata) in sorted order.
///
/// `safetensors::serialize` writes the metadata map in its hash order, which changes from run to
/// run; sorting makes the same run write the same bytes.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let length = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize);
    let Some(end) = length.and_then(|n| n.checked_add(8)).filter(|end| *end <= bytes.len()) else {
        anyhow::bail!("serialising the attributions: the safetensors header is malformed");
    };
    // serde_json's map is ordered by key, so parsing and writing again sorts every object.
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).context("re-reading the safetensors header")?;
    let mut text = serde_json::to_vec(&header)?;
    // The data starts on an 8-byte boundary, as safetensors aligns it.
    while (8 + text.len()) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend(&bytes[end..]);
    Ok(out)
}

fn bytes_f32(t: &Tensor) -> Result<Vec<u8>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect())
}
