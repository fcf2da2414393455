//! Colormaps: 256-entry lookup tables indexed the way matplotlib indexes them.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use gaze_core::{Error, Result};

#[rustfmt::skip]
mod tables;

/// The number of entries of every lookup table (matplotlib's default `N`).
pub const LUT_SIZE: usize = 256;

/// A colormap: a function from a position in `[0, 1]` to an RGBA colour.
///
/// Every colormap is a 256-entry lookup table, built and indexed exactly as matplotlib builds and
/// indexes its own, so a position gives the colour matplotlib gives to within rounding to bytes.
///
/// ```
/// use gaze_render::Colormap;
/// let cmap: Colormap = "viridis".parse().unwrap();
/// assert_eq!(cmap.rgba(0.0), [68, 1, 84, 255]);
/// assert!("virdis".parse::<Colormap>().unwrap_err().to_string().contains("viridis"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Colormap {
    /// matplotlib's perceptually uniform `viridis` (tf-explain's default through OpenCV, whose
    /// table is the same).
    Viridis,
    /// matplotlib's `jet`, from its segment anchors.
    Jet,
    /// OpenCV's `COLORMAP_JET` (pytorch-grad-cam's `show_cam_on_image`), in RGB order.
    /// It differs from matplotlib's `jet` by up to 34/255 per channel.
    JetOpencv,
    /// matplotlib's `inferno`.
    Inferno,
    /// matplotlib's `magma`.
    Magma,
    /// matplotlib's `gray`: black to white.
    Gray,
    /// matplotlib's `binary`: white to black.
    Binary,
    /// matplotlib's `bwr`: blue, white, red (zennit's default for signed relevance).
    Bwr,
    /// SHAP's `red_transparent_blue` (`shap.plots.colors.red_transparent_blue`): opaque blue
    /// `#1E88E5` fading to fully transparent at the centre, then to opaque red `#FF0D57`.
    RedTransparentBlue,
}

impl Colormap {
    /// Every colormap, in the order [`Colormap::name`] lists them in error messages.
    pub const ALL: [Colormap; 9] = [
        Colormap::Viridis,
        Colormap::Jet,
        Colormap::JetOpencv,
        Colormap::Inferno,
        Colormap::Magma,
        Colormap::Gray,
        Colormap::Binary,
        Colormap::Bwr,
        Colormap::RedTransparentBlue,
    ];

    /// The name [`Colormap::from_str`] accepts: matplotlib's name, `jet-opencv`, or
    /// `red-transparent-blue` (`red_transparent_blue` is accepted too).
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Jet => "jet",
            Colormap::JetOpencv => "jet-opencv",
            Colormap::Inferno => "inferno",
            Colormap::Magma => "magma",
            Colormap::Gray => "gray",
            Colormap::Binary => "binary",
            Colormap::Bwr => "bwr",
            Colormap::RedTransparentBlue => "red-transparent-blue",
        }
    }

    /// Whether the colormap is meant for signed values, with zero at its centre (`bwr`,
    /// `red-transparent-blue`).
    pub fn is_diverging(self) -> bool {
        matches!(self, Colormap::Bwr | Colormap::RedTransparentBlue)
    }

    /// The lookup table: 256 RGBA colours with channels in `[0, 1]`.
    pub fn table(self) -> &'static [[f32; 4]; LUT_SIZE] {
        static TABLES: OnceLock<Vec<[[f32; 4]; LUT_SIZE]>> = OnceLock::new();
        let tables = TABLES.get_or_init(|| Colormap::ALL.iter().map(|c| c.build()).collect());
        let index = Colormap::ALL.iter().position(|c| *c == self).unwrap_or_default();
        &tables[index]
    }

    /// The table index of position `x`, as matplotlib computes it: `floor(256·x)`, with 1.0 and
    /// anything above it going to the last entry and anything below 0 to the first.
    /// NaN has no index.
    pub fn index(x: f32) -> Option<usize> {
        if x.is_nan() {
            return None;
        }
        let i = (x * LUT_SIZE as f32).floor();
        Some(i.clamp(0.0, (LUT_SIZE - 1) as f32) as usize)
    }

    /// The colour at position `x` in `[0, 1]`, channels in `[0, 1]`.
    /// Positions outside `[0, 1]` take the end colours; NaN is fully transparent black, as
    /// matplotlib's default "bad" colour.
    pub fn rgba_f32(self, x: f32) -> [f32; 4] {
        match Colormap::index(x) {
            Some(i) => self.table()[i],
            None => [0.0; 4],
        }
    }

    /// The colour at position `x` in `[0, 1]` as bytes (each channel rounded to the nearest of
    /// 0..=255); see [`Colormap::rgba_f32`].
    pub fn rgba(self, x: f32) -> [u8; 4] {
        let c = self.rgba_f32(x);
        c.map(to_byte)
    }

    fn build(self) -> [[f32; 4]; LUT_SIZE] {
        match self {
            Colormap::Viridis => listed(&tables::VIRIDIS),
            Colormap::Inferno => listed(&tables::INFERNO),
            Colormap::Magma => listed(&tables::MAGMA),
            Colormap::JetOpencv => {
                let mut lut = [[0.0; 4]; LUT_SIZE];
                for (out, rgb) in lut.iter_mut().zip(tables::JET_OPENCV.iter()) {
                    *out = [f32::from(rgb[0]) / 255.0, f32::from(rgb[1]) / 255.0, f32::from(rgb[2]) / 255.0, 1.0];
                }
                lut
            }
            Colormap::Jet => segmented(tables::JET, None),
            Colormap::Gray => segmented(tables::GRAY, None),
            Colormap::Binary => segmented(tables::BINARY, None),
            Colormap::Bwr => segmented(tables::BWR, None),
            Colormap::RedTransparentBlue => red_transparent_blue(),
        }
    }
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Colormap {
    type Err = Error;

    /// Parses a colormap's name, ignoring case and treating `_` like `-`.
    fn from_str(text: &str) -> Result<Self> {
        let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
        let wanted = match wanted.as_str() {
            "grey" => "gray".to_string(),
            "opencv-jet" => "jet-opencv".to_string(),
            _ => wanted,
        };
        Colormap::ALL.into_iter().find(|c| c.name() == wanted).ok_or_else(|| Error::InvalidOption {
            option: "colormap".into(),
            value: text.into(),
            expected: format!("one of {}", Colormap::ALL.map(Colormap::name).join(", ")),
        })
    }
}

/// Converts a channel in `[0, 1]` to the nearest byte.
pub(crate) fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn listed(table: &[[f32; 3]; LUT_SIZE]) -> [[f32; 4]; LUT_SIZE] {
    let mut lut = [[0.0; 4]; LUT_SIZE];
    for (out, rgb) in lut.iter_mut().zip(table.iter()) {
        *out = [rgb[0], rgb[1], rgb[2], 1.0];
    }
    lut
}

/// Builds a lookup table from per-channel anchors as matplotlib's `_create_lookup_table` does:
/// entry `i` sits at `i/255`, and between two anchors the value moves linearly from the left
/// anchor's "above" value to the right anchor's "below" value.
fn segmented(rgb: &[&[(f64, f64, f64)]], alpha: Option<&[(f64, f64, f64)]>) -> [[f32; 4]; LUT_SIZE] {
    let mut lut = [[0.0, 0.0, 0.0, 1.0]; LUT_SIZE];
    let channels = rgb.iter().copied().chain(alpha).enumerate();
    for (c, anchors) in channels {
        for (i, entry) in lut.iter_mut().enumerate() {
            entry[c] = interpolate(anchors, i) as f32;
        }
    }
    lut
}

/// The value of entry `i` of a 256-entry table for one channel's anchors.
fn interpolate(anchors: &[(f64, f64, f64)], i: usize) -> f64 {
    let n1 = (LUT_SIZE - 1) as f64;
    let first = anchors[0];
    let last = anchors[anchors.len() - 1];
    if i == 0 {
        return first.2.clamp(0.0, 1.0);
    }
    if i == LUT_SIZE - 1 {
        return last.1.clamp(0.0, 1.0);
    }
    let xi = i as f64;
    // matplotlib's `searchsorted(x, xi)`: the first anchor at or beyond `xi`.
    let k = anchors.iter().position(|a| a.0 * n1 >= xi).unwrap_or(anchors.len() - 1).max(1);
    let (x0, _, y1_left) = anchors[k - 1];
    let (x1, y0_right, _) = anchors[k];
    let (x0, x1) = (x0 * n1, x1 * n1);
    let t = (xi - x0) / (x1 - x0);
    (t * (y0_right - y1_left) + y1_left).clamp(0.0, 1.0)
}

/// SHAP's `red_transparent_blue`: `LinearSegmentedColormap.from_list` over 200 colours spread evenly
/// on `[0, 1]`, the first 100 blue `(30, 136, 229)` with alpha falling linearly from 1 to 0, the last
/// 100 red `(255, 13, 87)` with alpha rising linearly from 0 to 1.
fn red_transparent_blue() -> [[f32; 4]; LUT_SIZE] {
    const STEPS: usize = 100;
    const BLUE: [f64; 3] = [30.0 / 255.0, 136.0 / 255.0, 229.0 / 255.0];
    const RED: [f64; 3] = [1.0, 13.0 / 255.0, 87.0 / 255.0];
    let count = 2 * STEPS;
    let stops: Vec<[f64; 4]> = (0..count)
        .map(|k| {
            let (rgb, alpha) = if k < STEPS {
                (BLUE, 1.0 - k as f64 / (STEPS - 1) as f64)
            } else {
                (RED, (k - STEPS) as f64 / (STEPS - 1) as f64)
            };
            [rgb[0], rgb[1], rgb[2], alpha]
        })
        .collect();
    let channels: Vec<Vec<(f64, f64, f64)>> = (0..4)
        .map(|c| stops.iter().enumerate().map(|(k, s)| (k as f64 / (count - 1) as f64, s[c], s[c])).collect())
        .collect();
    let rgb: Vec<&[(f64, f64, f64)]> = channels[..3].iter().map(Vec::as_slice).collect();
    segmented(&rgb, Some(&channels[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for c in Colormap::ALL {
            assert_eq!(c.name().parse::<Colormap>().unwrap(), c);
        }
        assert_eq!("red_transparent_blue".parse::<Colormap>().unwrap(), Colormap::RedTransparentBlue);
        assert_eq!("Grey".parse::<Colormap>().unwrap(), Colormap::Gray);
    }

    #[test]
    fn an_unknown_name_lists_the_valid_ones() {
        let err = "hot".parse::<Colormap>().unwrap_err().to_string();
        assert!(err.contains("`hot`"), "{err}");
        for c in Colormap::ALL {
            assert!(err.contains(c.name()), "{err}");
        }
    }

    #[test]
    fn matplotlib_indexing_rounds_down_and_clamps() {
        assert_eq!(Colormap::index(0.0), Some(0));
        assert_eq!(Colormap::index(0.5), Some(128));
        assert_eq!(Colormap::index(255.5 / 256.0), Some(255));
        assert_eq!(Colormap::index(1.0), Some(255));
        assert_eq!(Colormap::index(7.0), Some(255));
        assert_eq!(Colormap::index(-0.1), Some(0));
        assert_eq!(Colormap::index(f32::NAN), None);
        assert_eq!(Colormap::Jet.rgba(f32::NAN), [0, 0, 0, 0]);
    }

    #[test]
    fn segment_ends_take_the_outer_anchor_values() {
        // Jet starts at dark blue (0, 0, 0.5) and ends at dark red (0.5, 0, 0).
        assert_eq!(Colormap::Jet.table()[0], [0.0, 0.0, 0.5, 1.0]);
        assert_eq!(Colormap::Jet.table()[255], [0.5, 0.0, 0.0, 1.0]);
        assert_eq!(Colormap::Gray.rgba(1.0), [255, 255, 255, 255]);
        assert_eq!(Colormap::Binary.rgba(0.0), [255, 255, 255, 255]);
    }
}
