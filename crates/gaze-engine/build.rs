//! Links OpenBLAS when the `openblas` feature is on and the library is installed.
//!
//! The feature is on by default.
//! The build looks for `libopenblas` in the directory named by `OPENBLAS_LIB_DIR` or in the
//! system's library directories (Debian's `libopenblas-dev` puts it in `/usr/lib/<triplet>`).
//! Where it finds none, it says so in a cargo warning and the matrix multiply falls back to the
//! pure-Rust `gemm` crate, so the build never fails for want of the library.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(gaze_openblas)");
    println!("cargo:rerun-if-env-changed=OPENBLAS_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_OPENBLAS").is_none() {
        return;
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = env::var_os("OPENBLAS_LIB_DIR") {
        dirs.push(dir.into());
    }
    if os == "linux" {
        let triplet = match arch.as_str() {
            "x86_64" => "x86_64-linux-gnu",
            "aarch64" => "aarch64-linux-gnu",
            "x86" => "i386-linux-gnu",
            "powerpc64" => "powerpc64le-linux-gnu",
            "s390x" => "s390x-linux-gnu",
            "riscv64" => "riscv64-linux-gnu",
            _ => "",
        };
        if !triplet.is_empty() {
            dirs.push(PathBuf::from("/usr/lib").join(triplet));
        }
        dirs.extend(["/usr/lib64", "/usr/lib", "/usr/local/lib"].map(PathBuf::from));
    } else if os == "macos" {
        dirs.extend(["/opt/homebrew/opt/openblas/lib", "/usr/local/opt/openblas/lib"].map(PathBuf::from));
    }
    let names = ["libopenblas.so", "libopenblas.dylib", "libopenblas.a"];
    let found = dirs.iter().find(|d| names.iter().any(|n| d.join(n).exists()));
    match found {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=openblas");
            println!("cargo:rustc-cfg=gaze_openblas");
        }
        None => println!(
            "cargo:warning=gaze-engine: libopenblas not found (searched {}); the ops use the slower pure-Rust gemm kernel. \
             Install it with .ci/install (Debian's libopenblas-dev) or set OPENBLAS_LIB_DIR.",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}
