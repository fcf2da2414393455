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

    /// The classes [`explain`](Explainer::explain) would explain for each image of `input`, `[N][T]`.
    ///
    /// Wrappers that run a method on perturbed copies of the images (SmoothGrad) call it to fix the
    /// targets on the clean images first, so that every copy explains the same classes.
    /// The default runs the whole method; a method that can rank the outputs with a plain forward
    /// pass overrides it.
    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        Ok(self.explain(model, input, target)?.targets)
    }
}
