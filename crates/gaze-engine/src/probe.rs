use std::collections::HashMap;

use candle_core::{Tensor, Var};
use gaze_core::{select, Score, Target};

use crate::ops::{softmax_last_dim, ReluMode};
use crate::{Result, TapModel, Taps};

/// What a [`probe`] should capture.
#[derive(Clone, Debug, Default)]
pub struct ProbeRequest {
    /// Layers whose activations and gradients are wanted.
    pub gradient_layers: Vec<String>,
    /// Layers whose activations only are wanted.
    pub record_layers: Vec<String>,
    /// Whether the gradient with respect to the input is wanted.
    pub input_gradient: bool,
    /// The ReLU backward rule (guided backprop, deconvnet).
    pub relu_mode: ReluMode,
    /// Activations to substitute, by layer.
    pub substitutes: Vec<(String, Tensor)>,
    /// Start the forward pass at this layer: the probe's input is then that layer's activation and
    /// only the tail of the network runs (see [`TapModel::forward_from`]).
    pub start: Option<String>,
}

impl ProbeRequest {
    /// Gradients at these layers.
    pub fn layers<S: Into<String>>(layers: impl IntoIterator<Item = S>) -> Self {
        ProbeRequest { gradient_layers: layers.into_iter().map(Into::into).collect(), ..Default::default() }
    }

    /// The gradient at the input.
    pub fn input() -> Self {
        ProbeRequest { input_gradient: true, ..Default::default() }
    }

    pub fn with_relu_mode(mut self, mode: ReluMode) -> Self {
        self.relu_mode = mode;
        self
    }

    pub fn starting_at(mut self, layer: impl Into<String>) -> Self {
        self.start = Some(layer.into());
        self
    }

    fn wants_backward(&self) -> bool {
        self.input_gradient || !self.gradient_layers.is_empty()
    }
}

/// What a [`probe`] captured for a batch of N images and T targets each.
#[derive(Debug)]
pub struct Probe {
    /// The logits `[N, K]`.
    pub logits: Tensor,
    /// The scored outputs `[N, K]` the targets index: logits, probabilities or a user function.
    pub outputs: Tensor,
    /// The class of each target `[N][T]`.
    pub targets: Vec<Vec<usize>>,
    /// The target scores `[N, T]`.
    pub scores: Tensor,
    /// Activations `[N, ...]` by layer name (as requested, before any alias resolution).
    pub activations: HashMap<String, Tensor>,
    /// Gradients of the target scores `[N, T, ...]` by layer name.
    pub gradients: HashMap<String, Tensor>,
    /// The gradient at the input `[N, T, C, H, W]`, when asked for.
    pub input_gradient: Option<Tensor>,
}

/// The outputs a [`Score`] selects from the logits `[N, K]`.
pub fn scored_outputs(logits: &Tensor, score: &Score) -> Result<Tensor> {
    match score {
        Score::Logit => Ok(logits.clone()),
        Score::Probability => softmax_last_dim(logits),
        Score::Custom(f) => Ok(f(logits)?),
    }
}

/// Runs the model forward on `input`, takes the target scores and runs one backward per target,
/// capturing what `request` asks for.
///
/// Images in a batch are independent (models run in inference mode), so the gradient of the sum of
/// the `t`-th target scores over the batch is, for each image, the gradient of its own score: one
/// backward per target serves the whole batch. Backward runs only through the part of the network
/// that leads to a requested gradient: with no input gradient, the head of the network before the
/// earliest gradient layer is never differentiated. No weight gradient is computed.
pub fn probe<M: TapModel + ?Sized>(
    model: &M,
    input: &Tensor,
    target: &Target,
    request: &ProbeRequest,
) -> Result<Probe> {
    let resolve = |names: &[String]| -> Result<Vec<(String, String)>> {
        names.iter().map(|n| Ok((n.clone(), model.resolve_layer(n)?))).collect()
    };
    let gradient_layers = resolve(&request.gradient_layers)?;
    let record_layers = resolve(&request.record_layers)?;
    let start = request.start.as_deref().map(|s| model.resolve_layer(s)).transpose()?;

    let mut taps = Taps::none().with_relu_mode(request.relu_mode);
    for (_, layer) in &record_layers {
        taps = taps.record(layer.clone());
    }
    for (_, layer) in &gradient_layers {
        taps = taps.gradient(layer.clone());
    }
    for (layer, value) in &request.substitutes {
        taps = taps.substitute(model.resolve_layer(layer)?, value.clone());
    }

    let input_var = if request.input_gradient { Some(Var::from_tensor(&input.detach())?) } else { None };
    let x = match &input_var {
        Some(v) => v.as_tensor().clone(),
        None => input.detach(),
    };
    let logits = match &start {
        Some(layer) => model.forward_from(layer, &x, &mut taps)?,
        None => model.forward_taps(&x, &mut taps)?,
    };
    taps.check_requests()?;

    let outputs = scored_outputs(&logits, &target.score)?;
    let targets = target.resolve(&outputs)?;
    let scores = select(&outputs, &targets)?;
    let t_count = targets.first().map(Vec::len).unwrap_or(0);

    let mut per_layer: HashMap<String, Vec<Tensor>> = HashMap::new();
    let mut per_input: Vec<Tensor> = Vec::new();
    if request.wants_backward() {
        for t in 0..t_count {
            let root = scores.narrow(1, t, 1)?.sum_all()?;
            let grads = root.backward()?;
            for (asked, layer) in &gradient_layers {
                let var = taps.grad_var(layer).expect("a gradient tap was requested and passed");
                let g = match grads.get(var.as_tensor()) {
                    Some(g) => g.clone(),
                    None => var.as_tensor().zeros_like()?,
                };
                per_layer.entry(asked.clone()).or_default().push(g);
            }
            if let Some(v) = &input_var {
                let g = match grads.get(v.as_tensor()) {
                    Some(g) => g.clone(),
                    None => v.as_tensor().zeros_like()?,
                };
                per_input.push(g);
            }
        }
    }

    let mut activations = HashMap::new();
    for (asked, layer) in record_layers.iter().chain(gradient_layers.iter()) {
        if let Some(a) = taps.activation(layer) {
            activations.insert(asked.clone(), a.detach());
        }
    }
    let gradients =
        per_layer.into_iter().map(|(k, v)| Ok((k, Tensor::stack(&v, 1)?))).collect::<Result<HashMap<_, _>>>()?;
    let input_gradient = if per_input.is_empty() { None } else { Some(Tensor::stack(&per_input, 1)?) };

    Ok(Probe {
        logits: logits.detach(),
        outputs: outputs.detach(),
        targets,
        scores: scores.detach(),
        activations,
        gradients,
        input_gradient,
    })
}
