//! `activations`: the feature maps of a layer, drawn as a grid (tf-explain's layout).

use anyhow::Result;
use gaze_activations::{Activations, ActivationsConfig};

use super::{Context, Explanation, Picture};
use crate::UsageError;

pub fn explain(ctx: &Context) -> Result<Explanation> {
    let layer = match ctx.layers.as_slice() {
        [one] => one.clone(),
        other => return Err(UsageError(format!("activations takes exactly one --layer; got {}", other.len())).into()),
    };
    let maps =
        Activations::new(ActivationsConfig::new(layer)).feature_maps(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution: maps.attribution, picture: Picture::Grid })
}
