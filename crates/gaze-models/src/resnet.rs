//! ResNet-50 (and the other bottleneck ResNets) with a tap at every module output, in the key
//! layout torchvision and timm share.
//!
//! ## Reference
//! He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition",
//! <https://arxiv.org/abs/1512.03385>.
//! The stride sits on each bottleneck's 3×3 convolution ("ResNet v1.5"), as in torchvision and timm.
//!
//! ## Layout and tap names
//! The stem `conv1` (7×7, stride 2), `bn1`, `relu`, `maxpool` (3×3, stride 2, padding 1); four stages
//! `layer1` … `layer4` of bottleneck blocks `layerS.B` with `conv1` (1×1), `bn1`, `act1`, `conv2`
//! (3×3, stride 2 in the first block of stages 2 to 4), `bn2`, `act2`, `conv3` (1×1), `bn3`, and,
//! where the shape changes, `downsample.0` (1×1 convolution) and `downsample.1` (batch norm).
//! A block's output (after the residual sum and the last ReLU) is tapped as `layerS.B`, a stage's as
//! `layerS`; then `avgpool` (`[N, C, 1, 1]`) and `fc` (the logits).
//! The number of blocks per stage, the widths and the class count are read from the checkpoint, so
//! ResNet-101 and ResNet-152 load too.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use gaze_engine::ops::{self, Pool2dConfig};
use gaze_engine::{TapModel, Taps};

use crate::imagenet::ClassNames;
use crate::layers::{conv_cfg, join, BatchNorm, Conv, Linear, ShapeReader};
use crate::vgg::{check_input, torchvision_preprocess};
use crate::{Checkpoint, Error, Preprocess, Result};

/// The shape of one bottleneck block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BottleneckConfig {
    /// Output channels of `conv1` and `conv2`.
    pub width: usize,
    /// Output channels of `conv3` (the block's output).
    pub out: usize,
    /// The stride of `conv2` and of the downsampling convolution.
    pub stride: usize,
    /// Whether the block has a `downsample` branch.
    pub downsample: bool,
}

/// The shape of a [`ResNet`]: read from a checkpoint, or chosen to build a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Output channels of the stem's `conv1`.
    pub stem: usize,
    /// The blocks of `layer1` … `layer4`.
    pub stages: Vec<Vec<BottleneckConfig>>,
    pub num_classes: usize,
    /// Square input size in pixels.
    pub input_size: usize,
}

impl ResNetConfig {
    /// ImageNet's ResNet-50: 3, 4, 6 and 3 blocks of widths 64, 128, 256 and 512.
    pub fn resnet50() -> Self {
        let stages = [(3, 64), (4, 128), (6, 256), (3, 512)]
            .into_iter()
            .enumerate()
            .map(|(s, (blocks, width))| {
                (0..blocks)
                    .map(|b| BottleneckConfig {
                        width,
                        out: width * 4,
                        stride: if s > 0 && b == 0 { 2 } else { 1 },
                        downsample: b == 0,
                    })
                    .collect()
            })
            .collect();
        ResNetConfig { stem: 64, stages, num_classes: 1000, input_size: 224 }
    }

    /// Reads the configuration from a checkpoint's keys and shapes.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        let r = ShapeReader::new(ckpt);
        let stem = r.conv("conv1", 3, 7, 1)?;
        r.batch_norm("bn1", stem)?;
        let mut cin = stem;
        let mut stages = Vec::with_capacity(4);
        for s in 0..4 {
            let stage = format!("layer{}", s + 1);
            let count = r.count(&stage, "conv1.weight");
            if count == 0 {
                return Err(r.error(format!(
                    "missing tensor `{stage}.0.conv1.weight`; is this a checkpoint of a bottleneck ResNet?"
                )));
            }
            let mut blocks = Vec::with_capacity(count);
            for b in 0..count {
                let p = format!("{stage}.{b}");
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let width = r.conv(&join(&p, "conv1"), cin, 1, 1)?;
                r.batch_norm(&join(&p, "bn1"), width)?;
                let width2 = r.conv(&join(&p, "conv2"), width, 3, 1)?;
                if width2 != width {
                    return Err(r.error(format!(
                        "tensor `{p}.conv2.weight` has {width2} output channels; expected {width} like `{p}.conv1`"
                    )));
                }
                r.batch_norm(&join(&p, "bn2"), width)?;
                let out = r.conv(&join(&p, "conv3"), width, 1, 1)?;
                r.batch_norm(&join(&p, "bn3"), out)?;
                let downsample = r.contains(&format!("{p}.downsample.0.weight"));
                if downsample {
                    let d = r.conv(&join(&p, "downsample.0"), cin, 1, 1)?;
                    if d != out {
                        return Err(r.error(format!(
                            "tensor `{p}.downsample.0.weight` has {d} output channels; expected {out} like `{p}.conv3`"
                        )));
                    }
                    r.batch_norm(&join(&p, "downsample.1"), out)?;
                } else if cin != out || stride != 1 {
                    return Err(r.error(format!(
                        "missing tensor `{p}.downsample.0.weight`: the block maps {cin} channels to {out} \
                         with stride {stride}, so it needs a downsampling branch"
                    )));
                }
                blocks.push(BottleneckConfig { width, out, stride, downsample });
                cin = out;
            }
            stages.push(blocks);
        }
        let (_, num_classes) = r.classifier("fc", Some(cin))?;
        let input_size = ckpt.metadata().get("input_size").and_then(|s| s.parse().ok()).unwrap_or(224);
        Ok(ResNetConfig { stem, stages, num_classes, input_size })
    }
}

/// The tap names of one bottleneck block, made once.
#[derive(Clone, Debug)]
struct BlockNames {
    conv1: String,
    bn1: String,
    act1: String,
    conv2: String,
    bn2: String,
    act2: String,
    conv3: String,
    bn3: String,
    down_conv: String,
    down_bn: String,
}

impl BlockNames {
    fn new(p: &str) -> Self {
        let n = |s: &str| join(p, s);
        BlockNames {
            conv1: n("conv1"),
            bn1: n("bn1"),
            act1: n("act1"),
            conv2: n("conv2"),
            bn2: n("bn2"),
            act2: n("act2"),
            conv3: n("conv3"),
            bn3: n("bn3"),
            down_conv: n("downsample.0"),
            down_bn: n("downsample.1"),
        }
    }

    fn all(&self, downsample: bool) -> Vec<String> {
        let mut v = vec![
            self.conv1.clone(),
            self.bn1.clone(),
            self.act1.clone(),
            self.conv2.clone(),
            self.bn2.clone(),
            self.act2.clone(),
            self.conv3.clone(),
            self.bn3.clone(),
        ];
        if downsample {
            v.push(self.down_conv.clone());
            v.push(self.down_bn.clone());
        }
        v
    }
}

#[derive(Clone, Debug)]
struct Bottleneck {
    names: BlockNames,
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    conv3: Conv,
    bn3: BatchNorm,
    downsample: Option<(Conv, BatchNorm)>,
    /// The stride of `conv2` and of the downsampling convolution.
    stride: usize,
    /// `conv1`, `conv2`, `conv3` and the downsampling convolution each folded with its batch norm
    /// ([`Conv::folded`]).
    folded: [Conv; 3],
    folded_down: Option<Conv>,
}

impl Bottleneck {
    fn load(vb: &VarBuilder, cin: usize, c: &BottleneckConfig) -> candle_core::Result<Self> {
        let names = BlockNames::new(&vb.prefix());
        let downsample = if c.downsample {
            let d = vb.pp("downsample");
            Some((
                Conv::load(&d.pp(0), (cin, c.out), 1, conv_cfg(c.stride, 0, 1), false)?,
                BatchNorm::load(&d.pp(1), c.out)?,
            ))
        } else {
            None
        };
        let conv1 = Conv::load(&vb.pp("conv1"), (cin, c.width), 1, conv_cfg(1, 0, 1), false)?;
        let bn1 = BatchNorm::load(&vb.pp("bn1"), c.width)?;
        let conv2 = Conv::load(&vb.pp("conv2"), (c.width, c.width), 3, conv_cfg(c.stride, 1, 1), false)?;
        let bn2 = BatchNorm::load(&vb.pp("bn2"), c.width)?;
        let conv3 = Conv::load(&vb.pp("conv3"), (c.width, c.out), 1, conv_cfg(1, 0, 1), false)?;
        let bn3 = BatchNorm::load(&vb.pp("bn3"), c.out)?;
        let folded = [conv1.folded(&bn1)?, conv2.folded(&bn2)?, conv3.folded(&bn3)?];
        let folded_down = downsample.as_ref().map(|(conv, bn)| conv.folded(bn)).transpose()?;
        Ok(Bottleneck { names, conv1, bn1, conv2, bn2, conv3, bn3, downsample, stride: c.stride, folded, folded_down })
    }

    /// The block before its output tap: the residual sum after the last ReLU.
    ///
    /// A convolution and its batch norm run as the folded convolution ([`Conv::folded`]), with
    /// the ReLU after it fused in ([`Conv::forward_relu`]), when the call asks nothing of the
    /// convolution's or the batch norm's own output; a batch norm whose convolution's output is
    /// asked for runs with its ReLU fused ([`ops::batch_norm_relu`]) unless its own output is
    /// asked for too; the residual sum and the last ReLU always run as one op ([`ops::add_relu`]:
    /// the sum has no tap), and when `conv3` and the shortcut fold, `conv3`, the sum and the ReLU
    /// run as one ([`Conv::forward_add_relu`]).
    /// Every name still passes through [`Taps::tap`] in order (a folded or fused layer's with the
    /// output of the last layer of the group, which no request reads), so the listing of layers is
    /// unchanged.
    fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let n = &self.names;
        let mode = taps.relu_mode();
        let y = if folds(taps, &n.conv1, &n.bn1) {
            let y = self.folded[0].forward_relu(x, mode, true)?;
            tap_all(taps, &[&n.conv1, &n.bn1, &n.act1], y)?
        } else {
            let y = taps.tap(&n.conv1, self.conv1.forward(x)?)?;
            bn_relu(taps, &n.bn1, &n.act1, &self.bn1, &y)?
        };
        let y = if folds(taps, &n.conv2, &n.bn2) {
            let y = self.folded[1].forward_relu(&y, mode, true)?;
            tap_all(taps, &[&n.conv2, &n.bn2, &n.act2], y)?
        } else {
            let y = taps.tap(&n.conv2, self.conv2.forward(&y)?)?;
            bn_relu(taps, &n.bn2, &n.act2, &self.bn2, &y)?
        };
        let down_folds = self.downsample.is_none() || folds(taps, &n.down_conv, &n.down_bn);
        if folds(taps, &n.conv3, &n.bn3) && down_folds {
            // `conv3` and `bn3` folded, the shortcut (folded too) added and the last ReLU, as one
            // op: neither `conv3`'s output nor the shortcut's is kept beside the block's output.
            let identity = match &self.folded_down {
                Some(folded) => folded.forward(x)?,
                None => x.clone(),
            };
            let out = self.folded[2].forward_add_relu(&y, &identity, mode)?;
            let names: &[&str] = match self.downsample {
                Some(_) => &[&n.conv3, &n.bn3, &n.down_conv, &n.down_bn],
                None => &[&n.conv3, &n.bn3],
            };
            return tap_all(taps, names, out);
        }
        let y = if folds(taps, &n.conv3, &n.bn3) {
            tap_all(taps, &[&n.conv3, &n.bn3], self.folded[2].forward(&y)?)?
        } else {
            let y = taps.tap(&n.conv3, self.conv3.forward(&y)?)?;
            taps.tap(&n.bn3, self.bn3.forward(&y)?)?
        };
        let identity = match (&self.downsample, &self.folded_down) {
            (Some(_), Some(folded)) if down_folds => tap_all(taps, &[&n.down_conv, &n.down_bn], folded.forward(x)?)?,
            (Some((conv, bn)), _) => {
                let d = taps.tap(&n.down_conv, conv.forward(x)?)?;
                taps.tap(&n.down_bn, bn.forward(&d)?)?
            }
            (None, _) => x.clone(),
        };
        ops::add_relu(&y, &identity, mode)
    }
}

/// Whether a convolution and its batch norm run folded: when the call asks for neither's output.
fn folds(taps: &Taps, conv: &str, bn: &str) -> bool {
    !taps.wants(conv) && !taps.wants(bn)
}

/// Passes `y` through the taps `names` in order (the outputs of a folded or fused group of
/// layers, of which only the last is `y`'s own): the last tap's result.
fn tap_all(taps: &mut Taps, names: &[&str], mut y: Tensor) -> Result<Tensor> {
    for name in names {
        y = taps.tap(name, y)?;
    }
    Ok(y)
}

/// The batch norm `bn` tapped as `bn_name`, then the ReLU tapped as `relu_name`: fused into one op
/// when the call asks nothing of the batch norm's output.
fn bn_relu(taps: &mut Taps, bn_name: &str, relu_name: &str, bn: &BatchNorm, x: &Tensor) -> Result<Tensor> {
    if taps.wants(bn_name) {
        let y = taps.tap(bn_name, bn.forward(x)?)?;
        taps.tap(relu_name, taps.relu(&y)?)
    } else {
        let y = taps.tap(bn_name, bn.forward_relu(x, taps.relu_mode())?)?;
        taps.tap(relu_name, y)
    }
}

/// One step of the main path; each ends at a tap that is a cut point.
#[derive(Clone, Debug)]
enum Step {
    Conv(Conv),
    BatchNorm(BatchNorm),
    Relu,
    MaxPool,
    Block(Box<Bottleneck>),
    /// The end of a stage: the same tensor as its last block's output.
    StageEnd,
    AvgPool,
    Fc(Linear),
}

/// A bottleneck ResNet, ResNet-50 by default (see the [module documentation](self) for the tap
/// names).
///
/// Cut points: the stem's `conv1`, `bn1`, `relu`, `maxpool`, every block output `layerS.B`, every
/// stage `layerS`, `avgpool` and `fc`.
#[derive(Clone, Debug)]
pub struct ResNet {
    config: ResNetConfig,
    steps: Vec<(String, Step)>,
    names: Vec<String>,
    classes: ClassNames,
    device: Device,
    /// The stem's `conv1` folded with `bn1` ([`Conv::folded`]).
    stem_folded: Conv,
}

impl ResNet {
    /// Builds the model from a [`VarBuilder`] with torchvision's (and timm's) keys.
    pub fn new(config: ResNetConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let mut steps: Vec<(String, Step)> = Vec::new();
        let mut names = Vec::new();
        let conv1 = Conv::load(&vb.pp("conv1"), (3, config.stem), 7, conv_cfg(2, 3, 1), false)?;
        let bn1 = BatchNorm::load(&vb.pp("bn1"), config.stem)?;
        let stem_folded = conv1.folded(&bn1)?;
        steps.push(("conv1".into(), Step::Conv(conv1)));
        steps.push(("bn1".into(), Step::BatchNorm(bn1)));
        steps.push(("relu".into(), Step::Relu));
        steps.push(("maxpool".into(), Step::MaxPool));
        names.extend(["conv1", "bn1", "relu", "maxpool"].map(String::from));
        let mut cin = config.stem;
        for (s, blocks) in config.stages.iter().enumerate() {
            let stage = format!("layer{}", s + 1);
            for (b, c) in blocks.iter().enumerate() {
                let block = Bottleneck::load(&vb.pp(&stage).pp(b), cin, c)?;
                names.extend(block.names.all(c.downsample));
                names.push(format!("{stage}.{b}"));
                steps.push((format!("{stage}.{b}"), Step::Block(Box::new(block))));
                cin = c.out;
            }
            names.push(stage.clone());
            steps.push((stage, Step::StageEnd));
        }
        steps.push(("avgpool".into(), Step::AvgPool));
        steps.push(("fc".into(), Step::Fc(Linear::load(&vb.pp("fc"), (cin, config.num_classes))?)));
        names.extend(["avgpool", "fc"].map(String::from));
        let classes = ClassNames::for_head(config.num_classes, None);
        Ok(ResNet { config, steps, names, classes, device, stem_folded })
    }

    /// Loads a torchvision or timm checkpoint, reading the depth, the widths and the class count
    /// from it (and class names from its `classes` metadata, comma-separated, when present).
    pub fn from_checkpoint(ckpt: &Checkpoint, device: &Device) -> Result<Self> {
        let config = ResNetConfig::from_checkpoint(ckpt)?;
        let mut model = ResNet::new(config, ckpt.var_builder(device)).map_err(|e| ckpt.fit_error(e))?;
        model.classes =
            ClassNames::for_head(model.config.num_classes, ckpt.metadata().get("classes").map(String::as_str));
        Ok(model)
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// The class names: ImageNet's for 1000 classes.
    pub fn class_names(&self) -> &ClassNames {
        &self.classes
    }

    /// torchvision's ImageNet transform (timm's `resnet50.tv_in1k` shares it).
    pub fn preprocess(&self) -> Preprocess {
        torchvision_preprocess(self.config.input_size)
    }

    /// Runs the steps from `from` on, passing each output through its tap.
    ///
    /// The stem's convolution, batch norm and ReLU run as the folded convolution with the ReLU
    /// fused in ([`Conv::folded`]) when the call asks nothing of the convolution's or the batch
    /// norm's output, and the batch norm and the ReLU as one fused op ([`ops::batch_norm_relu`])
    /// when it asks nothing of the batch norm's; every name still passes through [`Taps::tap`].
    fn run(&self, from: usize, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        let steps = &self.steps[from..];
        // Whether the previous step was a batch norm fused with this ReLU.
        let mut fused = false;
        // The steps left that the folded stem has computed already.
        let mut folded = 0;
        for (i, (name, step)) in steps.iter().enumerate() {
            let relu_next = matches!(steps.get(i + 1), Some((_, Step::Relu)));
            let stem = matches!(
                (step, steps.get(i + 1), steps.get(i + 2)),
                (Step::Conv(_), Some((bn, Step::BatchNorm(_))), Some((_, Step::Relu))) if folds(taps, name, bn)
            );
            x = match step {
                _ if folded > 0 => {
                    folded -= 1;
                    x
                }
                Step::Conv(_) if stem => {
                    folded = 2;
                    self.stem_folded.forward_relu(&x, taps.relu_mode(), true)?
                }
                Step::Conv(conv) => conv.forward(&x)?,
                Step::BatchNorm(bn) if relu_next && !taps.wants(name) => {
                    fused = true;
                    bn.forward_relu(&x, taps.relu_mode())?
                }
                Step::BatchNorm(bn) => bn.forward(&x)?,
                Step::Relu if std::mem::take(&mut fused) => x,
                Step::Relu => taps.relu(&x)?,
                Step::MaxPool => ops::max_pool2d(&x, Pool2dConfig::new(3, 2).padding(1))?,
                Step::Block(block) => block.forward(&x, taps)?,
                Step::StageEnd => x,
                Step::AvgPool => ops::adaptive_avg_pool2d(&x, (1, 1))?,
                Step::Fc(fc) => fc.forward(&x)?,
            };
            x = taps.tap(name, x)?;
        }
        Ok(x)
    }
}

impl TapModel for ResNet {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        check_input("ResNet", x, 1)?;
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
                "it lies inside a residual block, so the model cannot start there; it can start at: {}",
                self.cut_points().join(", ")
            ),
        })?;
        let x = taps.tap(&self.steps[idx].0, activation.clone())?;
        self.run(idx + 1, x, taps)
    }
}

/// One incremental stage of a ResNet; block stages hold the index of their block in `steps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IncOp {
    /// `conv1` (7×7, stride 2, padding 3), `bn1` and `relu`.
    Stem,
    /// `maxpool` (3×3, stride 2, padding 1).
    StemPool,
    /// A block's `conv1` (1×1), `bn1` and `act1`.
    Conv1(usize),
    /// A block's `conv2` (3×3 with the block's stride, padding 1), `bn2` and `act2`.
    Conv2(usize),
    /// A block's `conv3` (1×1) and `bn3`.
    Conv3(usize),
    /// A block's `downsample` (1×1 with the block's stride, then batch norm).
    Shortcut(usize),
    /// A block's residual sum and its last ReLU.
    Sum(usize),
}

impl ResNet {
    /// The incremental stages with the nodes each reads (0 is the input, `i + 1` the output of
    /// stage `i`), in the order of [`Incremental::stages`](gaze_engine::spatial::Incremental::stages).
    fn incremental_ops(&self) -> Vec<(IncOp, Vec<usize>)> {
        let mut ops = vec![(IncOp::Stem, vec![0]), (IncOp::StemPool, vec![1])];
        for (i, (_, step)) in self.steps.iter().enumerate() {
            if let Step::Block(block) = step {
                let input = ops.len();
                ops.push((IncOp::Conv1(i), vec![input]));
                ops.push((IncOp::Conv2(i), vec![input + 1]));
                ops.push((IncOp::Conv3(i), vec![input + 2]));
                let shortcut = if block.downsample.is_some() {
                    ops.push((IncOp::Shortcut(i), vec![input]));
                    input + 4
                } else {
                    input
                };
                ops.push((IncOp::Sum(i), vec![input + 3, shortcut]));
            }
        }
        ops
    }

    fn block(&self, step: usize) -> Result<&Bottleneck> {
        match self.steps.get(step) {
            Some((_, Step::Block(block))) => Ok(block),
            _ => Err(Error::msg(format!("ResNet step {step} is not a bottleneck block"))),
        }
    }

    /// Incremental stage `index` on `inputs`, with its padding or without it.
    fn run_incremental(&self, index: usize, inputs: &[Tensor], padded: bool) -> Result<Tensor> {
        let ops = self.incremental_ops();
        let (op, _) = ops.get(index).ok_or_else(|| Error::InvalidOption {
            option: "ResNet incremental stage".into(),
            value: index.to_string(),
            expected: format!("a stage index below {}", ops.len()),
        })?;
        let expected = if matches!(op, IncOp::Sum(_)) { 2 } else { 1 };
        if inputs.len() != expected {
            return Err(Error::msg(format!(
                "ResNet incremental stage {index} reads {expected} tensors; it was given {}",
                inputs.len()
            )));
        }
        // Each convolution runs folded with its batch norm, as the whole forward pass does.
        let x = &inputs[0];
        let conv = |c: &Conv, x: &Tensor| if padded { c.forward(x) } else { c.forward_unpadded(x) };
        let normal = ops::ReluMode::Normal;
        match *op {
            IncOp::Stem => self.stem_folded.forward_relu(x, normal, padded),
            IncOp::StemPool => {
                let cfg = Pool2dConfig::new(3, 2);
                ops::max_pool2d(x, if padded { cfg.padding(1) } else { cfg })
            }
            IncOp::Conv1(s) => self.block(s)?.folded[0].forward_relu(x, normal, padded),
            IncOp::Conv2(s) => self.block(s)?.folded[1].forward_relu(x, normal, padded),
            IncOp::Conv3(s) => conv(&self.block(s)?.folded[2], x),
            IncOp::Shortcut(s) => match &self.block(s)?.folded_down {
                Some(c) => conv(c, x),
                None => Err(Error::msg(format!("ResNet block `{}` has no downsample branch", self.steps[s].0))),
            },
            IncOp::Sum(_) => ops::add_relu(x, &inputs[1], normal),
        }
    }
}

/// ResNet's trunk as incremental stages for occlusion (`gaze_engine::spatial`): the stem's
/// convolution (with `bn1` and `relu`) and max pool, then per bottleneck block one stage per
/// convolution with its batch norm and ReLU folded in (`conv2` carries the block's stride), a stage
/// for the downsample branch where the block has one (reading the block's input), and a pointwise
/// stage that adds the main path and the shortcut and applies the last ReLU.
/// The head (global average pooling and `fc`) is everything after the last block.
impl gaze_engine::spatial::Incremental for ResNet {
    fn check_input(&self, input: &Tensor) -> Result<()> {
        check_input("ResNet", input, 1)
    }

    fn stages(&self) -> Vec<gaze_engine::spatial::Stage> {
        use gaze_engine::spatial::{Geometry, Stage as Inc};
        self.incremental_ops()
            .into_iter()
            .map(|(op, inputs)| {
                let name = |s: usize, part: &str| join(&self.steps[s].0, part);
                let stride = |s: usize| match &self.steps[s].1 {
                    Step::Block(b) => b.stride,
                    _ => 1,
                };
                let stage = match op {
                    IncOp::Stem => Inc::conv("conv1", Geometry::square(7, 2, 3)),
                    IncOp::StemPool => Inc::max_pool("maxpool", Geometry::square(3, 2, 1)),
                    IncOp::Conv1(s) => Inc::conv(name(s, "conv1"), Geometry::POINTWISE),
                    IncOp::Conv2(s) => Inc::conv(name(s, "conv2"), Geometry::square(3, stride(s), 1)),
                    IncOp::Conv3(s) => Inc::conv(name(s, "conv3"), Geometry::POINTWISE),
                    IncOp::Shortcut(s) => Inc::conv(name(s, "downsample"), Geometry::square(1, stride(s), 0)),
                    IncOp::Sum(s) => Inc::pointwise(self.steps[s].0.clone()),
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
        let last_block = self.steps.iter().rposition(|(_, s)| matches!(s, Step::Block(_))).unwrap_or(0);
        self.run(last_block + 1, features.clone(), &mut Taps::none())
    }
}
