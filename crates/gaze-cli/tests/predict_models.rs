//! `gaze predict` with VGG16, ResNet-50 and Xception: PyTorch's logits through the command line,
//! weights found in the local Hugging Face cache, and the message when they are not there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

mod common;
use common::{repo, scratch, stderr};

/// Runs `gaze` with `HF_HOME` set to `hf_home` (and no other cache variable), offline.
fn gaze(args: &[&str], hf_home: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gaze"));
    cmd.args(args).current_dir(repo()).env("HF_HOME", hf_home);
    for var in ["HF_HUB_CACHE", "HF_ENDPOINT"] {
        cmd.env_remove(var);
    }
    cmd.output().expect("gaze runs")
}

/// The logits `gaze predict --json --logits` printed, one row per image.
fn printed_logits(o: &Output) -> Tensor {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

fn fixture_logits(model: &str) -> Tensor {
    let io =
        candle_core::safetensors::load(repo().join(format!("fixtures/models/{model}.io.safetensors")), &Device::Cpu)
            .unwrap();
    io["logits"].clone()
}

#[test]
fn predict_gives_pytorchs_logits() {
    let home = scratch("parity");
    for model in ["vgg16", "resnet50", "xception"] {
        let weights = format!("fixtures/models/{model}.safetensors");
        let input = format!("fixtures/models/{model}.io.safetensors");
        let o = gaze(
            &[
                "predict",
                "--model",
                model,
                "--weights",
                &weights,
                "--input",
                &input,
                "--json",
                "--logits",
                "--top",
                "3",
            ],
            &home,
        );
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let ours = printed_logits(&o);
        let reference = fixture_logits(model);
        let err = gaze_core::numeric::rel_max_abs_err(&ours, &reference).unwrap();
        assert!(err < 1e-4, "{model}: relative max-abs error {err:e}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let top = &v[0]["top"];
        assert_eq!(top.as_array().unwrap().len(), 3);
        // A 12-class head has no ImageNet names.
        assert_eq!(top[0]["label"].as_str().unwrap(), format!("class {}", top[0]["class"]));
        assert!(top[0]["wnid"].is_null());
    }
}

#[test]
fn missing_weights_tell_the_user_to_fetch_them() {
    let home = scratch("empty");
    for model in ["vgg16", "resnet50", "xception"] {
        let o = gaze(&["predict", "--model", model, "assets/images/chelsea.png"], &home);
        assert_eq!(o.status.code(), Some(2), "{model}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("run `cargo xtask fetch-weights {model}`")), "{err}");
        assert!(err.contains("--weights"), "{err}");
        assert!(o.stdout.is_empty());
    }
    let o = gaze(&["predict", "--model", "alexnet", "assets/images/chelsea.png"], &home);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("vgg16, resnet50, xception"), "{}", stderr(&o));
}

/// Lays a checkpoint out in `hub` the way `hf-hub` and `huggingface_hub` do: the file as a blob
/// named by its hash, a snapshot folder per commit linking to it, and `refs/main` naming the
/// commit.
fn put_in_cache(hub: &Path, repo_id: &str, file: &Path) -> PathBuf {
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = hub.join(format!("models--{}", repo_id.replace('/', "--")));
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    let blob = repo.join("blobs").join("0".repeat(64));
    std::fs::copy(file, &blob).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(Path::new("../../blobs").join("0".repeat(64)), snapshot.join("model.safetensors"))
        .unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&blob, snapshot.join("model.safetensors")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    snapshot.join("model.safetensors")
}

#[test]
fn weights_in_the_hub_cache_are_found_offline() {
    let home = scratch("cached");
    put_in_cache(&home.join("hub"), "timm/vgg16.tv_in1k", &repo().join("fixtures/models/vgg16.safetensors"));
    let o = gaze(
        &["predict", "--model", "vgg16", "--input", "fixtures/models/vgg16.io.safetensors", "--json", "--logits"],
        &home,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = gaze_core::numeric::rel_max_abs_err(&printed_logits(&o), &fixture_logits("vgg16")).unwrap();
    assert!(err < 1e-4, "relative max-abs error {err:e}");

    // An image goes through the model's own preprocessing (torchvision's, at 224).
    let o = gaze(&["predict", "--model", "vgg16", "--json", "assets/images/chelsea.png"], &home);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["image"], "chelsea");

    // The other models are not in this cache.
    let o = gaze(&["predict", "--model", "resnet50", "--input", "fixtures/models/resnet50.io.safetensors"], &home);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cargo xtask fetch-weights resnet50"));
}
