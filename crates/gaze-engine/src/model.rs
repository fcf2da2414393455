use candle_core::{DType, Device, Tensor};

use crate::{Error, Result, Taps};

/// A model whose named layers can be tapped.
///
/// Required: [`forward_taps`](TapModel::forward_taps), [`layer_names`](TapModel::layer_names),
/// [`num_classes`](TapModel::num_classes), [`input_shape`](TapModel::input_shape) and
/// [`device`](TapModel::device). The rest have defaults: a model that can start its forward pass at
/// some layers (every layer of a plain chain, block boundaries of a residual network) overrides
/// [`cut_points`](TapModel::cut_points) and [`forward_from`](TapModel::forward_from); a model with
/// other names for its layers (Keras names, say) overrides [`resolve_layer`](TapModel::resolve_layer).
pub trait TapModel {
    /// Runs the model on a batch `[N, C, H, W]`, calling `taps.tap(name, x)` at every named layer
    /// and `taps.relu(x)` for every ReLU; returns the logits `[N, K]`.
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor>;

    /// Every tap name, in the order the forward pass reaches them.
    fn layer_names(&self) -> Vec<String>;

    /// The number of outputs `K`.
    fn num_classes(&self) -> usize;

    /// The input shape `[C, H, W]` the model is built for.
    fn input_shape(&self) -> [usize; 3];

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// A plain forward pass.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_taps(x, &mut Taps::none())
    }

    /// The layers [`forward_from`](TapModel::forward_from) can start at.
    fn cut_points(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs only the tail of the network, taking `activation` as the output of `layer` (which is
    /// tapped again, so a gradient can be asked there).
    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let _ = (activation, taps);
        Err(Error::UnsupportedLayer {
            name: layer.to_string(),
            reason: format!(
                "the model cannot start its forward pass there; it can start at: {}",
                if self.cut_points().is_empty() { "(none)".into() } else { self.cut_points().join(", ") }
            ),
        })
    }

    /// The tap name of `name`, which may be an alias; an error listing the valid names otherwise.
    fn resolve_layer(&self, name: &str) -> Result<String> {
        let names = self.layer_names();
        if names.iter().any(|n| n == name) {
            Ok(name.to_string())
        } else {
            Err(Error::UnknownLayer { name: name.to_string(), valid: names })
        }
    }
}

/// A layer's name and the shape of its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerShape {
    pub name: String,
    /// `[N, ...]` for a batch of one.
    pub shape: Vec<usize>,
}

/// Every layer's output shape for one input of the model's [`input_shape`](TapModel::input_shape)
/// (or of `input_shape` when given), in forward order.
pub fn layer_shapes<M: TapModel + ?Sized>(model: &M, input_shape: Option<[usize; 3]>) -> Result<Vec<LayerShape>> {
    let [c, h, w] = input_shape.unwrap_or_else(|| model.input_shape());
    let x = Tensor::zeros((1, c, h, w), DType::F32, model.device())?;
    let mut taps = Taps::record_all();
    model.forward_taps(&x, &mut taps)?;
    Ok(taps
        .seen()
        .iter()
        .map(|name| LayerShape {
            name: name.clone(),
            shape: taps.activation(name).map(|t| t.dims().to_vec()).unwrap_or_default(),
        })
        .collect())
}
