//! `gaze report`: the page opened in a real browser (headless Chromium), and its usage errors.
//!
//! The browser test needs Debian's `chromium` on PATH; `.ci/install` installs it.
//! Without it the test fails (it does not skip), so that CI never passes without looking.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{gaze, outdir, stderr};

/// The `chromium` executable on PATH, or a failure saying how to install it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`chromium` is not on PATH: the report's browser test needs Debian's chromium package; \
             run `.ci/install` (as root) or `apt-get install chromium`"
        )
    })
}

/// Runs headless Chromium with a fresh profile and no network services, killing it after 60 s.
fn run_chromium(profile: &Path, args: &[String]) -> Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("chromium can be waited on").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("chromium's output")
}

/// The value of `name="..."` in the first tag of `html` that has `id="id"`.
fn attribute(html: &str, id: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..start].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].to_string())
}

/// Every `src="..."` of the page.
fn sources(html: &str) -> Vec<String> {
    html.split("src=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(String::from).collect()
}

#[test]
fn the_report_loads_in_a_browser_without_errors() {
    let chromium_path = chromium();
    let dir = outdir("browser");
    let out = dir.to_str().unwrap();
    let o = gaze(&[
        "report",
        "--methods",
        "gradcam,saliency,expected-gradients,occlusion",
        "--top",
        "2",
        "--out",
        out,
        "assets/images/chelsea.png",
        "assets/images/rocket.jpg",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();

    // The page is self-contained: every picture is a file beside it, nothing comes from a server.
    assert!(!html.contains("http://") && !html.contains("https://"), "the page names a web address");
    let srcs = sources(&html);
    // Two images, four methods with two targets each, and a colour scale for each kind of picture
    // (overlay, grayscale, SHAP, heat map).
    assert_eq!(srcs.len(), 2 + 2 * 4 * 2 + 4, "{srcs:?}");
    for src in &srcs {
        assert!(!src.contains('/') && !src.contains(':'), "{src} is not a file in the folder");
        let picture = image::open(dir.join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(picture.width() >= 224 || src.starts_with("colorbar."), "{src} is {}px wide", picture.width());
    }
    assert!(html.contains("chelsea") && html.contains("Grad-CAM") && html.contains("Colour scales"));

    // Every picture loads and nothing reports an error.
    let url = format!("file://{}", dir.join("index.html").canonicalize().unwrap().display());
    let dom = run_chromium(&dir.join("profile-dom"), &["--dump-dom".into(), url.clone()]);
    let dom_html = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "chromium {}: {}", chromium_path.display(), stderr(&dom));
    let status = |name| attribute(&dom_html, "gaze-status", name).unwrap_or_else(|| panic!("no {name} in the DOM"));
    assert_eq!(status("data-images"), srcs.len().to_string(), "the page counted other pictures");
    assert_eq!(status("data-images-loaded"), srcs.len().to_string(), "pictures failed to load");
    assert_eq!(status("data-errors"), "0", "the page logged errors");

    // A screenshot shows a page, not a blank window.
    let shot = dir.join("screenshot.png");
    let o = run_chromium(
        &dir.join("profile-shot"),
        &[format!("--screenshot={}", shot.display()), "--window-size=1280,1000".into(), url],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let shot = image::open(&shot).expect("the screenshot is a PNG").to_rgb8();
    assert_eq!(shot.dimensions(), (1280, 1000));
    let background = *shot.get_pixel(2, 2);
    let inked = shot.pixels().filter(|p| **p != background).count();
    let mut colours: Vec<[u8; 3]> = shot.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(inked > shot.len() / 3 / 5, "only {inked} pixels differ from the background");
    assert!(colours.len() > 1000, "only {} colours: the pictures are not drawn", colours.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_method_names_the_valid_ones() {
    let dir = outdir("bad-method");
    let o =
        gaze(&["report", "--methods", "gradcam,gradcan", "--out", dir.to_str().unwrap(), "assets/images/chelsea.png"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("`gradcan`") && err.contains("gradcam++") && err.contains("saliency"), "{err}");
    assert!(!dir.join("index.html").exists());
}

#[test]
fn an_existing_report_is_kept_unless_overwrite_is_given() {
    let dir = outdir("overwrite");
    let out = dir.to_str().unwrap();
    let args = ["report", "--methods", "gradcam", "--out", out, "assets/images/coffee.png"];
    let o = gaze(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = std::fs::metadata(dir.join("index.html")).unwrap().modified().unwrap();
    let o = gaze(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(dir.join("index.html")).unwrap().modified().unwrap(), first);
    let o = gaze(&[&args[..], &["--overwrite"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_method_leaves_no_files_behind() {
    let dir = outdir("half");
    let out = dir.to_str().unwrap();
    let o = gaze(&[
        "report",
        "--methods",
        "gradcam,expected-gradients",
        "--background",
        "assets/images/no-such-image.png",
        "--out",
        out,
        "assets/images/coffee.png",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-image.png"), "{}", stderr(&o));
    // The folder the run created is gone too.
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn no_images_and_bad_targets_are_usage_errors() {
    let dir = outdir("usage");
    let out = dir.to_str().unwrap();
    let o = gaze(&["report", "--methods", "gradcam", "--out", out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("IMAGE"), "{}", stderr(&o));
    let o = gaze(&["report", "--methods", "gradcam", "--target", "999", "--out", out, "assets/images/coffee.png"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("999"), "{}", stderr(&o));
    assert!(!dir.join("index.html").exists());
}
