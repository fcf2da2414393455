//! # gaze-models
//!
//! Image classifiers with named taps, ready for every gaze method: the small demo CNN embedded in
//! the crate, and (in their own modules) VGG16, ResNet-50 and Xception.
//! Each model is a struct built with `vb.pp(...)`, so checkpoint keys, layer names and tap names
//! agree; widths and class counts are read from the checkpoint.
//! The crate also owns per-model preprocessing ([`Preprocess`]) and class labels.
//!
//! It must not know about attribution methods, and it never touches the network or a cache
//! directory: callers hand it a checkpoint path (the CLI and the xtask find and fetch them).

mod checkpoint;
mod demo;
pub mod preprocess;
mod registry;

pub use checkpoint::Checkpoint;
pub use demo::{DemoCnn, DemoCnnConfig, DEMO_WEIGHTS};
pub use preprocess::{load_image, Preprocess};
pub use registry::{load, Classifier, ModelKind};

pub use gaze_core::{Error, Result};
