//! Golden pictures: an overlay, a grid of feature maps and a SHAP plot, compared pixel by pixel
//! with the PNG files under `tests/golden/`.
//!
//! Run with `GAZE_BLESS=1` to rewrite the files after a deliberate change, then look at them.
//! A missing file is a failure, never a silent pass.

use std::path::PathBuf;

use gaze_render::{
    grid_maps, overlay_map, save_png, shap_plot, Map, MapGridOptions, OverlayOptions, Rgb, RgbImage, RgbaImage,
    ShapPlotOptions, WriteOptions,
};

/// The largest difference allowed in any channel of any pixel (font rasterisation and float
/// rounding may differ by a step or two between platforms).
const TOLERANCE: u8 = 3;

fn check_golden(name: &str, actual: &RgbaImage) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join(format!("{name}.png"));
    if std::env::var("GAZE_BLESS").is_ok_and(|v| v == "1") {
        save_png(&path, actual, WriteOptions::overwrite()).unwrap();
        return;
    }
    assert!(
        path.exists(),
        "the golden picture {} is missing; run the test with GAZE_BLESS=1 to create it, then look at it",
        path.display()
    );
    let expected = image::open(&path).unwrap().to_rgba8();
    let rejected = std::env::temp_dir().join(format!("gaze-render-golden-{name}.png"));
    let keep = || {
        let _ = save_png(&rejected, actual, WriteOptions::overwrite());
    };
    if expected.dimensions() != actual.dimensions() {
        keep();
        panic!(
            "{name}: the picture is {:?}, the golden one {:?}; the new one is at {}",
            actual.dimensions(),
            expected.dimensions(),
            rejected.display()
        );
    }
    let mut worst = (0u8, 0u32, 0u32);
    for (x, y, a) in actual.enumerate_pixels() {
        let e = expected.get_pixel(x, y);
        for c in 0..4 {
            let d = a[c].abs_diff(e[c]);
            if d > worst.0 {
                worst = (d, x, y);
            }
        }
    }
    if worst.0 > TOLERANCE {
        keep();
        panic!(
            "{name}: pixel ({}, {}) differs by {} from the golden picture; the new one is at {}",
            worst.1,
            worst.2,
            worst.0,
            rejected.display()
        );
    }
}

/// A small test picture: a sky-to-grass gradient with a bright sun and a dark box.
fn scene(size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let s = size as f32;
        let (fx, fy) = (x as f32 / s, y as f32 / s);
        let sun = ((fx - 0.7).powi(2) + (fy - 0.3).powi(2)).sqrt() < 0.15;
        let boxed = (0.15..0.45).contains(&fx) && (0.55..0.85).contains(&fy);
        if sun {
            Rgb([250, 220, 60])
        } else if boxed {
            Rgb([60, 40, 30])
        } else if fy < 0.5 {
            Rgb([(90.0 + 80.0 * fy) as u8, (150.0 + 60.0 * fy) as u8, 235])
        } else {
            Rgb([70, (170.0 - 60.0 * fy) as u8, (60.0 + 40.0 * fx) as u8])
        }
    })
}

/// A map of `size × size` with a Gaussian bump at `(cx, cy)` (fractions of the side) of sign `s`.
fn bump(size: usize, cx: f32, cy: f32, width: f32, s: f32) -> Vec<f32> {
    let n = size as f32;
    (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f32 / n, (i / size) as f32 / n);
            s * (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * width * width)).exp()
        })
        .collect()
}

#[test]
fn golden_overlay() {
    let image = scene(48);
    let map = Map::new(bump(7, 0.7, 0.3, 0.2, 1.0), (7, 7)).unwrap();
    let out = overlay_map(&image, &map, &OverlayOptions::default()).unwrap();
    check_golden("overlay", &image::DynamicImage::ImageRgb8(out).to_rgba8());
}

#[test]
fn golden_grid_of_feature_maps() {
    let maps: Vec<Map> = (0..6)
        .map(|c| {
            let values = bump(6, 0.15 * c as f32 + 0.1, 0.5, 0.15, 1.0 + c as f32);
            Map::new(values, (6, 6)).unwrap()
        })
        .collect();
    let labels: Vec<String> = (0..6).map(|c| format!("ch {c}")).collect();
    let opts = MapGridOptions { zoom: 6, colorbar: true, ..MapGridOptions::default() };
    let out = grid_maps(&maps, Some(&labels), &opts).unwrap();
    check_golden("grid", &out);
}

#[test]
fn golden_shap_plot() {
    let images = vec![scene(24), {
        let mut flipped = scene(24);
        image::imageops::flip_horizontal_in_place(&mut flipped);
        flipped
    }];
    let values: Vec<Vec<Map>> = (0..2)
        .map(|n| {
            (0..2)
                .map(|t| {
                    let pos = bump(12, 0.3 + 0.4 * n as f32, 0.3, 0.12, 1.0);
                    let neg = bump(12, 0.6 - 0.3 * t as f32, 0.7, 0.1, -0.6);
                    let v = pos.iter().zip(&neg).map(|(a, b)| 1e-3 * (a + b)).collect();
                    Map::new(v, (12, 12)).unwrap()
                })
                .collect()
        })
        .collect();
    let labels = vec![vec!["sunny".to_string(), "boxy".to_string()], vec!["meadow".to_string(), "sky".to_string()]];
    let opts = ShapPlotOptions { zoom: 4, ..ShapPlotOptions::default() };
    let out = shap_plot(&images, &values, &labels, &opts).unwrap();
    check_golden("shap", &out);
}
