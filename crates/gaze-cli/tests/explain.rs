//! `gaze explain` as scripts use it: files, the raw safetensors, the JSON summary, errors.

use std::path::PathBuf;

mod common;
use common::{gaze, outdir, stderr};

#[test]
fn gradcam_writes_pictures_raw_maps_and_a_summary() {
    let dir = outdir("gradcam");
    let out = dir.to_str().unwrap();
    let o = gaze(&[
        "explain",
        "--method",
        "gradcam",
        "--top",
        "2",
        "--raw",
        "--json",
        "--out",
        out,
        "assets/images/chelsea.png",
        "assets/images/coffee.png",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["method"], "gradcam");
    assert_eq!(v["layers"], serde_json::json!(["relu4"]));
    let maps = v["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 4);
    for m in maps {
        let file = PathBuf::from(m["file"].as_str().unwrap());
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(name, format!("{}.gradcam.{}.png", m["image"].as_str().unwrap(), m["class"]));
        let picture = image::open(&file).unwrap();
        // The demo model's 64×64 input is drawn four times larger (see `display_size`).
        assert_eq!((picture.width(), picture.height()), (256, 256));
    }

    let raw = candle_core::safetensors::load(dir.join("attributions.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(raw["attribution"].dims(), &[2, 2, 8, 8]);
    assert_eq!(raw["targets"].dims(), &[2, 2]);
    assert_eq!(raw["targets"].dtype(), candle_core::DType::I64);
    let bytes = std::fs::read(dir.join("attributions.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["method"], "gradcam");
    assert_eq!(meta["layers"], "relu4");
    assert_eq!(meta["score"], "logit");
    assert_eq!(meta["model"], "demo");
    // Grad-CAM maps are clamped at zero.
    let min = raw["attribution"].flatten_all().unwrap().min(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(min >= 0.0);
}

#[test]
fn every_gradient_and_cam_method_runs_from_the_command_line() {
    for method in [
        "gradcam++",
        "xgradcam",
        "hirescam",
        "layercam",
        "eigencam",
        "scorecam",
        "ablationcam",
        "saliency",
        "gradient-x-input",
        "guided-backprop",
        "deconvnet",
        "guided-gradcam",
    ] {
        let dir = outdir(method);
        let o = gaze(&[
            "explain",
            "--method",
            method,
            "--target",
            "1,3",
            "--out",
            dir.to_str().unwrap(),
            "assets/images/rocket.jpg",
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        for class in [1, 3] {
            assert!(dir.join(format!("rocket.{method}.{class}.png")).exists(), "{method} {class}");
        }
    }
}

#[test]
fn existing_outputs_are_kept_unless_overwrite_is_given() {
    let dir = outdir("overwrite");
    let args = ["explain", "--method", "saliency", "--out", dir.to_str().unwrap(), "assets/images/chelsea.png"];
    assert!(gaze(&args).status.success());
    let o = gaze(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    let mut again = args.to_vec();
    again.push("--overwrite");
    assert!(gaze(&again).status.success());
}

#[test]
fn bad_methods_layers_classes_and_options_get_exit_code_2() {
    let cases: [(&[&str], &str); 5] = [
        (&["--method", "gradcamm"], "unknown method `gradcamm`; valid methods: gradcam, gradcam++"),
        (&["--method", "gradcam", "--layer", "conv9"], "unknown layer `conv9`; valid layers: conv1, relu1"),
        (&["--method", "gradcam", "--target", "8"], "class index 8 is out of range; the model has 8 classes"),
        (&["--method", "saliency", "--aug-smooth"], "--aug-smooth does not apply to saliency"),
        (
            &["--method", "gradcam", "--score", "softmax"],
            "invalid value `softmax` for --score; expected logit or probability",
        ),
    ];
    for (args, message) in cases {
        let dir = outdir("errors");
        let mut all = vec!["explain", "--out", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        all.push("assets/images/chelsea.png");
        let o = gaze(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(!dir.join("chelsea.gradcam.0.png").exists());
    }
}
