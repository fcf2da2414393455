//! `gaze demo`: the page, its pictures and its leaderboard, written with no input files.

mod common;
use common::{gaze, outdir, text};

/// Every `src="..."` of the page.
fn sources(html: &str) -> Vec<String> {
    html.split("src=\"").skip(1).map(|rest| rest[..rest.find('"').unwrap()].to_string()).collect()
}

#[test]
fn the_demo_writes_a_page_whose_pictures_exist_with_a_leaderboard() {
    let dir = outdir("page");
    let d = dir.to_str().unwrap();
    // A small sample and three methods keep the debug build quick; a release run does them all.
    let out = gaze(&["demo", "--out", d, "--sample", "4", "--methods", "gradcam,saliency,expected-gradients"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let index = dir.join("index.html");
    assert_eq!(text(&out.stdout).trim(), format!("report: {}", index.display()));
    let html = std::fs::read_to_string(&index).unwrap();
    let pictures = sources(&html);
    // Six images, each with its own picture and one per method, and the colour scales.
    assert!(pictures.len() >= 6 * 4, "{pictures:?}");
    for file in &pictures {
        assert!(!file.contains('/') && !file.contains("%2F"), "{file} is not a file beside the page");
        assert!(dir.join(file.replace("%2B", "+")).is_file(), "{file} is referenced but missing");
    }
    for name in ["gradcam", "saliency", "expected-gradients"] {
        assert!(pictures.iter().any(|p| p.contains(&format!(".{name}."))), "no {name} picture: {pictures:?}");
    }
    assert!(html.contains("id=\"leaderboard\""), "no leaderboard");
    assert!(html.contains("random map (baseline)") && html.contains("centre-biased map (baseline)"));
    assert!(html.contains("<td>Grad-CAM</td>") && html.contains("<td>Expected gradients</td>"));
    assert_eq!(html.matches("ground truth: ").count(), 6, "each image names its ground truth");
    assert!(html.contains("Made by <code>gaze demo</code>"));

    // A second run refuses to replace the page, then replaces it with --overwrite.
    let again = gaze(&["demo", "--out", d, "--sample", "1", "--methods", "gradcam"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("--overwrite"), "{}", text(&again.stderr));
    let over = gaze(&["demo", "--out", d, "--sample", "1", "--methods", "gradcam", "--overwrite"]);
    assert!(over.status.success(), "{}", text(&over.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
