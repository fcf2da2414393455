//! Perturbation methods: `occlusion` (Captum's or tf-explain's) and `rise`.

use anyhow::Result;
use gaze_core::Explainer;
use gaze_occlusion::{parse_pair, Fill, Occlusion, OcclusionConfig, OcclusionStyle};
use gaze_rise::{Rise, RiseConfig};

use super::{Context, Explanation, Picture};

pub fn occlusion(ctx: &Context) -> Result<Explanation> {
    let o = ctx.options;
    let style = match &o.occlusion_style {
        Some(s) => OcclusionStyle::parse(s)?,
        None => OcclusionStyle::Captum,
    };
    let mut config = OcclusionConfig { style, ..OcclusionConfig::default() };
    if let Some(w) = &o.window {
        config.window = parse_pair("--window", w)?;
    }
    if let Some(s) = &o.stride {
        config.stride = Some(parse_pair("--stride", s)?);
    }
    if let Some(f) = &o.fill {
        config = config.with_fill(Fill::parse(f)?);
    }
    if let Some(b) = o.batch {
        config = config.with_batch(b);
    }
    let occlusion = Occlusion::new(config);
    let attribution = match ctx.model.incremental().filter(|_| incremental_allowed()) {
        Some(model) => occlusion.explain_incremental(model, &ctx.batch.input, &ctx.target)?.0,
        None => occlusion.explain(ctx.model, &ctx.batch.input, &ctx.target)?,
    };
    Ok(Explanation { attribution, picture: Picture::Heat })
}

/// The environment variable that, set to `0`, makes `occlusion` run every occluded copy through the
/// whole model even where the model describes its spatial stages.
/// The incremental path gives the same maps up to float rounding; the variable exists to compare the
/// two and to rule the incremental path out when hunting a bug.
const INCREMENTAL_VAR: &str = "GAZE_OCCLUSION_INCREMENTAL";

/// Whether occlusion may recompute only what each window changes: unless [`INCREMENTAL_VAR`] is `0`.
fn incremental_allowed() -> bool {
    std::env::var_os(INCREMENTAL_VAR).is_none_or(|v| v != "0")
}

pub fn rise(ctx: &Context) -> Result<Explanation> {
    let o = ctx.options;
    let mut config = RiseConfig { seed: o.seed.unwrap_or(0), ..RiseConfig::default() };
    if let Some(m) = o.masks {
        config.masks = m;
    }
    if let Some(g) = o.grid {
        config.grid = g;
    }
    if let Some(k) = o.keep {
        config.keep = k;
    }
    if let Some(b) = o.batch {
        config.batch = b;
    }
    let attribution = Rise::new(config).explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Heat })
}
