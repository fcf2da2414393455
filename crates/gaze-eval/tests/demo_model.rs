//! The embedded demo model has learned the shapes: it classifies fresh images of the data set.

use candle_core::{Device, D};
use gaze_engine::TapModel;
use gaze_eval::{Batch, PixelNorm, ShapesDataset, CLASS_NAMES};
use gaze_models::DemoCnn;

/// A seed no training run used: `cargo xtask train-demo --seed S` trains on seed S and holds out
/// seed S + 1.
const FRESH_SEED: u64 = 20_250_101;

#[test]
fn the_embedded_demo_model_classifies_fresh_shapes() {
    let dev = Device::Cpu;
    let model = DemoCnn::embedded(&dev).unwrap();
    assert_eq!(model.class_names(), CLASS_NAMES);
    let samples = ShapesDataset::new(FRESH_SEED).samples(0..200);
    let batch = Batch::new(&samples, &PixelNorm::keras_tf(), &dev).unwrap();
    let predicted = model.forward(&batch.images).unwrap().argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    let correct = predicted.iter().zip(&batch.labels).filter(|(p, l)| **p as usize == **l).count();
    assert!(correct >= 180, "the demo model classifies only {correct} of 200 fresh images correctly");
}
