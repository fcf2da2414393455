//! `cargo xtask tutorial`: every figure of the tutorial, in order, written to `docs/tutorial.md`
//! (figures under `docs/tutorial/`) with the Rust calls that made them.
//!
//! The tutorial follows the Python peers' own walk-through on the four sample images
//! (`assets/images`: chelsea, coffee, astronaut, rocket):
//! 1. VGG16's prediction for each image, with its label;
//! 2. and 3. SHAP's expected gradients in the space of VGG16's layers 7 and 14 (Keras numbering: the
//!    input of layer 7 is the output of `block2_pool`, the input of layer 14 the output of
//!    `block4_conv3`), the top two classes of two images;
//! 4. Xception's top five classes for each image;
//! 5. tf-explain's grid of the feature maps of `block2_sepconv2_act`;
//! 6. tf-explain's occlusion sensitivity for class 285 (Egyptian cat) with 7-pixel patches;
//! 7. tf-explain's Grad-CAM at `block1_conv2`, `block6_sepconv1` and `block14_sepconv1` for classes
//!    281 (tabby) and 285;
//! 8. tf-explain's SmoothGrad with 80 samples and noise 0.2 for classes 281 and 285.
//!
//! The weights come from `--vgg16` and `--xception`, or else from the local Hugging Face hub cache
//! (found by the command line's own lookup, `crates/gaze-cli/src/weights.rs`).
//! When they are absent the task says how to fetch them and draws those figures with the demo
//! model instead, at the demo layers listed in [`DEMO_LAYERS`], and the page says so.
//! A checkpoint with fewer than 1000 classes (the width-reduced test fixtures, the demo model)
//! explains class `c mod K` in place of class `c`.
//!
//! The code shown under each figure is cut from this file between `// tutorial:begin NAME` and
//! `// tutorial:end NAME` lines, so the page always shows the calls that ran.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use candle_core::{Tensor, D};
use gaze_activations::{activation_grid, Activations, ActivationsConfig};
use gaze_cam::{Cam, CamConfig};
use gaze_core::{Explainer, Score, Target};
use gaze_engine::ops::softmax_last_dim;
use gaze_expected_gradients::{ExpectedGradients, Space};
use gaze_models::{load_image, resize_pil, Classifier, Filter, ModelKind, Preprocess};
use gaze_occlusion::{Fill, Occlusion, OcclusionConfig};
use gaze_render::text::{self, TextStyle};
use gaze_render::{
    colorize, overlay_map, save_png, shap_plot, write_atomic, Colormap, Figure, Map, Normalize, OverlayOptions, Panel,
    Reduction, RgbImage, Rgba, RgbaImage, ShapPlotOptions, WriteOptions,
};
use gaze_saliency::Gradient;
use gaze_smoothgrad::{Noise, SmoothGrad};

/// The command line's lookup of weights in the hub cache, compiled here too so that the tutorial
/// finds exactly what `gaze` finds.
/// (`fetch` compiles the same file for its own check; each keeps its own copy.)
#[path = "../../crates/gaze-cli/src/weights.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod cli_weights;

/// The options of `cargo xtask tutorial`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A VGG16 checkpoint; default: the ImageNet weights in the hub cache.
    #[arg(long, value_name = "FILE")]
    pub vgg16: Option<PathBuf>,
    /// An Xception checkpoint; default: the ImageNet weights in the hub cache.
    #[arg(long, value_name = "FILE")]
    pub xception: Option<PathBuf>,
    /// The folder that receives `tutorial.md` and the figures in `tutorial/` (default: docs).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The folder with chelsea.png, coffee.png, astronaut.png and rocket.jpg (default: assets/images).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Less work, for tests: SHAP 4 samples instead of 200, SmoothGrad 4 instead of 80, occlusion
    /// patches of 60 pixels instead of 7.
    #[arg(long)]
    pub quick: bool,
}

/// The four images, in the order the figures show them.
const IMAGES: [&str; 4] = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"];

/// ImageNet's tabby cat and Egyptian cat, the classes the tutorial explains.
const TABBY: usize = 281;
const EGYPTIAN_CAT: usize = 285;

/// The demo model's layers standing in for the Keras layers when the pretrained weights are
/// absent: the same place in a smaller network (after the second pooling, before the last one,
/// an early, a middle and the last convolution).
pub const DEMO_LAYERS: [(&str, &str); 6] = [
    ("block2_pool", "pool2"),
    ("block4_conv3", "relu3"),
    ("block2_sepconv2_act", "relu2"),
    ("block1_conv2", "conv1"),
    ("block6_sepconv1", "conv3"),
    ("block14_sepconv1", "conv4"),
];

/// A model of the tutorial with the images prepared for it.
struct Subject {
    model: Box<dyn Classifier>,
    /// The architecture the tutorial asks for: VGG16 or Xception.
    role: &'static str,
    /// Where the weights came from, in words (no machine paths).
    source: String,
    /// Whether the demo model stands in.
    stand_in: bool,
    /// `[4, 3, H, W]`, preprocessed.
    input: Tensor,
    /// The images at the model's input size (what the model sees).
    seen: Vec<RgbImage>,
    /// The images drawn at least 224 pixels on a side, through the same resize and crop.
    shown: Vec<RgbImage>,
    /// `shown` is `zoom` times `seen`.
    zoom: u32,
}

impl Subject {
    /// The tap name of a Keras layer (the model resolves the Keras alias), or the demo's stand-in.
    fn layer(&self, keras: &str) -> String {
        if self.stand_in {
            DEMO_LAYERS.iter().find(|(k, _)| *k == keras).map(|(_, d)| d.to_string()).unwrap_or_else(|| keras.into())
        } else {
            keras.into()
        }
    }

    /// ImageNet class `c`, or `c mod K` for a model with fewer classes.
    fn class(&self, c: usize) -> usize {
        c % self.model.num_classes().max(1)
    }

    fn label(&self, class: usize) -> String {
        self.model.label(class).unwrap_or_else(|| format!("class {class}"))
    }

    /// `label (class)`.
    fn named(&self, class: usize) -> String {
        match self.model.label(class) {
            Some(label) if label != format!("class {class}") => format!("{label} ({class})"),
            _ => format!("class {class}"),
        }
    }

    /// Image `i` (0..4) as a batch of one.
    fn one(&self, i: usize) -> Result<Tensor> {
        Ok(self.input.narrow(0, i, 1)?)
    }
}

/// One figure of the page.
struct Section {
    slug: &'static str,
    title: String,
    text: String,
    picture: RgbaImage,
    code: &'static str,
    notes: Vec<String>,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| root.join("docs"));
    let images_dir = args.images.clone().unwrap_or_else(|| root.join("assets").join("images"));
    let originals = IMAGES
        .iter()
        .map(|name| load_image(&images_dir.join(name)).with_context(|| format!("reading the tutorial's image {name}")))
        .collect::<Result<Vec<_>>>()?;
    let vgg = subject(ModelKind::Vgg16, "VGG16", args.vgg16.as_deref(), &originals)?;
    let xception = subject(ModelKind::Xception, "Xception", args.xception.as_deref(), &originals)?;
    let samples = Samples::new(args.quick);

    let steps: [(&str, &dyn Fn() -> Result<Section>); 8] = [
        ("predictions", &|| predictions(&vgg)),
        ("SHAP at layer 7", &|| shap(&vgg, 7, "block2_pool", &samples)),
        ("SHAP at layer 14", &|| shap(&vgg, 14, "block4_conv3", &samples)),
        ("Xception top 5", &|| top_five(&xception)),
        ("activations", &|| activations(&xception)),
        ("occlusion", &|| occlusion(&xception, &samples)),
        ("Grad-CAM", &|| gradcam(&xception)),
        ("SmoothGrad", &|| smoothgrad(&xception, &samples)),
    ];
    let figures = out.join("tutorial");
    std::fs::create_dir_all(&figures).with_context(|| format!("creating {}", figures.display()))?;
    let mut sections = Vec::with_capacity(steps.len());
    for (i, (name, step)) in steps.iter().enumerate() {
        eprintln!("[{}/{}] {name}", i + 1, steps.len());
        let section = step().with_context(|| format!("the tutorial's {name} figure"))?;
        let file = figures.join(format!("{:02}-{}.png", i + 1, section.slug));
        save_png(&file, &section.picture, WriteOptions::overwrite())?;
        sections.push(section);
    }
    let page = page(&sections, &[&vgg, &xception], &samples);
    let md = out.join("tutorial.md");
    write_atomic(&md, WriteOptions::overwrite(), |w| std::io::Write::write_all(w, page.as_bytes()))?;
    eprintln!("wrote {} and {} figures in {}", md.display(), sections.len(), figures.display());
    Ok(())
}

/// Sample counts: the tutorial's, or a few for tests.
struct Samples {
    shap: usize,
    smoothgrad: usize,
    /// The occlusion patch size.
    patch: usize,
    quick: bool,
}

impl Samples {
    fn new(quick: bool) -> Self {
        if quick {
            Samples { shap: 4, smoothgrad: 4, patch: 60, quick }
        } else {
            Samples { shap: 200, smoothgrad: 80, patch: 7, quick }
        }
    }
}

/// Loads the model from `file`, the hub cache, or (saying how to fetch the weights) the demo model.
fn subject(kind: ModelKind, role: &'static str, file: Option<&Path>, originals: &[RgbImage]) -> Result<Subject> {
    let device = candle_core::Device::Cpu;
    let name = kind.name();
    let (model, source, stand_in) = match file {
        Some(path) => {
            let shown = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            (gaze_models::load(kind, Some(path), &device)?, format!("the checkpoint `{shown}`"), false)
        }
        None => match cli_weights::cached_weights(kind) {
            Ok(path) => {
                let repo = kind.hub_weights().map(|h| h.repo).unwrap_or_default();
                (gaze_models::load(kind, Some(&path), &device)?, format!("the ImageNet weights `{repo}`"), false)
            }
            Err(e) => {
                eprintln!(
                    "{role}: {e}\n{role}: the demo model stands in for {role}'s figures until `cargo xtask \
                     fetch-weights {name}` has fetched the weights (or --{name} FILE names a checkpoint)"
                );
                let source = format!(
                    "the demo model, standing in because the {role} weights are absent (`cargo xtask fetch-weights \
                     {name}` fetches them)"
                );
                (gaze_models::load(ModelKind::Demo, None, &device)?, source, true)
            }
        },
    };
    let pre = model.preprocess();
    let seen: Vec<RgbImage> = originals.iter().map(|o| pre.resize(o)).collect();
    let inputs = seen.iter().map(|s| pre.normalize(s, &device)).collect::<gaze_core::Result<Vec<_>>>()?;
    let input = Tensor::stack(&inputs, 0)?;
    let (h, w) = (seen[0].height(), seen[0].width());
    let zoom = 224u32.div_ceil(h.min(w).max(1));
    let shown = originals.iter().zip(&seen).map(|(o, s)| enlarge(o, s, &pre, zoom)).collect();
    Ok(Subject { model, role, source, stand_in, input, seen, shown, zoom })
}

/// The image `zoom` times larger than the model's input, resized from the original through the
/// same geometry as the preprocessing (Pillow's bilinear filter).
fn enlarge(original: &RgbImage, seen: &RgbImage, pre: &Preprocess, zoom: u32) -> RgbImage {
    if zoom == 1 {
        return seen.clone();
    }
    match pre {
        Preprocess::Torchvision { resize, crop, mean, std } => {
            Preprocess::Torchvision { resize: resize * zoom, crop: crop * zoom, mean: *mean, std: *std }
                .resize(original)
        }
        Preprocess::Caffe { .. } | Preprocess::Tf { .. } => {
            resize_pil(original, seen.width() * zoom, seen.height() * zoom, Filter::Bilinear)
        }
    }
}

fn predictions(vgg: &Subject) -> Result<Section> {
    let model = vgg.model.as_ref();
    // tutorial:begin predictions
    let logits = model.forward(&vgg.input)?;
    let top = Target::top(1).resolve(&logits)?;
    let probabilities = softmax_last_dim(&logits)?.to_vec2::<f32>()?;
    // tutorial:end predictions
    let panels = (0..IMAGES.len())
        .map(|i| {
            let c = top[i][0];
            Panel::new(vgg.shown[i].clone()).with_title(format!("{} {:.1}%", vgg.label(c), 100.0 * probabilities[i][c]))
        })
        .collect();
    let picture = Figure::new().with_title(format!("{} predictions", vgg.role)).with_row(panels).render()?;
    let listed: Vec<String> = (0..IMAGES.len())
        .map(|i| {
            let c = top[i][0];
            format!("`{}`: {}, {:.1}%", stem(IMAGES[i]), vgg.named(c), 100.0 * probabilities[i][c])
        })
        .collect();
    Ok(Section {
        slug: "predictions",
        title: format!("What {} predicts", vgg.role),
        text: format!("The top class of each image with its softmax probability: {}.", listed.join("; ")),
        picture,
        code: snippet("predictions"),
        notes: vec![],
    })
}

fn shap(vgg: &Subject, keras_index: usize, keras_layer: &str, samples: &Samples) -> Result<Section> {
    let model = vgg.model.as_ref();
    let layer = vgg.layer(keras_layer);
    let to_explain = vgg.input.narrow(0, 0, 2)?;
    let images = &vgg.seen[..2];
    let samples = samples.shap;
    // tutorial:begin shap
    // The background is the four images, as the notebook's background holds the images it explains.
    let explainer = ExpectedGradients::new(vgg.input.clone())
        .with_space(Space::LayerSpace(layer.clone()))
        .with_samples(samples)
        .with_batch(16)
        .with_seed(0);
    // Keras's VGG16 ends in a softmax: SHAP explains the probabilities, ranked as `ranked_outputs=2`.
    let target = Target::top(2).with_score(Score::Probability);
    let shap = explainer.explain_with_variance(model, &to_explain, &target)?;
    let values = Map::batch_from_tensor(&shap.attribution.values, Reduction::Sum)?;
    let labels: Vec<Vec<String>> =
        shap.attribution.targets.iter().map(|row| row.iter().map(|&c| vgg.label(c)).collect()).collect();
    let options = ShapPlotOptions { zoom: vgg.zoom, ..ShapPlotOptions::default() };
    let picture = shap_plot(images, &values, &labels, &options)?;
    // tutorial:end shap
    let shape = shap.attribution.values.dims().to_vec();
    Ok(Section {
        slug: if keras_index == 7 { "shap-layer7" } else { "shap-layer14" },
        title: format!("SHAP at {} layer {keras_index} (`{keras_layer}`)", vgg.role),
        text: format!(
            "Expected gradients in the space of layer {keras_index}'s input, the output of `{keras_layer}` \
             (tap `{layer}`), for the two highest-ranked classes of `chelsea` and `coffee`: {samples} samples each, \
             interpolating between each image's activations and a background image's, and running only the network \
             after the layer.\nRed raises the class probability and blue lowers it.\nThe maps are at the \
             layer's resolution ({}×{}), summed over its {} channels, and shown over the image.",
            shape[shape.len() - 2],
            shape[shape.len() - 1],
            shape[shape.len() - 3]
        ),
        picture,
        code: snippet("shap"),
        notes: vec![format!(
            "SHAP's notebook: `shap.GradientExplainer((model.layers[{keras_index}].input, model.layers[-1].output), \
             map2layer(X, {keras_index}))` and `shap_values(map2layer(to_explain, {keras_index}), ranked_outputs=2)`, \
             with 50 ImageNet images as the background; here the background is the four sample images."
        )],
    })
}

fn top_five(xception: &Subject) -> Result<Section> {
    let model = xception.model.as_ref();
    let k = 5.min(model.num_classes());
    // tutorial:begin top5
    let logits = model.forward(&xception.input)?;
    let top5 = Target::top(k).resolve(&logits)?;
    let probabilities = softmax_last_dim(&logits)?.to_vec2::<f32>()?;
    // tutorial:end top5
    let mut panels = Vec::new();
    let mut table = String::from("| image | classes, best first |\n|---|---|\n");
    for (i, classes) in top5.iter().enumerate() {
        let lines: Vec<String> =
            classes.iter().map(|&c| format!("{:5.1}%  {}", 100.0 * probabilities[i][c], xception.label(c))).collect();
        panels.push(Panel::new(with_lines(&xception.shown[i], &lines)));
        let cells: Vec<String> =
            classes.iter().map(|&c| format!("{} {:.1}%", xception.named(c), 100.0 * probabilities[i][c])).collect();
        table.push_str(&format!("| `{}` | {} |\n", stem(IMAGES[i]), cells.join(", ")));
    }
    let picture = Figure::new().with_title(format!("{} top {k}", xception.role)).with_row(panels).render()?;
    Ok(Section {
        slug: "xception-top5",
        title: format!("{}'s top {k}", xception.role),
        text: format!("The {k} most probable classes of each image.\n\n{table}"),
        picture,
        code: snippet("top5"),
        notes: vec![],
    })
}

fn activations(xception: &Subject) -> Result<Section> {
    let model = xception.model.as_ref();
    let layer = xception.layer("block2_sepconv2_act");
    let cat = xception.one(0)?;
    // tutorial:begin activations
    let activations = Activations::new(ActivationsConfig::new(layer.clone()));
    let maps = activations.feature_maps(model, &cat, &Target::top_class())?;
    let grid = activation_grid(&maps.attribution.values)?;
    let picture = grid.to_image()?;
    // tutorial:end activations
    let channels = maps.attribution.values.dim(2)?;
    // A large grid is shown at 1024 pixels; a small one is enlarged to at least 512.
    let side = picture.width().max(picture.height());
    let scale = if side > 1024 { 1024.0 / side as f32 } else { (512 / side.max(1)).max(1) as f32 };
    let (w, h) = ((picture.width() as f32 * scale).round() as u32, (picture.height() as f32 * scale).round() as u32);
    let filter = if scale < 1.0 { image::imageops::FilterType::Triangle } else { image::imageops::FilterType::Nearest };
    let picture = image::DynamicImage::ImageRgb8(image::imageops::resize(&picture, w, h, filter)).to_rgba8();
    Ok(Section {
        slug: "activations",
        title: format!("The feature maps of `block2_sepconv2_act` ({})", xception.role),
        text: format!(
            "The {channels} feature maps of tap `{layer}` for `chelsea`, tiled as tf-explain's `ExtractActivations` \
             tiles them ({}×{} tiles of {}×{}) and scaled together from the lowest to the highest value of the grid.",
            grid.rows, grid.cols, grid.tile.0, grid.tile.1
        ),
        picture,
        code: snippet("activations"),
        notes: vec!["The picture is resized to 1024 pixels when the grid is larger, and enlarged by a whole factor \
                     when it is smaller than 512."
            .into()],
    })
}

fn occlusion(xception: &Subject, samples: &Samples) -> Result<Section> {
    let model = xception.model.as_ref();
    let patch = samples.patch;
    let class = xception.class(EGYPTIAN_CAT);
    let cat = xception.one(0)?;
    // tutorial:begin occlusion
    // tf-explain covers each patch with grey (127.5 of 255), which is 0 in Xception's [−1, 1] input.
    let config = OcclusionConfig::tf_explain(patch).with_fill(Fill::Constant(0.0));
    let target = Target::classes([class]).with_score(Score::Probability);
    let sensitivity = Occlusion::new(config).explain(model, &cat, &target)?;
    let map = Map::from_channels_tensor(&sensitivity.map(0, 0)?, Reduction::Sum)?;
    // tf-explain's display: viridis, min-max, 30 % heat over the image.
    let options = OverlayOptions { cmap: Colormap::Viridis, normalize: Normalize::MinMax, heat_weight: 0.3 };
    let overlay = overlay_map(&xception.shown[0], &map, &options)?;
    // tutorial:end occlusion
    let picture = Figure::new()
        .with_title(format!("Occlusion sensitivity, {}", xception.named(class)))
        .with_row(vec![
            Panel::new(xception.shown[0].clone()).with_title("chelsea"),
            Panel::new(overlay).with_title(format!("1 − p, patch {patch}")),
        ])
        .render()?;
    let [_, h, w] = model.input_shape();
    Ok(Section {
        slug: "occlusion",
        title: format!("Occlusion sensitivity for class {EGYPTIAN_CAT} ({})", xception.role),
        text: format!(
            "Each {patch}×{patch} patch of `chelsea` ({}×{} patches of the {h}×{w} input) is covered with grey in \
             turn, and the map shows `1 − p`, one minus the probability of {} with that patch covered: bright where \
             covering the image hurts the class most.",
            h.div_ceil(patch),
            w.div_ceil(patch),
            xception.named(class)
        ),
        picture,
        code: snippet("occlusion"),
        notes: vec![
            "tf-explain passes the image in [0, 255] with a 127.5 fill; Xception's input is in [−1, 1], where \
                     the same grey is 0.\ntf-explain's maps of non-square images are transposed; gaze's are not."
                .into(),
        ],
    })
}

fn gradcam(xception: &Subject) -> Result<Section> {
    let model = xception.model.as_ref();
    let classes = [xception.class(TABBY), xception.class(EGYPTIAN_CAT)];
    let cat = xception.one(0)?;
    let mut rows = Vec::new();
    let mut taps = Vec::new();
    for keras in ["block1_conv2", "block6_sepconv1", "block14_sepconv1"] {
        let layer = xception.layer(keras);
        // tutorial:begin gradcam
        // tf-explain's Grad-CAM: guided gradients of the probability, no ReLU.
        let cam = Cam::new(CamConfig::tf_explain(layer.clone()))?;
        let target = Target::classes(classes).with_score(Score::Probability);
        let maps = cam.explain(model, &cat, &target)?;
        let options = OverlayOptions { cmap: Colormap::Viridis, normalize: Normalize::MinMax, heat_weight: 0.3 };
        let overlays = (0..classes.len())
            .map(|t| overlay_map(&xception.shown[0], &Map::from_tensor(&maps.map(0, t)?)?, &options))
            .collect::<gaze_core::Result<Vec<_>>>()?;
        // tutorial:end gradcam
        let row = overlays
            .into_iter()
            .zip(classes)
            .map(|(o, c)| {
                let shown = if xception.stand_in { format!("{layer} for {keras}") } else { keras.to_string() };
                Panel::new(o).with_title(format!("{shown} · {}", xception.label(c)))
            })
            .collect();
        rows.push(row);
        taps.push(format!("`{keras}` (tap `{layer}`)"));
    }
    let mut figure = Figure::new().with_title(format!("Grad-CAM, {}", xception.role));
    for row in rows {
        figure = figure.with_row(row);
    }
    Ok(Section {
        slug: "gradcam",
        title: format!("Grad-CAM at three depths for classes {TABBY} and {EGYPTIAN_CAT} ({})", xception.role),
        text: format!(
            "Grad-CAM as tf-explain computes it at {}, for {} and {}, one row per layer.",
            taps.join(", "),
            xception.named(classes[0]),
            xception.named(classes[1])
        ),
        picture: figure.render()?,
        code: snippet("gradcam"),
        notes: vec!["tf-explain resizes the map before its min-max; gaze takes the limits at the layer's resolution \
                     first, as pytorch-grad-cam does, so the colours differ slightly where the resized map falls \
                     short of the layer map's extremes."
            .into()],
    })
}

fn smoothgrad(xception: &Subject, samples: &Samples) -> Result<Section> {
    let model = xception.model.as_ref();
    let classes = [xception.class(TABBY), xception.class(EGYPTIAN_CAT)];
    let cat = xception.one(0)?;
    let samples = samples.smoothgrad;
    // tutorial:begin smoothgrad
    let smoothgrad = SmoothGrad::new(Gradient::saliency())
        .with_samples(samples)
        .with_noise(Noise::Sigma(0.2))
        .with_batch(8)
        .with_seed(0);
    // tf-explain differentiates the cross-entropy of the class, −log p; its absolute value is shown.
    let log_probability = Score::Custom(Arc::new(log_softmax));
    let maps = smoothgrad.explain(model, &cat, &Target::classes(classes).with_score(log_probability))?;
    let pictures = (0..classes.len())
        .map(|t| {
            let map = Map::from_channels_tensor(&maps.map(0, t)?, Reduction::AbsSum)?;
            colorize(&map, Colormap::Gray, &Normalize::Percentile { low: 0.0, high: 99.0 })
        })
        .collect::<gaze_core::Result<Vec<_>>>()?;
    // tutorial:end smoothgrad
    let zoom = xception.zoom;
    let panels = pictures
        .into_iter()
        .zip(classes)
        .map(|(p, c)| {
            let (w, h) = (p.width() * zoom, p.height() * zoom);
            Panel::new(image::imageops::resize(&p, w, h, image::imageops::FilterType::Nearest))
                .with_title(xception.named(c))
        })
        .collect();
    let picture = Figure::new().with_title(format!("SmoothGrad, {}", xception.role)).with_row(panels).render()?;
    Ok(Section {
        slug: "smoothgrad",
        title: format!("SmoothGrad for classes {TABBY} and {EGYPTIAN_CAT} ({})", xception.role),
        text: format!(
            "The gradient averaged over {samples} copies of `chelsea` with Gaussian noise of standard deviation 0.2 \
             (in the model's input units), summed over colour channels as absolute values, from black (0) to white \
             (the 99th percentile)."
        ),
        picture,
        code: snippet("smoothgrad"),
        notes: vec![
            "tf-explain standardises the batch and casts to bytes without clipping, which wraps bright values \
                     around; gaze clips at the 99th percentile instead."
                .into(),
        ],
    })
}

/// `log softmax(logits)`, differentiable, with the row maximum subtracted first for stability.
fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// `image` with `lines` of text under it, on white.
fn with_lines(image: &RgbImage, lines: &[String]) -> RgbaImage {
    let size = 13.0;
    let line = text::measure("Ag", size).1 + 2;
    let width = image.width().max(lines.iter().map(|l| text::measure(l, size).0 + 8).max().unwrap_or(0));
    let height = image.height() + 6 + line * lines.len() as u32;
    let mut out = RgbaImage::from_pixel(width, height, Rgba([255, 255, 255, 255]));
    let rgba = image::DynamicImage::ImageRgb8(image.clone()).to_rgba8();
    gaze_render::paste(&mut out, &rgba, (width - image.width()) / 2, 0);
    for (i, l) in lines.iter().enumerate() {
        let y = image.height() + 6 + line * i as u32;
        text::draw(&mut out, l, (4, y as i32), &TextStyle::sized(size));
    }
    out
}

fn stem(file: &str) -> &str {
    file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file)
}

/// The lines of this file between `// tutorial:begin NAME` and `// tutorial:end NAME`, dedented.
fn snippet(name: &str) -> &'static str {
    static SOURCE: &str = include_str!("tutorial.rs");
    let begin = format!("// tutorial:begin {name}\n");
    let end = format!("// tutorial:end {name}");
    let start = SOURCE.find(&begin).map(|i| i + begin.len());
    let stop = start.and_then(|s| SOURCE[s..].find(&end).map(|e| s + e));
    match (start, stop) {
        (Some(a), Some(b)) => SOURCE[a..b].trim_end_matches(' '),
        _ => "",
    }
}

/// Removes the indentation the lines of `code` share.
fn dedent(code: &str) -> String {
    let indent =
        code.lines().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    code.lines().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n")
}

/// The Markdown page.
fn page(sections: &[Section], subjects: &[&Subject], samples: &Samples) -> String {
    let mut s = String::new();
    s.push_str("# Tutorial: what CNNs look at, figure by figure\n\n");
    s.push_str(
        "This page is written by `cargo xtask tutorial`; do not edit it by hand.\n\
         It reproduces, in order, the figures of the Python peers' walk-through (SHAP's notebook on VGG16 and \
         tf-explain's examples on Xception) on the four sample images in `assets/images`, with the Rust calls that \
         made each one.\n\
         The code under each figure is cut from `xtask/src/tutorial.rs`, so it is the code that ran.\n\n",
    );
    s.push_str("## The models\n\n");
    for subject in subjects {
        let [c, h, w] = subject.model.input_shape();
        s.push_str(&format!(
            "- {}: {}, input {c}×{h}×{w}, {} classes.\n",
            subject.role,
            subject.source,
            subject.model.num_classes()
        ));
    }
    if subjects.iter().any(|s| s.stand_in) {
        s.push_str(
            "\nThe demo model knows eight shapes, not ImageNet's classes, so its figures show the machinery, not \
             what VGG16 or Xception see.\n\
             It stands in at these layers:\n\n| Keras layer | demo layer |\n|---|---|\n",
        );
        for (keras, demo) in DEMO_LAYERS {
            s.push_str(&format!("| `{keras}` | `{demo}` |\n"));
        }
        s.push_str(
            "\nTo draw the real figures, fetch the weights and run the task again:\n\n```sh\n\
             cargo xtask fetch-weights vgg16\ncargo xtask fetch-weights xception\ncargo xtask tutorial\n```\n",
        );
    }
    if subjects.iter().any(|s| s.model.num_classes() < 1000) {
        s.push_str(
            "\nA model with K < 1000 classes explains class `c mod K` in place of ImageNet's class `c` \
             (281 tabby, 285 Egyptian cat).\n",
        );
    }
    if samples.quick {
        s.push_str(&format!(
            "\nThis copy was made with `--quick`: {} SHAP samples instead of 200, {} SmoothGrad samples instead \
             of 80 and occlusion patches of {} pixels instead of 7.\n",
            samples.shap, samples.smoothgrad, samples.patch
        ));
    }
    for (i, section) in sections.iter().enumerate() {
        s.push_str(&format!("\n## {}. {}\n\n", i + 1, section.title));
        s.push_str(&section.text);
        s.push_str(&format!("\n\n![{}](tutorial/{:02}-{}.png)\n", section.title, i + 1, section.slug));
        s.push_str(&format!("\n```rust\n{}\n```\n", dedent(section.code).trim_end()));
        for note in &section.notes {
            s.push_str(&format!("\n{note}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snippet_is_found_and_dedented() {
        for name in ["predictions", "shap", "top5", "activations", "occlusion", "gradcam", "smoothgrad"] {
            let code = dedent(snippet(name));
            assert!(!code.trim().is_empty(), "no snippet {name}");
            assert!(!code.starts_with(' '), "{name} is not dedented:\n{code}");
            assert!(!code.contains("tutorial:end"), "{name} runs past its end:\n{code}");
        }
    }

    #[test]
    fn classes_wrap_around_small_heads_and_demo_layers_exist() {
        let demo = gaze_models::load(ModelKind::Demo, None, &candle_core::Device::Cpu).unwrap();
        let names = demo.layer_names();
        for (_, layer) in DEMO_LAYERS {
            assert!(names.iter().any(|n| n == layer), "{layer} is not a demo layer");
        }
        assert_eq!((TABBY % demo.num_classes(), EGYPTIAN_CAT % demo.num_classes()), (1, 5));
    }

    #[test]
    fn log_softmax_is_the_log_of_the_probabilities() {
        let logits = Tensor::new(&[[1.0f32, 2.0, 30.0], [0.0, 0.0, 0.0]], &candle_core::Device::Cpu).unwrap();
        let got = log_softmax(&logits).unwrap().exp().unwrap().to_vec2::<f32>().unwrap();
        let want = softmax_last_dim(&logits).unwrap().to_vec2::<f32>().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
}
