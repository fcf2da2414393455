//! Times occlusion on one model, full against incremental, for `docs/methods/occlusion.md`.
//!
//! ```text
//! cargo run --release -p gaze-occlusion --example occlusion_timing -- \
//!     vgg16 target/bench/peers/vgg16.safetensors target/bench/peers/inputs-224.safetensors \
//!     [--window 16] [--stride 8] [--batch 16] [--target 281] [--modes full,incremental]
//! ```
//!
//! The weights and the input are those `cargo xtask bench --peers` prepares (random full-size
//! torchvision checkpoints, `input` of `inputs-224.safetensors`), so the figures sit next to
//! Captum's on the same tensors.
//! It prints one line per mode with the seconds taken (the model loaded, the method alone), the
//! sum of the map's absolute values (Captum's worker prints the same sum), and for the incremental
//! path the share of each stage recomputed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use gaze_core::numeric::rel_max_abs_err;
use gaze_core::{Explainer, Target};
use gaze_models::ModelKind;
use gaze_occlusion::{Fill, Occlusion, OcclusionConfig};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: occlusion_timing MODEL WEIGHTS INPUTS [--window N] [--stride N] [--batch N] [--target C] \
                 [--modes full,incremental]";
    let kind: ModelKind = args.next().ok_or_else(|| anyhow!(usage))?.parse()?;
    let weights = PathBuf::from(args.next().ok_or_else(|| anyhow!(usage))?);
    let inputs = PathBuf::from(args.next().ok_or_else(|| anyhow!(usage))?);
    let (mut window, mut stride, mut batch, mut target) = (16, 8, 16, 281);
    let mut modes = vec!["full".to_string(), "incremental".to_string()];
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| anyhow!("{flag} needs a value; {usage}"))?;
        let number = || value.parse::<usize>().with_context(|| format!("{flag} {value}: expected a whole number"));
        match flag.as_str() {
            "--window" => window = number()?,
            "--stride" => stride = number()?,
            "--batch" => batch = number()?,
            "--target" => target = number()?,
            "--modes" => modes = value.split(',').map(String::from).collect(),
            other => bail!("unknown option {other}; {usage}"),
        }
    }
    let device = Device::Cpu;
    let model = gaze_models::load(kind, Some(&weights), &device)?;
    let x = candle_core::safetensors::load(&inputs, &device)?
        .remove("input")
        .ok_or_else(|| anyhow!("{} has no tensor `input`", inputs.display()))?
        .to_dtype(DType::F32)?;
    let target = Target::classes([target]);
    let occlusion = Occlusion::new(
        OcclusionConfig::captum((window, window), (stride, stride)).with_fill(Fill::Constant(0.0)).with_batch(batch),
    );
    // One forward pass first, so both modes start warm.
    model.forward(&x)?;
    let mut maps: Vec<(String, Tensor)> = Vec::new();
    for mode in &modes {
        let start = Instant::now();
        let (map, report) = match mode.as_str() {
            "full" => (occlusion.explain(&*model, &x, &target)?, None),
            "incremental" => {
                let described = model.incremental().ok_or_else(|| anyhow!("{} has no description", kind.name()))?;
                let (map, report) = occlusion.explain_incremental(described, &x, &target)?;
                (map, Some(report))
            }
            other => bail!("unknown mode {other}; valid: full, incremental"),
        };
        let seconds = start.elapsed().as_secs_f64();
        let l1 = map.values.abs()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        println!("{} {mode}: {seconds:.2} s, l1 {l1:.6e}, {} windows", kind.name(), map_windows(&x, window, stride)?);
        if let Some(report) = report {
            let shares: Vec<String> = report.stages.iter().map(|s| format!("{} {:.3}", s.name, s.share)).collect();
            println!("  shares: {}", shares.join(", "));
        }
        maps.push((mode.clone(), map.values));
    }
    if let [(a, first), (b, second)] = maps.as_slice() {
        println!("  {a} against {b}: relative max-abs difference {:.2e}", rel_max_abs_err(second, first)?);
    }
    Ok(())
}

/// The number of windows Captum slides over the input.
fn map_windows(x: &Tensor, window: usize, stride: usize) -> Result<usize> {
    let (_, _, h, w) = x.dims4()?;
    let along = |d: usize| (d.saturating_sub(window)).div_ceil(stride) + 1;
    Ok(along(h) * along(w))
}
