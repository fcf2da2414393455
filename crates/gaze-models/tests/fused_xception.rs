//! Xception folds each batch norm into the convolution before it (a separable convolution's
//! pointwise one, the stem's, the skip branches') when nothing asks for either's output, with the
//! ReLU after it fused in, and fuses a batch norm with its ReLU when only the convolution's output
//! is asked for: on the fixture, in every ReLU mode, the folded path gives the logits, the input
//! gradient and the gradient at a deep block's output of the unfolded path (forced by recording
//! every layer) up to float32 rounding (within the 1e-4 that holds the model against PyTorch),
//! the fused-only path (every convolution recorded) gives them bit for bit, and all pass the same
//! layers in the same order.

mod common;

use candle_core::{Device, Tensor};
use common::{check_folded, fused_run, io, recorded_batch_norms_keep_their_outputs, weights, Run};
use gaze_engine::ops::ReluMode;
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

/// The deep tap whose gradient is compared.
const DEEP: &str = "block8";

fn run(taps: Taps, x: &Tensor) -> Run {
    fused_run(ModelKind::Xception, DEEP, taps, x)
}

/// The convolutions a batch norm follows: the stem's, every separable convolution (named by its
/// depthwise convolution's name without `.conv1`) and every skip branch's.
fn convolutions(layers: &[String]) -> Vec<String> {
    let mut convs: Vec<String> = ["conv1", "conv2"].map(String::from).to_vec();
    convs.extend(layers.iter().filter_map(|n| n.strip_suffix(".conv1").map(String::from)));
    convs.extend(layers.iter().filter(|n| n.ends_with(".skip")).cloned());
    convs
}

#[test]
fn folded_fused_and_unfused_xception_agree_in_every_relu_mode() {
    let x = io("xception")["input"].clone();
    assert!(x.dim(0).unwrap() >= 2, "the fixture holds a batch");
    let model = load(ModelKind::Xception, Some(&weights("xception")), &Device::Cpu).unwrap();
    let names = model.layer_names();
    let convs = convolutions(&names);
    assert_eq!(convs.len(), 2 + 2 + 32 + 4, "the stem's, the exit flow's, every block's and the skips: {convs:?}");
    assert!(convs.iter().all(|c| names.contains(c)), "{convs:?}");
    for mode in [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet] {
        let folded = run(Taps::none().with_relu_mode(mode), &x);
        let fused = run(convs.iter().fold(Taps::none(), |t, n| t.record(n.clone())).with_relu_mode(mode), &x);
        let unfused = run(
            names.iter().filter(|n| *n != DEEP).fold(Taps::none(), |t, n| t.record(n.clone())).with_relu_mode(mode),
            &x,
        );
        // Mixed: a stem, a block and an exit batch norm and a block's convolution recorded.
        let mixed = run(
            Taps::none().record("bn2").record("block5.rep.5").record("bn3").record("block2.rep.1").with_relu_mode(mode),
            &x,
        );
        check_folded(
            &format!("{mode:?}"),
            DEEP,
            &names,
            &folded,
            &unfused,
            &[("fused only", &fused)],
            &[("mixed", &mixed)],
        );
    }
}

#[test]
fn a_recorded_batch_norm_keeps_its_own_output_before_the_relu() {
    recorded_batch_norms_keep_their_outputs(
        ModelKind::Xception,
        &[("bn1", "act1"), ("block4.rep.2", "block4.rep.3"), ("bn4", "act4")],
    );
}
