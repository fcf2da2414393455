//! `cargo xtask fetch-weights vgg16|resnet50|xception`: downloads pretrained checkpoints from the
//! Hugging Face hub into the standard local cache, where `gaze` finds them.
//!
//! Each model's repository, revision and file come from one table,
//! [`ModelKind::hub_weights`](gaze_models::ModelKind::hub_weights).
//! The download goes through `hf-hub`'s blocking client (rustls), to the endpoint in `HF_ENDPOINT`
//! when it is set, into the cache folder the command line reads (`HF_HUB_CACHE`, `HF_HOME/hub`,
//! `XDG_CACHE_HOME/huggingface/hub` or `~/.cache/huggingface/hub`).
//! Every file is checked by SHA-256: against the table's pinned hash when it has one, and always
//! against the hash the hub reports for the file (the LFS object id, sent as its `x-linked-etag`,
//! which `hf-hub` uses as the blob's file name); a file that fails the check is deleted.
//! Finally the command line's own lookup (`crates/gaze-cli/src/weights.rs`) must find the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gaze_models::{HubWeights, ModelKind};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

/// The command line's own cache lookup, compiled in here so the xtask can check that `gaze` finds
/// what it fetched (the xtask does not need `cached_weights`, which only the command line calls).
#[allow(dead_code)]
#[path = "../../crates/gaze-cli/src/weights.rs"]
mod cli_weights;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The models whose weights to fetch: vgg16, resnet50, xception.
    #[arg(required = true, value_name = "MODEL")]
    models: Vec<String>,
}

/// The models whose weights `fetch-weights` downloads (every model but the embedded demo CNN).
fn fetchable() -> Vec<&'static str> {
    ModelKind::ALL.iter().filter(|k| k.hub_weights().is_some()).map(|k| k.name()).collect()
}

pub fn run(args: &Args) -> Result<()> {
    let cache = cli_weights::hub_cache_dir()
        .context("cannot tell where the Hugging Face cache is: set HF_HOME (or HF_HUB_CACHE, or HOME)")?;
    let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
    for name in &args.models {
        let kind: ModelKind =
            name.parse().map_err(|_| anyhow::anyhow!("unknown model `{name}`; valid: {}", fetchable().join(", ")))?;
        let Some(hub) = kind.hub_weights() else {
            bail!("`{name}` has no weights on the hub (its weights are embedded); valid: {}", fetchable().join(", "));
        };
        let path = fetch(&hub, &cache, endpoint.as_deref())?;
        let found = cli_weights::find_in_cache(&cache, &hub)
            .with_context(|| format!("gaze does not find {} in {} after the download", hub.repo, cache.display()))?;
        println!("{name}: {} (gaze finds it at {})", path.display(), found.display());
    }
    Ok(())
}

/// Downloads `hub` into the cache folder `cache` (unless it is there and intact) and checks it.
pub fn fetch(hub: &HubWeights, cache: &Path, endpoint: Option<&str>) -> Result<PathBuf> {
    let repo = Repo::with_revision(hub.repo.to_string(), RepoType::Model, hub.revision.to_string());
    if let Some(path) = Cache::new(cache.to_path_buf()).repo(repo.clone()).get(hub.file) {
        if verify(hub, &path).is_ok() {
            eprintln!("{} ({}) is already in {}", hub.repo, hub.file, cache.display());
            return Ok(path);
        }
        eprintln!("{} ({}) in the cache fails its check; downloading it again", hub.repo, hub.file);
        remove(&path);
    }
    let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().context("setting up the hub client")?;
    eprintln!("downloading {} ({}, revision {})", hub.repo, hub.file, hub.revision);
    let path = api
        .repo(repo)
        .download(hub.file)
        .with_context(|| format!("downloading {} from {} ({})", hub.file, hub.repo, endpoint.unwrap_or("the hub")))?;
    if let Err(e) = verify(hub, &path) {
        remove(&path);
        return Err(e);
    }
    Ok(path)
}

/// Checks the file's SHA-256 against the pinned hash and the hub's (the blob's name).
fn verify(hub: &HubWeights, path: &Path) -> Result<()> {
    let blob = std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
    let reported = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
    let is_sha256 = reported.len() == 64 && reported.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_sha256 && hub.sha256.is_none() {
        bail!(
            "cannot check {}: the hub reported no SHA-256 for it (its etag is `{reported}`) and none is pinned",
            hub.file
        );
    }
    let actual = sha256_file(&blob)?;
    if is_sha256 && actual != reported {
        bail!("{} from {}: SHA-256 {actual}, but the hub reports {reported}; the file was deleted", hub.file, hub.repo);
    }
    if let Some(pinned) = hub.sha256 {
        if actual != pinned.to_ascii_lowercase() {
            bail!("{} from {}: SHA-256 {actual}, but {pinned} is pinned; the file was deleted", hub.file, hub.repo);
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Deletes a cached file: the blob the snapshot's link points to, then the link.
fn remove(path: &Path) {
    if let Ok(blob) = std::fs::canonicalize(path) {
        std::fs::remove_file(blob).ok();
    }
    std::fs::remove_file(path).ok();
}
