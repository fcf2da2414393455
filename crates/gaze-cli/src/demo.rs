//! `gaze demo`: the main job on the embedded demo model, with no network and no files.
//!
//! It draws a handful of images from the shapes data set's held-out seed (one per class, so the
//! page shows different shapes), runs every method of `gaze explain` on them, and writes the
//! report of `gaze report` with each image's ground truth outlined and named.
//! Below the pictures, a leaderboard scores every method's maps against the ground truth over a
//! small sample, beside a random map and a centre-biased map: the table `gaze eval` prints for a
//! larger one.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use clap::Args as ClapArgs;
use gaze_core::Target;
use gaze_eval::{ShapesDataset, CLASS_NAMES};
use gaze_models::DemoCnn;
use gaze_render::RgbImage;

use crate::eval::{explain_shapes, leaderboard, method_options, Leaderboard, Sample, EVAL_SEED};
use crate::explain::{display_size, Method};
use crate::report::{display_name, refuse_existing_page, write_report, ReportImage, ReportSpec};
use crate::UsageError;

/// Images shown in the page.
pub const DEMO_IMAGES: usize = 6;
/// Images the leaderboard scores.
pub const DEMO_SAMPLE: usize = 8;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The folder to write the page and its pictures into (created if needed).
    #[arg(long, default_value = "gaze-demo")]
    pub out: PathBuf,
    /// Replace a report that already exists (without it, an existing DIR/index.html is an error).
    #[arg(long)]
    pub overwrite: bool,
    /// How many images the leaderboard scores.
    #[arg(long, default_value_t = DEMO_SAMPLE, value_name = "N", hide = true)]
    pub sample: usize,
    /// Only these methods (comma-separated), for quick runs.
    #[arg(long, value_delimiter = ',', value_name = "A,B,...", hide = true)]
    pub methods: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    refuse_existing_page(&args.out, args.overwrite)?;
    if args.sample == 0 {
        return Err(UsageError("--sample must be at least 1".into()).into());
    }
    let methods = if args.methods.is_empty() {
        Method::NAMES.iter().map(|n| Method::parse(n)).collect::<Result<Vec<_>>>()?
    } else {
        crate::report::parse_methods(&args.methods)?
    };
    let device = Device::Cpu;
    let model = DemoCnn::embedded(&device)?;

    let sample = Sample::draw(EVAL_SEED, args.sample, &device)?;
    let bar = crate::progress::bar((methods.len() + 2) as u64, "leaderboard");
    let board = leaderboard(&model, &sample, &methods, 32, &|name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();

    let images = demo_images(&device)?;
    let background = sample.background.clone();
    let explain = move |ctx: &crate::explain::Context, method: Method| explain_shapes(ctx, method, &background);
    let spec = ReportSpec {
        model: &model,
        weights: None,
        images,
        methods,
        target: Target::top_class(),
        predictions: 3,
        options: &method_options,
        explain: &explain,
        sections: leaderboard_html(&board),
        command: "gaze demo",
        out: args.out.clone(),
        overwrite: args.overwrite,
    };
    let index = write_report(&spec)?;
    crate::write_stdout(&format!("report: {}\n", index.display()))?;
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The page's images: from the start of the held-out seed, the first image of each class until
/// there are [`DEMO_IMAGES`], with the labelled shape outlined.
fn demo_images(device: &Device) -> Result<Vec<ReportImage>> {
    let data = ShapesDataset::new(EVAL_SEED);
    let mut seen = Vec::new();
    let mut images = Vec::new();
    for index in 0..256u64 {
        let s = data.sample(index);
        if seen.contains(&s.label) {
            continue;
        }
        seen.push(s.label);
        let class = CLASS_NAMES[s.label];
        let input = gaze_eval::PixelNorm::keras_tf().apply(&s.image, device)?;
        images.push(ReportImage {
            stem: format!("{class}-{index}"),
            input,
            display: outlined(&s.image, &s.mask),
            note: Some(format!("ground truth: {class} (outlined), image {index} of seed {EVAL_SEED}")),
        });
        if images.len() == DEMO_IMAGES {
            break;
        }
    }
    Ok(images)
}

/// The image at its display size with the mask's outline drawn in two tones (white outside, black
/// inside), so it shows on any background.
fn outlined(image: &RgbImage, mask: &image::GrayImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let (dh, dw) = display_size((h as usize, w as usize));
    let display = gaze_models::resize_pil(image, dw as u32, dh as u32, gaze_models::Filter::Bilinear);
    let k = (dw / w as usize).max(1);
    let inside = |x: i64, y: i64| -> bool {
        if x < 0 || y < 0 || x >= dw as i64 || y >= dh as i64 {
            return false;
        }
        mask.get_pixel(x as u32 / k as u32, y as u32 / k as u32)[0] > 0
    };
    let mut out = display;
    for y in 0..dh as i64 {
        for x in 0..dw as i64 {
            let here = inside(x, y);
            let near =
                |d: i64| [(d, 0), (-d, 0), (0, d), (0, -d)].iter().any(|&(dx, dy)| inside(x + dx, y + dy) != here);
            if here && near(1) {
                out.put_pixel(x as u32, y as u32, image::Rgb([0, 0, 0]));
            } else if !here && (near(1) || near(2)) {
                out.put_pixel(x as u32, y as u32, image::Rgb([255, 255, 255]));
            }
        }
    }
    out
}

/// The leaderboard as a section of the page.
fn leaderboard_html(board: &Leaderboard) -> String {
    let mut s = String::new();
    s.push_str("<section class=\"methods leaderboard\" id=\"leaderboard\">\n<h2>Leaderboard</h2>\n");
    let _ = writeln!(
        s,
        "<p>Every method explains the labelled class of {} images of the shapes data set (seed {}, which the model never trained on; it classifies {:.1}% of them correctly), and its maps are scored against the true outline of the shape. \
         The <b>pointing game</b> is the share of maps whose maximum lies within 3 pixels of the shape (Zhang et al. 2016); the <b>energy pointing game</b> the share of a map's positive mass on the shape (Wang et al. 2020). \
         <b>Deletion</b> removes pixels in the map's order and measures how fast the class probability falls (lower is better); <b>insertion</b> puts them back into a blurred image (higher is better) (Petsiuk et al. 2018). \
         The two last rows are maps that know nothing of the model: random values, and the distance from the centre.</p>",
        board.images,
        board.seed,
        100.0 * board.accuracy
    );
    s.push_str("<table>\n<thead><tr><th>method</th><th>pointing game ↑</th><th>energy pointing game ↑</th><th>deletion AUC ↓</th><th>insertion AUC ↑</th><th>time</th></tr></thead>\n<tbody>\n");
    for r in &board.rows {
        let (class, name) = if r.baseline {
            ("baseline", format!("{} map (baseline)", if r.name == "random" { "random" } else { "centre-biased" }))
        } else {
            ("method", Method::parse(&r.name).map(display_name).unwrap_or(&r.name).to_string())
        };
        let _ = writeln!(
            s,
            "<tr class=\"{class}\"><td>{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"time\">{:.2} s</td></tr>",
            crate::report::esc(&name),
            r.pointing,
            r.energy,
            r.deletion,
            r.insertion,
            r.seconds
        );
    }
    s.push_str("</tbody>\n</table>\n<p class=\"note\">Time: seconds to compute the maps of all images. <code>gaze eval --n 500</code> prints this table over a larger sample, and <code>gaze eval --sanity</code> adds the model-randomisation sanity check.</p>\n</section>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outline_follows_the_mask_edge_and_leaves_the_rest() {
        // A 64×64 grey image whose mask is the square at rows and columns 16..48.
        let image = RgbImage::from_pixel(64, 64, image::Rgb([128, 128, 128]));
        let mask = image::GrayImage::from_fn(64, 64, |x, y| {
            image::Luma([if (16..48).contains(&x) && (16..48).contains(&y) { 255 } else { 0 }])
        });
        let out = outlined(&image, &mask);
        assert_eq!(out.dimensions(), (256, 256));
        // At 4× the square spans display pixels 64..192: black just inside, white just outside.
        assert_eq!(out.get_pixel(64, 100).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(63, 100).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(62, 100).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(60, 100).0, [128, 128, 128]);
        assert_eq!(out.get_pixel(128, 128).0, [128, 128, 128]);
        assert_eq!(out.get_pixel(0, 0).0, [128, 128, 128]);
    }

    #[test]
    fn the_demo_images_are_distinct_classes_with_their_ground_truth() {
        let images = demo_images(&Device::Cpu).unwrap();
        assert_eq!(images.len(), DEMO_IMAGES);
        let mut classes: Vec<&str> = images.iter().map(|i| i.stem.split('-').next().unwrap()).collect();
        classes.sort();
        classes.dedup();
        assert_eq!(classes.len(), DEMO_IMAGES);
        for image in &images {
            assert_eq!(image.input.dims(), [3, 64, 64]);
            assert!(image.note.as_deref().unwrap().starts_with("ground truth: "));
        }
    }
}
