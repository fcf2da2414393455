//! The output folder of `gaze explain`: pictures and the raw file, all or nothing.
//!
//! Every file of a run is first written (atomically, see [`save_png`]) into a staging folder
//! inside the output folder, and only [`OutputDir::commit`] moves them to their names, after
//! checking that none would replace a file unless `--overwrite` was given. A run that fails at any
//! point before (a later image that does not decode, a class out of range, a full disk) leaves the
//! output folder as it found it: the staging folder is removed, and so is the output folder if the
//! run created it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use gaze_core::Attribution;
use gaze_render::{save_png, write_atomic, RgbaImage, WriteOptions};
use safetensors::tensor::TensorView;

use crate::UsageError;

pub struct OutputDir {
    dir: PathBuf,
    overwrite: bool,
    /// The folders this run created, outermost first; removed again unless the run commits.
    created: Vec<PathBuf>,
    /// `DIR/.gaze-staging.<pid>.<n>`: the run's files until [`OutputDir::commit`].
    staging: PathBuf,
    /// The names staged so far, in order.
    staged: Vec<String>,
    names: HashSet<String>,
    committed: bool,
}

impl OutputDir {
    /// Creates the folder (and its parents) if needed, and the staging folder inside it.
    ///
    /// `dir` naming something that is not a folder is a usage error.
    pub fn create(dir: &Path, overwrite: bool) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(
                UsageError(format!("--out {}: this is a file, not a folder; name a folder", dir.display())).into()
            );
        }
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            at = p.parent();
        }
        missing.reverse();
        let mut out = OutputDir {
            dir: dir.to_path_buf(),
            overwrite,
            created: Vec::new(),
            staging: PathBuf::new(),
            staged: Vec::new(),
            names: HashSet::new(),
            committed: false,
        };
        for folder in missing {
            std::fs::create_dir(&folder).map_err(|e| write_error(&folder, e))?;
            out.created.push(folder);
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let staging = dir.join(format!(".gaze-staging.{}.{n}", std::process::id()));
            match std::fs::create_dir(&staging) {
                Ok(()) => {
                    out.staging = staging;
                    return Ok(out);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(write_error(&staging, e)),
            }
        }
    }

    /// The path a staged file will have once the run commits.
    fn final_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Stages a picture as `DIR/name`.
    pub fn write_png(&mut self, name: &str, image: &RgbaImage) -> Result<PathBuf> {
        let staged = self.claim(name)?;
        save_png(&staged, image, WriteOptions::default())
            .map_err(|e| library_write_error(e, &self.final_path(name)))?;
        Ok(self.final_path(name))
    }

    /// Stages the raw file `DIR/name`: `attribution` f32 [N, T, ...] before any display step,
    /// `targets` i64 [N, T], and the metadata (method, model, layers, score, every option).
    pub fn write_raw(&mut self, name: &str, attribution: &Attribution, method: &str) -> Result<PathBuf> {
        let values = attribution.values.to_dtype(DType::F32)?.contiguous()?;
        let targets: Vec<i64> = attribution.targets.iter().flatten().map(|&c| c as i64).collect();
        let n = attribution.batch();
        let t = attribution.targets_per_image();
        let targets = Tensor::from_vec(targets, (n, t), &candle_core::Device::Cpu)?;
        let value_bytes = bytes_f32(&values)?;
        let target_bytes: Vec<u8> =
            targets.flatten_all()?.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            ("attribution", TensorView::new(safetensors::Dtype::F32, values.dims().to_vec(), &value_bytes)?),
            ("targets", TensorView::new(safetensors::Dtype::I64, vec![n, t], &target_bytes)?),
        ];
        let meta = &attribution.meta;
        let mut metadata: HashMap<String, String> = meta.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        metadata.insert("method".into(), method.into());
        metadata.insert("layers".into(), meta.layers.join(","));
        metadata.insert("score".into(), meta.score.clone());
        metadata.insert("resolution".into(), meta.resolution.name().into());
        let bytes = safetensors::serialize(views, Some(metadata)).context("serialising the attributions")?;
        let bytes = sorted_header(bytes)?;
        let staged = self.claim(name)?;
        write_atomic(&staged, WriteOptions::default(), |w| std::io::Write::write_all(w, &bytes))
            .map_err(|e| library_write_error(e, &self.final_path(name)))?;
        Ok(self.final_path(name))
    }

    /// Reserves `name` for this run: an error if the run already wrote it or, without
    /// `--overwrite`, if `DIR/name` exists. Returns the staging path.
    fn claim(&mut self, name: &str) -> Result<PathBuf> {
        if !self.names.insert(name.to_string()) {
            anyhow::bail!("the run would write {} twice", self.final_path(name).display());
        }
        self.refuse_existing(name)?;
        self.staged.push(name.to_string());
        Ok(self.staging.join(name))
    }

    fn refuse_existing(&self, name: &str) -> Result<()> {
        let path = self.final_path(name);
        if !self.overwrite && path.symlink_metadata().is_ok() {
            return Err(exists_error(&path));
        }
        Ok(())
    }

    /// Moves every staged file to its name, after checking again that none would replace a file
    /// unless `--overwrite` was given; the paths written, in the order they were staged.
    ///
    /// If a move fails, the files already moved by this call are removed again.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        for name in &self.staged {
            self.refuse_existing(name)?;
        }
        let mut moved: Vec<PathBuf> = Vec::with_capacity(self.staged.len());
        for name in &self.staged {
            let (from, to) = (self.staging.join(name), self.final_path(name));
            let result = if self.overwrite {
                std::fs::rename(&from, &to)
            } else {
                // A hard link never replaces a file that appeared meanwhile.
                std::fs::hard_link(&from, &to).or_else(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => Err(e),
                    _ if to.symlink_metadata().is_err() => std::fs::rename(&from, &to),
                    _ => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
                })
            };
            if let Err(e) = result {
                for path in &moved {
                    let _ = std::fs::remove_file(path);
                }
                return Err(match e.kind() {
                    io::ErrorKind::AlreadyExists => exists_error(&to),
                    _ => write_error(&to, e),
                });
            }
            moved.push(to);
        }
        self.committed = true;
        Ok(moved)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        if !self.committed {
            // Innermost first; a folder something else has written into meanwhile stays.
            for folder in self.created.iter().rev() {
                let _ = std::fs::remove_dir(folder);
            }
        }
    }
}

/// The error for an output that exists already and may not be replaced (a usage error: exit 2).
fn exists_error(path: &Path) -> anyhow::Error {
    UsageError(format!(
        "{} exists already; pass --overwrite to replace it, or choose another --out folder",
        path.display()
    ))
    .into()
}

/// A failure to write an output (a full disk, a read-only folder): not the user's input, exit 1.
fn write_error(path: &Path, e: io::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot write {}: {e}", path.display())
}

/// [`write_error`] for the rendering library's writers, naming the file's final path rather than
/// its place in the staging folder.
fn library_write_error(e: gaze_core::Error, path: &Path) -> anyhow::Error {
    match e {
        gaze_core::Error::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => exists_error(path),
        gaze_core::Error::Io { source, .. } => write_error(path, source),
        other => other.into(),
    }
}

/// A writer's error as the command line reports it: an existing file is the user's (exit 2, naming
/// `--overwrite`), any other failure to write (a full disk, a read-only folder) is not (exit 1).
pub fn output_error(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<gaze_core::Error>() {
        Ok(gaze_core::Error::Io { path, source }) => {
            library_write_error(gaze_core::Error::Io { path: path.clone(), source }, &path)
        }
        Ok(other) => other.into(),
        Err(e) => e,
    }
}

/// The safetensors file `bytes` with its header's keys (tensors and metadata) in sorted order.
///
/// `safetensors::serialize` writes the metadata map in its hash order, which changes from run to
/// run; sorting makes the same run write the same bytes.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let length = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize);
    let Some(end) = length.and_then(|n| n.checked_add(8)).filter(|end| *end <= bytes.len()) else {
        anyhow::bail!("serialising the attributions: the safetensors header is malformed");
    };
    // serde_json's map is ordered by key, so parsing and writing again sorts every object.
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).context("re-reading the safetensors header")?;
    let mut text = serde_json::to_vec(&header)?;
    // The data starts on an 8-byte boundary, as safetensors aligns it.
    while (8 + text.len()) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend(&bytes[end..]);
    Ok(out)
}

fn bytes_f32(t: &Tensor) -> Result<Vec<u8>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect())
}
