//! Score-CAM's channel weights.

use candle_core::{DType, Tensor};
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
///
/// A channel that is zero everywhere (common after a ReLU: a trained network's deep channels are
/// sparse) upsamples to zeros, normalises to the zero mask and masks every image to the zero
/// image, whose scores do not depend on the image: one forward pass of the zero image serves all
/// such channels of all images, where the peer runs one per channel. The scores are the same up
/// to float rounding (the zero image's scores computed in another batch).
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
    // Which channels of which images are zero everywhere.
    let peaks = flat.abs()?.flatten_from(1)?.max_keepdim(1)?.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let live: Vec<u32> = (0..n * c).filter(|&i| peaks[i] != 0.0).map(|i| i as u32).collect();
    // The target scores of every (image, channel) in order, [N·C × T].
    let mut scores = vec![0f64; n * c * t];
    if live.len() < n * c {
        let zero = input.narrow(0, 0, 1)?.zeros_like()?;
        let outputs = scored_outputs(&model.forward(&zero)?, score)?.flatten_all()?;
        let outputs = outputs.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        for i in (0..n * c).filter(|&i| peaks[i] == 0.0) {
            for (j, &k) in targets[i / c].iter().enumerate() {
                scores[i * t + j] = outputs[k];
            }
        }
    }
    let live_index = Tensor::from_vec(live.clone(), live.len(), device)?;
    for chunk in chunks(live.len(), batch)? {
        let channels = &live[chunk.start..chunk.start + chunk.len];
        let maps = flat.index_select(&chunk.of(&live_index)?, 0)?;
        let up = upsample_bilinear2d(&maps, (ih, iw), true)?;
        let rows = up.reshape((chunk.len, ih * iw))?;
        let min = rows.min_keepdim(1)?;
        let max = rows.max_keepdim(1)?;
        let masks = rows
            .broadcast_sub(&min)?
            .broadcast_div(&(max - &min)?.affine(1.0, 1e-8)?)?
            .reshape((chunk.len, 1, ih, iw))?;
        let images: Vec<u32> = channels.iter().map(|&i| i / c as u32).collect();
        let index = Tensor::from_vec(images.clone(), chunk.len, device)?;
        let masked = input.index_select(&index, 0)?.broadcast_mul(&masks)?;
        let outputs = scored_outputs(&model.forward(&masked)?, score)?;
        let classes: Vec<u32> =
            images.iter().flat_map(|&img| targets[img as usize].iter().map(|&k| k as u32)).collect();
        let class_index = Tensor::from_vec(classes, (chunk.len, t), device)?;
        let got = outputs.gather(&class_index, 1)?.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        for (row, &i) in channels.iter().enumerate() {
            let i = i as usize;
            scores[i * t..(i + 1) * t].copy_from_slice(&got[row * t..(row + 1) * t]);
        }
    }
    // [N·C, T] → [N, T, C], then the softmax over channels.
    let scores = Tensor::from_vec(scores, (n, c, t), device)?.to_dtype(input.dtype())?;
    softmax_last_dim(&scores.transpose(1, 2)?.contiguous()?)
}
