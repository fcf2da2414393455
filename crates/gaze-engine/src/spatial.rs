//! A model described as spatial stages followed by a head, so a method can recompute only the part
//! of each layer that a local change of the input reaches.
//!
//! Incremental occlusion (Nakandala, Kumar and Papakonstantinou, "Incremental and Approximate
//! Inference for Faster Occlusion-based Deep CNN Explanations", SIGMOD 2019,
//! <https://doi.org/10.1145/3299869.3319874>) runs on this description; it lives here, not in the
//! occlusion crate, so that models can describe themselves without depending on a method.
//!
//! A model opts in by implementing [`Incremental`]: it lists its spatial layers as [`Stage`]s, each
//! with the [`Geometry`] of its sliding window (a convolution's kernel, stride, padding and
//! dilation; a pool's window; `1 × 1` for anything pointwise such as ReLU or batch norm), the value
//! it pads with, and the stages it reads; it runs one stage on given tensors without padding; and
//! it runs the head (global pooling and the classifier) on the last stage's output.
//! Stages may be as coarse as a whole `conv → batch norm → ReLU` group, as long as padding happens
//! only at the group's input.
//!
//! [`full_forward`] runs a description on whole images: check it against the model's own forward
//! pass once, in the model's tests.

use candle_core::{Tensor, D};
use gaze_core::{Error, Result};

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

    /// Checks that the kernel, stride and dilation are at least 1 on both axes; `name` is the
    /// stage's, for the error.
    pub fn check(&self, name: &str) -> Result<()> {
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
/// patch changes (see the [module documentation](self)).
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

    /// Checks whole images `[N, C, H, W]` as the model's own forward pass does, before
    /// [`full_forward`] runs the stages (which would otherwise name a wrong size or channel count
    /// by the stage it breaks). The default accepts every input: a description whose model has no
    /// input check of its own needs none here.
    fn check_input(&self, _input: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// The stages of `model`, checked: at least one, each reading only earlier nodes, with a sane
/// geometry; empty input lists resolved to the node before.
pub fn checked_stages<M: Incremental + ?Sized>(model: &M) -> Result<Vec<Stage>> {
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
    model.check_input(input)?;
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
    match nodes.pop().flatten() {
        Some(last) => model.head(&last),
        None => Err(Error::msg("the last incremental stage's output was dropped; no stage may read it")),
    }
}

/// `t` padded on its last two axes by `[top, bottom, left, right]` with `value`.
pub fn pad2d(t: &Tensor, pad: [usize; 4], value: f64) -> Result<Tensor> {
    if pad == [0; 4] {
        return Ok(t.clone());
    }
    if value == 0.0 {
        return Ok(t.pad_with_zeros(D::Minus2, pad[0], pad[1])?.pad_with_zeros(D::Minus1, pad[2], pad[3])?);
    }
    let filled =
        |dims: Vec<usize>| -> Result<Tensor> { Ok(Tensor::zeros(dims, t.dtype(), t.device())?.affine(0.0, value)?) };
    let rank = t.rank();
    let mut t = t.clone();
    for (axis, before, after) in [(rank - 2, pad[0], pad[1]), (rank - 1, pad[2], pad[3])] {
        if before + after == 0 {
            continue;
        }
        let mut parts = Vec::with_capacity(3);
        let mut dims = t.dims().to_vec();
        if before > 0 {
            dims[axis] = before;
            parts.push(filled(dims.clone())?);
        }
        parts.push(t.clone());
        if after > 0 {
            dims[axis] = after;
            parts.push(filled(dims)?);
        }
        t = Tensor::cat(&parts, axis)?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn pad2d_pads_with_any_value() {
        let src = Tensor::ones((1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let p = pad2d(&src, [1, 0, 0, 1], f64::NEG_INFINITY).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(p[0][0], vec![f32::NEG_INFINITY; 3]);
        assert_eq!(p[0][1], vec![1.0, 1.0, f32::NEG_INFINITY]);
        let z = pad2d(&src, [0, 1, 1, 0], 0.0).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(z[0], vec![vec![0.0, 1.0, 1.0], vec![0.0, 1.0, 1.0], vec![0.0, 0.0, 0.0]]);
    }

    struct Chain;

    impl Incremental for Chain {
        fn stages(&self) -> Vec<Stage> {
            vec![Stage::max_pool("pool", Geometry::square(2, 2, 0)), Stage::pointwise("sum").reading([0, 0])]
        }

        fn run_stage(&self, _: usize, inputs: &[Tensor]) -> Result<Tensor> {
            Ok(inputs[0].clone())
        }

        fn head(&self, features: &Tensor) -> Result<Tensor> {
            Ok(features.flatten_from(1)?)
        }
    }

    #[test]
    fn stages_are_checked() {
        let stages = checked_stages(&Chain).unwrap();
        assert_eq!(stages[0].inputs, vec![0]);
        assert_eq!(stages[1].inputs, vec![0, 0]);
        struct Forward;
        impl Incremental for Forward {
            fn stages(&self) -> Vec<Stage> {
                vec![Stage::pointwise("ahead").reading([1])]
            }
            fn run_stage(&self, _: usize, inputs: &[Tensor]) -> Result<Tensor> {
                Ok(inputs[0].clone())
            }
            fn head(&self, features: &Tensor) -> Result<Tensor> {
                Ok(features.clone())
            }
        }
        let msg = checked_stages(&Forward).unwrap_err().to_string();
        assert!(msg.contains("ahead") && msg.contains("nodes 0..=0"), "{msg}");
        let bad = Geometry { stride: (0, 1), ..Geometry::POINTWISE };
        assert!(bad.check("s").unwrap_err().to_string().contains("at least 1"));
    }
}
