//! `gaze explain`'s output folder: every file or none, one name per picture, a raw file per layer
//! where layers differ in size, and the checks that run before any work.

use std::path::Path;

mod common;
use common::{gaze, outdir, scratch, stderr};

/// The names in `dir`, sorted (hidden ones included, so a leftover staging folder shows).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => return Vec::new(),
    };
    names.sort();
    names
}

/// The shapes of the tensors in a safetensors file, by name, and its metadata's `layers`.
fn raw_shapes(path: &Path) -> (Vec<(String, Vec<usize>)>, String) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> =
        meta.tensors().into_iter().map(|(name, info)| (name, info.shape.clone())).collect();
    shapes.sort();
    let layers = meta.metadata().as_ref().and_then(|m| m.get("layers").cloned()).unwrap_or_default();
    (shapes, layers)
}

#[test]
fn layers_of_different_sizes_get_a_raw_file_each() {
    let dir = outdir("layer-sizes");
    let out = dir.to_str().unwrap();
    let o = gaze(&[
        "explain",
        "--method",
        "gradcam",
        "--layer",
        "conv3",
        "--layer",
        "relu4",
        "--raw",
        "--target",
        "2,5",
        "--out",
        out,
        "assets/images/chelsea.png",
        "assets/images/coffee.png",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        names(&dir),
        [
            "attributions.conv3.safetensors",
            "attributions.relu4.safetensors",
            "chelsea.gradcam.2.png",
            "chelsea.gradcam.5.png",
            "coffee.gradcam.2.png",
            "coffee.gradcam.5.png"
        ]
    );
    // The demo model's conv3 maps are 16 × 16, relu4's 8 × 8.
    for (layer, side) in [("conv3", 16), ("relu4", 8)] {
        let (shapes, layers) = raw_shapes(&dir.join(format!("attributions.{layer}.safetensors")));
        assert_eq!(
            shapes,
            [("attribution".to_string(), vec![2, 2, side, side]), ("targets".to_string(), vec![2, 2])],
            "{layer}"
        );
        assert_eq!(layers, layer);
    }
    // Layers of one size still share one file, [N, T, L, h, w].
    let dir = outdir("layer-sizes-same");
    let o = gaze(&[
        "explain",
        "--method",
        "gradcam",
        "--layer",
        "conv4",
        "--layer",
        "relu4",
        "--raw",
        "--out",
        dir.to_str().unwrap(),
        "assets/images/chelsea.png",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shapes, layers) = raw_shapes(&dir.join("attributions.safetensors"));
    assert_eq!(shapes[0], ("attribution".to_string(), vec![1, 1, 2, 8, 8]));
    assert_eq!(layers, "conv4,relu4");
}

#[test]
fn images_sharing_a_file_name_get_distinct_pictures() {
    let other = scratch("same-stem-src");
    std::fs::copy("../../assets/images/coffee.png", other.join("chelsea.png")).unwrap();
    let dir = outdir("same-stem");
    let o = gaze(&[
        "explain",
        "--method",
        "saliency",
        "--target",
        "1",
        "--json",
        "--out",
        dir.to_str().unwrap(),
        "assets/images/chelsea.png",
        other.join("chelsea.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&dir), ["chelsea-2.saliency.1.png", "chelsea.saliency.1.png"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let images: Vec<&str> = v["maps"].as_array().unwrap().iter().map(|m| m["image"].as_str().unwrap()).collect();
    assert_eq!(images, ["chelsea", "chelsea-2"]);
    // The two pictures are of the two images.
    assert_ne!(
        std::fs::read(dir.join("chelsea.saliency.1.png")).unwrap(),
        std::fs::read(dir.join("chelsea-2.saliency.1.png")).unwrap()
    );
}

#[test]
fn a_failure_after_some_pictures_leaves_nothing_behind() {
    // An existing picture of the second image, without --overwrite: the first image's picture and
    // the raw file are not written either, and the existing file is untouched.
    let dir = scratch("all-or-nothing");
    std::fs::write(dir.join("coffee.saliency.1.png"), b"mine").unwrap();
    let args = [
        "explain",
        "--method",
        "saliency",
        "--target",
        "1",
        "--raw",
        "--out",
        dir.to_str().unwrap(),
        "assets/images/chelsea.png",
        "assets/images/coffee.png",
    ];
    let o = gaze(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("coffee.saliency.1.png exists already; pass --overwrite"), "{}", stderr(&o));
    assert_eq!(names(&dir), ["coffee.saliency.1.png"]);
    assert_eq!(std::fs::read(dir.join("coffee.saliency.1.png")).unwrap(), b"mine");
    let o = gaze(&[&args[..], &["--overwrite"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&dir), ["attributions.safetensors", "chelsea.saliency.1.png", "coffee.saliency.1.png"]);

    // A broken image in a later chunk of a folder (chunks of 32): the output folder the run would
    // have created does not appear.
    let images = scratch("all-or-nothing-images");
    for i in 0..33 {
        std::fs::copy("../../assets/images/chelsea.png", images.join(format!("a{i:02}.png"))).unwrap();
    }
    std::fs::write(images.join("zzz.png"), b"not a picture").unwrap();
    let dir = outdir("all-or-nothing-chunks").join("nested");
    let o = gaze(&["explain", "--method", "gradcam", "--out", dir.to_str().unwrap(), images.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("zzz.png"), "{}", stderr(&o));
    assert!(!dir.parent().unwrap().exists(), "the run created {} and left it", dir.display());

    // A class out of range is found only once the model runs: the folder is not left either.
    let dir = outdir("all-or-nothing-class");
    let o = gaze(&[
        "explain",
        "--method",
        "saliency",
        "--target",
        "99",
        "--out",
        dir.to_str().unwrap(),
        "assets/images/chelsea.png",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!dir.exists());
}

#[test]
fn requests_that_cannot_be_met_are_refused_before_any_work() {
    let file = scratch("out-is-a-file").join("taken");
    std::fs::write(&file, b"").unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--method", "saliency", "--target", "1,2,1"], "--target lists class 1 twice"),
        (&["--method", "saliency", "--target", "-1"], "`-1` is not a class index"),
        (&["--method", "saliency", "--target", "1,,2"], "`` is not a class index"),
        (&["--method", "gradcam", "--layer", "relu4", "--layer", "relu4"], "--layer names `relu4` twice"),
        (&["--method", "saliency", "--layer", "relu4"], "--layer does not apply to saliency"),
        (&["--method", "integrated-gradients", "--layer", "relu4"], "--layer does not apply to integrated-gradients"),
        (&["--method", "activations", "--top", "2"], "activations draws one picture per image"),
        (&["--method", "smoothgrad", "--smooth-of", "gradcam"], "invalid value `gradcam` for --smooth-of"),
    ];
    for (args, message) in cases {
        let dir = outdir("refused");
        let mut all = vec!["explain", "--out", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        all.push("assets/images/chelsea.png");
        let o = gaze(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(!dir.exists(), "{args:?} created the output folder");
    }
    let o = gaze(&["explain", "--method", "saliency", "--out", file.to_str().unwrap(), "assets/images/chelsea.png"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("this is a file, not a folder"), "{}", stderr(&o));
}

#[test]
fn an_error_names_its_cause_once() {
    let o = gaze(&["explain", "--method", "saliency", "--out", outdir("cause").to_str().unwrap(), "no/such/image.png"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("no/such/image.png"), "{err}");
}
