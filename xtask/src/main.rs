//! # xtask
//!
//! gaze's automation, written in Rust so that it runs wherever cargo does: `cargo xtask <command>`.
//! It may touch the network and the file system's caches; the library crates never do.

mod bench;
mod check_cuda;
mod fetch;
mod fuzz;
mod golden;
mod tidy;
mod train_demo;
mod tutorial;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "gaze's automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the workspace's conventions: folder names equal package names, versions, crate docs.
    Tidy,
    /// Runs the criterion suites of benches/ and, with --peers, gaze against the Python peers side by side.
    Bench(bench::Args),
    /// Compile-checks `--features cuda` with NVIDIA's CUDA toolkit from PyPI (target/cuda-toolkit-venv), no GPU needed.
    CheckCuda(check_cuda::Args),
    /// Downloads pretrained weights (vgg16, resnet50, xception) into the Hugging Face cache.
    FetchWeights(fetch::Args),
    /// Fuzzes the image, --input tensor and checkpoint loaders with cargo-fuzz (fuzz/) for N seconds each.
    Fuzz(fuzz::Args),
    /// Regenerates fixtures/ from the Python peers (tools/golden.py in target/golden-venv).
    Golden(golden::Args),
    /// Trains the demo CNN on the shapes data set and writes the embedded checkpoint.
    TrainDemo(train_demo::Args),
    /// Draws every figure of the tutorial into docs/tutorial.md and docs/tutorial/.
    Tutorial(tutorial::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Tidy => tidy::run(&workspace_root()),
        Command::Bench(args) => bench::run(&workspace_root(), &args),
        Command::CheckCuda(args) => check_cuda::run(&workspace_root(), &args),
        Command::FetchWeights(args) => fetch::run(&args),
        Command::Fuzz(args) => fuzz::run(&workspace_root(), &args),
        Command::Golden(args) => golden::run(&workspace_root(), &args),
        Command::TrainDemo(args) => train_demo::run(&workspace_root(), &args),
        Command::Tutorial(args) => tutorial::run(&workspace_root(), &args),
    }
}

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
