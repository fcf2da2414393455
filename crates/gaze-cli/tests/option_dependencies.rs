//! Options that only mean something beside another one, and bounds on sizes: usage errors with exit
//! code 2 that name what is missing or accepted, rather than options silently ignored.

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

#[test]
fn eval_sanity_images_needs_sanity() {
    let o = gaze(&["eval", "--methods", "saliency", "--n", "1", "--sanity-images", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--sanity"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
}

#[test]
fn eval_n_is_bounded() {
    for n in ["10001", "1000000000000"] {
        let o = gaze(&["eval", "--methods", "saliency", "--n", n]);
        assert_eq!(o.status.code(), Some(2), "--n {n}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("--n {n}")) && err.contains("1 to 10000"), "{err}");
        assert_eq!(stdout(&o), "");
    }
}
