//! Times the forward convolution on each distinct layer shape of VGG16 (3×3, padding 1) or
//! ResNet-50 (its 1×1, 3×3 and strided convolutions) at batch 1 (or `BATCH`) with random values: the fastest
//! of seven calls after a warm-up call, the rate in the direct convolution's multiply-adds per
//! second (above the machine's peak where Winograd's convolutions run, since they do fewer), and
//! the layer's share of the model's convolution time (each shape weighted by how often the model
//! runs it).
//!
//! `cargo run --release -p gaze-engine --example conv_layers`; `MODEL=resnet50` times ResNet-50's
//! shapes instead of VGG16's, `MODEL=xception` Xception's pointwise ones; `LAYER=128-128-3-1-112` times one shape (input channels, output
//! channels, kernel side, stride, input side); `BATCH=16` times batches of 16 images; `GAZE_WINOGRAD=0` times im2col and gemm instead of
//! Winograd's convolutions; `GAZE_NUM_THREADS` sets the threads.

use std::time::Instant;

use candle_core::{Device, Tensor};
use gaze_engine::ops::{conv2d, Conv2dConfig};

/// A layer shape: input channels, output channels, kernel side, stride, input side, and how many
/// layers of the model have it.
type Shape = (usize, usize, usize, usize, usize, usize);

/// VGG16's 3×3 layer shapes at 224 × 224.
const VGG16: [Shape; 7] = [
    (3, 64, 3, 1, 224, 1),
    (64, 64, 3, 1, 224, 1),
    (64, 128, 3, 1, 112, 1),
    (128, 128, 3, 1, 112, 1),
    (256, 256, 3, 1, 56, 2),
    (512, 512, 3, 1, 28, 2),
    (512, 512, 3, 1, 14, 3),
];

/// ResNet-50's convolution shapes at 224 × 224 (torchvision's layout: the stride on the 3×3
/// convolution of each stage's first block).
const RESNET50: [Shape; 23] = [
    (3, 64, 7, 2, 224, 1),
    (64, 64, 1, 1, 56, 1),
    (64, 64, 3, 1, 56, 3),
    (64, 256, 1, 1, 56, 4),
    (256, 64, 1, 1, 56, 2),
    (256, 128, 1, 1, 56, 1),
    (128, 128, 3, 2, 56, 1),
    (128, 512, 1, 1, 28, 4),
    (256, 512, 1, 2, 56, 1),
    (512, 128, 1, 1, 28, 3),
    (128, 128, 3, 1, 28, 3),
    (512, 256, 1, 1, 28, 1),
    (256, 256, 3, 2, 28, 1),
    (256, 1024, 1, 1, 14, 6),
    (512, 1024, 1, 2, 28, 1),
    (1024, 256, 1, 1, 14, 5),
    (256, 256, 3, 1, 14, 5),
    (1024, 512, 1, 1, 14, 1),
    (512, 512, 3, 2, 14, 1),
    (512, 2048, 1, 1, 7, 3),
    (2048, 512, 1, 1, 7, 2),
    (512, 512, 3, 1, 7, 2),
    (1024, 2048, 1, 2, 14, 1),
];

/// Xception's dense convolutions at 299 × 299 (timm's `legacy_xception`): the pointwise 1×1
/// convolutions of its separable ones and the strided 1×1 skip convolutions (the depthwise 3×3
/// convolutions and the unpadded stem are not timed here).
const XCEPTION: [Shape; 15] = [
    (64, 128, 1, 1, 147, 1),
    (128, 128, 1, 1, 147, 1),
    (64, 128, 1, 2, 147, 1),
    (128, 256, 1, 1, 74, 1),
    (256, 256, 1, 1, 74, 1),
    (128, 256, 1, 2, 74, 1),
    (256, 728, 1, 1, 37, 1),
    (728, 728, 1, 1, 37, 1),
    (256, 728, 1, 2, 37, 1),
    (728, 728, 1, 1, 19, 25),
    (728, 1024, 1, 1, 19, 1),
    (728, 1024, 1, 2, 19, 1),
    (1024, 1536, 1, 1, 10, 1),
    (1536, 2048, 1, 1, 10, 1),
    (32, 64, 3, 1, 149, 1),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gaze_engine::ops::tune_process();
    let dev = Device::Cpu;
    let model = std::env::var("MODEL").unwrap_or_else(|_| "vgg16".into());
    let shapes: Vec<Shape> = match model.as_str() {
        "vgg16" => VGG16.to_vec(),
        "resnet50" => RESNET50.to_vec(),
        "xception" => XCEPTION.to_vec(),
        other => return Err(format!("MODEL={other}: not one of vgg16, resnet50, xception").into()),
    };
    let name = |&(c, o, k, s, side, _): &Shape| format!("{c}-{o}-{k}-{s}-{side}");
    let batch: usize = match std::env::var("BATCH") {
        Ok(b) => b.parse().ok().filter(|&b| b > 0).ok_or(format!("BATCH={b}: not a positive whole number"))?,
        Err(_) => 1,
    };
    let only = std::env::var("LAYER").ok();
    let valid: Vec<String> = shapes.iter().map(name).collect();
    if let Some(layer) = only.as_deref().filter(|l| !valid.iter().any(|v| v == l)) {
        return Err(format!("LAYER={layer}: not one of {}", valid.join(", ")).into());
    }
    let mut rows = Vec::new();
    for (shape, name) in shapes.iter().zip(&valid) {
        if only.as_deref().is_some_and(|l| l != name) {
            continue;
        }
        let &(c, o, k, stride, side, count) = shape;
        let x = Tensor::randn(0f32, 1.0, (batch, c, side, side), &dev)?;
        let w = Tensor::randn(0f32, 0.05, (o, c, k, k), &dev)?;
        let b = Tensor::randn(0f32, 0.05, o, &dev)?;
        let cfg = Conv2dConfig::default().padding(k / 2).stride(stride);
        let out = conv2d(&x, &w, Some(&b), cfg)?;
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            conv2d(&x, &w, Some(&b), cfg)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gmac = (batch * c * o * k * k * out.dims()[2] * out.dims()[3]) as f64 / 1e9;
        rows.push((name.clone(), count, best, gmac));
    }
    let total: f64 = rows.iter().map(|&(_, n, t, _)| n as f64 * t).sum();
    for (name, count, best, gmac) in rows {
        println!(
            "{name} (×{count}): {:.2} ms, {:.1} GMAC/s (direct-convolution count), {:.0}% of the model's convolution time",
            best * 1e3,
            gmac / best,
            100.0 * count as f64 * best / total
        );
    }
    println!("total: {:.1} ms", total * 1e3);
    Ok(())
}
