//! pytorch-grad-cam's display steps: per-map min-max scaling, bilinear resizing and the averaging
//! of several layers.

use candle_core::Tensor;
use gaze_engine::ops::upsample_bilinear2d;

use crate::{Error, Result};

/// pytorch-grad-cam's `scale_cam_image` on maps `[..., h, w]`: each map becomes
/// `(m − min) / (1e-7 + max(m − min))`, then, when `size` is given, is resized to `size = (H, W)`
/// bilinearly with half-pixel centres (OpenCV's `INTER_LINEAR`, PyTorch's
/// `align_corners=False`).
///
/// The maps must have a floating-point dtype and no empty dimension.
pub fn scale_cam(maps: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
    let dims = maps.dims().to_vec();
    if dims.len() < 2 || dims.contains(&0) {
        return Err(Error::Shape {
            what: "maps to scale".into(),
            expected: "[..., h, w] with no empty dimension".into(),
            got: dims,
        });
    }
    if !maps.dtype().is_float() {
        return Err(Error::InvalidOption {
            option: "maps to scale dtype".into(),
            value: format!("{:?}", maps.dtype()),
            expected: "a floating-point dtype (F32, F64, F16 or BF16)".into(),
        });
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
///
/// Maps of another rank than 4 are refused, since the mean over the layers needs them to agree
/// on `N` and `T`.
pub fn display_maps(layer_maps: &[Tensor], size: (usize, usize)) -> Result<Tensor> {
    if layer_maps.is_empty() {
        return Err(Error::InvalidOption {
            option: "maps to display".into(),
            value: "(none)".into(),
            expected: "the maps of at least one layer".into(),
        });
    }
    if let Some((i, m)) = layer_maps.iter().enumerate().find(|(_, m)| m.rank() != 4) {
        return Err(Error::Shape {
            what: format!("maps to display (layer {i})"),
            expected: "[N, T, h, w]".into(),
            got: m.dims().to_vec(),
        });
    }
    let scaled = layer_maps.iter().map(|m| scale_cam(m, Some(size))).collect::<Result<Vec<_>>>()?;
    let mean = Tensor::stack(&scaled, 0)?.relu()?.mean(0)?;
    scale_cam(&mean, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn integer_or_empty_maps_are_refused() {
        let dev = Device::Cpu;
        let ints = Tensor::ones((1, 4, 4), DType::I64, &dev).unwrap();
        let err = scale_cam(&ints, Some((8, 8))).unwrap_err().to_string();
        assert!(err.contains("`I64` for maps to scale dtype") && err.contains("floating-point"), "{err}");
        for dims in [vec![0, 4, 4], vec![1, 0, 4], vec![2, 3, 0]] {
            let empty = Tensor::zeros(dims.as_slice(), DType::F32, &dev).unwrap();
            let err = scale_cam(&empty, Some((8, 8))).unwrap_err().to_string();
            assert!(err.contains("no empty dimension"), "{dims:?}: {err}");
        }
        let ok = Tensor::arange(0f32, 16.0, &dev).unwrap().reshape((1, 4, 4)).unwrap();
        assert_eq!(scale_cam(&ok, Some((8, 8))).unwrap().dims(), &[1, 8, 8]);
    }

    #[test]
    fn display_maps_takes_only_rank_4_maps() {
        let dev = Device::Cpu;
        let flat = Tensor::ones((4, 4), DType::F32, &dev).unwrap();
        let err = display_maps(&[flat], (8, 8)).unwrap_err().to_string();
        assert!(err.contains("maps to display (layer 0)") && err.contains("[N, T, h, w]"), "{err}");
        let ok = Tensor::ones((2, 1, 4, 4), DType::F32, &dev).unwrap();
        let three = Tensor::ones((2, 4, 4), DType::F32, &dev).unwrap();
        let err = display_maps(&[ok.clone(), three], (8, 8)).unwrap_err().to_string();
        assert!(err.contains("layer 1") && err.contains("[2, 4, 4]"), "{err}");
        assert_eq!(display_maps(&[ok], (8, 8)).unwrap().dims(), &[2, 1, 8, 8]);
    }
}
