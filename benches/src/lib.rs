//! # gaze-benches
//!
//! Shared helpers of gaze's criterion suites (in `benches/`): the device to run on and the clock
//! that synchronises it before reading the time, so that GPU timings measure finished work.
//! Suite and benchmark names follow `{device}_{method}_{model}_b{batch}_{size}`.
//!
//! For the side-by-side runs against the Python peers (`cargo xtask bench --peers`), the crate also
//! has the `gaze-bench-runner` binary (gaze's worker process), the multiply-accumulate counter
//! ([`macs`]) that gives each time its physical yardstick, and the resident-memory readings
//! ([`memory`]) that give each call its peak.
//! It measures; it owns no method and no model, and it never touches the network.

pub mod macs;
pub mod memory;

use std::time::{Duration, Instant};

use candle_core::{Device, Result};

/// The device named by `GAZE_BENCH_DEVICE` (`cpu`, the default, or `cuda`).
pub fn bench_device() -> Result<Device> {
    match std::env::var("GAZE_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0),
        _ => Ok(Device::Cpu),
    }
}

/// The device's name as it prefixes benchmark names.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

/// Runs `f` `iters` times and returns the elapsed time, synchronising the device before the clock
/// is read (as candle-nn's benchmarks do); use with criterion's `iter_custom`.
pub fn timed<F: FnMut() -> Result<()>>(device: &Device, iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        if let Err(e) = f() {
            panic!("benchmark body failed: {e}");
        }
    }
    if let Err(e) = device.synchronize() {
        panic!("device synchronisation failed: {e}");
    }
    start.elapsed()
}
