//! Helpers shared by the model zoo's tests: fixture paths and loading.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// A file under the repository's `fixtures/` folder.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

/// The width-reduced checkpoint of `model` (`vgg16`, `resnet50` or `xception`).
pub fn weights(model: &str) -> PathBuf {
    fixture(&format!("models/{model}.safetensors"))
}

/// Every tensor of a safetensors file, on the CPU, in `dtype`.
pub fn tensors(path: &std::path::Path, dtype: DType) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(dtype).unwrap()))
        .collect()
}

/// The input, logits and recorded activations PyTorch produced for `model`.
pub fn io(model: &str) -> HashMap<String, Tensor> {
    tensors(&fixture(&format!("models/{model}.io.safetensors")), DType::F32)
}

/// A scratch folder of its own for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gaze-models-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
