//! # gaze-occlusion
//!
//! Occlusion sensitivity: how much a model's score drops when a window of the input is covered
//! (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
//! <https://arxiv.org/abs/1311.2901>).
//!
//! Two definitions, chosen by [`OcclusionStyle`]:
//! - Captum's `Occlusion`: windows of any `(channels, height, width)` start at multiples of the
//!   stride along each axis, `ceil((D − w) / s) + 1` of them, the last cut off at the edge; each
//!   element's attribution is the mean over the windows covering it of
//!   `score(x) − score(x with the window filled)`, `[C, H, W]` per target.
//! - tf-explain's `OcclusionSensitivity`: non-overlapping square patches on a
//!   `ceil(H / p) × ceil(W / p)` grid, each cell `1 − score(x with the patch filled)` (tf-explain
//!   ignores the unoccluded score), resized bilinearly to the image, `[1, H, W]` per target.
//!   tf-explain enumerates patches with rows and columns swapped and resizes to `(W, H)`, which
//!   scrambles and transposes the maps of non-square images; here cell `(i, j)` is always the patch
//!   at row `i`, column `j`, and the map has the image's shape. On square images both agree.
//!
//! The fill ([`Fill`]) is a constant, a value per channel, the image's mean, a blurred copy or an
//! explicit baseline; occluded copies run `batch` at a time, and every image of a batch has its own
//! targets.
//!
//! [`incremental`] recomputes only the part of each layer a patch changes (Nakandala et al.,
//! SIGMOD 2019), for models that describe their layers as spatial [`incremental::Stage`]s; the
//! results equal the full re-computation up to float rounding.
//!
//! This crate owns the occlusion methods and the incremental re-computation; the description of a
//! model as spatial stages ([`Incremental`]) is `gaze_engine::spatial`'s, re-exported here, so
//! models implement it without depending on this crate.
//! It knows no particular model (those are in `gaze-models`) and draws nothing.

mod aggregate;
mod explain;
mod fill;
pub mod incremental;
mod patches;
mod perturb;

pub use aggregate::{captum_map, resize_bilinear, tf_explain_map, MAX_MAP_VALUES};
pub use explain::{parse_pair, IncrementalOcclusion, Occlusion, OcclusionConfig, OcclusionStyle};
pub use fill::Fill;
pub use incremental::{Incremental, IncrementalConfig, IncrementalReport};
pub use patches::{captum_patches, tf_explain_patches, Patch, PatchGrid};
