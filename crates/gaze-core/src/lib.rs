//! # gaze-core
//!
//! The vocabulary every gaze crate shares: what to explain ([`Target`]), what an explanation is
//! ([`Attribution`] with its [`AttributionMeta`]), the [`Explainer`] trait that every method
//! implements, and the [`Error`] type.
//!
//! This crate owns no model, no gradient machinery and no drawing: it must not depend on any other
//! gaze crate, so that a method crate, the renderer and a user's own code can all speak these types.

mod attribution;
mod error;
mod explainer;
pub mod numeric;
mod target;

pub use attribution::{Attribution, AttributionMeta, Resolution};
pub use error::{Error, Result};
pub use explainer::Explainer;
pub use target::{select, Score, ScoreFn, Target, TargetSpec};

/// Re-exported so that users of gaze need not depend on candle themselves for the basic types.
pub use candle_core::{DType, Device, Tensor};
