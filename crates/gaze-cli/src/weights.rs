//! Finding a model's pretrained weights in the local Hugging Face hub cache, offline.
//!
//! `cargo xtask fetch-weights MODEL` downloads the checkpoint named by
//! [`ModelKind::hub_weights`] into the standard cache; this module finds it there when `--weights`
//! is absent.
//! The cache folder is, as for the Python `huggingface_hub`: `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
//! else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
//!
//! The module depends only on `gaze-models` and `hf-hub`'s cache API (no network client), so that
//! the xtask can check with this very code that the command line finds what it fetched.

use std::path::{Path, PathBuf};

use gaze_models::{Error, HubWeights, ModelKind};
use hf_hub::{Cache, Repo, RepoType};

/// The hub cache folder named by the environment variables `env` reads.
pub fn hub_cache_dir_from(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("HF_HUB_CACHE") {
        return Some(dir);
    }
    if let Some(home) = set("HF_HOME") {
        return Some(home.join("hub"));
    }
    if let Some(cache) = set("XDG_CACHE_HOME") {
        return Some(cache.join("huggingface").join("hub"));
    }
    set("HOME").map(|home| home.join(".cache").join("huggingface").join("hub"))
}

/// The hub cache folder of this process's environment.
pub fn hub_cache_dir() -> Option<PathBuf> {
    hub_cache_dir_from(|name| std::env::var(name).ok())
}

/// The cached file of `hub` under the cache folder `cache`, if it is there.
///
/// A branch revision is looked up through `refs/<revision>`, as `hf-hub` and `huggingface_hub`
/// record it; a commit revision also directly under `snapshots/<commit>`.
pub fn find_in_cache(cache: &Path, hub: &HubWeights) -> Option<PathBuf> {
    let repo = Repo::with_revision(hub.repo.to_string(), RepoType::Model, hub.revision.to_string());
    if let Some(path) = Cache::new(cache.to_path_buf()).repo(repo.clone()).get(hub.file) {
        return Some(path);
    }
    let is_commit = hub.revision.len() == 40 && hub.revision.bytes().all(|b| b.is_ascii_hexdigit());
    if is_commit {
        let path = cache.join(repo.folder_name()).join("snapshots").join(hub.revision).join(hub.file);
        if path.is_file() {
            return Some(path);
        }
    }
    None
}

/// The cached weights of `kind`, or an error telling the user how to get them.
pub fn cached_weights(kind: ModelKind) -> Result<PathBuf, Error> {
    let Some(hub) = kind.hub_weights() else {
        return Err(Error::InvalidOption {
            option: "--model".into(),
            value: kind.name().into(),
            expected: "a model with weights on the hub (vgg16, resnet50, xception); the demo model's are embedded"
                .into(),
        });
    };
    let cache = hub_cache_dir();
    if let Some(path) = cache.as_deref().and_then(|dir| find_in_cache(dir, &hub)) {
        return Ok(path);
    }
    let name = kind.name();
    let fix = format!(
        "no weights for {name}: --weights is absent and {} ({}, revision {}) is not in the local Hugging Face hub \
         cache; run `cargo xtask fetch-weights {name}` to download it, or pass --weights FILE.safetensors",
        hub.repo, hub.file, hub.revision
    );
    Err(Error::Checkpoint {
        path: cache
            .map(|dir| dir.join(format!("models--{}", hub.repo.replace('/', "--"))))
            .unwrap_or_else(|| PathBuf::from("(no cache folder: set HF_HOME or HOME)")),
        reason: fix,
    })
}
