//! Xception with a tap at every module output, in timm's `legacy_xception` key layout (the port of
//! Keras's ImageNet weights, hub id `timm/legacy_xception.tf_in1k`).
//!
//! ## Reference
//! Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
//! <https://arxiv.org/abs/1610.02357>.
//!
//! ## Layout and tap names
//! - Stem: `conv1` (3×3, stride 2, no padding), `bn1`, `act1`, `conv2` (3×3, no padding), `bn2`,
//!   `act2`.
//! - Twelve blocks `block1` … `block12`. Each is a sequence `blockK.rep.I` of ReLUs, separable
//!   convolutions and batch norms, ended by a 3×3 max pool (stride 2, padding 1) in the blocks with
//!   stride 2 (1, 2, 3 and 12). A separable convolution `blockK.rep.I` is a depthwise 3×3
//!   convolution `blockK.rep.I.conv1` (its output is tapped) then a pointwise 1×1 convolution
//!   `blockK.rep.I.pointwise` (its output is the module's, tapped as `blockK.rep.I`).
//!   Blocks that change the shape have a skip branch `blockK.skip` (1×1 convolution) and
//!   `blockK.skipbn`. The block's output, the sum of both branches, is tapped as `blockK`.
//!   `block1` starts without a ReLU (`rep.0` is its first separable convolution); the others start
//!   with one (`rep.0`). `block12` keeps its input width until its last separable convolution
//!   ("grow last"); the others widen at their first.
//! - Exit: `conv3` (separable, with `conv3.conv1`), `bn3`, `act3`, `conv4` (with `conv4.conv1`),
//!   `bn4`, `act4`, then `global_pool` (global average pooling, `[N, C]`) and `fc` (the logits).
//!
//! Keras's layer names are aliases (see `docs/models.md` for the table): `block1_conv2` is `conv2`,
//! `block2_sepconv2_act` is `block1.rep.2`, `block6_sepconv1` is `block5.rep.1`,
//! `block14_sepconv1` is `conv3`, `block14_sepconv2_act` is `act4`.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use gaze_engine::ops::{self, Pool2dConfig};
use gaze_engine::{TapModel, Taps};

use crate::imagenet::ClassNames;
use crate::layers::{conv_cfg, join, resolve_alias, BatchNorm, Conv, Linear, ShapeReader};
use crate::vgg::check_input;
use crate::{Checkpoint, Error, Preprocess, Result};

/// The fixed structure of a block: separable convolutions, stride, whether it starts with a ReLU,
/// whether it widens at its first (rather than its last) separable convolution.
#[derive(Clone, Copy, Debug)]
struct BlockSpec {
    reps: usize,
    stride: usize,
    start_with_relu: bool,
    grow_first: bool,
}

const fn spec(reps: usize, stride: usize, start_with_relu: bool, grow_first: bool) -> BlockSpec {
    BlockSpec { reps, stride, start_with_relu, grow_first }
}

/// The twelve blocks of Xception: entry flow (1 to 3), middle flow (4 to 11), exit flow (12).
const BLOCKS: [BlockSpec; 12] = [
    spec(2, 2, false, true),
    spec(2, 2, true, true),
    spec(2, 2, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(3, 1, true, true),
    spec(2, 2, true, false),
];

/// The shape of one block: the output channels of its separable convolutions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XceptionBlockConfig {
    pub widths: Vec<usize>,
}

/// The shape of an [`Xception`]: read from a checkpoint, or chosen to build a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XceptionConfig {
    /// Output channels of `conv1` and `conv2` (32 and 64).
    pub stem: [usize; 2],
    /// The twelve blocks.
    pub blocks: Vec<XceptionBlockConfig>,
    /// Output channels of `conv3` and `conv4` (1536 and 2048).
    pub exit: [usize; 2],
    pub num_classes: usize,
    /// Square input size in pixels (299).
    pub input_size: usize,
}

impl XceptionConfig {
    /// ImageNet's Xception.
    pub fn imagenet() -> Self {
        let outs = [128, 256, 728, 728, 728, 728, 728, 728, 728, 728, 728, 1024];
        let mut cin = 64;
        let blocks = BLOCKS
            .iter()
            .zip(outs)
            .map(|(s, out)| {
                let widths = (0..s.reps).map(|i| if s.grow_first || i + 1 == s.reps { out } else { cin }).collect();
                cin = out;
                XceptionBlockConfig { widths }
            })
            .collect();
        XceptionConfig { stem: [32, 64], blocks, exit: [1536, 2048], num_classes: 1000, input_size: 299 }
    }

    /// Reads the configuration from a checkpoint's keys and shapes.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        let r = ShapeReader::new(ckpt);
        let c1 = r.conv("conv1", 3, 3, 1)?;
        r.batch_norm("bn1", c1)?;
        let c2 = r.conv("conv2", c1, 3, 1)?;
        r.batch_norm("bn2", c2)?;
        let mut cin = c2;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (k, spec) in BLOCKS.iter().enumerate() {
            let p = format!("block{}", k + 1);
            let block_in = cin;
            let mut widths = Vec::with_capacity(spec.reps);
            for (i, module) in rep_modules(spec).iter().enumerate() {
                let m = format!("{p}.rep.{i}");
                match module {
                    RepModule::SepConv => {
                        r.conv(&join(&m, "conv1"), cin, 3, 0)?;
                        let out = r.conv(&join(&m, "pointwise"), cin, 1, 1)?;
                        widths.push(out);
                        cin = out;
                    }
                    RepModule::BatchNorm => r.batch_norm(&m, cin)?,
                    RepModule::Relu | RepModule::MaxPool => {}
                }
            }
            let has_skip = r.contains(&format!("{p}.skip.weight"));
            if has_skip {
                let s = r.conv(&join(&p, "skip"), block_in, 1, 1)?;
                if s != cin {
                    return Err(r.error(format!(
                        "tensor `{p}.skip.weight` has {s} output channels; expected {cin} like the block's last \
                         separable convolution"
                    )));
                }
                r.batch_norm(&join(&p, "skipbn"), cin)?;
            } else if block_in != cin || spec.stride != 1 {
                return Err(r.error(format!(
                    "missing tensor `{p}.skip.weight`: the block maps {block_in} channels to {cin} with stride {}, \
                     so it needs a skip convolution",
                    spec.stride
                )));
            }
            blocks.push(XceptionBlockConfig { widths });
        }
        r.conv("conv3.conv1", cin, 3, 0)?;
        let c3 = r.conv("conv3.pointwise", cin, 1, 1)?;
        r.batch_norm("bn3", c3)?;
        r.conv("conv4.conv1", c3, 3, 0)?;
        let c4 = r.conv("conv4.pointwise", c3, 1, 1)?;
        r.batch_norm("bn4", c4)?;
        let (_, num_classes) = r.classifier("fc", Some(c4))?;
        let input_size = ckpt.metadata().get("input_size").and_then(|s| s.parse().ok()).unwrap_or(299);
        Ok(XceptionConfig { stem: [c1, c2], blocks, exit: [c3, c4], num_classes, input_size })
    }
}

/// A module of a block's `rep` sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RepModule {
    Relu,
    SepConv,
    BatchNorm,
    MaxPool,
}

/// The `rep` sequence of a block, in timm's order: (ReLU, separable convolution, batch norm) per
/// repetition, without the first ReLU when the block does not start with one, and a max pool at the
/// end of a strided block.
fn rep_modules(spec: &BlockSpec) -> Vec<RepModule> {
    let mut modules: Vec<RepModule> = (0..spec.reps)
        .flat_map(|_| [RepModule::Relu, RepModule::SepConv, RepModule::BatchNorm])
        .skip(usize::from(!spec.start_with_relu))
        .collect();
    if spec.stride != 1 {
        modules.push(RepModule::MaxPool);
    }
    modules
}

/// A depthwise 3×3 convolution then a pointwise 1×1 convolution, neither with a bias.
#[derive(Clone, Debug)]
struct SeparableConv {
    /// The tap name of the depthwise convolution's output (`<module>.conv1`).
    depthwise_name: String,
    depthwise: Conv,
    pointwise: Conv,
}

impl SeparableConv {
    fn load(vb: &VarBuilder, cin: usize, cout: usize) -> candle_core::Result<Self> {
        Ok(SeparableConv {
            depthwise_name: join(&vb.prefix(), "conv1"),
            depthwise: Conv::load(&vb.pp("conv1"), (cin, cin), 3, conv_cfg(1, 1, cin), false)?,
            pointwise: Conv::load(&vb.pp("pointwise"), (cin, cout), 1, conv_cfg(1, 0, 1), false)?,
        })
    }

    fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let y = taps.tap(&self.depthwise_name, self.depthwise.forward(x)?)?;
        self.pointwise.forward(&y)
    }
}

#[derive(Clone, Debug)]
enum Layer {
    Relu,
    SepConv(SeparableConv),
    BatchNorm(BatchNorm),
    MaxPool,
}

impl Layer {
    fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        match self {
            Layer::Relu => taps.relu(x),
            Layer::SepConv(conv) => conv.forward(x, taps),
            Layer::BatchNorm(bn) => bn.forward(x),
            Layer::MaxPool => ops::max_pool2d(x, Pool2dConfig::new(3, 2).padding(1)),
        }
    }
}

#[derive(Clone, Debug)]
struct Block {
    rep: Vec<(String, Layer)>,
    /// `blockK.skip`, `blockK.skipbn` and the layers, when the block changes the shape.
    skip: Option<(String, Conv, String, BatchNorm)>,
}

impl Block {
    fn load(vb: &VarBuilder, spec: &BlockSpec, cin: usize, c: &XceptionBlockConfig) -> candle_core::Result<Self> {
        let prefix = vb.prefix();
        let mut rep = Vec::new();
        let mut widths = c.widths.iter();
        let mut ch = cin;
        for (i, module) in rep_modules(spec).into_iter().enumerate() {
            let vb = vb.pp("rep").pp(i);
            let layer = match module {
                RepModule::Relu => Layer::Relu,
                RepModule::SepConv => {
                    let out = *widths.next().ok_or_else(|| {
                        candle_core::Error::Msg(format!("{prefix}: fewer widths than separable convolutions"))
                    })?;
                    let conv = SeparableConv::load(&vb, ch, out)?;
                    ch = out;
                    Layer::SepConv(conv)
                }
                RepModule::BatchNorm => Layer::BatchNorm(BatchNorm::load(&vb, ch)?),
                RepModule::MaxPool => Layer::MaxPool,
            };
            rep.push((vb.prefix(), layer));
        }
        let skip = if ch != cin || spec.stride != 1 {
            Some((
                join(&prefix, "skip"),
                Conv::load(&vb.pp("skip"), (cin, ch), 1, conv_cfg(spec.stride, 0, 1), false)?,
                join(&prefix, "skipbn"),
                BatchNorm::load(&vb.pp("skipbn"), ch)?,
            ))
        } else {
            None
        };
        Ok(Block { rep, skip })
    }

    fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (name, layer) in &self.rep {
            if let Layer::SepConv(conv) = layer {
                names.push(conv.depthwise_name.clone());
            }
            names.push(name.clone());
        }
        if let Some((skip, _, skipbn, _)) = &self.skip {
            names.push(skip.clone());
            names.push(skipbn.clone());
        }
        names
    }

    /// The block before its output tap: the sum of the `rep` branch and the skip branch.
    ///
    /// A separable convolution and the batch norm after it run folded, a batch norm and the ReLU
    /// after it fused (see [`run_layers`]); the skip branch's convolution and batch norm run
    /// folded when the call asks for neither's output.
    fn forward(&self, input: &Tensor, taps: &mut Taps, folds: &Folds) -> Result<Tensor> {
        let layers: Vec<(&str, &Layer)> = self.rep.iter().map(|(name, layer)| (name.as_str(), layer)).collect();
        let x = run_layers(&layers, input.clone(), taps, folds)?;
        let skip = match &self.skip {
            Some((skip_name, _, bn_name, _)) if folds.runs(taps, skip_name, bn_name) => {
                let s = folds.conv(skip_name)?.forward(input)?;
                let s = taps.tap(skip_name, s)?;
                taps.tap(bn_name, s)?
            }
            Some((skip_name, conv, bn_name, bn)) => {
                let s = taps.tap(skip_name, conv.forward(input)?)?;
                taps.tap(bn_name, bn.forward(&s)?)?
            }
            None => input.clone(),
        };
        Ok((x + skip)?)
    }
}

/// The convolutions folded with the batch norm after them ([`Conv::folded`]), by the tap name of
/// the convolution (a separable convolution's pointwise one under the separable convolution's
/// name), computed once when the model is built.
#[derive(Clone, Debug, Default)]
struct Folds(HashMap<String, Conv>);

impl Folds {
    /// Whether the convolution `conv` runs folded with the batch norm `bn`: when it has a folded
    /// copy and the call asks for neither's output.
    fn runs(&self, taps: &Taps, conv: &str, bn: &str) -> bool {
        self.0.contains_key(conv) && !taps.wants(conv) && !taps.wants(bn)
    }

    fn conv(&self, conv: &str) -> Result<&Conv> {
        self.0.get(conv).ok_or_else(|| Error::msg(format!("the Xception layer `{conv}` has no folded batch norm")))
    }

    /// Folds each convolution of `layers` (named) that a batch norm follows.
    fn add<'a>(
        &mut self,
        layers: impl IntoIterator<Item = (&'a str, Option<&'a Conv>, Option<&'a BatchNorm>)>,
    ) -> candle_core::Result<()> {
        let layers: Vec<_> = layers.into_iter().collect();
        for pair in layers.windows(2) {
            if let [(name, Some(conv), _), (_, _, Some(bn))] = pair {
                self.0.insert(name.to_string(), conv.folded(bn)?);
            }
        }
        Ok(())
    }
}

/// The convolution a layer's batch norm folds into: a separable convolution's pointwise one.
fn foldable(layer: &Layer) -> (Option<&Conv>, Option<&BatchNorm>) {
    match layer {
        Layer::SepConv(sep) => (Some(&sep.pointwise), None),
        Layer::BatchNorm(bn) => (None, Some(bn)),
        _ => (None, None),
    }
}

/// Runs `layers` in order on `x`, passing each output through its tap.
///
/// A separable convolution and the batch norm after it run as the depthwise convolution and the
/// folded pointwise one ([`Conv::folded`]), with a ReLU after the batch norm fused in, when the
/// call asks nothing of the separable convolution's or the batch norm's output; otherwise a
/// batch norm followed by a ReLU runs as one fused op ([`ops::batch_norm_relu`]) when the call
/// asks nothing of the batch norm's own output.
/// Each folded or fused op keeps one tensor where the layers keep two or three, and every name
/// still passes through [`Taps::tap`] in order (a folded or fused layer's with the output of the
/// group's last layer, which no request reads), so the listing of layers is unchanged.
fn run_layers(layers: &[(&str, &Layer)], mut x: Tensor, taps: &mut Taps, folds: &Folds) -> Result<Tensor> {
    // Whether the previous layer was a batch norm fused with this ReLU.
    let mut fused = false;
    let mut i = 0;
    while let Some(&(name, layer)) = layers.get(i) {
        let relu_next = matches!(layers.get(i + 1), Some((_, Layer::Relu)));
        if let (Layer::SepConv(sep), Some(&(bn_name, Layer::BatchNorm(_)))) = (layer, layers.get(i + 1)) {
            if folds.runs(taps, name, bn_name) {
                let y = taps.tap(&sep.depthwise_name, sep.depthwise.forward(&x)?)?;
                let relu = matches!(layers.get(i + 2), Some((_, Layer::Relu)));
                let pointwise = folds.conv(name)?;
                x = if relu { pointwise.forward_relu(&y, taps.relu_mode(), true)? } else { pointwise.forward(&y)? };
                x = taps.tap(name, x)?;
                x = taps.tap(bn_name, x)?;
                fused = relu;
                i += 2;
                continue;
            }
        }
        x = match layer {
            Layer::BatchNorm(bn) if relu_next && !taps.wants(name) => {
                fused = true;
                bn.forward_relu(&x, taps.relu_mode())?
            }
            Layer::Relu if std::mem::take(&mut fused) => x,
            _ => layer.forward(&x, taps)?,
        };
        x = taps.tap(name, x)?;
        i += 1;
    }
    Ok(x)
}

/// One step of the main path; each ends at a tap that is a cut point.
#[derive(Clone, Debug)]
enum Step {
    Conv(Conv),
    Layer(Layer),
    Block(Box<Block>),
    GlobalPool,
    Fc(Linear),
}

/// Xception in timm's `legacy_xception` layout (see the [module documentation](self)).
///
/// Cut points: every stem and exit layer (`conv1` … `act2`, `conv3` … `fc`) and every block output
/// `block1` … `block12`.
#[derive(Clone, Debug)]
pub struct Xception {
    config: XceptionConfig,
    steps: Vec<(String, Step)>,
    names: Vec<String>,
    aliases: Vec<(String, String)>,
    classes: ClassNames,
    device: Device,
    folds: Folds,
}

impl Xception {
    /// Builds the model from a [`VarBuilder`] with timm's `legacy_xception` keys.
    pub fn new(config: XceptionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        if config.blocks.len() != BLOCKS.len() {
            return Err(candle_core::Error::Msg(format!(
                "Xception has {} blocks; the configuration has {}",
                BLOCKS.len(),
                config.blocks.len()
            )));
        }
        let device = vb.device().clone();
        let [c1, c2] = config.stem;
        let [c3, c4] = config.exit;
        let mut steps: Vec<(String, Step)> = vec![
            ("conv1".into(), Step::Conv(Conv::load(&vb.pp("conv1"), (3, c1), 3, conv_cfg(2, 0, 1), false)?)),
            ("bn1".into(), Step::Layer(Layer::BatchNorm(BatchNorm::load(&vb.pp("bn1"), c1)?))),
            ("act1".into(), Step::Layer(Layer::Relu)),
            ("conv2".into(), Step::Conv(Conv::load(&vb.pp("conv2"), (c1, c2), 3, conv_cfg(1, 0, 1), false)?)),
            ("bn2".into(), Step::Layer(Layer::BatchNorm(BatchNorm::load(&vb.pp("bn2"), c2)?))),
            ("act2".into(), Step::Layer(Layer::Relu)),
        ];
        let mut names: Vec<String> = steps.iter().map(|(n, _)| n.clone()).collect();
        let mut cin = c2;
        for (k, (spec, c)) in BLOCKS.iter().zip(&config.blocks).enumerate() {
            let name = format!("block{}", k + 1);
            let block = Block::load(&vb.pp(&name), spec, cin, c)?;
            names.extend(block.names());
            names.push(name.clone());
            steps.push((name, Step::Block(Box::new(block))));
            cin = c.widths.last().copied().unwrap_or(cin);
        }
        let exit = [
            ("conv3", Layer::SepConv(SeparableConv::load(&vb.pp("conv3"), cin, c3)?)),
            ("bn3", Layer::BatchNorm(BatchNorm::load(&vb.pp("bn3"), c3)?)),
            ("act3", Layer::Relu),
            ("conv4", Layer::SepConv(SeparableConv::load(&vb.pp("conv4"), c3, c4)?)),
            ("bn4", Layer::BatchNorm(BatchNorm::load(&vb.pp("bn4"), c4)?)),
            ("act4", Layer::Relu),
        ];
        for (name, layer) in exit {
            if let Layer::SepConv(conv) = &layer {
                names.push(conv.depthwise_name.clone());
            }
            names.push(name.into());
            steps.push((name.into(), Step::Layer(layer)));
        }
        steps.push(("global_pool".into(), Step::GlobalPool));
        steps.push(("fc".into(), Step::Fc(Linear::load(&vb.pp("fc"), (c4, config.num_classes))?)));
        names.extend(["global_pool", "fc"].map(String::from));
        let aliases = keras_aliases();
        let classes = ClassNames::for_head(config.num_classes, None);
        let mut folds = Folds::default();
        folds.add(steps.iter().map(|(name, step)| match step {
            Step::Conv(conv) => (name.as_str(), Some(conv), None),
            Step::Layer(layer) => {
                let (conv, bn) = foldable(layer);
                (name.as_str(), conv, bn)
            }
            _ => (name.as_str(), None, None),
        }))?;
        for (_, step) in &steps {
            if let Step::Block(block) = step {
                folds.add(block.rep.iter().map(|(name, layer)| {
                    let (conv, bn) = foldable(layer);
                    (name.as_str(), conv, bn)
                }))?;
                if let Some((skip, conv, skipbn, bn)) = &block.skip {
                    folds.add([(skip.as_str(), Some(conv), None), (skipbn.as_str(), None, Some(bn))])?;
                }
            }
        }
        Ok(Xception { config, steps, names, aliases, classes, device, folds })
    }

    /// Loads a timm `legacy_xception` checkpoint, reading the widths and the class count from it (and
    /// class names from its `classes` metadata, comma-separated, when present).
    pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<Self> {
        let config = XceptionConfig::from_checkpoint(ckpt)?;
        let mut model = Xception::new(config, ckpt.var_builder(device)).map_err(|e| ckpt.fit_error(e))?;
        model.classes =
            ClassNames::for_head(model.config.num_classes, ckpt.metadata().get("classes").map(String::as_str));
        Ok(model)
    }

    pub fn config(&self) -> &XceptionConfig {
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

    /// Keras's `tf` mode, which the weights were trained with: resize to the input size, scale to
    /// [−1, 1] (timm's mean and standard deviation of 0.5).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::Tf { size: self.config.input_size as u32 }
    }

    /// Runs the steps from `from` on, passing each output through its tap; a stem convolution,
    /// its batch norm and its ReLU run as the folded convolution with the ReLU fused in when the
    /// call asks nothing of the convolution's or the batch norm's output, and the plain layers
    /// (the stem's batch norms and ReLUs, the exit flow) fold and fuse as [`run_layers`] does.
    fn run(&self, from: usize, x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        let steps = &self.steps[from..];
        let mut x = x;
        let mut i = 0;
        while i < steps.len() {
            // A run of plain layers (the stem's, the exit flow's) goes through `run_layers`, which
            // folds and fuses within it; the stem's convolutions fold here.
            let run_end = (i..steps.len()).find(|&j| !matches!(steps[j].1, Step::Layer(_))).unwrap_or(steps.len());
            if run_end > i {
                let layers: Vec<(&str, &Layer)> = steps[i..run_end]
                    .iter()
                    .filter_map(|(name, step)| match step {
                        Step::Layer(layer) => Some((name.as_str(), layer)),
                        _ => None,
                    })
                    .collect();
                x = run_layers(&layers, x, taps, &self.folds)?;
                i = run_end;
                continue;
            }
            let (name, step) = &steps[i];
            let bn_next = match steps.get(i + 1) {
                Some((bn, Step::Layer(Layer::BatchNorm(_)))) => Some(bn.as_str()),
                _ => None,
            };
            x = match step {
                Step::Conv(_) if bn_next.is_some_and(|bn| self.folds.runs(taps, name, bn)) => {
                    // The convolution, its batch norm and the ReLU after it as one op.
                    let relu = matches!(steps.get(i + 2), Some((_, Step::Layer(Layer::Relu))));
                    let conv = self.folds.conv(name)?;
                    let mut y = if relu { conv.forward_relu(&x, taps.relu_mode(), true)? } else { conv.forward(&x)? };
                    let group = if relu { 3 } else { 2 };
                    for (name, _) in &steps[i..i + group] {
                        y = taps.tap(name, y)?;
                    }
                    i += group;
                    x = y;
                    continue;
                }
                Step::Conv(conv) => conv.forward(&x)?,
                Step::Layer(layer) => layer.forward(&x, taps)?,
                Step::Block(block) => block.forward(&x, taps, &self.folds)?,
                Step::GlobalPool => ops::adaptive_avg_pool2d(&x, (1, 1))?.flatten_from(1)?,
                Step::Fc(fc) => fc.forward(&x)?,
            };
            x = taps.tap(name, x)?;
            i += 1;
        }
        Ok(x)
    }
}

/// Keras's Xception layer names and the taps they stand for.
///
/// Keras's entry-flow blocks 2 to 4 are timm's `block1` to `block3`, its middle-flow blocks 5 to
/// 12 are `block4` to `block11`, its block 13 is `block12`, and its block 14 is timm's exit
/// (`conv3` … `act4`).
fn keras_aliases() -> Vec<(String, String)> {
    let mut a: Vec<(String, String)> = [
        ("block1_conv1", "conv1"),
        ("block1_conv1_bn", "bn1"),
        ("block1_conv1_act", "act1"),
        ("block1_conv2", "conv2"),
        ("block1_conv2_bn", "bn2"),
        ("block1_conv2_act", "act2"),
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), t.to_string()))
    .collect();
    for (k, spec) in BLOCKS.iter().enumerate() {
        let keras = k + 2;
        let timm = format!("block{}", k + 1);
        let mut sep = 0;
        for (i, module) in rep_modules(spec).iter().enumerate() {
            let target = format!("{timm}.rep.{i}");
            let alias = match module {
                // A ReLU belongs to the separable convolution that follows it.
                RepModule::Relu => format!("block{keras}_sepconv{}_act", sep + 1),
                RepModule::SepConv => {
                    sep += 1;
                    format!("block{keras}_sepconv{sep}")
                }
                RepModule::BatchNorm => format!("block{keras}_sepconv{sep}_bn"),
                RepModule::MaxPool => format!("block{keras}_pool"),
            };
            a.push((alias, target));
        }
    }
    // Keras's block 2 (timm's block1) has no leading ReLU: its `block2_sepconv2_act` is the ReLU
    // between the two separable convolutions, which the loop above names correctly.
    for (k, t) in [
        ("block14_sepconv1", "conv3"),
        ("block14_sepconv1_bn", "bn3"),
        ("block14_sepconv1_act", "act3"),
        ("block14_sepconv2", "conv4"),
        ("block14_sepconv2_bn", "bn4"),
        ("block14_sepconv2_act", "act4"),
        ("avg_pool", "global_pool"),
        ("predictions", "fc"),
    ] {
        a.push((k.into(), t.into()));
    }
    a
}

impl TapModel for Xception {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        check_input("Xception", x, 7)?;
        self.run(0, x.clone(), taps)
    }

    fn layer_names(&self) -> Vec<String> {
        self.names.clone()
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
        self.steps.iter().map(|(n, _)| n.clone()).collect()
    }

    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let name = self.resolve_layer(layer)?;
        let idx = self.steps.iter().position(|(n, _)| *n == name).ok_or_else(|| Error::UnsupportedLayer {
            name: layer.to_string(),
            reason: format!(
                "it lies inside a block or a separable convolution, so the model cannot start there; it can start \
                 at: {}",
                self.cut_points().join(", ")
            ),
        })?;
        let x = taps.tap(&self.steps[idx].0, activation.clone())?;
        self.run(idx + 1, x, taps)
    }

    fn resolve_layer(&self, name: &str) -> Result<String> {
        resolve_alias(&self.names, &self.aliases, name)
    }
}

/// Where a layer lives: a step of the main path, or module `j` of the `rep` sequence of the block at
/// step `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    Step(usize),
    Rep(usize, usize),
}

/// One incremental stage of Xception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IncOp {
    /// A stem convolution at this step (3×3, no padding), with the batch norm and ReLU after it.
    Stem(usize),
    /// The depthwise 3×3 convolution of the separable convolution at `at`, after a ReLU when `relu`.
    Depthwise { at: Loc, relu: bool },
    /// The pointwise convolution of the separable convolution at `at`, then the batch norm at `bn`,
    /// then a ReLU when `relu`.
    Pointwise { at: Loc, bn: Loc, relu: bool },
    /// A block's closing max pool (3×3, stride 2, padding 1).
    MaxPool(Loc),
    /// The skip branch of the block at this step (1×1 convolution with the block's stride, batch norm).
    Skip(usize),
    /// The residual sum of the block at this step.
    Sum(usize),
}

impl Xception {
    /// The incremental stages with the nodes each reads (0 is the input, `i + 1` the output of
    /// stage `i`), in the order of [`Incremental::stages`](gaze_engine::spatial::Incremental::stages).
    ///
    /// A ReLU is folded into the pointwise stage right before it when it directly follows that
    /// stage's batch norm, and otherwise into the depthwise stage after it (a block's first ReLU,
    /// which the skip branch does not see); zero padding commutes with ReLU, so either is exact.
    fn incremental_ops(&self) -> Result<Vec<(IncOp, Vec<usize>)>> {
        let mut ops: Vec<(IncOp, Vec<usize>)> = Vec::new();
        let last = |ops: &Vec<(IncOp, Vec<usize>)>| vec![ops.len()];
        let mut pending_relu = false;
        // Walks one sequence of layers (a block's `rep` or the exit flow), appending its stages.
        let mut walk = |ops: &mut Vec<(IncOp, Vec<usize>)>, layers: Vec<(Loc, &Layer)>| -> Result<()> {
            let mut k = 0;
            while k < layers.len() {
                let (loc, layer) = layers[k];
                match layer {
                    Layer::Relu => match ops.last_mut() {
                        Some((IncOp::Pointwise { relu, .. }, _)) if k > 0 && !*relu && !pending_relu => {
                            *relu = matches!(layers[k - 1].1, Layer::BatchNorm(_));
                            pending_relu = !*relu;
                        }
                        _ => pending_relu = true,
                    },
                    Layer::SepConv(_) => {
                        let input = last(ops);
                        ops.push((IncOp::Depthwise { at: loc, relu: pending_relu }, input));
                        pending_relu = false;
                        match layers.get(k + 1) {
                            Some((bn, Layer::BatchNorm(_))) => {
                                let input = last(ops);
                                ops.push((IncOp::Pointwise { at: loc, bn: *bn, relu: false }, input));
                                k += 1;
                            }
                            _ => {
                                return Err(Error::msg(
                                    "an Xception separable convolution is not followed by a batch norm",
                                ))
                            }
                        }
                    }
                    Layer::MaxPool => {
                        let input = last(ops);
                        ops.push((IncOp::MaxPool(loc), input));
                    }
                    Layer::BatchNorm(_) => {
                        return Err(Error::msg("an Xception batch norm does not follow a separable convolution"))
                    }
                }
                k += 1;
            }
            if pending_relu {
                return Err(Error::msg("an Xception ReLU is not followed by a separable convolution"));
            }
            Ok(())
        };
        for (i, (_, step)) in self.steps.iter().enumerate() {
            match step {
                Step::Conv(_) => {
                    let input = last(&ops);
                    ops.push((IncOp::Stem(i), input));
                }
                Step::Block(block) => {
                    let input = ops.len();
                    walk(&mut ops, block.rep.iter().enumerate().map(|(j, (_, l))| (Loc::Rep(i, j), l)).collect())?;
                    let main = ops.len();
                    let shortcut = if block.skip.is_some() {
                        ops.push((IncOp::Skip(i), vec![input]));
                        ops.len()
                    } else {
                        input
                    };
                    ops.push((IncOp::Sum(i), vec![main, shortcut]));
                }
                Step::Layer(_) if i > self.last_block_step() => {
                    let exit: Vec<(Loc, &Layer)> = self.steps[i..]
                        .iter()
                        .enumerate()
                        .filter_map(|(j, (_, s))| match s {
                            Step::Layer(l) => Some((Loc::Step(i + j), l)),
                            _ => None,
                        })
                        .collect();
                    walk(&mut ops, exit)?;
                    break;
                }
                _ => {}
            }
        }
        Ok(ops)
    }

    fn last_block_step(&self) -> usize {
        self.steps.iter().rposition(|(_, s)| matches!(s, Step::Block(_))).unwrap_or(0)
    }

    /// The layer at `loc`.
    fn layer_at(&self, loc: Loc) -> Result<&Layer> {
        let found = match loc {
            Loc::Step(i) => match self.steps.get(i) {
                Some((_, Step::Layer(l))) => Some(l),
                _ => None,
            },
            Loc::Rep(i, j) => match self.steps.get(i) {
                Some((_, Step::Block(b))) => b.rep.get(j).map(|(_, l)| l),
                _ => None,
            },
        };
        found.ok_or_else(|| Error::msg(format!("no Xception layer at {loc:?}")))
    }

    /// The name of the layer at `loc`.
    fn layer_name(&self, loc: Loc) -> String {
        match loc {
            Loc::Step(i) => self.steps[i].0.clone(),
            Loc::Rep(i, j) => match &self.steps[i].1 {
                Step::Block(b) => b.rep[j].0.clone(),
                _ => self.steps[i].0.clone(),
            },
        }
    }

    fn separable(&self, loc: Loc) -> Result<&SeparableConv> {
        match self.layer_at(loc)? {
            Layer::SepConv(s) => Ok(s),
            _ => {
                Err(Error::msg(format!("the Xception layer `{}` is not a separable convolution", self.layer_name(loc))))
            }
        }
    }

    /// Incremental stage `index` on `inputs`, with its padding or without it.
    fn run_incremental(&self, index: usize, inputs: &[Tensor], padded: bool) -> Result<Tensor> {
        let ops = self.incremental_ops()?;
        let (op, _) = ops.get(index).ok_or_else(|| Error::InvalidOption {
            option: "Xception incremental stage".into(),
            value: index.to_string(),
            expected: format!("a stage index below {}", ops.len()),
        })?;
        let expected = if matches!(op, IncOp::Sum(_)) { 2 } else { 1 };
        if inputs.len() != expected {
            return Err(Error::msg(format!(
                "Xception incremental stage {index} reads {expected} tensors; it was given {}",
                inputs.len()
            )));
        }
        let x = &inputs[0];
        let conv = |c: &Conv, x: &Tensor| if padded { c.forward(x) } else { c.forward_unpadded(x) };
        let relu = |x: &Tensor| ops::relu(x, ops::ReluMode::Normal);
        let bn_at = |loc: Loc| match self.layer_at(loc)? {
            Layer::BatchNorm(bn) => Ok(bn),
            _ => Err(Error::msg(format!("the Xception layer `{}` is not a batch norm", self.layer_name(loc)))),
        };
        match *op {
            // The convolutions run folded with their batch norms, as the whole forward pass does.
            IncOp::Stem(i) => match (&self.steps[i].1, self.steps.get(i + 1).map(|s| &s.1)) {
                (Step::Conv(_), Some(Step::Layer(Layer::BatchNorm(_)))) => {
                    self.folds.conv(&self.steps[i].0)?.forward_relu(x, ops::ReluMode::Normal, true)
                }
                _ => Err(Error::msg(format!("Xception's `{}` is not a convolution and a batch norm", self.steps[i].0))),
            },
            IncOp::Depthwise { at, relu: first } => {
                let x = if first { relu(x)? } else { x.clone() };
                conv(&self.separable(at)?.depthwise, &x)
            }
            IncOp::Pointwise { at, bn, relu: last } => {
                bn_at(bn)?;
                let pointwise = self.folds.conv(&self.layer_name(at))?;
                if last {
                    pointwise.forward_relu(x, ops::ReluMode::Normal, true)
                } else {
                    pointwise.forward(x)
                }
            }
            IncOp::MaxPool(_) => {
                let cfg = Pool2dConfig::new(3, 2);
                ops::max_pool2d(x, if padded { cfg.padding(1) } else { cfg })
            }
            IncOp::Skip(i) => match &self.steps[i].1 {
                Step::Block(b) => match &b.skip {
                    Some((skip, ..)) => self.folds.conv(skip)?.forward(x),
                    None => Err(Error::msg(format!("the Xception block `{}` has no skip branch", self.steps[i].0))),
                },
                _ => Err(Error::msg(format!("Xception's `{}` is not a block", self.steps[i].0))),
            },
            IncOp::Sum(_) => Ok((x + &inputs[1])?),
        }
    }
}

/// Xception's trunk as incremental stages for occlusion (`gaze_engine::spatial`): the two stem
/// convolutions (3×3 without padding, the first with stride 2, each with its batch norm and ReLU),
/// every separable convolution as a depthwise stage (3×3, padding 1) and a pointwise stage (with
/// the batch norm after it), the strided blocks' max pools (3×3, stride 2, padding 1, padding with
/// −∞), the skip branches (1×1 with the block's stride, reading the block's input) and the residual
/// sums; ReLUs are folded into the stage before or after them.
/// The head (global average pooling and `fc`) is everything after `act4`.
impl gaze_engine::spatial::Incremental for Xception {
    fn check_input(&self, input: &Tensor) -> Result<()> {
        check_input("Xception", input, 7)
    }

    fn stages(&self) -> Vec<gaze_engine::spatial::Stage> {
        use gaze_engine::spatial::{Geometry, Stage as Inc};
        // The structure was checked when the model was built; a model whose layers do not follow
        // Xception's pattern describes no stages, which `checked_stages` reports.
        let ops = self.incremental_ops().unwrap_or_default();
        ops.into_iter()
            .map(|(op, inputs)| {
                let stage = match op {
                    IncOp::Stem(i) => {
                        let stride = if i == 0 { 2 } else { 1 };
                        Inc::conv(self.steps[i].0.clone(), Geometry::square(3, stride, 0))
                    }
                    IncOp::Depthwise { at, .. } => {
                        Inc::conv(format!("{}.conv1", self.layer_name(at)), Geometry::square(3, 1, 1))
                    }
                    IncOp::Pointwise { at, .. } => Inc::conv(self.layer_name(at), Geometry::POINTWISE),
                    IncOp::MaxPool(at) => Inc::max_pool(self.layer_name(at), Geometry::square(3, 2, 1)),
                    IncOp::Skip(i) => {
                        let stride = BLOCKS.get(self.block_number(i)).map(|b| b.stride).unwrap_or(1);
                        Inc::conv(format!("{}.skip", self.steps[i].0), Geometry::square(1, stride, 0))
                    }
                    IncOp::Sum(i) => Inc::pointwise(self.steps[i].0.clone()),
                };
                stage.reading(inputs)
            })
            .collect()
    }

    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> Result<Tensor> {
        self.run_incremental(index, inputs, false)
    }

    fn run_stage_padded(
        &self,
        index: usize,
        _stage: &gaze_engine::spatial::Stage,
        inputs: &[Tensor],
    ) -> Result<Tensor> {
        self.run_incremental(index, inputs, true)
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        let pool = self.steps.iter().position(|(_, s)| matches!(s, Step::GlobalPool)).unwrap_or(self.steps.len());
        self.run(pool, features.clone(), &mut Taps::none())
    }
}

impl Xception {
    /// The index in [`BLOCKS`] of the block at step `i` (the stem takes six steps).
    fn block_number(&self, i: usize) -> usize {
        self.steps[..i].iter().filter(|(_, s)| matches!(s, Step::Block(_))).count()
    }
}
