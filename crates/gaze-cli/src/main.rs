//! # gaze
//!
//! The `gaze` command line: `predict`, `layers`, `explain`, `report`, `demo`, `eval` (see `docs/cli.md` for the
//! contract).
//! It owns argument parsing, finding model weights, reading and writing files, and exit codes:
//! 0 when everything asked for was written, 2 for bad usage or input, 1 for other failures.
//! It computes nothing itself: models, methods and pictures come from the library crates.

mod demo;
mod eval;
mod explain;
mod input;
mod layers;
mod model;
mod predict;
mod progress;
mod report;
mod weights;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gaze", version, about = "See what an image classifier looks at when it decides")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The top classes of each image.
    Predict(predict::Args),
    /// Every layer (tap) name of a model with its output shape.
    Layers(layers::Args),
    /// Attribution maps of a method for each image and target.
    Explain(Box<explain::Args>),
    /// An HTML page comparing methods side by side on several images (DIR/index.html).
    Report(report::Args),
    /// Every method on shapes images for the embedded demo model, with a leaderboard (DIR/index.html).
    Demo(demo::Args),
    /// The leaderboard of methods on the shapes data set's ground truth, with random and centre baselines.
    Eval(eval::Args),
}

/// An error in how gaze was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    // Before any thread or candle op: candle's elementwise ops on this thread, freed memory kept
    // for the next pass (see the function's documentation and docs/benchmarks.md).
    gaze_engine::ops::tune_process();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict(args) => predict::run(args),
        Command::Layers(args) => layers::run(args),
        Command::Explain(args) => explain::run(*args),
        Command::Report(args) => report::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The error and its causes, outermost first, joined by `: `: a cause whose text the message
/// already holds (a library error that names its source in its own text) is not repeated, and
/// a backtrace that candle captured (with `RUST_BACKTRACE` set) is left out.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // candle appends a captured backtrace after the message, on the lines that follow.
        let text = match text.find("\nstack backtrace:").or_else(|| text.find("\n   0: ")) {
            Some(at) => text[..at].trim_end().to_string(),
            None => text,
        };
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// 2 for the user's input or usage, 1 for anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<UsageError>() {
            return 2;
        }
        if let Some(g) = cause.downcast_ref::<gaze_core::Error>() {
            return if g.is_user_error() { 2 } else { 1 };
        }
    }
    1
}

/// Writes `text` to stdout and flushes it. `Ok(false)` when the reader has closed the pipe (as
/// `head` does once it has its lines): the command then stops quietly and succeeds, since what is
/// left is for nobody; any other failure to write is an error.
/// Every command prints through it.
pub fn write_stdout(text: &str) -> Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}
