//! gaze's side of `cargo xtask bench --peers`: a worker that loads models once and then runs one
//! timed method call per request, so that the driver can alternate it with the Python peers' worker
//! (`tools/bench/peers.py serve`), each side in its own process.
//!
//! It reads one JSON request per line on standard input and answers one JSON line on standard
//! output:
//! - `{"cmd": "load", "name": N, "kind": "vgg16", "weights": FILE, "inputs": FILE}` loads a
//!   checkpoint and the tensors `input` and `background` of a safetensors file;
//! - `{"cmd": "macs", "name": N, "tails": [LAYER, ...]}` counts the model's multiply-accumulates at
//!   the input's size, in all and after each layer;
//! - `{"cmd": "run", "name": N, "method": M, "settings": {...}}` runs method `M` once and answers
//!   its seconds, the peak resident memory during the call and the L1 norm of the result;
//! - `{"cmd": "matmul", "n": 2048, "reps": 3}` times an `n × n × n` product with the engine's gemm;
//! - `{"cmd": "quit"}`.
//!
//! Errors are answered as `{"error": "..."}`; the worker goes on with the next request.
//! The device is the one `GAZE_BENCH_DEVICE` names (`cpu` or `cuda`); the driver sets the threads
//! through `GAZE_NUM_THREADS` (the engine's ops) and `RAYON_NUM_THREADS`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use gaze_benches::macs::count_macs;
use gaze_benches::memory::{peak_rss_kib, reset_peak_rss, rss_kib};
use gaze_benches::{bench_device, device_name};
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Attribution, Explainer, Target};
use gaze_engine::{probe, ProbeRequest};
use gaze_expected_gradients::{ExpectedGradients, Space};
use gaze_integrated_gradients::IntegratedGradients;
use gaze_models::{Classifier, ModelKind};
use gaze_occlusion::{Fill, Occlusion, OcclusionConfig};
use gaze_saliency::{Gradient, GuidedGradCam};
use gaze_smoothgrad::{Noise, SmoothGrad};
use serde_json::{json, Value};

type AnyResult<T> = Result<T, String>;

struct Loaded {
    model: Box<dyn Classifier>,
    weights: HashMap<String, Vec<usize>>,
    input: Tensor,
    background: Option<Tensor>,
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn field<'a>(v: &'a Value, key: &str) -> AnyResult<&'a Value> {
    v.get(key).ok_or_else(|| format!("the request has no `{key}`: {v}"))
}

fn text<'a>(v: &'a Value, key: &str) -> AnyResult<&'a str> {
    field(v, key)?.as_str().ok_or_else(|| format!("`{key}` must be a string in {v}"))
}

fn count(v: &Value, key: &str) -> AnyResult<usize> {
    field(v, key)?.as_u64().map(|n| n as usize).ok_or_else(|| format!("`{key}` must be a whole number in {v}"))
}

fn number(v: &Value, key: &str) -> AnyResult<f64> {
    field(v, key)?.as_f64().ok_or_else(|| format!("`{key}` must be a number in {v}"))
}

/// The shapes of every tensor of a safetensors file, by name.
fn weight_shapes(path: &Path) -> AnyResult<HashMap<String, Vec<usize>>> {
    let bytes = std::fs::read(path).map_err(err(&format!("reading {}", path.display())))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(err(&format!("{}", path.display())))?;
    Ok(meta.tensors().into_iter().map(|(k, info)| (k, info.shape.clone())).collect())
}

fn load(req: &Value, device: &Device) -> AnyResult<Loaded> {
    let kind: ModelKind = text(req, "kind")?.parse().map_err(err("kind"))?;
    let weights = Path::new(text(req, "weights")?);
    let model = gaze_models::load(kind, Some(weights), device).map_err(err("loading the model"))?;
    let inputs = Path::new(text(req, "inputs")?);
    let mut tensors = candle_core::safetensors::load(inputs, device).map_err(err(&format!("{}", inputs.display())))?;
    let input = tensors.remove("input").ok_or_else(|| format!("{} has no tensor `input`", inputs.display()))?;
    let input = input.to_dtype(DType::F32).map_err(err("input"))?;
    let background =
        tensors.remove("background").map(|b| b.to_dtype(DType::F32)).transpose().map_err(err("background"))?;
    Ok(Loaded { model, weights: weight_shapes(weights)?, input, background })
}

/// The input of a call: the loaded image, repeated to `batch_copies` images when the settings
/// give that number.
fn batch_input(s: &Value, x: &Tensor) -> AnyResult<Tensor> {
    match s.get("batch_copies") {
        None => Ok(x.clone()),
        Some(_) => {
            let n = count(s, "batch_copies")?.max(1);
            x.repeat((n, 1, 1, 1)).map_err(err("repeating the input"))
        }
    }
}

/// One call of `method` on the loaded model and input; the result's L1 norm and shape.
fn call(method: &str, s: &Value, m: &Loaded) -> AnyResult<Tensor> {
    let model = m.model.as_ref();
    let x = &batch_input(s, &m.input)?;
    let target = || -> AnyResult<Target> { Ok(Target::classes([count(s, "target")?])) };
    let attr = |r: gaze_core::Result<Attribution>| r.map(|a| a.values).map_err(err(method));
    let cam = |method: CamMethod| -> AnyResult<Tensor> {
        let mut config = CamConfig::new(method, [text(s, "layer")?]);
        if s.get("batch").is_some() {
            config = config.with_batch(count(s, "batch")?);
        }
        let cam = Cam::new(config).map_err(err("the CAM configuration"))?;
        attr(cam.explain_display(model, x, &target()?))
    };
    match method {
        "forward" => model.forward(x).map_err(err(method)),
        "forward-backward" => {
            let p = probe(model, x, &target()?, &ProbeRequest::input()).map_err(err(method))?;
            p.input_gradient.ok_or_else(|| "the probe returned no input gradient".to_string())
        }
        "gradcam" => cam(CamMethod::GradCam),
        "scorecam" => cam(CamMethod::ScoreCam),
        "ablationcam" => cam(CamMethod::AblationCam),
        "saliency" => attr(Gradient::saliency().with_abs(true).explain(model, x, &target()?)),
        "gradient-x-input" => attr(Gradient::gradient_x_input().explain(model, x, &target()?)),
        "guided-backprop" => attr(Gradient::guided_backprop().explain(model, x, &target()?)),
        "deconvnet" => attr(Gradient::deconvnet().explain(model, x, &target()?)),
        "guided-gradcam" => attr(GuidedGradCam::new(text(s, "layer")?).explain(model, x, &target()?)),
        "integrated-gradients" => {
            attr(IntegratedGradients::default().with_steps(count(s, "steps")?).with_batch(count(s, "batch")?).explain(
                model,
                x,
                &target()?,
            ))
        }
        "smoothgrad" => attr(
            SmoothGrad::new(Gradient::saliency().with_abs(true))
                .with_samples(count(s, "samples")?)
                .with_noise(Noise::Sigma(number(s, "stdev")?))
                .with_seed(count(s, "seed")? as u64)
                .with_batch(count(s, "batch")?)
                .explain(model, x, &target()?),
        ),
        "expected-gradients" => {
            let background = m.background.clone().ok_or_else(|| "the inputs file has no `background`".to_string())?;
            attr(
                ExpectedGradients::new(background)
                    .with_space(Space::Layer(text(s, "layer")?.to_string()))
                    .with_samples(count(s, "samples")?)
                    .with_seed(count(s, "seed")? as u64)
                    .with_batch(count(s, "batch")?)
                    .explain(model, x, &Target::top(count(s, "ranked")?)),
            )
        }
        "occlusion" => {
            let (w, st) = (count(s, "window")?, count(s, "stride")?);
            let config =
                OcclusionConfig::captum((w, w), (st, st)).with_fill(Fill::Constant(0.0)).with_batch(count(s, "batch")?);
            let occlusion = Occlusion::new(config);
            // As `gaze explain` does: only what each window changes is recomputed, where the model
            // describes its stages.
            match model.incremental() {
                Some(inc) => {
                    occlusion.explain_incremental(inc, x, &target()?).map(|(a, _)| a.values).map_err(err(method))
                }
                None => attr(occlusion.explain(model, x, &target()?)),
            }
        }
        other => Err(format!("unknown method `{other}`; valid: {}", METHODS.join(", "))),
    }
}

/// The methods [`call`] runs.
const METHODS: [&str; 14] = [
    "forward",
    "forward-backward",
    "gradcam",
    "scorecam",
    "ablationcam",
    "saliency",
    "gradient-x-input",
    "guided-backprop",
    "deconvnet",
    "guided-gradcam",
    "integrated-gradients",
    "smoothgrad",
    "expected-gradients",
    "occlusion",
];

fn run(req: &Value, models: &HashMap<String, Loaded>, device: &Device) -> AnyResult<Value> {
    let name = text(req, "name")?;
    let m = models.get(name).ok_or_else(|| format!("no model `{name}` is loaded"))?;
    let method = text(req, "method")?;
    let settings = field(req, "settings")?;
    let before = rss_kib();
    let reset = reset_peak_rss();
    let start = Instant::now();
    let out = call(method, settings, m)?;
    device.synchronize().map_err(err("synchronising the device"))?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_rss_kib();
    let l1 = out
        .to_dtype(DType::F64)
        .and_then(|t| t.abs())
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(err("the result's norm"))?;
    Ok(json!({
        "seconds": seconds,
        "rss_before_kib": before,
        "peak_rss_kib": peak,
        "peak_is_per_call": reset,
        "l1": l1,
        "shape": out.dims(),
    }))
}

fn macs(req: &Value, models: &HashMap<String, Loaded>) -> AnyResult<Value> {
    let name = text(req, "name")?;
    let m = models.get(name).ok_or_else(|| format!("no model `{name}` is loaded"))?;
    let (_, c, h, w) = m.input.dims4().map_err(err("input"))?;
    let counted = count_macs(m.model.as_ref(), &m.weights, [c, h, w]).map_err(err("counting"))?;
    let mut tails = serde_json::Map::new();
    for layer in field(req, "tails")?.as_array().ok_or("`tails` must be a list")? {
        let layer = layer.as_str().ok_or("`tails` must hold layer names")?;
        tails.insert(layer.to_string(), json!(counted.tail(layer).map_err(err("tail"))?));
    }
    Ok(json!({ "total": counted.total(), "tails": tails, "layers": counted.layers }))
}

fn matmul(req: &Value, device: &Device) -> AnyResult<Value> {
    let n = count(req, "n")?;
    let reps = count(req, "reps")?.max(1);
    let a = Tensor::randn(0f32, 1.0, (n, n), device).map_err(err("matmul operand"))?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device).map_err(err("matmul operand"))?;
    let mut seconds = Vec::with_capacity(reps);
    // One untimed product first, so the threads and the kernel's buffers exist.
    for i in 0..=reps {
        let start = Instant::now();
        let c = gaze_engine::ops::linear(&a, &b, None).map_err(err("matmul"))?;
        device.synchronize().map_err(err("synchronising the device"))?;
        let t = start.elapsed().as_secs_f64();
        drop(c);
        if i > 0 {
            seconds.push(t);
        }
    }
    // The thread count the ops were asked for; the engine reads the same variable.
    let threads = std::env::var("GAZE_NUM_THREADS").ok();
    Ok(json!({ "seconds": seconds, "threads": threads }))
}

fn main() {
    // As gaze's binaries do: candle's elementwise ops on the calling thread, freed memory kept.
    gaze_engine::ops::tune_process();
    let device = match bench_device() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gaze-bench-runner: no device: {e}");
            std::process::exit(1);
        }
    };
    let mut models: HashMap<String, Loaded> = HashMap::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => l,
            Err(e) => {
                eprintln!("gaze-bench-runner: reading a request: {e}");
                std::process::exit(1);
            }
        };
        let answer = match serde_json::from_str::<Value>(&line) {
            Err(e) => Err(format!("not a JSON request ({e}): {line}")),
            Ok(req) => match req.get("cmd").and_then(Value::as_str) {
                Some("load") => text(&req, "name").and_then(|name| {
                    let loaded = load(&req, &device)?;
                    models.insert(name.to_string(), loaded);
                    Ok(json!({ "ok": true, "device": device_name(&device), "rss_kib": rss_kib() }))
                }),
                Some("macs") => macs(&req, &models),
                Some("run") => run(&req, &models, &device),
                Some("matmul") => matmul(&req, &device),
                Some("quit") => break,
                other => Err(format!("unknown cmd {other:?}; valid: load, macs, run, matmul, quit")),
            },
        };
        let reply = answer.unwrap_or_else(|e| json!({ "error": e }));
        if writeln!(stdout, "{reply}").and_then(|_| stdout.flush()).is_err() {
            // The driver has gone away: nothing is left to answer.
            return;
        }
    }
}
