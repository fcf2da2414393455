//! Every bad input `gaze` can be handed, through the command line: each must fail with exit code 2
//! and a message that names the bad value, never a panic; and the PNG variants that are merely
//! unusual (grayscale, RGBA, 16-bit) must be converted, not rejected.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};

mod common;
use common::{gaze, repo, scratch};

fn xception_weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(repo().join("fixtures/models/xception.safetensors"), &Device::Cpu).unwrap()
}

fn save(tensors: &HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

/// Writes the bad files of the table into `dir`.
fn make_files(dir: &Path) {
    std::fs::write(dir.join("not-an-image.png"), b"hello, this is text").unwrap();
    let chelsea = std::fs::read(repo().join("fixtures/images/chelsea.png")).unwrap();
    std::fs::write(dir.join("truncated.png"), &chelsea[..300]).unwrap();
    std::fs::write(dir.join("huge.png"), gaze_testkit::huge_png()).unwrap();

    let weights = std::fs::read(repo().join("fixtures/models/xception.safetensors")).unwrap();
    std::fs::write(dir.join("truncated.safetensors"), &weights[..5000]).unwrap();
    let mut corrupt = 16u64.to_le_bytes().to_vec();
    corrupt.extend(b"{not json at all");
    std::fs::write(dir.join("corrupt-header.safetensors"), corrupt).unwrap();

    let mut missing = xception_weights();
    missing.remove("conv1.weight");
    save(&missing, &dir.join("missing.safetensors"));
    let mut dtype = xception_weights();
    let w = dtype["conv1.weight"].to_dtype(DType::I64).unwrap();
    dtype.insert("conv1.weight".into(), w);
    save(&dtype, &dir.join("dtype.safetensors"));
    let mut shape = xception_weights();
    let w = shape["conv1.weight"].flatten_all().unwrap();
    let n = w.dims()[0];
    shape.insert("conv1.weight".into(), w.reshape((n, 1, 1, 1)).unwrap());
    save(&shape, &dir.join("shape.safetensors"));

    let mut nan_weights = xception_weights();
    let w = &nan_weights["conv1.weight"];
    let mut v: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    v[0] = f32::NAN;
    v[5] = f32::NEG_INFINITY;
    let w = Tensor::from_vec(v, w.dims(), &Device::Cpu).unwrap();
    nan_weights.insert("conv1.weight".into(), w);
    save(&nan_weights, &dir.join("nan-weights.safetensors"));

    std::fs::create_dir_all(dir.join("empty-background")).unwrap();
    let empty = Tensor::zeros((0, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    save(&HashMap::from([("input".to_string(), empty)]), &dir.join("empty-background.safetensors"));

    // A VGG16 checkpoint whose classifier has no classes.
    let mut vgg =
        candle_core::safetensors::load(repo().join("fixtures/models/vgg16.safetensors"), &Device::Cpu).unwrap();
    let inputs = vgg["classifier.6.weight"].dim(1).unwrap();
    vgg.insert("classifier.6.weight".into(), Tensor::zeros((0, inputs), DType::F32, &Device::Cpu).unwrap());
    vgg.insert("classifier.6.bias".into(), Tensor::zeros(0, DType::F32, &Device::Cpu).unwrap());
    save(&vgg, &dir.join("no-classes.safetensors"));

    std::fs::write(dir.join("notes.txt"), b"neither an image nor a tensor file").unwrap();
    // Background rows of another size than the images are resized to, under a name without the
    // `.safetensors` extension.
    let small = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    save(&HashMap::from([("input".to_string(), small)]), &dir.join("small-background.st"));

    let mut values = vec![0.5f32; 3 * 64 * 64];
    values[100] = f32::NAN;
    let input = Tensor::from_vec(values, (1, 3, 64, 64), &Device::Cpu).unwrap();
    save(&HashMap::from([("input".to_string(), input)]), &dir.join("nan.safetensors"));
}

#[test]
fn every_bad_input_fails_with_exit_code_2_and_names_the_problem() {
    let dir = scratch("table");
    make_files(&dir);
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let image = "fixtures/images/chelsea.png".to_string();
    let xception = |weights: String| -> Vec<String> {
        ["explain", "--model", "xception", "--weights", &weights, "--method", "gradcam", &image]
            .map(String::from)
            .to_vec()
    };
    let explain = |rest: &[&str]| -> Vec<String> { ["explain"].iter().chain(rest).map(|s| s.to_string()).collect() };
    let missing_file = p("no-such-file.png");
    // (case, arguments, text the message must contain)
    let table: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "unreadable image",
            explain(&["--method", "gradcam", &missing_file]),
            vec![format!("cannot access {missing_file}"), "No such file".into()],
        ),
        (
            "not an image",
            explain(&["--method", "gradcam", &p("not-an-image.png")]),
            vec!["not-an-image.png".into(), "cannot decode".into()],
        ),
        (
            "truncated image",
            explain(&["--method", "gradcam", &p("truncated.png")]),
            vec!["truncated.png".into(), "cannot decode".into()],
        ),
        (
            "image too large to decode",
            explain(&["--method", "gradcam", &p("huge.png")]),
            vec![
                "huge.png: the image is 100000×100000 pixels".into(),
                "at most 16384×16384 pixels and 1 GiB decoded".into(),
            ],
        ),
        (
            "a checkpoint whose classifier has no classes (predict)",
            ["predict", "--model", "vgg16", "--weights", &p("no-classes.safetensors"), &image]
                .map(String::from)
                .to_vec(),
            vec![
                "no-classes.safetensors".into(),
                "tensor `classifier.6.weight` has shape [0, ".into(),
                "at least one class".into(),
            ],
        ),
        (
            "a checkpoint whose classifier has no classes (explain)",
            explain(&["--model", "vgg16", "--weights", &p("no-classes.safetensors"), "--method", "saliency", &image]),
            vec!["tensor `classifier.6.weight` has shape [0, ".into(), "at least one class".into()],
        ),
        (
            "--steps far beyond the bound",
            explain(&["--method", "integrated-gradients", "--steps", "1000000000", &image]),
            vec!["`1000000000` for --steps".into(), "1..=10000".into()],
        ),
        (
            "a --baseline tensor file without a tensor `baseline` or `input`",
            explain(&["--method", "integrated-gradients", "--baseline", &p("missing.safetensors"), &image]),
            vec![format!("input tensor file {}: no tensor named `baseline` or `input`", p("missing.safetensors"))],
        ),
        (
            "an --input file that is not a safetensors file",
            explain(&["--method", "gradcam", "--input", &p("not-an-image.png")]),
            vec![format!("input tensor file {}: not a readable safetensors file", p("not-an-image.png"))],
        ),
        (
            "a --background file that is neither an image nor a tensor file",
            explain(&["--method", "expected-gradients", "--background", &p("notes.txt"), &image]),
            vec![
                "notes.txt".into(),
                "--background".into(),
                "image files (PNG, JPEG)".into(),
                "safetensors tensor files".into(),
            ],
        ),
        (
            "--background mixing images and tensor rows of another size",
            explain(&[
                "--method",
                "expected-gradients",
                "--background",
                &image,
                "--background",
                &p("small-background.st"),
                &image,
            ]),
            vec![
                "--background".into(),
                "small-background.st holds rows of shape [3, 32, 32]".into(),
                "[3, 64, 64]".into(),
                "one shape".into(),
            ],
        ),
        (
            "truncated checkpoint",
            xception(p("truncated.safetensors")),
            vec!["truncated.safetensors".into(), "not a readable safetensors file".into()],
        ),
        (
            "checkpoint with a corrupt header",
            xception(p("corrupt-header.safetensors")),
            vec!["corrupt-header.safetensors".into(), "invalid JSON in header".into()],
        ),
        (
            "checkpoint missing a tensor",
            xception(p("missing.safetensors")),
            vec!["missing tensor `conv1.weight`".into()],
        ),
        (
            "checkpoint tensor of the wrong dtype",
            xception(p("dtype.safetensors")),
            vec!["`conv1.weight` has dtype I64".into(), "expected f32".into()],
        ),
        (
            "checkpoint tensor of the wrong shape",
            xception(p("shape.safetensors")),
            vec!["`conv1.weight` has shape [54, 1, 1, 1]".into(), "expected".into()],
        ),
        (
            "checkpoint of another architecture",
            explain(&[
                "--model",
                "resnet50",
                "--weights",
                "fixtures/models/vgg16.safetensors",
                "--method",
                "gradcam",
                &image,
            ]),
            vec!["missing tensor `conv1.weight`".into(), "right architecture".into()],
        ),
        (
            "NaN or infinite values in the weights",
            xception(p("nan-weights.safetensors")),
            vec!["nan-weights.safetensors".into(), "tensor `conv1.weight` contains 2 NaN or infinite values".into()],
        ),
        (
            "an empty background folder",
            explain(&["--method", "expected-gradients", "--background", &p("empty-background"), &image]),
            vec!["--background: the folder".into(), "empty-background holds no PNG or JPEG images".into()],
        ),
        (
            "an image folder without images",
            explain(&["--method", "gradcam", &p("empty-background")]),
            vec!["the folder".into(), "empty-background holds no PNG or JPEG images".into()],
        ),
        (
            "a background tensor file with 0 rows",
            explain(&["--method", "expected-gradients", "--background", &p("empty-background.safetensors"), &image]),
            vec!["empty-background.safetensors".into(), "got [0, 3, 64, 64]".into()],
        ),
        (
            "unknown model",
            explain(&["--model", "nosuch", "--method", "gradcam", &image]),
            vec!["`nosuch` for --model".into(), "vgg16, resnet50, xception".into()],
        ),
        (
            "unknown method",
            explain(&["--method", "nosuch", &image]),
            vec!["unknown method `nosuch`".into(), "gradcam".into()],
        ),
        (
            "unknown layer",
            explain(&["--method", "gradcam", "--layer", "nosuch", &image]),
            vec!["unknown layer `nosuch`".into(), "relu4".into()],
        ),
        ("unknown option", explain(&["--method", "gradcam", "--frobnicate", &image]), vec!["'--frobnicate'".into()]),
        (
            "malformed option value",
            explain(&["--method", "gradcam", "--target", "cat", &image]),
            vec!["cat".into(), "--target".into()],
        ),
        (
            "class index out of range",
            explain(&["--method", "gradcam", "--target", "99999", &image]),
            vec!["class index 99999 is out of range".into(), "8 classes".into()],
        ),
        (
            "--top larger than the class count",
            explain(&["--method", "gradcam", "--top", "99999", &image]),
            vec!["top-k of 99999".into(), "1..=8".into()],
        ),
        (
            "NaN in the input tensor",
            explain(&["--method", "gradcam", "--input", &p("nan.safetensors")]),
            vec!["nan.safetensors".into(), "1 NaN or infinite values".into()],
        ),
    ];
    let mut failures = Vec::new();
    for (case, args, wants) in &table {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gaze"));
        command.args(args);
        if args[0] == "explain" {
            command.arg("--out").arg(dir.join("out"));
        }
        let o = command.current_dir(repo()).output().expect("gaze runs");
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(2) {
            failures.push(format!("{case}: exit code {:?}, stderr: {err}", o.status.code()));
        }
        if err.contains("panicked") {
            failures.push(format!("{case}: panicked: {err}"));
        }
        for want in wants {
            if !err.contains(want.as_str()) {
                failures.push(format!("{case}: message lacks `{want}`: {err}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn grayscale_rgba_and_16_bit_pngs_are_converted_not_rejected() {
    let dir = scratch("convert");
    let gray = image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * 5 + y * 3) as u8]));
    let rgba = image::RgbaImage::from_fn(40, 30, |x, y| image::Rgba([(x * 6) as u8, (y * 8) as u8, 90, (x + y) as u8]));
    let deep: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
        image::ImageBuffer::from_fn(40, 30, |x, y| image::Rgb([(x * 1500) as u16, (y * 2000) as u16, 40_000]));
    let gray16: image::ImageBuffer<image::Luma<u16>, Vec<u16>> =
        image::ImageBuffer::from_fn(40, 30, |x, y| image::Luma([(x * 1000 + y * 700) as u16]));
    gray.save(dir.join("gray.png")).unwrap();
    rgba.save(dir.join("rgba.png")).unwrap();
    deep.save(dir.join("rgb16.png")).unwrap();
    gray16.save(dir.join("gray16.png")).unwrap();
    for name in ["gray.png", "rgba.png", "rgb16.png", "gray16.png"] {
        let path = dir.join(name);
        let out = dir.join(format!("out-{name}"));
        let o =
            gaze(&["explain", "--method", "gradcam", "--raw", "--out", out.to_str().unwrap(), path.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let raw = candle_core::safetensors::load(out.join("attributions.safetensors"), &Device::Cpu).unwrap();
        let values: Vec<f32> = raw["attribution"].flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}: non-finite map values");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The background of expected gradients may be a safetensors file under any name, and may mix
/// tensor files with images when the tensors have the model's input size.
#[test]
fn a_background_tensor_file_is_recognised_by_its_content_and_mixes_with_images() {
    let dir = scratch("background-kinds");
    let rows = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let tensor_file = dir.join("bg.st");
    save(&HashMap::from([("input".to_string(), rows)]), &tensor_file);
    let image = "fixtures/images/chelsea.png";
    let background_rows = |backgrounds: &[&str], out: &str| -> String {
        let out = dir.join(out);
        let mut args = vec!["explain", "--method", "expected-gradients", "--samples", "4", "--raw"];
        for b in backgrounds {
            args.extend(["--background", b]);
        }
        args.extend(["--out", out.to_str().unwrap(), image]);
        let o = gaze(&args);
        assert!(o.status.success(), "{backgrounds:?}: {}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(out.join("attributions.safetensors")).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        header.metadata().as_ref().and_then(|m| m.get("background").cloned()).unwrap_or_default()
    };
    let tensor = tensor_file.to_str().unwrap();
    assert_eq!(background_rows(&[tensor], "tensor"), "2");
    assert_eq!(background_rows(&[image, tensor], "mixed"), "3");
    let _ = std::fs::remove_dir_all(&dir);
}
