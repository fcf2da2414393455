//! Guided Grad-CAM: guided backpropagation times the Grad-CAM map of a layer, upsampled to the input.

use std::fmt;

use candle_core::Tensor;
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Target};
use gaze_engine::ops::upsample_bilinear2d;
use gaze_engine::ops::ReluMode;
use gaze_engine::{map_chunks, probe, ProbeRequest, TapModel};

use crate::{batch_size, chunk_target, resolve_targets};

/// The command-line name of guided Grad-CAM.
pub const GUIDED_GRADCAM: &str = "guided-gradcam";

/// How the Grad-CAM map is resized to the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interpolation {
    /// PyTorch's `nearest` (Captum's default for `GuidedGradCam`): output pixel `i` takes input
    /// pixel `floor(i · in / out)`, the scale computed in `float32`.
    #[default]
    Nearest,
    /// Bilinear with `align_corners=False` (the Grad-CAM paper's choice).
    Bilinear,
}

impl Interpolation {
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "nearest" => Ok(Interpolation::Nearest),
            "bilinear" => Ok(Interpolation::Bilinear),
            other => Err(Error::InvalidOption {
                option: "--interpolation".into(),
                value: other.into(),
                expected: "nearest or bilinear".into(),
            }),
        }
    }

    /// The most values [`Interpolation::resize`] makes (`N · T · H · W`, 4 GiB of f32).
    pub const MAX_RESIZED_VALUES: usize = gaze_core::numeric::MAX_MAP_VALUES;

    /// Resizes maps `[N, T, h, w]` to `[N, T, H, W]`.
    ///
    /// Every side, of the maps and of the size, must be at least 1, and the result at most
    /// [`Interpolation::MAX_RESIZED_VALUES`] values.
    pub fn resize(self, maps: &Tensor, (oh, ow): (usize, usize)) -> Result<Tensor> {
        let (n, t, h, w) = match *maps.dims() {
            [n, t, h, w] if h > 0 && w > 0 && h <= u32::MAX as usize && w <= u32::MAX as usize => (n, t, h, w),
            _ => {
                return Err(Error::Shape {
                    what: "maps to resize".into(),
                    expected: "[N, T, h, w] with h and w in 1..=4294967295".into(),
                    got: maps.dims().to_vec(),
                })
            }
        };
        let values = n.checked_mul(t).and_then(|v| v.checked_mul(oh)).and_then(|v| v.checked_mul(ow));
        if oh == 0 || ow == 0 || values.is_none_or(|v| v > Self::MAX_RESIZED_VALUES) {
            return Err(Error::InvalidOption {
                option: "resize size".into(),
                value: format!("({oh}, {ow}) for {n}×{t} maps"),
                expected: format!(
                    "sides of at least 1 and at most {} values in all (N · T · H · W)",
                    Self::MAX_RESIZED_VALUES
                ),
            });
        }
        match self {
            Interpolation::Bilinear => upsample_bilinear2d(maps, (oh, ow), false),
            Interpolation::Nearest => {
                let rows = Tensor::from_vec(nearest_index(h, oh), oh, maps.device())?;
                let cols = Tensor::from_vec(nearest_index(w, ow), ow, maps.device())?;
                Ok(maps.index_select(&rows, 2)?.index_select(&cols, 3)?)
            }
        }
    }
}

impl fmt::Display for Interpolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The source index of every output index of PyTorch's legacy `nearest` interpolation.
fn nearest_index(input: usize, output: usize) -> Vec<u32> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let src = if input == output { i } else { ((i as f32 * scale).floor() as usize).min(input - 1) };
            src as u32
        })
        .collect()
}

/// Guided Grad-CAM as Captum's `GuidedGradCam` computes it: the guided-backprop map times the
/// Grad-CAM map of `layer` (the spatial mean of the gradients weighting the activations, summed over
/// channels, with the ReLU on), resized to the input by [`Interpolation`].
///
/// ```
/// use gaze_saliency::{GuidedGradCam, Interpolation};
/// let g = GuidedGradCam::new("features.29").with_interpolation(Interpolation::Bilinear);
/// assert_eq!(g.layer, "features.29");
/// ```
#[derive(Clone, Debug)]
pub struct GuidedGradCam {
    /// The layer whose Grad-CAM map gates the guided gradients (Captum's `layer`).
    pub layer: String,
    pub interpolation: Interpolation,
    /// The most images that run through the model at once.
    pub batch: usize,
}

impl GuidedGradCam {
    pub fn new(layer: impl Into<String>) -> Self {
        GuidedGradCam { layer: layer.into(), interpolation: Interpolation::Nearest, batch: 32 }
    }

    pub fn with_interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for GuidedGradCam {
    fn method(&self) -> &'static str {
        GUIDED_GRADCAM
    }

    /// Per chunk of `batch` images: one forward pass with guided ReLUs, `T` backward passes of
    /// them to the input, and the Grad-CAM map from the layer's recorded activation, which runs
    /// only the tail of the network again (one forward pass and `T` backward passes with plain
    /// ReLUs, down to the layer). Where the layer is not one of the model's cut points (inside a
    /// residual block), the Grad-CAM map runs the whole network again, as Captum does.
    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        batch_size(input, target)?;
        let (_, _, h, w) = input.dims4().map_err(|_| Error::Shape {
            what: "input".into(),
            expected: "[N, C, H, W]".into(),
            got: input.dims().to_vec(),
        })?;
        let cam = Cam::new(CamConfig::new(CamMethod::GradCam, [self.layer.clone()]).with_relu(true))?;
        let layer = model.resolve_layer(&self.layer)?;
        let from_layer = model.cut_points().contains(&layer);
        let guided = ProbeRequest {
            record_layers: if from_layer { vec![layer.clone()] } else { Vec::new() },
            ..ProbeRequest::input().with_relu_mode(ReluMode::Guided)
        };
        let mut targets = Vec::new();
        let mut scores = Vec::new();
        let values = map_chunks(input.dim(0)?, self.batch, |c| {
            let x = c.of(input)?;
            let p = probe(model, &x, &chunk_target(target, c)?, &guided)?;
            let gb = p.input_gradient.ok_or_else(|| Error::msg("the probe returned no input gradient"))?;
            let fixed = Target::per_image_lists(p.targets.clone()).with_score(target.score.clone());
            let map = match p.activations.get(&layer) {
                Some(a) if from_layer => cam.explain_from_layer(model, a, &fixed)?.values,
                _ => cam.explain(model, &x, &fixed)?.values,
            };
            if map.rank() != 4 {
                return Err(Error::Shape {
                    what: format!("Grad-CAM map of layer `{}`", self.layer),
                    expected: "[N, T, h, w]: a layer with spatial dimensions".into(),
                    got: map.dims().to_vec(),
                });
            }
            let gate = self.interpolation.resize(&map.to_dtype(gb.dtype())?, (h, w))?;
            targets.extend(p.targets);
            scores.push(p.scores);
            Ok(gb.broadcast_mul(&gate.unsqueeze(2)?)?)
        })?;
        let meta = AttributionMeta::new(GUIDED_GRADCAM, Resolution::Input)
            .with_layers([self.layer.clone()])
            .with_score(target.score.name())
            .with_option("interpolation", self.interpolation)
            .with_option("batch", self.batch);
        Ok(Attribution { values, targets, scores: Some(Tensor::cat(&scores, 0)?), meta })
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        resolve_targets(model, input, target, self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn nearest_follows_pytorch() {
        assert_eq!(nearest_index(2, 5), [0, 0, 0, 1, 1]);
        assert_eq!(nearest_index(3, 8), [0, 0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(nearest_index(4, 4), [0, 1, 2, 3]);
        assert_eq!(nearest_index(4, 2), [0, 2]);
        let maps = Tensor::arange(0f32, 4.0, &Device::Cpu).unwrap().reshape((1, 1, 2, 2)).unwrap();
        let up = Interpolation::Nearest.resize(&maps, (4, 4)).unwrap();
        assert_eq!(
            up.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 0., 1., 1., 0., 0., 1., 1., 2., 2., 3., 3., 2., 2., 3., 3.]
        );
    }

    #[test]
    fn empty_maps_and_sizes_are_refused() {
        let dev = Device::Cpu;
        for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
            let empty = Tensor::zeros((1, 1, 0, 4), DType::F32, &dev).unwrap();
            let err = interpolation.resize(&empty, (3, 3)).unwrap_err().to_string();
            assert!(err.contains("maps to resize") && err.contains("[1, 1, 0, 4]"), "{err}");
            let maps = Tensor::ones((1, 1, 2, 2), DType::F32, &dev).unwrap();
            let err = interpolation.resize(&maps, (0, 3)).unwrap_err().to_string();
            assert!(err.contains("(0, 3)") && err.contains("at least 1"), "{err}");
            let err = interpolation.resize(&maps, (usize::MAX, 2)).unwrap_err().to_string();
            assert!(err.contains("at most 1073741824 values"), "{err}");
            let flat = Tensor::ones((2, 2), DType::F32, &dev).unwrap();
            assert!(interpolation.resize(&flat, (3, 3)).unwrap_err().to_string().contains("[N, T, h, w]"));
        }
    }
}
