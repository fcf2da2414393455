//! Writing files atomically: a temporary file in the same folder, renamed into place only once it
//! is complete, so a reader never sees half a picture.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gaze_core::{Error, Result};
use image::codecs::png::PngEncoder;
use image::{ImageBuffer, ImageEncoder, PixelWithColorType};

/// How to write an output file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace a file that already exists; without it, an existing file is an error and is left
    /// untouched.
    pub overwrite: bool,
}

impl WriteOptions {
    /// Options that replace an existing file.
    pub fn overwrite() -> WriteOptions {
        WriteOptions { overwrite: true }
    }
}

/// Writes an 8-bit `image` (`RgbImage`, `RgbaImage`, `GrayImage`) as a PNG file at `path`,
/// atomically (see [`write_atomic`]).
pub fn save_png<P>(path: &Path, image: &ImageBuffer<P, Vec<u8>>, opts: WriteOptions) -> Result<()>
where
    P: PixelWithColorType<Subpixel = u8>,
{
    write_atomic(path, opts, |w| {
        PngEncoder::new(w)
            .write_image(image.as_raw(), image.width(), image.height(), P::COLOR_TYPE)
            .map_err(io::Error::other)
    })
}

/// Writes a file atomically: `write` fills a new temporary file in the same folder as `path`,
/// which is flushed to disk and then renamed to `path`.
///
/// If `write` fails, or anything else does, the temporary file is removed and `path` is left as it
/// was: either absent or with its previous contents.
/// Without [`WriteOptions::overwrite`], an existing `path` is an error, checked again at the moment
/// of publishing (by hard-linking, which never replaces a file) so that a file created meanwhile is
/// not clobbered either.
pub fn write_atomic<F>(path: &Path, opts: WriteOptions, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let io_err = |source: io::Error| Error::Io { path: path.to_path_buf(), source };
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")))?;
    if !opts.overwrite && path.exists() {
        return Err(exists_error(path));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (temp, file) =
        create_temp(&dir, &file_name.to_string_lossy()).map_err(|source| Error::Io { path: dir.clone(), source })?;
    let result = fill(file, write).and_then(|()| publish(&temp, path, opts));
    // After a successful hard link the temporary name is a second link to the same file; after a
    // rename it no longer exists; after a failure it holds the partial file.
    let _ = fs::remove_file(&temp);
    match result {
        Ok(()) => {
            // Make the rename itself durable where the platform allows; a failure here loses
            // nothing that is not already on disk.
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists_error(path)),
        Err(e) => Err(io_err(e)),
    }
}

fn exists_error(path: &Path) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the file exists; ask to overwrite it or choose another path",
        ),
    }
}

fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(f) => return Ok((temp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn fill<F>(file: File, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let mut w = BufWriter::new(file);
    write(&mut w)?;
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn publish(temp: &Path, path: &Path, opts: WriteOptions) -> io::Result<()> {
    if opts.overwrite {
        return fs::rename(temp, path);
    }
    match fs::hard_link(temp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // File systems without hard links: check, then rename (a narrow race remains there).
        Err(_) if !path.exists() => fs::rename(temp, path),
        Err(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
    }
}
