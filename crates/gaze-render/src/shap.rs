//! SHAP's image plot (`shap.image_plot`, `shap/plots/_image.py`), drawn without matplotlib.

use gaze_core::{Error, Result};
use image::{RgbImage, RgbaImage};

use crate::draw::{colorize_with_limits, grayscale_underlay, overlay};
use crate::figure::{Colorbar, Figure, FigureStyle, Panel};
use crate::normalize::percentile;
use crate::{Colormap, Limits, Map};

/// Options of [`shap_plot`]; the defaults are SHAP's.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapPlotOptions {
    /// The percentile of the absolute values that sets the symmetric colour limits (99.9).
    pub percentile: f32,
    /// Fixed limits `−vmax..vmax` instead of the percentile (SHAP's `vmax`).
    pub vmax: Option<f32>,
    /// The opacity of the grayscale image under each map (0.15).
    pub underlay_opacity: f32,
    /// SHAP's `red_transparent_blue`.
    pub cmap: Colormap,
    /// Each image pixel becomes `zoom × zoom` picture pixels (nearest neighbour).
    pub zoom: u32,
    /// The label under the colour bar ("SHAP value").
    pub colorbar_label: String,
    /// Titles over the images of the first column, one per row (SHAP's `true_labels`); empty for
    /// none.
    pub image_titles: Vec<String>,
    pub style: FigureStyle,
}

impl Default for ShapPlotOptions {
    fn default() -> Self {
        ShapPlotOptions {
            percentile: 99.9,
            vmax: None,
            underlay_opacity: 0.15,
            cmap: Colormap::RedTransparentBlue,
            zoom: 1,
            colorbar_label: "SHAP value".into(),
            image_titles: Vec::new(),
            style: FigureStyle::default(),
        }
    }
}

/// SHAP's image plot as a [`Figure`], for callers that want to add a title or restyle it before
/// drawing; see [`shap_plot`].
pub fn shap_figure(
    images: &[RgbImage],
    values: &[Vec<Map>],
    labels: &[Vec<String>],
    opts: &ShapPlotOptions,
) -> Result<Figure> {
    let outputs = check_inputs(images, values, labels, opts)?;
    let limits = shap_limits(values, opts)?;
    let z = opts.zoom;
    let mut figure = Figure {
        style: opts.style,
        colorbar: Some(Colorbar::new(opts.cmap, limits).with_label(opts.colorbar_label.clone())),
        ..Figure::default()
    };
    for (row, (image, maps)) in images.iter().zip(values).enumerate() {
        crate::figure::picture_size(
            u64::from(image.width()) * u64::from(z),
            u64::from(image.height()) * u64::from(z),
            "a zoomed SHAP panel",
        )?;
        let shown = zoom(image, z);
        let mut first = Panel::new(shown.clone());
        if let Some(title) = opts.image_titles.get(row) {
            first = first.with_title(title.clone());
        }
        let mut panels = vec![first];
        let under = grayscale_underlay(&shown, opts.underlay_opacity)?;
        let size = (shown.height() as usize, shown.width() as usize);
        let row_labels = match labels.len() {
            0 => None,
            1 => (row == 0).then(|| &labels[0]),
            _ => Some(&labels[row]),
        };
        for (i, map) in maps.iter().enumerate().take(outputs) {
            let heat = colorize_with_limits(&map.resize_nearest(size)?, opts.cmap, &limits);
            let panel = Panel::new(overlay(&under, &heat, 1.0)?);
            panels.push(match row_labels {
                Some(l) => panel.with_title(l[i].clone()),
                None => panel,
            });
        }
        figure.rows.push(panels);
    }
    Ok(figure)
}

/// Draws SHAP's image plot: one row per image, the image first, then one panel per explained
/// output (`values[n][t]`, already reduced to one channel, for example with
/// [`Map::batch_from_tensor`] and [`crate::Reduction::Sum`]).
///
/// Each output panel shows the image's luminance at `underlay_opacity` over white, under the map
/// in `red_transparent_blue`; the colour limits are `±q` with `q` the 99.9th percentile of the
/// absolute values of every map in the plot (SHAP computes it over all rows at once), and one
/// horizontal colour bar labelled "SHAP value" runs along the bottom.
/// Maps smaller than their image are enlarged by nearest neighbour, pixels showing as blocks as
/// matplotlib shows them.
///
/// `labels` holds the outputs' names: one list per image, or a single list that titles only the
/// first row (as SHAP does), or nothing.
/// A plot whose maps are all zero draws every map transparent, as matplotlib draws SHAP's.
pub fn shap_plot(
    images: &[RgbImage],
    values: &[Vec<Map>],
    labels: &[Vec<String>],
    opts: &ShapPlotOptions,
) -> Result<RgbaImage> {
    shap_figure(images, values, labels, opts)?.render()
}

/// The symmetric colour limits of a SHAP plot.
pub fn shap_limits(values: &[Vec<Map>], opts: &ShapPlotOptions) -> Result<Limits> {
    if let Some(vmax) = opts.vmax {
        if !vmax.is_finite() || vmax < 0.0 {
            return Err(Error::InvalidOption {
                option: "vmax".into(),
                value: vmax.to_string(),
                expected: "a finite limit of at least 0".into(),
            });
        }
        return Ok(Limits::symmetric(vmax));
    }
    let abs: Vec<f32> = values.iter().flatten().flat_map(|m| m.values().iter().map(|v| v.abs())).collect();
    Ok(Limits::symmetric(percentile(&abs, opts.percentile)?))
}

/// Checks the shapes of the inputs and returns the number of outputs per image.
fn check_inputs(
    images: &[RgbImage],
    values: &[Vec<Map>],
    labels: &[Vec<String>],
    opts: &ShapPlotOptions,
) -> Result<usize> {
    if images.is_empty() || images.len() != values.len() {
        return Err(Error::Shape {
            what: "SHAP plot maps".into(),
            expected: format!("one list of maps per image ({}), at least one image", images.len()),
            got: vec![values.len()],
        });
    }
    let outputs = values[0].len();
    if outputs == 0 || values.iter().any(|v| v.len() != outputs) {
        return Err(Error::Shape {
            what: "SHAP plot maps per image".into(),
            expected: "the same number of maps, at least one, for every image".into(),
            got: values.iter().map(Vec::len).collect(),
        });
    }
    if !(labels.is_empty() || labels.len() == 1 || labels.len() == images.len())
        || labels.iter().any(|l| l.len() != outputs)
    {
        return Err(Error::Shape {
            what: "SHAP plot labels".into(),
            expected: format!(
                "no labels, one list, or one list per image ({}), each with one label per output ({outputs})",
                images.len()
            ),
            got: labels.iter().map(Vec::len).collect(),
        });
    }
    if !opts.image_titles.is_empty() && opts.image_titles.len() != images.len() {
        return Err(Error::Shape {
            what: "SHAP plot image titles".into(),
            expected: format!("none or one per image ({})", images.len()),
            got: vec![opts.image_titles.len()],
        });
    }
    if opts.zoom == 0 {
        return Err(Error::InvalidOption {
            option: "zoom".into(),
            value: "0".into(),
            expected: "a zoom of at least 1".into(),
        });
    }
    crate::figure::at_most("zoom", opts.zoom, crate::figure::MAX_SPACING)?;
    Ok(outputs)
}

/// `image` with each pixel repeated `z × z` times.
fn zoom(image: &RgbImage, z: u32) -> RgbImage {
    if z == 1 {
        return image.clone();
    }
    RgbImage::from_fn(image.width() * z, image.height() * z, |x, y| *image.get_pixel(x / z, y / z))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn maps(values: &[f32]) -> Vec<Vec<Map>> {
        vec![vec![Map::new(values.to_vec(), (1, values.len())).unwrap()]]
    }

    #[test]
    fn limits_are_the_percentile_of_absolute_values() {
        let v = maps(&[-4.0, 1.0, 2.0, 3.0]);
        let opts = ShapPlotOptions { percentile: 100.0, ..ShapPlotOptions::default() };
        assert_eq!(shap_limits(&v, &opts).unwrap(), Limits::symmetric(4.0));
        let opts = ShapPlotOptions { vmax: Some(2.0), ..ShapPlotOptions::default() };
        assert_eq!(shap_limits(&v, &opts).unwrap(), Limits::symmetric(2.0));
    }

    #[test]
    fn an_all_zero_plot_is_transparent_over_the_underlay() {
        let image = RgbImage::from_pixel(3, 1, Rgb([50, 60, 70]));
        let fig =
            shap_figure(std::slice::from_ref(&image), &maps(&[0.0; 3]), &[], &ShapPlotOptions::default()).unwrap();
        let panel = &fig.rows[0][1].image;
        let under = grayscale_underlay(&image, 0.15).unwrap();
        for (p, u) in panel.pixels().zip(under.pixels()) {
            assert_eq!([p[0], p[1], p[2]], u.0);
        }
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let image = RgbImage::new(2, 1);
        let v = maps(&[1.0, -1.0]);
        let opts = ShapPlotOptions::default();
        assert!(shap_plot(&[], &[], &[], &opts).is_err());
        assert!(shap_plot(&[image.clone(), image.clone()], &v, &[], &opts).is_err());
        let two_labels = vec![vec!["a".to_string(), "b".to_string()]];
        let err = shap_plot(std::slice::from_ref(&image), &v, &two_labels, &opts).unwrap_err().to_string();
        assert!(err.contains("one label per output (1)"), "{err}");
        let bad = ShapPlotOptions { vmax: Some(f32::NAN), ..ShapPlotOptions::default() };
        assert!(shap_plot(&[image], &v, &[], &bad).is_err());
    }
}
