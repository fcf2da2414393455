//! The command line as scripts use it: outputs, JSON shapes, errors and exit codes.

mod common;
use common::{gaze, repo, scratch, stderr, stdout};

#[test]
fn layers_lists_every_tap_with_its_shape() {
    let o = gaze(&["layers", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"conv1"));
    assert_eq!(names.last(), Some(&"fc"));
    assert_eq!(layers[0]["shape"], serde_json::json!([1, 16, 64, 64]));
    assert_eq!(v["model"], "demo");

    let o = gaze(&["layers"]);
    assert!(o.status.success());
    assert!(stdout(&o).lines().any(|l| l.starts_with("pool2") && l.contains("[1, 32, 16, 16]")), "{}", stdout(&o));
}

#[test]
fn predict_gives_the_top_classes_of_each_image() {
    let o =
        gaze(&["predict", "--json", "--top", "3", "--logits", "assets/images/chelsea.png", "assets/images/rocket.jpg"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let images = v.as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["image"], "chelsea");
    assert_eq!(images[1]["image"], "rocket");
    for image in images {
        let top = image["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let scores: Vec<f64> = top.iter().map(|p| p["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert!(top[0]["label"].is_string());
        assert_eq!(image["logits"].as_array().unwrap().len(), 8);
    }

    let o = gaze(&["predict", "assets/images/coffee.png"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("coffee\n  1. "), "{}", stdout(&o));
}

#[test]
fn predict_reads_a_folder_in_chunks_with_the_same_results_as_its_files() {
    // 40 images (more than one chunk of 32) copied from the sample photos, in name order.
    let dir = scratch("predict-folder");
    let sources = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"];
    let mut files = Vec::new();
    for i in 0..40 {
        let source = sources[i % sources.len()];
        let ext = source.rsplit('.').next().unwrap();
        let file = dir.join(format!("img{i:02}.{ext}"));
        std::fs::copy(repo().join("assets/images").join(source), &file).unwrap();
        files.push(file);
    }
    let from_folder = gaze(&["predict", "--json", "--top", "2", dir.to_str().unwrap()]);
    assert!(from_folder.status.success(), "{}", stderr(&from_folder));
    let v: serde_json::Value = serde_json::from_str(&stdout(&from_folder)).unwrap();
    let images = v.as_array().unwrap();
    let names: Vec<&str> = images.iter().map(|i| i["image"].as_str().unwrap()).collect();
    assert_eq!(names, (0..40).map(|i| format!("img{i:02}")).collect::<Vec<_>>());
    // Copies of the same photo get the same classes on either side of the chunk boundary, and the
    // same scores up to float rounding (a batch of 32 and one of 8 sum in different orders).
    for (a, b) in [(0, 32), (3, 39)] {
        let (ta, tb) = (images[a]["top"].as_array().unwrap(), images[b]["top"].as_array().unwrap());
        for (pa, pb) in ta.iter().zip(tb) {
            assert_eq!(pa["class"], pb["class"], "images {a} and {b}");
            let (sa, sb) = (pa["score"].as_f64().unwrap(), pb["score"].as_f64().unwrap());
            assert!((sa - sb).abs() < 1e-5, "images {a} and {b}: {sa} vs {sb}");
        }
    }

    let mut args = vec!["predict", "--json", "--top", "2"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let from_files = gaze(&args);
    assert!(from_files.status.success(), "{}", stderr(&from_files));
    assert_eq!(stdout(&from_files), stdout(&from_folder));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn predict_reads_a_tensor_file() {
    let dir = scratch("tensor-input");
    let file = dir.join("batch.safetensors");
    let input = candle_core::Tensor::zeros((2, 3, 64, 64), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("input".to_string(), input)]), &file).unwrap();
    let o = gaze(&["predict", "--json", "--input", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[1]["image"], "input-1");

    let wrong = dir.join("wrong.safetensors");
    let other = candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("pixels".to_string(), other)]), &wrong).unwrap();
    let o = gaze(&["predict", "--input", wrong.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no tensor named `input`; it has: pixels"), "{}", stderr(&o));
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_2() {
    let o = gaze(&["predict", "--model", "alexnet", "assets/images/chelsea.png"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value `alexnet` for --model; expected demo"), "{}", stderr(&o));

    let o = gaze(&["predict", "--top", "9", "assets/images/chelsea.png"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("top-k of 9") && stderr(&o).contains("1..=8"), "{}", stderr(&o));

    let o = gaze(&["predict", "no/such/image.png"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such/image.png"), "{}", stderr(&o));

    let dir = scratch("bad-image");
    let fake = dir.join("fake.png");
    std::fs::write(&fake, b"this is not a picture").unwrap();
    let o = gaze(&["predict", fake.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("fake.png"), "{}", stderr(&o));

    let o = gaze(&["predict"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("IMAGE"), "{}", stderr(&o));

    let o = gaze(&["layers", "--weights", fake.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a readable safetensors file"), "{}", stderr(&o));
}
