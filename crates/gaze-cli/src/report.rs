//! `gaze report`: several methods on several images, side by side, in one self-contained HTML page.
//!
//! The page `DIR/index.html` has a row per image and a column per method and target: the image with
//! the model's top predictions first, then each method's picture of each explained class.
//! Below the grid come the colour scales (colour bars drawn by `gaze-render`) and a table of the
//! methods with what each shows, its settings and the seconds it took.
//! Every picture is a PNG file beside the page; the page loads nothing else (a content security
//! policy forbids any other source), so it works offline and can be copied as a folder.
//!
//! Each method runs through [`explain_with`](crate::explain::explain_with), exactly as in
//! `gaze explain`, once per image so that progress shows per method and image; a batch gives the
//! same maps as its images one by one, so nothing changes but the bar.
//! The targets are fixed once for all methods from one forward pass, so every column explains the
//! same classes.
//! Every method runs with its defaults; expected gradients take their background from
//! `--background`, or else from the report's own images.
//! Nothing is written until every method has run, and a failure while writing removes what the run
//! wrote.
//!
//! Pictures of a small input are drawn at a readable size: the base image is resized from the
//! original file to the [`display_size`] of the model input (the demo model's 64×64 input is drawn at
//! 256×256) through the same resize and crop as the model's preprocessing, and the maps are
//! enlarged over it as [`Picture::render`](crate::explain::Picture::render) documents.
//! At a display factor of one the base image is exactly the model's input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::{DType, Tensor};
use clap::Args as ClapArgs;
use gaze_core::{Attribution, Score, Target, TargetSpec};
use gaze_engine::ops::softmax_last_dim;
use gaze_engine::scored_outputs;
use gaze_models::{load_image, resize_pil, Classifier, Filter, Preprocess};
use gaze_render::{colorbar, save_png, write_atomic, Colorbar, FigureStyle, RgbImage, RgbaImage, WriteOptions};

use crate::explain::{
    check_distinct_classes, display_size, explain_with, unique_stems, Context, Explanation, Method, MethodOptions,
};
use crate::input::{read_batch, Batch};
use crate::model::ModelArgs;
use crate::UsageError;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The methods to compare, comma-separated (the names `gaze explain --method` takes).
    #[arg(long, value_delimiter = ',', required = true, value_name = "A,B,...")]
    pub methods: Vec<String>,
    /// Explain these classes for every image (comma-separated indices).
    #[arg(long, value_delimiter = ',', conflicts_with = "top", value_parser = crate::explain::parse_class, allow_negative_numbers = true)]
    pub target: Vec<usize>,
    /// Explain the K highest outputs of each image.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Which output the class indexes: logit (default) or probability.
    #[arg(long, default_value = "logit")]
    pub score: String,
    /// How many of the model's top classes to list under each image.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub predictions: usize,
    /// Expected gradients: the background images (files or folders); default: the report's own
    /// images, as SHAP's notebook draws its background from the images it explains.
    #[arg(long, value_name = "FILE")]
    pub background: Vec<PathBuf>,
    /// The folder to write the page and its pictures into (created if needed).
    #[arg(long, default_value = "gaze-report")]
    pub out: PathBuf,
    /// Replace files that already exist (without it, an existing output is an error).
    #[arg(long)]
    pub overwrite: bool,
    /// Image files (PNG or JPEG).
    pub images: Vec<PathBuf>,
}

/// One image's row: its files, the model's top classes, and the classes every method explains.
struct Row {
    stem: String,
    /// The picture of the image at display size, as a file name in the folder.
    file: String,
    size: (u32, u32),
    /// A line under the image (the demo's ground truth).
    note: Option<String>,
    predictions: Vec<Prediction>,
    targets: Vec<usize>,
}

struct Prediction {
    class: usize,
    label: String,
    probability: f32,
}

/// One method's results: its settings, time, colour scale and pictures `[image][target]`.
struct MethodResult {
    method: Method,
    settings: BTreeMap<String, String>,
    seconds: f64,
    scale: Option<(String, Colorbar)>,
    /// The classes of the columns (a method may explain fewer targets than asked: activations
    /// show one picture per image).
    columns: usize,
    cells: Vec<Vec<Cell>>,
}

struct Cell {
    file: String,
    picture: RgbaImage,
    class: usize,
    score: Option<f32>,
}

pub fn run(args: Args) -> Result<()> {
    let methods = parse_methods(&args.methods)?;
    if args.images.is_empty() {
        return Err(UsageError("give at least one IMAGE to report on".into()).into());
    }
    if args.predictions == 0 {
        return Err(UsageError("--predictions must be at least 1".into()).into());
    }
    check_distinct_classes(&args.target)?;
    let score = Score::parse(&args.score)?;
    let model = args.model.load()?;
    let model = model.as_ref();
    let batch = read_batch(model, &args.images, None)?;
    let stems = unique_stems(&batch.stems);
    let mut images = Vec::with_capacity(stems.len());
    for (n, (path, small)) in args.images.iter().zip(&batch.images).enumerate() {
        images.push(ReportImage {
            stem: stems[n].clone(),
            input: batch.input.get(n)?,
            display: display_base(path, &model.preprocess(), small)?,
            note: None,
        });
    }
    let background = if args.background.is_empty() { args.images.clone() } else { args.background.clone() };
    let options = |method: Method| options_for(method, &background);
    let spec = ReportSpec {
        model,
        weights: args.model.weights.as_deref(),
        images,
        methods,
        target: target_of(&args, score),
        predictions: args.predictions,
        options: &options,
        explain: &explain_with,
        sections: String::new(),
        command: "gaze report",
        out: args.out.clone(),
        overwrite: args.overwrite,
    };
    let index = write_report(&spec)?;
    crate::write_stdout(&format!("wrote {}\n", index.display()))?;
    Ok(())
}

/// One image of a report, already read: what [`write_report`] takes, from files (`gaze report`) or
/// drawn in memory (`gaze demo`).
pub struct ReportImage {
    /// The name of the image's row and the stem of its pictures' files (unique in the report).
    pub stem: String,
    /// The model's input `[3, H, W]`, preprocessed.
    pub input: Tensor,
    /// The image as the page shows it, at the [`display_size`] of the model input.
    pub display: RgbImage,
    /// A line of text under the image (the ground truth of a shapes image), if any.
    pub note: Option<String>,
}

/// How a method runs on one image of a report: [`explain_with`], or a caller's own for methods
/// that need inputs the options cannot name (the demo's in-memory background).
pub type ExplainFn<'a> = dyn Fn(&Context, Method) -> Result<Explanation> + 'a;

/// Everything a report needs: the model, the images, the methods and where to write.
pub struct ReportSpec<'a> {
    pub model: &'a dyn Classifier,
    /// The checkpoint file, for the page's header (`None` for embedded or cached weights).
    pub weights: Option<&'a Path>,
    pub images: Vec<ReportImage>,
    /// The methods, each once.
    pub methods: Vec<Method>,
    /// The classes every method explains, with the score they index.
    pub target: Target,
    /// How many of the model's top classes to list under each image (at least 1).
    pub predictions: usize,
    /// The options each method runs with.
    pub options: &'a dyn Fn(Method) -> MethodOptions,
    pub explain: &'a ExplainFn<'a>,
    /// HTML placed between the grid and the colour scales (the demo's leaderboard); empty for none.
    pub sections: String,
    /// The command named in the page's footer.
    pub command: &'a str,
    pub out: PathBuf,
    pub overwrite: bool,
}

/// Runs every method of `spec` on every image, then writes the pictures and `index.html` into
/// `spec.out` (created if needed); returns the page's path.
///
/// Nothing is written until every method has run; a file that exists is an error before anything
/// runs unless `spec.overwrite`, and a failure while writing removes what this call wrote.
pub fn write_report(spec: &ReportSpec) -> Result<PathBuf> {
    if spec.images.is_empty() {
        return Err(UsageError("give at least one IMAGE to report on".into()).into());
    }
    if spec.predictions == 0 {
        return Err(UsageError("--predictions must be at least 1".into()).into());
    }
    let model = spec.model;
    let methods = &spec.methods;
    let score = spec.target.score.clone();
    let inputs: Vec<Tensor> = spec.images.iter().map(|i| i.input.clone()).collect();
    let input = Tensor::stack(&inputs, 0)?;
    let displays: Vec<RgbImage> = spec.images.iter().map(|i| i.display.clone()).collect();

    // One forward pass gives the predictions and fixes the targets for every method.
    let logits = model.forward(&input)?;
    let target = &spec.target;
    let targets = target.resolve(&scored_outputs(&logits, &score)?)?;
    let probabilities = softmax_last_dim(&logits)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let top = Target::top(spec.predictions.min(model.num_classes())).resolve(&logits)?;
    let rows: Vec<Row> = spec
        .images
        .iter()
        .enumerate()
        .map(|(n, image)| Row {
            stem: image.stem.clone(),
            file: format!("{}.png", image.stem),
            size: displays[n].dimensions(),
            note: image.note.clone(),
            predictions: top[n]
                .iter()
                .map(|&c| Prediction { class: c, label: label(model, c), probability: probabilities[n][c] })
                .collect(),
            targets: targets[n].clone(),
        })
        .collect();

    let dir = &spec.out;
    // A folder this call creates is removed again if the call fails (it is empty then).
    let mut created = CreatedDir((!dir.exists()).then(|| dir.clone()));
    std::fs::create_dir_all(dir).map_err(|source| gaze_core::Error::Io { path: dir.clone(), source })?;
    let opts = WriteOptions { overwrite: spec.overwrite };
    refuse_existing(dir, &rows, methods, opts)?;

    let steps = (methods.len() * rows.len()) as u64;
    let bar = crate::progress::bar(steps, spec.command.trim_start_matches("gaze "));
    let mut results = Vec::with_capacity(methods.len());
    for &method in methods {
        let mut result = MethodResult {
            method,
            settings: BTreeMap::new(),
            seconds: 0.0,
            scale: None,
            columns: 0,
            cells: Vec::with_capacity(rows.len()),
        };
        let options = (spec.options)(method);
        for (n, row) in rows.iter().enumerate() {
            bar.set_message(format!("{} · {}", method.name(), row.stem));
            let started = Instant::now();
            let one = Batch {
                input: input.narrow(0, n, 1)?,
                stems: vec![row.stem.clone()],
                images: vec![displays[n].clone()],
            };
            let ctx = Context {
                model,
                batch: &one,
                target: Target::per_image_lists(vec![row.targets.clone()]).with_score(score.clone()),
                layers: if method.takes_default_layer() { model.default_layer().into_iter().collect() } else { vec![] },
                options: &options,
            };
            let explanation =
                (spec.explain)(&ctx, method).with_context(|| format!("{} on {}", method.name(), row.stem))?;
            let pictures = explanation.picture.render(&explanation.attribution, &one, model)?;
            result.seconds += started.elapsed().as_secs_f64();
            if n == 0 {
                result.settings = settings(&explanation.attribution);
                result.scale = explanation.picture.scale();
                result.columns = explanation.attribution.targets_per_image();
            }
            result.cells.push(cells(method, row, &explanation.attribution, pictures)?);
            bar.inc(1);
        }
        results.push(result);
    }
    bar.finish_and_clear();

    let mut scales: Vec<(String, String, RgbaImage)> = Vec::new();
    for result in &results {
        if let Some((name, bar)) = &result.scale {
            if scales.iter().any(|(n, _, _)| n == name) {
                continue;
            }
            let picture = colorbar(bar, 400, &FigureStyle::default())?;
            scales.push((name.clone(), format!("colorbar.{name}.png"), picture));
        }
    }
    let page = Page {
        model,
        weights: spec.weights,
        target,
        rows: &rows,
        results: &results,
        sections: &spec.sections,
        command: spec.command,
    };
    let html = page.html(&scales);

    // Everything is computed: only now are files written, the page last, and a failure removes
    // what this run wrote, so an error never leaves half a report.
    let mut written = Vec::new();
    let outcome = write_all(dir, opts, &rows, &displays, &results, &scales, &html, &mut written);
    if outcome.is_err() {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
    }
    outcome.map_err(crate::explain::output_error)?;
    created.0 = None;
    Ok(dir.join("index.html"))
}

/// The output folder a report created, removed on drop while it holds a path (and is empty).
struct CreatedDir(Option<PathBuf>);

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// An error when `dir/index.html` exists and `overwrite` is off: the check a command that computes
/// for long before it writes (`gaze demo`) makes first.
pub fn refuse_existing_page(dir: &Path, overwrite: bool) -> Result<()> {
    let index = dir.join("index.html");
    if !overwrite && index.exists() {
        return Err(UsageError(format!(
            "{} already exists; pass --overwrite to replace the report, or choose another --out",
            index.display()
        ))
        .into());
    }
    Ok(())
}

/// The method options the report runs `method` with: the defaults, and for expected gradients the
/// background (`--background`, or the report's own images).
fn options_for(method: Method, background: &[PathBuf]) -> MethodOptions {
    let mut options = MethodOptions::default();
    if method.name() == "expected-gradients" {
        options.background = background.to_vec();
    }
    options
}

/// Writes the pictures, the colour bars and then the page, recording each file written.
#[allow(clippy::too_many_arguments)]
fn write_all(
    dir: &Path,
    opts: WriteOptions,
    rows: &[Row],
    displays: &[RgbImage],
    results: &[MethodResult],
    scales: &[(String, String, RgbaImage)],
    html: &str,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    for (row, display) in rows.iter().zip(displays) {
        let path = dir.join(&row.file);
        save_png(&path, display, opts)?;
        written.push(path);
    }
    for cell in results.iter().flat_map(|r| r.cells.iter().flatten()) {
        let path = dir.join(&cell.file);
        save_png(&path, &cell.picture, opts)?;
        written.push(path);
    }
    for (_, file, picture) in scales {
        let path = dir.join(file);
        save_png(&path, picture, opts)?;
        written.push(path);
    }
    let index = dir.join("index.html");
    write_atomic(&index, opts, |w| std::io::Write::write_all(w, html.as_bytes()))?;
    written.push(index);
    Ok(())
}

/// The methods named on the command line, each once.
pub(crate) fn parse_methods(names: &[String]) -> Result<Vec<Method>> {
    let mut methods: Vec<Method> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            return Err(UsageError(format!(
                "--methods has an empty name; give method names separated by commas, from: {}",
                Method::NAMES.join(", ")
            ))
            .into());
        }
        let method = Method::parse(name)?;
        if methods.contains(&method) {
            return Err(UsageError(format!("--methods names `{name}` twice; list each method once")).into());
        }
        methods.push(method);
    }
    Ok(methods)
}

fn target_of(args: &Args, score: Score) -> Target {
    let target = match (args.top, args.target.is_empty()) {
        (Some(k), _) => Target::top(k),
        (None, false) => Target::classes(args.target.iter().copied()),
        (None, true) => Target::top_class(),
    };
    target.with_score(score)
}

/// The image at the display size of the model's input, resized from the original file through the
/// same geometry as the model's preprocessing (Pillow's bilinear filter); the model's own input
/// when no enlargement is needed.
fn display_base(path: &Path, pre: &Preprocess, small: &RgbImage) -> Result<RgbImage> {
    let (h, w) = (small.height() as usize, small.width() as usize);
    let (dh, dw) = display_size((h, w));
    if (dh, dw) == (h, w) {
        return Ok(small.clone());
    }
    let original = load_image(path)?;
    let k = (dh / h) as u32;
    Ok(match pre {
        Preprocess::Torchvision { resize, crop, mean, std } => {
            Preprocess::Torchvision { resize: resize * k, crop: crop * k, mean: *mean, std: *std }.resize(&original)
        }
        Preprocess::Caffe { .. } | Preprocess::Tf { .. } => {
            resize_pil(&original, dw as u32, dh as u32, Filter::Bilinear)
        }
    })
}

fn label(model: &dyn Classifier, class: usize) -> String {
    model.label(class).unwrap_or_else(|| format!("class {class}"))
}

/// A picture's file name: `<stem>.<method>.<class>.png`, as `gaze explain` names it.
fn picture_name(stem: &str, method: Method, class: usize) -> String {
    format!("{stem}.{}.{class}.png", method.name())
}

/// An error, before anything runs, when a file the report would write exists and `--overwrite` is
/// absent.
fn refuse_existing(dir: &Path, rows: &[Row], methods: &[Method], opts: WriteOptions) -> Result<()> {
    if opts.overwrite {
        return Ok(());
    }
    let mut names = vec!["index.html".to_string()];
    for row in rows {
        names.push(row.file.clone());
        for &method in methods {
            names.extend(row.targets.iter().map(|&c| picture_name(&row.stem, method, c)));
        }
    }
    if let Some(name) = names.iter().find(|n| dir.join(n).exists()) {
        return Err(UsageError(format!(
            "{} already exists; pass --overwrite to replace the report, or choose another --out",
            dir.join(name).display()
        ))
        .into());
    }
    Ok(())
}

fn settings(attribution: &Attribution) -> BTreeMap<String, String> {
    let meta = &attribution.meta;
    let mut settings = meta.options.clone();
    if !meta.layers.is_empty() {
        settings.insert("layer".into(), meta.layers.join(", "));
    }
    settings.insert("score".into(), meta.score.clone());
    settings
}

/// The cells of one image's row for `method`: one picture per target, named as `gaze explain`
/// names them.
fn cells(method: Method, row: &Row, attribution: &Attribution, pictures: Vec<Vec<RgbaImage>>) -> Result<Vec<Cell>> {
    let scores: Option<Vec<f32>> = match &attribution.scores {
        Some(s) => Some(s.to_dtype(DType::F32)?.get(0)?.to_vec1::<f32>()?),
        None => None,
    };
    let mut cells = Vec::new();
    for (t, picture) in pictures.into_iter().next().unwrap_or_default().into_iter().enumerate() {
        let class = attribution.targets[0][t];
        let file = picture_name(&row.stem, method, class);
        cells.push(Cell { file, picture, class, score: scores.as_ref().and_then(|s| s.get(t).copied()) });
    }
    Ok(cells)
}

/// What the page shows, ready to write.
struct Page<'a> {
    model: &'a dyn Classifier,
    weights: Option<&'a Path>,
    target: &'a Target,
    rows: &'a [Row],
    results: &'a [MethodResult],
    /// HTML between the grid and the colour scales.
    sections: &'a str,
    /// The command named in the footer.
    command: &'a str,
}

impl Page<'_> {
    fn html(&self, scales: &[(String, String, RgbaImage)]) -> String {
        let model = self.model;
        let [c, h, w] = model.input_shape();
        let weights = match self.weights {
            Some(path) => format!("weights {}", path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()),
            None if model.kind().has_embedded_weights() => "embedded weights".to_string(),
            None => "pretrained ImageNet weights".to_string(),
        };
        let method_names: Vec<&str> = self.results.iter().map(|r| display_name(r.method)).collect();
        let mut s = String::new();
        s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        s.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file: data:; \
             style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n",
        );
        s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        let _ = writeln!(
            s,
            "<title>gaze report: {} on the {} model</title>",
            esc(&method_names.join(", ")),
            esc(model.kind().name())
        );
        let _ = writeln!(s, "<style>{STYLE}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>");

        let _ = writeln!(s, "<header>\n<h1>What the model looks at</h1>");
        let _ = writeln!(
            s,
            "<p class=\"sub\">Model <b>{}</b> ({weights}; input {c}×{h}×{w}; {} classes) · {} image{} · explaining {} on the {} · {}</p>\n</header>",
            esc(model.kind().name()),
            model.num_classes(),
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" },
            esc(&describe_target(self.target, model)),
            esc(self.target.score.name()),
            esc(&method_names.join(", ")),
        );
        s.push_str(
            "<section class=\"intro\">\n<h2>How to read this page</h2>\n<p>Each row is one image. \
             The first column shows the image as the model sees it and the classes the model predicts, with their probabilities. \
             Each other column is an attribution method: a picture of which pixels it says the class depends on. \
             Warm or bright colours mark what the method finds important; the colour scales are below the table.</p>\n",
        );
        if model.kind().has_embedded_weights() && self.weights.is_none() {
            let labels: Vec<String> = (0..model.num_classes()).map(|c| label(model, c)).collect();
            let _ = writeln!(
                s,
                "<p class=\"note\">The {} model is a small CNN trained on synthetic pictures of {} shapes ({}). \
                 On photographs it can only answer with a shape, so its maps show how each method works rather than \
                 what an ImageNet classifier sees; <code>--model vgg16</code>, <code>resnet50</code> or \
                 <code>xception</code> explain ImageNet's classes (<code>cargo xtask fetch-weights NAME</code> \
                 downloads their weights).</p>",
                esc(model.kind().name()),
                labels.len(),
                esc(&labels.join(", "))
            );
        }
        s.push_str("</section>\n");

        // The grid: a row per image, a column per method and target.
        s.push_str("<div class=\"scroll\">\n<table class=\"grid\">\n<thead><tr><th>Image and prediction</th>");
        for r in self.results {
            for t in 0..r.columns {
                let _ = write!(
                    s,
                    "<th>{}<span class=\"what\">{}</span></th>",
                    esc(display_name(r.method)),
                    esc(&column_title(self.target, self.rows, t, model))
                );
            }
        }
        s.push_str("</tr></thead>\n<tbody>\n");
        for (n, row) in self.rows.iter().enumerate() {
            s.push_str("<tr>");
            let _ = write!(
                s,
                "<td class=\"image\"><figure><img src=\"{}\" width=\"{}\" height=\"{}\" alt=\"{}\"><figcaption><b>{}</b><ol class=\"predictions\">",
                url(&row.file),
                row.size.0,
                row.size.1,
                esc(&row.stem),
                esc(&row.stem)
            );
            for p in &row.predictions {
                let percent = 100.0 * p.probability;
                let _ = write!(
                    s,
                    "<li><span class=\"label\">{} <span class=\"class\">({})</span></span><span class=\"meter\"><span style=\"width:{:.1}%\"></span></span><span class=\"p\">{:.1}%</span></li>",
                    esc(&p.label),
                    p.class,
                    percent.clamp(0.0, 100.0),
                    percent
                );
            }
            s.push_str("</ol>");
            if let Some(note) = &row.note {
                let _ = write!(s, "<p class=\"truth\">{}</p>", esc(note));
            }
            s.push_str("</figcaption></figure></td>");
            for r in self.results {
                for t in 0..r.columns {
                    match r.cells.get(n).and_then(|cells| cells.get(t)) {
                        Some(cell) => {
                            let alt =
                                format!("{} of {} for {}", display_name(r.method), row.stem, label(model, cell.class));
                            let score = cell
                                .score
                                .map(|v| format!(" · {} {:.3}", self.target.score.name(), v))
                                .unwrap_or_default();
                            let _ = write!(
                                s,
                                "<td><figure><img src=\"{}\" width=\"{}\" height=\"{}\" alt=\"{}\"><figcaption>{} <span class=\"class\">({})</span>{}</figcaption></figure></td>",
                                url(&cell.file),
                                cell.picture.width(),
                                cell.picture.height(),
                                esc(&alt),
                                esc(&label(model, cell.class)),
                                cell.class,
                                esc(&score)
                            );
                        }
                        None => s.push_str("<td></td>"),
                    }
                }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n</table>\n</div>\n");
        s.push_str(self.sections);

        // The colour scales.
        if !scales.is_empty() {
            s.push_str("<section class=\"legend\">\n<h2>Colour scales</h2>\n<div class=\"scales\">\n");
            for (name, file, picture) in scales {
                let (bw, bh) = picture.dimensions();
                let users: Vec<&str> = self
                    .results
                    .iter()
                    .filter(|r| r.scale.as_ref().is_some_and(|(n, _)| n == name))
                    .map(|r| display_name(r.method))
                    .collect();
                let _ = writeln!(
                    s,
                    "<figure><img src=\"{}\" width=\"{bw}\" height=\"{bh}\" alt=\"colour scale: {}\"><figcaption>{}</figcaption></figure>",
                    url(file),
                    esc(name),
                    esc(&users.join(", "))
                );
            }
            s.push_str("</div>\n</section>\n");
        }

        // The methods: what each shows, its settings and time.
        s.push_str("<section class=\"methods\">\n<h2>Methods</h2>\n<table>\n<thead><tr><th>method</th><th>what it shows</th><th>settings</th><th>time</th></tr></thead>\n<tbody>\n");
        for r in self.results {
            let settings: Vec<String> =
                r.settings.iter().map(|(k, v)| format!("<code>{}</code> {}", esc(k), esc(v))).collect();
            let _ = writeln!(
                s,
                "<tr><td><b>{}</b><br><code>{}</code></td><td>{}</td><td>{}</td><td class=\"time\">{:.2} s</td></tr>",
                esc(display_name(r.method)),
                esc(r.method.name()),
                esc(description(r.method)),
                settings.join("<br>"),
                r.seconds
            );
        }
        s.push_str("</tbody>\n</table>\n<p class=\"note\">Times are wall-clock seconds on this machine for all images, pictures included.</p>\n</section>\n");

        let _ = writeln!(
            s,
            "<footer>Made by <code>{}</code> {}. The page and its pictures need no network. \
             <span id=\"gaze-status\" data-images=\"-1\" data-images-loaded=\"-1\" data-errors=\"-1\"></span></footer>\n</body>\n</html>",
            esc(self.command),
            env!("CARGO_PKG_VERSION")
        );
        s
    }
}

/// What the columns explain, in words.
fn describe_target(target: &Target, model: &dyn Classifier) -> String {
    match &target.spec {
        TargetSpec::TopClass => "the top class of each image".into(),
        TargetSpec::Top(k) => format!("the top {k} classes of each image"),
        TargetSpec::Classes(classes) => {
            let names: Vec<String> = classes.iter().map(|&c| format!("{} ({c})", label(model, c))).collect();
            format!("class{} {}", if classes.len() == 1 { "" } else { "es" }, names.join(", "))
        }
        TargetSpec::PerImage(_) => "the classes given for each image".into(),
    }
}

/// The heading of a column: the class when every image explains the same one, its rank otherwise.
fn column_title(target: &Target, rows: &[Row], t: usize, model: &dyn Classifier) -> String {
    let classes: Vec<usize> = rows.iter().filter_map(|r| r.targets.get(t).copied()).collect();
    match (&target.spec, classes.first()) {
        (TargetSpec::Classes(_), Some(&c)) if classes.iter().all(|&x| x == c) => format!("{} ({c})", label(model, c)),
        (TargetSpec::TopClass, _) => "top class".into(),
        _ => format!("class ranked {}", t + 1),
    }
}

/// A method's name for people.
pub(crate) fn display_name(method: Method) -> &'static str {
    match method.name() {
        "gradcam" => "Grad-CAM",
        "gradcam++" => "Grad-CAM++",
        "xgradcam" => "XGrad-CAM",
        "hirescam" => "HiResCAM",
        "layercam" => "LayerCAM",
        "eigencam" => "Eigen-CAM",
        "scorecam" => "Score-CAM",
        "ablationcam" => "Ablation-CAM",
        "saliency" => "Saliency",
        "gradient-x-input" => "Gradient × input",
        "guided-backprop" => "Guided backprop",
        "deconvnet" => "Deconvnet",
        "guided-gradcam" => "Guided Grad-CAM",
        "smoothgrad" => "SmoothGrad",
        "integrated-gradients" => "Integrated gradients",
        "expected-gradients" => "Expected gradients",
        "occlusion" => "Occlusion",
        "rise" => "RISE",
        "activations" => "Activations",
        other => other,
    }
}

/// One sentence on what a method's picture shows.
fn description(method: Method) -> &'static str {
    match method.name() {
        "gradcam" => "The layer's feature maps weighted by the mean gradient of the class score over each map (Selvaraju et al. 2017).",
        "gradcam++" => "Grad-CAM with weights from positive second-order gradient terms, for several instances of a class (Chattopadhyay et al. 2018).",
        "xgradcam" => "Grad-CAM with each map's gradient weighted by its normalised activation (Fu et al. 2020).",
        "hirescam" => "The element-wise product of feature maps and gradients, summed over channels (Draelos and Carin 2020).",
        "layercam" => "Feature maps weighted element-wise by their positive gradients (Jiang et al. 2021).",
        "eigencam" => "The first principal component of the layer's feature maps; it does not depend on the class (Muhammad and Yeasin 2020).",
        "scorecam" => "Feature maps weighted by the class score of the image masked by each map, no gradients (Wang et al. 2020).",
        "ablationcam" => "Feature maps weighted by how much the class score drops when each map is zeroed (Desai and Ramaswamy 2020).",
        "saliency" => "The largest absolute gradient of the class score over the colour channels of each pixel (Simonyan et al. 2013).",
        "gradient-x-input" => "The gradient of the class score times the input, pixel by pixel.",
        "guided-backprop" => "Gradients passed back only where both the activation and the gradient are positive (Springenberg et al. 2014).",
        "deconvnet" => "Gradients passed back through ReLUs only where they are positive (Zeiler and Fergus 2014).",
        "guided-gradcam" => "Guided backprop multiplied by the Grad-CAM map (Selvaraju et al. 2017).",
        "smoothgrad" => "The gradient averaged over noisy copies of the image (Smilkov et al. 2017).",
        "integrated-gradients" => "Gradients integrated along the straight path from a baseline to the image (Sundararajan et al. 2017).",
        "expected-gradients" => "Integrated gradients averaged over baselines drawn from a background set, as SHAP's GradientExplainer (Erion et al. 2019).",
        "occlusion" => "How much the class score drops when a window of the image is covered (Zeiler and Fergus 2014).",
        "rise" => "The class score averaged over random masks of the image, weighted by each mask (Petsiuk et al. 2018).",
        "activations" => "The layer's feature maps themselves, tiled; they do not depend on the class.",
        _ => "",
    }
}

/// Escapes text for HTML.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A file name in the folder as a relative URL: every byte outside `A-Z a-z 0-9 - . _ ~`
/// percent-encoded.
fn url(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
:root { --ink: #1d232a; --muted: #5b6570; --line: #dde2e7; --accent: #2266cc; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 40px; font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; color: var(--ink); background: #f6f7f9; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 28px 0 8px; font-size: 17px; }
.sub { margin: 0; color: var(--muted); }
.intro p { max-width: 70em; margin: 0; }
div.scroll { overflow-x: auto; margin-top: 20px; }
table.grid { border-collapse: separate; border-spacing: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table.grid th { font-size: 14px; text-align: center; padding: 10px 10px 6px; border-bottom: 1px solid var(--line); vertical-align: bottom; }
table.grid th .what { display: block; font-weight: normal; color: var(--muted); font-size: 12px; }
table.grid td { padding: 10px; vertical-align: top; text-align: center; }
table.grid tbody tr + tr td { border-top: 1px solid var(--line); }
figure { margin: 0; }
figure img { display: block; margin: 0 auto; image-rendering: auto; border-radius: 3px; }
figcaption { margin-top: 6px; font-size: 12px; color: var(--muted); }
td.image figcaption { text-align: left; color: var(--ink); }
.class { color: var(--muted); }
ol.predictions { list-style: none; margin: 6px 0 0; padding: 0; min-width: 220px; }
ol.predictions li { display: grid; grid-template-columns: 1fr 70px 46px; gap: 6px; align-items: center; font-size: 12px; }
ol.predictions li:first-child { font-weight: 600; }
.meter { height: 7px; background: #e8ebef; border-radius: 4px; overflow: hidden; }
.meter span { display: block; height: 100%; background: var(--accent); }
.p { text-align: right; font-variant-numeric: tabular-nums; }
.scales { display: flex; flex-wrap: wrap; gap: 28px; }
.scales figcaption { text-align: center; }
.methods table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
.methods th, .methods td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; font-size: 13px; }
.methods td:nth-child(2) { max-width: 34em; }
.time { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note { color: var(--muted); font-size: 12px; }
.truth { margin: 6px 0 0; font-size: 12px; font-weight: 600; }
.methods td.num { text-align: right; font-variant-numeric: tabular-nums; }
.methods tr.baseline td { color: var(--muted); font-style: italic; }
code { font: 12px ui-monospace, 'DejaVu Sans Mono', monospace; white-space: nowrap; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
";

/// Counts the pictures that loaded and every error the page meets (script errors, pictures that
/// fail, console errors), and writes the counts on `#gaze-status` once the page has loaded, where
/// the browser test reads them.
const SCRIPT: &str = "
(function () {
  var errors = 0;
  window.addEventListener('error', function () { errors += 1; }, true);
  document.addEventListener('securitypolicyviolation', function () { errors += 1; });
  var consoleError = console.error;
  console.error = function () { errors += 1; return consoleError.apply(console, arguments); };
  window.addEventListener('load', function () {
    var images = document.images, loaded = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) { loaded += 1; }
    }
    var status = document.getElementById('gaze-status');
    status.setAttribute('data-images', String(images.length));
    status.setAttribute('data-images-loaded', String(loaded));
    status.setAttribute('data-errors', String(errors));
    status.textContent = loaded + ' of ' + images.length + ' pictures loaded.';
  });
})();
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_file_names_are_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url("cat #1.gradcam++.3.png"), "cat%20%231.gradcam%2B%2B.3.png");
    }

    #[test]
    fn repeated_stems_get_a_suffix() {
        let stems = ["cat", "cat", "dog", "cat"].map(String::from);
        assert_eq!(unique_stems(&stems), ["cat", "cat-2", "dog", "cat-3"]);
    }

    #[test]
    fn methods_are_checked_and_listed_once() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = parse_methods(&names(&["gradcam", " saliency"])).unwrap();
        assert_eq!(got.iter().map(|m| m.name()).collect::<Vec<_>>(), ["gradcam", "saliency"]);
        let err = parse_methods(&names(&["gradcam", "gradcam"])).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let err = parse_methods(&names(&["gradcan"])).unwrap_err().to_string();
        assert!(err.contains("gradcan") && err.contains("saliency"), "{err}");
    }

    #[test]
    fn every_method_has_a_name_and_a_description() {
        for name in Method::NAMES {
            let method = Method::parse(name).unwrap();
            assert_ne!(display_name(method), name, "{name} has no display name");
            assert!(!description(method).is_empty(), "{name} has no description");
        }
    }
}
