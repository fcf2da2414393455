//! # gaze-smoothgrad
//!
//! The noise tunnel: any attribution method run on noisy copies of each image, the maps then
//! aggregated per image, as Captum's `NoiseTunnel` does.
//! [`Aggregate::Mean`] is SmoothGrad, [`Aggregate::Square`] SmoothGrad² (the mean of the squared
//! maps) and [`Aggregate::Var`] VarGrad (their variance, `E[a²] − E[a]²`).
//!
//! The noise is Gaussian with a standard deviation given in the model's input units or as a
//! fraction of each image's range (`max − min`, the SmoothGrad paper's noise level), drawn from a
//! seeded generator, or given outright as a plan of draws so that a test can replay a peer's exact
//! noise ([`Noise`]).
//! Targets are fixed on the clean images first ([`Explainer::resolve_targets`]), so every noisy copy
//! of an image explains the same classes.
//! The copies of all images run in chunks of at most `batch` copies: the wrapped method is called
//! on each chunk as one stacked batch, with each copy's targets repeated, and only the running sums
//! are kept.
//!
//! This crate owns the noise tunnel only: it knows no model and no gradient machinery (it depends on
//! `gaze-core` alone), so it wraps any [`Explainer`] for any kind of model.
//!
//! ## References
//! - Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017,
//!   <https://arxiv.org/abs/1706.03825>.
//! - Adebayo et al., "Local Explanation Methods for Deep Neural Networks Lack Sensitivity to
//!   Parameter Values" (VarGrad), 2018, <https://arxiv.org/abs/1810.03307>.
//! - Hooker et al., "A Benchmark for Interpretability Methods in Deep Neural Networks"
//!   (SmoothGrad²), 2019, <https://arxiv.org/abs/1806.10758>.

use std::fmt;

use candle_core::{DType, Tensor};
use gaze_core::{Attribution, Error, Explainer, Result, Target, TargetSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// The command-line name of the method.
pub const METHOD: &str = "smoothgrad";

/// How the maps of the noisy copies of an image are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregate {
    /// SmoothGrad: the mean map, `E[a]`.
    #[default]
    Mean,
    /// SmoothGrad²: the mean of the squared maps, `E[a²]`.
    Square,
    /// VarGrad: the variance of the maps, `E[a²] − E[a]²` (the population variance, as Captum).
    Var,
}

impl Aggregate {
    pub const ALL: [Aggregate; 3] = [Aggregate::Mean, Aggregate::Square, Aggregate::Var];

    /// The command-line name: `mean`, `square` or `var`.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Mean => "mean",
            Aggregate::Square => "square",
            Aggregate::Var => "var",
        }
    }

    /// Captum's `nt_type` for the same aggregate.
    pub fn captum_name(self) -> &'static str {
        match self {
            Aggregate::Mean => "smoothgrad",
            Aggregate::Square => "smoothgrad_sq",
            Aggregate::Var => "vargrad",
        }
    }

    /// Parses a command-line name or Captum's `nt_type`.
    pub fn parse(text: &str) -> Result<Self> {
        Aggregate::ALL.into_iter().find(|a| a.name() == text || a.captum_name() == text).ok_or_else(|| {
            Error::InvalidOption {
                option: "--aggregate".into(),
                value: text.into(),
                expected: "mean, square or var (or Captum's smoothgrad, smoothgrad_sq, vargrad)".into(),
            }
        })
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The noise added to each copy.
#[derive(Clone, Debug)]
pub enum Noise {
    /// Gaussian noise of this standard deviation, in the model's input units (Captum's `stdevs`,
    /// tf-explain's `noise`).
    Sigma(f64),
    /// Gaussian noise whose standard deviation is this fraction of each image's range
    /// `max(x) − min(x)` (the SmoothGrad paper's noise level, Zennit's `noise_level`).
    Fraction(f64),
    /// The noise itself, `[N, S, C, H, W]`: `plan[n][s]` is added to image `n` for its `s`-th copy
    /// (the layout of Captum's `repeat_interleave`d copies, image by image).
    /// The plan sets the number of samples.
    Plan(Tensor),
}

impl Noise {
    /// The noise named by the command line's `--noise SIGMA` or `--noise-frac F` (at most one of
    /// them); `default` when neither is given.
    pub fn from_options(sigma: Option<f64>, fraction: Option<f64>, default: Noise) -> Result<Self> {
        let check = |option: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(Error::InvalidOption {
                    option: option.into(),
                    value: v.to_string(),
                    expected: "a finite number of at least 0".into(),
                })
            }
        };
        match (sigma, fraction) {
            (Some(s), None) => Ok(Noise::Sigma(check("--noise", s)?)),
            (None, Some(f)) => Ok(Noise::Fraction(check("--noise-frac", f)?)),
            (None, None) => Ok(default),
            (Some(s), Some(f)) => Err(Error::InvalidOption {
                option: "--noise / --noise-frac".into(),
                value: format!("{s} and {f}"),
                expected: "one of --noise (absolute) or --noise-frac (fraction of the range), not both".into(),
            }),
        }
    }
}

impl fmt::Display for Noise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Noise::Sigma(s) => write!(f, "sigma:{s}"),
            Noise::Fraction(r) => write!(f, "fraction:{r}"),
            Noise::Plan(t) => write!(f, "plan{:?}", t.dims()),
        }
    }
}

/// The noise tunnel over the method `E`.
///
/// ```
/// use gaze_smoothgrad::{Aggregate, Noise, SmoothGrad};
/// # struct Method;
/// let sg = SmoothGrad::new(Method)
///     .with_samples(80)
///     .with_noise(Noise::Sigma(0.2))
///     .with_aggregate(Aggregate::Var)
///     .with_seed(7)
///     .with_batch(16);
/// assert_eq!(sg.samples, 80);
/// ```
#[derive(Clone, Debug)]
pub struct SmoothGrad<E> {
    /// The method run on every noisy copy.
    pub inner: E,
    /// The number of noisy copies of each image (Captum's `nt_samples`); a noise plan sets it.
    pub samples: usize,
    pub noise: Noise,
    pub aggregate: Aggregate,
    /// The seed of the noise generator.
    pub seed: u64,
    /// The most noisy copies (images × samples) the wrapped method gets at once (Captum's
    /// `nt_samples_batch_size`, counted in copies of all images).
    pub batch: usize,
}

impl<E> SmoothGrad<E> {
    /// SmoothGrad over `inner` with the paper's settings: 50 samples, noise at 15% of each image's
    /// range, seed 0, 32 copies at a time.
    pub fn new(inner: E) -> Self {
        SmoothGrad { inner, samples: 50, noise: Noise::Fraction(0.15), aggregate: Aggregate::Mean, seed: 0, batch: 32 }
    }

    pub fn with_samples(mut self, samples: usize) -> Self {
        self.samples = samples;
        self
    }

    pub fn with_noise(mut self, noise: Noise) -> Self {
        self.noise = noise;
        self
    }

    pub fn with_aggregate(mut self, aggregate: Aggregate) -> Self {
        self.aggregate = aggregate;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// The number of copies of each image and the noise plan moved to the input's dtype and device,
    /// flattened to `[N · S, ...]` (row `n · S + s` is the `s`-th copy of image `n`), if one was given.
    fn plan(&self, input: &Tensor) -> Result<(usize, Option<Tensor>)> {
        match &self.noise {
            Noise::Plan(plan) => {
                let dims = input.dims();
                let ok = plan.rank() == dims.len() + 1
                    && plan.dims()[0] == dims[0]
                    && plan.dims()[2..] == dims[1..]
                    && plan.dims()[1] > 0;
                if !ok {
                    return Err(Error::Shape {
                        what: "noise plan".into(),
                        expected: format!("[{}, S, {}] with S ≥ 1 to match the input", dims[0], join(&dims[1..])),
                        got: plan.dims().to_vec(),
                    });
                }
                let s = plan.dim(1)?;
                let flat = plan.to_dtype(input.dtype())?.to_device(input.device())?.flatten_to(1)?;
                let mut shape = vec![s * dims[0]];
                shape.extend_from_slice(&dims[1..]);
                Ok((s, Some(flat.reshape(shape)?)))
            }
            Noise::Sigma(v) | Noise::Fraction(v) => {
                if !(v.is_finite() && *v >= 0.0) {
                    return Err(Error::InvalidOption {
                        option: "noise".into(),
                        value: v.to_string(),
                        expected: "a finite standard deviation of at least 0".into(),
                    });
                }
                if self.samples == 0 {
                    return Err(Error::InvalidOption {
                        option: "--samples".into(),
                        value: "0".into(),
                        expected: "at least 1 sample".into(),
                    });
                }
                Ok((self.samples, None))
            }
        }
    }

    /// The standard deviation of the noise of each image.
    fn sigmas(&self, input: &Tensor) -> Result<Vec<f64>> {
        let n = input.dim(0)?;
        match &self.noise {
            Noise::Sigma(s) => Ok(vec![*s; n]),
            Noise::Fraction(f) => {
                let flat = input.flatten_from(1)?.to_dtype(DType::F64)?;
                let max = flat.max(1)?.to_vec1::<f64>()?;
                let min = flat.min(1)?.to_vec1::<f64>()?;
                Ok(max.iter().zip(&min).map(|(hi, lo)| f * (hi - lo)).collect())
            }
            Noise::Plan(_) => Ok(vec![0.0; n]),
        }
    }
}

impl<M: ?Sized, E: Explainer<M>> Explainer<M> for SmoothGrad<E> {
    fn method(&self) -> &'static str {
        METHOD
    }

    /// Runs the wrapped method on `samples` noisy copies of every image and aggregates the maps.
    ///
    /// Costs the wrapped method's price for `N · samples` images, in chunks of `batch`, plus the
    /// price of fixing rank-based targets (`--top`, the top class) on the clean images.
    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        let n = gaze_core::numeric::check_images(input)?;
        let dims = input.dims().to_vec();
        let (samples, plan) = self.plan(input)?;
        let sigmas = self.sigmas(input)?;
        let lists = match &target.spec {
            TargetSpec::PerImage(lists) => lists.clone(),
            TargetSpec::Classes(classes) => vec![classes.clone(); n],
            TargetSpec::TopClass | TargetSpec::Top(_) => self.inner.resolve_targets(model, input, target)?,
        };
        if lists.len() != n {
            return Err(Error::TargetBatchMismatch { got: lists.len(), batch: n });
        }

        let per_image: usize = dims[1..].iter().product();
        let device = input.device();
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut sum: Option<Tensor> = None;
        let mut sum_sq: Option<Tensor> = None;
        let mut inner_meta = None;
        let total = n.checked_mul(samples).ok_or_else(|| Error::InvalidOption {
            option: "--samples".into(),
            value: samples.to_string(),
            expected: format!("at most {} samples per image for {n} images", usize::MAX / n),
        })?;
        let batch = self.batch;
        if batch == 0 {
            return Err(Error::InvalidOption {
                option: "--batch".into(),
                value: "0".into(),
                expected: "a batch size of at least 1".into(),
            });
        }
        // Copies are ordered image by image, as Captum repeats them, so that the draws (and a plan's
        // rows) do not depend on the batch size.
        for start in (0..total).step_by(batch) {
            let len = batch.min(total - start);
            let rows = start..start + len;
            let images: Vec<u32> = rows.clone().map(|r| (r / samples) as u32).collect();
            let index = Tensor::from_vec(images, len, device)?;
            let noise = match &plan {
                Some(p) => p.narrow(0, start, len)?,
                None => {
                    let mut draws = Vec::with_capacity(len * per_image);
                    for r in rows.clone() {
                        let sigma = sigmas[r / samples];
                        draws.extend((0..per_image).map(|_| sigma * rng.sample::<f64, _>(StandardNormal)));
                    }
                    let mut shape = vec![len];
                    shape.extend_from_slice(&dims[1..]);
                    Tensor::from_vec(draws, shape, device)?.to_dtype(input.dtype())?
                }
            };
            let noisy = (input.index_select(&index, 0)? + noise)?;
            let chunk_target = Target::per_image_lists(rows.map(|r| lists[r / samples].clone()).collect())
                .with_score(target.score.clone());
            let part = self.inner.explain(model, &noisy, &chunk_target)?;
            let values = part.values.to_dtype(DType::F64)?;
            let sq = values.sqr()?;
            let mut shape = values.dims().to_vec();
            shape[0] = n;
            let zeros = || Tensor::zeros(shape.as_slice(), DType::F64, device);
            sum = Some(sum.map_or_else(zeros, Ok)?.index_add(&index, &values, 0)?);
            sum_sq = Some(sum_sq.map_or_else(zeros, Ok)?.index_add(&index, &sq, 0)?);
            inner_meta.get_or_insert(part.meta);
        }
        let (sum, sum_sq, inner_meta) = match (sum, sum_sq, inner_meta) {
            (Some(a), Some(b), Some(m)) => (a, b, m),
            _ => return Err(Error::msg("the noise tunnel ran no samples")),
        };
        let mean = (sum / samples as f64)?;
        let mean_sq = (sum_sq / samples as f64)?;
        let values = match self.aggregate {
            Aggregate::Mean => mean,
            Aggregate::Square => mean_sq,
            Aggregate::Var => (mean_sq - mean.sqr()?)?,
        };

        let mut meta = inner_meta
            .clone()
            .with_option("smooth-of", &inner_meta.method)
            .with_option("aggregate", self.aggregate)
            .with_option("samples", samples)
            .with_option("noise", &self.noise)
            .with_option("seed", self.seed)
            .with_option("batch", self.batch);
        meta.method = METHOD.into();
        Ok(Attribution { values: values.to_dtype(input.dtype())?, targets: lists, scores: None, meta })
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        self.inner.resolve_targets(model, input, target)
    }
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
