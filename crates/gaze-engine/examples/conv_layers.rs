//! Times the forward convolution on each distinct 3×3 layer shape of VGG16 (batch 1, padding 1,
//! random values): the fastest of seven calls after a warm-up call, and the rate in the direct
//! convolution's multiply-adds per second (above the machine's peak where Winograd's convolutions
//! run, since they do fewer).
//!
//! `cargo run --release -p gaze-engine --example conv_layers`; `LAYER=128-128-112` times one shape
//! (input channels, output channels, side), `GAZE_WINOGRAD=0` times im2col and gemm instead, and
//! `GAZE_NUM_THREADS` sets the threads.

use std::time::Instant;

use candle_core::{Device, Tensor};
use gaze_engine::ops::{conv2d, Conv2dConfig};

/// VGG16's 3×3 layer shapes at 224 × 224: input channels, output channels, side.
const SHAPES: [(usize, usize, usize); 7] =
    [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (256, 256, 56), (512, 512, 28), (512, 512, 14)];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gaze_engine::ops::tune_process();
    let dev = Device::Cpu;
    let only = std::env::var("LAYER").ok();
    let valid: Vec<String> = SHAPES.iter().map(|(c, o, s)| format!("{c}-{o}-{s}")).collect();
    if let Some(layer) = only.as_deref().filter(|l| !valid.iter().any(|v| v == l)) {
        return Err(format!("LAYER={layer}: not one of {}", valid.join(", ")).into());
    }
    for ((c, o, s), name) in SHAPES.into_iter().zip(&valid) {
        if only.as_deref().is_some_and(|l| l != name) {
            continue;
        }
        let x = Tensor::randn(0f32, 1.0, (1, c, s, s), &dev)?;
        let w = Tensor::randn(0f32, 0.05, (o, c, 3, 3), &dev)?;
        let b = Tensor::randn(0f32, 0.05, o, &dev)?;
        let cfg = Conv2dConfig::default().padding(1);
        conv2d(&x, &w, Some(&b), cfg)?;
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            conv2d(&x, &w, Some(&b), cfg)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gmac = (c * o * 9 * s * s) as f64 / 1e9;
        println!("{c}->{o} at {s}x{s}: {:.2} ms, {:.1} GMAC/s (direct-convolution count)", best * 1e3, gmac / best);
    }
    Ok(())
}
