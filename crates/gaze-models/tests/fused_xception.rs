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
use common::{close, fused_run, io, same, weights};
use gaze_engine::ops::ReluMode;
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

/// The deep tap whose gradient is compared.
const DEEP: &str = "block8";

fn run(taps: Taps, x: &Tensor) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<String>) {
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
        same(&format!("{mode:?}: logits, unfused against fused only"), &unfused.0, &fused.0);
        same(&format!("{mode:?}: input gradient, unfused against fused only"), &unfused.1, &fused.1);
        same(&format!("{mode:?}: gradient at {DEEP}, unfused against fused only"), &unfused.2, &fused.2);
        for (what, other) in [("unfused", &unfused), ("mixed", &mixed)] {
            close(&format!("{mode:?}: logits, folded against {what}"), &folded.0, &other.0, 1e-4);
            close(&format!("{mode:?}: input gradient, folded against {what}"), &folded.1, &other.1, 1e-4);
            close(&format!("{mode:?}: gradient at {DEEP}, folded against {what}"), &folded.2, &other.2, 1e-4);
        }
        for (what, other) in [("fused only", &fused), ("unfused", &unfused), ("mixed", &mixed)] {
            same(&format!("{mode:?}: layers passed, folded against {what}"), &folded.3, &other.3);
        }
        assert!(folded.1.iter().any(|g| *g != 0.0), "{mode:?}: the input gradient is not zero");
        assert!(folded.2.iter().any(|g| *g != 0.0), "{mode:?}: the gradient at {DEEP} is not zero");
        assert_eq!(folded.3, names, "{mode:?}: every layer is passed, in order");
    }
}

#[test]
fn a_recorded_batch_norm_keeps_its_own_output_before_the_relu() {
    let x = io("xception")["input"].clone();
    let model = load(ModelKind::Xception, Some(&weights("xception")), &Device::Cpu).unwrap();
    for (bn, act) in [("bn1", "act1"), ("block4.rep.2", "block4.rep.3"), ("bn4", "act4")] {
        let mut taps = Taps::none().record(bn).record(act);
        model.forward_taps(&x, &mut taps).unwrap();
        let y = taps.activation(bn).unwrap();
        let values = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().any(|v| *v < 0.0), "{bn}: the batch norm's output has negative values");
        let expected = y.relu().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(taps.activation(act).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected, "{act}");
    }
}
