//! `gaze predict`: the top classes of each image.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use gaze_core::Target;
use gaze_engine::ops::softmax_last_dim;
use gaze_models::Classifier;
use serde::Serialize;

use crate::explain::IMAGES_PER_CHUNK;
use crate::input::{image_files, read_batch, Batch};
use crate::model::ModelArgs;
use crate::write_stdout;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON (one object per image) instead of text.
    #[arg(long)]
    json: bool,
    /// Add every logit to the JSON output (only with --json).
    #[arg(long, requires = "json")]
    logits: bool,
    /// A safetensors file with a tensor `input` [N, 3, H, W], already preprocessed.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Image files (PNG or JPEG), or folders of them.
    images: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Prediction {
    class: usize,
    wnid: Option<String>,
    label: Option<String>,
    /// The softmax probability.
    score: f32,
    logit: f32,
}

#[derive(Serialize)]
struct ImagePredictions {
    image: String,
    top: Vec<Prediction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<Vec<f32>>,
}

pub fn run(args: Args) -> Result<()> {
    let model = args.model.load()?;
    // As `gaze explain` does: a folder is its images, and images are read and classified in chunks,
    // so memory stays flat however many are given (a tensor file is one chunk).
    let images = image_files(&args.images)?;
    let chunks: Vec<&[PathBuf]> = if images.is_empty() { vec![&[]] } else { images.chunks(IMAGES_PER_CHUNK).collect() };
    let mut out = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        let tensor_file = if index == 0 { args.input.as_deref() } else { None };
        let batch = read_batch(model.as_ref(), chunk, tensor_file)?;
        let predictions = predict(model.as_ref(), &batch, args.top, args.logits)?;
        if args.json {
            out.extend(predictions);
        } else if !write_stdout(&text(&predictions))? {
            // The reader has gone (`| head`): classifying the rest would be for nobody.
            return Ok(());
        }
    }
    if args.json {
        write_stdout(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    }
    Ok(())
}

/// The top `top` classes of every image of `batch`, with every logit when `logits` is set.
fn predict(model: &dyn Classifier, batch: &Batch, top: usize, logits: bool) -> Result<Vec<ImagePredictions>> {
    let all = model.forward(&batch.input)?;
    let ranked = Target::top(top).resolve(&all)?;
    let probs = softmax_last_dim(&all)?.to_vec2::<f32>()?;
    let all = all.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(ranked.len());
    for (n, classes) in ranked.iter().enumerate() {
        let top = classes
            .iter()
            .map(|&c| Prediction {
                class: c,
                wnid: model.class_id(c),
                label: model.label(c),
                score: probs[n][c],
                logit: all[n][c],
            })
            .collect();
        out.push(ImagePredictions { image: batch.stems[n].clone(), top, logits: logits.then(|| all[n].clone()) });
    }
    Ok(out)
}

/// The text output: each image's name, then one indented line per class.
fn text(predictions: &[ImagePredictions]) -> String {
    let mut s = String::new();
    for image in predictions {
        s.push_str(&image.image);
        s.push('\n');
        for (rank, p) in image.top.iter().enumerate() {
            let label = p.label.as_deref().unwrap_or("?");
            s.push_str(&format!("  {}. {label} ({}): {:.4} (logit {:.3})\n", rank + 1, p.class, p.score, p.logit));
        }
    }
    s
}
