//! Exact incremental re-computation of occluded copies (Nakandala, Kumar and Papakonstantinou,
//! "Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations",
//! SIGMOD 2019, <https://doi.org/10.1145/3299869.3319874>).
//!
//! A patch changes only a window of each layer's output: the patch's rectangle grown by each
//! convolution's reach and shrunk by each stride.
//! So for every occluded copy only that window is computed again, from a crop of the layer's input
//! that is the cached activation of the unoccluded image with the previous layer's recomputed
//! window pasted in; everything else is reused from the unoccluded pass.
//! A layer whose window covers (nearly) all of its output is computed on whole maps instead, and
//! so is every layer after it that reads it.
//!
//! # Describing a model
//!
//! A model opts in by implementing [`Incremental`]: it lists its spatial layers as [`Stage`]s, each
//! with the [`Geometry`] of its sliding window (a convolution's kernel, stride, padding and
//! dilation; a pool's window; `1 × 1` for anything pointwise such as ReLU or batch norm), the value
//! it pads with, and the stages it reads; it runs one stage on given tensors without padding; and
//! it runs the head (global pooling and the classifier) on the last stage's output.
//! Stages may be as coarse as a whole `conv → batch norm → ReLU` group, as long as padding happens
//! only at the group's input.
//!
//! - VGG16: 13 stages `conv → ReLU` (3×3, stride 1, padding 1, pad value 0) and 5 max pools
//!   (2×2, stride 2, pad value −∞); the head is the classifier.
//! - ResNet-50: the stem convolution and max pool, then per bottleneck block one stage per
//!   convolution (`1×1`, `3×3` with the block's stride, `1×1`, each with its batch norm and ReLU
//!   folded in, the last without ReLU), a stage for the projection shortcut when the block has
//!   one (`1×1` with the block's stride, reading the block's input), and a pointwise stage reading
//!   the last convolution and the shortcut (or the block's input) that adds them and applies the
//!   ReLU.
//! - Xception: each separable convolution as a depthwise stage (`3×3`, padding 1) and a pointwise
//!   stage, the entry and exit pools as max-pool stages (3×3, stride 2, padding 1, pad value −∞),
//!   the strided `1×1` shortcuts as stages reading the block's input, and a pointwise stage for
//!   each residual sum.
//!
//! [`full_forward`] runs a description on whole images: check it against the model's own forward
//! pass once, in the model's tests.

mod region;
mod run;

use candle_core::Tensor;
use gaze_core::{Error, Result};

pub(crate) use region::paste as paste_rect;
pub use region::{pad2d, Rect, Span};
pub(crate) use run::{cache_image, occluded_logits, Shares};
pub use run::{IncrementalConfig, IncrementalReport, StageShare};

use region::AxisWindow;

/// How each output position of a stage depends on its input, per axis (rows, then columns):
/// output `o` reads inputs `o·stride − padding + j·dilation` for `j < kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Geometry {
    /// Each output reads only the input at its own position (activations, batch norm, sums).
    pub const POINTWISE: Geometry = Geometry { kernel: (1, 1), stride: (1, 1), padding: (0, 0), dilation: (1, 1) };

    /// A square `kernel × kernel` window with the same stride and padding on both axes.
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Self {
        Geometry { kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding), dilation: (1, 1) }
    }

    /// The same geometry with another dilation.
    pub fn dilated(mut self, dilation: (usize, usize)) -> Self {
        self.dilation = dilation;
        self
    }

    pub fn is_pointwise(&self) -> bool {
        *self == Geometry::POINTWISE
    }

    pub(crate) fn axis(&self, a: usize) -> AxisWindow {
        let pick = |v: (usize, usize)| if a == 0 { v.0 } else { v.1 };
        AxisWindow { k: pick(self.kernel), s: pick(self.stride), p: pick(self.padding), d: pick(self.dilation) }
    }

    fn check(&self, name: &str) -> Result<()> {
        let ok = [self.kernel, self.stride, self.dilation].iter().all(|&(a, b)| a > 0 && b > 0);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: format!("geometry of stage `{name}`"),
                value: format!("{self:?}"),
                expected: "a kernel, stride and dilation of at least 1 on both axes".into(),
            })
        }
    }
}

/// One spatial layer of a model, as [`Incremental`] describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The layer's name, used in reports and errors.
    pub name: String,
    pub geometry: Geometry,
    /// The value the stage pads its input with: 0 for convolutions (and average pooling that
    /// counts padded positions), −∞ for max pooling.
    pub pad_value: f64,
    /// The nodes the stage reads: node 0 is the model's input and node `i + 1` the output of stage
    /// `i`; every node read must come before the stage. Empty means the node just before it.
    pub inputs: Vec<usize>,
}

impl Stage {
    /// A stage of any geometry, padding with zeros, reading the node before it.
    pub fn new(name: impl Into<String>, geometry: Geometry) -> Self {
        Stage { name: name.into(), geometry, pad_value: 0.0, inputs: Vec::new() }
    }

    /// A convolution (with whatever pointwise layers follow it folded in).
    pub fn conv(name: impl Into<String>, geometry: Geometry) -> Self {
        Stage::new(name, geometry)
    }

    /// A max pool: pads with −∞.
    pub fn max_pool(name: impl Into<String>, geometry: Geometry) -> Self {
        Stage::new(name, geometry).padded_with(f64::NEG_INFINITY)
    }

    /// A pointwise layer (an activation, a batch norm, a sum of the nodes it reads).
    pub fn pointwise(name: impl Into<String>) -> Self {
        Stage::new(name, Geometry::POINTWISE)
    }

    /// The same stage padding with `value`.
    pub fn padded_with(mut self, value: f64) -> Self {
        self.pad_value = value;
        self
    }

    /// The same stage reading these nodes (0 is the input, `i + 1` the output of stage `i`).
    pub fn reading(mut self, nodes: impl IntoIterator<Item = usize>) -> Self {
        self.inputs = nodes.into_iter().collect();
        self
    }
}

/// A model described as spatial stages followed by a head, so occlusion can recompute only what a
/// patch changes (see the module documentation for how VGG16, ResNet-50 and Xception map onto it).
///
/// Required: [`stages`](Incremental::stages), [`run_stage`](Incremental::run_stage) and
/// [`head`](Incremental::head). [`run_stage_padded`](Incremental::run_stage_padded) has a default
/// that pads and calls `run_stage`; override it to use an op's own padding or for pooling that
/// rounds its output size up.
pub trait Incremental {
    /// The spatial stages, in an order where each comes after the nodes it reads; the last one
    /// feeds the head.
    fn stages(&self) -> Vec<Stage>;

    /// Runs stage `index` on `inputs` (one `[B, C, h, w]` tensor per node the stage reads, all the
    /// same size) **without padding**: the inputs are already padded, or are crops whose edges hold
    /// real values. A convolution runs with padding 0, a pool likewise.
    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> Result<Tensor>;

    /// Runs stage `index` on whole maps with its padding.
    fn run_stage_padded(&self, index: usize, stage: &Stage, inputs: &[Tensor]) -> Result<Tensor> {
        let (ph, pw) = stage.geometry.padding;
        let padded = inputs.iter().map(|x| pad2d(x, [ph, ph, pw, pw], stage.pad_value)).collect::<Result<Vec<_>>>()?;
        self.run_stage(index, &padded)
    }

    /// From the last stage's output `[B, C, h, w]` to the logits `[B, K]`.
    fn head(&self, features: &Tensor) -> Result<Tensor>;
}

/// The stages of `model`, checked: at least one, each reading only earlier nodes, with a sane
/// geometry; empty input lists resolved to the node before.
pub(crate) fn checked_stages<M: Incremental + ?Sized>(model: &M) -> Result<Vec<Stage>> {
    let mut stages = model.stages();
    if stages.is_empty() {
        return Err(Error::msg("the model describes no incremental stages; it must list at least one"));
    }
    for (i, s) in stages.iter_mut().enumerate() {
        s.geometry.check(&s.name)?;
        if s.inputs.is_empty() {
            s.inputs.push(i);
        }
        if let Some(&bad) = s.inputs.iter().find(|&&n| n > i) {
            return Err(Error::InvalidOption {
                option: format!("inputs of stage `{}`", s.name),
                value: bad.to_string(),
                expected: format!("nodes 0..={i} (the input and earlier stages' outputs)"),
            });
        }
    }
    Ok(stages)
}

/// Runs `model`'s description on whole images `[N, C, H, W]`: every stage with its padding, then
/// the head. Its logits must equal the model's own forward pass.
/// Each node is dropped once the last stage reading it has run.
pub fn full_forward<M: Incremental + ?Sized>(model: &M, input: &Tensor) -> Result<Tensor> {
    let stages = checked_stages(model)?;
    let mut last_use = vec![0; stages.len() + 1];
    for (i, stage) in stages.iter().enumerate() {
        for &n in &stage.inputs {
            last_use[n] = i;
        }
    }
    let mut nodes: Vec<Option<Tensor>> = vec![Some(input.clone())];
    for (i, stage) in stages.iter().enumerate() {
        let inputs: Vec<Tensor> = stage.inputs.iter().filter_map(|&n| nodes[n].clone()).collect();
        let out = model.run_stage_padded(i, stage, &inputs)?;
        for &n in &stage.inputs {
            if last_use[n] == i {
                nodes[n] = None;
            }
        }
        nodes.push(Some(out));
    }
    let last = nodes.pop().flatten().expect("the last stage's output is kept");
    model.head(&last)
}
