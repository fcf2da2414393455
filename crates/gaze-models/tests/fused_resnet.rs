//! ResNet-50 folds each batch norm into the convolution before it when nothing asks for either's
//! output (and fuses the ReLU after it into the folded convolution), and fuses a batch norm with
//! its ReLU when only the convolution's output is asked for: on the fixture, in every ReLU mode,
//! the folded path gives the logits, the input gradient and the gradient at a deep block's output
//! of the unfolded path (forced by recording every convolution and batch norm) up to float32
//! rounding (the scale multiplies each product instead of the sum; within the 1e-4 that holds the
//! model against PyTorch), the fused-only path gives them bit for bit, and all pass the same
//! layers in the same order.
//! The residual sum and its ReLU are fused in every path (the sum has no tap); the engine's tests
//! hold [`gaze_engine::ops::add_relu`] bit-for-bit equal to the sum then the ReLU.

mod common;

use candle_core::{Device, Tensor};
use common::{check_folded, fused_run, io, recorded_batch_norms_keep_their_outputs, weights, Run};
use gaze_engine::ops::ReluMode;
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

/// The deep tap whose gradient is compared: the output of the third stage's last block.
const DEEP: &str = "layer3";

fn run(taps: Taps, x: &Tensor) -> Run {
    fused_run(ModelKind::ResNet50, DEEP, taps, x)
}

/// The batch norms followed by a ReLU: the stem's `bn1` and every block's `bn1` and `bn2`.
fn fusable(layers: &[String]) -> Vec<String> {
    layers.iter().filter(|n| *n == "bn1" || n.ends_with(".bn1") || n.ends_with(".bn2")).cloned().collect()
}

/// The convolutions that can fold the batch norm after them: the stem's and every block's.
fn convolutions(layers: &[String]) -> Vec<String> {
    layers
        .iter()
        .filter(|n| n.ends_with("conv1") || n.ends_with("conv2") || n.ends_with("conv3") || n.ends_with("downsample.0"))
        .cloned()
        .collect()
}

#[test]
fn folded_fused_and_unfused_resnet50_agree_in_every_relu_mode() {
    let x = io("resnet50")["input"].clone();
    assert!(x.dim(0).unwrap() >= 2, "the fixture holds a batch");
    let model = load(ModelKind::ResNet50, Some(&weights("resnet50")), &Device::Cpu).unwrap();
    let layers = model.layer_names();
    let bns = fusable(&layers);
    assert_eq!(bns.len(), 1 + 2 * 16, "the stem's and every block's batch norms: {bns:?}");
    let convs = convolutions(&layers);
    assert_eq!(convs.len(), 1 + 3 * 16 + 4, "the stem's, every block's and each downsampling one: {convs:?}");
    for mode in [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet] {
        let folded = run(Taps::none().with_relu_mode(mode), &x);
        // Every convolution recorded: nothing folds, the batch norms fuse with their ReLUs.
        let fused = run(convs.iter().fold(Taps::none(), |t, n| t.record(n.clone())).with_relu_mode(mode), &x);
        // Every convolution and batch norm recorded: nothing folds or fuses.
        let unfused =
            run(convs.iter().chain(&bns).fold(Taps::none(), |t, n| t.record(n.clone())).with_relu_mode(mode), &x);
        // Some folded, some fused, some neither.
        let mixed = run(
            Taps::none()
                .record("bn1")
                .record("layer2.1.bn2")
                .record("layer3.0.conv3")
                .record("layer4.2.conv1")
                .with_relu_mode(mode),
            &x,
        );
        let all = run(Taps::record_all().with_relu_mode(mode), &x);
        check_folded(
            &format!("{mode:?}"),
            DEEP,
            &layers,
            &folded,
            &unfused,
            &[("fused only", &fused), ("all recorded", &all)],
            &[("mixed", &mixed)],
        );
    }
}

#[test]
fn a_recorded_batch_norm_keeps_its_own_output_before_the_relu() {
    recorded_batch_norms_keep_their_outputs(
        ModelKind::ResNet50,
        &[("bn1", "relu"), ("layer2.0.bn1", "layer2.0.act1"), ("layer3.1.bn2", "layer3.1.act2")],
    );
}
