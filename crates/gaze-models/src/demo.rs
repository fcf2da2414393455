//! The small demo CNN: four 3×3 convolutions with ReLU, two max pools, one average pool, global
//! average pooling and a linear classifier. It is the default model of the `gaze` command line, with
//! its weights embedded in the crate, so everything works without a download.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use gaze_engine::ops::{self, Conv2dConfig, Pool2dConfig};
use gaze_engine::{TapModel, Taps};

use crate::{Checkpoint, Error, Preprocess, Result};

/// The embedded weights of the default model (see `weights/README.md` beside this crate's sources
/// for how they were made).
pub static DEMO_WEIGHTS: &[u8] = include_bytes!("../weights/demo.safetensors");

/// The shape of a [`DemoCnn`]: read from a checkpoint, or chosen to build a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoCnnConfig {
    /// Output channels of `conv1` to `conv4`.
    pub widths: [usize; 4],
    pub num_classes: usize,
    /// Square input size in pixels.
    pub input_size: usize,
}

impl Default for DemoCnnConfig {
    fn default() -> Self {
        DemoCnnConfig { widths: [16, 32, 64, 64], num_classes: 8, input_size: 64 }
    }
}

#[derive(Clone, Debug)]
enum Stage {
    Conv { w: Tensor, b: Tensor },
    Relu,
    MaxPool,
    AvgPool,
    GlobalPool,
    Linear { w: Tensor, b: Tensor },
}

/// The small demo CNN. Tap names, in order: `conv1 relu1 pool1 conv2 relu2 pool2 conv3 relu3 pool3
/// conv4 relu4 gap fc`; every one is a cut point. Checkpoint keys: `conv{1..4}.{weight,bias}`,
/// `fc.{weight,bias}`.
#[derive(Clone, Debug)]
pub struct DemoCnn {
    config: DemoCnnConfig,
    stages: Vec<(&'static str, Stage)>,
    class_names: Vec<String>,
    device: Device,
}

/// The input sizes a checkpoint's `input_size` metadata may give: at least 8 pixels, so that the
/// three 2×2 pools leave a map, and at most 4096, so that a bad file cannot make every caller
/// allocate an absurd input.
const INPUT_SIZES: std::ops::RangeInclusive<usize> = 8..=4096;

const NAMES: [&str; 13] =
    ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3", "conv4", "relu4", "gap", "fc"];

impl DemoCnn {
    /// Builds the model from a [`VarBuilder`] (weights from a checkpoint, or variables to train).
    pub fn new(config: DemoCnnConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let mut stages = Vec::with_capacity(NAMES.len());
        let mut cin = 3;
        for (i, &cout) in config.widths.iter().enumerate() {
            let vb = vb.pp(format!("conv{}", i + 1));
            let w = vb.get((cout, cin, 3, 3), "weight")?;
            let b = vb.get(cout, "bias")?;
            stages.push((NAMES[i * 3], Stage::Conv { w, b }));
            stages.push((NAMES[i * 3 + 1], Stage::Relu));
            if i < 3 {
                stages.push((NAMES[i * 3 + 2], if i < 2 { Stage::MaxPool } else { Stage::AvgPool }));
            }
            cin = cout;
        }
        stages.push(("gap", Stage::GlobalPool));
        let w = vb.pp("fc").get((config.num_classes, cin), "weight")?;
        let b = vb.pp("fc").get(config.num_classes, "bias")?;
        stages.push(("fc", Stage::Linear { w, b }));
        let class_names = (0..config.num_classes).map(|c| format!("class {c}")).collect();
        Ok(DemoCnn { config, stages, class_names, device })
    }

    /// Loads a checkpoint, reading the widths and the class count from its shapes and the class
    /// names from its `classes` metadata (comma-separated) when present.
    pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<Self> {
        let mut widths = [0; 4];
        let mut cin = 3;
        for (i, w) in widths.iter_mut().enumerate() {
            let key = format!("conv{}.weight", i + 1);
            let s = ckpt.shape_n(&key, 4)?;
            if s[1] != cin || s[2] != 3 || s[3] != 3 {
                return Err(Error::Checkpoint {
                    path: ckpt.path().to_path_buf(),
                    reason: format!("tensor `{key}` has shape {s:?}; expected [out, {cin}, 3, 3]"),
                });
            }
            *w = s[0];
            cin = s[0];
        }
        let fc = ckpt.shape_n("fc.weight", 2)?;
        let num_classes = fc[0];
        if num_classes == 0 {
            return Err(crate::layers::no_classes(ckpt, "fc.weight", fc));
        }
        let input_size = match ckpt.metadata().get("input_size") {
            None => 64,
            Some(text) => {
                text.trim().parse().ok().filter(|s| INPUT_SIZES.contains(s)).ok_or_else(|| Error::Checkpoint {
                    path: ckpt.path().to_path_buf(),
                    reason: format!(
                        "metadata `input_size` is `{text}`; expected a whole number of pixels in {}..={}",
                        INPUT_SIZES.start(),
                        INPUT_SIZES.end()
                    ),
                })?
            }
        };
        let config = DemoCnnConfig { widths, num_classes, input_size };
        let mut model = DemoCnn::new(config, ckpt.var_builder(device)).map_err(|e| ckpt.fit_error(e))?;
        if let Some(names) = ckpt.metadata().get("classes") {
            let names: Vec<String> = names.split(',').map(|s| s.trim().to_string()).collect();
            if names.len() == num_classes {
                model.class_names = names;
            }
        }
        Ok(model)
    }

    /// The embedded default model.
    pub fn embedded(device: &Device) -> Result<Self> {
        let ckpt = Checkpoint::from_bytes(DEMO_WEIGHTS, Path::new("<embedded demo weights>"), device)?;
        Self::from_checkpoint(&ckpt, device)
    }

    pub fn config(&self) -> &DemoCnnConfig {
        &self.config
    }

    /// The class names, from the checkpoint's metadata (`class N` when it has none).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// How images are prepared for this model: resized to the input size, scaled to [-1, 1].
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::Tf { size: self.config.input_size as u32 }
    }

    fn run(&self, from: usize, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        for (name, stage) in &self.stages[from..] {
            x = match stage {
                Stage::Conv { w, b } => {
                    ops::conv2d(&x, w, Some(b), Conv2dConfig { padding: (1, 1), ..Default::default() })?
                }
                Stage::Relu => taps.relu(&x)?,
                Stage::MaxPool => ops::max_pool2d(&x, Pool2dConfig::new(2, 2))?,
                Stage::AvgPool => ops::avg_pool2d(&x, Pool2dConfig::new(2, 2))?,
                Stage::GlobalPool => ops::adaptive_avg_pool2d(&x, (1, 1))?.flatten_from(1)?,
                Stage::Linear { w, b } => ops::linear(&x, w, Some(b))?,
            };
            x = taps.tap(name, x)?;
        }
        Ok(x)
    }
}

impl TapModel for DemoCnn {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let [c, _, _] = self.input_shape();
        match x.dims() {
            [_, ch, h, w] if *ch == c && *h >= 8 && *w >= 8 => self.run(0, x.clone(), taps),
            other => Err(Error::Shape {
                what: "demo CNN input".into(),
                expected: format!("[N, {c}, H, W] with H, W >= 8"),
                got: other.to_vec(),
            }),
        }
    }

    fn layer_names(&self) -> Vec<String> {
        self.stages.iter().map(|(n, _)| n.to_string()).collect()
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, self.config.input_size, self.config.input_size]
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn cut_points(&self) -> Vec<String> {
        self.layer_names()
    }

    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let idx = self
            .stages
            .iter()
            .position(|(n, _)| *n == layer)
            .ok_or_else(|| Error::UnknownLayer { name: layer.to_string(), valid: self.layer_names() })?;
        let x = taps.tap(self.stages[idx].0, activation.clone())?;
        self.run(idx + 1, x, taps)
    }
}
