//! PNG output: atomic writes, overwrite refusal, and nothing half-written after a failure.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use gaze_render::{save_png, write_atomic, Rgb, RgbImage, WriteOptions};

/// A fresh, empty folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("gaze-render-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn picture(color: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(5, 3, Rgb(color))
}

fn read(path: &Path) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn a_png_round_trips() {
    let dir = Scratch::new("round-trip");
    let path = dir.0.join("map.png");
    let img = picture([10, 200, 30]);
    save_png(&path, &img, WriteOptions::default()).unwrap();
    assert_eq!(read(&path), img);
    assert_eq!(dir.entries(), ["map.png"]);
}

#[test]
fn an_existing_file_is_not_overwritten_unless_asked() {
    let dir = Scratch::new("overwrite");
    let path = dir.0.join("map.png");
    save_png(&path, &picture([1, 2, 3]), WriteOptions::default()).unwrap();
    let err = save_png(&path, &picture([9, 9, 9]), WriteOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("map.png") && text.contains("exists"), "{text}");
    assert!(err.is_user_error());
    assert_eq!(read(&path), picture([1, 2, 3]));
    save_png(&path, &picture([9, 9, 9]), WriteOptions::overwrite()).unwrap();
    assert_eq!(read(&path), picture([9, 9, 9]));
    assert_eq!(dir.entries(), ["map.png"]);
}

#[test]
fn a_failing_write_leaves_no_file() {
    let dir = Scratch::new("inject");
    let path = dir.0.join("map.png");
    let err = write_atomic(&path, WriteOptions::default(), |w| {
        w.write_all(&[0x89, b'P', b'N', b'G'])?;
        w.flush()?;
        Err(io::Error::other("injected failure after four bytes"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(dir.entries().is_empty(), "left behind: {:?}", dir.entries());

    // A failure while replacing a file keeps the old contents.
    save_png(&path, &picture([4, 5, 6]), WriteOptions::default()).unwrap();
    let _ = write_atomic(&path, WriteOptions::overwrite(), |w| {
        w.write_all(b"half a picture")?;
        Err(io::Error::other("injected"))
    })
    .unwrap_err();
    assert_eq!(read(&path), picture([4, 5, 6]));
    assert_eq!(dir.entries(), ["map.png"]);
}

#[test]
fn a_failing_rename_leaves_no_temporary_file() {
    let dir = Scratch::new("rename");
    // The destination is a non-empty folder: renaming a file onto it fails.
    let path = dir.0.join("taken.png");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), b"x").unwrap();
    assert!(save_png(&path, &picture([1, 1, 1]), WriteOptions::overwrite()).is_err());
    assert_eq!(dir.entries(), ["taken.png"]);
}

#[test]
fn a_missing_folder_is_an_error_naming_it() {
    let dir = Scratch::new("missing");
    let path = dir.0.join("no").join("such").join("map.png");
    let err = save_png(&path, &picture([1, 1, 1]), WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("such"), "{err}");
    assert!(dir.entries().is_empty());
}
