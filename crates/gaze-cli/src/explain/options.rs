//! The method options of `gaze explain` (names shared across methods where they mean the same),
//! and which method takes which.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;

use super::Method;
use crate::UsageError;

#[derive(ClapArgs, Clone, Debug, Default)]
pub struct MethodOptions {
    /// CAMs: clamp the map at zero (the default, as the papers).
    #[arg(long, overrides_with = "no_relu")]
    pub relu: bool,
    /// CAMs: keep negative values (Captum's and tf-explain's Grad-CAM).
    #[arg(long, overrides_with = "relu")]
    pub no_relu: bool,
    /// CAMs: test-time augmentation (flips and brightness), as pytorch-grad-cam's aug_smooth.
    #[arg(long)]
    pub aug_smooth: bool,
    /// CAMs: project the weighted activations on their first principal component.
    #[arg(long)]
    pub eigen_smooth: bool,
    /// Samples of a stochastic method (noise draws, background draws).
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Noise standard deviation, in model input units.
    #[arg(long, value_name = "SIGMA", conflicts_with = "noise_frac")]
    pub noise: Option<f64>,
    /// Noise standard deviation as a fraction of each input's range (max − min).
    #[arg(long, value_name = "F")]
    pub noise_frac: Option<f64>,
    /// Seed of every stochastic method.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// SmoothGrad: the gradient method it wraps (default saliency).
    #[arg(long, value_name = "METHOD")]
    pub smooth_of: Option<String>,
    /// SmoothGrad: mean (SmoothGrad), square (SmoothGrad²) or var (VarGrad).
    #[arg(long, value_name = "mean|square|var")]
    pub aggregate: Option<String>,
    /// Integrated gradients: the number of steps.
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Integrated gradients: gausslegendre, riemann_left, riemann_right, riemann_middle or
    /// riemann_trapezoid.
    #[arg(long)]
    pub quadrature: Option<String>,
    /// Integrated gradients: zero, blur or a safetensors FILE with a tensor `baseline`.
    #[arg(long, value_name = "zero|blur|FILE")]
    pub baseline: Option<String>,
    /// Expected gradients: background images (a folder, image files or a tensor file).
    #[arg(long, value_name = "FILE")]
    pub background: Vec<PathBuf>,
    /// Expected gradients: standard deviation of the noise added to each interpolated sample.
    #[arg(long, value_name = "SIGMA")]
    pub local_smoothing: Option<f64>,
    /// Expected gradients: interpolate in the layer's space (the TensorFlow tutorial's definition).
    #[arg(long)]
    pub layer_space: bool,
    /// Occlusion: the window, H,W.
    #[arg(long, value_name = "H,W")]
    pub window: Option<String>,
    /// Occlusion: the stride, H,W.
    #[arg(long, value_name = "H,W")]
    pub stride: Option<String>,
    /// Occlusion: the fill of a window: a VALUE, mean or blur.
    #[arg(long, value_name = "VALUE|mean|blur")]
    pub fill: Option<String>,
    /// Occlusion: captum or tf-explain.
    #[arg(long, value_name = "captum|tf-explain")]
    pub occlusion_style: Option<String>,
    /// RISE: the number of masks.
    #[arg(long, value_name = "N")]
    pub masks: Option<usize>,
    /// RISE: the size of the low-resolution mask grid.
    #[arg(long, value_name = "S")]
    pub grid: Option<usize>,
    /// RISE: the probability of keeping a cell.
    #[arg(long, value_name = "P")]
    pub keep: Option<f64>,
    /// The most images or samples that run through the model at once.
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
}

impl MethodOptions {
    /// The options given on the command line, by name.
    fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--relu", self.relu),
            ("--no-relu", self.no_relu),
            ("--aug-smooth", self.aug_smooth),
            ("--eigen-smooth", self.eigen_smooth),
            ("--samples", self.samples.is_some()),
            ("--noise", self.noise.is_some()),
            ("--noise-frac", self.noise_frac.is_some()),
            ("--seed", self.seed.is_some()),
            ("--smooth-of", self.smooth_of.is_some()),
            ("--aggregate", self.aggregate.is_some()),
            ("--steps", self.steps.is_some()),
            ("--quadrature", self.quadrature.is_some()),
            ("--baseline", self.baseline.is_some()),
            ("--background", !self.background.is_empty()),
            ("--local-smoothing", self.local_smoothing.is_some()),
            ("--layer-space", self.layer_space),
            ("--window", self.window.is_some()),
            ("--stride", self.stride.is_some()),
            ("--fill", self.fill.is_some()),
            ("--occlusion-style", self.occlusion_style.is_some()),
            ("--masks", self.masks.is_some()),
            ("--grid", self.grid.is_some()),
            ("--keep", self.keep.is_some()),
            ("--batch", self.batch.is_some()),
        ];
        flags.into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect()
    }

    /// An error naming any option that `method` does not take, and the ones it does.
    pub fn check_applies_to(&self, method: Method) -> Result<()> {
        let accepted = accepted(method);
        let wrong: Vec<&str> = self.given().into_iter().filter(|o| !accepted.contains(o)).collect();
        if wrong.is_empty() {
            return Ok(());
        }
        Err(UsageError(format!(
            "{} {} not apply to {}; it takes: {}",
            wrong.join(", "),
            if wrong.len() == 1 { "does" } else { "do" },
            method.name(),
            if accepted.is_empty() { "no method options".to_string() } else { accepted.join(", ") }
        ))
        .into())
    }

    /// The CAM ReLU setting: on unless `--no-relu`.
    pub fn relu(&self) -> bool {
        !self.no_relu
    }
}

/// The options each method takes.
fn accepted(method: Method) -> &'static [&'static str] {
    use gaze_cam::CamMethod;
    match method {
        Method::Cam(CamMethod::ScoreCam | CamMethod::AblationCam) => {
            &["--relu", "--no-relu", "--aug-smooth", "--eigen-smooth", "--batch"]
        }
        Method::Cam(_) => &["--relu", "--no-relu", "--aug-smooth", "--eigen-smooth"],
        Method::Gradient(_) => &["--batch"],
        Method::GuidedGradCam => &["--batch"],
        Method::SmoothGrad => {
            &["--samples", "--noise", "--noise-frac", "--seed", "--smooth-of", "--aggregate", "--batch"]
        }
        Method::IntegratedGradients => &["--steps", "--quadrature", "--baseline", "--batch"],
        Method::ExpectedGradients => {
            &["--background", "--samples", "--seed", "--local-smoothing", "--layer-space", "--batch"]
        }
        Method::Occlusion => &["--window", "--stride", "--fill", "--occlusion-style", "--batch"],
        Method::Rise => &["--masks", "--grid", "--keep", "--seed", "--batch"],
        Method::Activations => &[],
    }
}
