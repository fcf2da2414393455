//! # gaze-eval
//!
//! Measuring explanations: a procedural data set with ground truth, and the metrics that score any
//! method's maps against it.
//!
//! - [`ShapesDataset`]: 64×64 images of eight shape classes ([`CLASS_NAMES`]) over textured clutter,
//!   with smaller distractor shapes and the mask of the labelled shape; every sample is a pure
//!   function of a seed and an index. [`Batch`] turns samples into model inputs and masks.
//! - [`PointingGame`] and [`energy_pointing_game`]: does the map point at the object?
//! - [`CausalMetric`]: deletion and insertion curves and their areas.
//! - [`sanity_check`] with [`randomize_weights`]: do the maps change when the model's layers are
//!   randomised, measured by [`spearman`] rank correlation and [`ssim`]?
//! - [`evaluate`]: every map-level metric in one call, for a command line looping over methods.
//! - [`random_maps`] and [`centre_maps`]: the baselines a method must beat.
//!
//! ## References
//! - Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016,
//!   <https://arxiv.org/abs/1608.00507> (the pointing game).
//! - Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
//!   Networks", CVPR workshops 2020, <https://arxiv.org/abs/1910.01279> (the energy-based pointing game).
//! - Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC
//!   2018, <https://arxiv.org/abs/1806.07421> (deletion and insertion).
//! - Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018,
//!   <https://arxiv.org/abs/1810.03292> (cascading and independent randomisation).
//! - Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity", IEEE
//!   TIP 2004 (SSIM, here with scikit-image's defaults).
//!
//! The metrics take maps as tensors and a model as a closure from inputs to logits, so they know no
//! method and no model: this crate must not depend on `gaze-models` or on any method crate, and it
//! never touches files or the network.

mod baselines;
mod causal;
mod dataset;
mod evaluate;
mod geometry;
mod maps;
mod pointing;
mod rng;
mod sanity;
mod similarity;

pub use baselines::{centre_maps, random_maps, MAX_BASELINE_VALUES};
pub use causal::{trapezoid_auc, CausalCurves, CausalMetric, CausalMode, Substrate};
pub use dataset::{
    Background, Batch, PixelNorm, Sample, ShapeInstance, ShapesConfig, ShapesDataset, MAX_SAMPLE_PIXELS,
};
pub use evaluate::{evaluate, Evaluation, EvaluationConfig};
pub use geometry::{sin_cos, ShapeClass, CLASS_NAMES};
pub use maps::{pixel_maps, resize_bilinear, ChannelReduce, MapScores};
pub use pointing::{energy_pointing_game, PointingGame};
pub use rng::Rng;
pub use sanity::{randomize_weights, sanity_check, Randomization, SanityReport, SanityStep};
pub use similarity::{spearman, ssim};

pub use gaze_core::{Error, Result};
