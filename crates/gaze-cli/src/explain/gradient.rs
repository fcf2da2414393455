//! Gradient methods: `saliency`, `gradient-x-input`, `guided-backprop`, `deconvnet`, and
//! `guided-gradcam`.

use anyhow::Result;
use gaze_core::Explainer;
use gaze_saliency::{Gradient, GradientKind};

use super::{Context, Explanation, Picture};

pub fn explain(ctx: &Context, kind: GradientKind) -> Result<Explanation> {
    let mut method = Gradient::new(kind);
    if let Some(b) = ctx.options.batch {
        method = method.with_batch(b);
    }
    let attribution = method.explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Saliency })
}

pub fn guided_gradcam(ctx: &Context) -> Result<Explanation> {
    let layer = match ctx.layers.as_slice() {
        [one] => one.clone(),
        other => {
            return Err(
                crate::UsageError(format!("guided-gradcam takes exactly one --layer; got {}", other.len())).into()
            )
        }
    };
    let mut method = gaze_saliency::GuidedGradCam::new(layer);
    if let Some(b) = ctx.options.batch {
        method = method.with_batch(b);
    }
    let attribution = method.explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Saliency })
}
