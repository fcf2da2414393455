//! The shared pipeline: probe, weights, weighted sum, ReLU, and the display steps.

use candle_core::Tensor;
use gaze_core::{select, Attribution, AttributionMeta, Explainer, Resolution, Target, TargetSpec};
use gaze_engine::{probe, scored_outputs, ProbeRequest, TapModel};

use crate::ablation::{self, AblationRun};
use crate::display::display_maps;
use crate::weights::{self, combine, filter_gradients, Weights};
use crate::{score, CamConfig, CamMethod, Error, Result};

/// The maps of one CAM run, layer by layer, before any display step.
#[derive(Clone, Debug)]
pub struct LayerMaps {
    /// Each layer's name as asked for and its maps `[N, T, h, w]` (after the ReLU when it is on).
    pub layers: Vec<(String, Tensor)>,
    /// The class of each map `[N][T]`.
    pub targets: Vec<Vec<usize>>,
    /// The target scores `[N, T]` of the (unaugmented) input.
    pub scores: Tensor,
}

/// A member of the CAM family, configured: an [`Explainer`] for any [`TapModel`].
///
/// [`explain`](Explainer::explain) gives the raw maps at the layer's resolution, `[N, T, h, w]`
/// (or `[N, T, L, h, w]` for several layers of one size), after the method's ReLU and before any
/// display step; [`Cam::explain_display`] gives what pytorch-grad-cam's `__call__` returns, scaled
/// to [0, 1] and resized to the input, `[N, T, H, W]`.
///
/// ```no_run
/// # fn demo(model: &dyn gaze_engine::TapModel, input: &candle_core::Tensor) -> gaze_core::Result<()> {
/// use gaze_cam::{Cam, CamConfig, CamMethod};
/// use gaze_core::{Explainer, Target};
/// let cam = Cam::new(CamConfig::new(CamMethod::parse("gradcam")?, ["block14_sepconv1"]))?;
/// let raw = cam.explain(model, input, &Target::classes([281, 285]))?;
/// assert_eq!(raw.values.dims()[1], 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cam {
    config: CamConfig,
}

impl Cam {
    /// Checks the configuration ([`CamConfig::validate`]).
    pub fn new(config: CamConfig) -> Result<Self> {
        config.validate()?;
        Ok(Cam { config })
    }

    pub fn config(&self) -> &CamConfig {
        &self.config
    }

    /// The raw maps of every layer, which may differ in size.
    pub fn explain_layers<M: TapModel + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
    ) -> Result<LayerMaps> {
        check_input(input)?;
        let Some(aug) = &self.config.aug_smooth else {
            return self.run(model, input, target);
        };
        let (fixed, targets, scores) = fix_targets(model, input, target)?;
        let transforms = aug.transforms();
        let mut sums: Option<Vec<Tensor>> = None;
        for &(flip, factor) in &transforms {
            let maps = self.run(model, &augment(input, flip, factor)?, &fixed)?;
            let maps = maps.layers.into_iter().map(|(_, m)| deaugment(&m, flip)).collect::<Result<Vec<_>>>()?;
            sums = Some(match sums {
                None => maps,
                Some(acc) => acc.iter().zip(&maps).map(|(a, b)| Ok((a + b)?)).collect::<Result<Vec<_>>>()?,
            });
        }
        let count = transforms.len() as f64;
        let layers = self
            .config
            .layers
            .iter()
            .cloned()
            .zip(sums.unwrap_or_default())
            .map(|(name, sum)| Ok((name, sum.affine(1.0 / count, 0.0)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(LayerMaps { layers, targets, scores })
    }

    /// The displayed maps `[N, T, H, W]` in [0, 1], as pytorch-grad-cam's `__call__` returns them:
    /// per layer the map after the method's ReLU (when it is on), min-max scaled and resized
    /// bilinearly to the input size, then the mean over layers scaled again ([`display_maps`]);
    /// with `aug_smooth`, the mean of the de-augmented displayed maps of every augmentation, not
    /// scaled again.
    pub fn explain_display<M: TapModel + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
    ) -> Result<Attribution> {
        let (_, _, h, w) = check_input(input)?;
        let (values, targets, scores) = match &self.config.aug_smooth {
            None => {
                let maps = self.run(model, input, target)?;
                let values = display_layers(&maps, (h, w))?;
                (values, maps.targets, maps.scores)
            }
            Some(aug) => {
                let (fixed, targets, scores) = fix_targets(model, input, target)?;
                let transforms = aug.transforms();
                let mut sum: Option<Tensor> = None;
                for &(flip, factor) in &transforms {
                    let maps = self.run(model, &augment(input, flip, factor)?, &fixed)?;
                    let shown = deaugment(&display_layers(&maps, (h, w))?, flip)?;
                    sum = Some(match sum {
                        None => shown,
                        Some(acc) => (acc + shown)?,
                    });
                }
                let sum = sum.ok_or_else(|| Error::msg("aug_smooth ran no augmentation"))?;
                (sum.affine(1.0 / transforms.len() as f64, 0.0)?, targets, scores)
            }
        };
        let mut meta = self.meta(&target.score).with_option("display", "pytorch-grad-cam");
        meta.resolution = Resolution::Input;
        Ok(Attribution { values, targets, scores: Some(scores), meta })
    }

    /// The raw maps `[N, T, h, w]` of a one-layer configuration from the layer's activation
    /// `activation` (`[N, C, h, w]`) instead of the images: only the tail of the network after the
    /// layer runs ([`TapModel::forward_from`]; the layer must be one of the model's cut points).
    /// They are the maps [`explain`](Explainer::explain) gives for images whose activation at the
    /// layer is `activation`; a method that has already run the head (guided Grad-CAM) uses it to
    /// save a second forward pass through the head.
    /// Score-CAM, Ablation-CAM and `aug_smooth` need the images, and are an error here.
    pub fn explain_from_layer<M: TapModel + ?Sized>(
        &self,
        model: &M,
        activation: &Tensor,
        target: &Target,
    ) -> Result<Attribution> {
        let cfg = &self.config;
        let [layer] = cfg.layers.as_slice() else {
            return Err(Error::msg(format!(
                "a CAM run from a layer's activation takes one layer; the configuration has {}",
                cfg.layers.len()
            )));
        };
        if cfg.method.is_perturbation() || cfg.aug_smooth.is_some() {
            return Err(Error::msg(format!(
                "{} needs the images, not the activation of `{layer}`: run it with `explain`",
                if cfg.aug_smooth.is_some() { "aug_smooth" } else { cfg.method.name() }
            )));
        }
        if activation.rank() != 4 {
            return Err(Error::UnsupportedLayer {
                name: layer.clone(),
                reason: format!(
                    "its output has shape {:?}; CAMs need a convolutional map [N, C, h, w]",
                    activation.dims()
                ),
            });
        }
        let start = model.resolve_layer(layer)?;
        let cuts = model.cut_points();
        if !cuts.contains(&start) {
            return Err(Error::UnsupportedLayer {
                name: layer.clone(),
                reason: format!(
                    "the forward pass cannot start there; the model can start at: {}",
                    if cuts.is_empty() { "(none)".to_string() } else { cuts.join(", ") }
                ),
            });
        }
        let mut maps = self.run_from(model, activation, target, Some(&start))?;
        let (_, values) = maps.layers.pop().ok_or_else(|| Error::msg("a CAM run produced no layer"))?;
        Ok(Attribution { values, targets: maps.targets, scores: Some(maps.scores), meta: self.meta(&target.score) })
    }

    /// One pass of the pipeline on `input` (no augmentation).
    fn run<M: TapModel + ?Sized>(&self, model: &M, input: &Tensor, target: &Target) -> Result<LayerMaps> {
        self.run_from(model, input, target, None)
    }

    /// One pass of the pipeline on `input`, the images, or with `start` the activation of that
    /// layer (then only the tail runs).
    fn run_from<M: TapModel + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
        start: Option<&str>,
    ) -> Result<LayerMaps> {
        let cfg = &self.config;
        let method = cfg.method;
        let mut request = if method.uses_gradients() {
            ProbeRequest::layers(cfg.layers.iter().cloned())
        } else {
            ProbeRequest { record_layers: cfg.layers.clone(), ..Default::default() }
        };
        request.start = start.map(str::to_string);
        let probed = probe(model, input, target, &request)?;
        let t = probed.targets.first().map(Vec::len).unwrap_or(0);
        let mut layers = Vec::with_capacity(cfg.layers.len());
        for name in &cfg.layers {
            let a = probed
                .activations
                .get(name)
                .ok_or_else(|| Error::msg(format!("the probe recorded no activation at `{name}`")))?;
            if a.rank() != 4 {
                return Err(Error::UnsupportedLayer {
                    name: name.clone(),
                    reason: format!("its output has shape {:?}; CAMs need a convolutional map [N, C, h, w]", a.dims()),
                });
            }
            let gradient = || -> Result<Tensor> {
                let g = probed
                    .gradients
                    .get(name)
                    .ok_or_else(|| Error::msg(format!("the probe returned no gradient at `{name}`")))?;
                filter_gradients(a, g, cfg.gradients)
            };
            let w: Weights = match method {
                CamMethod::GradCam => weights::grad_cam(&gradient()?)?,
                CamMethod::GradCamPlusPlus => weights::grad_cam_plus_plus(a, &gradient()?)?,
                CamMethod::XGradCam => weights::xgrad_cam(a, &gradient()?)?,
                CamMethod::HiResCam => weights::hires_cam(&gradient()?)?,
                CamMethod::LayerCam => weights::layer_cam(&gradient()?)?,
                CamMethod::EigenCam => weights::eigen_cam(a, t)?,
                CamMethod::ScoreCam => {
                    Weights::Channel(score::weights(model, input, a, &probed.targets, &target.score, cfg.batch())?)
                }
                CamMethod::AblationCam => {
                    let layer = model.resolve_layer(name)?;
                    Weights::Channel(ablation::weights(
                        model,
                        a,
                        &AblationRun {
                            input,
                            layer: &layer,
                            targets: &probed.targets,
                            score: &target.score,
                            original: &probed.scores,
                            batch: cfg.batch(),
                            ratio: cfg.ratio_channels_to_ablate,
                            path: cfg.ablation_path,
                        },
                    )?)
                }
            };
            let mut map = combine(a, w, cfg.eigen_smooth)?;
            if cfg.relu {
                map = map.relu()?;
            }
            layers.push((name.clone(), map));
        }
        Ok(LayerMaps { layers, targets: probed.targets, scores: probed.scores })
    }

    /// The metadata of this configuration's attributions for targets on `score` (every layer of
    /// the configuration; set [`AttributionMeta::layers`] to one for a single layer's maps).
    pub fn meta(&self, score: &gaze_core::Score) -> AttributionMeta {
        let cfg = &self.config;
        let mut meta = AttributionMeta::new(cfg.method.name(), Resolution::Layer)
            .with_layers(cfg.layers.iter().cloned())
            .with_score(score.name())
            .with_option("relu", cfg.relu)
            .with_option("eigen-smooth", cfg.eigen_smooth)
            .with_option(
                "aug-smooth",
                match &cfg.aug_smooth {
                    None => "off".to_string(),
                    Some(a) => format!("flip={} factors={:?}", a.flip, a.factors),
                },
            );
        if cfg.method.uses_gradients() {
            meta = meta.with_option("gradients", cfg.gradients.name());
        }
        if cfg.method.is_perturbation() {
            meta = meta.with_option("batch", cfg.batch());
        }
        if cfg.method == CamMethod::AblationCam {
            meta = meta
                .with_option("ratio-channels-to-ablate", cfg.ratio_channels_to_ablate)
                .with_option("ablation-path", cfg.ablation_path.name());
        }
        meta
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for Cam {
    fn method(&self) -> &'static str {
        self.config.method.name()
    }

    /// The raw maps `[N, T, h, w]`, or `[N, T, L, h, w]` for several layers of one size (layers of
    /// different sizes are an error here: use [`Cam::explain_layers`]).
    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        let maps = self.explain_layers(model, input, target)?;
        let values = match maps.layers.as_slice() {
            [(_, only)] => only.clone(),
            [(first_name, first), rest @ ..] => {
                for (name, m) in rest {
                    if m.dims() != first.dims() {
                        return Err(Error::Shape {
                            what: format!("the maps of layer `{name}`"),
                            expected: format!(
                                "{:?} like layer `{first_name}` to stack the layers as [N, T, L, h, w] (Cam::explain_layers takes layers of different sizes)",
                                first.dims()
                            ),
                            got: m.dims().to_vec(),
                        });
                    }
                }
                let all: Vec<Tensor> = maps.layers.iter().map(|(_, m)| m.clone()).collect();
                Tensor::stack(&all, 2)?
            }
            [] => return Err(Error::msg("a CAM run produced no layer")),
        };
        Ok(Attribution { values, targets: maps.targets, scores: Some(maps.scores), meta: self.meta(&target.score) })
    }
}

/// The displayed maps of a run's layers ([`display_maps`]).
fn display_layers(maps: &LayerMaps, size: (usize, usize)) -> Result<Tensor> {
    let all: Vec<Tensor> = maps.layers.iter().map(|(_, m)| m.clone()).collect();
    display_maps(&all, size)
}

/// `(N, C, H, W)` of a 4-D input; an error naming the shape otherwise.
fn check_input(input: &Tensor) -> Result<(usize, usize, usize, usize)> {
    gaze_core::numeric::check_images(input)?;
    Ok(input.dims4()?)
}

/// The targets resolved once on the unaugmented input, so that every augmentation explains the
/// same classes; with the scores of those targets.
fn fix_targets<M: TapModel + ?Sized>(
    model: &M,
    input: &Tensor,
    target: &Target,
) -> Result<(Target, Vec<Vec<usize>>, Tensor)> {
    let outputs = scored_outputs(&model.forward(input)?, &target.score)?;
    let targets = target.resolve(&outputs)?;
    let scores = select(&outputs, &targets)?;
    let fixed = Target { spec: TargetSpec::PerImage(targets.clone()), score: target.score.clone() };
    Ok((fixed, targets, scores))
}

/// ttach's augmentation: an optional horizontal flip, then a multiplication by `factor`.
fn augment(input: &Tensor, flip: bool, factor: f64) -> Result<Tensor> {
    let x = if flip { input.flip(&[3])? } else { input.clone() };
    Ok(if factor == 1.0 { x } else { x.affine(factor, 0.0)? })
}

/// Undoes the augmentation's geometry on maps `[N, T, h, w]`.
fn deaugment(maps: &Tensor, flip: bool) -> Result<Tensor> {
    Ok(if flip { maps.flip(&[3])? } else { maps.clone() })
}
