//! Line charts: points land where the axes say, dashes leave gaps, and bad series are refused.

use gaze_render::{line_chart, LineChart, Rgba, Series, XScale};

const RED: Rgba<u8> = Rgba([214, 39, 40, 255]);
const BLUE: Rgba<u8> = Rgba([31, 119, 180, 255]);

fn chart(series: Vec<Series>, scale: XScale) -> LineChart {
    let mut c = LineChart::new("time per image", "batch", "seconds");
    c.x_scale = scale;
    c.series = series;
    c
}

fn series(label: &str, points: &[(f64, f64)], color: Rgba<u8>, dashed: bool) -> Series {
    Series { label: label.into(), points: points.to_vec(), color, dashed }
}

/// How many pixels of the picture within `r` of `(x, y)` carry exactly `color`.
fn hits(img: &image::RgbaImage, (x, y): (f64, f64), r: i64, color: Rgba<u8>) -> usize {
    let mut n = 0;
    for dy in -r..=r {
        for dx in -r..=r {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                let p = img.get_pixel(px as u32, py as u32);
                n += usize::from(p[0] == color[0] && p[1] == color[1] && p[2] == color[2]);
            }
        }
    }
    n
}

// The plotting area of a 720 × 440 chart: x from 70 to 520, y from 40 (top) to 388 (bottom).
const LEFT: f64 = 70.0;
const RIGHT: f64 = 520.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 388.0;

#[test]
fn markers_sit_where_the_axes_put_them() {
    // y from 0 to 1 has a top of exactly 1, x on a log2 axis from 1 to 8 spreads evenly.
    let s = series("a", &[(1.0, 1.0), (2.0, 0.5), (8.0, 0.0)], RED, false);
    let img = line_chart(&chart(vec![s], XScale::Log2)).unwrap();
    assert_eq!(img.dimensions(), (720, 440));
    let x_at = |x: f64| LEFT + x.log2() / 3.0 * (RIGHT - LEFT);
    let y_at = |y: f64| BOTTOM - y * (BOTTOM - TOP);
    for (x, y) in [(1.0, 1.0), (2.0, 0.5), (8.0, 0.0)] {
        assert!(hits(&img, (x_at(x), y_at(y)), 2, RED) >= 9, "no marker at ({x}, {y})");
    }
    // Halfway along the first segment the line passes; far from every point it does not.
    let mid = ((x_at(1.0) + x_at(2.0)) / 2.0, (y_at(1.0) + y_at(0.5)) / 2.0);
    assert!(hits(&img, mid, 1, RED) > 0, "no line between the first two points");
    assert_eq!(hits(&img, (x_at(8.0), y_at(1.0)), 6, RED), 0, "paint where no point is");
}

#[test]
fn dashed_lines_leave_gaps_and_solid_ones_do_not() {
    let flat = |color, dashed| series("s", &[(0.0, 1.0), (10.0, 1.0)], color, dashed);
    let solid = line_chart(&chart(vec![flat(BLUE, false)], XScale::Linear)).unwrap();
    let dashed = line_chart(&chart(vec![flat(BLUE, true)], XScale::Linear)).unwrap();
    let gaps = |img: &image::RgbaImage| {
        (LEFT as u32 + 10..RIGHT as u32 - 10).filter(|&x| hits(img, (f64::from(x), TOP), 1, BLUE) == 0).count()
    };
    assert_eq!(gaps(&solid), 0);
    let n = gaps(&dashed);
    // 5 blank pixels in every 13, less the 1-pixel neighbourhood each check looks at: about 3 in 13.
    assert!(n > 70 && n < 200, "{n} of about 430 columns left blank");
}

#[test]
fn bad_series_are_refused_with_the_value_named() {
    let err = line_chart(&chart(vec![], XScale::Linear)).unwrap_err().to_string();
    assert!(err.contains("at least one point"), "{err}");
    let neg = line_chart(&chart(vec![series("t", &[(0.0, 1.0)], RED, false)], XScale::Log2)).unwrap_err();
    assert!(neg.to_string().contains("above zero"), "{neg}");
    let nan = line_chart(&chart(vec![series("u", &[(1.0, f64::NAN)], RED, false)], XScale::Linear)).unwrap_err();
    assert!(nan.to_string().contains("`u`"), "{nan}");
    let mut tiny = chart(vec![series("v", &[(1.0, 1.0)], RED, false)], XScale::Linear);
    tiny.width = 100;
    let err = line_chart(&tiny).unwrap_err().to_string();
    assert!(err.contains("100×440"), "{err}");
}
