use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use safetensors::SafeTensors;

use crate::{Error, Result};

/// A safetensors checkpoint: its tensors' shapes (to read widths and class counts) and a
/// [`VarBuilder`] over its weights, in f32 (or f64 after [`Checkpoint::to_dtype`]).
pub struct Checkpoint {
    path: PathBuf,
    shapes: HashMap<String, Vec<usize>>,
    metadata: HashMap<String, String>,
    tensors: HashMap<String, Tensor>,
    dtype: DType,
}

impl Checkpoint {
    /// Reads a checkpoint from a file.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, path, device)
    }

    /// Reads a checkpoint from bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Self> {
        let bad = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
        let mut shapes = HashMap::new();
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let dtype = match view.dtype() {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                safetensors::Dtype::F64 => DType::F64,
                other => {
                    return Err(bad(format!("tensor `{name}` has dtype {other:?}; expected f32, f16, bf16 or f64")))
                }
            };
            let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))?
                .to_dtype(DType::F32)?;
            let non_finite = count_non_finite(&t)?;
            if non_finite > 0 {
                return Err(bad(format!("tensor `{name}` contains {non_finite} NaN or infinite values")));
            }
            let t = t.to_device(device)?;
            shapes.insert(name.clone(), view.shape().to_vec());
            tensors.insert(name, t);
        }
        Ok(Checkpoint { path: path.to_path_buf(), shapes, metadata, tensors, dtype: DType::F32 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint's `__metadata__` entries.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Whether the checkpoint has a tensor named `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.shapes.contains_key(key)
    }

    /// The shape of `key`; an error naming the missing key otherwise.
    pub fn shape(&self, key: &str) -> Result<&[usize]> {
        self.shapes.get(key).map(Vec::as_slice).ok_or_else(|| Error::Checkpoint {
            path: self.path.clone(),
            reason: format!("missing tensor `{key}`; is this a checkpoint of the right architecture?"),
        })
    }

    /// The shape of `key`, checked to have `rank` dimensions.
    pub fn shape_n(&self, key: &str, rank: usize) -> Result<&[usize]> {
        let s = self.shape(key)?;
        if s.len() != rank {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                reason: format!("tensor `{key}` has shape {s:?}; expected {rank} dimensions"),
            });
        }
        Ok(s)
    }

    /// The checkpoint with its weights in `dtype` (f32 or f64), so that the models built from it
    /// compute in that type: f64 shows how much of a result float32 rounding decides.
    pub fn to_dtype(mut self, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::InvalidOption {
                option: "dtype".into(),
                value: format!("{dtype:?}"),
                expected: "F32 or F64 (the types gaze's ops compute in)".into(),
            });
        }
        for t in self.tensors.values_mut() {
            *t = t.to_dtype(dtype)?;
        }
        self.dtype = dtype;
        Ok(self)
    }

    /// A [`VarBuilder`] over the weights, in f32 (or the type [`Checkpoint::to_dtype`] chose).
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), self.dtype, device)
    }

    /// Maps a candle error from loading into an error that names this checkpoint.
    pub fn fit_error(&self, e: candle_core::Error) -> Error {
        Error::Checkpoint { path: self.path.clone(), reason: format!("does not fit the architecture: {e}") }
    }
}

/// The number of NaN or infinite values of an f32 tensor on the CPU, in one pass over its storage
/// (without a copy when the tensor is contiguous, as a freshly loaded one is).
fn count_non_finite(t: &Tensor) -> Result<usize> {
    let count = |values: &[f32]| values.iter().filter(|v| !v.is_finite()).count();
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(count(&cpu.as_slice::<f32>()?[start..end]));
        }
    }
    Ok(count(&t.flatten_all()?.to_vec1::<f32>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint_bytes(values: Vec<f32>) -> Vec<u8> {
        let t = Tensor::from_vec(values, (2, 3), &Device::Cpu).unwrap();
        safetensors::serialize([("conv1.weight", &t)], None).unwrap()
    }

    #[test]
    fn non_finite_weights_are_rejected_with_the_tensor_name_and_count() {
        let bytes = checkpoint_bytes(vec![1.0, f32::NAN, f32::INFINITY, 0.0, f32::NEG_INFINITY, 2.0]);
        let err = Checkpoint::from_bytes(&bytes, Path::new("w.safetensors"), &Device::Cpu).err().unwrap().to_string();
        assert_eq!(err, "checkpoint w.safetensors: tensor `conv1.weight` contains 3 NaN or infinite values");
    }

    #[test]
    fn finite_weights_load() {
        let bytes = checkpoint_bytes(vec![1.0, -2.0, 3.5, 0.0, f32::MAX, f32::MIN_POSITIVE]);
        let c = Checkpoint::from_bytes(&bytes, Path::new("w.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(c.shape("conv1.weight").unwrap(), &[2, 3]);
    }

    #[test]
    fn non_finite_half_precision_weights_are_rejected_too() {
        let t = Tensor::from_vec(vec![1.0f32, f32::NAN, 0.5, 2.0], (4,), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let bytes = safetensors::serialize([("fc.bias", &t)], None).unwrap();
        let err = Checkpoint::from_bytes(&bytes, Path::new("h.safetensors"), &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("tensor `fc.bias` contains 1 NaN or infinite values"), "{err}");
    }
}
