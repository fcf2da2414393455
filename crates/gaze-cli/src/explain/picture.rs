//! How each family's maps are drawn.

use anyhow::Result;
use candle_core::{DType, Tensor};
use gaze_core::Attribution;
use gaze_models::Classifier;
use gaze_render::{
    colorize, overlay_map, shap_plot, Colorbar, Colormap, Limits, Map, Normalize, OverlayOptions, Reduction, RgbImage,
    RgbaImage, ShapPlotOptions, Sign,
};

use crate::input::Batch;

/// The shorter side, in pixels, that pictures of small inputs are enlarged to (at least).
pub const MIN_DISPLAY_SIDE: usize = 224;

/// The size a picture of an `(h, w)` image is drawn at: the image enlarged by the smallest whole
/// factor that makes its shorter side at least [`MIN_DISPLAY_SIDE`] pixels (the demo model's 64×64
/// input is drawn at 256×256; a 224×224 input stays as it is).
pub fn display_size((h, w): (usize, usize)) -> (usize, usize) {
    let k = MIN_DISPLAY_SIDE.div_ceil(h.min(w).max(1));
    (h * k, w * k)
}

/// `image` enlarged to its [`display_size`] with Pillow's bilinear filter (unchanged when it is
/// already large enough).
pub fn display_image(image: &RgbImage) -> RgbImage {
    let (h, w) = display_size((image.height() as usize, image.width() as usize));
    if (h, w) == (image.height() as usize, image.width() as usize) {
        return image.clone();
    }
    gaze_models::resize_pil(image, w as u32, h as u32, gaze_models::Filter::Bilinear)
}

/// How a family's maps become pictures.
///
/// Every picture is drawn at the [`display_size`] of the images it goes over: the image is enlarged
/// bilinearly ([`display_image`]), an overlay's map is resized bilinearly to it (as the CAM display
/// step already resizes), and an input-space map is enlarged by nearest neighbour after colouring,
/// so each input pixel shows as a block of one colour.
/// Images already at their display size (the report passes sharper ones, resized from the original
/// files) are drawn over as they are.
pub enum Picture {
    /// Maps `[N, T, H, W]` already at the input size and scaled for display (the CAMs'
    /// pytorch-grad-cam display step), drawn in jet over the image at half opacity.
    Overlay { maps: Tensor },
    /// Input-space maps `[N, T, C, H, W]`, drawn as a grayscale map of the largest absolute value
    /// over channels, clipped at the 99th percentile (the saliency map of Simonyan et al.).
    Saliency,
    /// Input-space maps `[N, T, C, H, W]` (or `[N, T, H, W]`) of a perturbation method, summed over
    /// channels, scaled from their lowest to their highest value and drawn in jet over the image.
    Heat,
    /// Expected-gradients maps `[N, T, C, h, w]` summed over channels, in SHAP's red-transparent-blue
    /// over the grayscale image, symmetric limits at the 99.9th percentile of |values|.
    Shap,
    /// A layer's feature maps `[N, 1, C, h, w]` as tf-explain's grid, one global min-max.
    Grid,
}

impl Picture {
    /// One picture per image and target.
    pub fn render(
        &self,
        attribution: &Attribution,
        batch: &Batch,
        model: &dyn Classifier,
    ) -> Result<Vec<Vec<RgbaImage>>> {
        let [_, h, w] = model.input_shape();
        let (h, w) = batch.images.first().map(|i| (i.height() as usize, i.width() as usize)).unwrap_or((h, w));
        let display = display_size((h, w));
        let n = attribution.batch();
        let t = attribution.targets_per_image();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = Vec::with_capacity(t);
            for j in 0..t {
                let image = batch.images.get(i).map(display_image);
                let picture = match self {
                    Picture::Overlay { maps } => {
                        let map = Map::from_tensor(&maps.get(i)?.get(j)?.to_dtype(DType::F32)?)?;
                        draw_overlay(image.as_ref(), &map, display)?
                    }
                    Picture::Saliency => {
                        let values = attribution.map(i, j)?.to_dtype(DType::F32)?;
                        let map = Map::from_channels_tensor(&values, Reduction::AbsMax)?.with_sign(Sign::Absolute);
                        let picture = colorize(&map, Colormap::Gray, &Normalize::Percentile { low: 0.0, high: 99.0 })?;
                        enlarge_nearest(&picture, display)
                    }
                    Picture::Heat => {
                        let map = channel_sum(&attribution.map(i, j)?)?;
                        let opts = OverlayOptions { normalize: Normalize::MinMax, ..OverlayOptions::default() };
                        match image.as_ref() {
                            Some(image) => image::DynamicImage::ImageRgb8(overlay_map(image, &map, &opts)?).to_rgba8(),
                            None => colorize(&map.resize_bilinear(display)?, opts.cmap, &opts.normalize)?,
                        }
                    }
                    Picture::Shap => {
                        let map = channel_sum(&attribution.map(i, j)?)?;
                        let base = match image.as_ref() {
                            Some(image) => image.clone(),
                            None => {
                                RgbImage::from_pixel(display.1 as u32, display.0 as u32, image::Rgb([128, 128, 128]))
                            }
                        };
                        let map = map.resize_nearest((base.height() as usize, base.width() as usize))?;
                        let class = attribution.targets[i][j];
                        let label = model.label(class).unwrap_or_else(|| format!("class {class}"));
                        shap_plot(&[base], &[vec![map]], &[vec![label]], &ShapPlotOptions::default())?
                    }
                    Picture::Grid => {
                        let maps = attribution.map(i, j)?.unsqueeze(0)?;
                        let grid = gaze_activations::activation_grid(&maps)?;
                        let map = grid.to_map()?;
                        let picture = colorize(&map, Colormap::Viridis, &Normalize::Fixed { vmin: 0.0, vmax: 1.0 })?;
                        let side = 512usize.div_ceil(grid.height().max(grid.width()).max(1)).max(1);
                        enlarge_nearest(&picture, (grid.height() * side, grid.width() * side))
                    }
                };
                row.push(picture);
            }
            out.push(row);
        }
        Ok(out)
    }
}

impl Picture {
    /// The colour scale of the pictures for a legend, with a name that pictures drawn on the same
    /// scale share.
    pub fn scale(&self) -> Option<(String, Colorbar)> {
        match self {
            Picture::Overlay { .. } => Some((
                "overlay".into(),
                Colorbar::new(Colormap::JetOpencv, Limits::new(0.0, 1.0))
                    .with_label("each map from its lowest (0) to its highest value (1)"),
            )),
            Picture::Heat => Some((
                "heat".into(),
                Colorbar::new(Colormap::JetOpencv, Limits::new(0.0, 1.0))
                    .with_label("each map from its lowest (0) to its highest value (1)"),
            )),
            Picture::Shap => Some((
                "shap".into(),
                Colorbar::new(Colormap::RedTransparentBlue, Limits::new(-1.0, 1.0))
                    .with_label("SHAP value, from -q to q (q: 99.9th percentile of |values| in each map)"),
            )),
            Picture::Grid => Some((
                "grid".into(),
                Colorbar::new(Colormap::Viridis, Limits::new(0.0, 1.0))
                    .with_label("activation from the layer's lowest (0) to its highest value (1)"),
            )),
            Picture::Saliency => Some((
                "saliency".into(),
                Colorbar::new(Colormap::Gray, Limits::new(0.0, 1.0))
                    .with_label("|attribution| from 0 to its 99th percentile (1) in each map"),
            )),
        }
    }
}

/// A map `[C, H, W]` summed over channels, or `[H, W]` as it is.
fn channel_sum(values: &Tensor) -> Result<Map> {
    let values = values.to_dtype(DType::F32)?;
    Ok(match values.rank() {
        2 => Map::from_tensor(&values)?,
        _ => Map::from_channels_tensor(&values, Reduction::Sum)?,
    })
}

/// `picture` enlarged to `(h, w)` by nearest neighbour (unchanged at that size already).
pub fn enlarge_nearest(picture: &RgbaImage, (h, w): (usize, usize)) -> RgbaImage {
    if picture.dimensions() == (w as u32, h as u32) {
        return picture.clone();
    }
    image::imageops::resize(picture, w as u32, h as u32, image::imageops::FilterType::Nearest)
}

fn draw_overlay(image: Option<&RgbImage>, map: &Map, size: (usize, usize)) -> Result<RgbaImage> {
    let opts = OverlayOptions {
        cmap: Colormap::JetOpencv,
        normalize: Normalize::Fixed { vmin: 0.0, vmax: 1.0 },
        heat_weight: 0.5,
    };
    match image {
        Some(image) => Ok(image::DynamicImage::ImageRgb8(overlay_map(image, map, &opts)?).to_rgba8()),
        None => Ok(colorize(&map.resize_bilinear(size)?, opts.cmap, &opts.normalize)?),
    }
}
