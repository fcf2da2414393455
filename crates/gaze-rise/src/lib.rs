//! # gaze-rise
//!
//! RISE, Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018,
//! <https://arxiv.org/abs/1806.07421>): the saliency of a pixel is the model's score averaged over
//! randomly masked copies of the image, weighted by how much of the pixel each mask kept.
//!
//! `N` binary grids of `s × s` cells, each kept with probability `p`, are upsampled bilinearly to
//! `(s + 1) · cell` pixels (`cell = ceil(H / s)` per axis), shifted by a random offset below one
//! cell and cropped to the image ([`MaskPlan`]); each copy is `x · m + fill · (1 − m)` (the authors
//! multiply, a fill of 0), and
//! `saliency[t] = Σ_i score_i[t] · m_i / (N · p)`, `[1, H, W]` per image and target.
//!
//! The masks come from a seed (or an explicit plan) and do not depend on the images, so a batch
//! gives the same maps as its images one by one; copies run `batch` at a time.
//! Seeded masks are drawn a batch at a time ([`MaskDraws`]), so memory does not grow with the
//! number of masks, only the time.
//!
//! This crate owns RISE only: it runs any [`TapModel`] forward and never looks inside it, and it
//! draws nothing.

mod masks;

use candle_core::{DType, Tensor};
use gaze_core::{select, Attribution, AttributionMeta, Error, Explainer, Resolution, Result, Target};
use gaze_engine::{chunks, scored_outputs, TapModel};

pub use masks::{cell_size, MaskDraws, MaskPlan};

/// The options of [`Rise`], by their command-line names: `--masks`, `--grid`, `--keep`, `--seed`,
/// `--batch`.
#[derive(Clone, Debug, PartialEq)]
pub struct RiseConfig {
    /// The number of masks `N`.
    pub masks: usize,
    /// The grid size `s`.
    pub grid: usize,
    /// The probability `p` that a cell is kept.
    pub keep: f64,
    /// The seed the masks are drawn from.
    pub seed: u64,
    /// The most masked copies per forward pass.
    pub batch: usize,
    /// The value masked-out pixels tend to (0 in the paper); a finite number ([`RiseConfig::check`]).
    pub fill: f64,
    /// Explicit masks instead of seeded ones; their size must be the input's.
    pub plan: Option<MaskPlan>,
}

impl Default for RiseConfig {
    /// The paper's ImageNet settings: 4000 masks on a 7 × 7 grid, half the cells kept.
    fn default() -> Self {
        RiseConfig { masks: 4000, grid: 7, keep: 0.5, seed: 0, batch: 32, fill: 0.0, plan: None }
    }
}

impl RiseConfig {
    /// Checks the options that do not depend on the input: `fill` must be finite (a NaN fill made
    /// every masked copy NaN). [`Rise`] calls it before anything runs.
    pub fn check(&self) -> Result<()> {
        if !self.fill.is_finite() {
            return Err(Error::InvalidOption {
                option: "RISE fill".into(),
                value: self.fill.to_string(),
                expected: "a finite value for masked-out pixels (0 in the paper)".into(),
            });
        }
        Ok(())
    }

    /// The plan for inputs of `size`: the explicit one (checked against the size) or one drawn
    /// from the seed, every mask at once ([`Rise`] itself draws seeded masks a batch at a time).
    pub fn plan(&self, size: (usize, usize)) -> Result<MaskPlan> {
        match &self.plan {
            // A plan's fields are public: it is checked again as `MaskPlan::new` checks one.
            Some(plan) if plan.size == size => {
                MaskPlan::new(plan.grid, plan.keep, plan.size, plan.cells.clone(), plan.shifts.clone())
            }
            Some(plan) => Err(Error::InvalidOption {
                option: "RISE mask plan".into(),
                value: format!("masks of {:?}", plan.size),
                expected: format!("masks of the input's size {size:?}"),
            }),
            None => MaskPlan::random(self.masks, self.grid, self.keep, size, self.seed),
        }
    }
}

/// Where a run's masks come from: an explicit plan, or seeded draws made a chunk at a time.
enum Masks {
    Plan(MaskPlan),
    Seeded(Box<MaskDraws>),
}

impl Masks {
    /// The upsampled masks `start..start + len`, row-major, one after another; seeded draws must
    /// be asked for in order, as the chunks run.
    fn masks(&mut self, start: usize, len: usize) -> Vec<f32> {
        match self {
            Masks::Plan(plan) => (start..start + len).flat_map(|i| plan.mask(i)).collect(),
            Masks::Seeded(draws) => {
                let part = draws.next_plan(len);
                (0..len).flat_map(|i| part.mask(i)).collect()
            }
        }
    }
}

/// RISE as an [`Explainer`] of any [`TapModel`].
#[derive(Clone, Debug, Default)]
pub struct Rise {
    pub config: RiseConfig,
}

impl Rise {
    pub fn new(config: RiseConfig) -> Self {
        Rise { config }
    }
}

impl<M: TapModel + ?Sized> Explainer<M> for Rise {
    fn method(&self) -> &'static str {
        "rise"
    }

    fn explain(&self, model: &M, input: &Tensor, target: &Target) -> Result<Attribution> {
        gaze_core::numeric::check_images(input)?;
        let (n, _, h, w) = input.dims4()?;
        let cfg = &self.config;
        cfg.check()?;
        // An explicit plan is checked and used as it is; seeded masks are drawn chunk by chunk.
        let (mut source, count, grid, keep) = match &cfg.plan {
            Some(_) => {
                let plan = cfg.plan((h, w))?;
                let (count, grid, keep) = (plan.len(), plan.grid, plan.keep);
                (Masks::Plan(plan), count, grid, keep)
            }
            None => {
                masks::check_masks(cfg.masks)?;
                (
                    Masks::Seeded(Box::new(MaskDraws::new(cfg.grid, cfg.keep, (h, w), cfg.seed)?)),
                    cfg.masks,
                    cfg.grid,
                    cfg.keep,
                )
            }
        };
        let outputs = scored_outputs(&model.forward(input)?, &target.score)?;
        let targets = target.resolve(&outputs)?;
        let base = select(&outputs, &targets)?;
        let t_count = targets.first().map(Vec::len).unwrap_or(0);
        let device = input.device();
        let mut sums: Vec<Option<Tensor>> = vec![None; n];
        for chunk in chunks(count, cfg.batch)? {
            let flat = source.masks(chunk.start, chunk.len);
            let masks = Tensor::from_vec(flat, (chunk.len, 1, h, w), device)?.to_dtype(input.dtype())?;
            let kept = masks.affine(-1.0, 1.0)?.affine(cfg.fill, 0.0)?;
            let masks_flat = masks.reshape((chunk.len, h * w))?.to_dtype(DType::F32)?;
            for (i, classes) in targets.iter().enumerate() {
                let copies = input.narrow(0, i, 1)?.broadcast_mul(&masks)?.broadcast_add(&kept)?;
                let out = scored_outputs(&model.forward(&copies)?, &target.score)?;
                let scores = select(&out, &vec![classes.clone(); chunk.len])?.to_dtype(DType::F32)?;
                // [T, B] × [B, H·W]: each target's score-weighted sum of this chunk's masks.
                let part = scores.t()?.contiguous()?.matmul(&masks_flat)?;
                sums[i] = Some(match sums[i].take() {
                    None => part,
                    Some(acc) => (acc + part)?,
                });
            }
        }
        let scale = 1.0 / (count as f64 * keep);
        let maps = sums
            .into_iter()
            .map(|s| {
                let s = s.ok_or_else(|| Error::msg("RISE ran no masks"))?;
                Ok(s.affine(scale, 0.0)?.reshape((t_count, 1, h, w))?)
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = AttributionMeta::new("rise", Resolution::Input)
            .with_score(target.score.name())
            .with_option("masks", count)
            .with_option("grid", grid)
            .with_option("keep", keep)
            .with_option("seed", if cfg.plan.is_some() { "plan".to_string() } else { cfg.seed.to_string() })
            .with_option("batch", cfg.batch)
            .with_option("fill", cfg.fill);
        Ok(Attribution { values: Tensor::stack(&maps, 0)?, targets, scores: Some(base.to_dtype(DType::F32)?), meta })
    }

    fn resolve_targets(&self, model: &M, input: &Tensor, target: &Target) -> Result<Vec<Vec<usize>>> {
        target.resolve(&scored_outputs(&model.forward(input)?, &target.score)?)
    }
}
