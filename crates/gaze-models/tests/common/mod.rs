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

/// What [`fused_run`] returns: logits, input gradient, gradient at the deep tap, layers passed.
pub type Run = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<String>);

/// The checks of the folded-path tests for one ReLU mode (`label`): each run of `exact` gives the
/// values of `unfused` bit for bit (nothing folds there), the folded run is within 1e-4 of
/// `unfused` and of each run of `near` (float32 rounding of the folds), every run passes the
/// layers in `layers`' order, and the gradients are not zero.
pub fn check_folded(
    label: &str,
    deep: &str,
    layers: &[String],
    folded: &Run,
    unfused: &Run,
    exact: &[(&str, &Run)],
    near: &[(&str, &Run)],
) {
    for (what, other) in exact {
        same(&format!("{label}: logits, unfused against {what}"), &unfused.0, &other.0);
        same(&format!("{label}: input gradient, unfused against {what}"), &unfused.1, &other.1);
        same(&format!("{label}: gradient at {deep}, unfused against {what}"), &unfused.2, &other.2);
    }
    for (what, other) in [("unfused", unfused)].iter().chain(near) {
        close(&format!("{label}: logits, folded against {what}"), &folded.0, &other.0, 1e-4);
        close(&format!("{label}: input gradient, folded against {what}"), &folded.1, &other.1, 1e-4);
        close(&format!("{label}: gradient at {deep}, folded against {what}"), &folded.2, &other.2, 1e-4);
    }
    for (what, other) in [("unfused", unfused)].iter().chain(exact).chain(near) {
        same(&format!("{label}: layers passed, folded against {what}"), &folded.3, &other.3);
    }
    assert!(folded.1.iter().any(|g| *g != 0.0), "{label}: the input gradient is not zero");
    assert!(folded.2.iter().any(|g| *g != 0.0), "{label}: the gradient at {deep} is not zero");
    assert_eq!(folded.3, layers, "{label}: every layer is passed, in order");
}

/// For each `(bn, act)`: recording a batch norm and its ReLU keeps the batch norm's own output
/// (with negative values) and gives the ReLU its positive part.
pub fn recorded_batch_norms_keep_their_outputs(kind: gaze_models::ModelKind, pairs: &[(&str, &str)]) {
    let x = io(kind.name())["input"].clone();
    let model = gaze_models::load(kind, Some(&weights(kind.name())), &Device::Cpu).unwrap();
    for &(bn, act) in pairs {
        let mut taps = gaze_engine::Taps::none().record(bn).record(act);
        model.forward_taps(&x, &mut taps).unwrap();
        let y = taps.activation(bn).unwrap();
        let values = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().any(|v| *v < 0.0), "{bn}: the batch norm's output has negative values");
        let expected = y.relu().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(taps.activation(act).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected, "{act}");
    }
}
