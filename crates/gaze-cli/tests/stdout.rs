//! What gaze prints to stdout when the reader stops reading (`gaze predict DIR | head -1`) or the
//! output cannot be written: a closed pipe ends the command quietly with exit code 0, any other
//! failure to write is an error with exit code 1, never a panic.

mod common;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::{gaze, repo, scratch, stderr};

/// Runs `gaze` with `args` from the repository root, its stdout a pipe that this side closes after
/// reading `lines` lines (with 0, at once, before gaze has written anything), and waits for it.
fn gaze_into_closed_pipe(args: &[&str], lines: usize) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gaze"))
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gaze starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    for i in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).expect("gaze's stdout reads");
        assert!(!line.is_empty(), "gaze {args:?} printed {i} lines, fewer than {lines}");
    }
    drop(out);
    child.wait_with_output().expect("gaze ends")
}

/// The command ended by itself, successfully and silently: no panic message, no error.
fn assert_quiet_success(args: &[&str], o: &Output) {
    assert_eq!(o.status.code(), Some(0), "gaze {args:?}: {}", stderr(o));
    assert_eq!(stderr(o), "", "gaze {args:?} wrote to stderr");
}

/// A folder of `n` copies of the sample photos, so that `gaze predict` prints in several chunks.
fn photos(name: &str, n: usize) -> String {
    let dir = scratch(name);
    let sources = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"];
    for i in 0..n {
        let source = sources[i % sources.len()];
        let ext = source.rsplit('.').next().unwrap();
        std::fs::copy(repo().join("assets/images").join(source), dir.join(format!("img{i:03}.{ext}"))).unwrap();
    }
    dir.to_str().unwrap().to_owned()
}

#[test]
fn layers_stops_quietly_when_the_reader_has_gone() {
    for args in [
        &["layers"][..],
        &["layers", "--json"],
        &["layers", "--model", "vgg16", "--weights", "fixtures/models/vgg16.safetensors"],
    ] {
        let o = gaze_into_closed_pipe(args, 0);
        assert_quiet_success(args, &o);
    }
}

#[test]
fn predict_stops_quietly_when_the_reader_has_gone() {
    // Three chunks of 32: the reader is gone long before the second chunk is printed.
    let dir = photos("stdout-predict", 96);
    let args = ["predict", "--top", "2", dir.as_str()];
    let o = gaze_into_closed_pipe(&args, 1);
    assert_quiet_success(&args, &o);

    let args = ["predict", "--json", "--logits", dir.as_str()];
    let o = gaze_into_closed_pipe(&args, 0);
    assert_quiet_success(&args, &o);
}

#[test]
fn eval_stops_quietly_when_the_reader_has_gone() {
    for args in
        [&["eval", "--methods", "saliency", "--n", "1"][..], &["eval", "--methods", "saliency", "--n", "1", "--json"]]
    {
        let o = gaze_into_closed_pipe(args, 0);
        assert_quiet_success(args, &o);
    }
}

#[test]
fn explain_and_report_finish_their_files_when_the_reader_has_gone() {
    let dir = scratch("stdout-explain");
    let out = dir.join("explain");
    let args =
        ["explain", "--method", "saliency", "--top", "2", "--out", out.to_str().unwrap(), "assets/images/chelsea.png"];
    let o = gaze_into_closed_pipe(&args, 0);
    assert_quiet_success(&args, &o);
    // Both pictures (top 2) are in place, and nothing else (no staging folder).
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
    let page = dir.join("report");
    let args = ["report", "--methods", "gradcam", "--out", page.to_str().unwrap(), "assets/images/chelsea.png"];
    let o = gaze_into_closed_pipe(&args, 0);
    assert_quiet_success(&args, &o);
    assert!(page.join("index.html").exists());
}

#[test]
#[cfg(target_os = "linux")]
fn a_failed_write_is_an_error_not_a_panic() {
    // Writes to /dev/full fail with "no space left on device".
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full opens");
    for args in [&["layers"][..], &["predict", "assets/images/coffee.png"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_gaze"))
            .args(args)
            .current_dir(repo())
            .stdout(full())
            .output()
            .expect("gaze runs");
        assert_eq!(o.status.code(), Some(1), "gaze {args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("error: writing to stdout"), "gaze {args:?}: {err}");
        assert!(!err.contains("panicked"), "gaze {args:?}: {err}");
    }
    // With a reader, the same commands succeed.
    assert!(gaze(&["layers"]).status.success());
}
