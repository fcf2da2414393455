//! The models on the engine's device path (candle's kernels for the values, gaze's gradients as
//! tensor ops; what runs on CUDA), forced on the host: on the width-reduced fixtures, the logits
//! and the input gradient match PyTorch's within the 1e-4 that holds the host kernels, and in
//! every ReLU mode the logits, the input gradient and a deep tap's gradient match the host
//! kernels'.

mod common;

use candle_core::{Device, IndexOp, Var};
use common::{close, fused_run, io, weights};
use gaze_engine::ops::{set_device_path_on_host, ReluMode};
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

const TOLERANCE: f32 = 1e-4;

/// The models with a deep tap each.
const MODELS: [(ModelKind, &str); 3] =
    [(ModelKind::Vgg16, "features.16"), (ModelKind::ResNet50, "layer3"), (ModelKind::Xception, "block6")];

#[test]
fn models_on_the_device_path_match_pytorch_and_the_host_kernels() {
    for (kind, deep) in MODELS {
        let name = kind.name();
        let io = io(name);
        let model = load(kind, Some(&weights(name)), &Device::Cpu).unwrap();
        set_device_path_on_host(true);
        let x = Var::from_tensor(&io["input"]).unwrap();
        let logits = model.forward(x.as_tensor()).unwrap();
        let grads = logits.i((.., 1)).unwrap().sum_all().unwrap().backward().unwrap();
        set_device_path_on_host(false);
        let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        close(&format!("{name} logits on the device path"), &flat(&logits), &flat(&io["logits"]), TOLERANCE);
        let dx = grads.get(x.as_tensor()).expect("a gradient reaches the input");
        close(
            &format!("{name} input gradient on the device path"),
            &flat(dx),
            &flat(&io["grad_input.class1"]),
            TOLERANCE,
        );
        for mode in [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet] {
            let host = fused_run(kind, deep, Taps::none().with_relu_mode(mode), &io["input"]);
            set_device_path_on_host(true);
            let device = fused_run(kind, deep, Taps::none().with_relu_mode(mode), &io["input"]);
            set_device_path_on_host(false);
            let what = |part: &str| format!("{name} {mode:?} {part}, device path against host kernels");
            close(&what("logits"), &device.0, &host.0, TOLERANCE);
            close(&what("input gradient"), &device.1, &host.1, TOLERANCE);
            close(&what(&format!("gradient at {deep}")), &device.2, &host.2, TOLERANCE);
            assert_eq!(device.3, host.3, "{name}: the layers seen differ");
        }
    }
}
