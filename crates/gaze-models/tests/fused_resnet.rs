//! ResNet-50 fuses each batch norm with the ReLU after it when nothing asks for the batch norm's
//! output (the stem's `bn1` and every block's `bn1` and `bn2`): on the fixture, in every ReLU mode,
//! the fused path gives the logits, the input gradient, the gradient at a deep block's output and
//! the list of layers passed of the unfused path (forced by recording every batch norm that can
//! be fused), bit for bit.
//! The residual sum and its ReLU are fused in both paths (the sum has no tap); the engine's tests
//! hold [`gaze_engine::ops::add_relu`] bit-for-bit equal to the sum then the ReLU.

mod common;

use candle_core::{Device, Tensor};
use common::{fused_run, io, same, weights};
use gaze_engine::ops::ReluMode;
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

/// The deep tap whose gradient is compared: the output of the third stage's last block.
const DEEP: &str = "layer3";

fn run(taps: Taps, x: &Tensor) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<String>) {
    fused_run(ModelKind::ResNet50, DEEP, taps, x)
}

/// The batch norms followed by a ReLU: the stem's `bn1` and every block's `bn1` and `bn2`.
fn fusable(layers: &[String]) -> Vec<String> {
    layers.iter().filter(|n| *n == "bn1" || n.ends_with(".bn1") || n.ends_with(".bn2")).cloned().collect()
}

#[test]
fn fused_and_unfused_resnet50_agree_bit_for_bit_in_every_relu_mode() {
    let x = io("resnet50")["input"].clone();
    assert!(x.dim(0).unwrap() >= 2, "the fixture holds a batch");
    let model = load(ModelKind::ResNet50, Some(&weights("resnet50")), &Device::Cpu).unwrap();
    let bns = fusable(&model.layer_names());
    assert_eq!(bns.len(), 1 + 2 * 16, "the stem's and every block's batch norms: {bns:?}");
    for mode in [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet] {
        let fused = run(Taps::none().with_relu_mode(mode), &x);
        let unfused = run(bns.iter().fold(Taps::none(), |t, n| t.record(n.clone())).with_relu_mode(mode), &x);
        // Half fused: a few batch norms recorded, the others fused.
        let mixed =
            run(Taps::none().record("bn1").record("layer2.1.bn2").record("layer4.2.bn1").with_relu_mode(mode), &x);
        let all = run(Taps::record_all().with_relu_mode(mode), &x);
        for (what, other) in [("unfused", &unfused), ("half fused", &mixed), ("all recorded", &all)] {
            same(&format!("{mode:?}: logits against {what}"), &fused.0, &other.0);
            same(&format!("{mode:?}: input gradient against {what}"), &fused.1, &other.1);
            same(&format!("{mode:?}: gradient at {DEEP} against {what}"), &fused.2, &other.2);
            same(&format!("{mode:?}: layers passed against {what}"), &fused.3, &other.3);
        }
        assert!(fused.1.iter().any(|g| *g != 0.0), "{mode:?}: the input gradient is not zero");
        assert!(fused.2.iter().any(|g| *g != 0.0), "{mode:?}: the gradient at {DEEP} is not zero");
        assert_eq!(fused.3, model.layer_names(), "{mode:?}: every layer is passed, in order");
    }
}

#[test]
fn a_recorded_batch_norm_keeps_its_own_output_before_the_relu() {
    let x = io("resnet50")["input"].clone();
    let model = load(ModelKind::ResNet50, Some(&weights("resnet50")), &Device::Cpu).unwrap();
    for (bn, act) in [("bn1", "relu"), ("layer2.0.bn1", "layer2.0.act1"), ("layer3.1.bn2", "layer3.1.act2")] {
        let mut taps = Taps::none().record(bn).record(act);
        model.forward_taps(&x, &mut taps).unwrap();
        let y = taps.activation(bn).unwrap();
        let values = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().any(|v| *v < 0.0), "{bn}: the batch norm's output has negative values");
        let expected = y.relu().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(taps.activation(act).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected, "{act}");
    }
}
