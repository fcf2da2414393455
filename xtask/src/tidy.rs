//! Workspace conventions, checked by `cargo xtask tidy` and by a test.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Every crate under `crates/` has its folder named like its package, a version, inherits the
/// workspace's edition, and opens its `lib.rs` or `main.rs` with a `//!` doc.
pub fn run(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let crates = root.join("crates");
    let mut entries: Vec<_> = fs::read_dir(&crates)
        .with_context(|| format!("reading {}", crates.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    entries.sort();
    for dir in entries {
        let folder = dir.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        let manifest = fs::read_to_string(dir.join("Cargo.toml"))?;
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        if name != folder {
            problems.push(format!("crates/{folder}: package is named `{name}`, not like its folder"));
        }
        if !manifest.contains("version.workspace = true") && !manifest.contains("\nversion = ") {
            problems.push(format!("crates/{folder}: no version"));
        }
        if !manifest.contains("description = ") {
            problems.push(format!("crates/{folder}: no description"));
        }
        let src = ["src/lib.rs", "src/main.rs"].iter().map(|f| dir.join(f)).find(|p| p.exists());
        match src {
            Some(src) => {
                let text = fs::read_to_string(&src)?;
                if !text.trim_start().starts_with("//!") {
                    problems.push(format!("{}: does not open with a `//!` crate doc", src.display()));
                }
            }
            None => problems.push(format!("crates/{folder}: no src/lib.rs or src/main.rs")),
        }
    }
    if problems.is_empty() {
        println!("tidy: ok");
        Ok(())
    } else {
        bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn workspace_is_tidy() {
        super::run(&crate::workspace_root()).unwrap();
    }
}
