//! `expected-gradients`: SHAP's GradientExplainer, in input space, at a layer (shap's PyTorch form)
//! or in the layer's space (`--layer-space`, the TensorFlow tutorial's form).

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Tensor;
use gaze_core::Explainer;
use gaze_expected_gradients::{ExpectedGradients, Space};

use super::{Context, Explanation, Picture};
use crate::input::{image_files, read_batch};
use crate::UsageError;

pub fn explain(ctx: &Context) -> Result<Explanation> {
    let o = ctx.options;
    let layer = match ctx.layers.as_slice() {
        [] => None,
        [one] => Some(one.as_str()),
        more => {
            return Err(UsageError(format!("expected-gradients takes at most one --layer; got {}", more.len())).into())
        }
    };
    let space = Space::from_options(layer, o.layer_space)?;
    let mut method =
        ExpectedGradients::new(background(ctx, &o.background)?).with_space(space).with_seed(o.seed.unwrap_or(0));
    if let Some(s) = o.samples {
        method = method.with_samples(s);
    }
    if let Some(s) = o.local_smoothing {
        method = method.with_local_smoothing(s);
    }
    if let Some(b) = o.batch {
        method = method.with_batch(b);
    }
    let attribution = method.explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Shap })
}

/// The background set: image files, folders of images, or one safetensors file with a tensor
/// `input` (or `background`) [B, 3, H, W] already preprocessed.
fn background(ctx: &Context, paths: &[PathBuf]) -> Result<Tensor> {
    if paths.is_empty() {
        return Err(UsageError(
            "expected-gradients needs --background FILE... (images, a folder of images, or a tensor file)".into(),
        )
        .into());
    }
    if let [one] = paths {
        if one.extension().is_some_and(|e| e == "safetensors") {
            return Ok(read_batch(ctx.model, &[], Some(one))?.input);
        }
    }
    // Folders are read as `gaze explain` reads IMAGE: their PNG and JPEG files by name; a folder
    // without any is an error naming it.
    let files = image_files(paths).map_err(|e| match e.downcast::<UsageError>() {
        Ok(UsageError(message)) => UsageError(format!("--background: {message}")).into(),
        Err(e) => e,
    })?;
    Ok(read_batch(ctx.model, &files, None)?.input)
}
