//! VGG16 fuses each convolution with its ReLU when nothing asks for the convolution's output: on
//! the fixture, in every ReLU mode, the fused path gives the logits, the input gradient, the
//! gradient at a tapped ReLU and the list of layers passed of the unfused path (forced by
//! recording the convolutions), bit for bit.

mod common;

use candle_core::{Device, Tensor};
use common::{fused_run, io, same, weights};
use gaze_engine::ops::ReluMode;
use gaze_engine::Taps;
use gaze_models::{load, ModelKind};

/// The trunk's 13 convolutions, each followed by its ReLU at the next index.
const CONVS: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

fn run(taps: Taps, x: &Tensor) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<String>) {
    fused_run(ModelKind::Vgg16, "features.29", taps, x)
}

#[test]
fn fused_and_unfused_vgg16_agree_bit_for_bit_in_every_relu_mode() {
    let x = io("vgg16")["input"].clone();
    assert!(x.dim(0).unwrap() >= 2, "the fixture holds a batch");
    for mode in [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet] {
        let fused = run(Taps::none().with_relu_mode(mode), &x);
        let unfused =
            run(CONVS.iter().fold(Taps::none(), |t, i| t.record(format!("features.{i}"))).with_relu_mode(mode), &x);
        // Half fused: one convolution's output recorded, the others fused.
        let mixed = run(Taps::none().record("features.12").with_relu_mode(mode), &x);
        for (what, other) in [("unfused", &unfused), ("half fused", &mixed)] {
            same(&format!("{mode:?}: logits against {what}"), &fused.0, &other.0);
            same(&format!("{mode:?}: input gradient against {what}"), &fused.1, &other.1);
            same(&format!("{mode:?}: gradient at features.29 against {what}"), &fused.2, &other.2);
            same(&format!("{mode:?}: layers passed against {what}"), &fused.3, &other.3);
        }
        assert!(fused.1.iter().any(|g| *g != 0.0), "{mode:?}: the input gradient is not zero");
        for i in CONVS {
            assert!(fused.3.contains(&format!("features.{i}")), "{mode:?}: features.{i} is passed");
        }
    }
}

#[test]
fn a_recorded_convolution_keeps_its_own_output_before_the_relu() {
    let x = io("vgg16")["input"].clone();
    let model = load(ModelKind::Vgg16, Some(&weights("vgg16")), &Device::Cpu).unwrap();
    let mut taps = Taps::none().record("features.12").record("features.13");
    model.forward_taps(&x, &mut taps).unwrap();
    let conv = taps.activation("features.12").unwrap();
    let relu = taps.activation("features.13").unwrap();
    let conv_values = conv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(conv_values.iter().any(|v| *v < 0.0), "the convolution's output has negative values");
    let expected = conv.relu().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(relu.flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected);
}
