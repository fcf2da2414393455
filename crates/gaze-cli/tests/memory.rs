//! Resident memory stays flat over a long run: Grad-CAM on the demo model over a few hundred
//! images in one process grows by less than a few MB after the first images.
//! Linux only (it reads `VmRSS` from `/proc/self/status`).

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
