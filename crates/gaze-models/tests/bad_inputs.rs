//! The loader-level rows of `docs/reliability.md`'s bad-input table through the library's public
//! functions (`load_image`, `load_image_bytes`, `load`, `load_input_tensor`, `ModelKind`'s parser,
//! layer names and targets): each must be an error whose text names the bad value, never a panic.
//! `crates/gaze-cli/tests/bad_inputs.rs` runs the same table through the command line.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{fixture, scratch, tensors, weights};
use gaze_core::Target;
use gaze_models::{load, load_image, load_image_bytes, load_input_tensor, ModelKind};

fn save(tensors: &HashMap<String, Tensor>, path: &Path) -> String {
    candle_core::safetensors::save(tensors, path).unwrap();
    path.display().to_string()
}

fn edited_xception(dir: &Path, file: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let mut t = tensors(&weights("xception"), DType::F32);
    edit(&mut t);
    let path = dir.join(file);
    save(&t, &path);
    path
}

fn input_file(dir: &Path, file: &str, input: Tensor) -> PathBuf {
    let path = dir.join(file);
    save(&HashMap::from([("input".to_string(), input)]), &path);
    path
}

/// The error text of a result that must be an error.
fn error_of<T>(case: &str, result: gaze_core::Result<T>) -> String {
    match result {
        Ok(_) => panic!("{case}: no error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_loader_level_bad_input_is_an_error_that_names_the_problem() {
    let dir = scratch("bad-inputs");
    let cpu = &Device::Cpu;
    let image = |path: &Path| load_image(path).map(|_| ());
    let xception = |path: &Path| load(ModelKind::Xception, Some(path), cpu).map(|_| ());

    let missing = dir.join("no-such-file.png");
    let not_image = dir.join("not-an-image.png");
    std::fs::write(&not_image, b"hello, this is text").unwrap();
    let chelsea = std::fs::read(fixture("images/chelsea.png")).unwrap();
    let truncated = dir.join("truncated.png");
    std::fs::write(&truncated, &chelsea[..300]).unwrap();
    let huge = dir.join("huge.png");
    std::fs::write(&huge, gaze_testkit::huge_png()).unwrap();
    let wide = dir.join("wide.png");
    image::RgbImage::from_pixel(20_000, 2, image::Rgb([9, 99, 199])).save(&wide).unwrap();

    let xception_bytes = std::fs::read(weights("xception")).unwrap();
    let truncated_ckpt = dir.join("truncated.safetensors");
    std::fs::write(&truncated_ckpt, &xception_bytes[..5000]).unwrap();
    let corrupt = dir.join("corrupt-header.safetensors");
    let mut header = 16u64.to_le_bytes().to_vec();
    header.extend(b"{not json at all");
    std::fs::write(&corrupt, header).unwrap();
    let missing_tensor = edited_xception(&dir, "missing.safetensors", |t| {
        t.remove("conv1.weight");
    });
    let wrong_dtype = edited_xception(&dir, "dtype.safetensors", |t| {
        let w = t["conv1.weight"].to_dtype(DType::I64).unwrap();
        t.insert("conv1.weight".into(), w);
    });
    let wrong_shape = edited_xception(&dir, "shape.safetensors", |t| {
        let w = t["conv1.weight"].flatten_all().unwrap();
        let n = w.dims()[0];
        t.insert("conv1.weight".into(), w.reshape((n, 1, 1, 1)).unwrap());
    });
    let nan_weights = edited_xception(&dir, "nan-weights.safetensors", |t| {
        let w = &t["conv1.weight"];
        let mut v: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        v[0] = f32::NAN;
        v[7] = f32::INFINITY;
        t.insert("conv1.weight".into(), Tensor::from_vec(v, w.dims(), cpu).unwrap());
    });

    let mut values = vec![0.5f32; 3 * 64 * 64];
    values[100] = f32::NAN;
    let nan_input = input_file(&dir, "nan.safetensors", Tensor::from_vec(values, (1, 3, 64, 64), cpu).unwrap());
    let empty_input = input_file(&dir, "empty.safetensors", Tensor::zeros((0, 3, 64, 64), DType::F32, cpu).unwrap());
    let gray_input = input_file(&dir, "gray.safetensors", Tensor::zeros((2, 1, 64, 64), DType::F32, cpu).unwrap());
    let other_name = dir.join("pixels.safetensors");
    save(&HashMap::from([("pixels".to_string(), Tensor::zeros((1, 3, 8, 8), DType::F32, cpu).unwrap())]), &other_name);

    let demo = load(ModelKind::Demo, None, cpu).unwrap();
    let outputs = demo.forward(&Tensor::zeros((1, 3, 64, 64), DType::F32, cpu).unwrap()).unwrap();
    let d = |p: &Path| p.display().to_string();

    // (case, the error text, what it must contain)
    let table: Vec<(&str, String, Vec<String>)> = vec![
        (
            "an image file that does not exist",
            error_of("missing", image(&missing)),
            vec![format!("cannot access {}", d(&missing)), "No such file or directory".into()],
        ),
        (
            "a file that is not an image",
            error_of("not an image", image(&not_image)),
            vec![format!("image {}: cannot decode", d(&not_image)), "Invalid PNG signature".into()],
        ),
        (
            "a truncated PNG",
            error_of("truncated", image(&truncated)),
            vec![format!("image {}: cannot decode", d(&truncated)), "unexpected end of file".into()],
        ),
        (
            "a PNG whose header claims 100000×100000 pixels",
            error_of("huge", image(&huge)),
            vec![format!(
                "image {}: the image is 100000×100000 pixels (27.9 GiB decoded); gaze decodes images of at most \
                 16384×16384 pixels and 1 GiB decoded",
                d(&huge)
            )],
        ),
        (
            "the same PNG from memory",
            error_of("huge bytes", load_image_bytes(&gaze_testkit::huge_png(), Path::new("mem.png")).map(|_| ())),
            vec!["image mem.png: the image is 100000×100000 pixels".into(), "at most 16384×16384 pixels".into()],
        ),
        (
            "a real PNG wider than the limit",
            error_of("wide", image(&wide)),
            vec![format!(
                "image {}: the image is 20000×2 pixels (117.2 KiB decoded); gaze decodes images of at most \
                 16384×16384 pixels and 1 GiB decoded",
                d(&wide)
            )],
        ),
        (
            "a truncated safetensors checkpoint",
            error_of("truncated checkpoint", xception(&truncated_ckpt)),
            vec![format!("checkpoint {}: not a readable safetensors file", d(&truncated_ckpt))],
        ),
        (
            "a checkpoint with a corrupt header",
            error_of("corrupt header", xception(&corrupt)),
            vec![format!("checkpoint {}: not a readable safetensors file (invalid JSON in header", d(&corrupt))],
        ),
        (
            "a checkpoint missing a tensor",
            error_of("missing tensor", xception(&missing_tensor)),
            vec!["missing tensor `conv1.weight`; is this a checkpoint of the right architecture?".into()],
        ),
        (
            "a checkpoint tensor of the wrong dtype",
            error_of("dtype", xception(&wrong_dtype)),
            vec!["tensor `conv1.weight` has dtype I64; expected f32, f16, bf16 or f64".into()],
        ),
        (
            "a checkpoint tensor of the wrong shape",
            error_of("shape", xception(&wrong_shape)),
            vec!["tensor `conv1.weight` has shape [54, 1, 1, 1]; expected".into()],
        ),
        (
            "a checkpoint of another architecture",
            error_of("architecture", load(ModelKind::ResNet50, Some(&weights("vgg16")), cpu).map(|_| ())),
            vec!["missing tensor `conv1.weight`; is this a checkpoint of the right architecture?".into()],
        ),
        (
            "NaN or infinite values in the weights",
            error_of("nan weights", xception(&nan_weights)),
            vec![format!("checkpoint {}: tensor `conv1.weight` contains 2 NaN or infinite values", d(&nan_weights))],
        ),
        (
            "an unknown model",
            error_of("model", "nosuch".parse::<ModelKind>()),
            vec!["invalid value `nosuch` for --model; expected demo, vgg16, resnet50, xception".into()],
        ),
        (
            "an unknown layer",
            error_of("layer", demo.resolve_layer("nosuch")),
            vec!["unknown layer `nosuch`; valid layers: conv1, relu1".into()],
        ),
        (
            "a class index out of range",
            error_of("class", Target::classes([99999]).resolve(&outputs)),
            vec!["class index 99999 is out of range; the model has 8 classes (0..=7)".into()],
        ),
        (
            "top-k larger than the class count",
            error_of("top", Target::top(99999).resolve(&outputs)),
            vec!["top-k of 99999 is invalid; the model has 8 classes, so k must be in 1..=8".into()],
        ),
        (
            "NaN in the input tensor",
            error_of("nan input", load_input_tensor(&nan_input, 3, cpu)),
            vec![format!("tensor `input` in {} contains 1 NaN or infinite values", d(&nan_input))],
        ),
        (
            "an input tensor file with 0 rows (an empty background set)",
            error_of("empty input", load_input_tensor(&empty_input, 3, cpu)),
            vec![
                format!("tensor `input` in {}", d(&empty_input)),
                "with N, H and W at least 1, got [0, 3, 64, 64]".into(),
            ],
        ),
        (
            "an input tensor with the wrong channel count",
            error_of("channels", load_input_tensor(&gray_input, 3, cpu)),
            vec!["expected shape [N, 3, H, W]".into(), "got [2, 1, 64, 64]".into()],
        ),
        (
            "an input tensor file without `input`",
            error_of("no input", load_input_tensor(&other_name, 3, cpu)),
            vec![format!("input tensor file {}: no tensor named `input`; it has: pixels", d(&other_name))],
        ),
        (
            "an input tensor file that is not a safetensors file",
            error_of("not safetensors", load_input_tensor(&not_image, 3, cpu)),
            vec![format!("input tensor file {}: not a readable safetensors file", d(&not_image))],
        ),
        (
            "an input tensor file that does not exist",
            error_of("no input file", load_input_tensor(&missing, 3, cpu)),
            vec![format!("cannot access {}", d(&missing))],
        ),
    ];
    let mut failures = Vec::new();
    for (case, err, wants) in &table {
        for want in wants {
            if !err.contains(want.as_str()) {
                failures.push(format!("{case}: `{err}` lacks `{want}`"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn grayscale_rgba_and_16_bit_pngs_are_converted_to_8_bit_rgb() {
    let dir = scratch("convert");
    let gray = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 50 + y * 30) as u8]));
    let rgba = image::RgbaImage::from_fn(4, 3, |x, y| image::Rgba([(x * 60) as u8, (y * 80) as u8, 90, 7]));
    let rgb16: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
        image::ImageBuffer::from_fn(4, 3, |x, y| image::Rgb([(x * 15000) as u16, (y * 20000) as u16, 0xffff]));
    let gray16: image::ImageBuffer<image::Luma<u16>, Vec<u16>> =
        image::ImageBuffer::from_fn(4, 3, |x, y| image::Luma([(x * 10000 + y * 7000) as u16]));
    gray.save(dir.join("gray.png")).unwrap();
    rgba.save(dir.join("rgba.png")).unwrap();
    rgb16.save(dir.join("rgb16.png")).unwrap();
    gray16.save(dir.join("gray16.png")).unwrap();
    let at = |name: &str, x: u32, y: u32| load_image(&dir.join(name)).unwrap().get_pixel(x, y).0;
    assert_eq!(at("gray.png", 2, 1), [130, 130, 130]);
    assert_eq!(at("rgba.png", 3, 2), [180, 160, 90], "alpha dropped, colour kept");
    assert_eq!(at("rgb16.png", 1, 2), [(15000 >> 8) as u8, (40000 >> 8) as u8, 255]);
    let g = at("gray16.png", 1, 1);
    assert!(g[0] == g[1] && g[1] == g[2] && (g[0] as i32 - (17000 / 257)).abs() <= 1, "{g:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn images_and_input_tensors_from_memory_match_the_files() {
    let path = fixture("images/chelsea.png");
    let from_file = load_image(&path).unwrap();
    let from_bytes = load_image_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
    assert_eq!(from_file.dimensions(), from_bytes.dimensions());
    assert!(from_file.as_raw() == from_bytes.as_raw());

    let dir = scratch("input-bytes");
    let input = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 5.0, &Device::Cpu).unwrap().reshape((2, 3, 4, 5)).unwrap();
    let half = input_file(&dir, "half.safetensors", input.to_dtype(DType::F16).unwrap());
    let read = load_input_tensor(&half, 3, &Device::Cpu).unwrap();
    assert_eq!(read.dtype(), DType::F32);
    let bytes = std::fs::read(&half).unwrap();
    let again = gaze_models::input_tensor_from_bytes(&bytes, &half, 3, &Device::Cpu).unwrap();
    let diff: f32 = (read.clone() - input).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert_eq!(diff, 0.0, "small integers survive f16");
    assert_eq!(read.dims(), &[2, 3, 4, 5]);
    assert_eq!(
        read.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        again.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found while fuzzing the checkpoint loader: a demo checkpoint whose `input_size` metadata was
/// absurd made every caller that builds an input of the model's size abort on allocation.
#[test]
fn a_demo_checkpoint_with_an_absurd_input_size_is_rejected_at_load() {
    let dir = scratch("input-size");
    let tensors = candle_core::safetensors::load_buffer(gaze_models::DEMO_WEIGHTS, &Device::Cpu).unwrap();
    for (value, ok) in [("99999999999", false), ("0", false), ("4", false), ("eight", false), ("8", true), ("64", true)]
    {
        let metadata = HashMap::from([("input_size".to_string(), value.to_string())]);
        let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(metadata)).unwrap();
        let path = dir.join(format!("input-size-{value}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        match load(ModelKind::Demo, Some(&path), &Device::Cpu) {
            Ok(model) => {
                assert!(ok, "input_size {value} was accepted");
                assert_eq!(model.input_shape()[1], value.parse::<usize>().unwrap());
            }
            Err(e) => {
                assert!(!ok, "input_size {value}: {e}");
                let want = format!("metadata `input_size` is `{value}`; expected a whole number of pixels in 8..=4096");
                assert!(e.to_string().contains(&want), "{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
