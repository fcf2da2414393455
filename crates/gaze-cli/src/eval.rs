//! `gaze eval`: every method's maps of the demo model scored against the shapes data set's ground
//! truth, beside a random map and a centre-biased map, as a Markdown table or JSON.
//!
//! Each method explains the labelled class of every image (the object the mask outlines) with the
//! settings of [`method_options`]; its maps are brought to pixels by `gaze_eval::pixel_maps`
//! ([`reduction`] says how per method) and scored by `gaze_eval::evaluate`: the pointing game,
//! the energy-based pointing game, deletion and insertion (RISE's defaults).
//! `--sanity` adds the cascading-randomisation check of Adebayo et al. per method.
//! `gaze demo` shows the same leaderboard, on a smaller sample, in its page.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::Args as ClapArgs;
use gaze_core::{Explainer, Target};
use gaze_engine::TapModel;
use gaze_eval::{
    centre_maps, evaluate, pixel_maps, random_maps, randomize_weights, sanity_check, Batch as ShapesBatch,
    ChannelReduce, EvaluationConfig, PixelNorm, Randomization, ShapesDataset,
};
use gaze_expected_gradients::ExpectedGradients;
use gaze_models::{Classifier, DemoCnn, DEMO_WEIGHTS};
use serde::Serialize;

use crate::explain::{explain_with, Context, Explanation, Method, MethodOptions, Picture};
use crate::input::Batch;
use crate::UsageError;

/// The seed of the images `gaze eval` and `gaze demo` draw by default: the held-out split of the demo
/// model's model card (it trained on seed 1 and measured its accuracy on seed 2).
pub const EVAL_SEED: u64 = 2;
/// The seed of the expected-gradients background, another data set the model never saw.
pub const BACKGROUND_SEED: u64 = 3;
/// Images in the expected-gradients background.
pub const BACKGROUND_IMAGES: usize = 32;
/// The demo model's parametrised layers, from the output toward the input: the order of cascading
/// randomisation.
pub const SANITY_LAYERS: [&str; 5] = ["fc", "conv4", "conv3", "conv2", "conv1"];
/// A method whose maps keep a mean rank correlation (of absolute values) at or above this with
/// every layer randomised is flagged as insensitive to the model.
pub const INSENSITIVE_AT: f32 = 0.5;
/// The most images `--n` takes. The whole sample is drawn and held at once, and scoring it holds the
/// demo model's activations for every image: about 0.6 MB an image, so some 6 GB and hours of work
/// at this bound.
pub const MAX_IMAGES: usize = 10_000;
/// The seed of the random-map baseline.
const RANDOM_MAP_SEED: u64 = 0;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The methods to score, comma-separated (default: every method of `gaze explain`).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub methods: Vec<String>,
    /// How many images of the shapes data set to score on (1 to 10000).
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub n: usize,
    /// The data set's seed (default: the demo model's held-out split).
    #[arg(long, default_value_t = EVAL_SEED, value_name = "S")]
    pub seed: u64,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
    /// The most images explained at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch: usize,
    /// Also run the cascading-randomisation sanity check of each method.
    #[arg(long)]
    pub sanity: bool,
    /// How many of the images the sanity check runs on (the first ones of the sample; only with --sanity).
    #[arg(long, default_value_t = 32, value_name = "N", requires = "sanity")]
    pub sanity_images: usize,
}

/// One row of the leaderboard: the mean scores of a method's maps, or of a baseline's.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// The method's name as `--methods` takes it, or `random` and `centre` for the baselines.
    pub name: String,
    pub baseline: bool,
    /// Share of maps whose maximum lies within 3 pixels of the object.
    pub pointing: f32,
    /// Share of the maps' positive energy inside the object.
    pub energy: f32,
    /// Area under the deletion curve (lower is better).
    pub deletion: f32,
    /// Area under the insertion curve (higher is better).
    pub insertion: f32,
    /// Seconds spent computing the maps (not the metrics).
    pub seconds: f64,
}

/// The sanity check of one method.
#[derive(Clone, Debug, Serialize)]
pub struct Sanity {
    pub name: String,
    /// The mean Spearman correlation of absolute maps with the trained model's, after each step of
    /// cascading randomisation (`fc`, then `fc` and `conv4`, and so on down to `conv1`).
    pub spearman_abs: Vec<f32>,
    /// The mean signed Spearman correlation at the last step (every layer random).
    pub spearman_last: f32,
    /// The mean SSIM of the absolute maps at the last step.
    pub ssim_last: f32,
    /// Whether the maps stay similar (`spearman_abs` at the last step at least [`INSENSITIVE_AT`]).
    pub insensitive: bool,
}

/// The leaderboard of a sample.
#[derive(Clone, Debug, Serialize)]
pub struct Leaderboard {
    pub seed: u64,
    pub images: usize,
    /// The demo model's accuracy on the sample.
    pub accuracy: f32,
    pub rows: Vec<Entry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sanity: Vec<Sanity>,
}

pub fn run(args: Args) -> Result<()> {
    let methods = if args.methods.is_empty() {
        Method::NAMES.iter().map(|n| Method::parse(n)).collect::<Result<Vec<_>>>()?
    } else {
        crate::report::parse_methods(&args.methods)?
    };
    if args.n == 0 {
        return Err(UsageError("--n must be at least 1".into()).into());
    }
    if args.n > MAX_IMAGES {
        return Err(UsageError(format!(
            "--n {} is too many images: accepted are 1 to {MAX_IMAGES} (the whole sample is held in memory)",
            args.n
        ))
        .into());
    }
    if args.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    if args.sanity && args.sanity_images == 0 {
        return Err(UsageError("--sanity-images must be at least 1".into()).into());
    }
    let device = Device::Cpu;
    let model = DemoCnn::embedded(&device)?;
    let sample = Sample::draw(args.seed, args.n, &device)?;
    let bar = crate::progress::bar((methods.len() + 2) as u64, "eval");
    let mut board = leaderboard(&model, &sample, &methods, args.batch, &|name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if args.sanity {
        let first = sample.narrow(args.sanity_images.min(args.n))?;
        let bar = crate::progress::bar(methods.len() as u64, "sanity");
        for &method in &methods {
            bar.set_message(method.name());
            board.sanity.push(sanity(&model, &first, method, args.batch)?);
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let text = if args.json { format!("{}\n", serde_json::to_string_pretty(&board)?) } else { board.markdown() };
    // A reader that closed the pipe early (`| head`) is no failure: there is nothing left to do.
    crate::write_stdout(&text)?;
    Ok(())
}

/// Images of the shapes data set with their masks, labels and the background expected gradients
/// draws from.
pub struct Sample {
    pub seed: u64,
    pub batch: ShapesBatch,
    pub background: Tensor,
}

impl Sample {
    /// The first `n` images of the data set of `seed`.
    pub fn draw(seed: u64, n: usize, device: &Device) -> Result<Self> {
        let data = ShapesDataset::new(seed);
        let batch = ShapesBatch::new(&data.try_samples(0..n as u64)?, &PixelNorm::keras_tf(), device)?;
        let background = ShapesBatch::new(
            &ShapesDataset::new(BACKGROUND_SEED).samples(0..BACKGROUND_IMAGES as u64),
            &PixelNorm::keras_tf(),
            device,
        )?
        .images;
        Ok(Sample { seed, batch, background })
    }

    /// The number of images.
    pub fn images(&self) -> usize {
        self.batch.labels.len()
    }

    /// The first `n` images.
    fn narrow(&self, n: usize) -> Result<Sample> {
        let b = &self.batch;
        Ok(Sample {
            seed: self.seed,
            batch: ShapesBatch {
                images: b.images.narrow(0, 0, n)?,
                masks: b.masks.narrow(0, 0, n)?,
                labels: b.labels[..n].to_vec(),
            },
            background: self.background.clone(),
        })
    }

    /// Each image's labelled class as its one target.
    fn classes(&self) -> Vec<Vec<usize>> {
        self.batch.labels.iter().map(|&l| vec![l]).collect()
    }
}

/// RISE's masks in `gaze eval` and `gaze demo`, an eighth of the paper's 4000, so that RISE costs
/// about as much as the other perturbation methods on the shapes.
pub const RISE_MASKS: usize = 500;
/// Expected gradients' samples per image in `gaze eval` and `gaze demo`.
pub const EG_SAMPLES: usize = 50;

/// The options every method runs with in `gaze eval` and `gaze demo`: the defaults of
/// `gaze explain`, except fewer RISE masks ([`RISE_MASKS`]) and expected-gradients samples
/// ([`EG_SAMPLES`]), which keep the demo within its time.
pub fn method_options(method: Method) -> MethodOptions {
    let mut options = MethodOptions::default();
    match method {
        Method::Rise => options.masks = Some(RISE_MASKS),
        Method::ExpectedGradients => options.samples = Some(EG_SAMPLES),
        _ => {}
    }
    options
}

/// Runs `method` as `gaze explain` does, except expected gradients, which takes its background
/// from `background` (images in memory) rather than from files.
pub fn explain_shapes(ctx: &Context, method: Method, background: &Tensor) -> Result<Explanation> {
    if method != Method::ExpectedGradients {
        return explain_with(ctx, method);
    }
    let o = ctx.options;
    let mut eg = ExpectedGradients::new(background.clone()).with_seed(o.seed.unwrap_or(0));
    if let Some(s) = o.samples {
        eg = eg.with_samples(s);
    }
    if let Some(b) = o.batch {
        eg = eg.with_batch(b);
    }
    let attribution = eg.explain(ctx.model, &ctx.batch.input, &ctx.target)?;
    Ok(Explanation { attribution, picture: Picture::Shap })
}

/// How a method's maps become one value per pixel for the metrics: the largest absolute value over
/// channels for gradient maps whose sign carries no meaning (Simonyan et al.'s saliency map), the
/// sum over channels for attributions that add up to the score; layer maps are upsampled and
/// activations averaged over channels either way.
pub fn reduction(method: Method) -> ChannelReduce {
    match method {
        Method::Gradient(gaze_saliency::GradientKind::GradientXInput)
        | Method::IntegratedGradients
        | Method::ExpectedGradients
        | Method::Occlusion
        | Method::Rise => ChannelReduce::Sum,
        _ => ChannelReduce::MaxAbs,
    }
}

/// The maps `[N, T, H, W]` of `method` on `input` for the classes `classes`, at the input's
/// resolution, `batch` images at a time.
pub fn method_maps(
    model: &dyn Classifier,
    input: &Tensor,
    classes: &[Vec<usize>],
    method: Method,
    background: &Tensor,
    batch: usize,
) -> Result<Tensor> {
    let (n, _, h, w) = input.dims4()?;
    let options = method_options(method);
    let layers: Vec<String> =
        if method.takes_default_layer() { model.default_layer().into_iter().collect() } else { vec![] };
    let mut maps = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let chunk = Batch {
            input: input.narrow(0, start, len)?,
            stems: (start..start + len).map(|i| format!("shape-{i}")).collect(),
            images: Vec::new(),
        };
        let ctx = Context {
            model,
            batch: &chunk,
            target: Target::per_image_lists(classes[start..start + len].to_vec()),
            layers: layers.clone(),
            options: &options,
        };
        let explanation = explain_shapes(&ctx, method, background).with_context(|| method.name().to_string())?;
        maps.push(pixel_maps(&explanation.attribution, reduction(method), (h, w))?);
        start += len;
    }
    Ok(Tensor::cat(&maps, 0)?)
}

/// Scores `maps` `[N, T, H, W]` of `sample` with every metric, `batch` maps at a time.
fn score(model: &dyn Classifier, sample: &Sample, maps: &Tensor, batch: usize) -> Result<[f32; 4]> {
    let n = sample.images();
    let classes = sample.classes();
    let config = EvaluationConfig::default();
    let forward = |x: &Tensor| model.forward(x);
    let (mut sums, mut count) = ([0f64; 4], 0usize);
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let e = evaluate(
            forward,
            &sample.batch.images.narrow(0, start, len)?,
            &maps.narrow(0, start, len)?,
            &sample.batch.masks.narrow(0, start, len)?,
            &classes[start..start + len],
            &config,
        )?;
        let parts = [
            &e.pointing.values,
            &e.energy.values,
            &e.deletion.as_ref().map(|c| c.auc.values.clone()).unwrap_or_default(),
            &e.insertion.as_ref().map(|c| c.auc.values.clone()).unwrap_or_default(),
        ];
        for (sum, values) in sums.iter_mut().zip(parts) {
            *sum += values.iter().map(|&v| v as f64).sum::<f64>();
        }
        count += e.pointing.values.len();
        start += len;
    }
    Ok(sums.map(|s| (s / count.max(1) as f64) as f32))
}

/// The leaderboard of `methods` on `sample`, with the random and centre baselines last;
/// `progress` hears the name of each row as it is done.
pub fn leaderboard(
    model: &dyn Classifier,
    sample: &Sample,
    methods: &[Method],
    batch: usize,
    progress: &dyn Fn(&str),
) -> Result<Leaderboard> {
    let (n, _, h, w) = sample.batch.images.dims4()?;
    let device = sample.batch.images.device();
    let classes = sample.classes();
    let mut rows = Vec::with_capacity(methods.len() + 2);
    for &method in methods {
        let started = Instant::now();
        let maps = method_maps(model, &sample.batch.images, &classes, method, &sample.background, batch)?;
        let seconds = started.elapsed().as_secs_f64();
        let [pointing, energy, deletion, insertion] = score(model, sample, &maps, batch)?;
        rows.push(Entry {
            name: method.name().into(),
            baseline: false,
            pointing,
            energy,
            deletion,
            insertion,
            seconds,
        });
        progress(method.name());
    }
    for name in ["random", "centre"] {
        let started = Instant::now();
        let maps = match name {
            "random" => random_maps(n, (h, w), RANDOM_MAP_SEED, device)?,
            _ => centre_maps(n, (h, w), device)?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let [pointing, energy, deletion, insertion] = score(model, sample, &maps, batch)?;
        rows.push(Entry { name: name.into(), baseline: true, pointing, energy, deletion, insertion, seconds });
        progress(name);
    }
    let predicted = gaze_core::Target::top_class().resolve(&model.forward(&sample.batch.images)?)?;
    let correct = predicted.iter().zip(&sample.batch.labels).filter(|(p, l)| p.first() == Some(l)).count();
    Ok(Leaderboard { seed: sample.seed, images: n, accuracy: correct as f32 / n as f32, rows, sanity: Vec::new() })
}

/// The cascading-randomisation sanity check of `method` on `sample`: the layers of
/// [`SANITY_LAYERS`] redrawn one more at a time, the classes fixed at the labels.
pub fn sanity(model: &DemoCnn, sample: &Sample, method: Method, batch: usize) -> Result<Sanity> {
    let device = model.device().clone();
    let weights: HashMap<String, Tensor> = candle_core::safetensors::load_buffer(DEMO_WEIGHTS, &device)?;
    let classes = sample.classes();
    let layers: Vec<String> = SANITY_LAYERS.iter().map(|s| s.to_string()).collect();
    let config = model.config().clone();
    let report = sanity_check(&layers, Randomization::Cascading, |randomised| {
        let maps = if randomised.is_empty() {
            method_maps(model, &sample.batch.images, &classes, method, &sample.background, batch)
        } else {
            let tensors = randomize_weights(&weights, randomised, 0)?;
            let random = DemoCnn::new(config.clone(), VarBuilder::from_tensors(tensors, DType::F32, &device))?;
            method_maps(&random, &sample.batch.images, &classes, method, &sample.background, batch)
        };
        maps.map_err(|e| gaze_core::Error::Msg(format!("{e:#}")))
    })
    .with_context(|| format!("the sanity check of {}", method.name()))?;
    let spearman_abs: Vec<f32> = report.steps.iter().map(|s| s.spearman_abs.mean()).collect();
    let last = report.steps.last().context("a sanity check has steps")?;
    let last_abs = spearman_abs.last().copied().unwrap_or(0.0);
    Ok(Sanity {
        name: method.name().into(),
        spearman_last: last.spearman.mean(),
        ssim_last: last.ssim.mean(),
        insensitive: last_abs >= INSENSITIVE_AT,
        spearman_abs,
    })
}

impl Leaderboard {
    /// The leaderboard as Markdown: a table of the methods and baselines, and the sanity checks'
    /// table when they ran.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} images of the shapes data set (seed {}); the demo model classifies {:.1}% of them correctly.\n",
            self.images,
            self.seed,
            100.0 * self.accuracy
        );
        s.push_str(
            "| method | pointing game ↑ | energy pointing game ↑ | deletion AUC ↓ | insertion AUC ↑ | seconds |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let name = if r.baseline { format!("*{} map (baseline)*", r.name) } else { format!("`{}`", r.name) };
            let _ = writeln!(
                s,
                "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
                r.pointing, r.energy, r.deletion, r.insertion, r.seconds
            );
        }
        if !self.sanity.is_empty() {
            s.push_str("\nCascading randomisation (mean Spearman correlation of absolute maps with the trained model's, after randomising ");
            s.push_str(
                &SANITY_LAYERS
                    .iter()
                    .enumerate()
                    .map(|(i, _)| SANITY_LAYERS[..=i].join("+"))
                    .collect::<Vec<_>>()
                    .join(", then "),
            );
            s.push_str("):\n\n| method | ");
            s.push_str(&SANITY_LAYERS.map(|l| format!("…{l}")).join(" | "));
            s.push_str(" | signed ρ, all random | SSIM, all random | verdict |\n|---|");
            s.push_str(&"---:|".repeat(SANITY_LAYERS.len() + 2));
            s.push_str("---|\n");
            for c in &self.sanity {
                let steps: Vec<String> = c.spearman_abs.iter().map(|v| format!("{v:.3}")).collect();
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {:.3} | {:.3} | {} |",
                    c.name,
                    steps.join(" | "),
                    c.spearman_last,
                    c.ssim_last,
                    if c.insensitive { "**insensitive**" } else { "changes" }
                );
            }
        }
        s
    }
}
