//! The model zoo at full size with random weights, batch 1: VGG16 and ResNet-50 at 224 × 224,
//! Xception at 299 × 299.
//! For each: the forward pass, forward plus the gradient of one logit with respect to the input,
//! and forward plus the gradient at the default CAM layer (what Grad-CAM needs).
//! Names follow `{device}_{what}_{model}_b{batch}_{size}`.

use candle_core::{DType, Device, IndexOp, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use criterion::{criterion_group, criterion_main, Criterion};
use gaze_benches::{bench_device, device_name, timed};
use gaze_engine::Taps;
use gaze_models::{Classifier, ResNet, ResNetConfig, Vgg16, Vgg16Config, VggLayout, Xception, XceptionConfig};

/// Weights drawn on demand, He-normal for convolutions and linear layers, batch norms at their
/// identity (mean 0, variance 1, weight 1, bias 0), biases 0: no checkpoint to read, and the
/// activations keep a sensible scale through the whole network.
struct RandomInit;

impl SimpleBackend for RandomInit {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let dims = s.dims();
        let t = if name.ends_with("running_var") || (name.ends_with("weight") && dims.len() == 1) {
            Tensor::ones(s, dtype, dev)?
        } else if dims.len() == 1 {
            Tensor::zeros(s, dtype, dev)?
        } else {
            let fan_in: usize = dims[1..].iter().product();
            Tensor::randn(0f32, (2.0 / fan_in as f64).sqrt() as f32, s, dev)?.to_dtype(dtype)?
        };
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights have no shape of their own; `{name}` needs one")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn weights(device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(RandomInit), DType::F32, device.clone())
}

fn models(device: &Device) -> Vec<(&'static str, Box<dyn Classifier>)> {
    let build = || -> Result<Vec<(&'static str, Box<dyn Classifier>)>> {
        Ok(vec![
            ("vgg16", Box::new(Vgg16::new(Vgg16Config::imagenet(VggLayout::Torchvision), weights(device))?)),
            ("resnet50", Box::new(ResNet::new(ResNetConfig::resnet50(), weights(device))?)),
            ("xception", Box::new(Xception::new(XceptionConfig::imagenet(), weights(device))?)),
        ])
    };
    match build() {
        Ok(m) => m,
        Err(e) => panic!("cannot build the models: {e}"),
    }
}

fn wrap(e: gaze_core::Error) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

fn bench_models(c: &mut Criterion) {
    let device = match bench_device() {
        Ok(d) => d,
        Err(e) => panic!("no benchmark device: {e}"),
    };
    let dev = device_name(&device);
    let mut group = c.benchmark_group("models");
    group.sample_size(10);
    for (name, model) in models(&device) {
        let [ch, h, w] = model.input_shape();
        let x = match Tensor::randn(0f32, 1.0, (1, ch, h, w), &device) {
            Ok(x) => x,
            Err(e) => panic!("cannot make an input: {e}"),
        };
        let id = |what: &str| format!("{dev}_{what}_{name}_b1_{h}");

        group.bench_function(id("forward"), |b| {
            b.iter_custom(|iters| timed(&device, iters, || model.forward(&x).map(drop).map_err(wrap)))
        });

        let xv = match Var::from_tensor(&x) {
            Ok(v) => v,
            Err(e) => panic!("cannot make a variable: {e}"),
        };
        group.bench_function(id("forward_backward_input"), |b| {
            b.iter_custom(|iters| {
                timed(&device, iters, || {
                    let logits = model.forward(xv.as_tensor()).map_err(wrap)?;
                    let grads = logits.i((0, 0))?.backward()?;
                    drop(grads.get(xv.as_tensor()).cloned());
                    Ok(())
                })
            })
        });

        let layer = model.default_layer().unwrap_or_else(|| panic!("{name} has no default layer"));
        group.bench_function(id("forward_backward_layer"), |b| {
            b.iter_custom(|iters| {
                timed(&device, iters, || {
                    let mut taps = Taps::none().gradient(layer.clone());
                    let logits = model.forward_taps(&x, &mut taps).map_err(wrap)?;
                    let grads = logits.i((0, 0))?.backward()?;
                    let var =
                        taps.grad_var(&layer).ok_or_else(|| candle_core::Error::Msg(format!("no tap at {layer}")))?;
                    drop(grads.get(var.as_tensor()).cloned());
                    Ok(())
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_models);
criterion_main!(benches);
