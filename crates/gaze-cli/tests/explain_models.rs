//! `gaze explain` on the fixture checkpoints of the ImageNet architectures, with Keras layer names.

use candle_core::Device;

mod common;
use common::{gaze, stderr};

/// The shape `gaze layers --json` reports for `layer`.
fn layer_shape(model: &str, weights: &str, layer: &str) -> Vec<usize> {
    let o = gaze(&["layers", "--model", model, "--weights", weights, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let entry = v["layers"].as_array().unwrap().iter().find(|l| l["name"] == layer).expect("the layer is listed");
    entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

#[test]
fn xception_gradcam_at_a_keras_layer_name_writes_raw_maps_of_the_layers_shape() {
    let dir = std::env::temp_dir().join(format!("gaze-explain-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let weights = "fixtures/models/xception.safetensors";
    let o = gaze(&[
        "explain",
        "--model",
        "xception",
        "--weights",
        weights,
        "--method",
        "gradcam",
        "--layer",
        "block14_sepconv1",
        "--target",
        "1,5",
        "--raw",
        "--json",
        "--out",
        dir.to_str().unwrap(),
        "fixtures/images/chelsea.png",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    // The Keras name resolves to the timm module it stands for (docs/models.md).
    assert_eq!(v["layers"], serde_json::json!(["conv3"]));
    assert_eq!(v["maps"].as_array().unwrap().len(), 2);

    let shape = layer_shape("xception", weights, "conv3");
    let raw = candle_core::safetensors::load(dir.join("attributions.safetensors"), &Device::Cpu).unwrap();
    let maps = &raw["attribution"];
    assert_eq!(maps.dims(), &[1, 2, shape[2], shape[3]]);
    let targets: Vec<Vec<i64>> = raw["targets"].to_vec2().unwrap();
    assert_eq!(targets, vec![vec![1, 5]]);
    // Grad-CAM's ReLU is on by default: no negative value, and the map is not all zero for both.
    let values: Vec<f32> = maps.flatten_all().unwrap().to_vec1().unwrap();
    assert!(values.iter().all(|x| x.is_finite() && *x >= 0.0));
    for png in ["chelsea.gradcam.1.png", "chelsea.gradcam.5.png"] {
        assert!(dir.join(png).is_file(), "{png} is missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
