//! The procedural shapes data set: images of one labelled shape over textured clutter, with smaller
//! distractor shapes of other classes and the ground-truth mask of the labelled shape.
//!
//! Every sample is a pure function of the data set's seed and the sample's index: sample `i` draws
//! from its own ChaCha8 stream, so samples can be made in any order, on any machine, with the same
//! bytes.

use std::ops::Range;

use candle_core::{Device, Tensor};
use gaze_core::{Error, Result, Target};
use image::{GrayImage, Luma, Rgb, RgbImage};

use crate::geometry::{sin_cos, ShapeClass};
use crate::rng::Rng;

/// How the images of a [`ShapesDataset`] are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapesConfig {
    /// The side of the square images in pixels.
    pub size: u32,
    /// Subsamples per pixel side for anti-aliasing (4 means 16 per pixel).
    pub supersample: u32,
    /// The range of the labelled shape's circumradius, as a fraction of `size`.
    pub object_radius: (f64, f64),
    /// The range of a distractor's circumradius, as a fraction of `size`.
    pub distractor_radius: (f64, f64),
    /// The least and the most distractors per image.
    pub distractors: (usize, usize),
    /// The least Euclidean RGB distance (0 to 441) between a shape's colour and the two colours of
    /// the background.
    pub min_contrast: f64,
    /// The amplitude of the uniform per-pixel noise added to the whole image, in 0..=255 units.
    pub noise: f64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig {
            size: 64,
            supersample: 4,
            object_radius: (0.18, 0.30),
            distractor_radius: (0.07, 0.11),
            distractors: (1, 2),
            min_contrast: 100.0,
            noise: 12.0,
        }
    }
}

/// The texture behind the shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Background {
    /// Smooth value noise between two colours.
    Noise,
    /// A linear gradient between two colours in a random direction.
    Gradient,
    /// Soft stripes of two colours at a random angle and period.
    Stripes,
}

/// One drawn shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeInstance {
    pub class: ShapeClass,
    /// The centre in pixel coordinates (x right, y down; pixel `(x, y)` covers `[x, x+1) × [y, y+1)`).
    pub center: (f64, f64),
    /// The circumradius in pixels: the shape lies inside this circle.
    pub radius: f64,
    /// The rotation in radians.
    pub rotation: f64,
    pub color: [u8; 3],
}

impl ShapeInstance {
    /// Whether the point `(x, y)` in pixel coordinates is inside the shape.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (s, c) = sin_cos(self.rotation);
        let (dx, dy) = (x - self.center.0, y - self.center.1);
        let u = (dx * c + dy * s) / self.radius;
        let v = (-dx * s + dy * c) / self.radius;
        self.class.contains(u, v)
    }
}

/// One image of the data set with its ground truth.
#[derive(Clone, Debug)]
pub struct Sample {
    pub image: RgbImage,
    /// 255 where at least half of a pixel is covered by the labelled shape, 0 elsewhere.
    pub mask: GrayImage,
    /// The labelled shape's class index (see [`ShapeClass::ALL`]).
    pub label: usize,
    /// The labelled shape.
    pub object: ShapeInstance,
    /// The distractors, none of the labelled class and none overlapping another shape.
    pub distractors: Vec<ShapeInstance>,
    pub background: Background,
}

/// The shapes data set for one seed.
///
/// ```
/// use gaze_eval::{ShapesDataset, ShapeClass};
/// let data = ShapesDataset::new(7);
/// let sample = data.sample(0);
/// assert_eq!(sample.image.dimensions(), (64, 64));
/// assert!(ShapeClass::from_label(sample.label).is_some());
/// ```
#[derive(Clone, Debug)]
pub struct ShapesDataset {
    seed: u64,
    config: ShapesConfig,
}

impl ShapesDataset {
    /// The data set of `seed` with the default configuration (64×64 images).
    pub fn new(seed: u64) -> Self {
        ShapesDataset { seed, config: ShapesConfig::default() }
    }

    /// The data set of `seed` drawn with `config`; an error naming the first bad field.
    pub fn with_config(seed: u64, config: ShapesConfig) -> Result<Self> {
        let bad = |option: &str, value: String, expected: &str| {
            Err(Error::InvalidOption { option: option.into(), value, expected: expected.into() })
        };
        if !(16..=1024).contains(&config.size) {
            return bad("size", config.size.to_string(), "a side of 16 to 1024 pixels");
        }
        if !(1..=16).contains(&config.supersample) {
            return bad("supersample", config.supersample.to_string(), "1 to 16 subsamples per side");
        }
        let (lo, hi) = config.object_radius;
        if !(lo > 0.0 && lo <= hi && hi <= 0.45) {
            return bad("object_radius", format!("{lo}..{hi}"), "0 < min <= max <= 0.45 of the image size");
        }
        let (dlo, dhi) = config.distractor_radius;
        if !(dlo > 0.0 && dlo <= dhi && dhi <= lo) {
            return bad("distractor_radius", format!("{dlo}..{dhi}"), "0 < min <= max <= the smallest object radius");
        }
        if config.distractors.0 > config.distractors.1 || config.distractors.1 > 8 {
            return bad(
                "distractors",
                format!("{}..={}", config.distractors.0, config.distractors.1),
                "min <= max <= 8",
            );
        }
        if !(0.0..=300.0).contains(&config.min_contrast) {
            return bad("min_contrast", config.min_contrast.to_string(), "a distance in 0..=300");
        }
        if !(0.0..=128.0).contains(&config.noise) {
            return bad("noise", config.noise.to_string(), "an amplitude in 0..=128");
        }
        Ok(ShapesDataset { seed, config })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn config(&self) -> &ShapesConfig {
        &self.config
    }

    /// The sample at `index`: the same image for the same seed, index and configuration, always.
    pub fn sample(&self, index: u64) -> Sample {
        draw(&self.config, &mut Rng::new(self.seed, index))
    }

    /// The samples at `range`, in order.
    ///
    /// This holds every sample at once, so `range` must be small enough to fit in memory; for a
    /// count that comes from a user, [`try_samples`](Self::try_samples) checks it first.
    pub fn samples(&self, range: Range<u64>) -> Vec<Sample> {
        range.map(|i| self.sample(i)).collect()
    }

    /// The most samples one call of [`try_samples`](Self::try_samples) makes:
    /// [`MAX_SAMPLE_PIXELS`] over the pixels of one image (65536 images of the default 64×64).
    pub fn max_samples(&self) -> u64 {
        let side = u64::from(self.config.size);
        (MAX_SAMPLE_PIXELS / (side * side)).max(1)
    }

    /// The samples at `range`, in order, as [`samples`](Self::samples) makes them, after checking
    /// that there are at most [`max_samples`](Self::max_samples) of them: a larger count is an error
    /// naming it and the bound, where it would otherwise exhaust memory.
    pub fn try_samples(&self, range: Range<u64>) -> Result<Vec<Sample>> {
        let count = range.end.saturating_sub(range.start);
        let most = self.max_samples();
        if count > most {
            let side = self.config.size;
            return Err(Error::InvalidOption {
                option: "the number of shapes images".into(),
                value: count.to_string(),
                expected: format!(
                    "at most {most} images of {side}×{side} pixels at once ({MAX_SAMPLE_PIXELS} pixels in all, \
                     about 1 GiB as 8-bit images and masks); draw larger sets in parts"
                ),
            });
        }
        Ok(self.samples(range))
    }
}

/// The most pixels (images × pixels per image) that [`ShapesDataset::try_samples`] draws in one
/// call: 2²⁸, 65536 images of 64×64, about 1 GiB as 8-bit RGB images and masks, and four times that
/// once stacked into `f32` tensors.
pub const MAX_SAMPLE_PIXELS: u64 = 1 << 28;

fn draw(config: &ShapesConfig, rng: &mut Rng) -> Sample {
    let size = config.size as usize;
    let s = config.size as f64;

    // The background: two colours of moderate contrast and a texture between them.
    let c1 = random_color(rng);
    let c2 = c1.map(|v| (v + rng.range(-80.0, 80.0)).clamp(0.0, 255.0));
    let background = match rng.below(3) {
        0 => Background::Noise,
        1 => Background::Gradient,
        _ => Background::Stripes,
    };
    let mut canvas = vec![[0f64; 3]; size * size];
    let weight = texture(background, size, rng);
    for (px, t) in canvas.iter_mut().zip(&weight) {
        for c in 0..3 {
            px[c] = c1[c] + (c2[c] - c1[c]) * t;
        }
    }

    // The labelled shape, fully inside the image.
    let label = rng.below(ShapeClass::ALL.len());
    let class = ShapeClass::ALL[label];
    let radius = s * rng.range(config.object_radius.0, config.object_radius.1);
    let object = ShapeInstance {
        class,
        center: (rng.range(radius + 1.0, s - radius - 1.0), rng.range(radius + 1.0, s - radius - 1.0)),
        radius,
        rotation: rng.range(0.0, 2.0 * std::f64::consts::PI),
        color: contrasting_color(rng, &[c1, c2], config.min_contrast),
    };

    // Distractors of other classes, placed where they overlap no other shape.
    let wanted = config.distractors.0 + rng.below(config.distractors.1 - config.distractors.0 + 1);
    let mut distractors: Vec<ShapeInstance> = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        let other = ShapeClass::ALL[(label + 1 + rng.below(ShapeClass::ALL.len() - 1)) % ShapeClass::ALL.len()];
        let r = s * rng.range(config.distractor_radius.0, config.distractor_radius.1);
        let rotation = rng.range(0.0, 2.0 * std::f64::consts::PI);
        let color = contrasting_color(rng, &[c1, c2], config.min_contrast);
        for _ in 0..64 {
            let center = (rng.range(r + 1.0, s - r - 1.0), rng.range(r + 1.0, s - r - 1.0));
            let clear =
                std::iter::once(&object).chain(&distractors).all(|o| dist(o.center, center) >= o.radius + r + 2.0);
            if clear {
                distractors.push(ShapeInstance { class: other, center, radius: r, rotation, color });
                break;
            }
        }
    }

    let ss = config.supersample as usize;
    let mut mask = GrayImage::new(config.size, config.size);
    for (i, shape) in std::iter::once(&object).chain(&distractors).enumerate() {
        paint(&mut canvas, size, ss, shape, |x, y, cover| {
            if i == 0 && cover >= 0.5 {
                mask.put_pixel(x as u32, y as u32, Luma([255]));
            }
        });
    }

    let mut image = RgbImage::new(config.size, config.size);
    for (i, px) in canvas.iter().enumerate() {
        let mut rgb = [0u8; 3];
        for c in 0..3 {
            let v = px[c] + rng.range(-config.noise, config.noise);
            rgb[c] = (v.clamp(0.0, 255.0) + 0.5).floor() as u8;
        }
        image.put_pixel((i % size) as u32, (i / size) as u32, Rgb(rgb));
    }
    Sample { image, mask, label, object, distractors, background }
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((a.0 - b.0) * (a.0 - b.0) + (a.1 - b.1) * (a.1 - b.1)).sqrt()
}

fn random_color(rng: &mut Rng) -> [f64; 3] {
    [rng.below(256) as f64, rng.below(256) as f64, rng.below(256) as f64]
}

/// A colour at least `min` away from every colour of `avoid`, or the farthest of 64 tries.
fn contrasting_color(rng: &mut Rng, avoid: &[[f64; 3]], min: f64) -> [u8; 3] {
    let mut best = ([0.0; 3], -1.0);
    for _ in 0..64 {
        let c = random_color(rng);
        let d = avoid
            .iter()
            .map(|a| ((c[0] - a[0]).powi(2) + (c[1] - a[1]).powi(2) + (c[2] - a[2]).powi(2)).sqrt())
            .fold(f64::INFINITY, f64::min);
        if d > best.1 {
            best = (c, d);
        }
        if d >= min {
            break;
        }
    }
    best.0.map(|v| v as u8)
}

/// The mixing weight in `[0, 1]` between the two background colours at every pixel.
fn texture(kind: Background, size: usize, rng: &mut Rng) -> Vec<f64> {
    let s = size as f64;
    let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
    match kind {
        Background::Noise => {
            let cell = rng.range(6.0, 16.0);
            let n = (s / cell).ceil() as usize + 2;
            let grid: Vec<f64> = (0..n * n).map(|_| rng.unit()).collect();
            let mut out = Vec::with_capacity(size * size);
            for y in 0..size {
                for x in 0..size {
                    let (gx, gy) = ((x as f64 + 0.5) / cell, (y as f64 + 0.5) / cell);
                    let (ix, iy) = (gx.floor() as usize, gy.floor() as usize);
                    let (fx, fy) = (smooth(gx - ix as f64), smooth(gy - iy as f64));
                    let at = |i: usize, j: usize| grid[j * n + i];
                    let top = at(ix, iy) + (at(ix + 1, iy) - at(ix, iy)) * fx;
                    let bottom = at(ix, iy + 1) + (at(ix + 1, iy + 1) - at(ix, iy + 1)) * fx;
                    out.push(top + (bottom - top) * fy);
                }
            }
            out
        }
        Background::Gradient => {
            let (sa, ca) = sin_cos(rng.range(0.0, 2.0 * std::f64::consts::PI));
            let mut out = Vec::with_capacity(size * size);
            for y in 0..size {
                for x in 0..size {
                    let d = ((x as f64 + 0.5 - s / 2.0) * ca + (y as f64 + 0.5 - s / 2.0) * sa) / s;
                    out.push((d + 0.5).clamp(0.0, 1.0));
                }
            }
            out
        }
        Background::Stripes => {
            let (sa, ca) = sin_cos(rng.range(0.0, std::f64::consts::PI));
            let period = rng.range(5.0, 12.0);
            let phase = rng.unit();
            let mut out = Vec::with_capacity(size * size);
            for y in 0..size {
                for x in 0..size {
                    let d = ((x as f64 + 0.5) * ca + (y as f64 + 0.5) * sa) / period + phase;
                    let tri = (2.0 * (d - d.floor()) - 1.0).abs();
                    out.push(smooth(((tri - 0.3) / 0.4).clamp(0.0, 1.0)));
                }
            }
            out
        }
    }
}

/// Composites `shape` over `canvas` with `ss`×`ss` subsamples per pixel, calling `covered` with
/// each touched pixel and the fraction of it the shape covers.
fn paint(
    canvas: &mut [[f64; 3]],
    size: usize,
    ss: usize,
    shape: &ShapeInstance,
    mut covered: impl FnMut(usize, usize, f64),
) {
    let lo = |c: f64| ((c - shape.radius - 1.0).floor().max(0.0)) as usize;
    let hi = |c: f64| ((c + shape.radius + 1.0).ceil().max(0.0) as usize).min(size);
    let color = shape.color.map(f64::from);
    let (sin, cos) = sin_cos(shape.rotation);
    for y in lo(shape.center.1)..hi(shape.center.1) {
        for x in lo(shape.center.0)..hi(shape.center.0) {
            let mut hits = 0;
            for j in 0..ss {
                for i in 0..ss {
                    let dx = x as f64 + (i as f64 + 0.5) / ss as f64 - shape.center.0;
                    let dy = y as f64 + (j as f64 + 0.5) / ss as f64 - shape.center.1;
                    let u = (dx * cos + dy * sin) / shape.radius;
                    let v = (-dx * sin + dy * cos) / shape.radius;
                    hits += shape.class.contains(u, v) as usize;
                }
            }
            if hits == 0 {
                continue;
            }
            let cover = hits as f64 / (ss * ss) as f64;
            let px = &mut canvas[y * size + x];
            for c in 0..3 {
                px[c] = px[c] * (1.0 - cover) + color[c] * cover;
            }
            covered(x, y, cover);
        }
    }
}

/// How pixel values in `0..=255` become model inputs: `(p / scale − mean[c]) / std[c]`, with the
/// channels reversed to BGR when `bgr` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelNorm {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub bgr: bool,
}

impl PixelNorm {
    /// Keras's `tf` mode, `p / 127.5 − 1`: the demo model's preprocessing.
    pub fn keras_tf() -> Self {
        PixelNorm { scale: 127.5, mean: [1.0; 3], std: [1.0; 3], bgr: false }
    }

    /// torchvision's ImageNet normalisation.
    pub fn torchvision_imagenet() -> Self {
        PixelNorm { scale: 255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], bgr: false }
    }

    /// Keras's `caffe` mode: BGR, ImageNet means subtracted, no scaling.
    pub fn keras_caffe() -> Self {
        PixelNorm { scale: 1.0, mean: [103.939, 116.779, 123.68], std: [1.0; 3], bgr: true }
    }

    /// The model input `[3, H, W]` of one image.
    pub fn apply(&self, image: &RgbImage, device: &Device) -> Result<Tensor> {
        let (w, h) = image.dimensions();
        let data = self.values(image);
        Ok(Tensor::from_vec(data, (3, h as usize, w as usize), device)?)
    }

    fn values(&self, image: &RgbImage) -> Vec<f32> {
        let (w, h) = image.dimensions();
        let plane = (w * h) as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, p) in image.pixels().enumerate() {
            for c in 0..3 {
                let source = if self.bgr { 2 - c } else { c };
                data[c * plane + i] = (p[source] as f32 / self.scale - self.mean[c]) / self.std[c];
            }
        }
        data
    }
}

/// A batch of samples as tensors: what the metrics and the demo model take.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The model inputs `[N, 3, H, W]`.
    pub images: Tensor,
    /// The ground-truth masks `[N, H, W]`: 1 on the labelled shape, 0 elsewhere.
    pub masks: Tensor,
    /// The labels, one per image.
    pub labels: Vec<usize>,
}

impl Batch {
    /// Stacks `samples` (all of one size) into tensors, normalising the images with `norm`.
    pub fn new(samples: &[Sample], norm: &PixelNorm, device: &Device) -> Result<Self> {
        let first = samples.first().ok_or_else(|| Error::InvalidOption {
            option: "samples".into(),
            value: "an empty list".into(),
            expected: "at least one sample".into(),
        })?;
        let (w, h) = first.image.dimensions();
        let mut images = Vec::with_capacity(samples.len() * 3 * (w * h) as usize);
        let mut masks = Vec::with_capacity(samples.len() * (w * h) as usize);
        for (i, s) in samples.iter().enumerate() {
            if s.image.dimensions() != (w, h) || s.mask.dimensions() != (w, h) {
                return Err(Error::Shape {
                    what: format!("sample {i}"),
                    expected: format!("{w}×{h} like the first sample"),
                    got: vec![s.image.height() as usize, s.image.width() as usize],
                });
            }
            images.extend(norm.values(&s.image));
            masks.extend(s.mask.pixels().map(|p| if p[0] > 0 { 1f32 } else { 0.0 }));
        }
        let n = samples.len();
        let (h, w) = (h as usize, w as usize);
        Ok(Batch {
            images: Tensor::from_vec(images, (n, 3, h, w), device)?,
            masks: Tensor::from_vec(masks, (n, h, w), device)?,
            labels: samples.iter().map(|s| s.label).collect(),
        })
    }

    /// The labels as a target: explain each image's own class.
    pub fn target(&self) -> Target {
        Target::per_image(self.labels.iter().copied())
    }
}
