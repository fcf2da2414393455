//! `gaze explain`: runs one attribution method on images or a tensor file and writes its pictures,
//! optionally the raw maps, and a JSON summary.
//!
//! Each method family has one file here that turns the command-line options into the library's
//! configuration and says how its maps are drawn (`Explanation`); this module owns everything they
//! share: targets, the output folder, the raw file, the summary.
//! Adding a method: parse its name in [`Method`], add its file, and list the options it takes.

mod activations;
mod cam;
mod expected;
mod gradient;
mod integrated;
mod options;
mod output;
mod perturbation;
mod picture;
mod smoothgrad;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args as ClapArgs;
use gaze_core::{Attribution, Score, Target};
use serde::Serialize;

use crate::input::{file_stem, image_files, read_batch, Batch};
use crate::model::ModelArgs;
use crate::UsageError;
pub use options::MethodOptions;
pub use output::output_error;
use output::OutputDir;
pub use picture::{display_size, Picture};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The method: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, scorecam,
    /// ablationcam, saliency, gradient-x-input, guided-backprop, deconvnet, guided-gradcam.
    #[arg(long)]
    pub method: String,
    /// The layer(s) to explain at (CAM methods; repeat for several). Default: the model's last
    /// convolutional block.
    #[arg(long = "layer", value_name = "NAME")]
    pub layers: Vec<String>,
    /// Explain these classes for every image (comma-separated indices).
    #[arg(long, value_delimiter = ',', conflicts_with = "top", value_parser = parse_class, allow_negative_numbers = true)]
    pub target: Vec<usize>,
    /// Explain the K highest outputs of each image.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Which output the class indexes: logit (default) or probability.
    #[arg(long, default_value = "logit")]
    pub score: String,
    #[command(flatten)]
    pub options: MethodOptions,
    /// The folder to write into (created if needed).
    #[arg(long, default_value = "gaze-out")]
    pub out: PathBuf,
    /// Also write the maps before any display step to DIR/attributions.safetensors.
    #[arg(long)]
    pub raw: bool,
    /// Replace files that already exist (without it, an existing output is an error).
    #[arg(long)]
    pub overwrite: bool,
    /// Print a JSON summary of what was written.
    #[arg(long)]
    pub json: bool,
    /// A safetensors file with a tensor `input` [N, 3, H, W], already preprocessed.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Image files (PNG or JPEG), or folders of them.
    pub images: Vec<PathBuf>,
}

/// The methods `gaze explain` runs, by family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Cam(gaze_cam::CamMethod),
    Gradient(gaze_saliency::GradientKind),
    GuidedGradCam,
    SmoothGrad,
    IntegratedGradients,
    ExpectedGradients,
    Occlusion,
    Rise,
    Activations,
}

impl Method {
    pub const NAMES: [&'static str; 19] = [
        "gradcam",
        "gradcam++",
        "xgradcam",
        "hirescam",
        "layercam",
        "eigencam",
        "scorecam",
        "ablationcam",
        "saliency",
        "gradient-x-input",
        "guided-backprop",
        "deconvnet",
        "guided-gradcam",
        "smoothgrad",
        "integrated-gradients",
        "expected-gradients",
        "occlusion",
        "rise",
        "activations",
    ];

    pub fn parse(name: &str) -> Result<Self> {
        let other = match name {
            "guided-gradcam" => Some(Method::GuidedGradCam),
            "smoothgrad" => Some(Method::SmoothGrad),
            "integrated-gradients" => Some(Method::IntegratedGradients),
            "expected-gradients" => Some(Method::ExpectedGradients),
            "occlusion" => Some(Method::Occlusion),
            "rise" => Some(Method::Rise),
            "activations" => Some(Method::Activations),
            _ => None,
        };
        if let Some(m) = other {
            return Ok(m);
        }
        if let Ok(m) = gaze_cam::CamMethod::parse(name) {
            return Ok(Method::Cam(m));
        }
        if let Ok(k) = gaze_saliency::GradientKind::parse(name) {
            return Ok(Method::Gradient(k));
        }
        Err(UsageError(format!("unknown method `{name}`; valid methods: {}", Self::NAMES.join(", "))).into())
    }

    /// Whether the method runs at a layer, the model's default one when none is named.
    pub fn takes_default_layer(self) -> bool {
        matches!(self, Method::Cam(_) | Method::GuidedGradCam | Method::Activations)
    }

    /// Whether `--layer` means something to the method: the layer methods, and expected
    /// gradients (explained at a layer's input when one is named).
    pub fn takes_layer(self) -> bool {
        self.takes_default_layer() || self == Method::ExpectedGradients
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Cam(m) => m.name(),
            Method::Gradient(k) => k.name(),
            Method::GuidedGradCam => "guided-gradcam",
            Method::SmoothGrad => "smoothgrad",
            Method::IntegratedGradients => "integrated-gradients",
            Method::ExpectedGradients => "expected-gradients",
            Method::Occlusion => "occlusion",
            Method::Rise => "rise",
            Method::Activations => "activations",
        }
    }
}

/// What a method family hands back: the maps and how to draw them.
pub struct Explanation {
    pub attribution: Attribution,
    pub picture: Picture,
}

/// Everything a method family needs to run.
pub struct Context<'a> {
    pub model: &'a dyn gaze_models::Classifier,
    pub batch: &'a Batch,
    pub target: Target,
    pub layers: Vec<String>,
    pub options: &'a MethodOptions,
}

#[derive(Serialize)]
struct Summary {
    method: String,
    model: String,
    layers: Vec<String>,
    score: String,
    files: Vec<String>,
    maps: Vec<MapSummary>,
    seconds: f64,
}

#[derive(Serialize)]
struct MapSummary {
    image: String,
    class: usize,
    label: Option<String>,
    score: Option<f32>,
    file: String,
}

/// The most images `gaze explain` reads, explains and draws at once.
///
/// A folder of thousands of images runs in chunks of this many, so resident memory stays flat
/// however many images are given: only the raw maps (with `--raw`) and the summary are kept across
/// chunks.
/// Every method gives the same maps for a batch as for its images one by one, so chunking does not
/// change the results.
pub const IMAGES_PER_CHUNK: usize = 32;

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let method = Method::parse(&args.method)?;
    args.options.check_applies_to(method)?;
    if !args.layers.is_empty() && !method.takes_layer() {
        return Err(UsageError(format!(
            "--layer does not apply to {}; the methods that take a layer: the CAMs, guided-gradcam, activations and expected-gradients",
            method.name()
        ))
        .into());
    }
    check_distinct_classes(&args.target)?;
    if method == Method::Activations {
        let asked = args.top.unwrap_or(args.target.len().max(1));
        if asked > 1 {
            return Err(UsageError(format!(
                "activations draws one picture per image (a layer's maps do not depend on the class), but {asked} targets were asked for; give at most one --target or --top 1"
            ))
            .into());
        }
    }
    let model = args.model.load()?;
    let target = target_of(&args)?;
    let layers = if args.layers.is_empty() && method.takes_default_layer() {
        model.default_layer().into_iter().collect()
    } else {
        args.layers.iter().map(|l| model.resolve_layer(l)).collect::<gaze_core::Result<Vec<_>>>()?
    };
    check_distinct_layers(&args.layers, &layers)?;
    // A tensor file is one chunk (it is already one tensor); image files are read chunk by chunk.
    let images = image_files(&args.images)?;
    let stems = unique_stems(&images.iter().map(|p| file_stem(p)).collect::<Vec<_>>());
    let chunks: Vec<&[PathBuf]> = if images.is_empty() { vec![&[]] } else { images.chunks(IMAGES_PER_CHUNK).collect() };
    let first = read_batch(model.as_ref(), chunks[0], args.input.as_deref())?;
    // Nothing appears under the output folder's names before every map is computed and drawn.
    let mut out = OutputDir::create(&args.out, args.overwrite)?;

    let mut maps = Vec::new();
    let mut raw: Vec<Attribution> = Vec::new();
    let mut raw_layers: Vec<Vec<(String, Attribution)>> = Vec::new();
    let mut meta = None;
    let mut next = Some(first);
    for (index, images) in chunks.iter().enumerate() {
        let mut batch = match next.take() {
            Some(batch) => batch,
            None => read_batch(model.as_ref(), images, None)?,
        };
        if !images.is_empty() {
            let done = index * IMAGES_PER_CHUNK;
            batch.stems = stems[done..done + images.len()].to_vec();
        }
        let ctx = Context {
            model: model.as_ref(),
            batch: &batch,
            target: target.clone(),
            layers: layers.clone(),
            options: &args.options,
        };
        let done = index * IMAGES_PER_CHUNK;
        let total = if images.is_empty() { batch.stems.len() } else { images.len() };
        let running = crate::progress::spinner(format!(
            "{} on {} image(s) ({}..{} of {total})",
            method.name(),
            batch.stems.len(),
            done + 1,
            done + batch.stems.len()
        ));
        let (explanation, per_layer) = match method {
            Method::Cam(m) => cam::explain_layers(&ctx, m)?,
            _ => (explain_with(&ctx, method)?, None),
        };
        running.finish_and_clear();
        let mut attribution = explanation.attribution;
        attribution.meta = attribution.meta.clone().with_option("model", model.kind().name());
        let scores: Option<Vec<Vec<f32>>> = match &attribution.scores {
            Some(s) => Some(s.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?),
            None => None,
        };
        let pictures = explanation.picture.render(&attribution, &batch, model.as_ref())?;
        for (n, row) in pictures.into_iter().enumerate() {
            for (t, image) in row.into_iter().enumerate() {
                let class = attribution.targets[n][t];
                let name = format!("{}.{}.{}.png", batch.stems[n], method.name(), class);
                let path = out.write_png(&name, &image)?;
                maps.push(MapSummary {
                    image: batch.stems[n].clone(),
                    class,
                    label: model.label(class),
                    score: scores.as_ref().map(|s| s[n][t]),
                    file: path.display().to_string(),
                });
            }
        }
        meta = Some(attribution.meta.clone());
        if args.raw {
            match per_layer {
                Some(layers) => raw_layers.push(layers),
                None => raw.push(attribution),
            }
        }
    }
    let meta = meta.context("no images were explained")?;
    if args.raw {
        if raw_layers.is_empty() {
            out.write_raw("attributions.safetensors", &concat(raw)?, method.name())
                .context("writing the raw attributions")?;
        } else {
            // Layers whose maps differ in size: one file per layer (docs/cli.md).
            for (l, layer) in layers.iter().enumerate() {
                let parts = raw_layers
                    .iter()
                    .map(|chunk| chunk.get(l).map(|(_, a)| a.clone()).context("a layer's maps are missing"))
                    .collect::<Result<Vec<_>>>()?;
                let mut attribution = concat(parts)?;
                attribution.meta = attribution.meta.clone().with_option("model", model.kind().name());
                out.write_raw(&format!("attributions.{layer}.safetensors"), &attribution, method.name())
                    .with_context(|| format!("writing the raw attributions of layer {layer}"))?;
            }
        }
    }
    let files = out.commit()?.iter().map(|p| p.display().to_string()).collect();
    let summary = Summary {
        method: method.name().into(),
        model: model.kind().name().into(),
        layers: meta.layers.clone(),
        score: meta.score.clone(),
        files,
        maps,
        seconds: started.elapsed().as_secs_f64(),
    };
    // The files are written: a reader that has gone away (`| head`) loses only the listing.
    if args.json {
        crate::write_stdout(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
    } else {
        crate::write_stdout(&summary.files.iter().map(|f| format!("wrote {f}\n")).collect::<String>())?;
    }
    Ok(())
}

/// A `--target` value: a class index.
pub(crate) fn parse_class(text: &str) -> std::result::Result<usize, String> {
    text.trim().parse::<usize>().map_err(|_| {
        format!("`{text}` is not a class index; expected whole numbers from 0, comma-separated (e.g. 281 or 281,285)")
    })
}

/// An error naming a class that `--target` lists twice (its maps would share one file name).
pub(crate) fn check_distinct_classes(classes: &[usize]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    match classes.iter().find(|c| !seen.insert(**c)) {
        Some(c) => Err(UsageError(format!("--target lists class {c} twice; list each class once")).into()),
        None => Ok(()),
    }
}

/// An error naming a layer that `--layer` gives twice, directly or through an alias.
fn check_distinct_layers(asked: &[String], resolved: &[String]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for (name, layer) in asked.iter().zip(resolved) {
        if let Some(first) = seen.insert(layer.as_str(), name.as_str()) {
            let same =
                if first == name { String::new() } else { format!(" (`{first}` and `{name}` name the same layer)") };
            return Err(UsageError(format!("--layer names `{layer}` twice{same}; name each layer once")).into());
        }
    }
    Ok(())
}

/// The file stems, made unique by a suffix `-2`, `-3`, ... where two images share one (the same
/// file name in two folders), so that no picture replaces another.
pub(crate) fn unique_stems(stems: &[String]) -> Vec<String> {
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(stems.len());
    let mut out = Vec::with_capacity(stems.len());
    for stem in stems {
        let mut name = stem.clone();
        let mut k = 2;
        while taken.contains(&name) {
            name = format!("{stem}-{k}");
            k += 1;
        }
        taken.insert(name.clone());
        out.push(name);
    }
    out
}

/// The maps of consecutive chunks as one attribution `[N, T, ...]`, with the first chunk's metadata.
fn concat(mut parts: Vec<Attribution>) -> Result<Attribution> {
    if parts.len() == 1 {
        return parts.pop().context("no maps to write");
    }
    let values = parts.iter().map(|a| a.values.clone()).collect::<Vec<_>>();
    let values = candle_core::Tensor::cat(&values, 0)?;
    let scores = match parts.iter().map(|a| a.scores.clone()).collect::<Option<Vec<_>>>() {
        Some(s) if !s.is_empty() => Some(candle_core::Tensor::cat(&s, 0)?),
        _ => None,
    };
    let targets = parts.iter().flat_map(|a| a.targets.iter().cloned()).collect();
    let meta = parts.into_iter().next().context("no maps to write")?.meta;
    Ok(Attribution { values, targets, scores, meta })
}

/// Runs `method` on the context: its maps and how to draw them.
/// `gaze explain` and `gaze report` both call it.
pub fn explain_with(ctx: &Context, method: Method) -> Result<Explanation> {
    Ok(match method {
        Method::Cam(m) => cam::explain(ctx, m)?,
        Method::Gradient(k) => gradient::explain(ctx, k)?,
        Method::GuidedGradCam => gradient::guided_gradcam(ctx)?,
        Method::SmoothGrad => smoothgrad::explain(ctx)?,
        Method::IntegratedGradients => integrated::explain(ctx)?,
        Method::ExpectedGradients => expected::explain(ctx)?,
        Method::Occlusion => perturbation::occlusion(ctx)?,
        Method::Rise => perturbation::rise(ctx)?,
        Method::Activations => activations::explain(ctx)?,
    })
}

fn target_of(args: &Args) -> Result<Target> {
    let score = Score::parse(&args.score)?;
    let target = match (args.top, args.target.is_empty()) {
        (Some(k), _) => Target::top(k),
        (None, false) => Target::classes(args.target.iter().copied()),
        (None, true) => Target::top_class(),
    };
    Ok(target.with_score(score))
}
