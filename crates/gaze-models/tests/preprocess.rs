//! Our preprocessing of `fixtures/images/chelsea.png` against torchvision's and Keras's tensors of
//! the same file: every value within 1/255 of the pixel range, and in fact equal, since the
//! resampling follows Pillow bit for bit.
//! `fixtures/preprocess.safetensors` stores the peers' resampled 8-bit pixels; their float32 model
//! inputs are the per-value formulas in [`reference`], which the generator checked bit for bit.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, tensors};
use gaze_models::{load_image, resize_pil, Filter, Preprocess};

/// The largest difference between `ours` and `reference`, in units of one pixel level (1/255 of
/// the pixel range), given how many model units one pixel level is.
fn pixel_levels(ours: &Tensor, reference: &Tensor, unit_per_level: &[f32; 3]) -> f32 {
    assert_eq!(ours.dims(), &reference.dims()[1..], "shapes");
    let diff = (ours - reference.squeeze(0).unwrap()).unwrap().abs().unwrap();
    let per_channel = diff.max_keepdim(2).unwrap().max_keepdim(1).unwrap().flatten_all().unwrap();
    let per_channel = per_channel.to_vec1::<f32>().unwrap();
    per_channel.iter().zip(unit_per_level).map(|(d, u)| d / u).fold(0.0, f32::max)
}

/// The peer's float32 model input `[1, 3, H, W]` for `key`, from its stored pixels `<key>.pixels`.
fn reference(key: &str) -> Tensor {
    let pixels = &tensors(&fixture("preprocess.safetensors"), DType::F32)[&format!("{key}.pixels")];
    let dims = pixels.dims().to_vec();
    let plane = dims[2] * dims[3];
    let p = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let value = |c: usize, i: usize| -> f32 {
        match key {
            "torchvision.imagenet" => {
                let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
                (p[c * plane + i] / 255.0 - mean[c]) / std[c]
            }
            // Keras' caffe mode: BGR channels minus the BGR means.
            "keras.caffe" => p[(2 - c) * plane + i] - [103.939f32, 116.779, 123.68][c],
            "keras.tf" => p[c * plane + i] / 127.5 - 1.0,
            other => panic!("no preprocessing fixture {other}"),
        }
    };
    let v: Vec<f32> = (0..3).flat_map(|c| (0..plane).map(move |i| (c, i))).map(|(c, i)| value(c, i)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn check(pre: Preprocess, key: &str, unit_per_level: [f32; 3]) {
    let reference = &reference(key);
    let image = load_image(&fixture("images/chelsea.png")).unwrap();
    let ours = pre.apply(&image, &Device::Cpu).unwrap();
    let levels = pixel_levels(&ours, reference, &unit_per_level);
    assert!(levels <= 1.0, "{key}: off by {levels} pixel levels");
    // Pillow's arithmetic is reproduced exactly, so nothing is off at all.
    assert!(levels < 1e-3, "{key}: off by {levels} pixel levels");
}

#[test]
fn torchvision_imagenet_transform_matches() {
    let std = [0.229f32, 0.224, 0.225];
    check(Preprocess::imagenet_torchvision(), "torchvision.imagenet", std.map(|s| 1.0 / 255.0 / s));
}

#[test]
fn keras_caffe_mode_matches() {
    check(Preprocess::Caffe { size: 224 }, "keras.caffe", [1.0; 3]);
}

#[test]
fn keras_tf_mode_matches() {
    check(Preprocess::Tf { size: 299 }, "keras.tf", [1.0 / 127.5; 3]);
}

#[test]
fn resizing_to_the_same_size_is_the_identity_and_shrinking_averages() {
    let image = load_image(&fixture("images/chelsea.png")).unwrap();
    let (w, h) = image.dimensions();
    for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic] {
        assert_eq!(resize_pil(&image, w, h, filter), image);
    }
    // A flat image stays flat through every filter, shrinking or growing.
    let flat = image::RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 99]));
    for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic] {
        for (nw, nh) in [(5, 4), (80, 61), (37, 7)] {
            let out = resize_pil(&flat, nw, nh, filter);
            assert_eq!(out.dimensions(), (nw, nh));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 99]), "{filter:?} to {nw}x{nh}");
        }
    }
    // Halving a two-column stripe pattern with the (antialiasing) bilinear filter averages the
    // stripes, where nearest neighbour keeps one of them.
    let stripes =
        image::RgbImage::from_fn(8, 2, |x, _| if x % 2 == 0 { image::Rgb([0; 3]) } else { image::Rgb([200; 3]) });
    let bilinear = resize_pil(&stripes, 4, 2, Filter::Bilinear);
    assert!(bilinear.pixels().skip(1).take(2).all(|p| p.0[0] == 100), "{:?}", bilinear.as_raw());
    let nearest = resize_pil(&stripes, 4, 2, Filter::Nearest);
    assert!(nearest.pixels().all(|p| p.0[0] == 200), "{:?}", nearest.as_raw());
}

#[test]
fn centre_crops_round_half_to_even_like_python() {
    // A 257-pixel-high image resized to 256 wide leaves 33 rows beyond the crop of 224:
    // Python's round(16.5) is 16, so the crop starts at row 16.
    let image = image::RgbImage::from_fn(256, 257, |_, y| image::Rgb([y as u8, 0, 0]));
    let pre = Preprocess::Torchvision { resize: 256, crop: 224, mean: [0.0; 3], std: [1.0; 3] };
    let out = pre.resize(&image);
    assert_eq!(out.dimensions(), (224, 224));
    assert_eq!(out.get_pixel(0, 0).0[0], 16);
}

#[test]
fn hand_made_preprocessings_and_empty_images_are_refused_by_apply() {
    let dev = Device::Cpu;
    let image = image::RgbImage::new(8, 8);
    for (pre, message) in [
        (Preprocess::Caffe { size: u32::MAX }, "`4294967295` for preprocessing size; expected a side of 1 to 16384"),
        (Preprocess::Tf { size: 0 }, "`0` for preprocessing size"),
        (
            Preprocess::Torchvision { resize: 0, crop: 224, mean: [0.0; 3], std: [1.0; 3] },
            "`0` for preprocessing resize",
        ),
        (
            Preprocess::Torchvision { resize: 256, crop: 224, mean: [0.0; 3], std: [1.0, 0.0, 1.0] },
            "`0` for preprocessing std",
        ),
    ] {
        let err = pre.apply(&image, &dev).unwrap_err().to_string();
        assert!(err.contains(message), "{pre:?}: {err}");
    }
    assert!(Preprocess::imagenet_torchvision().validate().is_ok());
    let err = Preprocess::Tf { size: 299 }.apply(&image::RgbImage::new(0, 0), &dev).unwrap_err().to_string();
    assert!(err.contains("at least 1×1"), "{err}");
}
