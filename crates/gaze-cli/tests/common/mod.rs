//! Helpers shared by the command line's integration tests: running the `gaze` binary from the
//! repository root, reading its output, and fresh folders for what it writes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root, where the tests run `gaze` (so `assets/` and `fixtures/` resolve).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `gaze` with `args` from the repository root and waits for it.
pub fn gaze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gaze")).args(args).current_dir(repo()).output().expect("gaze runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// A path for `gaze` to create, unique to this test process and `name`; nothing is there.
pub fn outdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gaze-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh, empty folder unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = outdir(name);
    std::fs::create_dir_all(&dir).expect("a scratch folder can be made");
    dir
}
