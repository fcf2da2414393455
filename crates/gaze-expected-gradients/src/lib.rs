//! # gaze-expected-gradients
//!
//! Expected gradients as SHAP's `GradientExplainer` computes them: integrated gradients averaged
//! over baselines drawn from a background set, estimated by sampling.
//! Each sample of image `x` draws a background row `x'` and a point `t ~ U(0, 1)` on the path between
//! them, and contributes `∂f/∂z(z) ⊙ (x − x')` at `z = t·x + (1 − t)·x'`; the attribution is the mean
//! of the samples and the variance of that mean is returned beside it (`var / √S`, as shap reports
//! it).
//! Local smoothing adds Gaussian noise to `x` before each sample (shap's `local_smoothing`).
//! Targets may be the `K` top outputs of each image ranked by their maximum, minimum or absolute
//! value (shap's `ranked_outputs` and `output_rank_order`); all targets of an image share its
//! samples, so each chunk of samples runs one forward pass and one backward pass per target.
//!
//! Three places the attribution can live ([`Space`]):
//! - [`Space::Input`]: the model's input, as above.
//! - [`Space::Layer`]: shap's PyTorch `(model, layer)` form.
//!   The path still runs between images in pixel space, but the gradient is taken at the layer and
//!   multiplied by the layer's activation *at the sample point*, `∂f/∂h(z) ⊙ h(z)`, exactly as shap's
//!   code multiplies it (not by `h(x) − h(x')`).
//! - [`Space::LayerSpace`]: the TensorFlow tutorial's form, where the layer's activations are the
//!   explained input: `h(x)` and `h(x')` are computed once, the path runs between them in the layer's
//!   space, and only the tail of the network runs per sample, from the layer
//!   ([`TapModel::forward_from`]); the head never runs per sample.
//!
//! Samples are drawn from a seeded generator, or replayed from an explicit [`SamplePlan`] (background
//! indices, alphas and noise), so results can be matched draw for draw against shap.
//!
//! This crate owns expected gradients only; it runs models through `gaze-engine` and must not know
//! any particular model, nor draw anything.
//!
//! ## References
//! - Erion et al., "Improving performance of deep learning models with axiomatic attribution
//!   priors and expected gradients", 2019, <https://arxiv.org/abs/1906.10670>.
//! - Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions" (SHAP), 2017,
//!   <https://arxiv.org/abs/1705.07874>.

use std::fmt;

use candle_core::{DType, Tensor};
use gaze_core::{
    select, Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Score, Target, TargetSpec,
};
use gaze_engine::{chunks, probe, scored_outputs, ProbeRequest, TapModel, Taps};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// The command-line name of the method.
pub const METHOD: &str = "expected-gradients";

/// Which outputs `--top K` picks (shap's `output_rank_order`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RankOrder {
    /// The largest outputs first.
    #[default]
    Max,
    /// The smallest outputs first.
    Min,
    /// The largest absolute outputs first (as shap's PyTorch explainer; its TensorFlow explainer
    /// sorts `|outputs|` ascending and so picks the smallest).
    MaxAbs,
}

impl RankOrder {
    pub const ALL: [RankOrder; 3] = [RankOrder::Max, RankOrder::Min, RankOrder::MaxAbs];

    /// shap's name: `max`, `min` or `max_abs`.
    pub fn name(self) -> &'static str {
        match self {
            RankOrder::Max => "max",
            RankOrder::Min => "min",
            RankOrder::MaxAbs => "max_abs",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        RankOrder::ALL.into_iter().find(|r| r.name() == text).ok_or_else(|| Error::InvalidOption {
            option: "--rank-order".into(),
            value: text.into(),
            expected: "max, min or max_abs".into(),
        })
    }

    /// The indices of the `k` best outputs of each row `[N, K]`, best first; ties go to the lower
    /// index.
    pub fn rank(self, outputs: &Tensor, k: usize) -> Result<Vec<Vec<usize>>> {
        let (_, classes) = outputs.dims2().map_err(|_| Error::Shape {
            what: "model outputs".into(),
            expected: "[N, classes]".into(),
            got: outputs.dims().to_vec(),
        })?;
        if k == 0 || k > classes {
            return Err(Error::TopKOutOfRange { k, num_classes: classes });
        }
        let rows = outputs.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        Ok(rows
            .iter()
            .map(|row| {
                let key = |i: usize| match self {
                    RankOrder::Max => -row[i],
                    RankOrder::Min => row[i],
                    RankOrder::MaxAbs => -row[i].abs(),
                };
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
                idx.truncate(k);
                idx
            })
            .collect())
    }
}

impl fmt::Display for RankOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the attribution lives and where the path between image and background runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Space {
    /// The model's input: `E[∂f/∂x(z) ⊙ (x − x')]` (shap with a plain model).
    #[default]
    Input,
    /// shap's PyTorch `(model, layer)`: the path runs in pixel space, the gradient is taken at the
    /// layer's activation `h` and multiplied by `h(z)` at the sample point: `E[∂f/∂h(z) ⊙ h(z)]`.
    /// Name the tap whose activation is the input of shap's `layer` module.
    Layer(String),
    /// The TensorFlow tutorial's layer space: the path runs between `h(x)` and `h(x')` and only the
    /// tail of the network runs per sample: `E[∂f/∂h(z) ⊙ (h(x) − h(x'))]` with
    /// `z = t·h(x) + (1 − t)·h(x')`. The layer must be one the model can start from
    /// ([`TapModel::cut_points`]).
    LayerSpace(String),
}

impl Space {
    /// The space named by the command line's `--layer` and `--layer-space`.
    pub fn from_options(layer: Option<&str>, layer_space: bool) -> Result<Self> {
        match (layer, layer_space) {
            (None, false) => Ok(Space::Input),
            (Some(l), false) => Ok(Space::Layer(l.to_string())),
            (Some(l), true) => Ok(Space::LayerSpace(l.to_string())),
            (None, true) => Err(Error::InvalidOption {
                option: "--layer-space".into(),
                value: "(no --layer)".into(),
                expected: "a --layer to interpolate at".into(),
            }),
        }
    }

    /// The layer, where there is one.
    pub fn layer(&self) -> Option<&str> {
        match self {
            Space::Input => None,
            Space::Layer(l) | Space::LayerSpace(l) => Some(l),
        }
    }
}

/// An explicit plan of samples, replayed instead of drawn: for image `n` and sample `s`, the
/// background row `indices[n][s]`, the point `alphas[n][s]` on the path, and the local-smoothing
/// noise `noise[n, s]` added to the explained input (the image, or its activation in layer space).
#[derive(Clone, Debug)]
pub struct SamplePlan {
    /// `[N][S]` background rows.
    pub indices: Vec<Vec<usize>>,
    /// `[N][S]` points in `[0, 1]`: `z = t·x + (1 − t)·x'`; any other value (NaN included) is
    /// refused when the plan is used.
    pub alphas: Vec<Vec<f64>>,
    /// `[N, S, ...]` noise in the explained space, already scaled; `None` for no noise.
    pub noise: Option<Tensor>,
}

/// Expected gradients with shap's defaults: 200 samples, no local smoothing, chunks of 50.
#[derive(Clone, Debug)]
pub struct ExpectedGradients {
    /// Background images `[B, C, H, W]`, preprocessed like the input.
    pub background: Tensor,
    /// Samples per image (shap's `nsamples`); a plan sets it.
    pub samples: usize,
    /// The standard deviation of the noise added to the explained input before each sample.
    pub local_smoothing: f64,
    pub space: Space,
    /// How `--top K` ranks the outputs.
    pub rank_order: RankOrder,
    pub seed: u64,
    /// Samples to replay instead of drawing them.
    pub plan: Option<SamplePlan>,
    /// The most samples that run through the model at once (shap's `batch_size`).
    pub batch: usize,
}

/// Expected gradients with the variance of each estimate.
#[derive(Clone, Debug)]
pub struct ExpectedGradientsOutput {
    /// The maps `[N, T, ...]`; `targets` are the ranked outputs (shap's returned indexes).
    pub attribution: Attribution,
    /// `var_s(samples) / √S` for each value of the maps (shap's `return_variances`).
    pub variance: Tensor,
}

impl ExpectedGradients {
    pub fn new(background: Tensor) -> Self {
        ExpectedGradients {
            background,
            samples: 200,
            local_smoothing: 0.0,
            space: Space::Input,
            rank_order: RankOrder::Max,
            seed: 0,
            plan: None,
            batch: 50,
        }
    }

    pub fn with_samples(mut self, samples: usize) -> Self {
        self.samples = samples;
        self
    }

    pub fn with_local_smoothing(mut self, sigma: f64) -> Self {
        self.local_smoothing = sigma;
        self
    }

    pub fn with_space(mut self, space: Space) -> Self {
        self.space = space;
        self
    }

    pub fn with_rank_order(mut self, order: RankOrder) -> Self {
        self.rank_order = order;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_plan(mut self, plan: SamplePlan) -> Self {
        self.plan = Some(plan);
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// The classes to explain from the scored outputs `[N, K]`: `--top K` ranked by
    /// [`rank_order`](ExpectedGradients::rank_order), anything else as [`Target::resolve`] does.
    pub fn resolve(&self, target: &Target, outputs: &Tensor) -> Result<Vec<Vec<usize>>> {
        match target.spec {
            TargetSpec::TopClass => self.rank_order.rank(outputs, 1),
            TargetSpec::Top(k) => self.rank_order.rank(outputs, k),
            _ => target.resolve(outputs),
        }
    }

    /// Explains `target` for every image of `input` and returns the variance of each estimate.
    ///
    /// Costs, for N images, B background rows, S samples and T targets:
    /// - input space and [`Space::Layer`]: N forward passes to rank the outputs, then `N·S` samples
    ///   in chunks of `batch`, each chunk one full forward pass and T backward passes (in
    ///   [`Space::Layer`] the backward passes stop at the layer);
    /// - [`Space::LayerSpace`]: `N + B` full forward passes once (the activations of the images and of
    ///   the background), then `N·S` samples through the tail only, one tail forward and T tail
    ///   backward passes per chunk.
    pub fn explain_with_variance<M: TapModel + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
    ) -> Result<ExpectedGradientsOutput> {
        let n = gaze_core::numeric::check_images(input)?;
        let bg_count = self.background.dim(0).unwrap_or(0);
        if self.background.rank() == input.rank() && bg_count == 0 {
            return Err(Error::InvalidOption {
                option: "the background set".into(),
                value: format!("{:?} (empty)", self.background.dims()),
                expected: format!(
                    "at least one background row [B, {}] with B ≥ 1; the baselines are drawn from it",
                    join(&input.dims()[1..])
                ),
            });
        }
        if self.background.rank() != input.rank() || self.background.dims()[1..] != input.dims()[1..] || bg_count == 0 {
            return Err(Error::Shape {
                what: "background".into(),
                expected: format!("[B, {}] with B ≥ 1, like the input", join(&input.dims()[1..])),
                got: self.background.dims().to_vec(),
            });
        }
        if !(self.local_smoothing.is_finite() && self.local_smoothing >= 0.0) {
            return Err(Error::InvalidOption {
                option: "--local-smoothing".into(),
                value: self.local_smoothing.to_string(),
                expected: "a finite standard deviation of at least 0".into(),
            });
        }
        gaze_core::numeric::ensure_finite(&self.background, "the background set")?;
        let background = self.background.to_dtype(input.dtype())?.to_device(input.device())?;
        let layer = self.space.layer().map(|l| model.resolve_layer(l)).transpose()?;
        if let Space::LayerSpace(_) = self.space {
            let layer = layer.as_deref().unwrap_or_default();
            if !model.cut_points().iter().any(|c| c == layer) {
                return Err(Error::UnsupportedLayer {
                    name: layer.to_string(),
                    reason: format!(
                        "layer-space expected gradients run only the tail of the network from the \
                         layer, so it must be a point the model can start from; it can start at: {}",
                        or_none(&model.cut_points())
                    ),
                });
            }
        }

        // One forward pass of the images ranks the outputs (and, in layer space, records h(x)).
        let record = match self.space {
            Space::LayerSpace(_) => layer.as_deref(),
            _ => None,
        };
        let (outputs, explained) = forward_recording(model, input, record, &target.score, self.batch)?;
        let targets = self.resolve(target, &outputs)?;
        let scores = select(&outputs, &targets)?;
        let (explained, reference) = match (record, explained) {
            (Some(_), Some(h_x)) => {
                let (_, h_bg) = forward_recording(model, &background, record, &Score::Logit, self.batch)?;
                let h_bg = h_bg.ok_or_else(|| Error::msg("the background's activations were not recorded"))?;
                (h_x, h_bg)
            }
            _ => (input.clone(), background),
        };

        let mut plan = self.plan_for(n, bg_count, explained.dims())?;
        let samples = plan.samples;
        let total = n.checked_mul(samples).ok_or_else(|| Error::InvalidOption {
            option: "--samples".into(),
            value: samples.to_string(),
            expected: format!("at most {} samples per image for {n} images", usize::MAX / n),
        })?;
        let space_dims = explained.dims()[1..].to_vec();
        let per_row: usize = space_dims.iter().product();
        let device = input.device();
        let dtype = input.dtype();
        let mut noise_rng = StdRng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut sum: Option<Tensor> = None;
        let mut sum_sq: Option<Tensor> = None;

        // Samples are ordered image by image, as shap loops over them.
        for chunk in chunks(total, self.batch)? {
            let rows = chunk.start..chunk.start + chunk.len;
            let images: Vec<u32> = rows.clone().map(|r| (r / samples) as u32).collect();
            let image_index = Tensor::from_vec(images, chunk.len, device)?;
            let (bg_rows, alphas) = plan.rows(rows.clone());
            let bg_index: Vec<u32> = bg_rows.into_iter().map(|i| i as u32).collect();
            let bg_index = Tensor::from_vec(bg_index, chunk.len, device)?;
            let mut column_shape = vec![chunk.len];
            column_shape.extend(std::iter::repeat_n(1, space_dims.len()));
            // shap computes t·x + (1 − t)·x', both factors rounded from f64 to the input's dtype.
            let column = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
                let v: Vec<f64> = alphas.iter().map(|&t| f(t)).collect();
                Ok(Tensor::from_vec(v, chunk.len, device)?.to_dtype(dtype)?.reshape(column_shape.as_slice())?)
            };
            let alpha = column(&|t| t)?;
            let one_minus = column(&|t| 1.0 - t)?;

            let mut x = explained.index_select(&image_index, 0)?;
            match &plan.noise {
                Some(noise) => {
                    let part = noise.narrow(0, chunk.start, chunk.len)?;
                    x = (x + part.to_dtype(dtype)?.to_device(device)?)?;
                }
                None if self.local_smoothing > 0.0 => {
                    let draws: Vec<f64> = (0..chunk.len * per_row)
                        .map(|_| self.local_smoothing * noise_rng.sample::<f64, _>(StandardNormal))
                        .collect();
                    let noise = Tensor::from_vec(draws, x.shape(), device)?.to_dtype(dtype)?;
                    x = (x + noise)?;
                }
                None => {}
            }
            let x_ref = reference.index_select(&bg_index, 0)?;
            let z = (x.broadcast_mul(&alpha)? + x_ref.broadcast_mul(&one_minus)?)?;
            let lists: Vec<Vec<usize>> = rows.clone().map(|r| targets[r / samples].clone()).collect();
            let sample_target = Target::per_image_lists(lists).with_score(target.score.clone());
            let contrib = match &self.space {
                Space::Input => {
                    let g = input_gradient(probe(model, &z, &sample_target, &ProbeRequest::input())?)?;
                    g.broadcast_mul(&(x - x_ref)?.unsqueeze(1)?)?
                }
                Space::Layer(asked) => {
                    let mut p = probe(model, &z, &sample_target, &ProbeRequest::layers([asked.clone()]))?;
                    let g = p.gradients.remove(asked);
                    let h = p.activations.remove(asked);
                    match (g, h) {
                        (Some(g), Some(h)) => g.broadcast_mul(&h.unsqueeze(1)?)?,
                        _ => return Err(Error::msg(format!("the probe captured nothing at layer `{asked}`"))),
                    }
                }
                Space::LayerSpace(_) => {
                    let start = layer.clone().unwrap_or_default();
                    let request = ProbeRequest::input().starting_at(start);
                    let g = input_gradient(probe(model, &z, &sample_target, &request)?)?;
                    g.broadcast_mul(&(x - x_ref)?.unsqueeze(1)?)?
                }
            };
            let contrib = contrib.to_dtype(DType::F64)?;
            let sq = contrib.sqr()?;
            let mut shape = contrib.dims().to_vec();
            shape[0] = n;
            let zeros = || Tensor::zeros(shape.as_slice(), DType::F64, device);
            sum = Some(sum.map_or_else(zeros, Ok)?.index_add(&image_index, &contrib, 0)?);
            sum_sq = Some(sum_sq.map_or_else(zeros, Ok)?.index_add(&image_index, &sq, 0)?);
        }
        let (sum, sum_sq) = match (sum, sum_sq) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Error::msg("expected gradients ran no samples")),
        };
        let s = samples as f64;
        let mean = (sum / s)?;
        let variance = (((sum_sq / s)? - mean.sqr()?)?.relu()? / s.sqrt())?;

        let (resolution, layers) = match self.space.layer() {
            Some(l) => (Resolution::Layer, vec![l.to_string()]),
            None => (Resolution::Input, Vec::new()),
        };
        let meta = AttributionMeta::new(METHOD, resolution)
            .with_layers(layers)
            .with_score(target.score.name())
            .with_option("samples", samples)
            .with_option("background", bg_count)
            .with_option("local-smoothing", self.local_smoothing)
            .with_option("layer-space", matches!(self.space, Space::LayerSpace(_)))
            .with_option("rank-order", self.rank_order)
            .with_option("seed", if self.plan.is_some() { "plan".to_string() } else { self.seed.to_string() })
            .with_option("batch", self.batch);
        Ok(ExpectedGradientsOutput {
            attribution: Attribution { values: mean.to_dtype(dtype)?, targets, scores: Some(scores), meta },
            variance: variance.to_dtype(dtype)?,
        })
    }

    /// The plan to run: the given one, checked, or draws from the seed, made as the samples run.
    fn plan_for(&self, n: usize, bg_count: usize, explained: &[usize]) -> Result<Resolved<'_>> {
        let Some(plan) = &self.plan else {
            if self.samples == 0 {
                return Err(Error::InvalidOption {
                    option: "--samples".into(),
                    value: "0".into(),
                    expected: "at least 1 sample".into(),
                });
            }
            let draws = Draws::Seeded { rng: Box::new(StdRng::seed_from_u64(self.seed)), bg_count };
            return Ok(Resolved { samples: self.samples, draws, noise: None });
        };
        let samples = plan.indices.first().map(Vec::len).unwrap_or(0);
        let bad = |what: &str, expected: String, got: Vec<usize>| Error::Shape {
            what: format!("sample plan {what}"),
            expected,
            got,
        };
        if plan.indices.len() != n || samples == 0 || plan.indices.iter().any(|r| r.len() != samples) {
            return Err(bad("indices", format!("[{n}, S] with S ≥ 1"), vec![plan.indices.len(), samples]));
        }
        if plan.alphas.len() != n || plan.alphas.iter().any(|r| r.len() != samples) {
            return Err(bad(
                "alphas",
                format!("[{n}, {samples}] like the indices"),
                vec![plan.alphas.len(), plan.alphas.first().map(Vec::len).unwrap_or(0)],
            ));
        }
        if let Some((i, a)) = plan
            .alphas
            .iter()
            .enumerate()
            .find_map(|(i, row)| row.iter().find(|a| !(0.0..=1.0).contains(*a)).map(|a| (i, a)))
        {
            return Err(Error::InvalidOption {
                option: format!("sample plan alpha (image {i})"),
                value: a.to_string(),
                expected: "a point on the path in [0, 1]".into(),
            });
        }
        if let Some(&i) = plan.indices.iter().flatten().find(|&&i| i >= bg_count) {
            return Err(Error::InvalidOption {
                option: "sample plan index".into(),
                value: i.to_string(),
                expected: format!("a background row in 0..{bg_count}"),
            });
        }
        let noise = match &plan.noise {
            None => None,
            Some(noise) => {
                let mut want = vec![n, samples];
                want.extend_from_slice(&explained[1..]);
                if noise.dims() != want.as_slice() {
                    return Err(bad("noise", format!("{want:?}"), noise.dims().to_vec()));
                }
                gaze_core::numeric::ensure_finite(noise, "the sample plan's noise")?;
                let mut flat = vec![n * samples];
                flat.extend_from_slice(&explained[1..]);
                Some(noise.reshape(flat)?)
            }
        };
        let draws = Draws::Plan { indices: &plan.indices, alphas: &plan.alphas };
        Ok(Resolved { samples, draws, noise })
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for ExpectedGradients {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        Ok(self.explain_with_variance(model, input, target)?.attribution)
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        let (outputs, _) = forward_recording(model, input, None, &target.score, self.batch)?;
        self.resolve(target, &outputs)
    }
}

/// A plan with its sample count, its noise flattened to `[N · S, ...]`.
struct Resolved<'a> {
    samples: usize,
    draws: Draws<'a>,
    noise: Option<Tensor>,
}

/// Where the background rows and path points of the samples come from.
enum Draws<'a> {
    /// An explicit plan's `[N][S]` tables.
    Plan { indices: &'a [Vec<usize>], alphas: &'a [Vec<f64>] },
    /// Seeded draws made as the samples run, image by image and sample by sample (a row of the
    /// background, then a point), so that memory does not grow with the number of samples.
    Seeded { rng: Box<StdRng>, bg_count: usize },
}

impl Resolved<'_> {
    /// The background rows and points of the samples `rows` (`image · S + sample`); seeded draws
    /// must be asked for in order, each row once, as the chunks run.
    fn rows(&mut self, rows: std::ops::Range<usize>) -> (Vec<usize>, Vec<f64>) {
        let samples = self.samples;
        match &mut self.draws {
            Draws::Plan { indices, alphas } => (
                rows.clone().map(|r| indices[r / samples][r % samples]).collect(),
                rows.map(|r| alphas[r / samples][r % samples]).collect(),
            ),
            Draws::Seeded { rng, bg_count } => {
                rows.map(|_| (rng.random_range(0..*bg_count), rng.random::<f64>())).unzip()
            }
        }
    }
}

/// The scored outputs `[N, K]` of `x` and, when `layer` is given, its activation there, `batch`
/// images at a time.
fn forward_recording<M: TapModel + ?Sized>(
    model: &M,
    x: &Tensor,
    layer: Option<&str>,
    score: &Score,
    batch: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    let mut outputs = Vec::new();
    let mut acts = Vec::new();
    for c in chunks(x.dim(0)?, batch)? {
        let mut taps = match layer {
            Some(l) => Taps::none().record(l),
            None => Taps::none(),
        };
        let logits = model.forward_taps(&c.of(x)?, &mut taps)?;
        taps.check_requests()?;
        outputs.push(scored_outputs(&logits, score)?.detach());
        if let Some(l) = layer {
            let a =
                taps.activation(l).ok_or_else(|| Error::msg(format!("the model recorded nothing at layer `{l}`")))?;
            acts.push(a.detach());
        }
    }
    let acts = if acts.is_empty() { None } else { Some(Tensor::cat(&acts, 0)?) };
    Ok((Tensor::cat(&outputs, 0)?, acts))
}

fn input_gradient(p: gaze_engine::Probe) -> Result<Tensor> {
    p.input_gradient.ok_or_else(|| Error::msg("the probe returned no input gradient"))
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use gaze_testkit::{Act, Net};

    #[test]
    fn an_empty_background_set_is_an_error_that_says_so() {
        let net = Net::new(1, Act::Relu, DType::F32);
        let x = net.input(2, 1);
        let empty = net.input(2, 2).narrow(0, 0, 0).unwrap();
        let err = ExpectedGradients::new(empty).explain(&net, &x, &Target::top_class()).unwrap_err().to_string();
        assert!(err.contains("the background set") && err.contains("(empty)") && err.contains("B ≥ 1"), "{err}");
        let one_row = net.input(1, 2);
        let ok = ExpectedGradients::new(one_row).with_samples(3).explain(&net, &x, &Target::top_class());
        assert!(ok.is_ok(), "one background row is enough: {:?}", ok.err());
    }
}
