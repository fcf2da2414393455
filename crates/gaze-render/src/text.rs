//! Text on pictures, with an embedded font: DejaVu Sans (Bitstream Vera licence, see
//! `fonts/LICENSE-DejaVu.txt`), rasterised with antialiasing by `ab_glyph`.
//!
//! Sizes are line heights in pixels (the font's ascent minus its descent); 11 pixels is still
//! legible.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{Rgba, RgbaImage};

static FONT_DATA: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The font is part of the crate and a test parses it, so this cannot fail for any input.
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_DATA).expect("the embedded font parses"))
}

/// How text looks: its size (line height in pixels) and colour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextStyle {
    pub size: f32,
    pub color: Rgba<u8>,
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle { size: 14.0, color: Rgba([0, 0, 0, 255]) }
    }
}

impl TextStyle {
    /// Text of `size` pixels in black.
    pub fn sized(size: f32) -> TextStyle {
        TextStyle { size, ..TextStyle::default() }
    }
}

/// The width and height in pixels that `text` takes on one line at `size`.
pub fn measure(text: &str, size: f32) -> (u32, u32) {
    let scaled = font().as_scaled(PxScale::from(size));
    let mut width = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    (width.ceil() as u32, scaled.height().ceil() as u32)
}

/// `text` shortened with a trailing ellipsis so that it fits in `max_width` pixels at `size`;
/// the text itself when it fits, and an empty string when not even the ellipsis fits.
pub fn fit(text: &str, size: f32, max_width: u32) -> String {
    if measure(text, size).0 <= max_width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (0..chars.len()).rev() {
        let candidate: String = chars[..keep].iter().collect::<String>().trim_end().to_string() + "…";
        if measure(&candidate, size).0 <= max_width {
            return candidate;
        }
    }
    String::new()
}

/// Draws `text` on one line with its top-left corner at `(x, y)`, blending it over the picture.
/// Parts outside the picture are clipped.
pub fn draw(image: &mut RgbaImage, text: &str, (x, y): (i32, i32), style: &TextStyle) {
    let scaled = font().as_scaled(PxScale::from(style.size));
    let baseline = y as f32 + scaled.ascent();
    let mut caret = x as f32;
    let mut previous = None;
    let (w, h) = (image.width() as i64, image.height() as i64);
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scaled.scale(), point(caret, baseline));
        caret += scaled.h_advance(id);
        previous = Some(id);
        let Some(outline) = scaled.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let px = bounds.min.x as i64 + i64::from(gx);
            let py = bounds.min.y as i64 + i64::from(gy);
            if px < 0 || py < 0 || px >= w || py >= h {
                return;
            }
            let a = coverage.clamp(0.0, 1.0) * f32::from(style.color[3]) / 255.0;
            let dst = image.get_pixel_mut(px as u32, py as u32);
            blend(dst, style.color, a);
        });
    }
}

/// Draws `text` centred horizontally on `centre_x`, with its top at `y`.
pub fn draw_centered(image: &mut RgbaImage, text: &str, (centre_x, y): (i32, i32), style: &TextStyle) {
    let (width, _) = measure(text, style.size);
    draw(image, text, (centre_x - width as i32 / 2, y), style);
}

/// Source-over blending of `color` at opacity `a` onto `dst`.
pub(crate) fn blend(dst: &mut Rgba<u8>, color: Rgba<u8>, a: f32) {
    let da = f32::from(dst[3]) / 255.0;
    let out_a = a + da * (1.0 - a);
    if out_a <= 0.0 {
        *dst = Rgba([0, 0, 0, 0]);
        return;
    }
    for c in 0..3 {
        let v = (f32::from(color[c]) * a + f32::from(dst[c]) * da * (1.0 - a)) / out_a;
        dst[c] = v.round().clamp(0.0, 255.0) as u8;
    }
    dst[3] = (out_a * 255.0).round().clamp(0.0, 255.0) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_has_the_glyphs_labels_need() {
        let f = font();
        for c in "AZaz09.,−…×_-()%".chars() {
            assert_ne!(f.glyph_id(c).0, 0, "no glyph for {c:?}");
        }
    }

    #[test]
    fn measuring_grows_with_text_and_size() {
        let (w1, h1) = measure("cat", 12.0);
        let (w2, _) = measure("tabby cat", 12.0);
        let (w3, h3) = measure("cat", 24.0);
        assert!(w1 > 0 && w2 > w1 && w3 > w1 && h3 > h1, "{w1} {w2} {w3} {h1} {h3}");
        assert_eq!(measure("", 12.0).0, 0);
    }

    #[test]
    fn fitting_truncates_with_an_ellipsis() {
        let long = "a very long class name indeed";
        let short = fit(long, 12.0, 60);
        assert!(short.ends_with('…') && measure(&short, 12.0).0 <= 60, "{short}");
        assert_eq!(fit("ok", 12.0, 60), "ok");
        assert_eq!(fit(long, 12.0, 1), "");
    }

    #[test]
    fn drawing_marks_pixels_inside_the_text_box_only() {
        let mut img = RgbaImage::from_pixel(60, 20, Rgba([255, 255, 255, 255]));
        draw(&mut img, "Hi", (2, 2), &TextStyle::sized(14.0));
        let (w, h) = measure("Hi", 14.0);
        let dark: Vec<(u32, u32)> =
            img.enumerate_pixels().filter(|(_, _, p)| p[0] < 128).map(|(x, y, _)| (x, y)).collect();
        assert!(dark.len() > 10, "{}", dark.len());
        assert!(dark.iter().all(|&(x, y)| x >= 2 && x < 2 + w && y >= 2 && y < 2 + h));
        // Text running off the edge is clipped, not a panic.
        draw(&mut img, "clipped text", (50, 15), &TextStyle::sized(14.0));
        draw(&mut img, "clipped", (-30, -8), &TextStyle::sized(14.0));
    }
}
