//! Line charts: one or more series of points on shared axes, with ticks, axis labels, a title and
//! a legend, drawn with the crate's embedded font.
//!
//! The benchmark driver draws time per image against batch size with it; any `(x, y)` series fits.
//! The x axis is linear or logarithmic (base 2, for batch sizes and other powers of two); the y axis
//! is linear from zero, so that heights compare as ratios.

use gaze_core::{Error, Result};
use image::{Rgba, RgbaImage};

use crate::text::{self, TextStyle};

/// One line of a chart: its points, in order of x, its colour and whether it is dashed.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: Rgba<u8>,
    pub dashed: bool,
}

/// How the x axis maps values to positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XScale {
    #[default]
    Linear,
    /// Base-2 logarithmic, ticks at the powers of two; every x must be above zero.
    Log2,
}

/// A chart: its size in pixels, the labels, the x scale and the series.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: XScale,
    pub width: u32,
    pub height: u32,
    pub series: Vec<Series>,
}

impl LineChart {
    /// An empty chart of 720 × 440 pixels with a linear x axis.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: XScale::Linear,
            width: 720,
            height: 440,
            series: Vec::new(),
        }
    }
}

/// Ten colours that stay apart on white (matplotlib's `tab10`), for series without their own.
pub const TAB10: [Rgba<u8>; 10] = [
    Rgba([31, 119, 180, 255]),
    Rgba([255, 127, 14, 255]),
    Rgba([44, 160, 44, 255]),
    Rgba([214, 39, 40, 255]),
    Rgba([148, 103, 189, 255]),
    Rgba([140, 86, 75, 255]),
    Rgba([227, 119, 194, 255]),
    Rgba([127, 127, 127, 255]),
    Rgba([188, 189, 34, 255]),
    Rgba([23, 190, 207, 255]),
];

const MARGIN_LEFT: u32 = 70;
const MARGIN_RIGHT: u32 = 200;
const MARGIN_TOP: u32 = 40;
const MARGIN_BOTTOM: u32 = 52;
const AXIS: Rgba<u8> = Rgba([40, 40, 40, 255]);
const GRID: Rgba<u8> = Rgba([225, 225, 225, 255]);

/// Where the plotting area lies in the picture and how values map into it.
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x_min: f64,
    x_max: f64,
    y_max: f64,
    x_scale: XScale,
}

impl Frame {
    fn tx(&self, x: f64) -> f64 {
        let (v, lo, hi) = match self.x_scale {
            XScale::Linear => (x, self.x_min, self.x_max),
            XScale::Log2 => (x.log2(), self.x_min.log2(), self.x_max.log2()),
        };
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        self.left + t * (self.right - self.left)
    }

    fn ty(&self, y: f64) -> f64 {
        self.bottom - y / self.y_max * (self.bottom - self.top)
    }
}

/// Draws `chart`: white background, grid lines at the ticks, one line with round markers per
/// series, and the legend to the right of the plotting area.
///
/// Errors when there is no finite point to draw, a value is not finite, an x is not above zero on
/// a logarithmic axis, a y is negative, or the picture is too small for its margins.
pub fn line_chart(chart: &LineChart) -> Result<RgbaImage> {
    crate::figure::picture_size(u64::from(chart.width), u64::from(chart.height), "the chart")?;
    let points = chart.series.iter().flat_map(|s| s.points.iter().map(move |p| (s, *p)));
    let mut count = 0usize;
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for (series, (x, y)) in points {
        if !x.is_finite() || !y.is_finite() {
            return Err(Error::NonFinite { what: format!("the chart series `{}`", series.label), count: 1 });
        }
        if chart.x_scale == XScale::Log2 && x <= 0.0 {
            return Err(Error::InvalidOption {
                option: format!("an x value of the series `{}`", series.label),
                value: x.to_string(),
                expected: "a value above zero on a logarithmic axis".into(),
            });
        }
        if y < 0.0 {
            return Err(Error::InvalidOption {
                option: format!("a y value of the series `{}`", series.label),
                value: y.to_string(),
                expected: "zero or more (the y axis starts at zero)".into(),
            });
        }
        count += 1;
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if count == 0 {
        return Err(Error::msg("a line chart needs at least one point; every series is empty"));
    }
    let min_width = MARGIN_LEFT + MARGIN_RIGHT + 40;
    let min_height = MARGIN_TOP + MARGIN_BOTTOM + 40;
    if chart.width < min_width || chart.height < min_height {
        return Err(Error::InvalidOption {
            option: "the chart's size".into(),
            value: format!("{}×{}", chart.width, chart.height),
            expected: format!("at least {min_width}×{min_height} pixels"),
        });
    }
    let (y_step, y_top) = nice_axis(y_max);
    let frame = Frame {
        left: f64::from(MARGIN_LEFT),
        right: f64::from(chart.width - MARGIN_RIGHT),
        top: f64::from(MARGIN_TOP),
        bottom: f64::from(chart.height - MARGIN_BOTTOM),
        x_min,
        x_max,
        y_max: y_top,
        x_scale: chart.x_scale,
    };
    let mut img = RgbaImage::from_pixel(chart.width, chart.height, Rgba([255, 255, 255, 255]));
    let small = TextStyle { size: 12.0, color: AXIS };

    // Horizontal grid lines and the y ticks.
    let mut i = 0;
    loop {
        let y = y_step * f64::from(i);
        if y > y_top * (1.0 + 1e-9) {
            break;
        }
        let py = frame.ty(y);
        line(&mut img, (frame.left, py), (frame.right, py), GRID, 1.0, false);
        let label = tick_label(y, y_step);
        let (w, h) = text::measure(&label, small.size);
        text::draw(&mut img, &label, (frame.left as i32 - 6 - w as i32, py as i32 - h as i32 / 2), &small);
        i += 1;
    }
    // Vertical grid lines and the x ticks.
    for x in x_ticks(x_min, x_max, chart.x_scale) {
        let px = frame.tx(x);
        line(&mut img, (px, frame.top), (px, frame.bottom), GRID, 1.0, false);
        text::draw_centered(&mut img, &tick_label(x, 1.0), (px as i32, frame.bottom as i32 + 6), &small);
    }
    // The axes.
    line(&mut img, (frame.left, frame.bottom), (frame.right, frame.bottom), AXIS, 1.0, false);
    line(&mut img, (frame.left, frame.top), (frame.left, frame.bottom), AXIS, 1.0, false);

    // The series, then the legend.
    for s in &chart.series {
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (frame.tx(x), frame.ty(y))).collect();
        for pair in pts.windows(2) {
            line(&mut img, pair[0], pair[1], s.color, 2.0, s.dashed);
        }
        for &p in &pts {
            disc(&mut img, p, 3.5, s.color);
        }
    }
    let legend_x = frame.right + 16.0;
    for (k, s) in chart.series.iter().enumerate() {
        let y = frame.top + 8.0 + 20.0 * k as f64;
        line(&mut img, (legend_x, y), (legend_x + 28.0, y), s.color, 2.0, s.dashed);
        disc(&mut img, (legend_x + 14.0, y), 3.5, s.color);
        let label = text::fit(&s.label, small.size, MARGIN_RIGHT - 52);
        text::draw(&mut img, &label, (legend_x as i32 + 34, y as i32 - 8), &small);
    }

    // Title and axis labels.
    let title = TextStyle { size: 15.0, color: AXIS };
    let centre = ((frame.left + frame.right) / 2.0) as i32;
    text::draw_centered(&mut img, &chart.title, (centre, 10), &title);
    text::draw_centered(&mut img, &chart.x_label, (centre, chart.height as i32 - 24), &small);
    text::draw(&mut img, &chart.y_label, (8, MARGIN_TOP as i32 - 20), &small);
    Ok(img)
}

/// A step of 1, 2 or 5 times a power of ten giving about five intervals, and the axis top it leads
/// to (the first multiple of the step at or above `max`).
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 1.0);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= rough).unwrap_or(10.0 * power);
    let top = (max / step).ceil() * step;
    (step, top.max(step))
}

/// The x values to label: the powers of two in range on a logarithmic axis, five even steps on a
/// linear one.
fn x_ticks(min: f64, max: f64, scale: XScale) -> Vec<f64> {
    match scale {
        XScale::Log2 => {
            let (lo, hi) = (min.log2().floor() as i32, max.log2().ceil() as i32);
            (lo..=hi).map(|e| 2f64.powi(e)).filter(|x| *x >= min * (1.0 - 1e-9) && *x <= max * (1.0 + 1e-9)).collect()
        }
        XScale::Linear if max > min => (0..=4).map(|i| min + (max - min) * f64::from(i) / 4.0).collect(),
        XScale::Linear => vec![min],
    }
}

/// A tick's text: as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    if decimals == 0 && v.fract().abs() > 1e-9 {
        return format!("{v:.2}");
    }
    format!("{v:.decimals$}")
}

/// Blends `color` into the pixel at `(x, y)` with coverage `a` in [0, 1]; outside pixels are skipped.
fn plot(img: &mut RgbaImage, x: i64, y: i64, color: Rgba<u8>, a: f64) {
    if x < 0 || y < 0 || x >= i64::from(img.width()) || y >= i64::from(img.height()) {
        return;
    }
    let a = (a.clamp(0.0, 1.0) * f64::from(color[3]) / 255.0) as f32;
    let dst = img.get_pixel_mut(x as u32, y as u32);
    for c in 0..3 {
        dst[c] = (f32::from(dst[c]) * (1.0 - a) + f32::from(color[c]) * a).round() as u8;
    }
    dst[3] = 255;
}

/// A line of `width` pixels from `a` to `b`, antialiased by the distance of each pixel centre to
/// the segment; dashed lines draw 8 pixels and skip 5.
fn line(img: &mut RgbaImage, a: (f64, f64), b: (f64, f64), color: Rgba<u8>, width: f64, dashed: bool) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let half = width / 2.0;
    let x0 = (a.0.min(b.0) - half - 1.0).floor() as i64;
    let x1 = (a.0.max(b.0) + half + 1.0).ceil() as i64;
    let y0 = (a.1.min(b.1) - half - 1.0).floor() as i64;
    let y1 = (a.1.max(b.1) + half + 1.0).ceil() as i64;
    let len = len2.sqrt();
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let t = if len2 > 0.0 { (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
            if dashed && (t * len) % 13.0 > 8.0 {
                continue;
            }
            let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
            let d = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt();
            let coverage = (half + 0.5 - d).clamp(0.0, 1.0);
            if coverage > 0.0 {
                plot(img, x, y, color, coverage);
            }
        }
    }
}

/// A filled disc of radius `r` centred at `c`, antialiased at its edge.
fn disc(img: &mut RgbaImage, c: (f64, f64), r: f64, color: Rgba<u8>) {
    let (x0, x1) = ((c.0 - r - 1.0).floor() as i64, (c.0 + r + 1.0).ceil() as i64);
    let (y0, y1) = ((c.1 - r - 1.0).floor() as i64, (c.1 + r + 1.0).ceil() as i64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d = ((x as f64 + 0.5 - c.0).powi(2) + (y as f64 + 0.5 - c.1).powi(2)).sqrt();
            let coverage = (r + 0.5 - d).clamp(0.0, 1.0);
            if coverage > 0.0 {
                plot(img, x, y, color, coverage);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_steps_are_one_two_or_five() {
        assert_eq!(nice_axis(1.0), (0.2, 1.0));
        assert_eq!(nice_axis(0.37), (0.1, 0.4));
        assert_eq!(nice_axis(7.3), (2.0, 8.0));
        assert_eq!(nice_axis(0.0), (1.0, 1.0));
    }

    #[test]
    fn log2_ticks_are_the_powers_of_two_in_range() {
        assert_eq!(x_ticks(1.0, 8.0, XScale::Log2), vec![1.0, 2.0, 4.0, 8.0]);
        assert_eq!(x_ticks(3.0, 3.0, XScale::Linear), vec![3.0]);
    }

    #[test]
    fn a_chart_too_large_to_draw_is_an_error() {
        let mut chart = LineChart::new("t", "x", "y");
        chart.width = u32::MAX;
        chart.height = u32::MAX;
        let e = line_chart(&chart).unwrap_err().to_string();
        assert!(e.contains("the size of the chart"), "{e}");
    }
}
