//! Sanity checks by model randomisation: a map that explains the model should change when the
//! model's weights are replaced by random ones.

use std::collections::HashMap;

use candle_core::Tensor;
use gaze_core::{Error, Result};

use crate::maps::{HostMaps, MapScores};
use crate::rng::Rng;
use crate::similarity::{spearman, ssim, SSIM_WINDOW};

/// How layers are randomised, after Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS
/// 2018, <https://arxiv.org/abs/1810.03292>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Randomization {
    /// Step `i` randomises the first `i + 1` layers of the list, from the output toward the input,
    /// so each step destroys more of the model.
    Cascading,
    /// Step `i` randomises the `i`-th layer of the list alone.
    Independent,
}

impl Randomization {
    pub fn name(self) -> &'static str {
        match self {
            Randomization::Cascading => "cascading",
            Randomization::Independent => "independent",
        }
    }
}

/// The similarity of each map of a randomised model to the original model's map.
#[derive(Clone, Debug)]
pub struct SanityStep {
    /// The layers randomised at this step.
    pub layers: Vec<String>,
    /// Spearman's rank correlation of the signed maps.
    pub spearman: MapScores,
    /// Spearman's rank correlation of the absolute values (the paper's second variant, for methods
    /// whose sign is not meaningful).
    pub spearman_abs: MapScores,
    /// SSIM of the absolute maps, each min-max scaled to `[0, 1]` (data range 1).
    pub ssim: MapScores,
}

/// The steps of a sanity check, in order.
#[derive(Clone, Debug)]
pub struct SanityReport {
    pub randomization: Randomization,
    pub steps: Vec<SanityStep>,
}

impl SanityReport {
    /// The steps whose mean rank correlation of absolute maps stays at or above `threshold`: where
    /// the method ignored the randomisation (the paper found guided backprop and guided Grad-CAM
    /// nearly unchanged under cascading randomisation).
    pub fn insensitive_steps(&self, threshold: f32) -> Vec<&SanityStep> {
        self.steps.iter().filter(|s| s.spearman_abs.mean() >= threshold).collect()
    }
}

/// Runs a sanity check over `layers`, listed from the output toward the input.
///
/// `maps_for(randomised)` must return the method's maps (`[N, H, W]` or `[N, T, H, W]` of at least
/// 7×7 pixels, the window of [`ssim`], the same images and the same target classes every call)
/// for the model with the layers `randomised` replaced by random weights; it is first called with no layer for the original maps.
/// Keep the targets fixed (the original model's classes): a randomised model predicts other
/// classes, and a map of another class is not the comparison the paper makes.
/// [`randomize_weights`] makes such a model's weights from a checkpoint's tensors.
pub fn sanity_check<F>(layers: &[String], randomization: Randomization, mut maps_for: F) -> Result<SanityReport>
where
    F: FnMut(&[String]) -> Result<Tensor>,
{
    if layers.is_empty() {
        return Err(Error::InvalidOption {
            option: "sanity-check layers".into(),
            value: "(none)".into(),
            expected: "at least one layer to randomise".into(),
        });
    }
    let original = HostMaps::read(&maps_for(&[])?, "original maps")?;
    if original.h < SSIM_WINDOW || original.w < SSIM_WINDOW {
        return Err(Error::Shape {
            what: "original maps".into(),
            expected: format!(
                "maps of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels, SSIM's window ([N, H, W] or [N, T, H, W])"
            ),
            got: vec![original.n, original.t, original.h, original.w],
        });
    }
    let mut steps = Vec::with_capacity(layers.len());
    for i in 0..layers.len() {
        let randomised: Vec<String> = match randomization {
            Randomization::Cascading => layers[..=i].to_vec(),
            Randomization::Independent => vec![layers[i].clone()],
        };
        let maps = HostMaps::read(&maps_for(&randomised)?, "randomised maps")?;
        if (maps.n, maps.t, maps.h, maps.w) != (original.n, original.t, original.h, original.w) {
            return Err(Error::Shape {
                what: format!("maps with {} randomised", randomised.join(", ")),
                expected: format!(
                    "[{}, {}, {}, {}] like the original maps",
                    original.n, original.t, original.h, original.w
                ),
                got: vec![maps.n, maps.t, maps.h, maps.w],
            });
        }
        let (mut rho, mut rho_abs, mut sim) = (Vec::new(), Vec::new(), Vec::new());
        for n in 0..maps.n {
            for t in 0..maps.t {
                let (a, b) = (original.map(n, t), maps.map(n, t));
                rho.push(spearman(a, b)? as f32);
                let (aa, ba) = (abs(a), abs(b));
                rho_abs.push(spearman(&aa, &ba)? as f32);
                sim.push(ssim(&unit_range(&aa), &unit_range(&ba), maps.h, maps.w, 1.0)? as f32);
            }
        }
        let scores = |values| MapScores { images: maps.n, targets: maps.t, values };
        steps.push(SanityStep {
            layers: randomised,
            spearman: scores(rho),
            spearman_abs: scores(rho_abs),
            ssim: scores(sim),
        });
    }
    Ok(SanityReport { randomization, steps })
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Min-max scaling to `[0, 1]`; a constant map becomes all zeros.
fn unit_range(v: &[f32]) -> Vec<f32> {
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if hi > lo {
        v.iter().map(|x| (x - lo) / (hi - lo)).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// A copy of a model's weights with every tensor of the named `layers` (every key that starts with
/// `"<layer>."`) redrawn from PyTorch's default initialisation, `U(−1/√fan_in, 1/√fan_in)`, where
/// `fan_in` is the number of inputs of the layer's `weight` (all but its first dimension).
///
/// A layer's new values depend only on `seed` and the tensor's key, so it gets the same random
/// weights in a cascading and an independent check. Build the randomised model from the result
/// (for example with candle-nn's `VarBuilder::from_tensors`).
pub fn randomize_weights(
    tensors: &HashMap<String, Tensor>,
    layers: &[String],
    seed: u64,
) -> Result<HashMap<String, Tensor>> {
    let mut out = tensors.clone();
    for layer in layers {
        let prefix = format!("{layer}.");
        let mut keys: Vec<&String> = tensors.keys().filter(|k| k.starts_with(&prefix)).collect();
        if keys.is_empty() {
            let mut valid: Vec<String> =
                tensors.keys().filter_map(|k| k.rsplit_once('.').map(|(p, _)| p.to_string())).collect();
            valid.sort();
            valid.dedup();
            return Err(Error::UnknownLayer { name: layer.clone(), valid });
        }
        keys.sort();
        let fan_in = tensors
            .get(&format!("{layer}.weight"))
            .map(|w| w.dims().iter().skip(1).product::<usize>())
            .filter(|&f| f > 0)
            .unwrap_or_else(|| tensors[keys[0]].elem_count().max(1));
        let bound = 1.0 / (fan_in as f64).sqrt();
        for key in keys {
            let t = &tensors[key];
            let mut rng = Rng::new(seed, fnv1a(key));
            let values: Vec<f32> = (0..t.elem_count()).map(|_| rng.range(-bound, bound) as f32).collect();
            let fresh = Tensor::from_vec(values, t.shape(), t.device())?.to_dtype(t.dtype())?;
            out.insert(key.clone(), fresh);
        }
    }
    Ok(out)
}

/// The FNV-1a hash of a key: the random stream of its tensor.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
