//! Ablation-CAM's channel weights.

use candle_core::{DType, Tensor};
use gaze_core::Score;
use gaze_engine::{chunks, scored_outputs, TapModel, Taps};

use crate::eigen::project_one;
use crate::{AblationPath, Error, Result};

/// What [`weights`] needs besides the model and the activations.
pub(crate) struct AblationRun<'a> {
    /// The input batch `[N, C, H, W]` (used by the substitution path).
    pub input: &'a Tensor,
    /// The layer's tap name, already resolved.
    pub layer: &'a str,
    pub targets: &'a [Vec<usize>],
    pub score: &'a Score,
    /// The target scores of the unablated images `[N, T]`.
    pub original: &'a Tensor,
    pub batch: usize,
    pub ratio: f64,
    pub path: AblationPath,
}

/// Ablation-CAM's weights `[N, T, C]`, with pytorch-grad-cam's `AblationCAM` semantics:
/// `w_k = (s − s_k) / s`, where `s` is the target score and `s_k` the score with channel `k` of the
/// layer ablated.
///
/// A channel is ablated by setting it to 0 when the image's activations at the layer have 0 as
/// their minimum (the usual case after a ReLU), and to that minimum minus 1e7 otherwise.
/// The tail of the network runs on `batch` ablated copies at a time, mixed across images; channels
/// not selected by `ratio` keep the original score (weight 0).
pub(crate) fn weights<M: TapModel + ?Sized>(model: &M, a: &Tensor, run: &AblationRun<'_>) -> Result<Tensor> {
    let (n, c, h, w) = a.dims4()?;
    let t = run.targets.first().map(Vec::len).unwrap_or(0);
    let device = a.device();
    let forward_from = match run.path {
        AblationPath::Substitute => false,
        AblationPath::Auto => model.cut_points().iter().any(|p| p == run.layer),
        AblationPath::ForwardFrom => {
            let cuts = model.cut_points();
            if !cuts.iter().any(|p| p == run.layer) {
                return Err(Error::UnsupportedLayer {
                    name: run.layer.to_string(),
                    reason: format!(
                        "Ablation-CAM cannot start the forward pass there; the model can start at: {}",
                        if cuts.is_empty() { "(none)".to_string() } else { cuts.join(", ") }
                    ),
                });
            }
            true
        }
    };

    // The ablation value of each image: 0 when its minimum activation is 0, else minimum − 1e7
    // (computed in the activations' dtype, as pytorch-grad-cam's `AblationLayer` does).
    let min = a.flatten_from(1)?.min(1)?;
    let value = min.eq(0.0)?.where_cond(&min.zeros_like()?, &min.affine(1.0, -1e7)?)?;

    // The (image, channel) pairs to ablate.
    let selected = select_channels(a, run.ratio)?;
    let pairs: Vec<(usize, usize)> =
        selected.iter().enumerate().flat_map(|(img, chans)| chans.iter().map(move |&ch| (img, ch))).collect();

    let original = run.original.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    // ablated[img][ch][t], starting from the original scores (weight 0 for skipped channels).
    let mut ablated: Vec<f64> = (0..n)
        .flat_map(|img| {
            let row = original[img].clone();
            (0..c).flat_map(move |_| row.clone())
        })
        .collect();

    for chunk in chunks(pairs.len(), run.batch)? {
        let part = &pairs[chunk.start..chunk.start + chunk.len];
        let images: Vec<u32> = part.iter().map(|&(img, _)| img as u32).collect();
        let index = Tensor::from_vec(images, chunk.len, device)?;
        let mut onehot = vec![0u8; chunk.len * c];
        for (row, &(_, ch)) in part.iter().enumerate() {
            onehot[row * c + ch] = 1;
        }
        let mask = Tensor::from_vec(onehot, (chunk.len, c, 1, 1), device)?.broadcast_as((chunk.len, c, h, w))?;
        let rows = a.index_select(&index, 0)?;
        let fill = value.index_select(&index, 0)?.reshape((chunk.len, 1, 1, 1))?.broadcast_as((chunk.len, c, h, w))?;
        let copies = mask.where_cond(&fill, &rows)?;
        let logits = if forward_from {
            model.forward_from(run.layer, &copies, &mut Taps::none())?
        } else {
            let mut taps = Taps::none().substitute(run.layer, copies);
            let logits = model.forward_taps(&run.input.index_select(&index, 0)?, &mut taps)?;
            taps.check_requests()?;
            logits
        };
        let outputs = scored_outputs(&logits, run.score)?;
        let classes: Vec<u32> = part.iter().flat_map(|&(img, _)| run.targets[img].iter().map(|&k| k as u32)).collect();
        let class_index = Tensor::from_vec(classes, (chunk.len, t), device)?;
        let got = outputs.gather(&class_index, 1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        for (&(img, ch), row) in part.iter().zip(got) {
            let at = (img * c + ch) * t;
            ablated[at..at + t].copy_from_slice(&row);
        }
    }

    // (s − s_k) / s in the model's dtype, as [N, T, C].
    let dtype = a.dtype();
    let ablated = Tensor::from_vec(ablated, (n, c, t), device)?.to_dtype(dtype)?.transpose(1, 2)?;
    let s = run.original.to_dtype(dtype)?.unsqueeze(2)?;
    Ok(s.broadcast_sub(&ablated)?.broadcast_div(&s)?)
}

/// The channels to ablate for each image.
///
/// With a ratio of 1 (the default), every channel. Otherwise pytorch-grad-cam's experimental
/// selection: a mask of the positions where the normalised magnitude of the first-component
/// projection exceeds 0.01; each channel scored by the share of its normalised magnitude inside the
/// mask; the `⌊C·ratio⌋` highest and the `⌊C·ratio⌋` lowest scoring channels.
fn select_channels(a: &Tensor, ratio: f64) -> Result<Vec<Vec<usize>>> {
    let (n, c, h, w) = a.dims4()?;
    if ratio >= 1.0 {
        return Ok(vec![(0..c).collect(); n]);
    }
    let hw = h * w;
    let data = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let k = (c as f64 * ratio) as usize;
    let mut out = Vec::with_capacity(n);
    for item in data.chunks(c * hw).take(n) {
        let proj: Vec<f64> = project_one(item, c, hw).iter().map(|v| v.abs()).collect();
        let mask = above_threshold(&proj, 0.01);
        let scores: Vec<f64> = item
            .chunks(hw)
            .map(|ch| {
                let mag: Vec<f64> = ch.iter().map(|v| v.abs()).collect();
                let lo = mag.iter().copied().fold(f64::INFINITY, f64::min);
                let shifted: Vec<f64> = mag.iter().map(|v| v - lo).collect();
                let hi = shifted.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let norm: Vec<f64> = shifted.iter().map(|v| v / hi).collect();
                let inside: f64 = norm.iter().zip(&mask).filter(|(_, m)| **m).map(|(v, _)| v).sum();
                inside / norm.iter().sum::<f64>()
            })
            .collect();
        // Ascending, NaN last (as numpy's argsort), ties by index.
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&i, &j| {
            let (x, y) = (scores[i], scores[j]);
            match (x.is_nan(), y.is_nan()) {
                (true, true) => i.cmp(&j),
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => x.total_cmp(&y).then(i.cmp(&j)),
            }
        });
        let mut chosen: Vec<usize> = order.iter().rev().take(k).copied().collect();
        for &ch in order.iter().take(k) {
            if !chosen.contains(&ch) {
                chosen.push(ch);
            }
        }
        chosen.sort_unstable();
        out.push(chosen);
    }
    Ok(out)
}

/// `(x − min) / max(x − min) > threshold` element-wise (false everywhere for a constant map).
fn above_threshold(x: &[f64], threshold: f64) -> Vec<bool> {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().map(|v| v - lo).fold(f64::NEG_INFINITY, f64::max);
    x.iter().map(|v| (v - lo) / hi > threshold).collect()
}
