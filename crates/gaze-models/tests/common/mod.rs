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

/// Under `taps` on `kind`'s fixture model: the logits, the gradient of the sum of each image's own
/// target logit (class `1 + 2n` for image `n`) with respect to the input and to the tap `deep`, and
/// the layers passed, for the fused-op tests to compare bit for bit.
pub fn fused_run(
    kind: gaze_models::ModelKind,
    deep: &str,
    taps: gaze_engine::Taps,
    x: &Tensor,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<String>) {
    use candle_core::{IndexOp, Var};
    let model = gaze_models::load(kind, Some(&weights(kind.name())), &candle_core::Device::Cpu).unwrap();
    let x = Var::from_tensor(x).unwrap();
    let mut taps = taps.gradient(deep);
    let logits = model.forward_taps(x.as_tensor(), &mut taps).unwrap();
    taps.check_requests().unwrap();
    let n = logits.dim(0).unwrap();
    let mut loss = logits.i((0, 1)).unwrap();
    for i in 1..n {
        loss = (loss + logits.i((i, 1 + 2 * i)).unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dx = flat(grads.get(x.as_tensor()).expect("a gradient reaches the input"));
    let dtap = flat(grads.get(taps.grad_var(deep).unwrap().as_tensor()).expect("a gradient at the tap"));
    (flat(&logits), dx, dtap, taps.seen().to_vec())
}

/// Asserts that two vectors are equal bit for bit, naming the first difference only.
pub fn same<T: PartialEq + std::fmt::Debug>(what: &str, a: &[T], b: &[T]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
        let differing = (0..a.len()).filter(|&i| a[i] != b[i]).count();
        panic!("{what}: {differing} of {} elements differ, the first at {i}: {:?} vs {:?}", a.len(), a[i], b[i]);
    }
}

/// The largest absolute difference of two vectors relative to the largest magnitude of `b`.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    let peak = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    if peak > 0.0 {
        diff / peak
    } else {
        diff
    }
}

/// Asserts that `a` is within `tolerance` of `b`, relative to `b`'s largest magnitude.
pub fn close(what: &str, a: &[f32], b: &[f32], tolerance: f32) {
    let err = rel_err(a, b);
    assert!(err < tolerance, "{what}: relative max-abs difference {err:e} (tolerance {tolerance:e})");
}
