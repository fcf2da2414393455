//! Options that only mean something beside another one: usage errors with exit code 2 that name
//! what is missing, rather than options silently ignored.

mod common;
use common::{gaze, stderr, stdout};

#[test]
fn predict_logits_needs_json() {
    let o = gaze(&["predict", "--logits", "assets/images/coffee.png"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--json"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let o = gaze(&["predict", "--json", "--logits", "assets/images/coffee.png"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["logits"].as_array().map(Vec::len), Some(8));
}
