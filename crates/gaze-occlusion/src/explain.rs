//! The occlusion explainers: configuration, the batched full re-computation, and the incremental
//! one.

use candle_core::{DType, Tensor};
use gaze_core::{select, Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Target};
use gaze_engine::{chunks, scored_outputs, TapModel};

use crate::aggregate::{captum_map, tf_explain_map};
use crate::fill::Fill;
use crate::incremental::{
    cache_image, checked_stages, full_forward, occluded_logits, Incremental, IncrementalConfig, IncrementalReport,
    Shares, Span,
};
use crate::patches::{captum_patches, tf_explain_patches, Patch, PatchGrid};
use crate::perturb::occlude;

/// Whose definition of occlusion sensitivity to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OcclusionStyle {
    /// Captum's `Occlusion`: for every input element, the mean over the windows covering it of the
    /// drop of the target score, `[C, H, W]` at the input's resolution.
    #[default]
    Captum,
    /// tf-explain's `OcclusionSensitivity`: `1 − score` per patch of a non-overlapping grid,
    /// resized bilinearly to the image, `[1, H, W]` (with tf-explain's non-square bug fixed).
    TfExplain,
}

impl OcclusionStyle {
    /// The names `--occlusion-style` accepts.
    pub const NAMES: [&'static str; 2] = ["captum", "tf-explain"];

    /// Parses `captum` or `tf-explain`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "captum" => Ok(OcclusionStyle::Captum),
            "tf-explain" => Ok(OcclusionStyle::TfExplain),
            other => Err(Error::InvalidOption {
                option: "--occlusion-style".into(),
                value: other.into(),
                expected: Self::NAMES.join(" or "),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OcclusionStyle::Captum => "captum",
            OcclusionStyle::TfExplain => "tf-explain",
        }
    }

    /// The peer's own fill: Captum's default baseline 0, tf-explain's grey 127.5 (meant for inputs
    /// in `[0, 255]`).
    pub fn default_fill(self) -> Fill {
        match self {
            OcclusionStyle::Captum => Fill::Constant(0.0),
            OcclusionStyle::TfExplain => Fill::Constant(127.5),
        }
    }
}

/// The options of [`Occlusion`], by their command-line names:
/// `--occlusion-style`, `--window H,W`, `--stride H,W`, `--fill`, `--batch`.
#[derive(Clone, Debug)]
pub struct OcclusionConfig {
    pub style: OcclusionStyle,
    /// The window's (height, width); tf-explain's patch size.
    pub window: (usize, usize),
    /// The channels a window covers (Captum's first window dimension); `None`: all of them.
    /// tf-explain always covers all channels.
    pub window_channels: Option<usize>,
    /// The step between windows, (vertical, horizontal).
    /// `None`: half the window (at least 1) for Captum, whose own default is 1; the window itself for
    /// tf-explain, which allows nothing else.
    pub stride: Option<(usize, usize)>,
    /// The step along channels; `None`: the channel window.
    pub stride_channels: Option<usize>,
    /// What occluded elements become; `None`: the style's [default](OcclusionStyle::default_fill).
    pub fill: Option<Fill>,
    /// The most occluded copies evaluated per forward pass (Captum's `perturbations_per_eval`).
    pub batch: usize,
    /// When [`Occlusion::explain_incremental`] recomputes whole maps.
    pub incremental: IncrementalConfig,
}

impl Default for OcclusionConfig {
    fn default() -> Self {
        OcclusionConfig {
            style: OcclusionStyle::Captum,
            window: (16, 16),
            window_channels: None,
            stride: None,
            stride_channels: None,
            fill: None,
            batch: 32,
            incremental: IncrementalConfig::default(),
        }
    }
}

/// Parses `H,W` (or a single `N` for `N,N`) for `option`, each at least 1.
pub fn parse_pair(option: &str, text: &str) -> Result<(usize, usize)> {
    let bad = || Error::InvalidOption {
        option: option.into(),
        value: text.into(),
        expected: "H,W or N with positive integers".into(),
    };
    let nums = text
        .split(',')
        .map(|s| s.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(bad))
        .collect::<Result<Vec<_>>>()?;
    match nums.as_slice() {
        [n] => Ok((*n, *n)),
        [h, w] => Ok((*h, *w)),
        _ => Err(bad()),
    }
}

impl OcclusionConfig {
    /// Captum's `Occlusion` with a `window` and `stride` over all channels.
    pub fn captum(window: (usize, usize), stride: (usize, usize)) -> Self {
        OcclusionConfig { window, stride: Some(stride), ..Default::default() }
    }

    /// tf-explain's `OcclusionSensitivity` with square patches of `patch` pixels and its 127.5 fill.
    pub fn tf_explain(patch: usize) -> Self {
        OcclusionConfig { style: OcclusionStyle::TfExplain, window: (patch, patch), ..Default::default() }
    }

    pub fn with_fill(mut self, fill: Fill) -> Self {
        self.fill = Some(fill);
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// The fill in effect.
    pub fn fill(&self) -> Fill {
        self.fill.clone().unwrap_or_else(|| self.style.default_fill())
    }

    /// The stride in effect, `(channels, rows, columns)`, for an input with `channels` channels.
    fn strides(&self, channels: usize) -> [usize; 3] {
        let wc = self.window_channels.unwrap_or(channels);
        let (sh, sw) = match (self.style, self.stride) {
            (_, Some(s)) => s,
            (OcclusionStyle::Captum, None) => ((self.window.0 / 2).max(1), (self.window.1 / 2).max(1)),
            (OcclusionStyle::TfExplain, None) => self.window,
        };
        [self.stride_channels.unwrap_or(wc), sh, sw]
    }

    /// The windows for an input of shape `[C, H, W]`.
    pub fn patches(&self, shape: [usize; 3]) -> Result<PatchGrid> {
        match self.style {
            OcclusionStyle::Captum => {
                let window = [self.window_channels.unwrap_or(shape[0]), self.window.0, self.window.1];
                captum_patches(shape, window, self.strides(shape[0]))
            }
            OcclusionStyle::TfExplain => {
                if let Some(s) = self.stride.filter(|&s| s != self.window) {
                    return Err(Error::InvalidOption {
                        option: "--stride".into(),
                        value: format!("{},{}", s.0, s.1),
                        expected: format!(
                            "the patch size {},{} (tf-explain's patches do not overlap), or the captum style",
                            self.window.0, self.window.1
                        ),
                    });
                }
                if let Some(c) = self.window_channels.filter(|&c| c != shape[0]) {
                    return Err(Error::InvalidOption {
                        option: "occlusion window (channels)".into(),
                        value: c.to_string(),
                        expected: format!("all {} channels for the tf-explain style", shape[0]),
                    });
                }
                tf_explain_patches(shape, self.window)
            }
        }
    }

    fn meta(&self, target: &Target, channels: usize, incremental: bool) -> AttributionMeta {
        let [sc, sh, sw] = self.strides(channels);
        let mut meta = AttributionMeta::new("occlusion", Resolution::Input)
            .with_score(target.score.name())
            .with_option("occlusion-style", self.style.name())
            .with_option("window", format!("{},{}", self.window.0, self.window.1))
            .with_option("stride", format!("{sh},{sw}"))
            .with_option("fill", self.fill())
            .with_option("batch", self.batch)
            .with_option("incremental", incremental);
        if let Some(c) = self.window_channels {
            meta = meta.with_option("window-channels", c).with_option("stride-channels", sc);
        }
        if incremental {
            meta = meta.with_option("full-threshold", self.incremental.full_threshold);
        }
        meta
    }
}

/// Occlusion sensitivity (Zeiler and Fergus 2014, <https://arxiv.org/abs/1311.2901>) in Captum's
/// or tf-explain's definition.
///
/// As an [`Explainer`] of any [`TapModel`] it runs every occluded copy through the whole model,
/// `batch` copies per forward pass; [`explain_incremental`](Occlusion::explain_incremental) (or
/// [`IncrementalOcclusion`]) recomputes only what each patch changes, for models that implement
/// [`Incremental`], with the same results up to float rounding.
#[derive(Clone, Debug, Default)]
pub struct Occlusion {
    pub config: OcclusionConfig,
}

impl Occlusion {
    pub fn new(config: OcclusionConfig) -> Self {
        Occlusion { config }
    }

    /// The attribution computed incrementally, with the share of each stage recomputed.
    pub fn explain_incremental<M: Incremental + ?Sized>(
        &self,
        model: &M,
        input: &Tensor,
        target: &Target,
    ) -> Result<(Attribution, IncrementalReport)> {
        gaze_core::numeric::check_images(input)?;
        self.config.incremental.check()?;
        let stages = checked_stages(model)?;
        let logits = full_forward(model, input)?;
        let mut shares = Shares::new(stages.len());
        let mut cached: Option<(usize, Vec<Tensor>)> = None;
        let cfg = self.config.incremental;
        let attribution = self.run(input, target, &logits, true, |n, image, baseline, patches| {
            if cached.as_ref().map(|(m, _)| *m) != Some(n) {
                let (nodes, _) = cache_image(model, &stages, &image.unsqueeze(0)?)?;
                cached = Some((n, nodes));
            }
            let (_, nodes) = cached.as_ref().expect("cached just above");
            occluded_logits(model, &stages, nodes, image, baseline, patches, &cfg, &mut shares)
        })?;
        Ok((attribution, shares.report(&stages)))
    }

    /// The shared loop: targets from the unoccluded `logits`, then for each image the scores of its
    /// occluded copies, `batch` at a time, from `eval(n, image, baseline, patches)` (logits
    /// `[B, K]`), then the style's aggregation.
    fn run<F>(
        &self,
        input: &Tensor,
        target: &Target,
        logits: &Tensor,
        incremental: bool,
        mut eval: F,
    ) -> Result<Attribution>
    where
        F: FnMut(usize, &Tensor, &Tensor, &[Patch]) -> Result<Tensor>,
    {
        let (n, c, h, w) = input.dims4().map_err(|_| Error::Shape {
            what: "occlusion input".into(),
            expected: "[N, C, H, W]".into(),
            got: input.dims().to_vec(),
        })?;
        let cfg = &self.config;
        let grid = cfg.patches([c, h, w])?;
        let baseline = cfg.fill().baseline(input)?;
        let outputs = scored_outputs(logits, &target.score)?;
        let targets = target.resolve(&outputs)?;
        let base = select(&outputs, &targets)?;
        let base_rows = base.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let t_count = targets.first().map(Vec::len).unwrap_or(0);
        let map_channels = match cfg.style {
            OcclusionStyle::Captum => c,
            OcclusionStyle::TfExplain => 1,
        };
        let mut values = Vec::with_capacity(n * t_count * map_channels * h * w);
        for (i, classes) in targets.iter().enumerate() {
            let image = input.get(i)?;
            let fill = baseline.get(i)?;
            let mut scores = Vec::with_capacity(grid.len() * t_count);
            for chunk in chunks(grid.len(), cfg.batch)? {
                let patches = &grid.patches[chunk.start..chunk.start + chunk.len];
                let logits = eval(i, &image, &fill, patches)?;
                let out = scored_outputs(&logits, &target.score)?;
                let picked = select(&out, &vec![classes.clone(); chunk.len])?;
                scores.extend(picked.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
            }
            values.extend(match cfg.style {
                OcclusionStyle::Captum => captum_map(&base_rows[i], &scores, &grid, [c, h, w])?,
                OcclusionStyle::TfExplain => tf_explain_map(&scores, t_count, &grid, (h, w))?,
            });
        }
        let values = Tensor::from_vec(values, (n, t_count, map_channels, h, w), input.device())?;
        Ok(Attribution {
            values,
            targets,
            scores: Some(base.to_dtype(DType::F32)?),
            meta: cfg.meta(target, c, incremental),
        })
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for Occlusion {
    fn method(&self) -> &'static str {
        "occlusion"
    }

    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        gaze_core::numeric::check_images(input)?;
        let logits = model.forward(input)?;
        self.run(input, target, &logits, false, |_, image, baseline, patches| {
            let (_, h, w) = image.dims3()?;
            let whole = [Span::whole(h), Span::whole(w)];
            let copies = patches.iter().map(|p| occlude(image, baseline, p, whole)).collect::<Result<Vec<_>>>()?;
            model.forward(&Tensor::stack(&copies, 0)?)
        })
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        target.resolve(&scored_outputs(&model.forward(input)?, &target.score)?)
    }
}

/// [`Occlusion`] computed incrementally, as the [`Explainer`] of a model that implements
/// [`Incremental`].
#[derive(Clone, Debug, Default)]
pub struct IncrementalOcclusion(pub Occlusion);

impl<M: Incremental + ?Sized> Explainer<M> for IncrementalOcclusion {
    fn method(&self) -> &'static str {
        "occlusion"
    }

    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        Ok(self.0.explain_incremental(model, input, target)?.0)
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        target.resolve(&scored_outputs(&full_forward(model, input)?, &target.score)?)
    }
}
