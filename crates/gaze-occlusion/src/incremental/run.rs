//! The crop-compute-paste pass over a batch of occluded copies of one image.

use candle_core::Tensor;
use gaze_core::{Error, Result};

use gaze_engine::spatial::{pad2d, Incremental, Stage};

use super::region::{paste, place, AxisWindow, Rect, Span};
use crate::patches::Patch;
use crate::perturb::occlude;

/// When incremental re-computation gives way to whole maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IncrementalConfig {
    /// A stage is computed on whole maps once the window it must recompute (the same size for every
    /// copy in a batch) covers at least this share of its output; so is every stage that reads a
    /// stage computed whole. 1 never falls back; 0 always does. A share in `[0, 1]`; anything
    /// else (NaN included) is refused by [`IncrementalConfig::check`], which the incremental
    /// explainers call first.
    pub full_threshold: f64,
}

impl Default for IncrementalConfig {
    fn default() -> Self {
        IncrementalConfig { full_threshold: 0.5 }
    }
}

impl IncrementalConfig {
    /// An error naming `full_threshold` unless it is a share in `[0, 1]`.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.full_threshold) {
            return Err(Error::InvalidOption {
                option: "incremental full threshold".into(),
                value: self.full_threshold.to_string(),
                expected: "a share of a stage's output in [0, 1] (1 never recomputes whole maps, 0 always does)".into(),
            });
        }
        Ok(())
    }
}

/// The share of one stage's output positions recomputed, averaged over the occluded copies
/// (1 for a stage computed on whole maps, 0 for one the patches never reach).
#[derive(Clone, Debug, PartialEq)]
pub struct StageShare {
    pub name: String,
    pub share: f64,
}

/// What an incremental run recomputed, stage by stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncrementalReport {
    /// The number of occluded copies evaluated.
    pub samples: usize,
    pub stages: Vec<StageShare>,
}

/// Running sums behind an [`IncrementalReport`].
#[derive(Clone, Debug)]
pub(crate) struct Shares {
    sums: Vec<f64>,
    samples: usize,
}

impl Shares {
    pub fn new(stages: usize) -> Self {
        Shares { sums: vec![0.0; stages], samples: 0 }
    }

    pub fn report(&self, stages: &[Stage]) -> IncrementalReport {
        IncrementalReport {
            samples: self.samples,
            stages: stages
                .iter()
                .zip(&self.sums)
                .map(|(s, sum)| StageShare {
                    name: s.name.clone(),
                    share: if self.samples == 0 { 0.0 } else { sum / self.samples as f64 },
                })
                .collect(),
        }
    }
}

/// The unoccluded pass of one image `[1, C, H, W]` through the description: every node's
/// activation `[C, h, w]` (node 0 is the image) and the logits `[1, K]`.
pub(crate) fn cache_image<M: Incremental + ?Sized>(
    model: &M,
    stages: &[Stage],
    image: &Tensor,
) -> Result<(Vec<Tensor>, Tensor)> {
    let mut nodes = vec![image.clone()];
    for (i, stage) in stages.iter().enumerate() {
        let inputs: Vec<Tensor> = stage.inputs.iter().map(|&n| nodes[n].clone()).collect();
        let sizes: Vec<&[usize]> = inputs.iter().map(|t| &t.dims()[2..]).collect();
        if sizes.windows(2).any(|w| w[0] != w[1]) {
            return Err(Error::msg(format!(
                "stage `{}` reads nodes {:?} of different spatial sizes {sizes:?}; a stage's inputs must share a size",
                stage.name, stage.inputs
            )));
        }
        let out = model.run_stage_padded(i, stage, &inputs)?;
        if out.rank() != 4 || out.dims()[0] != 1 {
            return Err(Error::Shape {
                what: format!("output of stage `{}`", stage.name),
                expected: "[1, C, h, w] for one image".into(),
                got: out.dims().to_vec(),
            });
        }
        nodes.push(out);
    }
    let logits = model.head(nodes.last().expect("at least one stage"))?;
    let nodes = nodes.into_iter().map(|t| Ok(t.squeeze(0)?.contiguous()?)).collect::<Result<Vec<_>>>()?;
    Ok((nodes, logits))
}

/// A node's value for a batch of occluded copies.
enum Value {
    /// Equal to the cached activation for every copy.
    Unchanged,
    /// The cached activation except inside `rects[b]`, whose values are `crops[b]`.
    Region { crops: Tensor, rects: Vec<Rect> },
    /// Whole maps `[B, C, h, w]`.
    Full(Tensor),
}

fn spatial(t: &Tensor) -> (usize, usize) {
    let d = t.dims();
    (d[d.len() - 2], d[d.len() - 1])
}

/// The node's values over `windows` (one per copy, all the same size, possibly reaching outside
/// the map where they are padded with `pad_value`), `[B, C, wh, ww]`.
fn materialize(value: &Value, cache: &Tensor, windows: &[Rect], pad_value: f64) -> Result<Tensor> {
    let (h, w) = spatial(cache);
    let bounds = [Span::whole(h), Span::whole(w)];
    let whole = windows.iter().all(|r| *r == bounds);
    match value {
        Value::Full(t) if whole => return Ok(t.clone()),
        Value::Unchanged if whole => {
            let (c, _, _) = cache.dims3()?;
            return Ok(cache.unsqueeze(0)?.broadcast_as((windows.len(), c, h, w))?.contiguous()?);
        }
        _ => {}
    }
    let mut tiles = Vec::with_capacity(windows.len());
    for (b, win) in windows.iter().enumerate() {
        let inb = [win[0].intersect(bounds[0]), win[1].intersect(bounds[1])];
        let pad = [
            (inb[0].start - win[0].start) as usize,
            (win[0].end - inb[0].end) as usize,
            (inb[1].start - win[1].start) as usize,
            (win[1].end - inb[1].end) as usize,
        ];
        if inb[0].is_empty() || inb[1].is_empty() {
            let c = cache.dims()[0];
            let tile = Tensor::zeros((c, win[0].len(), win[1].len()), cache.dtype(), cache.device())?
                .affine(0.0, pad_value)?;
            tiles.push(tile);
            continue;
        }
        let source = match value {
            Value::Full(t) => t.get(b)?,
            _ => cache.clone(),
        };
        let mut tile =
            source.narrow(1, inb[0].start as usize, inb[0].len())?.narrow(2, inb[1].start as usize, inb[1].len())?;
        if let Value::Region { crops, rects } = value {
            let r = rects[b];
            let ov = [r[0].intersect(inb[0]), r[1].intersect(inb[1])];
            if !ov[0].is_empty() && !ov[1].is_empty() {
                let src = crops.get(b)?.narrow(1, (ov[0].start - r[0].start) as usize, ov[0].len())?.narrow(
                    2,
                    (ov[1].start - r[1].start) as usize,
                    ov[1].len(),
                )?;
                tile =
                    paste(&tile, &src, (ov[0].start - inb[0].start) as usize, (ov[1].start - inb[1].start) as usize)?;
            }
        }
        tiles.push(pad2d(&tile, pad, pad_value)?);
    }
    Ok(Tensor::stack(&tiles, 0)?)
}

/// The logits `[B, K]` of the copies of `image` `[C, H, W]` occluded by `patches` with `baseline`,
/// recomputing only what each patch changes; `cache` is [`cache_image`]'s activations.
#[allow(clippy::too_many_arguments)]
pub(crate) fn occluded_logits<M: Incremental + ?Sized>(
    model: &M,
    stages: &[Stage],
    cache: &[Tensor],
    image: &Tensor,
    baseline: &Tensor,
    patches: &[Patch],
    config: &IncrementalConfig,
    shares: &mut Shares,
) -> Result<Tensor> {
    let b = patches.len();
    let threshold = config.full_threshold;
    let mut values: Vec<Value> = Vec::with_capacity(stages.len() + 1);
    let mut exact: Vec<Vec<Rect>> = Vec::with_capacity(stages.len() + 1);

    // Node 0: the occluded input, over each patch's rectangle.
    let (h, w) = spatial(image);
    let rects: Vec<Rect> = patches
        .iter()
        .map(|p| [Span::new(p.start[1] as isize, p.end[1] as isize), Span::new(p.start[2] as isize, p.end[2] as isize)])
        .collect();
    let extent = max_extent(&rects);
    let whole = [Span::whole(h), Span::whole(w)];
    let value = if (extent.0 * extent.1) as f64 >= threshold * (h * w) as f64 {
        let copies = patches.iter().map(|p| occlude(image, baseline, p, whole)).collect::<Result<Vec<_>>>()?;
        Value::Full(Tensor::stack(&copies, 0)?)
    } else {
        let placed: Vec<Rect> = rects.iter().map(|r| [place(r[0], extent.0, h), place(r[1], extent.1, w)]).collect();
        let crops =
            patches.iter().zip(&placed).map(|(p, r)| occlude(image, baseline, p, *r)).collect::<Result<Vec<_>>>()?;
        Value::Region { crops: Tensor::stack(&crops, 0)?, rects: placed }
    };
    values.push(value);
    exact.push(rects);

    for (i, stage) in stages.iter().enumerate() {
        let (oh, ow) = spatial(&cache[i + 1]);
        let out_channels = cache[i + 1].dims()[0];
        let g = &stage.geometry;
        let (ah, aw) = (AxisWindow::of(g, 0), AxisWindow::of(g, 1));
        let rects: Vec<Rect> = (0..b)
            .map(|s| {
                stage.inputs.iter().fold([Span::EMPTY; 2], |acc, &n| {
                    if matches!(values[n], Value::Unchanged) {
                        return acc;
                    }
                    let r = exact[n][s];
                    let a = [ah.affected(r[0], oh), aw.affected(r[1], ow)];
                    if a[0].is_empty() || a[1].is_empty() {
                        acc
                    } else {
                        [acc[0].hull(a[0]), acc[1].hull(a[1])]
                    }
                })
            })
            .collect();
        let any_full = stage.inputs.iter().any(|&n| matches!(values[n], Value::Full(_)));
        let extent = max_extent(&rects);
        let share = (extent.0 * extent.1) as f64 / (oh * ow) as f64;
        let (value, recomputed) = if !any_full && extent.0 * extent.1 == 0 {
            (Value::Unchanged, 0.0)
        } else if any_full || share >= threshold {
            let (ih, iw) = spatial(&cache[stage.inputs[0]]);
            let bounds = vec![[Span::whole(ih), Span::whole(iw)]; b];
            let inputs = stage
                .inputs
                .iter()
                .map(|&n| materialize(&values[n], &cache[n], &bounds, stage.pad_value))
                .collect::<Result<Vec<_>>>()?;
            let out = model.run_stage_padded(i, stage, &inputs)?;
            check_dims(&out, stage, [b, out_channels, oh, ow], "whole maps")?;
            (Value::Full(out), 1.0)
        } else {
            let single_region = match (stage.inputs.as_slice(), g.is_pointwise()) {
                ([n], true) => match &values[*n] {
                    Value::Region { crops, rects } if spatial(&cache[*n]) == (oh, ow) => Some((crops, rects)),
                    _ => None,
                },
                _ => None,
            };
            if let Some((crops, placed)) = single_region {
                // A pointwise stage maps the crop of its input to the crop of its output.
                let out = model.run_stage(i, std::slice::from_ref(crops))?;
                let (ch, cw) = spatial(crops);
                check_dims(&out, stage, [b, out_channels, ch, cw], "a crop")?;
                let share = (ch * cw) as f64 / (oh * ow) as f64;
                (Value::Region { crops: out, rects: placed.clone() }, share)
            } else {
                let placed: Vec<Rect> =
                    rects.iter().map(|r| [place(r[0], extent.0, oh), place(r[1], extent.1, ow)]).collect();
                let windows: Vec<Rect> = placed.iter().map(|r| [ah.needed(r[0]), aw.needed(r[1])]).collect();
                let inputs = stage
                    .inputs
                    .iter()
                    .map(|&n| materialize(&values[n], &cache[n], &windows, stage.pad_value))
                    .collect::<Result<Vec<_>>>()?;
                let out = model.run_stage(i, &inputs)?;
                check_dims(&out, stage, [b, out_channels, extent.0, extent.1], "a crop")?;
                (Value::Region { crops: out, rects: placed }, share)
            }
        };
        shares.sums[i] += recomputed * b as f64;
        values.push(value);
        exact.push(rects);
    }
    shares.samples += b;

    let last = cache.len() - 1;
    let (fh, fw) = spatial(&cache[last]);
    let bounds = vec![[Span::whole(fh), Span::whole(fw)]; b];
    let features = materialize(&values[last], &cache[last], &bounds, 0.0)?;
    model.head(&features)
}

fn max_extent(rects: &[Rect]) -> (usize, usize) {
    rects.iter().fold((0, 0), |(h, w), r| (h.max(r[0].len()), w.max(r[1].len())))
}

fn check_dims(out: &Tensor, stage: &Stage, expected: [usize; 4], on: &str) -> Result<()> {
    if out.dims() == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            what: format!("output of stage `{}` on {on} (is its geometry {:?} right?)", stage.name, stage.geometry),
            expected: format!("{expected:?}"),
            got: out.dims().to_vec(),
        })
    }
}
