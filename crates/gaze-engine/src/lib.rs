//! # gaze-engine
//!
//! The gradient engine: everything a method needs to ask a model what it computed and how its
//! outputs depend on its layers and its input.
//!
//! - [`TapModel`]: the trait a model implements, calling [`Taps::tap`] at every named layer.
//! - [`Taps`]: a per-call request to record an activation, get the gradient at it, or substitute
//!   it; no global hooks, nothing to release.
//! - [`probe`]: forward, target scores, one backward per target, and the activations and gradients
//!   asked for; [`chunks`] splits large sample sets under a memory budget.
//! - [`ops`]: the differentiable operations the models use, with exact gradients (candle 0.11's own
//!   are wrong or missing for pooling, ReLU at 0, strided convolutions on non-square inputs,
//!   softmax and bilinear upsampling, and always compute weight gradients).
//!
//! The engine knows no particular model (those live in `gaze-models`) and no particular method
//! (those live in their own crates); it never touches files or the network.

mod chunk;
mod model;
pub mod ops;
mod probe;
pub mod spatial;
mod taps;

pub use chunk::{batch_for_budget, chunks, map_chunks, sum_chunks, Chunk};
pub use model::{layer_shapes, LayerShape, TapModel};
pub use ops::ReluMode;
pub use probe::{probe, scored_outputs, Probe, ProbeRequest};
pub use taps::{TapRequest, Taps};

pub use gaze_core::{Error, Result};
