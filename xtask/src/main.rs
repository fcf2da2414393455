//! # xtask
//!
//! gaze's automation, written in Rust so that it runs wherever cargo does: `cargo xtask <command>`.
//! It may touch the network and the file system's caches; the library crates never do.

mod tidy;

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
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Tidy => tidy::run(&workspace_root()),
    }
}

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
