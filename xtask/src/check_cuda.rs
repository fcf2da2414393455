//! `cargo xtask check-cuda [--compute-cap 90] [--cudnn]`: compile-checks `--features cuda` on a machine
//! without a GPU or a CUDA installation.
//!
//! First it checks, from `cargo metadata`, that every workspace member's `cuda` and `cudnn` features
//! forward to candle and to the gaze crates it uses (invariant 8 of docs/architecture.md; a unit test
//! of the xtask checks the same).
//! Then it installs the pieces of NVIDIA's CUDA toolkit that the build needs from PyPI, pinned in
//! `tools/cuda-toolkit-requirements.txt`, into the virtual environment `target/cuda-toolkit-venv`
//! (again whenever that file changes).
//! Those wheels lay the toolkit out under one folder, `nvidia/cu13` of the environment, which this
//! command links as the CUDA root `target/cuda-root` (`bin`, `include`, `nvvm`, `lib`, and `lib64`).
//! Then it runs `cargo check --workspace --all-targets --features cuda` with `CUDA_HOME`, `CUDA_PATH`,
//! `CUDA_ROOT` and `CUDA_TOOLKIT_ROOT_DIR` naming that root, its `bin` first on `PATH`, and
//! `CUDA_COMPUTE_CAP` set, since no GPU is there to ask.
//! The build scripts run for real: candle-kernels compiles its kernels with nvcc (the slow step: tens of
//! minutes on two cores the first time), and cudarc reads the CUDA version from `nvcc --version`.
//! Nothing is linked, so the CUDA libraries themselves (libcuda, cuBLAS, cuRAND, cuDNN) are not needed.
//! It is a developer command, not part of CI.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;

use crate::golden;

/// The virtual environment under `target/` that holds the toolkit's wheels.
const VENV: &str = "cuda-toolkit-venv";

/// The CUDA root under `target/`, made of links into the environment.
const ROOT: &str = "cuda-root";

/// The links of the CUDA root: its entry, and the folder of the wheels' `nvidia/cu13` it points to.
const LINKS: [(&str, &str); 5] =
    [("bin", "bin"), ("include", "include"), ("nvvm", "nvvm"), ("lib", "lib"), ("lib64", "lib")];

/// The oldest compute capability CUDA 13 compiles for (Turing).
const MIN_COMPUTE_CAP: u32 = 75;

#[derive(ClapArgs)]
pub struct Args {
    /// The compute capability candle-kernels compiles its kernels for, as `CUDA_COMPUTE_CAP` takes it:
    /// 90 is Hopper (H100, H200), 80 Ampere (A100), 89 Ada; a trailing `a` selects the
    /// architecture-specific variant (90a).
    #[arg(long, default_value = "90")]
    compute_cap: String,
    /// Also check `--features cudnn` (candle's cuDNN convolutions) after `--features cuda`.
    #[arg(long)]
    cudnn: bool,
    /// The Python interpreter that creates the virtual environment.
    #[arg(long, default_value = "python3")]
    python: String,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    check_compute_cap(&args.compute_cap)?;
    let problems = wiring_problems(&workspace_metadata(root)?);
    if !problems.is_empty() {
        bail!("the cuda and cudnn features are not wired through the workspace:\n{}", problems.join("\n"));
    }
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!("check-cuda installs NVIDIA's Linux x86-64 wheels; run it on such a machine");
    }
    let host = Command::new("g++").arg("--version").output();
    if !host.is_ok_and(|o| o.status.success()) {
        bail!("nvcc needs a host C++ compiler and `g++ --version` failed; install g++ (Debian: apt-get install g++)");
    }
    let requirements = root.join("tools").join("cuda-toolkit-requirements.txt");
    let python = golden::ensure_venv_with(root, VENV, &requirements, &args.python, "about 300 MB of wheels")?;
    let toolkit = site_packages(&python)?.join("nvidia").join("cu13");
    if !toolkit.join("bin").join("nvcc").is_file() {
        bail!(
            "{} has no bin/nvcc: the wheels of tools/cuda-toolkit-requirements.txt did not install the CUDA 13 layout; \
             delete target/{VENV} and run this again",
            toolkit.display()
        );
    }
    let cuda_root = root.join("target").join(ROOT);
    assemble_root(&toolkit, &cuda_root)?;
    let nvcc = cuda_root.join("bin").join("nvcc");
    let version = Command::new(&nvcc)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", nvcc.display()))?;
    if !version.status.success() {
        bail!("`{} --version` failed: {}", nvcc.display(), String::from_utf8_lossy(&version.stderr).trim());
    }
    let release =
        String::from_utf8_lossy(&version.stdout).lines().find(|l| l.contains("release")).unwrap_or("").to_string();
    println!("check-cuda: CUDA root {} ({release}), compute capability {}", cuda_root.display(), args.compute_cap);

    let path = std::env::join_paths(
        std::iter::once(cuda_root.join("bin"))
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .context("joining PATH with the CUDA root's bin")?;
    let mut features = vec!["cuda"];
    if args.cudnn {
        features.push("cudnn");
    }
    for feature in features {
        println!("check-cuda: cargo check --workspace --all-targets --features {feature}");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(root)
            .args(["check", "--workspace", "--all-targets", "--features", feature])
            .envs(cuda_env(&cuda_root, &args.compute_cap))
            .env("PATH", &path);
        golden::run_command(cmd, &format!("cargo check --workspace --all-targets --features {feature}"))?;
    }
    println!("check-cuda: the workspace compiles with --features cuda{}", if args.cudnn { " and cudnn" } else { "" });
    Ok(())
}

/// Validates `--compute-cap`: digits, at least [`MIN_COMPUTE_CAP`], optionally followed by `a`.
fn check_compute_cap(cap: &str) -> Result<u32> {
    let digits = cap.strip_suffix('a').unwrap_or(cap);
    match digits.parse::<u32>() {
        Ok(n) if n >= MIN_COMPUTE_CAP && digits.chars().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => bail!(
            "--compute-cap `{cap}` is not a compute capability CUDA 13 compiles for; \
             give its digits without a dot, {MIN_COMPUTE_CAP} or more, optionally followed by `a` (75, 80, 86, 89, 90, 90a, 100, 120)"
        ),
    }
}

/// `cargo metadata --no-deps` of the workspace: its members, their features and their dependencies.
fn workspace_metadata(root: &Path) -> Result<serde_json::Value> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata's output")
}

/// Where the workspace breaks docs/architecture.md's invariant on CUDA, one line per problem: every
/// member has `cuda` and `cudnn` features, `cudnn` enables `cuda`, and each forwards to the same
/// feature of every workspace member and of candle-core and candle-nn that the member depends on
/// (dev-dependencies included, so that tests run on CUDA with the engine's CUDA code).
fn wiring_problems(metadata: &serde_json::Value) -> Vec<String> {
    let empty = Vec::new();
    let packages = metadata["packages"].as_array().unwrap_or(&empty);
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or("?");
        let feature = |f: &str| -> Option<Vec<&str>> {
            package["features"][f].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        };
        let (Some(cuda), Some(cudnn)) = (feature("cuda"), feature("cudnn")) else {
            problems.push(format!("{name}: no `cuda` or no `cudnn` feature (add them, empty or forwarding)"));
            continue;
        };
        if !cudnn.contains(&"cuda") {
            problems.push(format!("{name}: `cudnn` does not enable `cuda`"));
        }
        for dep in package["dependencies"].as_array().unwrap_or(&empty) {
            if dep["kind"].as_str() == Some("build") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or("?");
            if !(members.contains(&dep_name) || dep_name == "candle-core" || dep_name == "candle-nn") {
                continue;
            }
            let key = dep["rename"].as_str().unwrap_or(dep_name);
            for (feature, list) in [("cuda", &cuda), ("cudnn", &cudnn)] {
                let wanted = format!("{key}/{feature}");
                if !list.contains(&wanted.as_str()) {
                    problems.push(format!("{name}: `{feature}` does not enable `{wanted}`"));
                }
            }
        }
    }
    problems
}

/// The environment variables that point candle's and cudarc's build scripts at the CUDA root.
fn cuda_env(cuda_root: &Path, compute_cap: &str) -> Vec<(&'static str, OsString)> {
    let root = cuda_root.as_os_str().to_os_string();
    vec![
        ("CUDA_HOME", root.clone()),
        ("CUDA_PATH", root.clone()),
        ("CUDA_ROOT", root.clone()),
        ("CUDA_TOOLKIT_ROOT_DIR", root),
        ("CUDA_COMPUTE_CAP", compute_cap.into()),
    ]
}

/// The environment's `site-packages`, as its interpreter reports it.
fn site_packages(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("{} could not name its site-packages: {}", python.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Makes `cuda_root` a folder of links into `toolkit` (see [`LINKS`]), replacing links that point
/// elsewhere; running it again changes nothing.
fn assemble_root(toolkit: &Path, cuda_root: &Path) -> Result<()> {
    std::fs::create_dir_all(cuda_root).with_context(|| format!("creating {}", cuda_root.display()))?;
    for (name, target) in LINKS {
        let link = cuda_root.join(name);
        let target = toolkit.join(target);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).with_context(|| {
                format!("removing {} (the CUDA root holds only links; delete it by hand)", link.display())
            })?;
        }
        symlink(&target, &link)?;
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn symlink(_target: &Path, link: &Path) -> Result<()> {
    bail!("check-cuda links the CUDA root with Unix symbolic links and cannot create {}", link.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_caps_are_digits_from_turing_on_with_an_optional_a() {
        assert_eq!(check_compute_cap("90").unwrap(), 90);
        assert_eq!(check_compute_cap("90a").unwrap(), 90);
        assert_eq!(check_compute_cap("120").unwrap(), 120);
        for bad in ["", "a", "9.0", "70", "sm_90", "90b", "+90", "-90"] {
            let err = check_compute_cap(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn every_member_forwards_cuda_and_cudnn_to_candle_and_to_the_gaze_crates_it_uses() {
        let metadata = workspace_metadata(&crate::workspace_root()).unwrap();
        let problems = wiring_problems(&metadata);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let members = metadata["packages"].as_array().unwrap();
        assert!(members.iter().any(|p| p["name"] == "gaze-engine"), "the workspace's members were not read");
    }

    #[test]
    fn a_missing_feature_or_forward_is_named() {
        let metadata = serde_json::json!({"packages": [
            {"name": "gaze-a", "features": {"cuda": ["candle-core/cuda"], "cudnn": ["candle-core/cudnn"]},
             "dependencies": [{"name": "candle-core", "kind": null}, {"name": "gaze-b", "kind": "dev"},
                              {"name": "serde", "kind": null}, {"name": "gaze-b", "kind": "build"}]},
            {"name": "gaze-b", "features": {}, "dependencies": []},
        ]});
        let problems = wiring_problems(&metadata);
        assert_eq!(
            problems,
            [
                "gaze-a: `cudnn` does not enable `cuda`",
                "gaze-a: `cuda` does not enable `gaze-b/cuda`",
                "gaze-a: `cudnn` does not enable `gaze-b/cudnn`",
                "gaze-b: no `cuda` or no `cudnn` feature (add them, empty or forwarding)",
            ]
        );
    }

    #[test]
    fn the_environment_names_the_root_everywhere_and_the_compute_cap() {
        let env = cuda_env(Path::new("some/cuda-root"), "90");
        for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "CUDA_TOOLKIT_ROOT_DIR"] {
            assert!(env.iter().any(|(k, v)| *k == var && v == "some/cuda-root"), "{var} missing from {env:?}");
        }
        assert!(env.iter().any(|(k, v)| *k == "CUDA_COMPUTE_CAP" && v == "90"));
    }

    #[cfg(unix)]
    #[test]
    fn the_root_links_into_the_toolkit_and_assembling_again_repairs_it() {
        let dir = std::env::temp_dir().join(format!("gaze-xtask-cuda-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let toolkit = dir.join("cu13");
        let root = dir.join("root");
        assemble_root(&toolkit, &root).unwrap();
        // A stale link, as a toolkit moved elsewhere leaves it, is replaced.
        std::fs::remove_file(root.join("bin")).unwrap();
        symlink(&dir.join("elsewhere"), &root.join("bin")).unwrap();
        assemble_root(&toolkit, &root).unwrap();
        for (name, target) in LINKS {
            assert_eq!(std::fs::read_link(root.join(name)).unwrap(), toolkit.join(target), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
