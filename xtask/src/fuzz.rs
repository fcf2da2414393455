//! `cargo xtask fuzz [--seconds N] [TARGET]`: runs the loaders' fuzz targets (fuzz/, cargo-fuzz and
//! libFuzzer) for N seconds each.
//!
//! It installs nothing: without cargo-fuzz it says how to install it.
//! The committed seeds in `fuzz/corpus/<target>` are only read; what a run discovers goes to
//! `target/fuzz/corpus/<target>`, so the committed corpus stays small.
//! On a stable toolchain the run sets `RUSTC_BOOTSTRAP=1`, because cargo-fuzz passes the
//! sanitizer-coverage flags that rustc accepts only with nightly features.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;

/// The fuzz targets, as fuzz/Cargo.toml names them.
pub const TARGETS: [&str; 3] = ["image_loader", "input_tensor", "checkpoint"];

#[derive(ClapArgs)]
pub struct Args {
    /// How long to fuzz each target, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The most resident memory a run may take, in MiB, before libFuzzer reports it as a crash.
    #[arg(long, default_value_t = 2048)]
    rss_limit_mb: u64,
    /// Seconds one input may take before libFuzzer reports it as a hang.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// One target (image_loader, input_tensor or checkpoint); all of them when absent.
    target: Option<String>,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let targets: Vec<&str> = match &args.target {
        None => TARGETS.to_vec(),
        Some(t) => match TARGETS.iter().find(|n| **n == t.as_str()) {
            Some(n) => vec![*n],
            None => bail!("unknown fuzz target `{t}`; valid targets: {}", TARGETS.join(", ")),
        },
    };
    if args.seconds == 0 {
        bail!("--seconds 0 would not fuzz at all; give at least 1");
    }
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        bail!(
            "cargo-fuzz is not installed; install it with `cargo install cargo-fuzz` \
             (it needs a Linux or macOS host with a C++ compiler for libFuzzer), then run this again"
        );
    }
    let rustc = Command::new("rustc").arg("--version").output().context("running rustc --version")?;
    let nightly = String::from_utf8_lossy(&rustc.stdout).contains("nightly");
    for target in targets {
        let work = root.join("target/fuzz/corpus").join(target);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let seeds = root.join("fuzz/corpus").join(target);
        eprintln!("fuzzing {target} for {} s (discoveries in {})", args.seconds, work.display());
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args(["fuzz", "run", "--release", "--target-dir", "target/fuzz", target])
            .arg(&work)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-rss_limit_mb={}", args.rss_limit_mb))
            .arg(format!("-timeout={}", args.timeout));
        if !nightly {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        let status = cmd.status().context("running cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}); the input that broke it is under fuzz/artifacts/{target}/; \
                 reproduce it with `cargo fuzz run {target} fuzz/artifacts/{target}/<file>`"
            );
        }
    }
    Ok(())
}
