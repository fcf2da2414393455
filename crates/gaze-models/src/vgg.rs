//! VGG16 with a tap at every module output, loading torchvision's and timm's checkpoints.
//!
//! ## Reference
//! Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
//! <https://arxiv.org/abs/1409.1556>.
//!
//! ## Layouts
//! Both layouts share the convolutional trunk `features.0` … `features.30` (13 convolutions, each
//! followed by a ReLU, five 2×2 max pools).
//! - torchvision: `avgpool` (adaptive average pooling to p×p, p = 7), then `classifier.0` (linear),
//!   `classifier.1` (ReLU), `classifier.2` (dropout), `classifier.3`, `classifier.4`, `classifier.5`,
//!   `classifier.6` (the logits).
//! - timm (`timm/vgg16.tv_in1k`): `pre_logits.fc1` (a k×k convolution, k = 7, after adaptive
//!   average pooling up to k×k only when the feature map is smaller), `pre_logits.act1`,
//!   `pre_logits.drop`, `pre_logits.fc2` (1×1 convolution), `pre_logits.act2`, then
//!   `head.global_pool` (global average pooling), `head.drop`, `head.fc` (the logits).
//!
//! The layout is detected from the keys; widths, the head's size and the class count are read from
//! the checkpoint's shapes.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use gaze_engine::ops::{self, Pool2dConfig};
use gaze_engine::{TapModel, Taps};

use crate::imagenet::ClassNames;
use crate::layers::{conv_cfg, resolve_alias, Conv, Linear, ShapeReader};
use crate::{Checkpoint, Error, Preprocess, Result};

/// The trunk of VGG16: output channels of each convolution, `None` for a max pool.
const TRUNK: [Option<usize>; 18] = [
    Some(64),
    Some(64),
    None,
    Some(128),
    Some(128),
    None,
    Some(256),
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
];

/// The number of convolutions in VGG16's trunk.
pub const VGG16_CONVS: usize = 13;

/// Which checkpoint key layout a VGG16 follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggLayout {
    /// torchvision's `vgg16`: `classifier.0/3/6` are linear layers after a 7×7 adaptive pool.
    Torchvision,
    /// timm's `vgg16`: `pre_logits.fc1/fc2` are convolutions, `head.fc` is linear.
    Timm,
}

/// The shape of a [`Vgg16`]: read from a checkpoint, or chosen to build a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vgg16Config {
    pub layout: VggLayout,
    /// Output channels of the 13 convolutions of the trunk.
    pub widths: [usize; VGG16_CONVS],
    /// Output sizes of the two hidden layers of the head (4096 and 4096 in ImageNet's VGG16).
    pub hidden: [usize; 2],
    /// The side p of the torchvision head's adaptive pool, or of the timm head's first
    /// convolution's kernel (7 in both).
    pub head_size: usize,
    pub num_classes: usize,
    /// Square input size in pixels.
    pub input_size: usize,
}

impl Vgg16Config {
    /// ImageNet's VGG16 in the given layout.
    pub fn imagenet(layout: VggLayout) -> Self {
        let mut widths = [0; VGG16_CONVS];
        for (w, c) in widths.iter_mut().zip(TRUNK.iter().flatten()) {
            *w = *c;
        }
        Vgg16Config { layout, widths, hidden: [4096, 4096], head_size: 7, num_classes: 1000, input_size: 224 }
    }

    /// Reads the configuration from a checkpoint's keys and shapes, detecting the layout.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        let r = ShapeReader::new(ckpt);
        let layout = if r.contains("classifier.0.weight") {
            VggLayout::Torchvision
        } else if r.contains("pre_logits.fc1.weight") {
            VggLayout::Timm
        } else {
            return Err(r.error(
                "not a VGG16 checkpoint: it has neither `classifier.0.weight` (torchvision's layout) \
                 nor `pre_logits.fc1.weight` (timm's layout)"
                    .into(),
            ));
        };
        let mut widths = [0; VGG16_CONVS];
        let mut cin = 3;
        let mut conv = 0;
        for (i, item) in TRUNK.iter().enumerate() {
            if item.is_some() {
                let cout = r.conv(&format!("features.{}", feature_index(i)), cin, 3, 1)?;
                widths[conv] = cout;
                conv += 1;
                cin = cout;
            }
        }
        let (hidden, head_size, num_classes) = match layout {
            VggLayout::Torchvision => {
                let (inp, h1) = r.linear("classifier.0", None)?;
                let side = (inp as f64 / cin as f64).sqrt().round() as usize;
                if side == 0 || side * side * cin != inp {
                    return Err(r.error(format!(
                        "tensor `classifier.0.weight` takes {inp} inputs; expected {cin}·p·p for the last \
                         convolution's {cin} channels pooled to p×p"
                    )));
                }
                let (_, h2) = r.linear("classifier.3", Some(h1))?;
                let (_, k) = r.classifier("classifier.6", Some(h2))?;
                ([h1, h2], side, k)
            }
            VggLayout::Timm => {
                let s = ckpt.shape_n("pre_logits.fc1.weight", 4)?.to_vec();
                if s[1] != cin || s[2] != s[3] {
                    return Err(r.error(format!(
                        "tensor `pre_logits.fc1.weight` has shape {s:?}; expected [out, {cin}, k, k]"
                    )));
                }
                let h1 = s[0];
                let h2 = r.conv("pre_logits.fc2", h1, 1, 1)?;
                let (_, k) = r.classifier("head.fc", Some(h2))?;
                ([h1, h2], s[2], k)
            }
        };
        let input_size = ckpt.metadata().get("input_size").and_then(|s| s.parse().ok()).unwrap_or(224);
        Ok(Vgg16Config { layout, widths, hidden, head_size, num_classes, input_size })
    }
}

/// The index in `features` of the `i`-th trunk item: a convolution takes two slots (itself and its
/// ReLU), a pool one.
fn feature_index(i: usize) -> usize {
    TRUNK[..i].iter().map(|item| if item.is_some() { 2 } else { 1 }).sum()
}

#[derive(Clone, Debug)]
enum Stage {
    Conv(Conv),
    Relu,
    MaxPool,
    Dropout,
    AdaptiveAvgPool(usize),
    Linear(Linear),
    /// timm's `pre_logits.fc1`: pooled up to k×k when smaller, then a k×k convolution.
    ConvMlpIn(Conv, usize),
    GlobalAvgPool,
}

/// VGG16 (see the [module documentation](self) for its layouts and tap names).
///
/// Every tap is a cut point. Keras's layer names are aliases (`block1_conv1` … `block5_pool`,
/// `fc1`, `fc2`, `predictions`); a Keras convolution's output includes its ReLU, so `block4_conv3`
/// is the ReLU after that convolution (`features.22`).
#[derive(Clone, Debug)]
pub struct Vgg16 {
    config: Vgg16Config,
    stages: Vec<(String, Stage)>,
    aliases: Vec<(String, String)>,
    classes: ClassNames,
    device: Device,
}

impl Vgg16 {
    /// Builds the model from a [`VarBuilder`] whose keys follow `config.layout`.
    pub fn new(config: Vgg16Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let mut stages = Vec::new();
        let mut aliases = Vec::new();
        let mut cin = 3;
        let mut conv = 0;
        let (mut block, mut in_block) = (1, 0);
        for item in TRUNK {
            let idx = stages.len();
            match item {
                Some(_) => {
                    let cout = config.widths[conv];
                    let layer = Conv::load(&vb.pp(format!("features.{idx}")), (cin, cout), 3, conv_cfg(1, 1, 1), true)?;
                    stages.push((format!("features.{idx}"), Stage::Conv(layer)));
                    stages.push((format!("features.{}", idx + 1), Stage::Relu));
                    in_block += 1;
                    aliases.push((format!("block{block}_conv{in_block}"), format!("features.{}", idx + 1)));
                    conv += 1;
                    cin = cout;
                }
                None => {
                    stages.push((format!("features.{idx}"), Stage::MaxPool));
                    aliases.push((format!("block{block}_pool"), format!("features.{idx}")));
                    block += 1;
                    in_block = 0;
                }
            }
        }
        let [h1, h2] = config.hidden;
        let p = config.head_size;
        let names: [&str; 3] = match config.layout {
            VggLayout::Torchvision => {
                stages.push(("avgpool".into(), Stage::AdaptiveAvgPool(p)));
                let c = vb.pp("classifier");
                stages.push(("classifier.0".into(), Stage::Linear(Linear::load(&c.pp(0), (cin * p * p, h1))?)));
                stages.push(("classifier.1".into(), Stage::Relu));
                stages.push(("classifier.2".into(), Stage::Dropout));
                stages.push(("classifier.3".into(), Stage::Linear(Linear::load(&c.pp(3), (h1, h2))?)));
                stages.push(("classifier.4".into(), Stage::Relu));
                stages.push(("classifier.5".into(), Stage::Dropout));
                stages.push(("classifier.6".into(), Stage::Linear(Linear::load(&c.pp(6), (h2, config.num_classes))?)));
                ["classifier.1", "classifier.4", "classifier.6"]
            }
            VggLayout::Timm => {
                let pl = vb.pp("pre_logits");
                let fc1 = Conv::load(&pl.pp("fc1"), (cin, h1), p, conv_cfg(1, 0, 1), true)?;
                stages.push(("pre_logits.fc1".into(), Stage::ConvMlpIn(fc1, p)));
                stages.push(("pre_logits.act1".into(), Stage::Relu));
                stages.push(("pre_logits.drop".into(), Stage::Dropout));
                let fc2 = Conv::load(&pl.pp("fc2"), (h1, h2), 1, conv_cfg(1, 0, 1), true)?;
                stages.push(("pre_logits.fc2".into(), Stage::Conv(fc2)));
                stages.push(("pre_logits.act2".into(), Stage::Relu));
                stages.push(("head.global_pool".into(), Stage::GlobalAvgPool));
                stages.push(("head.drop".into(), Stage::Dropout));
                let fc = Linear::load(&vb.pp("head").pp("fc"), (h2, config.num_classes))?;
                stages.push(("head.fc".into(), Stage::Linear(fc)));
                ["pre_logits.act1", "pre_logits.act2", "head.fc"]
            }
        };
        for (alias, target) in ["fc1", "fc2", "predictions"].into_iter().zip(names) {
            aliases.push((alias.into(), target.into()));
        }
        let classes = ClassNames::for_head(config.num_classes, None);
        Ok(Vgg16 { config, stages, aliases, classes, device })
    }

    /// Loads a torchvision or timm checkpoint, reading the layout, the widths and the class count
    /// from it (and class names from its `classes` metadata, comma-separated, when present).
    pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<Self> {
        let config = Vgg16Config::from_checkpoint(ckpt)?;
        let mut model = Vgg16::new(config, ckpt.var_builder(device)).map_err(|e| ckpt.fit_error(e))?;
        model.classes =
            ClassNames::for_head(model.config.num_classes, ckpt.metadata().get("classes").map(String::as_str));
        Ok(model)
    }

    pub fn config(&self) -> &Vgg16Config {
        &self.config
    }

    /// The class names: ImageNet's for 1000 classes.
    pub fn class_names(&self) -> &ClassNames {
        &self.classes
    }

    /// Keras's layer names and the taps they stand for.
    pub fn aliases(&self) -> &[(String, String)] {
        &self.aliases
    }

    /// torchvision's ImageNet transform (which timm's `vgg16.tv_in1k` shares): shorter side to
    /// `input_size / 0.875`, centre crop, ImageNet mean and standard deviation.
    pub fn preprocess(&self) -> Preprocess {
        torchvision_preprocess(self.config.input_size)
    }

    /// Runs the stages from `from` on, passing each output through its tap.
    ///
    /// A convolution followed by a ReLU runs as one fused op ([`ops::conv2d_relu`]) when the call
    /// asks nothing of the convolution's own output: the graph then keeps one tensor for the pair,
    /// not two.
    /// Both names still pass through [`Taps::tap`] in order (the convolution's with the ReLU's
    /// output, which no request reads), so the listing of layers is unchanged.
    fn run(&self, from: usize, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        let stages = &self.stages[from..];
        // Whether the previous stage was a convolution fused with this ReLU.
        let mut fused = false;
        for (i, (name, stage)) in stages.iter().enumerate() {
            let relu_next = matches!(stages.get(i + 1), Some((_, Stage::Relu)));
            x = match stage {
                Stage::Conv(conv) if relu_next && !taps.wants(name) => {
                    fused = true;
                    conv.forward_relu(&x, taps.relu_mode(), true)?
                }
                Stage::Conv(conv) => conv.forward(&x)?,
                Stage::Relu if std::mem::take(&mut fused) => x,
                Stage::Relu => taps.relu(&x)?,
                Stage::MaxPool => ops::max_pool2d(&x, Pool2dConfig::new(2, 2))?,
                Stage::Dropout => x,
                Stage::AdaptiveAvgPool(p) => ops::adaptive_avg_pool2d(&x, (*p, *p))?,
                Stage::Linear(linear) => linear.forward(&x)?,
                Stage::ConvMlpIn(conv, k) => {
                    let (h, w) = (x.dim(2)?, x.dim(3)?);
                    let x = if h < *k || w < *k { ops::adaptive_avg_pool2d(&x, (h.max(*k), w.max(*k)))? } else { x };
                    conv.forward(&x)?
                }
                Stage::GlobalAvgPool => ops::adaptive_avg_pool2d(&x, (1, 1))?.flatten_from(1)?,
            };
            x = taps.tap(name, x)?;
        }
        Ok(x)
    }
}

/// torchvision's ImageNet evaluation transform for a square `size` (crop ratio 0.875).
pub(crate) fn torchvision_preprocess(size: usize) -> Preprocess {
    match Preprocess::imagenet_torchvision() {
        Preprocess::Torchvision { mean, std, .. } => {
            Preprocess::Torchvision { resize: (size as f64 / 0.875).floor() as u32, crop: size as u32, mean, std }
        }
        other => other,
    }
}

/// Checks a model input: `[N, 3, H, W]` with both sides at least `min`.
pub(crate) fn check_input(what: &str, x: &Tensor, min: usize) -> Result<()> {
    match x.dims() {
        [n, 3, h, w] if *n > 0 && *h >= min && *w >= min => Ok(()),
        other => Err(Error::Shape {
            what: format!("{what} input"),
            expected: format!("[N, 3, H, W] with N >= 1 and H, W >= {min}"),
            got: other.to_vec(),
        }),
    }
}

impl TapModel for Vgg16 {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        check_input("VGG16", x, 32)?;
        self.run(0, x.clone(), taps)
    }

    fn layer_names(&self) -> Vec<String> {
        self.stages.iter().map(|(n, _)| n.clone()).collect()
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
        let name = self.resolve_layer(layer)?;
        let idx = self
            .stages
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| Error::UnknownLayer { name: layer.to_string(), valid: self.layer_names() })?;
        let x = taps.tap(&self.stages[idx].0, activation.clone())?;
        self.run(idx + 1, x, taps)
    }

    fn resolve_layer(&self, name: &str) -> Result<String> {
        resolve_alias(&self.layer_names(), &self.aliases, name)
    }
}

/// VGG16's trunk as incremental stages for occlusion (`gaze_engine::spatial`): each
/// convolution with its ReLU folded in (3×3, stride 1, padding 1) and named after the convolution,
/// each max pool (2×2, stride 2, padding with −∞); the head is everything after `features.30`.
impl gaze_engine::spatial::Incremental for Vgg16 {
    fn check_input(&self, input: &Tensor) -> Result<()> {
        check_input("VGG16", input, 32)
    }

    fn stages(&self) -> Vec<gaze_engine::spatial::Stage> {
        use gaze_engine::spatial::{Geometry, Stage as Inc};
        self.trunk()
            .map(|(i, stage)| match stage {
                Stage::Conv(_) => Inc::conv(self.stages[i].0.clone(), Geometry::square(3, 1, 1)),
                _ => Inc::max_pool(self.stages[i].0.clone(), Geometry::square(2, 2, 0)),
            })
            .collect()
    }

    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> Result<Tensor> {
        self.run_trunk_stage(index, &inputs[0], false)
    }

    fn run_stage_padded(
        &self,
        index: usize,
        _stage: &gaze_engine::spatial::Stage,
        inputs: &[Tensor],
    ) -> Result<Tensor> {
        self.run_trunk_stage(index, &inputs[0], true)
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        let last = self.trunk().last().map(|(i, _)| i + 1).unwrap_or(0);
        self.run(last, features.clone(), &mut Taps::none())
    }
}

impl Vgg16 {
    /// The trunk's convolutions and pools with their index in `stages` (ReLUs are folded into the
    /// convolution before them).
    fn trunk(&self) -> impl Iterator<Item = (usize, &Stage)> {
        self.stages
            .iter()
            .enumerate()
            .take_while(|(_, (_, s))| matches!(s, Stage::Conv(_) | Stage::Relu | Stage::MaxPool))
            .filter(|(_, (_, s))| !matches!(s, Stage::Relu))
            .map(|(i, (_, s))| (i, s))
    }

    /// Trunk stage `index` (a convolution and its ReLU, or a pool), with or without its padding.
    fn run_trunk_stage(&self, index: usize, x: &Tensor, padded: bool) -> Result<Tensor> {
        let (_, stage) = self.trunk().nth(index).ok_or_else(|| Error::InvalidOption {
            option: "VGG16 incremental stage".into(),
            value: index.to_string(),
            expected: format!("a stage index below {}", self.trunk().count()),
        })?;
        match stage {
            Stage::Conv(conv) => conv.forward_relu(x, ops::ReluMode::Normal, padded),
            _ => ops::max_pool2d(x, Pool2dConfig::new(2, 2)),
        }
    }
}
