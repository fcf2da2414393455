//! `cargo xtask bench`: the criterion suites of `benches/`, and with `--peers` gaze and the Python
//! peers side by side on the same weights, the same input and the same settings.
//!
//! The criterion suites run through `cargo bench -p gaze-benches --bench <suite>`; their results
//! are read back from criterion's files.
//! The side-by-side run starts two worker processes, gaze's `gaze-bench-runner` (built in release
//! mode) and `tools/bench/peers.py serve` (in the golden virtual environment), which load the same
//! random full-size checkpoints once and then answer one timed call per request; the calls of the
//! two sides alternate run after run, so that a slow spell of a shared machine hits both, and the
//! side that goes first alternates too (from one call to the next), so that neither side always
//! starts right after the other's call, while that side's threads may still be spinning.
//! Each call reports its seconds, its peak resident memory (the process's high-water mark, reset
//! before the call) and the L1 norm of its result.
//! Every figure gets a physical yardstick: the multiply-accumulates the method needs at least
//! (counted from the model's layers at the input size) and the machine's measured f32 matrix
//! multiply throughput (a 2048³ product on each side), so a time also reads as a fraction of the
//! achievable peak.
//!
//! Results go to `target/bench/<suite>-<device>.json` and `.md` (`<suite>-<device>-quick.*` for a
//! `--quick` run, so that the latest full run and the latest smoke run are both kept), the
//! batch-size plot of a side-by-side run to `docs/images/bench-batch-<device>[-quick].png`, and the
//! section between `<!-- bench:begin -->` and `<!-- bench:end -->` of `docs/benchmarks.md` is
//! rewritten from every result file there.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::golden;

/// The side of the comparison that is gaze, and the one that is the Python peer.
const SIDES: [&str; 2] = ["gaze", "peer"];
const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";
/// The class every method explains: ImageNet's `tabby` (the weights are random, so any class
/// does; a fixed one keeps the two sides' work identical).
const TARGET: usize = 281;
const MATMUL_N: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

impl DeviceArg {
    fn name(self) -> &'static str {
        match self {
            DeviceArg::Cpu => "cpu",
            DeviceArg::Cuda => "cuda",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Criterion suites to run (file stems of benches/benches/*.rs, comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    suite: Vec<String>,
    /// The device both sides run on; `cuda` builds the suites and the worker with `--features cuda`.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Also time gaze against the Python peers (Captum, pytorch-grad-cam, shap) side by side.
    #[arg(long)]
    peers: bool,
    /// Only the side-by-side run (implies --peers): no criterion suite.
    #[arg(long)]
    peers_only: bool,
    /// Fewer runs and samples, and criterion's quick mode: a smoke run that finishes in minutes.
    #[arg(long)]
    quick: bool,
    /// Timed runs per method and side (default 5, or 2 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Threads for both sides (gaze's GAZE_NUM_THREADS, torch.set_num_threads); default: every core.
    #[arg(long)]
    threads: Option<usize>,
    /// The Python interpreter that creates the virtual environment.
    #[arg(long, default_value = "python3")]
    python: String,
    /// A sentence on the conditions of this run (other load on the machine, say), kept with the results.
    #[arg(long)]
    note: Option<String>,
    /// Run nothing: rewrite the section of docs/benchmarks.md from the results already in target/bench.
    #[arg(long)]
    report_only: bool,
    /// The batch sizes of the side-by-side run's time-per-image sweep (forward, forward+backward,
    /// Grad-CAM and saliency at each), plotted to docs/images/.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    batches: Vec<usize>,
    /// No batch-size sweep.
    #[arg(long)]
    no_sweep: bool,
    /// The models of the side-by-side run (comma-separated); all when absent: vgg16, resnet50, xception.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let threads = match args.threads {
        Some(0) => bail!("--threads 0: give at least 1 thread"),
        Some(t) => t,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    check_args(args)?;
    let out_dir = root.join("target").join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    if args.report_only {
        update_doc(root, &out_dir)?;
        println!("bench: docs/benchmarks.md rewritten from target/bench");
        return Ok(());
    }
    let machine = machine(args.device, threads);
    if !args.peers_only {
        for suite in suites(root, &args.suite)? {
            let report = criterion_suite(root, &suite, args, threads, &machine)?;
            write_report(&out_dir, &report)?;
        }
    }
    if args.peers || args.peers_only {
        let report = peers(root, args, threads, &machine)?;
        write_report(&out_dir, &report)?;
    }
    update_doc(root, &out_dir)?;
    println!("bench: results in target/bench, tables in docs/benchmarks.md");
    Ok(())
}

/// Checks the options that concern what runs, before the first suite runs rather than when the
/// run reaches them.
fn check_args(args: &Args) -> Result<()> {
    let side_by_side = args.peers || args.peers_only;
    if args.report_only && (side_by_side || !args.models.is_empty()) {
        bail!("--report-only rewrites docs/benchmarks.md from the results already in target/bench; it runs nothing, so --peers, --peers-only and --models do not apply");
    }
    if !args.models.is_empty() && !side_by_side {
        bail!("--models chooses the models of the side-by-side run; add --peers or --peers-only");
    }
    chosen_models(&args.models)?;
    if args.runs == Some(0) {
        bail!("--runs 0: give at least 1 timed run");
    }
    if args.batches.contains(&0) {
        bail!("--batches: a batch size of 0; give sizes of 1 or more, or --no-sweep");
    }
    Ok(())
}

// ---------------------------------------------------------------- the machine

fn first_line(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string()).filter(|l| !l.is_empty())
}

/// The CPU model, its cores and threads, memory, the GPU where one is used.
fn machine(device: DeviceArg, threads: usize) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let mut cores = std::collections::BTreeSet::new();
    let mut phys = String::new();
    for line in cpuinfo.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "physical id" => phys = v.trim().to_string(),
                "core id" => {
                    cores.insert((phys.clone(), v.trim().to_string()));
                }
                _ => {}
            }
        }
    }
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0);
    let gpu = match device {
        DeviceArg::Cuda => {
            first_line(Command::new("nvidia-smi").args(["--query-gpu=name,memory.total", "--format=csv,noheader"]))
        }
        DeviceArg::Cpu => None,
    };
    json!({
        "cpu": model,
        "logical_cpus": logical,
        "physical_cores": if cores.is_empty() { None } else { Some(cores.len()) },
        "threads": threads,
        "memory_gib": memory_gib.map(|g| (g * 10.0).round() / 10.0),
        "gpu": gpu,
        "kernel": first_line(Command::new("uname").arg("-r")),
        "rustc": first_line(Command::new("rustc").arg("--version")),
    })
}

/// The machine in one line; `sides` says that the thread count is each side's.
fn describe_machine(m: &Value, sides: bool) -> String {
    let mut s = m["cpu"].as_str().unwrap_or("unknown CPU").to_string();
    if let Some(c) = m["physical_cores"].as_u64() {
        s += &format!(", {c} cores");
    }
    s += &format!(", {} logical CPUs", m["logical_cpus"]);
    if let Some(g) = m["memory_gib"].as_f64() {
        s += &format!(", {g} GiB memory");
    }
    if let Some(g) = m["gpu"].as_str() {
        s += &format!("; GPU {g}");
    }
    s += &format!("; {} threads{}", m["threads"], if sides { " per side" } else { "" });
    s
}

// ---------------------------------------------------------------- criterion suites

/// The criterion suites asked for: every `benches/benches/*.rs` when `wanted` is empty.
fn suites(root: &Path, wanted: &[String]) -> Result<Vec<String>> {
    let dir = root.join("benches").join("benches");
    let mut all: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    all.sort();
    let wanted: Vec<String> = wanted.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if wanted.is_empty() {
        return Ok(all);
    }
    for w in &wanted {
        if !all.contains(w) {
            bail!("unknown suite `{w}` in --suite; valid: {}", all.join(", "));
        }
    }
    Ok(wanted)
}

fn criterion_suite(root: &Path, suite: &str, args: &Args, threads: usize, machine: &Value) -> Result<Value> {
    let device = args.device.name();
    let criterion_home = root.join("target").join("criterion");
    let started = SystemTime::now();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(["bench", "-p", "gaze-benches", "--bench", suite]);
    if args.device == DeviceArg::Cuda {
        cmd.args(["--features", "cuda"]);
    }
    cmd.arg("--").arg("--noplot");
    if args.quick {
        // Criterion's quick mode stops after one iteration once an iteration outlasts the
        // measurement time.
        cmd.args(["--quick", "--warm-up-time", "0.1", "--measurement-time", "0.1"]);
    }
    cmd.env("GAZE_BENCH_DEVICE", device)
        .env("GAZE_NUM_THREADS", threads.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("CRITERION_HOME", &criterion_home);
    if args.quick && std::env::var_os("GAZE_BENCH_CAM_SIZE").is_none() {
        // The cam suite's Score-CAM runs one forward pass per channel: at 224 a single iteration
        // takes minutes on a CPU, so a quick run takes the other suites' 64.
        cmd.env("GAZE_BENCH_CAM_SIZE", "64");
    }
    println!("bench: criterion suite `{suite}` on {device}");
    run_status(cmd, &format!("cargo bench --bench {suite}"))?;
    let mut rows = Vec::new();
    collect_criterion(&criterion_home, started, &mut rows)?;
    rows.sort_by(|a: &Value, b: &Value| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(json!({
        "suite": suite,
        "device": device,
        "quick": args.quick,
        "machine": machine,
        "command": command_line(args, Some(suite)),
        "note": args.note,
        "benchmarks": rows,
    }))
}

/// Every benchmark under `dir` that criterion wrote after `since`: its median and the fastest and
/// slowest iteration, in seconds.
fn collect_criterion(dir: &Path, since: SystemTime, rows: &mut Vec<Value>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let bench = path.join("new").join("benchmark.json");
        let fresh = fs::metadata(&bench).and_then(|m| m.modified()).map(|t| t >= since).unwrap_or(false);
        if fresh {
            let read = |name: &str| -> Result<Value> {
                let p = path.join("new").join(name);
                serde_json::from_str(&fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
                    .with_context(|| format!("parsing {}", p.display()))
            };
            let (info, estimates, sample) = (read("benchmark.json")?, read("estimates.json")?, read("sample.json")?);
            let per_iter: Vec<f64> = sample["iters"]
                .as_array()
                .zip(sample["times"].as_array())
                .map(|(i, t)| i.iter().zip(t).filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?)).collect())
                .unwrap_or_default();
            let ns = 1e-9;
            rows.push(json!({
                "id": info["full_id"],
                "median_s": estimates["median"]["point_estimate"].as_f64().map(|v| v * ns),
                "min_s": per_iter.iter().cloned().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v)))).map(|v| v * ns),
                "max_s": per_iter.iter().cloned().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))).map(|v| v * ns),
                "iterations": sample["iters"].as_array().map(|i| i.iter().filter_map(Value::as_f64).sum::<f64>()),
            }));
        } else {
            collect_criterion(&path, since, rows)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- side by side

/// One method of the side-by-side run, with the settings both sides get.
struct Case {
    /// The row's name: the method, with the batch when it is not 1.
    name: String,
    /// The method both workers run.
    method: &'static str,
    settings: Value,
    /// A short human description of the settings.
    label: String,
    /// The least multiply-accumulates the method needs, from the forward's count `f` and the tail
    /// after the method's layer `tail`.
    macs: Rc<dyn Fn(f64, f64) -> f64>,
    /// The layer whose tail `macs` takes, if any.
    tail_layer: Option<&'static str>,
    /// Images per call (copies of the input), for the time per image of the batch-size sweep.
    images: usize,
    /// A row of the batch-size sweep rather than of the main table.
    sweep: bool,
}

/// The layers of a model that the side-by-side run uses.
#[derive(Debug)]
struct ModelPlan {
    name: &'static str,
    /// The side of the square input the model is explained at (its ImageNet preprocessing).
    size: usize,
    /// The layer Grad-CAM explains (pytorch-grad-cam's `target_layers`), and its channels.
    cam_layer: &'static str,
    cam_channels: usize,
    /// A 64-channel layer for the perturbation CAMs of a quick run (one forward pass per channel).
    quick_cam_layer: &'static str,
    /// The layer expected gradients explains, as gaze names its tap, and the module whose input it
    /// is, as shap's `(model, layer)` takes it.
    eg_layer: &'static str,
    eg_module: &'static str,
    /// Captum's ReLU hooks compute something else than guided backprop and deconvnet on this model
    /// (see `docs/methods/guided-backprop.md`): the rows' labels say so.
    captum_relu_hooks_differ: bool,
    /// Methods this model's run leaves out, with the reason the report gives.
    skip: &'static [&'static str],
    skip_reason: &'static str,
}

const MODELS: [ModelPlan; 3] = [
    ModelPlan {
        name: "vgg16",
        size: 224,
        cam_layer: "features.29",
        cam_channels: 512,
        quick_cam_layer: "features.4",
        eg_layer: "features.6",
        eg_module: "features.7",
        captum_relu_hooks_differ: false,
        skip: &[],
        skip_reason: "",
    },
    ModelPlan {
        name: "resnet50",
        size: 224,
        cam_layer: "layer4",
        cam_channels: 2048,
        quick_cam_layer: "maxpool",
        eg_layer: "layer1",
        eg_module: "layer2",
        captum_relu_hooks_differ: false,
        skip: &[],
        skip_reason: "",
    },
    // timm's `legacy_xception`, the layout gaze's Xception loads, at its 299 × 299 input; Grad-CAM
    // at `act4`, the exit flow's last ReLU (Keras's `block14_sepconv2_act`, the tutorials' layer).
    ModelPlan {
        name: "xception",
        size: 299,
        cam_layer: "act4",
        cam_channels: 2048,
        quick_cam_layer: "act2",
        eg_layer: "block1",
        eg_module: "block2",
        captum_relu_hooks_differ: true,
        skip: &["scorecam", "ablationcam", "occlusion"],
        skip_reason: "one forward pass per channel of `act4` (2048) or per window (1296 at 299 × 299): \
                      minutes per call and side, and the same kernels as the rows kept",
    },
];

/// The models a run covers: those `--models` names, in the order of [`MODELS`], or all of them.
fn chosen_models(wanted: &[String]) -> Result<Vec<&'static ModelPlan>> {
    let valid: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    if let Some(bad) = wanted.iter().find(|w| !valid.contains(&w.as_str())) {
        bail!("--models: unknown model `{bad}`; valid: {}", valid.join(", "));
    }
    Ok(MODELS.iter().filter(|m| wanted.is_empty() || wanted.iter().any(|w| w == m.name)).collect())
}

/// The methods the batch-size sweep times at each batch size, with the settings and work of their
/// batch-1 cases.
const SWEEP_METHODS: [&str; 4] = ["forward", "forward-backward", "gradcam", "saliency"];

impl ModelPlan {
    /// Every layer whose tail a case counts.
    fn tails(&self) -> [&'static str; 3] {
        [self.cam_layer, self.quick_cam_layer, self.eg_layer]
    }
}

fn case(method: &'static str, settings: Value, label: String, macs: impl Fn(f64, f64) -> f64 + 'static) -> Case {
    Case {
        name: method.to_string(),
        method,
        settings,
        label,
        macs: Rc::new(macs),
        tail_layer: None,
        images: 1,
        sweep: false,
    }
}

fn cases(plan: &ModelPlan, quick: bool, sweep: &[usize]) -> Vec<Case> {
    let t = TARGET;
    // Full settings follow the issues and the peers' defaults; quick ones keep every method but
    // shrink its sample count.
    let (steps, ig_batch) = if quick { (4, 4) } else { (50, 16) };
    let (sg_samples, sg_batch) = if quick { (4, 4) } else { (80, 16) };
    let (eg_samples, eg_batch) = if quick { (2, 2) } else { (50, 16) };
    let (window, stride, occ_batch) = if quick { (112, 112, 4) } else { (16, 8, 16) };
    // Score-CAM and Ablation-CAM run once per channel of their layer: a quick run takes a
    // 64-channel layer near the input, a full one the deep layer Grad-CAM explains.
    let (pcam_layer, pcam_channels) =
        if quick { (plan.quick_cam_layer, 64) } else { (plan.cam_layer, plan.cam_channels) };
    let windows = |size: usize| ((size - window).div_ceil(stride) + 1).pow(2) as f64;
    let occ_windows = windows(plan.size);
    let ranked = 2;
    let cam_layer = plan.cam_layer;
    let mut v = vec![
        case("forward", json!({ "target": t }), "logits".into(), |f, _| f),
        case("forward-backward", json!({ "target": t }), "gradient of one logit to the input".into(), |f, _| 2.0 * f),
        Case {
            tail_layer: Some(cam_layer),
            ..case(
                "gradcam",
                json!({ "target": t, "layer": cam_layer }),
                format!("pytorch-grad-cam GradCAM at {cam_layer}, map resized to the input"),
                |f, tail| f + tail,
            )
        },
        Case {
            name: "gradcam b8".into(),
            tail_layer: Some(cam_layer),
            images: 8,
            ..case(
                "gradcam",
                json!({ "target": t, "layer": cam_layer, "batch_copies": 8 }),
                format!("pytorch-grad-cam GradCAM at {cam_layer}, a batch of 8 images, one target each"),
                |f, tail| 8.0 * (f + tail),
            )
        },
        Case {
            tail_layer: Some(pcam_layer),
            ..case(
                "scorecam",
                json!({ "target": t, "layer": pcam_layer, "batch": 16 }),
                format!("pytorch-grad-cam ScoreCAM at {pcam_layer} ({pcam_channels} channels), batch 16"),
                move |f, _| f * (pcam_channels as f64 + 1.0),
            )
        },
        Case {
            tail_layer: Some(pcam_layer),
            ..case(
                "ablationcam",
                json!({ "target": t, "layer": pcam_layer, "batch": 32 }),
                format!(
                    "pytorch-grad-cam AblationCAM at {pcam_layer} ({pcam_channels} channels), batch 32 (gaze runs only the tail per copy)"
                ),
                move |f, tail| f + pcam_channels as f64 * tail,
            )
        },
        case("saliency", json!({ "target": t }), "Captum Saliency (abs)".into(), |f, _| 2.0 * f),
        case("gradient-x-input", json!({ "target": t }), "Captum InputXGradient".into(), |f, _| 2.0 * f),
        case("guided-backprop", json!({ "target": t }), "Captum GuidedBackprop".into(), |f, _| 2.0 * f),
        case("deconvnet", json!({ "target": t }), "Captum Deconvolution".into(), |f, _| 2.0 * f),
        Case {
            tail_layer: Some(cam_layer),
            ..case(
                "guided-gradcam",
                json!({ "target": t, "layer": cam_layer }),
                format!("Captum GuidedGradCam at {cam_layer} (nearest upsampling)"),
                |f, tail| 2.0 * f + tail,
            )
        },
        case(
            "integrated-gradients",
            json!({ "target": t, "steps": steps, "batch": ig_batch }),
            format!("Captum, {steps} steps Gauss-Legendre, internal batch {ig_batch}"),
            move |f, _| 2.0 * f * steps as f64,
        ),
        case(
            "smoothgrad",
            json!({ "target": t, "samples": sg_samples, "batch": sg_batch, "stdev": 0.5, "seed": 0 }),
            format!("Captum NoiseTunnel(Saliency), {sg_samples} samples, σ 0.5, batch {sg_batch}"),
            move |f, _| 2.0 * f * sg_samples as f64,
        ),
        Case {
            tail_layer: Some(plan.eg_layer),
            ..case(
                "expected-gradients",
                json!({
                    "target": t, "samples": eg_samples, "batch": eg_batch, "ranked": ranked, "seed": 0,
                    "layer": plan.eg_layer, "peer_module": plan.eg_module,
                }),
                format!(
                    "shap GradientExplainer at the input of {} ({} in gaze), {eg_samples} samples, top {ranked}, 4 background images",
                    plan.eg_module, plan.eg_layer
                ),
                move |f, tail| (ranked * eg_samples) as f64 * (f + tail),
            )
        },
        case(
            "occlusion",
            json!({ "target": t, "window": window, "stride": stride, "batch": occ_batch }),
            format!(
                "Captum Occlusion, window {window}, stride {stride} ({occ_windows} windows), zero fill, {occ_batch} per eval (gaze recomputes only what a window changes)"
            ),
            move |f, _| f * (occ_windows + 1.0),
        ),
    ];
    v.retain(|c| !plan.skip.contains(&c.method));
    if plan.captum_relu_hooks_differ {
        for c in v.iter_mut().filter(|c| ["guided-backprop", "deconvnet", "guided-gradcam"].contains(&c.method)) {
            c.label += "; Captum's hooks differ from the method here, the same passes";
        }
    }
    // The sweep: time per image against batch size, for the methods whose cost is one pass or two,
    // each with its batch-1 case's settings on `b` copies of the input and `b` times its work.
    let mut swept = Vec::new();
    for &b in sweep {
        for one in v.iter().filter(|c| c.images == 1 && SWEEP_METHODS.contains(&c.method)) {
            let mut settings = one.settings.clone();
            settings["batch_copies"] = json!(b);
            let macs = Rc::clone(&one.macs);
            swept.push(Case {
                name: format!("{} b{b}", one.method),
                method: one.method,
                settings,
                label: format!("batch-size sweep, {b} images"),
                macs: Rc::new(move |f, tail| b as f64 * macs(f, tail)),
                tail_layer: one.tail_layer,
                images: b,
                sweep: true,
            });
        }
    }
    v.extend(swept);
    v
}

/// A worker process that answers one JSON line per request.
struct Worker {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(name: &'static str, mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("starting the {name} worker"))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin for the {name} worker"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout for the {name} worker"))?);
        Ok(Worker { name, child, stdin, stdout })
    }

    /// Sends `req` and returns the reply; a reply with `error` is an `Err` carrying the message.
    fn ask(&mut self, req: &Value) -> Result<std::result::Result<Value, String>> {
        writeln!(self.stdin, "{req}")
            .and_then(|_| self.stdin.flush())
            .with_context(|| format!("writing to the {} worker", self.name))?;
        loop {
            let mut line = String::new();
            let n =
                self.stdout.read_line(&mut line).with_context(|| format!("reading from the {} worker", self.name))?;
            if n == 0 {
                bail!("the {} worker exited (request: {req})", self.name);
            }
            // Libraries may print to standard output: only a JSON object is a reply.
            match serde_json::from_str::<Value>(line.trim()) {
                Ok(v) if v.is_object() => {
                    return Ok(match v.get("error").and_then(Value::as_str) {
                        Some(e) => Err(e.to_string()),
                        None => Ok(v),
                    })
                }
                _ => eprintln!("bench: {} worker printed: {}", self.name, line.trim_end()),
            }
        }
    }

    /// [`ask`](Worker::ask) for requests whose failure ends the run.
    fn must(&mut self, req: &Value) -> Result<Value> {
        self.ask(req)?.map_err(|e| anyhow!("the {} worker failed on {req}: {e}", self.name))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({ "cmd": "quit" }));
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[n / 2]),
        n => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn peers(root: &Path, args: &Args, threads: usize, machine: &Value) -> Result<Value> {
    let device = args.device.name();
    let runs = args.runs.unwrap_or(if args.quick { 2 } else { 5 });
    if runs == 0 {
        bail!("--runs 0: give at least 1 timed run");
    }
    if args.batches.contains(&0) {
        bail!("--batches: a batch size of 0; give sizes of 1 or more, or --no-sweep");
    }
    let sweep: Vec<usize> = if args.no_sweep { Vec::new() } else { args.batches.clone() };
    let plans = chosen_models(&args.models)?;
    let python = golden::ensure_venv(root, &args.python)?;
    let data = root.join("target").join("bench").join("peers");
    let inputs = |size: usize| data.join(format!("inputs-{size}.safetensors"));
    let weights = |m: &str| data.join(format!("{m}.safetensors"));
    // The shared weights and inputs, written once per input size for the models that lack them
    // (each model's seed is its place in `MODELS`, so a file written later is the same file).
    let mut sizes: Vec<usize> = plans.iter().map(|p| p.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in sizes {
        let missing: Vec<&str> =
            plans.iter().filter(|p| p.size == size && !weights(p.name).exists()).map(|p| p.name).collect();
        if missing.is_empty() && inputs(size).exists() {
            continue;
        }
        println!("bench: writing the shared random weights and {size}×{size} inputs to target/bench/peers");
        let mut cmd = Command::new(&python);
        cmd.arg(root.join("tools").join("bench").join("peers.py"))
            .args(["prepare", "--size", &size.to_string(), "--models"])
            .arg(missing.join(","))
            .arg("--out")
            .arg(&data)
            .current_dir(root);
        run_status(cmd, "tools/bench/peers.py prepare")?;
    }

    println!("bench: building gaze-bench-runner (release)");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(root).args(["build", "--release", "-p", "gaze-benches", "--bin", "gaze-bench-runner"]);
    if args.device == DeviceArg::Cuda {
        build.args(["--features", "cuda"]);
    }
    run_status(build, "cargo build --release --bin gaze-bench-runner")?;
    let runner = root.join("target").join("release").join(format!("gaze-bench-runner{}", std::env::consts::EXE_SUFFIX));

    let t = threads.to_string();
    let mut gaze_cmd = Command::new(&runner);
    gaze_cmd
        .current_dir(root)
        .env("GAZE_BENCH_DEVICE", device)
        .env("GAZE_NUM_THREADS", &t)
        .env("RAYON_NUM_THREADS", &t);
    let mut peer_cmd = Command::new(&python);
    peer_cmd
        .arg(root.join("tools").join("bench").join("peers.py"))
        .args(["serve", "--device", device, "--threads", &t])
        .current_dir(root)
        .envs([
            ("OMP_NUM_THREADS", t.as_str()),
            ("MKL_NUM_THREADS", t.as_str()),
            ("TQDM_DISABLE", "1"),
            // Captum warns on every call that it switched on the input's gradient.
            ("PYTHONWARNINGS", "ignore::UserWarning"),
        ]);
    if args.device == DeviceArg::Cpu {
        peer_cmd.env("CUDA_VISIBLE_DEVICES", "");
    }
    let mut workers = [Worker::start("gaze", gaze_cmd)?, Worker::start("peer", peer_cmd)?];

    let mut versions = json!(null);
    let mut macs: BTreeMap<&str, Value> = BTreeMap::new();
    for plan in &plans {
        let load = json!({
            "cmd": "load", "name": plan.name, "kind": plan.name,
            "weights": weights(plan.name), "inputs": inputs(plan.size),
        });
        for w in workers.iter_mut() {
            let reply = w.must(&load)?;
            if w.name == "peer" {
                versions = reply["versions"].clone();
            }
        }
        let counted = workers[0].must(&json!({ "cmd": "macs", "name": plan.name, "tails": plan.tails() }))?;
        macs.insert(plan.name, counted);
    }

    // The yardstick: an f32 product of two 2048 × 2048 matrices on each side.
    let reps = if args.quick { 3 } else { 5 };
    let mut matmul = serde_json::Map::new();
    let mut best: f64 = 0.0;
    for w in workers.iter_mut() {
        let reply = w.must(&json!({ "cmd": "matmul", "n": MATMUL_N, "reps": reps }))?;
        let secs: Vec<f64> =
            reply["seconds"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        let m = median(&secs).ok_or_else(|| anyhow!("the {} worker timed no product", w.name))?;
        let flops = 2.0 * (MATMUL_N as f64).powi(3) / m;
        best = best.max(flops);
        matmul.insert(w.name.into(), json!({ "median_s": m, "gflops": flops / 1e9, "threads": reply["threads"] }));
    }
    matmul.insert("peak_gflops".into(), json!(best / 1e9));

    let mut rows = Vec::new();
    let mut case_count = 0usize;
    for plan in &plans {
        let f = macs[plan.name]["total"].as_f64().unwrap_or(0.0);
        let tail = |layer: &str| macs[plan.name]["tails"][layer].as_f64().unwrap_or(0.0);
        // A warm-up per model and side: threads, allocator and caches exist before the first timing.
        for w in workers.iter_mut() {
            w.must(&json!({ "cmd": "run", "name": plan.name, "method": "forward-backward", "settings": { "target": TARGET } }))?;
        }
        let warmups = cases(plan, true, &[]);
        for case in cases(plan, args.quick, &sweep) {
            let req = json!({ "cmd": "run", "name": plan.name, "method": case.method, "settings": case.settings });
            println!("bench: {} {} ({runs} runs per side)", plan.name, case.name);
            if !args.quick && !case.sweep {
                // A first call of the method at the quick settings: its code paths and buffers are
                // warm, at a fraction of a full call's time.
                if let Some(w) = warmups.iter().find(|w| w.name == case.name) {
                    let warm = json!({ "cmd": "run", "name": plan.name, "method": w.method, "settings": w.settings });
                    for worker in workers.iter_mut() {
                        let _ = worker.ask(&warm)?;
                    }
                }
            }
            let mut results: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
            let mut errors: [Option<String>; 2] = [None, None];
            for _ in 0..runs {
                // Which side goes first alternates from run to run (and case to case), so that
                // neither side always starts while the other's threads are still winding down.
                let first = case_count % 2;
                case_count += 1;
                for i in [first, 1 - first] {
                    let w = &mut workers[i];
                    if errors[i].is_some() {
                        continue;
                    }
                    match w.ask(&req)? {
                        Ok(v) => results[i].push(v),
                        Err(e) => {
                            eprintln!("bench: {} {} {}: {e}", w.name, plan.name, case.name);
                            errors[i] = Some(e);
                        }
                    }
                }
            }
            let layer_tail = case.tail_layer.map(tail).unwrap_or(0.0);
            let nominal = (case.macs)(f, layer_tail);
            let mut sides = serde_json::Map::new();
            for (i, side) in SIDES.iter().enumerate() {
                let secs: Vec<f64> = results[i].iter().filter_map(|r| r["seconds"].as_f64()).collect();
                let med = median(&secs);
                let peak = results[i].iter().filter_map(|r| r["peak_rss_kib"].as_u64()).max();
                // What the call added to the worker's resident memory (models and inputs excluded).
                let growth = results[i]
                    .iter()
                    .filter_map(|r| Some(r["peak_rss_kib"].as_u64()?.saturating_sub(r["rss_before_kib"].as_u64()?)))
                    .max();
                sides.insert(
                    (*side).into(),
                    json!({
                        "seconds": secs,
                        "median_s": med,
                        "min_s": secs.iter().cloned().reduce(f64::min),
                        "max_s": secs.iter().cloned().reduce(f64::max),
                        "peak_rss_mib": peak.map(|k| k as f64 / 1024.0),
                        "growth_rss_mib": growth.map(|k| k as f64 / 1024.0),
                        "gpu_peak_mib": results[i].iter().filter_map(|r| r["gpu_peak_bytes"].as_f64()).reduce(f64::max).map(|b| b / 1048576.0),
                        "peak_is_per_call": results[i].iter().all(|r| r["peak_is_per_call"].as_bool() == Some(true)),
                        "l1": results[i].last().map(|r| r["l1"].clone()),
                        "shape": results[i].last().map(|r| r["shape"].clone()),
                        "error": errors[i],
                        "peak_fraction": med.map(|m| 2.0 * nominal / m / best),
                    }),
                );
            }
            let ratio = match (sides["peer"]["median_s"].as_f64(), sides["gaze"]["median_s"].as_f64()) {
                (Some(p), Some(g)) if g > 0.0 => Some(p / g),
                _ => None,
            };
            // The two results' L1 norms agree for the deterministic methods when the settings match.
            let l1_diff = match (sides["gaze"]["l1"].as_f64(), sides["peer"]["l1"].as_f64()) {
                (Some(g), Some(p)) if g.abs().max(p.abs()) > 0.0 => Some((g - p).abs() / g.abs().max(p.abs())),
                _ => None,
            };
            rows.push(json!({
                "model": plan.name,
                "l1_rel_diff": l1_diff,
                "method": case.name,
                "call": case.method,
                "images": case.images,
                "sweep": case.sweep,
                "settings": case.settings,
                "label": case.label,
                "gmacs": nominal / 1e9,
                "gaze": sides["gaze"],
                "peer": sides["peer"],
                "ratio": ratio,
            }));
        }
    }
    Ok(json!({
        "suite": "peers",
        "device": device,
        "quick": args.quick,
        "runs": runs,
        "machine": machine,
        "versions": versions,
        "command": command_line(args, None),
        "note": args.note,
        "sizes": plans.iter().map(|p| (p.name.to_string(), json!(p.size))).collect::<serde_json::Map<_, _>>(),
        "skipped": plans
            .iter()
            .filter(|p| !p.skip.is_empty())
            .map(|p| (p.name.to_string(), json!({ "methods": p.skip, "reason": p.skip_reason })))
            .collect::<serde_json::Map<_, _>>(),
        "target": TARGET,
        "macs": macs.iter().map(|(k, v)| (k.to_string(), v["total"].clone())).collect::<serde_json::Map<_, _>>(),
        "matmul": matmul,
        "rows": rows,
    }))
}

// ---------------------------------------------------------------- reports

fn command_line(args: &Args, suite: Option<&str>) -> String {
    let mut s = String::from("cargo xtask bench");
    match suite {
        Some(suite) => s += &format!(" --suite {suite}"),
        None => s += " --peers-only",
    }
    if args.device == DeviceArg::Cuda {
        s += " --device cuda";
    }
    if args.quick {
        s += " --quick";
    }
    if let Some(r) = args.runs {
        s += &format!(" --runs {r}");
    }
    if let Some(t) = args.threads {
        s += &format!(" --threads {t}");
    }
    if suite.is_none() && !args.models.is_empty() {
        s += &format!(" --models {}", args.models.join(","));
    }
    s
}

fn secs(v: &Value) -> String {
    match v.as_f64() {
        None => "–".into(),
        Some(s) if s >= 10.0 => format!("{s:.1}"),
        Some(s) if s >= 0.1 => format!("{s:.2}"),
        Some(s) if s >= 1e-3 => format!("{:.2} ms", s * 1e3),
        Some(s) => format!("{:.1} µs", s * 1e6),
    }
}

fn timing(side: &Value) -> String {
    if let Some(e) = side["error"].as_str() {
        let short: String = e.chars().take(60).collect();
        return format!("failed: {short}");
    }
    format!("{} ({}–{})", secs(&side["median_s"]), secs(&side["min_s"]), secs(&side["max_s"]))
}

/// The peak resident memory of a side, with what the call added in parentheses.
fn mib(side: &Value) -> String {
    match (side["peak_rss_mib"].as_f64(), side["growth_rss_mib"].as_f64()) {
        (Some(p), Some(g)) => format!("{p:.0} (+{g:.0})"),
        (Some(p), None) => format!("{p:.0}"),
        _ => "–".into(),
    }
}

fn percent(v: &Value) -> String {
    v.as_f64().map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_else(|| "–".into())
}

/// The Markdown of one result file.
fn markdown(report: &Value) -> String {
    let mut s = String::new();
    let suite = report["suite"].as_str().unwrap_or("?");
    let device = report["device"].as_str().unwrap_or("?");
    let quick = if report["quick"].as_bool() == Some(true) { ", quick" } else { "" };
    s += &format!("### `{suite}` on {device}{quick}\n\n");
    s += &format!("Machine: {}.\n", describe_machine(&report["machine"], suite == "peers"));
    s += &format!("Command: `{}`.\n", report["command"].as_str().unwrap_or(""));
    if let Some(note) = report["note"].as_str() {
        s += &format!("Conditions: {note}\n");
    }
    s += "\n";
    if suite == "peers" {
        let mm = &report["matmul"];
        s += &format!(
            "Yardstick: an f32 {n}×{n}×{n} product takes {} s in gaze's gemm ({:.0} GFLOP/s) and {} s in torch ({:.0} GFLOP/s); \
             the peak below is the faster, {:.0} GFLOP/s.\n",
            mm["gaze"]["median_s"].as_f64().map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into()),
            mm["gaze"]["gflops"].as_f64().unwrap_or(0.0),
            mm["peer"]["median_s"].as_f64().map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into()),
            mm["peer"]["gflops"].as_f64().unwrap_or(0.0),
            mm["peak_gflops"].as_f64().unwrap_or(0.0),
            n = MATMUL_N,
        );
        s += &format!(
            "Each row: {} per side after a warm-up, alternating gaze and the peer (which goes first alternates from call to call); seconds as median (min–max); \
             peer/gaze above 1 means gaze is faster; memory is the peak resident set of the worker process during the call, \
             with the models loaded, and in parentheses what the call added (MiB); L1 diff is the relative difference of the \
             two results' L1 norms, a check that both sides computed the same thing (near 0 for the deterministic methods; \
             SmoothGrad and expected gradients draw different samples); \
             GMAC is the least work the method needs (multiply-accumulates of the convolutions and linear layers, a backward pass \
             counted as one forward); % peak is that work's rate against the yardstick (above 100% when the machine was busier \
             while the yardstick ran than during the call).\n\n",
            match report["runs"].as_u64() {
                Some(1) => "1 timed run".to_string(),
                Some(n) => format!("{n} timed runs"),
                None => "timed runs".to_string(),
            }
        );
        if let Some(v) = report["versions"].as_object() {
            let v: Vec<String> = v.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?"))).collect();
            s += &format!("Peers: {}.\n\n", v.join(", "));
        }
        if let Some(sizes) = report["sizes"].as_object() {
            let v: Vec<String> =
                sizes.iter().map(|(k, v)| format!("{k} at {n}×{n}", n = v.as_u64().unwrap_or(0))).collect();
            s += &format!("Inputs: {}.\n", v.join(", "));
        }
        for (model, skipped) in report["skipped"].as_object().into_iter().flatten() {
            let methods: Vec<&str> =
                skipped["methods"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            s += &format!(
                "Not run on {model}: {} ({}).\n",
                methods.join(", "),
                skipped["reason"].as_str().unwrap_or("")
            );
        }
        s += "\n";
        s += "| model | method | gaze s | peer s | peer/gaze | gaze MiB | peer MiB | GMAC | gaze % peak | peer % peak | L1 diff | peer call |\n";
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        let rows: Vec<&Value> = report["rows"].as_array().into_iter().flatten().collect();
        let (sweep, main): (Vec<&Value>, Vec<&Value>) = rows.into_iter().partition(|r| r["sweep"] == true);
        for row in main {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
                row["model"].as_str().unwrap_or("?"),
                row["method"].as_str().unwrap_or("?"),
                timing(&row["gaze"]),
                timing(&row["peer"]),
                row["ratio"].as_f64().map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into()),
                mib(&row["gaze"]),
                mib(&row["peer"]),
                row["gmacs"].as_f64().unwrap_or(0.0),
                percent(&row["gaze"]["peak_fraction"]),
                percent(&row["peer"]["peak_fraction"]),
                row["l1_rel_diff"].as_f64().map(|d| format!("{d:.0e}")).unwrap_or_else(|| "–".into()),
                row["label"].as_str().unwrap_or(""),
            );
        }
        if !sweep.is_empty() {
            s += &format!(
                "\nTime per image against batch size (the same runs, each call on a batch of copies of the input; \
                 seconds per image as median; gaze solid, the peer dashed):\n\n![Seconds per image against batch size, gaze and the peers, for each model](images/{})\n\n",
                sweep_plot_name(report)
            );
            s += "| model | method | batch | gaze s/image | peer s/image | peer/gaze |\n|---|---|---|---|---|---|\n";
            for row in sweep {
                let images = row["images"].as_f64().unwrap_or(1.0).max(1.0);
                let per = |side: &str| row[side]["median_s"].as_f64().map(|m| json!(m / images)).unwrap_or(Value::Null);
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    row["model"].as_str().unwrap_or("?"),
                    row["call"].as_str().unwrap_or("?"),
                    images,
                    secs(&per("gaze")),
                    secs(&per("peer")),
                    row["ratio"].as_f64().map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into()),
                );
            }
        }
    } else {
        s += "| benchmark | median | min | max | iterations |\n|---|---|---|---|---|\n";
        for b in report["benchmarks"].as_array().into_iter().flatten() {
            s += &format!(
                "| `{}` | {} | {} | {} | {} |\n",
                b["id"].as_str().unwrap_or("?"),
                secs(&b["median_s"]),
                secs(&b["min_s"]),
                secs(&b["max_s"]),
                b["iterations"].as_f64().map(|i| format!("{i:.0}")).unwrap_or_else(|| "–".into()),
            );
        }
    }
    s
}

/// The file name of a side-by-side report's batch-size plot, in `docs/images/` and `target/bench/`.
fn sweep_plot_name(report: &Value) -> String {
    let quick = if report["quick"].as_bool() == Some(true) { "-quick" } else { "" };
    format!("bench-batch-{}{quick}.png", report["device"].as_str().unwrap_or("cpu"))
}

/// The batch-size sweep of a side-by-side report as one chart per model, stacked: seconds per image
/// against batch size, a colour per method, gaze solid and the peer dashed; `None` without a sweep.
fn sweep_plot(report: &Value) -> Result<Option<gaze_render::RgbaImage>> {
    use gaze_render::plot::TAB10;
    use gaze_render::{line_chart, LineChart, Series, XScale};

    let rows: Vec<&Value> = report["rows"].as_array().into_iter().flatten().filter(|r| r["sweep"] == true).collect();
    let mut models: Vec<&str> = rows.iter().filter_map(|r| r["model"].as_str()).collect();
    models.dedup();
    let mut charts = Vec::new();
    for model in models {
        let mut chart = LineChart::new(
            format!("{model}, {}: seconds per image", report["device"].as_str().unwrap_or("cpu")),
            "batch size (images per call)",
            "s / image",
        );
        chart.x_scale = XScale::Log2;
        for (k, method) in SWEEP_METHODS.iter().enumerate() {
            for (side, dashed) in [("gaze", false), ("peer", true)] {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r["model"] == model && r["call"] == *method)
                    .filter_map(|r| {
                        let images = r["images"].as_f64()?.max(1.0);
                        Some((images, r[side]["median_s"].as_f64()? / images))
                    })
                    .collect();
                if !points.is_empty() {
                    let who = if side == "gaze" { "gaze" } else { "peer" };
                    chart.series.push(Series {
                        label: format!("{method}, {who}"),
                        points,
                        color: TAB10[k % TAB10.len()],
                        dashed,
                    });
                }
            }
        }
        if chart.series.is_empty() {
            continue;
        }
        charts.push(line_chart(&chart).map_err(|e| anyhow!("drawing the batch-size plot: {e}"))?);
    }
    if charts.is_empty() {
        return Ok(None);
    }
    let width = charts.iter().map(|c| c.width()).max().unwrap_or(0);
    let height = charts.iter().map(|c| c.height()).sum();
    let mut out = gaze_render::RgbaImage::from_pixel(width, height, gaze_render::Rgba([255, 255, 255, 255]));
    let mut y = 0;
    for c in &charts {
        gaze_render::paste(&mut out, c, 0, y);
        y += c.height();
    }
    Ok(Some(out))
}

/// Writes a report's batch-size plot as `dir/<name>`, when the report has a sweep.
fn write_sweep_plot(dir: &Path, report: &Value) -> Result<()> {
    if let Some(img) = sweep_plot(report)? {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(sweep_plot_name(report));
        gaze_render::save_png(&path, &img, gaze_render::WriteOptions { overwrite: true })
            .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn write_report(dir: &Path, report: &Value) -> Result<()> {
    // A quick run keeps its own files, so a full run and a smoke run are both reported.
    let quick = if report["quick"].as_bool() == Some(true) { "-quick" } else { "" };
    let stem = format!(
        "{}-{}{quick}",
        report["suite"].as_str().unwrap_or("suite"),
        report["device"].as_str().unwrap_or("cpu")
    );
    let json_path = dir.join(format!("{stem}.json"));
    write_atomic(&json_path, &(serde_json::to_string_pretty(report)? + "\n"))?;
    let md = markdown(report);
    write_atomic(&dir.join(format!("{stem}.md")), &md)?;
    write_sweep_plot(dir, report)?;
    println!("\n{md}");
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Rewrites the section between the bench markers of `docs/benchmarks.md` from every result file in
/// `dir` (the side-by-side tables first), creating the file or the section when absent.
fn update_doc(root: &Path, dir: &Path) -> Result<()> {
    let mut reports: Vec<(bool, String, Value)> = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") {
            let v: Value =
                serde_json::from_str(&fs::read_to_string(&p)?).with_context(|| format!("parsing {}", p.display()))?;
            if v.get("suite").is_some() {
                write_sweep_plot(&root.join("docs").join("images"), &v)?;
                let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                reports.push((v["suite"] != "peers", stem, v));
            }
        }
    }
    reports.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let tables: Vec<String> = reports.iter().map(|(_, _, r)| markdown(r)).collect();
    let section = render_section(&tables);
    let path = root.join("docs").join("benchmarks.md");
    let old = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    write_atomic(&path, &replace_section(&old, &section))
}

fn render_section(tables: &[String]) -> String {
    let mut s = String::new();
    s += "## Side by side with the Python peers, and the criterion suites\n\n";
    s += "Written by `cargo xtask bench` (`xtask/src/bench.rs`); rerunning it replaces this section.\n";
    s += "Reproduce: `cargo xtask bench --peers` (every criterion suite and the side-by-side run), `cargo xtask bench --peers-only --quick` (the side-by-side smoke run, minutes), `cargo xtask bench --suite cam` (one suite), and `--device cuda` on a machine with a GPU (built with `--features cuda`); `cargo xtask bench --report-only` rewrites this section from the results in `target/bench`.\n";
    s += "The peers run in `target/golden-venv` (the versions pinned in `tools/requirements.txt`), from `tools/bench/peers.py`; gaze runs in its worker `gaze-bench-runner` (`benches/src/bin/`), built in release mode; both load the same random full-size checkpoints (torchvision's VGG16 and ResNet-50, timm's `legacy_xception`) and the same input (224×224, 299×299 for Xception) from `target/bench/peers/`.\n";
    s += "Times on a machine shared with other work drift; the ratio of each pair, timed in alternation, holds better than either time.\n";
    s += "A quick run uses a handful of samples per method (and runs Score-CAM and Ablation-CAM at a 64-channel layer near the input instead of the deep layer), so its ratios weigh fixed costs (explainer set-up, the peers' Python loops) more than a full run's.\n";
    s += "The batch-size sweep (`--batches`, default 1,2,4,8; `--no-sweep` skips it) times forward, forward+backward, Grad-CAM and saliency on batches of copies of the input and plots the seconds per image to `docs/images/bench-batch-<device>.png`.\n\n";
    if tables.is_empty() {
        s += "No results yet: run `cargo xtask bench`.\n";
    }
    for t in tables {
        s += t;
        s += "\n";
    }
    s
}

fn replace_section(old: &str, section: &str) -> String {
    let block = format!("{BEGIN}\n{}{END}", section);
    match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    }
}

fn run_status(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_between_its_markers_and_nothing_else_changes() {
        let doc = format!("# Benchmarks\n\nHot path prose.\n\n{BEGIN}\nold table\n{END}\n\nAfter.\n");
        let new = replace_section(&doc, "new table\n");
        assert_eq!(new, format!("# Benchmarks\n\nHot path prose.\n\n{BEGIN}\nnew table\n{END}\n\nAfter.\n"));
        // Without markers the section is appended.
        let appended = replace_section("# Benchmarks\n\nHot path.\n", "t\n");
        assert_eq!(appended, format!("# Benchmarks\n\nHot path.\n\n{BEGIN}\nt\n{END}\n"));
        // Running twice gives the same file.
        assert_eq!(replace_section(&appended, "t\n"), appended);
    }

    #[test]
    fn unknown_suites_are_errors_naming_the_valid_ones() {
        let root = crate::workspace_root();
        let err = suites(&root, &["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("`nope`") && err.contains("ops"), "{err}");
        assert_eq!(suites(&root, &["ops".into()]).unwrap(), ["ops"]);
        assert!(suites(&root, &[]).unwrap().contains(&"ops".to_string()));
    }

    #[test]
    fn models_are_chosen_by_name_and_unknown_ones_name_the_valid_ones() {
        let names = |w: &[&str]| -> Vec<&str> {
            let wanted: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            chosen_models(&wanted).unwrap().iter().map(|p| p.name).collect()
        };
        assert_eq!(names(&[]), ["vgg16", "resnet50", "xception"]);
        // The order is the table's, whatever the order asked.
        assert_eq!(names(&["xception", "vgg16"]), ["vgg16", "xception"]);
        let err = chosen_models(&["alexnet".into()]).unwrap_err().to_string();
        assert!(err.contains("`alexnet`") && err.contains("vgg16, resnet50, xception"), "{err}");
    }

    #[test]
    fn options_that_cannot_apply_fail_before_anything_runs() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let check = |line: &str| {
            let cli = <Cli as clap::Parser>::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()));
            check_args(&cli.expect("the options parse").args).map_err(|e| e.to_string())
        };
        let cases = [
            ("--models nosuch --peers-only", "unknown model `nosuch`"),
            ("--models vgg16", "add --peers or --peers-only"),
            ("--report-only --models vgg16", "--report-only rewrites"),
            ("--report-only --peers", "--report-only rewrites"),
            ("--peers --runs 0", "--runs 0"),
            ("--peers-only --batches 1,0", "a batch size of 0"),
        ];
        for (line, message) in cases {
            let err = check(line).unwrap_err();
            assert!(err.contains(message), "{line}: {err}");
        }
        for line in ["", "--report-only", "--peers-only --models xception --quick", "--suite ops"] {
            assert_eq!(check(line), Ok(()), "{line}");
        }
    }

    #[test]
    fn a_models_skipped_methods_have_no_case_and_its_windows_follow_its_size() {
        let xception = MODELS.iter().find(|p| p.name == "xception").unwrap();
        let all = cases(xception, false, &[1, 8]);
        for skipped in xception.skip {
            assert!(all.iter().all(|c| c.method != *skipped), "{skipped} was kept");
        }
        assert!(all.iter().any(|c| c.method == "gradcam" && c.settings["layer"] == "act4"));
        // A model that skips nothing keeps every method; occlusion counts its windows at 224.
        let vgg = cases(&MODELS[0], false, &[]);
        let occlusion = vgg.iter().find(|c| c.method == "occlusion").unwrap();
        assert!(occlusion.label.contains("(729 windows)"), "{}", occlusion.label);
        assert_eq!(vgg.len(), 15);
    }

    #[test]
    fn sweep_cases_are_their_batch_one_cases_on_copies_of_the_input() {
        let all = cases(&MODELS[0], true, &[2, 4]);
        let swept: Vec<&Case> = all.iter().filter(|c| c.sweep).collect();
        assert_eq!(swept.len(), 2 * SWEEP_METHODS.len());
        for c in swept {
            let one = all.iter().find(|o| !o.sweep && o.images == 1 && o.method == c.method).unwrap();
            let mut settings = one.settings.clone();
            settings["batch_copies"] = json!(c.images);
            assert_eq!(c.settings, settings, "{}", c.name);
            assert_eq!(c.tail_layer, one.tail_layer, "{}", c.name);
            assert_eq!((c.macs)(10.0, 3.0), c.images as f64 * (one.macs)(10.0, 3.0), "{}", c.name);
            assert_eq!(c.name, format!("{} b{}", c.method, c.images));
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_peers_table_has_a_row_per_method_with_the_ratio() {
        let side = |m: f64| json!({ "median_s": m, "min_s": m, "max_s": m, "peak_rss_mib": 100.0, "growth_rss_mib": 20.0, "peak_fraction": 0.25 });
        let report = json!({
            "suite": "peers", "device": "cpu", "quick": true, "runs": 2, "command": "cargo xtask bench --peers-only --quick",
            "machine": { "cpu": "Test CPU", "logical_cpus": 2, "physical_cores": 2, "threads": 2, "memory_gib": 4.0 },
            "matmul": { "gaze": { "median_s": 0.5, "gflops": 34.0 }, "peer": { "median_s": 0.4, "gflops": 43.0 }, "peak_gflops": 43.0 },
            "rows": [
                { "model": "vgg16", "method": "gradcam", "label": "x", "gmacs": 20.0, "gaze": side(1.0), "peer": side(3.0), "ratio": 3.0, "l1_rel_diff": 2e-6 },
                { "model": "vgg16", "method": "occlusion", "label": "y", "gmacs": 70.0, "gaze": { "error": "boom" }, "peer": side(2.0), "ratio": null },
                { "model": "vgg16", "method": "saliency b4", "call": "saliency", "images": 4, "sweep": true, "label": "z", "gmacs": 1.0, "gaze": side(2.0), "peer": side(4.0), "ratio": 2.0 },
                { "model": "resnet50", "method": "saliency b1", "call": "saliency", "images": 1, "sweep": true, "label": "z", "gmacs": 1.0, "gaze": side(0.5), "peer": side(1.0), "ratio": 2.0 },
            ],
        });
        let md = markdown(&report);
        assert!(
            md.contains(
                "| vgg16 | gradcam | 1.00 (1.00–1.00) | 3.00 (3.00–3.00) | 3.00 | 100 (+20) | 100 (+20) | 20.0 | 25% | 25% | 2e-6 | x |"
            ),
            "{md}"
        );
        assert!(md.contains("failed: boom"), "{md}");
        // Sweep rows go to their own table, per image, and never to the main one.
        assert!(md.contains("| vgg16 | saliency | 4 | 0.50 | 1.00 | 2.00 |"), "{md}");
        assert!(!md.contains("| saliency b4 |"), "{md}");
        assert!(md.contains("](images/bench-batch-cpu-quick.png)"), "{md}");
        let plot = sweep_plot(&report).unwrap().expect("a sweep is plotted");
        assert_eq!(plot.dimensions(), (720, 880), "one chart per model, stacked");
        assert!(md.contains("Test CPU, 2 cores, 2 logical CPUs, 4 GiB memory; 2 threads per side"), "{md}");
    }

    #[test]
    fn criterion_files_are_read_back_in_seconds() {
        let dir = std::env::temp_dir().join(format!("gaze-bench-criterion-{}", std::process::id()));
        let new = dir.join("group").join("cpu_x").join("new");
        fs::create_dir_all(&new).unwrap();
        fs::write(new.join("benchmark.json"), r#"{"full_id": "group/cpu_x"}"#).unwrap();
        fs::write(new.join("estimates.json"), r#"{"median": {"point_estimate": 2000000.0}}"#).unwrap();
        fs::write(new.join("sample.json"), r#"{"iters": [1.0, 2.0], "times": [3000000.0, 2000000.0]}"#).unwrap();
        let mut rows = Vec::new();
        collect_criterion(&dir, SystemTime::UNIX_EPOCH, &mut rows).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], "group/cpu_x");
        assert!((rows[0]["median_s"].as_f64().unwrap() - 2e-3).abs() < 1e-12);
        assert!((rows[0]["min_s"].as_f64().unwrap() - 1e-3).abs() < 1e-12);
        assert!((rows[0]["max_s"].as_f64().unwrap() - 3e-3).abs() < 1e-12);
        assert_eq!(rows[0]["iterations"], 3.0);
    }
}
