use std::collections::BTreeMap;

use candle_core::Tensor;

/// Where an attribution map lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// In the model's input space: `[C, H, W]` per map (gradient and perturbation methods).
    Input,
    /// At a layer's resolution: `[h, w]` per map (the CAM family) or `[C, h, w]` (activations,
    /// layer-space attributions).
    Layer,
}

impl Resolution {
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Input => "input",
            Resolution::Layer => "layer",
        }
    }
}

/// What produced an [`Attribution`]: enough to reproduce it and to label a picture of it.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributionMeta {
    /// The method's command-line name, e.g. `gradcam` or `integrated-gradients`.
    pub method: String,
    /// The layers the maps were taken at; empty for input-space methods.
    pub layers: Vec<String>,
    pub resolution: Resolution,
    /// `logit`, `probability` or `custom`.
    pub score: String,
    /// Every option the method used, by its command-line name, as text.
    pub options: BTreeMap<String, String>,
}

impl AttributionMeta {
    pub fn new(method: impl Into<String>, resolution: Resolution) -> Self {
        AttributionMeta {
            method: method.into(),
            layers: Vec::new(),
            resolution,
            score: "logit".into(),
            options: BTreeMap::new(),
        }
    }

    pub fn with_layers(mut self, layers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.layers = layers.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_score(mut self, score: &str) -> Self {
        self.score = score.into();
        self
    }

    pub fn with_option(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.options.insert(key.into(), value.to_string());
        self
    }
}

/// The result of a method: one map per image and target.
///
/// `values` has shape `[N, T, ...]`: N images, T targets each, then the map as the method defines it,
/// before any display step (no absolute value, no normalisation, no upsampling unless the method
/// itself does it).
#[derive(Clone, Debug)]
pub struct Attribution {
    pub values: Tensor,
    /// The class of each map, `[N][T]`.
    pub targets: Vec<Vec<usize>>,
    /// The target scores the maps explain, `[N, T]`, where the method computed them.
    pub scores: Option<Tensor>,
    pub meta: AttributionMeta,
}

impl Attribution {
    /// The number of images.
    pub fn batch(&self) -> usize {
        self.targets.len()
    }

    /// The number of targets per image.
    pub fn targets_per_image(&self) -> usize {
        self.targets.first().map(Vec::len).unwrap_or(0)
    }

    /// The map of image `n` for its `t`-th target.
    pub fn map(&self, n: usize, t: usize) -> candle_core::Result<Tensor> {
        self.values.get(n)?.get(t)
    }
}
