use candle_core::Tensor;

use crate::{Attribution, Result, Target};

/// An attribution method.
///
/// `M` is the kind of model the method can run; gradient methods take the engine's `TapModel`,
/// wrappers such as SmoothGrad take whatever the method they wrap takes.
/// The input is a batch `[N, C, H, W]` already preprocessed for the model; the result has one map
/// per image and target, and a batch gives the same maps as its images one by one.
pub trait Explainer<M: ?Sized> {
    /// The method's command-line name, e.g. `gradcam`.
    fn method(&self) -> &'static str;

    /// Explains `target` for every image of `input`.
    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution>;
}
