//! What a CAM run is asked to do: the method, the layers and the options.

use crate::{CamMethod, Error, Result};

/// Which gradient the gradient-based variants weigh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradientFilter {
    /// The gradient of the target score at the layer (pytorch-grad-cam, Captum, the papers).
    #[default]
    Raw,
    /// tf-explain's "guided gradients": `(A > 0) · (g > 0) · g`, the gradient kept only where both
    /// it and the activation are positive (tf-explain's `GradCAM(use_guided_grads=True)`, its
    /// default).
    Guided,
}

impl GradientFilter {
    /// `raw` or `guided`.
    pub fn name(self) -> &'static str {
        match self {
            GradientFilter::Raw => "raw",
            GradientFilter::Guided => "guided",
        }
    }
}

/// Which way Ablation-CAM runs the tail of the network on the ablated activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AblationPath {
    /// [`TapModel::forward_from`](gaze_engine::TapModel::forward_from) when the layer is one of the
    /// model's cut points, substitution otherwise.
    #[default]
    Auto,
    /// Start the forward pass at the layer: only the tail runs for each batch of ablated copies.
    /// An error when the layer is not a cut point.
    ForwardFrom,
    /// Run the whole model on copies of the image with the layer's activation substituted by the
    /// ablated one (the head runs again for each batch, as in pytorch-grad-cam, but works at any
    /// layer, inside residual blocks too).
    Substitute,
}

impl AblationPath {
    /// `auto`, `forward-from` or `substitute`.
    pub fn name(self) -> &'static str {
        match self {
            AblationPath::Auto => "auto",
            AblationPath::ForwardFrom => "forward-from",
            AblationPath::Substitute => "substitute",
        }
    }
}

/// pytorch-grad-cam's test-time augmentation (`aug_smooth=True`): every combination of a
/// horizontal flip (or none) and a multiplication of the input by a factor; each map is
/// de-augmented (flipped back) and the maps are averaged.
#[derive(Clone, Debug, PartialEq)]
pub struct AugSmooth {
    /// Also run the horizontally flipped input (ttach's `HorizontalFlip`).
    pub flip: bool,
    /// The factors the input is multiplied by (ttach's `Multiply`).
    pub factors: Vec<f64>,
}

impl Default for AugSmooth {
    /// pytorch-grad-cam's default: flips × factors `[0.9, 1.0, 1.1]`, six passes.
    fn default() -> Self {
        AugSmooth { flip: true, factors: vec![0.9, 1.0, 1.1] }
    }
}

impl AugSmooth {
    /// The augmentations as `(flipped, factor)` pairs, in ttach's order (flip outermost).
    pub fn transforms(&self) -> Vec<(bool, f64)> {
        let flips: &[bool] = if self.flip { &[false, true] } else { &[false] };
        flips.iter().flat_map(|&f| self.factors.iter().map(move |&k| (f, k))).collect()
    }
}

/// The configuration of a CAM run.
///
/// Build one with [`CamConfig::new`] and the `with_*` methods; the defaults are pytorch-grad-cam's
/// (ReLU on, raw gradients, no smoothing, its batch sizes).
/// [`CamConfig::tf_explain`] gives tf-explain's Grad-CAM.
///
/// ```
/// use gaze_cam::{CamConfig, CamMethod};
/// let config = CamConfig::new(CamMethod::parse("scorecam").unwrap(), ["features.29"])
///     .with_batch(64)
///     .with_relu(false);
/// assert_eq!(config.batch(), 64);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CamConfig {
    pub method: CamMethod,
    /// The layers to explain at; several are averaged by the display step.
    pub layers: Vec<String>,
    /// Clamp the map at 0 (the papers and pytorch-grad-cam: on; Captum's `LayerGradCam` and
    /// tf-explain: off).
    pub relu: bool,
    /// Raw or tf-explain's guided gradients (gradient-based variants only).
    pub gradients: GradientFilter,
    /// Replace the channel sum by the projection of the weighted activations on their first
    /// principal component (pytorch-grad-cam's `eigen_smooth`; ignored by Eigen-CAM, which is that
    /// projection already).
    pub eigen_smooth: bool,
    /// Test-time augmentation (pytorch-grad-cam's `aug_smooth`), or none.
    pub aug_smooth: Option<AugSmooth>,
    /// The most perturbed inputs (Score-CAM) or ablated copies (Ablation-CAM) run at once; `None`
    /// takes the method's default ([`CamMethod::default_batch`]).
    pub batch: Option<usize>,
    /// Ablation-CAM: the fraction of channels to ablate (pytorch-grad-cam's experimental
    /// `ratio_channels_to_ablate`, default 1.0: every channel).
    pub ratio_channels_to_ablate: f64,
    /// Ablation-CAM: how the tail of the network runs on the ablated activations.
    pub ablation_path: AblationPath,
}

impl CamConfig {
    /// `method` at `layers`, with pytorch-grad-cam's defaults.
    pub fn new<S: Into<String>>(method: CamMethod, layers: impl IntoIterator<Item = S>) -> Self {
        CamConfig {
            method,
            layers: layers.into_iter().map(Into::into).collect(),
            relu: true,
            gradients: GradientFilter::Raw,
            eigen_smooth: false,
            aug_smooth: None,
            batch: None,
            ratio_channels_to_ablate: 1.0,
            ablation_path: AblationPath::Auto,
        }
    }

    /// tf-explain's `GradCAM` at `layer`: guided gradients, the spatial mean as weights, no ReLU.
    ///
    /// tf-explain explains the model's output, which for Keras applications is the softmax
    /// probability: pair this configuration with a target on
    /// [`Score::Probability`](gaze_core::Score::Probability) to get its maps.
    pub fn tf_explain(layer: impl Into<String>) -> Self {
        CamConfig::new(CamMethod::GradCam, [layer.into()]).with_relu(false).with_gradients(GradientFilter::Guided)
    }

    pub fn with_relu(mut self, on: bool) -> Self {
        self.relu = on;
        self
    }

    pub fn with_gradients(mut self, filter: GradientFilter) -> Self {
        self.gradients = filter;
        self
    }

    pub fn with_eigen_smooth(mut self, on: bool) -> Self {
        self.eigen_smooth = on;
        self
    }

    pub fn with_aug_smooth(mut self, aug: Option<AugSmooth>) -> Self {
        self.aug_smooth = aug;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = Some(batch);
        self
    }

    pub fn with_ratio_channels_to_ablate(mut self, ratio: f64) -> Self {
        self.ratio_channels_to_ablate = ratio;
        self
    }

    pub fn with_ablation_path(mut self, path: AblationPath) -> Self {
        self.ablation_path = path;
        self
    }

    /// The batch size in effect: the one given, else the method's default, else 1.
    pub fn batch(&self) -> usize {
        self.batch.or(self.method.default_batch()).unwrap_or(1)
    }

    /// Checks every option; an error naming the bad value and what is valid.
    pub fn validate(&self) -> Result<()> {
        if self.layers.is_empty() {
            return Err(Error::InvalidOption {
                option: "--layer".into(),
                value: "(none)".into(),
                expected: "at least one layer name".into(),
            });
        }
        if let Some((i, name)) = self.layers.iter().enumerate().find(|(i, l)| self.layers[..*i].contains(l)) {
            return Err(Error::InvalidOption {
                option: "--layer".into(),
                value: name.clone(),
                expected: format!(
                    "each layer once (it is given at positions {} and {})",
                    self.layers.iter().position(|l| l == name).unwrap_or(0) + 1,
                    i + 1
                ),
            });
        }
        if self.batch == Some(0) {
            return Err(Error::InvalidOption {
                option: "--batch".into(),
                value: "0".into(),
                expected: "a batch size of at least 1".into(),
            });
        }
        let r = self.ratio_channels_to_ablate;
        if !(r > 0.0 && r <= 1.0) {
            return Err(Error::InvalidOption {
                option: "ratio of channels to ablate".into(),
                value: r.to_string(),
                expected: "a number in (0, 1]".into(),
            });
        }
        if let Some(aug) = &self.aug_smooth {
            if aug.factors.is_empty() || aug.factors.iter().any(|f| !f.is_finite()) {
                return Err(Error::InvalidOption {
                    option: "--aug-smooth factors".into(),
                    value: format!("{:?}", aug.factors),
                    expected: "at least one finite factor".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_augmentation_is_six_passes_flip_outermost() {
        let t = AugSmooth::default().transforms();
        assert_eq!(t.len(), 6);
        assert_eq!(t[0], (false, 0.9));
        assert_eq!(t[3], (true, 0.9));
    }

    #[test]
    fn bad_options_name_the_value() {
        let c = CamConfig::new(CamMethod::GradCam, Vec::<String>::new());
        assert!(c.validate().unwrap_err().to_string().contains("at least one layer"));
        let c = CamConfig::new(CamMethod::ScoreCam, ["x"]).with_batch(0);
        assert!(c.validate().unwrap_err().to_string().contains("--batch"));
        let c = CamConfig::new(CamMethod::AblationCam, ["x"]).with_ratio_channels_to_ablate(1.5);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("1.5") && e.contains("(0, 1]"), "{e}");
    }

    #[test]
    fn a_layer_given_twice_is_refused() {
        let e = CamConfig::new(CamMethod::GradCam, ["a", "b", "a"]).validate().unwrap_err().to_string();
        assert!(e.contains("`a`") && e.contains("positions 1 and 3"), "{e}");
        assert!(CamConfig::new(CamMethod::GradCam, ["a", "b"]).validate().is_ok());
    }

    #[test]
    fn batch_defaults_follow_pytorch_grad_cam() {
        assert_eq!(CamConfig::new(CamMethod::ScoreCam, ["x"]).batch(), 16);
        assert_eq!(CamConfig::new(CamMethod::AblationCam, ["x"]).batch(), 32);
        assert_eq!(CamConfig::new(CamMethod::GradCam, ["x"]).batch(), 1);
    }
}
