//! gaze's side of `tools/bench/speed.py`: the model zoo's forward pass and forward pass plus the
//! gradient of one logit per image with respect to the input, timed at a given batch size.
//!
//! `gaze-speed MODEL BATCH REPS` builds `vgg16`, `resnet50` or `xception` at full size with random
//! weights (He-normal convolutions and linear layers, batch norms with random statistics), draws an
//! input of `BATCH` images at the model's size, and prints one JSON line per mode:
//! `{"model": ..., "batch": ..., "mode": "forward" | "forward-backward", "seconds": [...]}` with the
//! wall-clock seconds of `REPS` calls after one warm-up call.
//! The forward pass runs untracked (no gradient); forward-backward makes the input a variable, sums
//! logit 3 over the batch and runs the backward pass, as PyTorch's `y[:, 3].sum().backward()`.
//! The process calls `gaze_engine::ops::tune_process` first, as gaze's binaries do.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use gaze_models::{Classifier, ResNet, ResNetConfig, Vgg16, Vgg16Config, VggLayout, Xception, XceptionConfig};
use serde_json::json;

type AnyResult<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Builds a model twice: once to learn its parameters' names and shapes, once from random values.
fn build<M: Classifier + 'static>(
    f: impl Fn(VarBuilder) -> candle_core::Result<M>,
    dev: &Device,
) -> AnyResult<Box<dyn Classifier>> {
    let shapes = VarMap::new();
    f(VarBuilder::from_varmap(&shapes, DType::F32, dev)).map_err(err("listing the parameters"))?;
    let mut values = HashMap::new();
    let data = shapes.data().lock().map_err(|_| "the parameter map's lock is poisoned".to_string())?;
    for (name, var) in data.iter() {
        let shape = var.shape().clone();
        let t = if name.ends_with("running_var") {
            Tensor::rand(0.5f32, 1.5, &shape, dev)
        } else if name.ends_with("weight") && shape.rank() > 1 {
            let fan_in: usize = shape.dims()[1..].iter().product();
            Tensor::randn(0f32, (2.0 / fan_in as f64).sqrt() as f32, &shape, dev)
        } else {
            Tensor::randn(0f32, 0.1, &shape, dev)
        };
        values.insert(name.clone(), t.map_err(err(name))?);
    }
    Ok(Box::new(f(VarBuilder::from_tensors(values, DType::F32, dev)).map_err(err("building the model"))?))
}

fn model(name: &str, dev: &Device) -> AnyResult<Box<dyn Classifier>> {
    match name {
        "vgg16" => build(|vb| Vgg16::new(Vgg16Config::imagenet(VggLayout::Torchvision), vb), dev),
        "resnet50" => build(|vb| ResNet::new(ResNetConfig::resnet50(), vb), dev),
        "xception" => build(|vb| Xception::new(XceptionConfig::imagenet(), vb), dev),
        other => Err(format!("unknown model `{other}`; valid: vgg16, resnet50, xception")),
    }
}

fn times(reps: usize, mut f: impl FnMut() -> AnyResult<()>) -> AnyResult<Vec<f64>> {
    f()?;
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

fn run(args: &[String]) -> AnyResult<()> {
    let [name, batch, reps] = args else {
        return Err("usage: gaze-speed vgg16|resnet50|xception BATCH REPS".into());
    };
    let count = |what: &str, v: &str| -> AnyResult<usize> {
        match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("{what} `{v}` is not a whole number of at least 1")),
        }
    };
    let (batch, reps) = (count("BATCH", batch)?, count("REPS", reps)?);
    let dev = Device::Cpu;
    let model = model(name, &dev)?;
    let [c, h, w] = model.input_shape();
    let x = Tensor::randn(0f32, 1.0, (batch, c, h, w), &dev).map_err(err("the input"))?;
    let forward = times(reps, || model.forward(&x).map(drop).map_err(err("forward")))?;
    let backward = times(reps, || {
        let v = Var::from_tensor(&x).map_err(err("the input variable"))?;
        let logits = model.forward(v.as_tensor()).map_err(err("forward"))?;
        let score = logits.narrow(1, 3, 1).and_then(|s| s.sum_all()).map_err(err("the score"))?;
        let grads = score.backward().map_err(err("backward"))?;
        grads.get(v.as_tensor()).map(drop).ok_or_else(|| "no gradient for the input".to_string())
    })?;
    for (mode, seconds) in [("forward", forward), ("forward-backward", backward)] {
        println!("{}", json!({ "model": name, "batch": batch, "mode": mode, "seconds": seconds }));
    }
    Ok(())
}

fn main() {
    gaze_engine::ops::tune_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("gaze-speed: {e}");
        std::process::exit(1);
    }
}
