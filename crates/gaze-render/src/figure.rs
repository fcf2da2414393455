//! Figures: rows and columns of titled panels, grids of tiles, and colour bars.

use gaze_core::{Error, Result};
use image::{DynamicImage, Rgba, RgbaImage};

use crate::draw::colorize_with_limits;
use crate::text::{self, blend, TextStyle};
use crate::{Colormap, Limits, Map, Normalize};

/// One picture of a figure, with an optional title drawn above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub image: RgbaImage,
    pub title: Option<String>,
}

impl Panel {
    /// A panel showing `image` (RGB or RGBA, or any other `image` buffer), without a title.
    pub fn new(image: impl Into<DynamicImage>) -> Panel {
        Panel { image: image.into().to_rgba8(), title: None }
    }

    /// The same panel with a title.
    pub fn with_title(mut self, title: impl Into<String>) -> Panel {
        self.title = Some(title.into());
        self
    }
}

/// Spacing, colours and text sizes of a [`Figure`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FigureStyle {
    /// Pixels between panels and around the figure.
    pub pad: u32,
    pub background: Rgba<u8>,
    /// Panel titles, tick labels and the colour bar's label.
    pub text: TextStyle,
    /// The figure's own title.
    pub heading: TextStyle,
}

/// The longest side of a picture gaze-render draws, in pixels.
pub const MAX_PICTURE_SIDE: u64 = 1 << 15;
/// The largest text size, in pixels.
pub const MAX_TEXT_SIZE: f32 = 512.0;
/// The largest padding, colour-bar thickness and zoom.
pub const MAX_SPACING: u32 = 1 << 10;

/// `(width, height)` as `u32` when neither side passes [`MAX_PICTURE_SIDE`]; an error naming
/// `what` and the size otherwise (a size computed from absurd options, rather than an overflow
/// or an allocation that aborts).
pub(crate) fn picture_size(width: u64, height: u64, what: &str) -> Result<(u32, u32)> {
    if width == 0 || height == 0 || width > MAX_PICTURE_SIDE || height > MAX_PICTURE_SIDE {
        return Err(Error::InvalidOption {
            option: format!("the size of {what}"),
            value: format!("{width}×{height} pixels"),
            expected: format!("sides of 1 to {MAX_PICTURE_SIDE} pixels (check the sizes, zoom and padding asked for)"),
        });
    }
    Ok((width as u32, height as u32))
}

/// An error unless `value` is at most `most` (an option that sets a picture's size).
pub(crate) fn at_most(option: &str, value: u32, most: u32) -> Result<()> {
    if value > most {
        return Err(Error::InvalidOption {
            option: option.into(),
            value: value.to_string(),
            expected: format!("at most {most} pixels"),
        });
    }
    Ok(())
}

impl FigureStyle {
    /// An error naming a padding above [`MAX_SPACING`] or a text size outside `(0, MAX_TEXT_SIZE]`.
    pub fn validate(&self) -> Result<()> {
        at_most("figure padding", self.pad, MAX_SPACING)?;
        for (name, t) in [("text size", &self.text), ("heading size", &self.heading)] {
            if !(t.size > 0.0 && t.size <= MAX_TEXT_SIZE) {
                return Err(Error::InvalidOption {
                    option: format!("figure {name}"),
                    value: t.size.to_string(),
                    expected: format!("a size in (0, {MAX_TEXT_SIZE}] pixels"),
                });
            }
        }
        Ok(())
    }
}

impl Default for FigureStyle {
    fn default() -> Self {
        FigureStyle {
            pad: 8,
            background: Rgba([255, 255, 255, 255]),
            text: TextStyle::sized(13.0),
            heading: TextStyle::sized(16.0),
        }
    }
}

/// A horizontal colour bar: the colormap from `limits.low` (left) to `limits.high` (right), with
/// tick marks at round values and an optional label underneath.
#[derive(Clone, Debug, PartialEq)]
pub struct Colorbar {
    pub cmap: Colormap,
    pub limits: Limits,
    pub label: Option<String>,
    /// About how many ticks to draw (the ticks fall on round values, so the count may differ by
    /// one or two).
    pub ticks: usize,
    /// The thickness of the bar in pixels.
    pub thickness: u32,
}

impl Colorbar {
    /// A bar for `cmap` over `limits` with five ticks and no label.
    pub fn new(cmap: Colormap, limits: Limits) -> Colorbar {
        Colorbar { cmap, limits, label: None, ticks: 5, thickness: 12 }
    }

    /// The same bar with a label under its ticks.
    pub fn with_label(mut self, label: impl Into<String>) -> Colorbar {
        self.label = Some(label.into());
        self
    }
}

/// A figure: an optional title, rows of [`Panel`]s laid out in aligned columns, and an optional
/// colour bar across the bottom.
///
/// Each column is as wide as its widest panel and each row as tall as its tallest; panels are
/// centred in their cells, and titles too long for their column are shortened with an ellipsis.
/// Rows may hold different numbers of panels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figure {
    pub title: Option<String>,
    pub rows: Vec<Vec<Panel>>,
    pub colorbar: Option<Colorbar>,
    pub style: FigureStyle,
}

impl Figure {
    /// An empty figure with the default style.
    pub fn new() -> Figure {
        Figure::default()
    }

    /// The same figure with a title.
    pub fn with_title(mut self, title: impl Into<String>) -> Figure {
        self.title = Some(title.into());
        self
    }

    /// The same figure with one more row of panels.
    pub fn with_row(mut self, row: Vec<Panel>) -> Figure {
        self.rows.push(row);
        self
    }

    /// The same figure with a colour bar at the bottom.
    pub fn with_colorbar(mut self, colorbar: Colorbar) -> Figure {
        self.colorbar = Some(colorbar);
        self
    }

    /// Draws the figure.
    /// A figure without any panel is an error.
    pub fn render(&self) -> Result<RgbaImage> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        if columns == 0 {
            return Err(Error::msg("a figure needs at least one panel; every row is empty"));
        }
        let style = &self.style;
        style.validate()?;
        let pad = style.pad;
        let title_h = text::measure("Ag", style.text.size).1;
        let mut col_w = vec![0u32; columns];
        for row in &self.rows {
            for (j, p) in row.iter().enumerate() {
                col_w[j] = col_w[j].max(p.image.width());
            }
        }
        let row_layout: Vec<(u32, u32)> = self
            .rows
            .iter()
            .map(|row| {
                let titled = row.iter().any(|p| p.title.is_some());
                let top = if titled { title_h + pad / 2 } else { 0 };
                let tallest = row.iter().map(|p| p.image.height()).max().unwrap_or(0);
                (top, tallest)
            })
            .collect();
        let grid_w = col_w.iter().map(|&w| u64::from(w)).sum::<u64>() + u64::from(pad) * (columns as u64 - 1);
        let grid_h = row_layout.iter().map(|&(t, h)| u64::from(t) + u64::from(h)).sum::<u64>()
            + u64::from(pad) * (self.rows.len() as u64).saturating_sub(1);
        let (grid_w, grid_h) = picture_size(grid_w, grid_h, "the figure's panels")?;

        let heading_h = match &self.title {
            Some(_) => text::measure("Ag", style.heading.size).1 + pad,
            None => 0,
        };
        let bar = match &self.colorbar {
            Some(cb) => Some(colorbar(cb, grid_w.max(120), style)?),
            None => None,
        };
        let bar_h = bar.as_ref().map(|b| b.height() + pad).unwrap_or(0);
        let content_w = grid_w.max(bar.as_ref().map(|b| b.width()).unwrap_or(0));
        let (width, height) = picture_size(
            u64::from(content_w) + 2 * u64::from(pad),
            u64::from(heading_h) + u64::from(grid_h) + u64::from(bar_h) + 2 * u64::from(pad),
            "the figure",
        )?;
        let mut out = RgbaImage::from_pixel(width, height, style.background);

        if let Some(title) = &self.title {
            let t = text::fit(title, style.heading.size, content_w);
            text::draw_centered(&mut out, &t, ((width / 2) as i32, pad as i32), &style.heading);
        }
        let x0 = pad + (content_w - grid_w) / 2;
        let mut y = pad + heading_h;
        for (row, &(top, tallest)) in self.rows.iter().zip(&row_layout) {
            let mut x = x0;
            for (j, panel) in row.iter().enumerate() {
                let cell_w = col_w[j];
                if let Some(title) = &panel.title {
                    let t = text::fit(title, style.text.size, cell_w);
                    text::draw_centered(&mut out, &t, ((x + cell_w / 2) as i32, y as i32), &style.text);
                }
                let px = x + (cell_w - panel.image.width()) / 2;
                let py = y + top + (tallest - panel.image.height()) / 2;
                paste(&mut out, &panel.image, px, py);
                x += cell_w + pad;
            }
            y += top + tallest + pad;
        }
        if let Some(bar) = bar {
            let bx = pad + (content_w - bar.width()) / 2;
            paste(&mut out, &bar, bx, height - pad - bar.height());
        }
        Ok(out)
    }
}

/// Blends `src` over `dst` with its top-left corner at `(x, y)`; parts outside `dst` are clipped.
pub fn paste(dst: &mut RgbaImage, src: &RgbaImage, x: u32, y: u32) {
    for (sx, sy, p) in src.enumerate_pixels() {
        let (Some(dx), Some(dy)) = (x.checked_add(sx), y.checked_add(sy)) else {
            continue;
        };
        if dx < dst.width() && dy < dst.height() {
            let d = dst.get_pixel_mut(dx, dy);
            if p[3] == 255 {
                *d = *p;
            } else {
                blend(d, Rgba([p[0], p[1], p[2], 255]), f32::from(p[3]) / 255.0);
            }
        }
    }
}

/// Draws a horizontal colour bar `width` pixels wide (labels included) on the style's background.
///
/// The bar's colours are drawn over the background, so a transparent colormap shows as it would
/// over a white picture.
/// Equal limits draw a single tick at their value.
pub fn colorbar(cb: &Colorbar, width: u32, style: &FigureStyle) -> Result<RgbaImage> {
    let Limits { low, high, .. } = cb.limits;
    if !(low.is_finite() && high.is_finite() && low <= high) {
        return Err(Error::InvalidOption {
            option: "colour bar limits".into(),
            value: format!("{low}..{high}"),
            expected: "finite limits with low ≤ high".into(),
        });
    }
    style.validate()?;
    at_most("colour bar thickness", cb.thickness, MAX_SPACING)?;
    if cb.ticks > 100 {
        return Err(Error::InvalidOption {
            option: "colour bar ticks".into(),
            value: cb.ticks.to_string(),
            expected: "at most 100 ticks".into(),
        });
    }
    picture_size(u64::from(width.max(1)), 1, "the colour bar")?;
    let size = style.text.size;
    let (ticks, scale) = ticks(low, high, cb.ticks.max(2));
    let labels: Vec<String> = ticks.iter().map(|t| t.1.clone()).collect();
    let half_label = labels.iter().map(|l| text::measure(l, size).0 / 2 + 1).max().unwrap_or(0);
    let bar_w = width.saturating_sub(2 * half_label).max(16);
    let width = bar_w + 2 * half_label;
    let line_h = text::measure("Ag", size).1;
    let tick_len = 4;
    let label = match (&cb.label, scale) {
        (Some(l), Some(e)) => Some(format!("{l} (×1e{e})")),
        (Some(l), None) => Some(l.clone()),
        (None, Some(e)) => Some(format!("×1e{e}")),
        (None, None) => None,
    };
    let label_h = if label.is_some() { line_h + 2 } else { 0 };
    let height = cb.thickness + tick_len + 1 + line_h + label_h;
    let mut out = RgbaImage::from_pixel(width, height, style.background);

    let span = high - low;
    for bx in 0..bar_w {
        let t = (bx as f32 + 0.5) / bar_w as f32;
        let position = if span > 0.0 { cb.limits.position(low + t * span) } else { t };
        let c = cb.cmap.rgba(position);
        for by in 0..cb.thickness {
            let d = out.get_pixel_mut(half_label + bx, by);
            blend(d, Rgba([c[0], c[1], c[2], 255]), f32::from(c[3]) / 255.0);
        }
    }
    let ink = style.text.color;
    for (value, text_label) in &ticks {
        let fraction = if span > 0.0 { (value - low) / span } else { cb.limits.position(*value) };
        let tx = half_label + ((fraction * (bar_w - 1) as f32).round() as u32).min(bar_w - 1);
        for ty in cb.thickness..cb.thickness + tick_len {
            out.put_pixel(tx, ty, ink);
        }
        text::draw_centered(&mut out, text_label, (tx as i32, (cb.thickness + tick_len + 1) as i32), &style.text);
    }
    if let Some(label) = label {
        let label = text::fit(&label, size, width);
        let y = (cb.thickness + tick_len + 1 + line_h + 2) as i32;
        text::draw_centered(&mut out, &label, ((width / 2) as i32, y), &style.text);
    }
    Ok(out)
}

/// Round tick values between `low` and `high` (steps of 1, 2 or 5 times a power of ten, about
/// `count` of them) with their labels, and the power of ten the labels are divided by when the
/// values are very small or very large.
fn ticks(low: f32, high: f32, count: usize) -> (Vec<(f32, String)>, Option<i32>) {
    let (low64, high64) = (f64::from(low), f64::from(high));
    let span = high64 - low64;
    if span <= 0.0 {
        return (vec![(low, format_tick(low64, 0, None))], None);
    }
    // The smallest round step that puts at most `count + 1` ticks inside the range.
    let raw = span / (count.saturating_sub(1).max(1)) as f64;
    let magnitude = 10f64.powf(raw.log10().floor() - 1.0);
    // Tolerant rounding, so that a limit a hair off a multiple of the step still gets its tick.
    let first_k = |step: f64| (low64 / step - 1e-6).ceil();
    let last_k = |step: f64| (high64 / step + 1e-6).floor();
    let inside = |step: f64| (last_k(step) - first_k(step) + 1.0).max(0.0) as usize;
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| inside(s) <= count + 1)
        .unwrap_or(100.0 * magnitude);
    let biggest = low64.abs().max(high64.abs());
    let exponent = biggest.log10().floor() as i32;
    let scale = (!(-3..5).contains(&exponent)).then_some(exponent);
    let divisor = scale.map(|e| 10f64.powi(e)).unwrap_or(1.0);
    let decimals = (-(step / divisor).log10().floor()).max(0.0) as usize;
    let first = first_k(step) as i64;
    let last = last_k(step) as i64;
    let values = (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            (v as f32, format_tick(v, decimals, Some(divisor)))
        })
        .collect();
    (values, scale)
}

/// A tick label with a true minus sign, as matplotlib draws it.
fn format_tick(value: f64, decimals: usize, divisor: Option<f64>) -> String {
    let v = value / divisor.unwrap_or(1.0);
    let text = format!("{:.*}", decimals, v.abs());
    let is_zero = text.chars().all(|c| c == '0' || c == '.');
    if v < 0.0 && !is_zero {
        format!("−{text}")
    } else {
        text
    }
}

/// How [`grid`] lays out its tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridOptions {
    /// Tiles per row; `None` for `ceil(sqrt(n))`, the square-ish layout of tf-explain's
    /// `grid_display`.
    pub cols: Option<usize>,
    pub style: FigureStyle,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            cols: None,
            style: FigureStyle { pad: 4, text: TextStyle::sized(11.0), ..FigureStyle::default() },
        }
    }
}

/// Lays `tiles` out row by row, with padding and, when given, one label above each tile.
/// `labels`, when given, must have one entry per tile.
pub fn grid(tiles: &[RgbaImage], labels: Option<&[String]>, opts: &GridOptions) -> Result<RgbaImage> {
    grid_figure(tiles, labels, opts)?.render()
}

/// The [`Figure`] [`grid`] draws, for callers that want to add a title or a colour bar first.
pub fn grid_figure(tiles: &[RgbaImage], labels: Option<&[String]>, opts: &GridOptions) -> Result<Figure> {
    if tiles.is_empty() {
        return Err(Error::msg("a grid needs at least one tile; none were given"));
    }
    if let Some(labels) = labels {
        if labels.len() != tiles.len() {
            return Err(Error::Shape {
                what: "grid labels".into(),
                expected: format!("one label per tile ({})", tiles.len()),
                got: vec![labels.len()],
            });
        }
    }
    let cols = match opts.cols {
        Some(0) => {
            return Err(Error::InvalidOption {
                option: "grid columns".into(),
                value: "0".into(),
                expected: "at least 1 column".into(),
            })
        }
        Some(c) => c,
        None => (tiles.len() as f64).sqrt().ceil() as usize,
    };
    let mut figure = Figure { style: opts.style, ..Figure::default() };
    for (r, chunk) in tiles.chunks(cols).enumerate() {
        let row = chunk
            .iter()
            .enumerate()
            .map(|(j, tile)| {
                let panel = Panel::new(tile.clone());
                match labels {
                    Some(l) => panel.with_title(l[r * cols + j].clone()),
                    None => panel,
                }
            })
            .collect();
        figure.rows.push(row);
    }
    Ok(figure)
}

/// Whether the maps of a [`grid_maps`] share one colour scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    /// One set of limits over all maps, so tiles can be compared (tf-explain's activation grid).
    #[default]
    Shared,
    /// Limits per map, so each tile shows its own structure.
    PerMap,
}

/// Options of [`grid_maps`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapGridOptions {
    pub cmap: Colormap,
    pub normalize: Normalize,
    pub scale: Scale,
    /// Each map pixel becomes `zoom × zoom` picture pixels (nearest neighbour), so that small
    /// feature maps stay visible.
    pub zoom: u32,
    pub grid: GridOptions,
    /// Whether to draw a colour bar under the grid (only with [`Scale::Shared`]).
    pub colorbar: bool,
}

impl Default for MapGridOptions {
    fn default() -> Self {
        MapGridOptions {
            cmap: Colormap::Viridis,
            normalize: Normalize::MinMax,
            scale: Scale::Shared,
            zoom: 4,
            grid: GridOptions::default(),
            colorbar: false,
        }
    }
}

/// Draws several maps (for example the feature maps of a layer) as a grid of coloured tiles,
/// zennit's `gridify` followed by `imgify`.
pub fn grid_maps(maps: &[Map], labels: Option<&[String]>, opts: &MapGridOptions) -> Result<RgbaImage> {
    if maps.is_empty() {
        return Err(Error::msg("a grid needs at least one map; none were given"));
    }
    if opts.zoom == 0 {
        return Err(Error::InvalidOption {
            option: "zoom".into(),
            value: "0".into(),
            expected: "a zoom of at least 1".into(),
        });
    }
    at_most("zoom", opts.zoom, MAX_SPACING)?;
    let shared = match opts.scale {
        Scale::Shared => {
            let all: Vec<f32> = maps.iter().flat_map(|m| m.values().iter().copied()).collect();
            Some(opts.normalize.limits(&all)?)
        }
        Scale::PerMap => None,
    };
    let tiles = maps
        .iter()
        .map(|m| {
            let limits = match shared {
                Some(l) => l,
                None => opts.normalize.limits(m.values())?,
            };
            let z = opts.zoom as usize;
            let big = m.resize_nearest((m.height() * z, m.width() * z))?;
            Ok(colorize_with_limits(&big, opts.cmap, &limits))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut figure = grid_figure(&tiles, labels, &opts.grid)?;
    if let (Some(limits), true) = (shared, opts.colorbar) {
        figure.colorbar = Some(Colorbar::new(opts.cmap, limits));
    }
    figure.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_errors_not_overflows_or_aborts() {
        let tile = RgbaImage::new(4, 4);
        let mut opts = GridOptions::default();
        opts.style.pad = u32::MAX;
        let e = grid(std::slice::from_ref(&tile), None, &opts).unwrap_err().to_string();
        assert!(e.contains("figure padding") && e.contains("at most 1024"), "{e}");
        let mut opts = GridOptions::default();
        opts.style.text.size = 1e9;
        let e = grid(std::slice::from_ref(&tile), Some(&["t".to_string()]), &opts).unwrap_err().to_string();
        assert!(e.contains("figure text size"), "{e}");
        // Many wide tiles in one row: the figure's width passes the largest side.
        let wide = RgbaImage::new(30_000, 1);
        let opts = GridOptions { cols: Some(2), ..GridOptions::default() };
        let e = grid(&[wide.clone(), wide], None, &opts).unwrap_err().to_string();
        assert!(e.contains("the size of the figure's panels"), "{e}");
        let style = FigureStyle::default();
        let mut cb = Colorbar::new(Colormap::Viridis, Limits::new(0.0, 1.0));
        cb.thickness = u32::MAX;
        assert!(colorbar(&cb, 200, &style).unwrap_err().to_string().contains("thickness"));
        let mut cb = Colorbar::new(Colormap::Viridis, Limits::new(0.0, 1.0));
        cb.ticks = usize::MAX;
        assert!(colorbar(&cb, 200, &style).unwrap_err().to_string().contains("ticks"));
        assert!(colorbar(&Colorbar::new(Colormap::Viridis, Limits::new(0.0, 1.0)), u32::MAX, &style).is_err());
        let maps = [Map::filled(1.0, (2, 2)).unwrap()];
        let opts = MapGridOptions { zoom: u32::MAX, ..MapGridOptions::default() };
        assert!(grid_maps(&maps, None, &opts).unwrap_err().to_string().contains("zoom"));
        // Pasting far outside is clipped, not an overflow.
        let mut dst = RgbaImage::new(2, 2);
        paste(&mut dst, &tile, u32::MAX - 1, 0);
        assert_eq!(dst, RgbaImage::new(2, 2));
    }

    #[test]
    fn ticks_fall_on_round_values() {
        let (t, scale) = ticks(-1.0, 1.0, 5);
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(labels, ["−1.0", "−0.5", "0.0", "0.5", "1.0"]);
        assert_eq!(scale, None);
        let (t, _) = ticks(0.0, 7.3, 5);
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(labels, ["0", "2", "4", "6"]);
        let (t, scale) = ticks(-0.00042, 0.00042, 5);
        assert_eq!(scale, Some(-4));
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(labels, ["−4", "−2", "0", "2", "4"]);
        let (t, _) = ticks(3.0, 3.0, 5);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_figure_is_as_big_as_its_columns_and_rows() {
        let a = RgbaImage::from_pixel(10, 20, Rgba([255, 0, 0, 255]));
        let b = RgbaImage::from_pixel(30, 5, Rgba([0, 255, 0, 255]));
        let mut fig =
            Figure::new().with_row(vec![Panel::new(a.clone()), Panel::new(b.clone())]).with_row(vec![Panel::new(b)]);
        fig.style.pad = 2;
        let img = fig.render().unwrap();
        // Columns 30 and 30 wide, rows 20 and 5 tall, 2 pixels of padding everywhere.
        assert_eq!(img.dimensions(), (2 + 30 + 2 + 30 + 2, 2 + 20 + 2 + 5 + 2));
        // The first panel is centred in its 30-pixel column: its left edge is at 2 + 10.
        assert_eq!(img.get_pixel(12, 2), &Rgba([255, 0, 0, 255]));
        assert_eq!(img.get_pixel(11, 2), &Rgba([255, 255, 255, 255]));
        assert!(Figure::new().render().is_err());
    }

    #[test]
    fn grids_check_their_labels_and_columns() {
        let tile = RgbaImage::new(4, 4);
        let tiles = vec![tile; 5];
        let img = grid(&tiles, None, &GridOptions::default()).unwrap();
        // Five tiles make a 3 × 2 layout with 4 pixels of padding.
        assert_eq!(img.dimensions(), (4 + 3 * 4 + 2 * 4 + 4, 4 + 2 * 4 + 4 + 4));
        let labels = vec!["a".to_string()];
        assert!(grid(&tiles, Some(&labels), &GridOptions::default()).is_err());
        let opts = GridOptions { cols: Some(0), ..GridOptions::default() };
        assert!(grid(&tiles, None, &opts).is_err());
    }

    #[test]
    fn a_colour_bar_with_equal_limits_still_draws() {
        let cb = Colorbar::new(Colormap::Bwr, Limits::symmetric(0.0)).with_label("value");
        let img = colorbar(&cb, 100, &FigureStyle::default()).unwrap();
        assert!(img.width() >= 100 && img.height() > cb.thickness);
        let bad = Colorbar::new(Colormap::Bwr, Limits::new(1.0, f32::NAN));
        assert!(colorbar(&bad, 100, &FigureStyle::default()).is_err());
    }
}
