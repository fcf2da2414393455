//! Multiply-accumulates of a model's convolutions and linear layers, counted from its weights and
//! the shapes its layers produce at a given input size.
//!
//! A convolution whose weight `P.weight` is `[O, I/g, kh, kw]` and whose output is `[O, h, w]`
//! costs `O·h·w·(I/g)·kh·kw` per image; a linear layer with weight `[O, I]` costs `O·I`.
//! The output's spatial size is read from the tap named `P`, or, where the model taps no layer of
//! that name (a separable convolution's pointwise half), from the tap of its parent `P'` (`P`
//! without its last component), whose output has the same size.
//! Batch norms, ReLUs, pooling and additions are not counted: next to the convolutions they are a
//! fraction of a percent, and they are bound by memory, not by multiply-adds.
//!
//! A backward pass to the input costs about as many multiply-adds as the forward pass (each
//! convolution's input gradient is a transposed convolution of the same size), so the nominal work
//! of a method is its number of forward passes plus its number of backward passes, times the
//! forward's count ([`LayerMacs::tail`] gives the part after a layer for passes that start or stop
//! there).

use std::collections::HashMap;

use gaze_engine::{layer_shapes, Error, Result, TapModel};

/// The multiply-accumulates of each counted layer, in the order the forward pass reaches them.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMacs {
    /// `(weight prefix, multiply-accumulates per image)`, in forward order.
    pub layers: Vec<(String, u64)>,
    /// Every tap name in forward order, to locate cut points.
    taps: Vec<String>,
    /// For each counted layer, the index in `taps` of the tap its size was read from.
    positions: Vec<usize>,
}

impl LayerMacs {
    /// The multiply-accumulates of one forward pass of one image.
    pub fn total(&self) -> u64 {
        self.layers.iter().map(|(_, m)| m).sum()
    }

    /// The multiply-accumulates of the layers after tap `layer` (the tail a pass that starts or
    /// stops at `layer` runs); an error naming the valid taps if `layer` is not one.
    pub fn tail(&self, layer: &str) -> Result<u64> {
        let cut = self
            .taps
            .iter()
            .position(|t| t == layer)
            .ok_or_else(|| Error::UnknownLayer { name: layer.to_string(), valid: self.taps.clone() })?;
        Ok(self.layers.iter().zip(&self.positions).filter(|(_, &p)| p > cut).map(|((_, m), _)| m).sum())
    }
}

/// Counts the multiply-accumulates of `model` on one image of `input` `[C, H, W]`, given the shapes
/// of its weights by checkpoint key (`features.0.weight` → `[64, 3, 3, 3]`).
///
/// Every rank-4 weight is a convolution and every rank-2 weight a linear layer; a weight whose
/// layer the model does not tap (by its own name or its parent's) is an error naming it.
pub fn count_macs<M: TapModel + ?Sized>(
    model: &M,
    weights: &HashMap<String, Vec<usize>>,
    input: [usize; 3],
) -> Result<LayerMacs> {
    let shapes = layer_shapes(model, Some(input))?;
    let taps: Vec<String> = shapes.iter().map(|s| s.name.clone()).collect();
    let index: HashMap<&str, usize> = taps.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let find = |prefix: &str| -> Option<usize> {
        index
            .get(prefix)
            .copied()
            .or_else(|| prefix.rsplit_once('.').and_then(|(parent, _)| index.get(parent).copied()))
    };
    let mut counted: Vec<(usize, String, u64)> = Vec::new();
    for (key, dims) in weights {
        let Some(prefix) = key.strip_suffix(".weight") else { continue };
        if dims.len() != 4 && dims.len() != 2 {
            continue;
        }
        let at = find(prefix).ok_or_else(|| Error::UnknownLayer { name: prefix.to_string(), valid: taps.clone() })?;
        let out = &shapes[at].shape;
        let macs = match (dims.as_slice(), out.as_slice()) {
            ([o, i, kh, kw], [_, _, h, w]) => o * h * w * i * kh * kw,
            ([o, i], _) => o * i,
            (_, got) => {
                return Err(Error::Shape {
                    what: format!("output of `{}` (for the convolution `{prefix}`)", shapes[at].name),
                    expected: "[1, C, h, w]".into(),
                    got: got.to_vec(),
                })
            }
        };
        counted.push((at, prefix.to_string(), macs as u64));
    }
    counted.sort();
    let positions = counted.iter().map(|(p, _, _)| *p).collect();
    let layers = counted.into_iter().map(|(_, name, macs)| (name, macs)).collect();
    Ok(LayerMacs { layers, taps, positions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use gaze_engine::ops::{conv2d, linear, max_pool2d, Conv2dConfig, Pool2dConfig};
    use gaze_engine::Taps;

    /// conv 3→4 (3×3, pad 1) → ReLU → max pool 2 → separable conv (depthwise 3×3 `sep.conv1`,
    /// pointwise 4→6 `sep.pointwise`, one tap `sep` for both) → flatten → linear 6·4·4 → 5.
    struct Tiny {
        w0: Tensor,
        dw: Tensor,
        pw: Tensor,
        fc: Tensor,
    }

    impl Tiny {
        fn new() -> Self {
            let t = |s: &[usize]| Tensor::ones(s, DType::F32, &Device::Cpu).unwrap();
            Tiny { w0: t(&[4, 3, 3, 3]), dw: t(&[4, 1, 3, 3]), pw: t(&[6, 4, 1, 1]), fc: t(&[5, 96]) }
        }

        fn weights(&self) -> HashMap<String, Vec<usize>> {
            [
                ("conv.weight", &self.w0),
                ("sep.conv1.weight", &self.dw),
                ("sep.pointwise.weight", &self.pw),
                ("fc.weight", &self.fc),
                ("fc.bias", &self.fc),
            ]
            .into_iter()
            .map(|(k, t)| (k.to_string(), if k == "fc.bias" { vec![5] } else { t.dims().to_vec() }))
            .collect()
        }
    }

    impl TapModel for Tiny {
        fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
            let x = taps.tap("conv", conv2d(x, &self.w0, None, Conv2dConfig::default().padding(1))?)?;
            let x = taps.tap("relu", taps.relu(&x)?)?;
            let x = taps.tap("pool", max_pool2d(&x, Pool2dConfig::new(2, 2))?)?;
            let x = conv2d(&x, &self.dw, None, Conv2dConfig::default().padding(1).groups(4))?;
            let x = taps.tap("sep.conv1", x)?;
            let x = taps.tap("sep", conv2d(&x, &self.pw, None, Conv2dConfig::default())?)?;
            let x = x.flatten_from(1)?;
            taps.tap("fc", linear(&x, &self.fc, None)?)
        }
        fn layer_names(&self) -> Vec<String> {
            ["conv", "relu", "pool", "sep.conv1", "sep", "fc"].map(String::from).to_vec()
        }
        fn num_classes(&self) -> usize {
            5
        }
        fn input_shape(&self) -> [usize; 3] {
            [3, 8, 8]
        }
        fn device(&self) -> &Device {
            &Device::Cpu
        }
    }

    #[test]
    fn convolutions_and_linear_layers_are_counted_in_forward_order() {
        let model = Tiny::new();
        let macs = count_macs(&model, &model.weights(), [3, 8, 8]).unwrap();
        let want = vec![
            ("conv".to_string(), 4 * 8 * 8 * 3 * 9),
            ("sep.conv1".to_string(), 4 * 4 * 4 * 9),
            // The pointwise half has no tap of its own: its size is its parent `sep`'s.
            ("sep.pointwise".to_string(), 6 * 4 * 4 * 4),
            ("fc".to_string(), 5 * 96),
        ];
        assert_eq!(macs.layers, want);
        assert_eq!(macs.total(), 6912 + 576 + 384 + 480);
        // After the pool, only the separable convolution and the linear layer remain.
        assert_eq!(macs.tail("pool").unwrap(), 576 + 384 + 480);
        assert_eq!(macs.tail("fc").unwrap(), 0);
        let err = macs.tail("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("sep.conv1"), "{err}");
    }

    #[test]
    fn a_weight_without_a_tap_is_an_error_naming_it() {
        let model = Tiny::new();
        let mut weights = model.weights();
        weights.insert("head.proj.weight".into(), vec![5, 5]);
        let err = count_macs(&model, &weights, [3, 8, 8]).unwrap_err().to_string();
        assert!(err.contains("head.proj"), "{err}");
    }
}
