//! `cargo xtask golden`: the golden fixtures, written by the Python peers.
//!
//! It creates a virtual environment under `target/golden-venv` (once), installs the exact versions pinned
//! in `tools/requirements.txt` (again whenever that file changes), and runs `tools/golden.py`, which writes
//! `fixtures/*.safetensors` and the tensor tables of `fixtures/README.md`.
//! Then it checks that the README lists exactly the tensors each fixture file holds.
//! CI never runs this: the fixtures are committed, and the Rust tests read them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The fixture groups of `tools/golden.py`, in the order it writes them.
pub const GROUPS: [&str; 6] = ["ops", "models", "cam", "grad", "shap", "preprocess"];

/// Environment for deterministic runs: one thread everywhere, no GPU, no progress bars, no bytecode files.
const ENV: [(&str, &str); 8] = [
    ("OMP_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("CUDA_VISIBLE_DEVICES", ""),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
    ("PYTHONHASHSEED", "0"),
    ("TQDM_DISABLE", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
];

#[derive(clap::Args)]
pub struct Args {
    /// Regenerate only these groups (comma-separated): ops, models, cam, grad, shap, preprocess.
    /// The peer groups (cam, grad, shap) read the models that `models` wrote.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The Python interpreter that creates the virtual environment.
    #[arg(long, default_value = "python3")]
    python: String,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let only = check_groups(&args.only)?;
    let python = ensure_venv(root, &args.python)?;
    let mut cmd = Command::new(&python);
    cmd.arg(root.join("tools").join("golden.py")).arg("--out").arg(root.join("fixtures")).current_dir(root).envs(ENV);
    if !only.is_empty() {
        cmd.arg("--only").arg(only.join(","));
    }
    run_command(cmd, "tools/golden.py")?;
    check_readme(&root.join("fixtures"))?;
    println!("golden: fixtures/README.md lists every tensor of every fixture");
    Ok(())
}

/// Validates `--only`: every name must be one of [`GROUPS`].
fn check_groups(only: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in only.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !GROUPS.contains(&name) {
            bail!("unknown fixture group `{name}` in --only; valid groups: {}", GROUPS.join(", "));
        }
        out.push(name.to_string());
    }
    if !only.is_empty() && out.is_empty() {
        bail!(
            "--only names no fixture group; valid groups: {} (leave --only out to regenerate them all)",
            GROUPS.join(", ")
        );
    }
    Ok(out)
}

/// Creates `target/golden-venv` if needed and installs `tools/requirements.txt` when it changed since the
/// last install; returns the environment's interpreter.
pub(crate) fn ensure_venv(root: &Path, base_python: &str) -> Result<PathBuf> {
    let requirements = root.join("tools").join("requirements.txt");
    ensure_venv_with(
        root,
        "golden-venv",
        &requirements,
        base_python,
        "torch is large: this takes minutes the first time",
    )
}

/// Creates the virtual environment `target/<name>` if needed and installs `requirements` into it when
/// that file changed since the last install (`note` says what to expect then); returns the
/// environment's interpreter.
pub(crate) fn ensure_venv_with(
    root: &Path,
    name: &str,
    requirements: &Path,
    base_python: &str,
    note: &str,
) -> Result<PathBuf> {
    let venv = root.join("target").join(name);
    let python = if cfg!(windows) { venv.join("Scripts").join("python.exe") } else { venv.join("bin").join("python") };
    if !python.exists() {
        println!("{name}: creating {}", venv.display());
        let mut cmd = Command::new(base_python);
        cmd.args(["-m", "venv"]).arg(&venv);
        run_command(cmd, &format!("{base_python} -m venv"))?;
    }
    let wanted = fs::read_to_string(requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join("gaze-requirements.txt");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        println!("{name}: installing {} ({note})", requirements.display());
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "-r"]).arg(requirements);
        run_command(cmd, &format!("pip install -r {}", requirements.display()))?;
        fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(python)
}

pub(crate) fn run_command(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed with {status}");
    }
    Ok(())
}

/// One tensor as a safetensors header or a README row describes it: dtype name and shape.
type Listing = BTreeMap<String, (String, Vec<usize>)>;

/// Checks that `fixtures/README.md` lists, between the markers of each fixture file, exactly the tensors
/// (names, dtypes, shapes) that the file's header holds, and that each file records what made it.
pub fn check_readme(fixtures: &Path) -> Result<()> {
    let readme_path = fixtures.join("README.md");
    let readme = fs::read_to_string(&readme_path).with_context(|| format!("reading {}", readme_path.display()))?;
    let mut files = Vec::new();
    collect_safetensors(fixtures, &mut files)?;
    files.sort();
    if files.is_empty() {
        bail!("no .safetensors files under {}", fixtures.display());
    }
    let mut problems = Vec::new();
    let mut documented = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(fixtures).unwrap_or(file).to_string_lossy().replace('\\', "/");
        documented.push(rel.clone());
        let (header, metadata) = read_header(file)?;
        for key in ["generator", "versions", "settings"] {
            if !metadata.contains_key(key) {
                problems.push(format!("{rel}: no `{key}` in the header's metadata"));
            }
        }
        let listed = match readme_section(&readme, &rel) {
            Some(section) => parse_rows(section),
            None => {
                problems.push(format!("{rel}: README.md has no `<!-- tensors: {rel} -->` section"));
                continue;
            }
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => {
                problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        for (name, info) in &header {
            match listed.get(name) {
                None => problems.push(format!("{rel}: `{name}` is in the file, not in README.md")),
                Some(row) if row != info => {
                    problems.push(format!("{rel}: `{name}` is {info:?} in the file, {row:?} in README.md"))
                }
                Some(_) => {}
            }
        }
        for name in listed.keys().filter(|n| !header.contains_key(*n)) {
            problems.push(format!("{rel}: `{name}` is in README.md, not in the file"));
        }
    }
    for line in readme.lines() {
        if let Some(rel) = line.trim().strip_prefix("<!-- tensors: ").and_then(|s| s.strip_suffix(" -->")) {
            if !documented.iter().any(|d| d == rel) {
                problems.push(format!("README.md documents {rel}, which does not exist"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "fixtures/README.md and the fixture files disagree ({} problem(s)):\n  {}",
            problems.len(),
            problems.join("\n  ")
        )
    }
}

fn collect_safetensors(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_safetensors(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_header(path: &Path) -> Result<(Listing, std::collections::HashMap<String, String>)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let listing = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, (format!("{:?}", info.dtype), info.shape.clone())))
        .collect();
    Ok((listing, metadata.metadata().clone().unwrap_or_default()))
}

/// The text between a file's begin and end markers.
fn readme_section<'a>(readme: &'a str, rel: &str) -> Option<&'a str> {
    let begin = format!("<!-- tensors: {rel} -->");
    let end = format!("<!-- end tensors: {rel} -->");
    let start = readme.find(&begin)? + begin.len();
    let stop = readme[start..].find(&end)? + start;
    Some(&readme[start..stop])
}

/// Parses the table rows "| `name` | DTYPE | [d0, d1] | meaning |".
fn parse_rows(section: &str) -> Result<Listing> {
    let mut out = Listing::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 4 {
            bail!("README row `{line}` does not have four cells");
        }
        let name = cells[0].trim_matches('`').to_string();
        let shape = cells[2]
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|d| d.parse::<usize>().with_context(|| format!("bad dimension `{d}` in README row of `{name}`")))
            .collect::<Result<Vec<_>>>()?;
        if out.insert(name.clone(), (cells[1].to_string(), shape)).is_some() {
            bail!("`{name}` is listed twice");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smoke test the parity tests rely on: every name they read is documented, with its shape.
    #[test]
    fn readme_lists_exactly_the_tensors_of_each_fixture() {
        check_readme(&crate::workspace_root().join("fixtures")).unwrap();
    }

    #[test]
    fn only_rejects_unknown_groups_and_names_the_valid_ones() {
        let err = check_groups(&["ops".into(), "camm".into()]).unwrap_err().to_string();
        assert!(err.contains("`camm`"), "{err}");
        assert!(err.contains("ops, models, cam, grad, shap, preprocess"), "{err}");
        assert_eq!(check_groups(&["cam".into(), " grad ".into()]).unwrap(), ["cam", "grad"]);
        // `--only ,` names no group: an error, not every group.
        let err = check_groups(&["".into(), " ".into()]).unwrap_err().to_string();
        assert!(err.contains("--only names no fixture group"), "{err}");
        assert!(check_groups(&[]).unwrap().is_empty());
    }

    #[test]
    fn rows_parse_into_names_dtypes_and_shapes() {
        let rows = parse_rows(
            "| tensor | dtype | shape | meaning |\n|---|---|---|---|\n\
             | `a.b` | F32 | [2, 3] | x |\n| `s` | I64 | [] | scalar |\n",
        )
        .unwrap();
        assert_eq!(rows["a.b"], ("F32".to_string(), vec![2, 3]));
        assert_eq!(rows["s"], ("I64".to_string(), vec![]));
        assert!(parse_rows("| `a` | F32 | [2, x] | bad |").is_err());
    }
}
