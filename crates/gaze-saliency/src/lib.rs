//! # gaze-saliency
//!
//! Attributions read off one backward pass to the input: the plain gradient (saliency), the gradient
//! times the input, guided backpropagation and the deconvnet (the same backward pass with the
//! ReLUs' backward rule changed, [`ReluMode`]), and guided Grad-CAM (guided backpropagation times the
//! Grad-CAM map of a layer, upsampled to the input).
//!
//! Every method returns `[N, T, C, H, W]` maps in the model's input space, signed (no absolute value
//! unless asked for), as Captum returns them; images run through the model `batch` at a time, one
//! forward and one backward per target each.
//!
//! This crate owns these gradient maps only; it runs models through `gaze-engine`'s probe and must
//! not know any particular model, nor draw anything.
//!
//! ## References
//! - Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks: Visualising Image
//!   Classification Models and Saliency Maps", 2013, <https://arxiv.org/abs/1312.6034>.
//! - Shrikumar et al., "Not Just a Black Box: Learning Important Features Through Propagating
//!   Activation Differences" (gradient × input), 2016, <https://arxiv.org/abs/1605.01713>.
//! - Springenberg et al., "Striving for Simplicity: The All Convolutional Net" (guided
//!   backpropagation), 2014, <https://arxiv.org/abs/1412.6806>.
//! - Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks" (deconvnet), 2013,
//!   <https://arxiv.org/abs/1311.2901>.
//! - Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
//!   Localization" (guided Grad-CAM), 2016, <https://arxiv.org/abs/1610.02391>.

mod guided_gradcam;

use std::fmt;

use candle_core::Tensor;
use gaze_core::{Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Score, Target, TargetSpec};
use gaze_engine::{chunks, map_chunks, probe, scored_outputs, Chunk, ProbeRequest, ReluMode, TapModel};

pub use guided_gradcam::{GuidedGradCam, Interpolation, GUIDED_GRADCAM};

/// Which gradient map [`Gradient`] computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradientKind {
    /// `∂f/∂x`, signed (Captum's `Saliency` with `abs=False`).
    #[default]
    Saliency,
    /// `x ⊙ ∂f/∂x` (Captum's `InputXGradient`).
    GradientXInput,
    /// The gradient with every ReLU passing back only positive gradients where its input was
    /// positive (Captum's `GuidedBackprop`).
    GuidedBackprop,
    /// The gradient with every ReLU passing back the positive part of its upstream gradient,
    /// whatever its input was (Captum's `Deconvolution`).
    Deconvnet,
}

impl GradientKind {
    pub const ALL: [GradientKind; 4] =
        [GradientKind::Saliency, GradientKind::GradientXInput, GradientKind::GuidedBackprop, GradientKind::Deconvnet];

    /// The command-line method name: `saliency`, `gradient-x-input`, `guided-backprop` or
    /// `deconvnet`.
    pub fn name(self) -> &'static str {
        match self {
            GradientKind::Saliency => "saliency",
            GradientKind::GradientXInput => "gradient-x-input",
            GradientKind::GuidedBackprop => "guided-backprop",
            GradientKind::Deconvnet => "deconvnet",
        }
    }

    /// Parses a command-line method name.
    pub fn parse(text: &str) -> Result<Self> {
        GradientKind::ALL.into_iter().find(|k| k.name() == text).ok_or_else(|| Error::InvalidOption {
            option: "--method".into(),
            value: text.into(),
            expected: GradientKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The ReLU backward rule the method runs with.
    pub fn relu_mode(self) -> ReluMode {
        match self {
            GradientKind::Saliency | GradientKind::GradientXInput => ReluMode::Normal,
            GradientKind::GuidedBackprop => ReluMode::Guided,
            GradientKind::Deconvnet => ReluMode::Deconvnet,
        }
    }
}

impl fmt::Display for GradientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A gradient map at the input: saliency, gradient × input, guided backprop or deconvnet.
///
/// ```
/// use gaze_saliency::{Gradient, GradientKind};
/// let g = Gradient::new(GradientKind::parse("guided-backprop").unwrap()).with_batch(8);
/// assert_eq!(g.kind, GradientKind::GuidedBackprop);
/// ```
#[derive(Clone, Debug)]
pub struct Gradient {
    pub kind: GradientKind,
    /// Returns `|map|` instead of the signed map (Captum's `Saliency` defaults to `abs=True`; gaze
    /// keeps the sign unless asked).
    pub abs: bool,
    /// The most images that run through the model at once.
    pub batch: usize,
}

impl Gradient {
    /// The signed map of `kind`, 32 images at a time.
    pub fn new(kind: GradientKind) -> Self {
        Gradient { kind, abs: false, batch: 32 }
    }

    /// The signed gradient.
    pub fn saliency() -> Self {
        Gradient::new(GradientKind::Saliency)
    }

    pub fn gradient_x_input() -> Self {
        Gradient::new(GradientKind::GradientXInput)
    }

    pub fn guided_backprop() -> Self {
        Gradient::new(GradientKind::GuidedBackprop)
    }

    pub fn deconvnet() -> Self {
        Gradient::new(GradientKind::Deconvnet)
    }

    pub fn with_abs(mut self, abs: bool) -> Self {
        self.abs = abs;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for Gradient {
    fn method(&self) -> &'static str {
        self.kind.name()
    }

    /// One forward and `T` backward passes per chunk of `batch` images.
    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        let n = batch_size(input, target)?;
        let request = ProbeRequest::input().with_relu_mode(self.kind.relu_mode());
        let mut targets = Vec::with_capacity(n);
        let mut scores = Vec::new();
        let values = map_chunks(n, self.batch, |c| {
            let x = c.of(input)?;
            let p = probe(model, &x, &chunk_target(target, c)?, &request)?;
            let g = p.input_gradient.ok_or_else(|| Error::msg("the probe returned no input gradient"))?;
            let g = match self.kind {
                GradientKind::GradientXInput => g.broadcast_mul(&x.unsqueeze(1)?)?,
                _ => g,
            };
            targets.extend(p.targets);
            scores.push(p.scores);
            Ok(if self.abs { g.abs()? } else { g })
        })?;
        let meta = AttributionMeta::new(self.kind.name(), Resolution::Input)
            .with_score(target.score.name())
            .with_option("abs", self.abs)
            .with_option("batch", self.batch);
        Ok(Attribution { values, targets, scores: Some(Tensor::cat(&scores, 0)?), meta })
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        resolve_targets(model, input, target, self.batch)
    }
}

/// The number of images of a batch ([`gaze_core::numeric::check_images`]), and an error when
/// `target` gives per-image lists for another number of images.
pub(crate) fn batch_size(input: &Tensor, target: &Target) -> Result<usize> {
    let n = gaze_core::numeric::check_images(input)?;
    if let TargetSpec::PerImage(lists) = &target.spec {
        if lists.len() != n {
            return Err(Error::TargetBatchMismatch { got: lists.len(), batch: n });
        }
    }
    Ok(n)
}

/// The part of `target` that concerns the images of chunk `c`.
pub(crate) fn chunk_target(target: &Target, c: Chunk) -> Result<Target> {
    match &target.spec {
        TargetSpec::PerImage(lists) => {
            let part = lists
                .get(c.start..c.start + c.len)
                .ok_or(Error::TargetBatchMismatch { got: lists.len(), batch: c.start + c.len })?;
            Ok(Target::per_image_lists(part.to_vec()).with_score(target.score.clone()))
        }
        _ => Ok(target.clone()),
    }
}

/// The classes `target` names for each image, from a plain forward pass `batch` images at a time.
pub(crate) fn resolve_targets<M: TapModel + ?Sized>(
    model: &M,
    input: &Tensor,
    target: &Target,
    batch: usize,
) -> Result<Vec<Vec<usize>>> {
    let n = batch_size(input, target)?;
    let mut out = Vec::with_capacity(n);
    for c in chunks(n, batch)? {
        let outputs = scored(model, &c.of(input)?, &target.score)?;
        out.extend(chunk_target(target, c)?.resolve(&outputs)?);
    }
    Ok(out)
}

fn scored<M: TapModel + ?Sized>(model: &M, x: &Tensor, score: &Score) -> Result<Tensor> {
    scored_outputs(&model.forward(x)?, score)
}
