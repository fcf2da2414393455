//! The gradient attributions on a small randomly initialised VGG16 (every width divided by 4, a
//! 256-wide head, 64 × 64 inputs): saliency, integrated gradients with 16 steps, SmoothGrad with 8
//! samples and expected gradients with 8 samples, in input space and in the layer space of
//! `features.9` (VGG16's `block2_pool`).
//!
//! Names follow `{device}_{method}_{model}_b{batch}_{size}`, where `b` is the number of images.
//! The input side is 64 unless `GAZE_BENCH_GRAD_SIZE` says otherwise.
//! The weights are random: the cost of a method does not depend on their values.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use criterion::{criterion_group, criterion_main, Criterion};
use gaze_benches::{bench_device, device_name, timed};
use gaze_core::{Explainer, Target};
use gaze_expected_gradients::{ExpectedGradients, Space};
use gaze_integrated_gradients::IntegratedGradients;
use gaze_models::{Vgg16, Vgg16Config, VggLayout};
use gaze_saliency::Gradient;
use gaze_smoothgrad::{Noise, SmoothGrad};

/// Random weights for any requested tensor: He-scaled normal weights and zero biases.
struct RandomInit;

impl SimpleBackend for RandomInit {
    fn get(&self, s: Shape, _: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let dims = s.dims();
        if dims.len() < 2 {
            return Tensor::zeros(s, dtype, dev);
        }
        let fan_in: usize = dims[1..].iter().product();
        let std = (2.0 / fan_in.max(1) as f64).sqrt();
        Tensor::randn(0f32, std as f32, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn or_panic<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn bench_gradients(c: &mut Criterion) {
    let device = or_panic(bench_device(), "no benchmark device");
    let dev = device_name(&device);
    let size: usize = std::env::var("GAZE_BENCH_GRAD_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let mut config = Vgg16Config::imagenet(VggLayout::Torchvision);
    config.widths.iter_mut().for_each(|w| *w /= 4);
    config.hidden = [256, 256];
    config.input_size = size;
    let vb = VarBuilder::from_backend(Box::new(RandomInit), DType::F32, device.clone());
    let model = or_panic(Vgg16::new(config, vb), "cannot build the small VGG16");
    let model_name = "vgg16w4";
    let background = or_panic(Tensor::randn(0f32, 1.0, (8, 3, size, size), &device), "cannot make a background");

    let methods: Vec<(&str, Box<dyn Explainer<Vgg16>>)> = vec![
        ("saliency", Box::new(Gradient::saliency())),
        ("integrated-gradients-16", Box::new(IntegratedGradients::default().with_steps(16).with_batch(32))),
        (
            "smoothgrad-8",
            Box::new(SmoothGrad::new(Gradient::saliency()).with_samples(8).with_noise(Noise::Fraction(0.15))),
        ),
        ("expected-gradients-8", Box::new(ExpectedGradients::new(background.clone()).with_samples(8))),
        (
            "expected-gradients-8-layer-space",
            Box::new(
                ExpectedGradients::new(background).with_samples(8).with_space(Space::LayerSpace("features.9".into())),
            ),
        ),
    ];

    let mut group = c.benchmark_group("gradients");
    group.sample_size(10);
    for batch in [1usize, 4] {
        let input = or_panic(Tensor::randn(0f32, 1.0, (batch, 3, size, size), &device), "cannot make an input");
        let target = Target::top_class();
        for (name, method) in &methods {
            group.bench_function(format!("{dev}_{name}_{model_name}_b{batch}_{size}"), |bench| {
                bench.iter_custom(|iters| {
                    timed(&device, iters, || {
                        method.explain(&model, &input, &target).map(drop).map_err(candle_core::Error::wrap)
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_gradients);
criterion_main!(benches);
