//! How each family's maps are drawn.

use anyhow::Result;
use candle_core::{DType, Tensor};
use gaze_core::Attribution;
use gaze_models::Classifier;
use gaze_render::{
    colorize, overlay_map, Colormap, Map, Normalize, OverlayOptions, Reduction, RgbImage, RgbaImage, Sign,
};

use crate::input::Batch;

/// How a family's maps become pictures.
pub enum Picture {
    /// Maps `[N, T, H, W]` already at the input size and scaled for display (the CAMs'
    /// pytorch-grad-cam display step), drawn in jet over the image at half opacity.
    Overlay { maps: Tensor },
    /// Input-space maps `[N, T, C, H, W]`, drawn as a grayscale map of the largest absolute value
    /// over channels, clipped at the 99th percentile (the saliency map of Simonyan et al.).
    Saliency,
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
        let n = attribution.batch();
        let t = attribution.targets_per_image();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = Vec::with_capacity(t);
            for j in 0..t {
                let image = batch.images.get(i);
                let picture = match self {
                    Picture::Overlay { maps } => {
                        let map = Map::from_tensor(&maps.get(i)?.get(j)?.to_dtype(DType::F32)?)?;
                        draw_overlay(image, &map, (h, w))?
                    }
                    Picture::Saliency => {
                        let values = attribution.map(i, j)?.to_dtype(DType::F32)?;
                        let map = Map::from_channels_tensor(&values, Reduction::AbsMax)?.with_sign(Sign::Absolute);
                        colorize(&map, Colormap::Gray, &Normalize::Percentile { low: 0.0, high: 99.0 })?
                    }
                };
                row.push(picture);
            }
            out.push(row);
        }
        Ok(out)
    }
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
