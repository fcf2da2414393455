use std::collections::HashMap;

use candle_core::{Tensor, Var};

use crate::ops::{self, ReluMode};
use crate::Result;

/// What to do at a named layer.
#[derive(Clone, Debug)]
pub enum TapRequest {
    /// Keep the activation.
    Record,
    /// Keep the activation and make its gradient available after backward.
    Gradient,
    /// Replace the activation by this tensor (it may have another batch size: the rest of the
    /// network runs on whatever it is given).
    Substitute(Tensor),
}

/// The taps of one forward call: which layers to record, differentiate or substitute, and which
/// backward rule the model's ReLUs follow.
///
/// A model calls [`Taps::tap`] at every named point and [`Taps::relu`] for every ReLU. A `Taps` is
/// made for one call and dropped after it: nothing is registered on the model, so nothing leaks
/// across images.
///
/// A gradient tap adds a zero-valued [`Var`] to the activation; after backward the gradient of that
/// `Var` is the gradient with respect to the activation.
#[derive(Debug, Default)]
pub struct Taps {
    requests: HashMap<String, TapRequest>,
    record_all: bool,
    relu_mode: ReluMode,
    seen: Vec<String>,
    activations: HashMap<String, Tensor>,
    grad_vars: HashMap<String, Var>,
}

impl Taps {
    /// Taps that do nothing: a plain forward pass.
    pub fn none() -> Self {
        Taps::default()
    }

    /// Taps that record every layer's activation.
    pub fn record_all() -> Self {
        Taps { record_all: true, ..Taps::default() }
    }

    /// Adds a request at `layer` (the last request for a layer wins).
    pub fn request(mut self, layer: impl Into<String>, request: TapRequest) -> Self {
        self.requests.insert(layer.into(), request);
        self
    }

    /// Records the activation at `layer`.
    pub fn record(self, layer: impl Into<String>) -> Self {
        self.request(layer, TapRequest::Record)
    }

    /// Records the activation at `layer` and its gradient.
    pub fn gradient(self, layer: impl Into<String>) -> Self {
        self.request(layer, TapRequest::Gradient)
    }

    /// Replaces the activation at `layer` by `value`.
    pub fn substitute(self, layer: impl Into<String>, value: Tensor) -> Self {
        self.request(layer, TapRequest::Substitute(value))
    }

    /// The ReLU backward rule for this call (normal, guided backprop or deconvnet).
    pub fn with_relu_mode(mut self, mode: ReluMode) -> Self {
        self.relu_mode = mode;
        self
    }

    pub fn relu_mode(&self) -> ReluMode {
        self.relu_mode
    }

    /// Whether this call asks anything of `layer`'s output (a request, or recording every layer):
    /// a model may fuse the op that makes an output nobody wants into the next one, provided it
    /// still passes through [`Taps::tap`] under that name.
    pub fn wants(&self, layer: &str) -> bool {
        self.record_all || self.requests.contains_key(layer)
    }

    /// The requested layer names, sorted.
    pub fn requested(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.requests.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Called by a model at the named point `name` with the activation `x`; returns the tensor the
    /// model continues with.
    pub fn tap(&mut self, name: &str, x: Tensor) -> Result<Tensor> {
        self.seen.push(name.to_string());
        match self.requests.get(name) {
            None if self.record_all => {
                self.activations.insert(name.to_string(), x.clone());
                Ok(x)
            }
            None => Ok(x),
            Some(TapRequest::Record) => {
                self.activations.insert(name.to_string(), x.clone());
                Ok(x)
            }
            Some(TapRequest::Gradient) => {
                let var = Var::zeros(x.shape(), x.dtype(), x.device())?;
                // When the head is tracked (the input is a variable) the path through it is kept,
                // so the same backward also reaches earlier taps and the input.
                let y = (&x + var.as_tensor())?;
                self.activations.insert(name.to_string(), y.clone());
                self.grad_vars.insert(name.to_string(), var);
                Ok(y)
            }
            Some(TapRequest::Substitute(value)) => {
                let value = value.clone();
                self.activations.insert(name.to_string(), value.clone());
                Ok(value)
            }
        }
    }

    /// Applies a ReLU with this call's backward rule; models call it for every ReLU.
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        ops::relu(x, self.relu_mode)
    }

    /// The names of the taps the model passed through, in order.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The recorded activation at `layer`.
    pub fn activation(&self, layer: &str) -> Option<&Tensor> {
        self.activations.get(layer)
    }

    /// Takes the recorded activations out.
    pub fn take_activations(&mut self) -> HashMap<String, Tensor> {
        std::mem::take(&mut self.activations)
    }

    /// The zero-valued variable added at a gradient tap.
    pub fn grad_var(&self, layer: &str) -> Option<&Var> {
        self.grad_vars.get(layer)
    }

    /// Checks that every requested layer was passed through; an error listing the valid names
    /// otherwise.
    pub fn check_requests(&self) -> Result<()> {
        for name in self.requested() {
            if !self.seen.iter().any(|s| s == name) {
                return Err(crate::Error::UnknownLayer { name: name.to_string(), valid: self.seen.clone() });
            }
        }
        Ok(())
    }
}
