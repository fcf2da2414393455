//! Xception fuses each batch norm with the ReLU after it when nothing asks for the batch norm's
//! output (the stem's `bn1` and `bn2`, the exit flow's `bn3` and `bn4`, and every batch norm inside
//! a block followed by the next repetition's ReLU): on the fixture, in every ReLU mode, the fused
//! path gives the logits, the input gradient, the gradient at a deep block's output and the list of
//! layers passed of the unfused path (forced by recording every layer), bit for bit.

mod common;

use candle_core::{Device, Tensor};
use common::{fused_run, io, same, weights};
use gaze_engine::ops::ReluMode;
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

/// The deep tap whose gradient is compared.
const DEEP: &str = "block8";

fn run(taps: Taps, x: &Tensor) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<String>) {
    fused_run(ModelKind::Xception, DEEP, taps, x)
}

#[test]
fn fused_and_unfused_xception_agree_bit_for_bit_in_every_relu_mode() {
    let x = io("xception")["input"].clone();
    assert!(x.dim(0).unwrap() >= 2, "the fixture holds a batch");
    let model = load(ModelKind::Xception, Some(&weights("xception")), &Device::Cpu).unwrap();
    let names = model.layer_names();
    for mode in [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet] {
        let fused = run(Taps::none().with_relu_mode(mode), &x);
        let unfused = run(
            names.iter().filter(|n| *n != DEEP).fold(Taps::none(), |t, n| t.record(n.clone())).with_relu_mode(mode),
            &x,
        );
        // Half fused: a stem, a block and an exit batch norm recorded, the others fused.
        let mixed = run(Taps::none().record("bn2").record("block5.rep.5").record("bn3").with_relu_mode(mode), &x);
        for (what, other) in [("unfused", &unfused), ("half fused", &mixed)] {
            same(&format!("{mode:?}: logits against {what}"), &fused.0, &other.0);
            same(&format!("{mode:?}: input gradient against {what}"), &fused.1, &other.1);
            same(&format!("{mode:?}: gradient at {DEEP} against {what}"), &fused.2, &other.2);
            same(&format!("{mode:?}: layers passed against {what}"), &fused.3, &other.3);
        }
        assert!(fused.1.iter().any(|g| *g != 0.0), "{mode:?}: the input gradient is not zero");
        assert!(fused.2.iter().any(|g| *g != 0.0), "{mode:?}: the gradient at {DEEP} is not zero");
        assert_eq!(fused.3, names, "{mode:?}: every layer is passed, in order");
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
