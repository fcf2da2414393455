//! Resident memory stays flat over a long run: Grad-CAM on the demo model over a few hundred
//! images in one process grows by less than a few MB after the first images, through the library
//! in a loop and through `gaze explain` over a folder.
//! Linux only (it reads `VmRSS` and `VmHWM` from `/proc/<pid>/status`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use candle_core::{Device, Tensor};
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_models::DemoCnn;

/// The resident set size in KiB, from `/proc/self/status`.
fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn grad_cam_over_hundreds_of_images_keeps_resident_memory_flat() {
    if vm_rss_kib().is_none() {
        eprintln!("no /proc/self/status here; skipping the memory check");
        return;
    }
    let model = DemoCnn::embedded(&Device::Cpu).unwrap();
    let cam = Cam::new(CamConfig::new(CamMethod::GradCam, ["relu4"])).unwrap();
    let images = 300;
    let warmup = 20;
    let mut after_warmup = 0;
    let mut peak = 0;
    for i in 0..images {
        let values: Vec<f32> = (0..3 * 64 * 64).map(|k| (((k * 7 + i * 13) % 97) as f32 / 48.0) - 1.0).collect();
        let input = Tensor::from_vec(values, (1, 3, 64, 64), &Device::Cpu).unwrap();
        let maps = cam.explain(&model, &input, &Target::per_image(vec![i % 8])).unwrap();
        assert_eq!(maps.values.dims()[..2], [1, 1]);
        let rss = vm_rss_kib().unwrap();
        if i + 1 == warmup {
            after_warmup = rss;
        }
        peak = peak.max(rss);
    }
    let growth = peak.saturating_sub(after_warmup);
    assert!(growth < 4 * 1024, "resident memory grew by {growth} KiB after the first {warmup} images");
}

/// The peak resident set size in KiB (`VmHWM`) of a running process.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `gaze explain --method gradcam` over `images` (files or folders) and returns its peak resident memory in KiB,
/// read from `/proc` while it runs (the last reading before it exits).
fn gaze_peak_kib(images: &[PathBuf], out: &Path) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gaze"))
        .args(["explain", "--method", "gradcam", "--raw", "--out"])
        .arg(out)
        .args(images)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gaze runs");
    let mut peak = 0;
    loop {
        if let Some(hwm) = vm_hwm_kib(child.id()) {
            peak = peak.max(hwm);
        }
        if child.try_wait().expect("waiting for gaze").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("gaze finishes");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    peak
}

#[test]
fn gaze_explain_over_a_folder_of_hundreds_of_images_keeps_its_peak_memory_flat() {
    if vm_rss_kib().is_none() {
        eprintln!("no /proc/self/status here; skipping the memory check");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gaze-memory-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let folder = dir.join("images");
    std::fs::create_dir_all(&folder).unwrap();
    let images: Vec<PathBuf> = (0..300u32)
        .map(|i| {
            let path = folder.join(format!("img{i:03}.png"));
            image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, (i % 256) as u8]))
                .save(&path)
                .unwrap();
            path
        })
        .collect();
    // 40 images are already two chunks of the command line's 32, so both runs hold the same at once.
    let few = gaze_peak_kib(&images[..40], &dir.join("out-few"));
    let many = gaze_peak_kib(&[folder], &dir.join("out-many"));
    assert_eq!(std::fs::read_dir(dir.join("out-many")).unwrap().count(), 301, "300 pictures and the raw file");
    // The raw maps of every chunk are written as one tensor, in the order of the images.
    let many_raw = candle_core::safetensors::load(dir.join("out-many/attributions.safetensors"), &Device::Cpu).unwrap();
    let few_raw = candle_core::safetensors::load(dir.join("out-few/attributions.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(many_raw["attribution"].dims()[..2], [300, 1]);
    assert_eq!(many_raw["targets"].dims(), [300, 1]);
    let head: Vec<f32> = many_raw["attribution"].narrow(0, 0, 40).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let few_maps: Vec<f32> = few_raw["attribution"].flatten_all().unwrap().to_vec1().unwrap();
    // The same maps up to float rounding: the engine picks a convolution's algorithm (Winograd's
    // variants or im2col) for each call's batch, and the last chunk of the 40 is smaller.
    let peak = few_maps.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(peak > 0.0, "the maps are all zero");
    let worst = head.iter().zip(&few_maps).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-4 * peak, "the first 40 maps differ between the two runs by {worst} (largest value {peak})");
    let _ = std::fs::remove_dir_all(&dir);
    let growth = many.saturating_sub(few);
    assert!(growth < 8 * 1024, "peak memory grew by {growth} KiB from 40 to 300 images ({few} KiB to {many} KiB)");
}

/// RISE's masks and expected gradients' samples are drawn a batch at a time: with a count of 10⁹
/// (which used to abort on a 49 GB allocation, or grow by gigabytes before the first pass),
/// `gaze explain` runs with a small, steady resident set. The run would take days, so the test
/// watches it for a few seconds and stops it.
#[test]
fn huge_mask_and_sample_counts_run_in_flat_memory() {
    if vm_rss_kib().is_none() {
        eprintln!("no /proc/self/status here; skipping the memory check");
        return;
    }
    let out = std::env::temp_dir().join(format!("gaze-memory-huge-{}", std::process::id()));
    let image = "fixtures/images/chelsea.png";
    let runs: [(&str, &[&str]); 2] = [
        ("rise", &["--masks", "1000000000"]),
        ("expected-gradients", &["--samples", "1000000000", "--background", image]),
    ];
    for (method, options) in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gaze"))
            .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .args(["explain", "--method", method, "--out"])
            .arg(out.join(method))
            .args(options)
            .arg(image)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gaze runs");
        let start = std::time::Instant::now();
        let mut peak = 0;
        let mut exited = None;
        while start.elapsed() < Duration::from_secs(4) {
            if let Some(hwm) = vm_hwm_kib(child.id()) {
                peak = peak.max(hwm);
            }
            if let Some(status) = child.try_wait().expect("waiting for gaze") {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if exited.is_none() {
            child.kill().expect("stopping gaze");
        }
        let output = child.wait_with_output().expect("gaze stops");
        assert!(
            exited.is_none(),
            "{method}: gaze exited ({:?}) instead of running: {}",
            exited,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(peak > 0, "{method}: no memory reading");
        assert!(peak < 512 * 1024, "{method}: peak resident memory {peak} KiB after 4 s");
    }
    let _ = std::fs::remove_dir_all(&out);
}
