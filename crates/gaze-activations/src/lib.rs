//! # gaze-activations
//!
//! The feature maps of any tapped layer: what a layer computed for each image, as an
//! [`Attribution`] `[N, 1, C, h, w]` and as tf-explain's `ExtractActivations` grid
//! ([`activation_grid`]).
//!
//! Options: keep the `k` channels with the largest mean activation of each image
//! ([`ActivationsConfig::top_k`]) and scale each channel to `[0, 1]` on its own
//! ([`ChannelScale::PerChannel`]); a constant channel or grid becomes zeros instead of dividing by
//! zero (tf-explain's grid divides by zero there).
//!
//! Visualising activations goes back to Zeiler and Fergus, "Visualizing and Understanding
//! Convolutional Networks", ECCV 2014, <https://arxiv.org/abs/1311.2901>.
//!
//! This crate reads activations through the engine's probe and turns them into tensors and grids;
//! it knows no particular model and writes no files (the command line saves the grid with
//! `gaze-render`).

mod grid;

use candle_core::{DType, Tensor};
use gaze_core::{Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Target};
use gaze_engine::{probe, scored_outputs, ProbeRequest, TapModel};

pub use grid::{activation_grid, feature_map_tiles, ActivationGrid};

/// How the values of each channel are scaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelScale {
    /// The layer's values as they are.
    #[default]
    Raw,
    /// Each channel of each image min-max scaled to `[0, 1]`; a constant channel becomes 0.
    PerChannel,
}

impl ChannelScale {
    /// Parses `raw` or `per-channel`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "raw" => Ok(ChannelScale::Raw),
            "per-channel" => Ok(ChannelScale::PerChannel),
            other => Err(Error::InvalidOption {
                option: "activation scale".into(),
                value: other.into(),
                expected: "raw or per-channel".into(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChannelScale::Raw => "raw",
            ChannelScale::PerChannel => "per-channel",
        }
    }
}

/// The options of [`Activations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationsConfig {
    /// The tap name (or an alias the model resolves) of a layer with output `[N, C, h, w]`.
    pub layer: String,
    /// Keep only the `k` channels with the largest mean activation of each image, largest first
    /// (ties to the lower channel); `None` keeps every channel in order.
    pub top_k: Option<usize>,
    pub scale: ChannelScale,
}

impl ActivationsConfig {
    /// Every channel of `layer`, unscaled.
    pub fn new(layer: impl Into<String>) -> Self {
        ActivationsConfig { layer: layer.into(), top_k: None, scale: ChannelScale::Raw }
    }

    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    pub fn with_scale(mut self, scale: ChannelScale) -> Self {
        self.scale = scale;
        self
    }
}

/// The feature maps of a layer, with the channels they show.
#[derive(Clone, Debug)]
pub struct FeatureMaps {
    /// `[N, 1, C', h, w]`; the target of each image is its first class (activations do not depend
    /// on it; it names the picture).
    pub attribution: Attribution,
    /// The layer's channel shown at each position, per image `[N][C']`.
    pub channels: Vec<Vec<usize>>,
}

/// The feature maps of one layer as an [`Explainer`] of any [`TapModel`].
#[derive(Clone, Debug)]
pub struct Activations {
    pub config: ActivationsConfig,
}

impl Activations {
    pub fn new(config: ActivationsConfig) -> Self {
        Activations { config }
    }

    /// The feature maps and the channels kept.
    pub fn feature_maps<M: TapModel + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
    ) -> Result<FeatureMaps> {
        gaze_core::numeric::check_images(input)?;
        let cfg = &self.config;
        let request = ProbeRequest { record_layers: vec![cfg.layer.clone()], ..ProbeRequest::default() };
        let p = probe(model, input, target, &request)?;
        let acts = p
            .activations
            .get(&cfg.layer)
            .ok_or_else(|| Error::UnknownLayer { name: cfg.layer.clone(), valid: model.layer_names() })?;
        let (n, c, h, w) = acts.dims4().map_err(|_| Error::UnsupportedLayer {
            name: cfg.layer.clone(),
            reason: format!(
                "its output has shape {:?}; feature maps need a layer with output [N, C, h, w]",
                acts.dims()
            ),
        })?;
        let k = match cfg.top_k {
            None => c,
            Some(k) if (1..=c).contains(&k) => k,
            Some(k) => {
                return Err(Error::InvalidOption {
                    option: "top-k channels".into(),
                    value: k.to_string(),
                    expected: format!("1..={c} (layer `{}` has {c} channels)", cfg.layer),
                })
            }
        };
        let data = acts.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let plane = h * w;
        let mut values = Vec::with_capacity(n * k * plane);
        let mut channels = Vec::with_capacity(n);
        for i in 0..n {
            let image = &data[i * c * plane..(i + 1) * c * plane];
            let keep: Vec<usize> = match cfg.top_k {
                None => (0..c).collect(),
                Some(_) => {
                    let means: Vec<f64> =
                        image.chunks(plane).map(|p| p.iter().map(|&v| v as f64).sum::<f64>() / plane as f64).collect();
                    let mut order: Vec<usize> = (0..c).collect();
                    order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
                    order.truncate(k);
                    order
                }
            };
            for &ch in &keep {
                let p = &image[ch * plane..(ch + 1) * plane];
                match cfg.scale {
                    ChannelScale::Raw => values.extend_from_slice(p),
                    ChannelScale::PerChannel => values.extend(min_max(p)),
                }
            }
            channels.push(keep);
        }
        let targets: Vec<Vec<usize>> = p.targets.iter().map(|t| t.iter().take(1).copied().collect()).collect();
        let scores = p.scores.narrow(1, 0, 1.min(p.scores.dims()[1]))?.to_dtype(DType::F32)?;
        let mut meta = AttributionMeta::new("activations", Resolution::Layer)
            .with_layers([cfg.layer.clone()])
            .with_score(target.score.name())
            .with_option("scale", cfg.scale.name());
        if let Some(k) = cfg.top_k {
            meta = meta.with_option("top-channels", k);
        }
        let attribution = Attribution {
            values: Tensor::from_vec(values, (n, 1, k, h, w), input.device())?,
            targets,
            scores: Some(scores),
            meta,
        };
        Ok(FeatureMaps { attribution, channels })
    }
}

/// `(v − min) / (max − min)`, or zeros when the values are constant.
fn min_max(values: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = hi - lo;
    values.iter().map(move |&v| if range > 0.0 { (v - lo) / range } else { 0.0 })
}

impl<M: TapModel + ?Sized> Explainer<M> for Activations {
    fn method(&self) -> &'static str {
        "activations"
    }

    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        Ok(self.feature_maps(model, input, target)?.attribution)
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        let targets = target.resolve(&scored_outputs(&model.forward(input)?, &target.score)?)?;
        Ok(targets.into_iter().map(|t| t.into_iter().take(1).collect()).collect())
    }
}
