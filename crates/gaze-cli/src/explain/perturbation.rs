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
    let attribution = Occlusion::new(config).explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Heat })
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
