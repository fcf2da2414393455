//! pytorch-grad-cam's display steps: per-map min-max scaling, bilinear resizing and the averaging
//! of several layers.

use candle_core::Tensor;
use gaze_engine::ops::upsample_bilinear2d;

use crate::{Error, Result};

/// pytorch-grad-cam's `scale_cam_image` on maps `[..., h, w]`: each map becomes
/// `(m − min) / (1e-7 + max(m − min))`, then, when `size` is given, is resized to `size = (H, W)`
/// bilinearly with half-pixel centres (OpenCV's `INTER_LINEAR`, PyTorch's
/// `align_corners=False`).
pub fn scale_cam(maps: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
    let dims = maps.dims().to_vec();
    if dims.len() < 2 {
        return Err(Error::Shape { what: "maps to scale".into(), expected: "[..., h, w]".into(), got: dims });
    }
    let (lead, hw) = dims.split_at(dims.len() - 2);
    let (h, w) = (hw[0], hw[1]);
    let count: usize = lead.iter().product();
    let rows = maps.reshape((count, h * w))?;
    let shifted = rows.broadcast_sub(&rows.min_keepdim(1)?)?;
    let scaled = shifted.broadcast_div(&shifted.max_keepdim(1)?.affine(1.0, 1e-7)?)?;
    let (oh, ow) = size.unwrap_or((h, w));
    let out = match size {
        Some(size) if size != (h, w) => upsample_bilinear2d(&scaled.reshape((count, 1, h, w))?, size, false)?,
        _ => scaled,
    };
    let mut shape = lead.to_vec();
    shape.extend([oh, ow]);
    Ok(out.reshape(shape)?)
}

/// pytorch-grad-cam's display of maps from one or more layers, each `[N, T, h_l, w_l]`: each layer's
/// maps are scaled and resized to `size` ([`scale_cam`]); then, as its `aggregate_multi_layers`
/// does even for a single layer, the maps are clamped at 0, averaged over the layers and scaled
/// again. The result `[N, T, H, W]` is in [0, 1].
pub fn display_maps(layer_maps: &[Tensor], size: (usize, usize)) -> Result<Tensor> {
    if layer_maps.is_empty() {
        return Err(Error::InvalidOption {
            option: "maps to display".into(),
            value: "(none)".into(),
            expected: "the maps of at least one layer".into(),
        });
    }
    let scaled = layer_maps.iter().map(|m| scale_cam(m, Some(size))).collect::<Result<Vec<_>>>()?;
    let mean = Tensor::stack(&scaled, 0)?.relu()?.mean(0)?;
    scale_cam(&mean, None)
}
