//! `smoothgrad`: Captum's noise tunnel over a gradient method (SmoothGrad, SmoothGrad², VarGrad).

use anyhow::Result;
use gaze_core::Explainer;
use gaze_saliency::{Gradient, GradientKind};
use gaze_smoothgrad::{Aggregate, Noise, SmoothGrad};

use super::{Context, Explanation, Picture};

pub fn explain(ctx: &Context) -> Result<Explanation> {
    let o = ctx.options;
    let inner_kind = match &o.smooth_of {
        Some(name) => GradientKind::parse(name).map_err(|_| {
            crate::UsageError(format!(
                "invalid value `{name}` for --smooth-of; expected one of the gradient methods: {}",
                GradientKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ))
        })?,
        None => GradientKind::Saliency,
    };
    let mut inner = Gradient::new(inner_kind);
    if let Some(b) = o.batch {
        inner = inner.with_batch(b);
    }
    let mut method = SmoothGrad::new(inner)
        .with_noise(Noise::from_options(o.noise, o.noise_frac, Noise::Fraction(0.15))?)
        .with_seed(o.seed.unwrap_or(0));
    if let Some(s) = o.samples {
        method = method.with_samples(s);
    }
    if let Some(a) = &o.aggregate {
        method = method.with_aggregate(Aggregate::parse(a)?);
    }
    if let Some(b) = o.batch {
        method = method.with_batch(b);
    }
    let attribution = method.explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Saliency })
}
