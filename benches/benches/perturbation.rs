//! Perturbation methods: occlusion by full re-computation against incremental re-computation, and
//! RISE.
//!
//! Names follow `{device}_{method}_{model}_b{batch}_{size}`, where `b` is the number of perturbed
//! copies per forward pass.
//! - `vgglike`: a small VGG-like chain built here (conv 16, 16, pool, 32, 32, pool, 64, 64, pool,
//!   global average pooling, linear), 64×64 inputs, 8×8 windows with stride 4 (225 windows).
//! - `vgg16`: VGG16 with random weights at `GAZE_BENCH_PERTURBATION_SIZE` (64 by default; 224 is
//!   the setting, 729 windows of 16×16 with stride 8, minutes per iteration on a CPU),
//!   16×16 windows with stride 8.
//!
//! The incremental runs print the share of each stage they recomputed once, before timing.
//! The weights are random: the cost does not depend on their values.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use criterion::{criterion_group, criterion_main, Criterion};
use gaze_benches::{bench_device, device_name, timed};
use gaze_core::{Explainer, Result, Target};
use gaze_engine::ops::{self, Conv2dConfig, Pool2dConfig, ReluMode};
use gaze_engine::{TapModel, Taps};
use gaze_models::{Vgg16, Vgg16Config, VggLayout};
use gaze_occlusion::incremental::{Geometry, Incremental, Stage};
use gaze_occlusion::{Fill, Occlusion, OcclusionConfig};
use gaze_rise::{Rise, RiseConfig};

/// He-scaled normal weights and zero biases for any requested tensor.
struct RandomInit;

impl SimpleBackend for RandomInit {
    fn get(&self, s: Shape, _: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let dims = s.dims();
        if dims.len() < 2 {
            return Tensor::zeros(s, dtype, dev);
        }
        let fan_in: usize = dims[1..].iter().product();
        Tensor::randn(0f32, (2.0 / fan_in.max(1) as f32).sqrt(), s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The VGG-like chain: `None` is a 2×2 max pool.
const WIDTHS: [Option<usize>; 9] = [Some(16), Some(16), None, Some(32), Some(32), None, Some(64), Some(64), None];

struct VggLike {
    convs: Vec<(Tensor, Tensor)>,
    fc: (Tensor, Tensor),
    device: Device,
}

impl VggLike {
    fn new(device: &Device) -> candle_core::Result<Self> {
        let mut convs = Vec::new();
        let mut cin = 3;
        for cout in WIDTHS.iter().flatten() {
            let std = (2.0 / (cin * 9) as f32).sqrt();
            convs.push((
                Tensor::randn(0f32, std, (*cout, cin, 3, 3), device)?,
                Tensor::zeros(*cout, DType::F32, device)?,
            ));
            cin = *cout;
        }
        let fc = (Tensor::randn(0f32, 0.1, (10, cin), device)?, Tensor::zeros(10, DType::F32, device)?);
        Ok(VggLike { convs, fc, device: device.clone() })
    }

    /// The trunk item of stage `index`: `Some(conv)` or `None` for a pool.
    fn item(&self, index: usize) -> Option<&(Tensor, Tensor)> {
        WIDTHS[index].map(|_| &self.convs[WIDTHS[..index].iter().flatten().count()])
    }

    fn stage(&self, index: usize, x: &Tensor, padding: usize) -> Result<Tensor> {
        match self.item(index) {
            Some((w, b)) => {
                let y = ops::conv2d(x, w, Some(b), Conv2dConfig { padding: (padding, padding), ..Default::default() })?;
                ops::relu(&y, ReluMode::Normal)
            }
            None => ops::max_pool2d(x, Pool2dConfig::new(2, 2)),
        }
    }
}

impl TapModel for VggLike {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let mut x = x.clone();
        for i in 0..WIDTHS.len() {
            x = taps.tap(&format!("stage{i}"), self.stage(i, &x, 1)?)?;
        }
        self.head(&x)
    }

    fn layer_names(&self) -> Vec<String> {
        (0..WIDTHS.len()).map(|i| format!("stage{i}")).collect()
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 64, 64]
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

impl Incremental for VggLike {
    fn stages(&self) -> Vec<Stage> {
        WIDTHS
            .iter()
            .enumerate()
            .map(|(i, w)| match w {
                Some(_) => Stage::conv(format!("stage{i}"), Geometry::square(3, 1, 1)),
                None => Stage::max_pool(format!("stage{i}"), Geometry::square(2, 2, 0)),
            })
            .collect()
    }

    fn run_stage(&self, index: usize, inputs: &[Tensor]) -> Result<Tensor> {
        self.stage(index, &inputs[0], 0)
    }

    fn run_stage_padded(&self, index: usize, _: &Stage, inputs: &[Tensor]) -> Result<Tensor> {
        self.stage(index, &inputs[0], 1)
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        let x = ops::adaptive_avg_pool2d(features, (1, 1))?.flatten_from(1)?;
        ops::linear(&x, &self.fc.0, Some(&self.fc.1))
    }
}

fn or_panic<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Benchmarks occlusion on `model` both ways, after printing the incremental shares once.
fn bench_occlusion<M: TapModel + Incremental>(
    c: &mut Criterion,
    device: &Device,
    model: &M,
    name: &str,
    size: usize,
    config: OcclusionConfig,
) {
    let dev = device_name(device);
    let x = or_panic(Tensor::rand(0f32, 1.0, (1, 3, size, size), device), "input");
    let target = Target::top_class();
    let occ = Occlusion::new(config);
    let b = occ.config.batch;
    let (_, report) = or_panic(occ.explain_incremental(model, &x, &target), "incremental occlusion");
    let shares: Vec<String> = report.stages.iter().map(|s| format!("{} {:.3}", s.name, s.share)).collect();
    println!("{name} at {size}: shares recomputed: {}", shares.join(", "));
    let mut group = c.benchmark_group("perturbation");
    group.sample_size(10);
    group.bench_function(format!("{dev}_occlusion-full_{name}_b{b}_{size}"), |bench| {
        bench.iter_custom(|iters| {
            timed(device, iters, || {
                occ.explain(model, &x, &target).map(drop).map_err(|e| candle_core::Error::Msg(e.to_string()))
            })
        })
    });
    group.bench_function(format!("{dev}_occlusion-incremental_{name}_b{b}_{size}"), |bench| {
        bench.iter_custom(|iters| {
            timed(device, iters, || {
                occ.explain_incremental(model, &x, &target)
                    .map(drop)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            })
        })
    });
    group.finish();
}

fn bench_perturbation(c: &mut Criterion) {
    let device = or_panic(bench_device(), "no benchmark device");
    let dev = device_name(&device);
    let small = or_panic(VggLike::new(&device), "cannot build the VGG-like model");
    let config = OcclusionConfig::captum((8, 8), (4, 4)).with_fill(Fill::Constant(0.0)).with_batch(32);
    bench_occlusion(c, &device, &small, "vgglike", 64, config);

    let size: usize = std::env::var("GAZE_BENCH_PERTURBATION_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let mut vgg_config = Vgg16Config::imagenet(VggLayout::Torchvision);
    vgg_config.input_size = size;
    let vb = VarBuilder::from_backend(Box::new(RandomInit), DType::F32, device.clone());
    let vgg = or_panic(Vgg16::new(vgg_config, vb), "cannot build VGG16");
    let config = OcclusionConfig::captum((16, 16), (8, 8)).with_fill(Fill::Constant(0.0)).with_batch(32);
    bench_occlusion(c, &device, &vgg, "vgg16", size, config);

    let x = or_panic(Tensor::rand(0f32, 1.0, (1, 3, 64, 64), &device), "input");
    let rise = Rise::new(RiseConfig { masks: 256, grid: 7, batch: 64, ..RiseConfig::default() });
    let mut group = c.benchmark_group("perturbation");
    group.sample_size(10);
    group.bench_function(format!("{dev}_rise_vgglike_b64_64"), |bench| {
        bench.iter_custom(|iters| {
            timed(&device, iters, || {
                rise.explain(&small, &x, &Target::top_class())
                    .map(drop)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_perturbation);
criterion_main!(benches);
