//! # gaze-integrated-gradients
//!
//! Integrated gradients: the gradient of a target score integrated along the straight path from a
//! baseline to the input, times the input's difference from the baseline,
//! `IG_i(x) = (x_i − x'_i) ∫₀¹ ∂f(x' + α(x − x'))/∂x_i dα`.
//!
//! The integral is approximated as Captum approximates it ([`Quadrature`]: Gauss–Legendre by default,
//! or one of its Riemann sums, with the same points and weights), from any [`Baseline`] (zeros, a
//! tensor, a blurred copy of the image).
//! Every image and target also gets its convergence delta, the sum of its attributions minus
//! `f(x) − f(x')`, which completeness says is zero and which shrinks as the number of steps grows.
//! The path points of all images run through the model in chunks of at most `batch` points, one
//! forward and one backward per target each, so memory does not grow with the number of steps.
//!
//! This crate owns integrated gradients only; it runs models through `gaze-engine`'s probe and must
//! not know any particular model, nor draw anything.
//!
//! ## Reference
//! Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
//! <https://arxiv.org/abs/1703.01365>.

mod baseline;
mod quadrature;

use candle_core::{DType, Tensor};
use gaze_core::{select, Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Score, Target};
use gaze_engine::{chunks, map_chunks, probe, scored_outputs, ProbeRequest, TapModel};

pub use baseline::{gaussian_blur, Baseline, DEFAULT_BLUR_SIGMA, MAX_BLUR_SIGMA};
pub use quadrature::{gauss_legendre, Quadrature, MAX_STEPS};

/// The command-line name of the method.
pub const METHOD: &str = "integrated-gradients";

/// Integrated gradients with Captum's defaults: 50 Gauss–Legendre steps from a zero baseline.
///
/// ```
/// use gaze_integrated_gradients::{Baseline, IntegratedGradients, Quadrature};
/// let ig = IntegratedGradients::default()
///     .with_steps(16)
///     .with_quadrature(Quadrature::RiemannTrapezoid)
///     .with_baseline(Baseline::Blur { sigma: 3.0 })
///     .with_batch(32);
/// assert_eq!(ig.steps, 16);
/// ```
#[derive(Clone, Debug)]
pub struct IntegratedGradients {
    /// The number of points on the path (Captum's `n_steps`).
    pub steps: usize,
    /// How the path integral is approximated (Captum's `method`).
    pub quadrature: Quadrature,
    /// Where the path starts.
    pub baseline: Baseline,
    /// The most path points (images × steps) that run through the model at once (Captum's
    /// `internal_batch_size`).
    pub batch: usize,
}

impl Default for IntegratedGradients {
    fn default() -> Self {
        IntegratedGradients { steps: 50, quadrature: Quadrature::GaussLegendre, baseline: Baseline::Zero, batch: 64 }
    }
}

/// Integrated gradients with the convergence delta of each map.
#[derive(Clone, Debug)]
pub struct IntegratedGradientsOutput {
    /// The maps `[N, T, C, H, W]`, with the target scores `f(x)` as `scores`.
    pub attribution: Attribution,
    /// `Σ attributions − (f(x) − f(baseline))` for each image and target, `[N, T]`, in the input's
    /// dtype (computed in `f64`).
    pub delta: Tensor,
}

impl IntegratedGradients {
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    pub fn with_quadrature(mut self, quadrature: Quadrature) -> Self {
        self.quadrature = quadrature;
        self
    }

    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = baseline;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Explains `target` for every image of `input` `[N, C, H, W]` and reports the convergence delta.
    ///
    /// Costs `2N` forward passes for the end points (to pick the targets and for the delta), then
    /// `N · steps` path points in chunks of `batch`, each chunk one forward and `T` backward passes.
    pub fn explain_with_delta<M: TapModel + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
    ) -> Result<IntegratedGradientsOutput> {
        let (step_sizes, alphas) = self.quadrature.rule(self.steps)?;
        let n = batch_size(input)?;
        let dtype = input.dtype();
        let device = input.device();
        let baseline = self.baseline.materialise(input)?;

        let out_x = scored_forward(model, input, &target.score, self.batch)?;
        let targets = target.resolve(&out_x)?;
        let t = targets.first().map(Vec::len).unwrap_or(0);
        let out_b = scored_forward(model, &baseline, &target.score, self.batch)?;
        let f_x = select(&out_x, &targets)?;
        let f_b = select(&out_b, &targets)?;

        let diff = (input - &baseline)?;
        let rest = &input.dims()[1..];
        let mut acc_shape = vec![n, t];
        acc_shape.extend_from_slice(rest);
        let mut acc = Tensor::zeros(acc_shape, DType::F64, device)?;
        let column = |values: Vec<f64>, dt: DType| -> Result<Tensor> {
            let len = values.len();
            let mut shape = vec![len];
            shape.extend(std::iter::repeat_n(1, rest.len()));
            Ok(Tensor::from_vec(values, len, device)?.to_dtype(dt)?.reshape(shape)?)
        };
        for chunk in chunks(self.steps * n, self.batch)? {
            // Rows are ordered step by step, all images of a step together, as Captum stacks them.
            let rows = chunk.start..chunk.start + chunk.len;
            let images: Vec<u32> = rows.clone().map(|r| (r % n) as u32).collect();
            let index = Tensor::from_vec(images, chunk.len, device)?;
            let alpha = column(rows.clone().map(|r| alphas[r / n]).collect(), dtype)?;
            let point = baseline.index_select(&index, 0)?.add(&diff.index_select(&index, 0)?.broadcast_mul(&alpha)?)?;
            let lists = rows.clone().map(|r| targets[r % n].clone()).collect();
            let step_target = Target::per_image_lists(lists).with_score(target.score.clone());
            let grads = probe(model, &point, &step_target, &ProbeRequest::input())?
                .input_gradient
                .ok_or_else(|| Error::msg("the probe returned no input gradient"))?;
            // [B, T, ...] weighted by each row's step size, summed into its image.
            let weight = column(rows.map(|r| step_sizes[r / n]).collect(), DType::F64)?.unsqueeze(1)?;
            let weighted = grads.to_dtype(DType::F64)?.broadcast_mul(&weight)?;
            acc = acc.index_add(&index, &weighted, 0)?;
        }
        let values = acc.broadcast_mul(&diff.to_dtype(DType::F64)?.unsqueeze(1)?)?;
        let sums = values.flatten_from(2)?.sum(2)?;
        let gap = (f_x.to_dtype(DType::F64)? - f_b.to_dtype(DType::F64)?)?;
        let delta = (sums - gap)?.to_dtype(dtype)?;

        let meta = AttributionMeta::new(METHOD, Resolution::Input)
            .with_score(target.score.name())
            .with_option("steps", self.steps)
            .with_option("quadrature", self.quadrature)
            .with_option("baseline", &self.baseline)
            .with_option("batch", self.batch);
        Ok(IntegratedGradientsOutput {
            attribution: Attribution { values: values.to_dtype(dtype)?, targets, scores: Some(f_x), meta },
            delta,
        })
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for IntegratedGradients {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        Ok(self.explain_with_delta(model, input, target)?.attribution)
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        batch_size(input)?;
        target.resolve(&scored_forward(model, input, &target.score, self.batch)?)
    }
}

/// The number of images of a batch ([`gaze_core::numeric::check_images`]).
fn batch_size(input: &Tensor) -> Result<usize> {
    gaze_core::numeric::check_images(input)
}

/// The scored outputs `[N, K]` of a plain forward pass, `batch` images at a time.
fn scored_forward<M: TapModel + ?Sized>(model: &M, input: &Tensor, score: &Score, batch: usize) -> Result<Tensor> {
    map_chunks(input.dim(0)?, batch, |c| scored_outputs(&model.forward(&c.of(input)?)?, score))
}
