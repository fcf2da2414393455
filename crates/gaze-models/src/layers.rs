//! Building blocks shared by the ImageNet models: convolutions, inference-mode batch norms and
//! linear layers loaded through a [`VarBuilder`], and the checks that read a model's widths from a
//! checkpoint with errors that name the key, what was expected and what was found.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use gaze_engine::ops::{self, Conv2dConfig};

use crate::{Checkpoint, Error, Result};

/// A 2-D convolution with PyTorch's `[out, in / groups, kh, kw]` weight and an optional bias.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    w: Tensor,
    b: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl Conv {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb` for a square `kernel`, with
    /// `cin / groups` input channels per group.
    pub fn load(
        vb: &VarBuilder,
        (cin, cout): (usize, usize),
        kernel: usize,
        cfg: Conv2dConfig,
        bias: bool,
    ) -> candle_core::Result<Self> {
        let groups = cfg.groups.max(1);
        let w = vb.get((cout, cin / groups, kernel, kernel), "weight")?;
        let b = if bias { Some(vb.get(cout, "bias")?) } else { None };
        Ok(Conv { w, b, cfg })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d(x, &self.w, self.b.as_ref(), self.cfg)
    }

    /// The same convolution without padding, on an input that is already padded (or a crop of one):
    /// what incremental occlusion recomputes.
    pub fn forward_unpadded(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d(x, &self.w, self.b.as_ref(), Conv2dConfig { padding: (0, 0), ..self.cfg })
    }

    /// This convolution followed by the inference-mode batch norm `bn`, folded into one
    /// convolution: the kernels of output channel `c` scaled by `α_c = γ_c / √(σ²_c + ε)` and the
    /// bias `b_c · α_c + β_c − μ_c · α_c` (PyTorch's `fuse_conv_bn_eval`).
    ///
    /// It computes the two layers' values and input gradients up to float32 rounding (the scale
    /// multiplies each product before the sum instead of the sum), in one op where the two take a
    /// convolution and a pass over memory each, and with one tensor kept for the backward pass.
    /// A model holds the folded copy beside the two layers and runs it when nothing asks for the
    /// convolution's or the batch norm's own output.
    pub fn folded(&self, bn: &BatchNorm) -> candle_core::Result<Conv> {
        let (alpha, beta) = bn.affine()?;
        let cout = self.w.dim(0)?;
        let w = self.w.broadcast_mul(&alpha.reshape((cout, 1, 1, 1))?)?;
        let b = match &self.b {
            Some(b) => ((b * &alpha)? + &beta)?,
            None => beta,
        };
        Ok(Conv { w, b: Some(b), cfg: self.cfg })
    }

    /// The convolution (without its padding when `padded` is false, as
    /// [`forward_unpadded`](Conv::forward_unpadded)) and then a ReLU with the backward rule `mode`,
    /// as one fused op ([`ops::conv2d_relu`]): for a model whose convolution's own output nobody
    /// asks for.
    pub fn forward_relu(&self, x: &Tensor, mode: ops::ReluMode, padded: bool) -> Result<Tensor> {
        let cfg = if padded { self.cfg } else { Conv2dConfig { padding: (0, 0), ..self.cfg } };
        ops::conv2d_relu(x, &self.w, self.b.as_ref(), cfg, mode)
    }
}

impl Conv {
    /// The convolution, plus `residual`, then a ReLU with the backward rule `mode`, as one fused
    /// op ([`ops::conv2d_add_relu`]): for a residual block whose convolution's own output nobody
    /// asks for.
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor, mode: ops::ReluMode) -> Result<Tensor> {
        ops::conv2d_add_relu(x, &self.w, self.b.as_ref(), residual, self.cfg, mode)
    }
}

/// A convolution's geometry: `stride`, `padding` and `groups`, square in both directions.
pub(crate) fn conv_cfg(stride: usize, padding: usize, groups: usize) -> Conv2dConfig {
    Conv2dConfig { stride: (stride, stride), padding: (padding, padding), groups, ..Default::default() }
}

/// PyTorch's `BatchNorm2d` in inference mode: the running statistics and the affine parameters,
/// applied by [`ops::batch_norm`].
#[derive(Clone, Debug)]
pub(crate) struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
}

/// PyTorch's default `BatchNorm2d` epsilon, which torchvision's and timm's models use.
pub(crate) const BN_EPS: f64 = 1e-5;

impl BatchNorm {
    /// Loads `running_mean`, `running_var`, `weight` and `bias` of `channels` channels under `vb`.
    pub fn load(vb: &VarBuilder, channels: usize) -> candle_core::Result<Self> {
        Ok(BatchNorm {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            mean: vb.get(channels, "running_mean")?,
            var: vb.get(channels, "running_var")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::batch_norm(x, &self.weight, &self.bias, &self.mean, &self.var, BN_EPS)
    }

    /// The per-channel scale `α = γ / √(σ² + ε)` and shift `β − μ · α` that the batch norm applies
    /// (`x · α + shift`, as [`ops::batch_norm`] computes them).
    pub fn affine(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let alpha = ((&self.var + BN_EPS)?.sqrt()?.recip()? * &self.weight)?;
        let shift = (&self.bias - (&self.mean * &alpha)?)?;
        Ok((alpha, shift))
    }

    /// The batch norm and then a ReLU with the backward rule `mode`, as one fused op
    /// ([`ops::batch_norm_relu`]): for a model whose batch norm's own output nobody asks for.
    pub fn forward_relu(&self, x: &Tensor, mode: ops::ReluMode) -> Result<Tensor> {
        ops::batch_norm_relu(x, &self.weight, &self.bias, &self.mean, &self.var, BN_EPS, mode)
    }
}

/// A fully connected layer with PyTorch's `[out, in]` weight and a bias.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    pub fn load(vb: &VarBuilder, (cin, cout): (usize, usize)) -> candle_core::Result<Self> {
        Ok(Linear { w: vb.get((cout, cin), "weight")?, b: vb.get(cout, "bias")? })
    }

    /// Applies the layer to `[N, in]`, flattening a `[N, in, 1, 1]`-like input first.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if x.rank() > 2 { x.flatten_from(1)? } else { x.clone() };
        ops::linear(&x, &self.w, Some(&self.b))
    }
}

/// Joins a module path and a child name the way PyTorch names submodules.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Reads a checkpoint's widths, naming the first key that does not fit.
pub(crate) struct ShapeReader<'a> {
    ckpt: &'a Checkpoint,
}

impl<'a> ShapeReader<'a> {
    pub fn new(ckpt: &'a Checkpoint) -> Self {
        ShapeReader { ckpt }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.ckpt.contains(key)
    }

    fn mismatch(&self, key: &str, got: &[usize], expected: String) -> Error {
        Error::Checkpoint {
            path: self.ckpt.path().to_path_buf(),
            reason: format!("tensor `{key}` has shape {got:?}; expected {expected}"),
        }
    }

    /// The output channels of the convolution `prefix.weight`, checked to be
    /// `[out, cin / groups, kernel, kernel]`; `groups` of 0 means depthwise (`groups = cin`, and
    /// `out` must equal `cin`).
    pub fn conv(&self, prefix: &str, cin: usize, kernel: usize, groups: usize) -> Result<usize> {
        let key = join(prefix, "weight");
        let s = self.ckpt.shape(&key)?;
        let depthwise = groups == 0;
        let per_group = if depthwise { 1 } else { cin / groups.max(1) };
        let ok = s.len() == 4 && s[1] == per_group && s[2] == kernel && s[3] == kernel && (!depthwise || s[0] == cin);
        if !ok {
            let out = if depthwise { cin.to_string() } else { "out".into() };
            return Err(self.mismatch(&key, s, format!("[{out}, {per_group}, {kernel}, {kernel}]")));
        }
        Ok(s[0])
    }

    /// The `[out, in]` shape of the linear layer `prefix.weight`, checked to take `cin` inputs when
    /// `cin` is given.
    pub fn linear(&self, prefix: &str, cin: Option<usize>) -> Result<(usize, usize)> {
        let key = join(prefix, "weight");
        let s = self.ckpt.shape(&key)?;
        match (s, cin) {
            ([out, inp], Some(c)) if *inp == c => Ok((*inp, *out)),
            ([out, inp], None) => Ok((*inp, *out)),
            _ => Err(self.mismatch(
                &key,
                s,
                format!("[out, {}]", cin.map(|c| c.to_string()).unwrap_or_else(|| "in".into())),
            )),
        }
    }

    /// The `[classes, in]` shape of the classifier `prefix.weight` as [`linear`](Self::linear)
    /// reads it, checked to have at least one class: a head without outputs would load and then
    /// fail every prediction.
    pub fn classifier(&self, prefix: &str, cin: Option<usize>) -> Result<(usize, usize)> {
        let (inp, classes) = self.linear(prefix, cin)?;
        if classes == 0 {
            return Err(no_classes(self.ckpt, &join(prefix, "weight"), &[0, inp]));
        }
        Ok((inp, classes))
    }

    /// Checks that the batch norm `prefix` has `channels` channels.
    pub fn batch_norm(&self, prefix: &str, channels: usize) -> Result<()> {
        for name in ["weight", "bias", "running_mean", "running_var"] {
            let key = join(prefix, name);
            let s = self.ckpt.shape(&key)?;
            if s != [channels] {
                return Err(self.mismatch(&key, s, format!("[{channels}]")));
            }
        }
        Ok(())
    }

    /// The number of consecutive modules `prefix.0`, `prefix.1`, ... that have the tensor `probe`.
    pub fn count(&self, prefix: &str, probe: &str) -> usize {
        (0..).take_while(|i| self.ckpt.contains(&format!("{prefix}.{i}.{probe}"))).count()
    }

    /// An error about the checkpoint as a whole.
    pub fn error(&self, reason: String) -> Error {
        Error::Checkpoint { path: self.ckpt.path().to_path_buf(), reason }
    }
}

/// The error for a classifier weight `key` of shape `got` with no rows: a model needs at least one
/// class.
pub(crate) fn no_classes(ckpt: &Checkpoint, key: &str, got: &[usize]) -> Error {
    Error::Checkpoint {
        path: ckpt.path().to_path_buf(),
        reason: format!(
            "tensor `{key}` has shape {got:?}, a classifier with 0 classes; expected [classes, {}] \
             with at least one class",
            got.get(1).map(ToString::to_string).unwrap_or_else(|| "in".into())
        ),
    }
}

/// Resolves `name` against a model's tap names and its aliases (such as Keras layer names).
pub(crate) fn resolve_alias(names: &[String], aliases: &[(String, String)], name: &str) -> Result<String> {
    if names.iter().any(|n| n == name) {
        return Ok(name.to_string());
    }
    if let Some((_, target)) = aliases.iter().find(|(alias, _)| alias == name) {
        return Ok(target.clone());
    }
    let mut valid = names.to_vec();
    valid.extend(aliases.iter().map(|(alias, target)| format!("{alias} (= {target})")));
    Err(Error::UnknownLayer { name: name.to_string(), valid })
}
