//! `cargo xtask fetch-weights` against a fake hub on 127.0.0.1: the real download code (hf-hub's
//! blocking client) fetches into a scratch `HF_HOME`, the SHA-256 check accepts the right file and
//! deletes a wrong one, and the command line's cache lookup finds what was fetched.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const FILE_PATH: &str = "/timm/vgg16.tv_in1k/resolve/main/model.safetensors";

/// A hub serving one file, for at most `max_requests` requests and `lifetime`; it reports the
/// request lines it saw when it stops.
fn fake_hub(body: Vec<u8>, etag: String, max_requests: usize) -> (String, mpsc::Receiver<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while seen.len() < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => seen.push(answer(stream, &body, &etag).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        tx.send(seen).ok();
    });
    (url, rx)
}

/// Answers one request the way the hub answers `resolve` requests for an LFS file: the commit,
/// the file's SHA-256 as `x-linked-etag`, and the byte range asked for.
fn answer(stream: TcpStream, body: &[u8], etag: &str) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut stream = stream;
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
    if path != FILE_PATH {
        write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
        return Some(request_line.trim().to_string());
    }
    let total = body.len();
    let (start, end) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().unwrap_or(total - 1);
            (a.min(total), b.min(total - 1))
        })
        .unwrap_or((0, total - 1));
    let part = &body[start..=end];
    write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{total}\r\n\
         x-repo-commit: {COMMIT}\r\nx-linked-etag: \"{etag}\"\r\nETag: \"W/not-the-file\"\r\nConnection: close\r\n\r\n",
        part.len()
    )
    .ok()?;
    stream.write_all(part).ok()?;
    stream.flush().ok()?;
    Some(format!("{} {}", request_line.trim(), range.unwrap_or_default()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gaze-fetch-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fetch_weights(hf_home: &Path, endpoint: &str, model: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["fetch-weights", model]).env("HF_HOME", hf_home).env("HF_ENDPOINT", endpoint);
    for var in ["HF_HUB_CACHE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env_remove(var);
    }
    cmd.output().expect("xtask runs")
}

fn weights_fixture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/vgg16.safetensors");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn fetches_into_the_cache_where_gaze_finds_it() {
    let body = weights_fixture();
    let sha = sha256_hex(&body);
    let (endpoint, requests) = fake_hub(body.clone(), sha.clone(), 4);
    let home = scratch("ok");
    let out = fetch_weights(&home, &endpoint, "vgg16");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&out.stderr));

    let repo = home.join("hub/models--timm--vgg16.tv_in1k");
    let snapshot = repo.join("snapshots").join(COMMIT).join("model.safetensors");
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    assert_eq!(
        std::fs::canonicalize(&snapshot).unwrap(),
        std::fs::canonicalize(repo.join("blobs").join(&sha)).unwrap()
    );
    assert_eq!(std::fs::read(&snapshot).unwrap(), body);
    assert!(stdout.contains(&format!("gaze finds it at {}", snapshot.display())), "{stdout}");

    // A second run finds the intact file and downloads nothing.
    let out = fetch_weights(&home, &endpoint, "vgg16");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in"));

    // Stop the server by reaching its request budget, then read what it was asked.
    std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).ok();
    std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).ok();
    let seen = requests.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(seen[0].starts_with(&format!("GET {FILE_PATH} ")) && seen[0].ends_with("bytes=0-0"), "{seen:?}");
    assert!(seen[1].ends_with("bytes=0-"), "{seen:?}");
    std::fs::remove_dir_all(&home).ok();
}

#[test]
fn a_file_whose_sha256_differs_from_the_hubs_is_deleted() {
    let body = weights_fixture();
    let wrong = sha256_hex(b"something else");
    let (endpoint, _requests) = fake_hub(body, wrong.clone(), 2);
    let home = scratch("bad");
    let out = fetch_weights(&home, &endpoint, "vgg16");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("SHA-256") && stderr.contains(&wrong) && stderr.contains("deleted"), "{stderr}");
    let blob = home.join("hub/models--timm--vgg16.tv_in1k/blobs").join(&wrong);
    assert!(!blob.exists(), "the bad file is left at {}", blob.display());
    std::fs::remove_dir_all(&home).ok();
}

#[test]
fn models_without_hub_weights_are_refused() {
    let home = scratch("demo");
    let out = fetch_weights(&home, "http://127.0.0.1:9", "demo");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid: vgg16, resnet50, xception"));
    let out = fetch_weights(&home, "http://127.0.0.1:9", "alexnet");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown model `alexnet`; valid: vgg16, resnet50, xception"), "{stderr}");
    std::fs::remove_dir_all(&home).ok();
}
