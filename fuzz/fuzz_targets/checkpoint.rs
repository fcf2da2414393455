//! Bytes → a checkpoint of the demo architecture, as `gaze_models::load(ModelKind::Demo, ...)`
//! reads a file (`Checkpoint::from_bytes`, then `DemoCnn::from_checkpoint`), then one forward pass
//! on a zero image of the model's own input shape, as `gaze layers` and `gaze predict` run.
//! Every input must give a model or an error, never a panic, an abort or a hang.

#![no_main]

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gaze_engine::TapModel;
use gaze_models::{Checkpoint, DemoCnn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let device = Device::Cpu;
    let Ok(ckpt) = Checkpoint::from_bytes(data, Path::new("fuzz-input"), &device) else { return };
    let Ok(model) = DemoCnn::from_checkpoint(&ckpt, &device) else { return };
    let [c, h, w] = model.input_shape();
    let x = Tensor::zeros((1, c, h, w), DType::F32, &device).expect("a zero input");
    if let Ok(out) = model.forward(&x) {
        assert_eq!(out.dims(), &[1, model.num_classes()]);
    }
});
