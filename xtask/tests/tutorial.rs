//! `cargo xtask tutorial` on the width-reduced VGG16 and Xception checkpoints of `fixtures/models`
//! (the real architectures, so the real code path), and without any weights (the demo model stands
//! in and the task says how to fetch the real ones).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gaze-tutorial-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the task with an empty hub cache, so that only the flags can supply weights.
fn tutorial(args: &[&str], hub: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("tutorial")
        .args(args)
        .current_dir(repo())
        .env("HF_HUB_CACHE", hub)
        .env_remove("HF_HOME")
        .output()
        .expect("xtask runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The eight figures, in the tutorial's order, with a call each one's code must show.
const FIGURES: [(&str, &str); 8] = [
    ("01-predictions.png", "Target::top(1)"),
    ("02-shap-layer7.png", "Space::LayerSpace"),
    ("03-shap-layer14.png", "explain_with_variance"),
    ("04-xception-top5.png", "Target::top(k)"),
    ("05-activations.png", "activation_grid"),
    ("06-occlusion.png", "OcclusionConfig::tf_explain"),
    ("07-gradcam.png", "CamConfig::tf_explain"),
    ("08-smoothgrad.png", "SmoothGrad::new"),
];

/// Checks the page: every figure in order, each a drawn PNG, each with its code, no machine paths.
fn check_page(out: &Path) -> String {
    let md = std::fs::read_to_string(out.join("tutorial.md")).expect("tutorial.md is written");
    let mut at = 0;
    for (i, (file, call)) in FIGURES.iter().enumerate() {
        let heading = format!("\n## {}. ", i + 1);
        let start = md[at..].find(&heading).map(|p| at + p).unwrap_or_else(|| panic!("no section {}", i + 1));
        let end = md[start + 1..].find("\n## ").map(|p| start + 1 + p).unwrap_or(md.len());
        let section = &md[start..end];
        assert!(section.contains(&format!("](tutorial/{file})")), "section {} shows no {file}", i + 1);
        assert!(section.contains("```rust\n") && section.contains(call), "section {} lacks `{call}`", i + 1);
        at = end;

        let picture = image::open(out.join("tutorial").join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let rgb = picture.to_rgb8();
        assert!(rgb.width() >= 200 && rgb.height() >= 200, "{file} is {:?}", rgb.dimensions());
        let mut colours: Vec<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
        colours.sort_unstable();
        colours.dedup();
        assert!(colours.len() > 50, "{file} has only {} colours", colours.len());
    }
    for path in ["/tmp", "/work", "/home", "/root", &repo().display().to_string()] {
        assert!(!md.contains(path), "the page names the machine path {path}");
    }
    md
}

#[test]
fn the_tutorial_draws_every_figure_with_the_real_architectures() {
    let out = scratch("fixtures");
    let hub = scratch("fixtures-hub");
    let o = tutorial(
        &[
            "--vgg16",
            "fixtures/models/vgg16.safetensors",
            "--xception",
            "fixtures/models/xception.safetensors",
            "--out",
            out.to_str().unwrap(),
            "--quick",
        ],
        &hub,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("demo model"), "a checkpoint was not used: {}", stderr(&o));
    let md = check_page(&out);
    assert!(md.contains("VGG16: the checkpoint `vgg16.safetensors`"), "{md}");
    assert!(md.contains("Xception: the checkpoint `xception.safetensors`"), "{md}");
    // The fixtures have 12 classes: 281 and 285 become 281 mod 12 = 5 and 285 mod 12 = 9.
    assert!(md.contains("`c mod K`") && md.contains("class 9"), "{md}");
    // The Keras layers resolve on the real architectures: layer 7's input is `block2_pool`'s output
    // (56×56 at a 224 input), layer 14's is `block4_conv3`'s (28×28).
    assert!(md.contains("(tap `block2_pool`)") && md.contains("(56×56)"), "{md}");
    assert!(md.contains("(tap `block4_conv3`)") && md.contains("(28×28)"), "{md}");
    assert!(md.contains("`block6_sepconv1` (tap `block6_sepconv1`)"), "{md}");
    assert!(!md.contains("stands in"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&hub);
}

#[test]
fn without_weights_the_demo_model_stands_in_and_the_task_says_how_to_fetch_them() {
    let out = scratch("demo");
    let hub = scratch("demo-hub");
    let o = tutorial(&["--out", out.to_str().unwrap(), "--quick"], &hub);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for name in ["vgg16", "xception"] {
        assert!(err.contains(&format!("cargo xtask fetch-weights {name}")), "{err}");
    }
    let md = check_page(&out);
    assert!(md.contains("the demo model, standing in because the VGG16 weights are absent"), "{md}");
    assert!(md.contains("| `block2_pool` | `pool2` |") && md.contains("cargo xtask fetch-weights xception"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&hub);
}

#[test]
fn a_missing_image_is_named() {
    let out = scratch("missing");
    let images = scratch("missing-images");
    let hub = scratch("missing-hub");
    let o = tutorial(&["--out", out.to_str().unwrap(), "--images", images.to_str().unwrap(), "--quick"], &hub);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("chelsea.png"), "{}", stderr(&o));
    assert!(!out.join("tutorial.md").exists());
    for dir in [out, images, hub] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
