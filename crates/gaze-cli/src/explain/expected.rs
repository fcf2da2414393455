//! `expected-gradients`: SHAP's GradientExplainer, in input space, at a layer (shap's PyTorch form)
//! or in the layer's space (`--layer-space`, the TensorFlow tutorial's form).

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Tensor;
use gaze_core::Explainer;
use gaze_expected_gradients::{ExpectedGradients, Space};

use super::{Context, Explanation, Picture};
use crate::input::{file_kind, image_files, read_batch, FileKind};
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

/// The background set, from `--background` in order: image files and folders of images (read
/// through the model's preprocessing), and safetensors files with a tensor `input` `[B, C, H, W]`
/// already preprocessed. Files are told apart by their content, not their names; all rows must
/// have one shape, which images have when a tensor file holds inputs of the model's size.
fn background(ctx: &Context, paths: &[PathBuf]) -> Result<Tensor> {
    if paths.is_empty() {
        return Err(UsageError(
            "expected-gradients needs --background FILE... (images, a folder of images, or a tensor file)".into(),
        )
        .into());
    }
    // (what the rows came from, the rows), in the order they were named.
    let mut parts: Vec<(String, Tensor)> = Vec::new();
    let mut pending: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            pending.push(path.clone());
            continue;
        }
        match file_kind(path)? {
            FileKind::Image => pending.push(path.clone()),
            FileKind::Tensors => {
                flush_images(ctx, &mut pending, &mut parts)?;
                let rows = read_batch(ctx.model, &[], Some(path))?.input;
                parts.push((format!("the tensor file {}", path.display()), rows));
            }
            FileKind::Other => {
                return Err(gaze_core::Error::InvalidOption {
                    option: "--background".into(),
                    value: path.display().to_string(),
                    expected: format!(
                        "image files (PNG, JPEG), folders of them, or safetensors tensor files with a tensor \
                         `input` [B, {}, H, W]; this file is neither an image nor a safetensors file",
                        ctx.model.input_shape()[0]
                    ),
                }
                .into())
            }
        }
    }
    flush_images(ctx, &mut pending, &mut parts)?;
    let Some(((first_what, first), rest)) = parts.split_first() else {
        return Err(UsageError("--background names no images or tensor files".into()).into());
    };
    for (what, rows) in rest {
        if rows.dims()[1..] != first.dims()[1..] {
            return Err(UsageError(format!(
                "--background: {what} holds rows of shape {:?}, but {first_what} holds rows of shape {:?}; \
                 every background row must have one shape (images are resized to the model's input, {:?}), \
                 so mix tensor files and images only when the tensors have that size",
                &rows.dims()[1..],
                &first.dims()[1..],
                ctx.model.input_shape()
            ))
            .into());
        }
    }
    let rows: Vec<Tensor> = parts.into_iter().map(|(_, rows)| rows).collect();
    Ok(Tensor::cat(&rows, 0)?)
}

/// Reads the image files and folders gathered in `pending` (if any) as one part of the background.
fn flush_images(ctx: &Context, pending: &mut Vec<PathBuf>, parts: &mut Vec<(String, Tensor)>) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    // Folders are read as `gaze explain` reads IMAGE: their PNG and JPEG files by name; a folder
    // without any is an error naming it.
    let files = image_files(pending).map_err(|e| match e.downcast::<UsageError>() {
        Ok(UsageError(message)) => UsageError(format!("--background: {message}")).into(),
        Err(e) => e,
    })?;
    let what = match files.as_slice() {
        [one] => format!("the image {}", one.display()),
        [first, ..] => format!("the {} images from {} on", files.len(), first.display()),
        [] => return Err(UsageError("--background names no images".into()).into()),
    };
    parts.push((what, read_batch(ctx.model, &files, None)?.input));
    pending.clear();
    Ok(())
}
