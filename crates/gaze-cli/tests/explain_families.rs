//! `gaze explain` for the sampled, perturbation and activation methods: each writes its pictures
//! and its raw maps in the contract's shape.

mod common;
use common::{gaze, outdir};

#[test]
fn every_family_writes_pictures_and_raw_maps_of_the_contract_shape() {
    let cases: [(&str, &[&str], &[usize]); 6] = [
        ("smoothgrad", &["--samples", "3", "--noise-frac", "0.1", "--aggregate", "square"], &[3, 64, 64]),
        ("integrated-gradients", &["--steps", "6", "--quadrature", "riemann_trapezoid"], &[3, 64, 64]),
        ("expected-gradients", &["--background", "assets/images/coffee.png", "--samples", "4"], &[3, 64, 64]),
        ("occlusion", &["--window", "16,16", "--stride", "8,8"], &[3, 64, 64]),
        ("rise", &["--masks", "16", "--grid", "4"], &[64, 64]),
        ("activations", &["--layer", "pool2"], &[32, 16, 16]),
    ];
    for (method, options, map_shape) in cases {
        let dir = outdir(method);
        let mut args = vec!["explain", "--method", method, "--raw", "--out", dir.to_str().unwrap()];
        args.extend_from_slice(options);
        args.extend(["--target", "2", "assets/images/chelsea.png", "assets/images/rocket.jpg"]);
        let o = gaze(&args);
        assert!(o.status.success(), "{method}: {}", String::from_utf8_lossy(&o.stderr));
        for stem in ["chelsea", "rocket"] {
            assert!(dir.join(format!("{stem}.{method}.2.png")).exists(), "{method} {stem}");
        }
        let raw =
            candle_core::safetensors::load(dir.join("attributions.safetensors"), &candle_core::Device::Cpu).unwrap();
        let dims = raw["attribution"].dims().to_vec();
        assert_eq!(&dims[..2], &[2, 1], "{method}");
        let map: Vec<usize> = dims[2..].iter().copied().filter(|&d| d != 1 || map_shape.contains(&1)).collect();
        assert_eq!(map, map_shape, "{method}: {dims:?}");
    }
}

#[test]
fn sampled_methods_are_reproducible_for_a_seed() {
    let run = |name: &str| {
        let dir = outdir(name);
        let o = gaze(&[
            "explain",
            "--method",
            "smoothgrad",
            "--samples",
            "3",
            "--seed",
            "7",
            "--raw",
            "--out",
            dir.to_str().unwrap(),
            "assets/images/coffee.png",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(dir.join("attributions.safetensors")).unwrap()
    };
    assert_eq!(run("seed-a"), run("seed-b"));
}

#[test]
fn expected_gradients_without_a_background_is_a_usage_error() {
    let dir = outdir("no-background");
    let o = gaze(&[
        "explain",
        "--method",
        "expected-gradients",
        "--out",
        dir.to_str().unwrap(),
        "assets/images/chelsea.png",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--background"));
}
