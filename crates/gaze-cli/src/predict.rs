//! `gaze predict`: the top classes of each image.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use gaze_core::Target;
use gaze_engine::ops::softmax_last_dim;
use serde::Serialize;

use crate::input::read_batch;
use crate::model::ModelArgs;

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
    /// Add every logit to the JSON output.
    #[arg(long)]
    logits: bool,
    /// A safetensors file with a tensor `input` [N, 3, H, W], already preprocessed.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Image files (PNG or JPEG).
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
    let batch = read_batch(model.as_ref(), &args.images, args.input.as_deref())?;
    let logits = model.forward(&batch.input)?;
    let ranked = Target::top(args.top).resolve(&logits)?;
    let probs = softmax_last_dim(&logits)?.to_vec2::<f32>()?;
    let logits = logits.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(ranked.len());
    for (n, classes) in ranked.iter().enumerate() {
        let top = classes
            .iter()
            .map(|&c| Prediction {
                class: c,
                wnid: model.class_id(c),
                label: model.label(c),
                score: probs[n][c],
                logit: logits[n][c],
            })
            .collect();
        out.push(ImagePredictions {
            image: batch.stems[n].clone(),
            top,
            logits: args.logits.then(|| logits[n].clone()),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for image in &out {
            println!("{}", image.image);
            for (rank, p) in image.top.iter().enumerate() {
                let label = p.label.as_deref().unwrap_or("?");
                println!("  {}. {label} ({}): {:.4} (logit {:.3})", rank + 1, p.class, p.score, p.logit);
            }
        }
    }
    Ok(())
}
