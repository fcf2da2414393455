//! `gaze eval`: the leaderboard table, its JSON and its baselines, on a small sample.

mod common;
use common::{gaze, text};

#[test]
fn gradcam_beats_the_random_map_on_the_pointing_game() {
    let out = gaze(&["eval", "--methods", "gradcam,saliency", "--n", "16", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let board: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(board["images"], 16);
    assert_eq!(board["seed"], 2);
    let rows = board["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["gradcam", "saliency", "random", "centre"]);
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap();
    let get = |name: &str, key: &str| row(name)[key].as_f64().unwrap();
    for r in rows {
        for key in ["pointing", "energy", "deletion", "insertion"] {
            let v = r[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} of {} is {v}", r["name"]);
        }
    }
    assert!(get("gradcam", "pointing") > get("random", "pointing") + 0.3, "{rows:?}");
    assert!(get("gradcam", "energy") > get("random", "energy"), "{rows:?}");
    // A map that ranks the object first deletes the class faster than a random order.
    assert!(get("saliency", "deletion") < get("random", "deletion"), "{rows:?}");
    assert_eq!(row("random")["baseline"], true);
    assert_eq!(row("gradcam")["baseline"], false);
}

#[test]
fn the_table_is_markdown_and_the_sanity_check_flags_nothing_for_saliency() {
    let out = gaze(&["eval", "--methods", "saliency", "--n", "4", "--sanity", "--sanity-images", "4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(
            "| method | pointing game ↑ | energy pointing game ↑ | deletion AUC ↓ | insertion AUC ↑ | seconds |"
        ),
        "{table}"
    );
    assert!(table.contains("| `saliency` |"), "{table}");
    assert!(table.contains("| *random map (baseline)* |") && table.contains("| *centre map (baseline)* |"), "{table}");
    let sanity = table.lines().find(|l| l.starts_with("| `saliency` |") && l.ends_with("| changes |"));
    assert!(sanity.is_some(), "saliency should change under cascading randomisation:\n{table}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = gaze(&["eval", "--methods", "gradcan", "--n", "4"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("gradcan") && err.contains("saliency"), "{err}");
    let out = gaze(&["eval", "--n", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--n must be at least 1"));
}
