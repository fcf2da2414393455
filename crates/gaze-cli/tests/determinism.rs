//! The same `gaze explain` run twice writes byte-identical files (pictures and raw safetensors).

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::repo;

fn run(method: &str, out: &PathBuf) {
    let o = Command::new(env!("CARGO_BIN_EXE_gaze"))
        .args(["explain", "--method", method, "--top", "2", "--raw", "--out"])
        .arg(out)
        .arg("fixtures/images/chelsea.png")
        .current_dir(repo())
        .output()
        .expect("gaze runs");
    assert!(o.status.success(), "{method}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The files of `dir`, sorted by name, with their bytes.
fn files(dir: &PathBuf) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_same_run_twice_writes_byte_identical_files() {
    let base = std::env::temp_dir().join(format!("gaze-determinism-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    for method in ["gradcam", "scorecam", "saliency"] {
        let (a, b) = (base.join(format!("{method}-a")), base.join(format!("{method}-b")));
        run(method, &a);
        run(method, &b);
        let (fa, fb) = (files(&a), files(&b));
        assert!(fa.iter().any(|(n, _)| n.ends_with(".png")), "{method}: no picture written");
        assert!(fa.iter().any(|(n, _)| n == "attributions.safetensors"), "{method}: no raw file written");
        assert_eq!(fa.len(), fb.len(), "{method}: different file lists");
        for ((na, ba), (nb, bb)) in fa.iter().zip(&fb) {
            assert_eq!(na, nb, "{method}: different file names");
            assert!(ba == bb, "{method}: {na} differs between two identical runs");
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
