//! `gaze explain --method occlusion` recomputes only what each window changes where the model
//! describes its spatial stages (VGG16), with the same raw maps as the full re-computation that
//! `GAZE_OCCLUSION_INCREMENTAL=0` forces, up to float32 rounding.

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use gaze_core::numeric::rel_max_abs_err;

mod common;
use common::repo;

/// Runs occlusion on the VGG16 fixture with `extra` options and the incremental path allowed or
/// not; returns the raw attribution and the `incremental` option recorded in the file's metadata.
fn occlusion(dir: &Path, extra: &[&str], incremental: bool) -> (Tensor, String) {
    let out = dir.join(if incremental { "incremental" } else { "full" });
    let mut args = vec![
        "explain",
        "--model",
        "vgg16",
        "--weights",
        "fixtures/models/vgg16.safetensors",
        "--method",
        "occlusion",
        "--target",
        "3,7",
        "--raw",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push("fixtures/images/chelsea.png");
    let o = Command::new(env!("CARGO_BIN_EXE_gaze"))
        .args(&args)
        .env("GAZE_OCCLUSION_INCREMENTAL", if incremental { "1" } else { "0" })
        .current_dir(repo())
        .output()
        .expect("gaze runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = out.join("attributions.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().and_then(|m| m.get("incremental").cloned()).unwrap_or_default();
    let raw = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    (raw["attribution"].to_dtype(DType::F32).unwrap(), meta)
}

#[test]
fn incremental_occlusion_on_vgg16_gives_the_full_paths_raw_maps() {
    let dir = std::env::temp_dir().join(format!("gaze-explain-occlusion-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (style, extra) in [
        ("captum", &["--window", "32,24", "--stride", "16,12", "--fill", "mean"][..]),
        ("tf-explain", &["--occlusion-style", "tf-explain", "--window", "32"][..]),
    ] {
        let sub = dir.join(style);
        let (inc, inc_meta) = occlusion(&sub, extra, true);
        let (full, full_meta) = occlusion(&sub, extra, false);
        assert_eq!((inc_meta.as_str(), full_meta.as_str()), ("true", "false"), "{style}");
        assert_eq!(inc.dims(), full.dims(), "{style}");
        assert_eq!(inc.dims()[..2], [1, 2], "{style}");
        let max = full.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max > 1e-3, "{style}: the map is all zeros, so the comparison would prove nothing");
        // The full path runs its batches of occluded copies through Winograd's convolutions where
        // the incremental path's small crops run im2col: the same sums, rounded differently
        // (1.2e-5 measured).
        let err = rel_max_abs_err(&inc, &full).unwrap();
        assert!(err < 5e-5, "{style}: incremental against full: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
