//! Score-CAM's channel weights.

use candle_core::Tensor;
use gaze_core::Score;
use gaze_engine::ops::{softmax_last_dim, upsample_bilinear2d};
use gaze_engine::{chunks, scored_outputs, TapModel};

use crate::Result;

/// Score-CAM's weights `[N, T, C]`, as pytorch-grad-cam's `ScoreCAM` defines them:
///
/// 1. each channel of `a` `[N, C, h, w]` is upsampled to the input size, bilinearly with aligned
///    corners (`torch.nn.UpsamplingBilinear2d`);
/// 2. each upsampled channel is min-max normalised, `(m − min) / (max − min + 1e-8)`;
/// 3. the model runs on the input multiplied by each mask, `batch` masked inputs at a time;
/// 4. the weights are the softmax over channels of the target scores of the masked inputs.
///
/// The masked inputs are built chunk by chunk, so memory holds `batch` of them, not `N·C`; one
/// forward pass serves every target of an image.
pub(crate) fn weights<M: TapModel + ?Sized>(
    model: &M,
    input: &Tensor,
    a: &Tensor,
    targets: &[Vec<usize>],
    score: &Score,
    batch: usize,
) -> Result<Tensor> {
    let (n, c, h, w) = a.dims4()?;
    let (_, _, ih, iw) = input.dims4()?;
    let t = targets.first().map(Vec::len).unwrap_or(0);
    let device = input.device();
    let flat = a.reshape((n * c, 1, h, w))?;
    let mut parts = Vec::new();
    for chunk in chunks(n * c, batch)? {
        let up = upsample_bilinear2d(&chunk.of(&flat)?, (ih, iw), true)?;
        let rows = up.reshape((chunk.len, ih * iw))?;
        let min = rows.min_keepdim(1)?;
        let max = rows.max_keepdim(1)?;
        let masks = rows
            .broadcast_sub(&min)?
            .broadcast_div(&(max - &min)?.affine(1.0, 1e-8)?)?
            .reshape((chunk.len, 1, ih, iw))?;
        let images: Vec<u32> = (chunk.start..chunk.start + chunk.len).map(|i| (i / c) as u32).collect();
        let index = Tensor::from_vec(images.clone(), chunk.len, device)?;
        let masked = input.index_select(&index, 0)?.broadcast_mul(&masks)?;
        let outputs = scored_outputs(&model.forward(&masked)?, score)?;
        let classes: Vec<u32> =
            images.iter().flat_map(|&img| targets[img as usize].iter().map(|&k| k as u32)).collect();
        let class_index = Tensor::from_vec(classes, (chunk.len, t), device)?;
        parts.push(outputs.gather(&class_index, 1)?);
    }
    // [N·C, T] → [N, T, C], then the softmax over channels.
    let scores = Tensor::cat(&parts, 0)?.reshape((n, c, t))?.transpose(1, 2)?.contiguous()?;
    softmax_last_dim(&scores)
}
