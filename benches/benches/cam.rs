//! The CAM family on randomly initialised ImageNet-sized VGG16 and ResNet-50: Grad-CAM at batch 1
//! and 8, Score-CAM and Ablation-CAM at batch 1.
//!
//! Names follow `{device}_{method}_{model}_b{batch}_{size}`.
//! The input side is 224 unless `GAZE_BENCH_CAM_SIZE` says otherwise (Score-CAM runs one forward
//! pass per channel of the layer, 512 on VGG16 and 2048 on ResNet-50, so on a CPU one iteration
//! takes minutes at 224; filter with criterion's name argument, e.g. `cargo bench --bench cam gradcam`).
//! The weights are random: the cost of a method does not depend on their values.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use criterion::{criterion_group, criterion_main, Criterion};
use gaze_benches::{bench_device, device_name, timed};
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_engine::TapModel;
use gaze_models::{ResNet, ResNetConfig, Vgg16, Vgg16Config, VggLayout};

/// Random weights for any requested tensor: He-scaled normal weights, zero biases and running
/// means, unit batch-norm scales and running variances.
struct RandomInit;

impl SimpleBackend for RandomInit {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let dims = s.dims();
        if name.ends_with("running_var") || (name.ends_with("weight") && dims.len() == 1) {
            return Tensor::ones(s, dtype, dev);
        }
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

fn bench_cam(c: &mut Criterion) {
    let device = or_panic(bench_device(), "no benchmark device");
    let dev = device_name(&device);
    let size: usize = std::env::var("GAZE_BENCH_CAM_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(224);
    let vb = || VarBuilder::from_backend(Box::new(RandomInit), DType::F32, device.clone());
    let mut vgg_config = Vgg16Config::imagenet(VggLayout::Torchvision);
    vgg_config.input_size = size;
    let vgg = or_panic(Vgg16::new(vgg_config, vb()), "cannot build VGG16");
    let mut resnet_config = ResNetConfig::resnet50();
    resnet_config.input_size = size;
    let resnet = or_panic(ResNet::new(resnet_config, vb()), "cannot build ResNet-50");
    let models: [(&str, &dyn TapModel, &str); 2] = [("vgg16", &vgg, "features.29"), ("resnet50", &resnet, "layer4")];

    let mut group = c.benchmark_group("cam");
    group.sample_size(10);
    for (model_name, model, layer) in models {
        let runs =
            [(CamMethod::GradCam, 1), (CamMethod::GradCam, 8), (CamMethod::ScoreCam, 1), (CamMethod::AblationCam, 1)];
        for (method, batch) in runs {
            let input = or_panic(Tensor::randn(0f32, 1.0, (batch, 3, size, size), &device), "cannot make an input");
            let cam = or_panic(Cam::new(CamConfig::new(method, [layer])), "bad configuration");
            let target = Target::top_class();
            let name = format!("{dev}_{}_{model_name}_b{batch}_{size}", method.name());
            group.bench_function(name, |bench| {
                bench.iter_custom(|iters| {
                    timed(&device, iters, || {
                        cam.explain(model, &input, &target).map(drop).map_err(candle_core::Error::wrap)
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_cam);
criterion_main!(benches);
