//! # gaze-cam
//!
//! The class activation map (CAM) family on one shared pipeline: Grad-CAM, Grad-CAM++, XGrad-CAM,
//! HiResCAM, LayerCAM, Eigen-CAM, Score-CAM and Ablation-CAM.
//!
//! The pipeline ([`Cam`]) follows pytorch-grad-cam's `BaseCAM`: the engine's probe records the
//! activations at the target layer(s) and, for the gradient variants, the gradients of the target
//! scores there, from a backward pass through the tail of the network only (the head before the
//! layer is never differentiated, no weight gets a gradient); the variant's weights function turns
//! them into channel weights (or element-wise weights); the weighted activations are summed over
//! channels (or, with `eigen_smooth`, projected on their first principal component); the map is
//! clamped at 0 when the ReLU is on.
//! The display steps ([`display_maps`], [`Cam::explain_display`]) then scale each map to [0, 1],
//! resize it to the input and average several layers, in pytorch-grad-cam's order.
//! A variant is one small weights function ([`CamMethod`] names them), not a flag.
//!
//! Every variant takes a batch with one or more targets per image ([`gaze_core::Target`]) and
//! gives `[N, T, ...]` maps; a batch gives the same maps as its images one by one.
//! Unlike pytorch-grad-cam, a single target applies to every image of a batch (it explains only the
//! first there), nothing is hooked into the model, and the maps stay on the model's device except
//! for the eigen-decompositions of Eigen-CAM and `eigen_smooth`.
//!
//! This crate owns the CAM methods only: it runs any [`gaze_engine::TapModel`], never a particular
//! model (it must not depend on `gaze-models`), and it draws nothing (colour maps and overlays are
//! `gaze-render`'s).
//!
//! ## Reference
//! - Grad-CAM: Selvaraju et al. 2017, <https://arxiv.org/abs/1610.02391>.
//! - Grad-CAM++: Chattopadhyay et al. 2018, <https://arxiv.org/abs/1710.11063>.
//! - XGrad-CAM: Fu et al. 2020, <https://arxiv.org/abs/2008.02312>.
//! - HiResCAM: Draelos and Carin 2020, <https://arxiv.org/abs/2011.08891>.
//! - LayerCAM: Jiang et al. 2021, IEEE Transactions on Image Processing 30,
//!   <https://ieeexplore.ieee.org/document/9462463>.
//! - Eigen-CAM: Muhammad and Yeasin 2020, <https://arxiv.org/abs/2008.00299>.
//! - Score-CAM: Wang et al. 2020, <https://arxiv.org/abs/1910.01279>.
//! - Ablation-CAM: Desai and Ramaswamy 2020, WACV.
//! - The peer this crate matches: pytorch-grad-cam, <https://github.com/jacobgil/pytorch-grad-cam>.
//!
//! The method pages in `docs/methods/` give each definition and how it differs from the peers'.

mod ablation;
mod cam;
mod config;
mod display;
mod eigen;
mod method;
mod score;
mod weights;

pub use cam::{Cam, LayerMaps};
pub use config::{AblationPath, AugSmooth, CamConfig, GradientFilter};
pub use display::{display_maps, scale_cam};
pub use eigen::first_component_projection;
pub use method::CamMethod;

pub use gaze_core::{Error, Result};
