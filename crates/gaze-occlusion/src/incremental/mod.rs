//! Exact incremental re-computation of occluded copies (Nakandala, Kumar and Papakonstantinou,
//! "Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations",
//! SIGMOD 2019, <https://doi.org/10.1145/3299869.3319874>).
//!
//! A patch changes only a window of each layer's output: the patch's rectangle grown by each
//! convolution's reach and shrunk by each stride.
//! So for every occluded copy only that window is computed again, from a crop of the layer's input
//! that is the cached activation of the unoccluded image with the previous layer's recomputed
//! window pasted in; everything else is reused from the unoccluded pass.
//! A layer whose window covers (nearly) all of its output is computed on whole maps instead, and
//! so is every layer after it that reads it.
//!
//! # Describing a model
//!
//! A model opts in by implementing [`Incremental`] (defined in `gaze_engine::spatial` and
//! re-exported here, so models describe themselves without depending on this crate): it lists its
//! spatial layers as [`Stage`]s with their [`Geometry`], runs one stage without padding, and runs
//! the head on the last stage's output.
//!
//! - VGG16: 13 stages `conv → ReLU` (3×3, stride 1, padding 1, pad value 0) and 5 max pools
//!   (2×2, stride 2, pad value −∞); the head is the classifier.
//! - ResNet-50: the stem convolution and max pool, then per bottleneck block one stage per
//!   convolution (`1×1`, `3×3` with the block's stride, `1×1`, each with its batch norm and ReLU
//!   folded in, the last without ReLU), a stage for the projection shortcut when the block has
//!   one (`1×1` with the block's stride, reading the block's input), and a pointwise stage reading
//!   the last convolution and the shortcut (or the block's input) that adds them and applies the
//!   ReLU.
//! - Xception: each separable convolution as a depthwise stage (`3×3`, padding 1) and a pointwise
//!   stage, the entry and exit pools as max-pool stages (3×3, stride 2, padding 1, pad value −∞),
//!   the strided `1×1` shortcuts as stages reading the block's input, and a pointwise stage for
//!   each residual sum.
//!
//! [`full_forward`] runs a description on whole images: check it against the model's own forward
//! pass once, in the model's tests.

mod region;
mod run;

pub use gaze_engine::spatial::{checked_stages, full_forward, pad2d, Geometry, Incremental, Stage};
pub(crate) use region::paste as paste_rect;
pub use region::{Rect, Span};
pub(crate) use run::{cache_image, occluded_logits, Shares};
pub use run::{IncrementalConfig, IncrementalReport, StageShare};
