//! Every map-level metric in one call: what a command line runs for each method.

use candle_core::Tensor;
use gaze_core::Result;

use crate::causal::{CausalCurves, CausalMetric};
use crate::maps::MapScores;
use crate::pointing::{energy_pointing_game, PointingGame};

/// Which metrics [`evaluate`] runs and how.
#[derive(Clone, Debug)]
pub struct EvaluationConfig {
    pub pointing: PointingGame,
    /// Deletion, or `None` to skip it (it costs `steps + 1` forward passes per map).
    pub deletion: Option<CausalMetric>,
    /// Insertion, or `None` to skip it.
    pub insertion: Option<CausalMetric>,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            pointing: PointingGame::default(),
            deletion: Some(CausalMetric::deletion()),
            insertion: Some(CausalMetric::insertion()),
        }
    }
}

/// The scores of one method's maps.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub pointing: MapScores,
    pub energy: MapScores,
    pub deletion: Option<CausalCurves>,
    pub insertion: Option<CausalCurves>,
}

/// Scores maps `[N, T, H, W]` (or `[N, H, W]`) of `inputs` `[N, C, H, W]` for the classes
/// `targets` `[N][T]` against the object masks `masks` `[N, H, W]`, running `model` (inputs to
/// logits `[B, K]`) for deletion and insertion.
///
/// Bring any method's output to such maps with [`pixel_maps`](crate::pixel_maps).
pub fn evaluate<F>(
    mut model: F,
    inputs: &Tensor,
    maps: &Tensor,
    masks: &Tensor,
    targets: &[Vec<usize>],
    config: &EvaluationConfig,
) -> Result<Evaluation>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    let pointing = config.pointing.score(maps, masks)?;
    let energy = energy_pointing_game(maps, masks)?;
    let deletion = config.deletion.as_ref().map(|m| m.run(&mut model, inputs, maps, targets)).transpose()?;
    let insertion = config.insertion.as_ref().map(|m| m.run(&mut model, inputs, maps, targets)).transpose()?;
    Ok(Evaluation { pointing, energy, deletion, insertion })
}
