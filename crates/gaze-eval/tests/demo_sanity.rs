//! The sanity check on the demo model, as a command line would run it: the layers randomised from
//! the checkpoint's tensors, the targets fixed at the trained model's classes.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use gaze_core::Target;
use gaze_engine::{probe, ProbeRequest, TapModel};
use gaze_eval::{randomize_weights, sanity_check, Batch, PixelNorm, Randomization, ShapesDataset};
use gaze_models::{DemoCnn, DemoCnnConfig, DEMO_WEIGHTS};

#[test]
fn saliency_of_the_demo_model_fails_to_survive_cascading_randomisation() {
    let dev = Device::Cpu;
    let weights = candle_core::safetensors::load_buffer(DEMO_WEIGHTS, &dev).unwrap();
    let trained = DemoCnn::embedded(&dev).unwrap();
    let batch = Batch::new(&ShapesDataset::new(77).samples(0..4), &PixelNorm::keras_tf(), &dev).unwrap();
    let classes = Target::top_class().resolve(&trained.forward(&batch.images).unwrap()).unwrap();
    let target = Target::per_image_lists(classes);
    // From the output toward the input, as Adebayo et al. randomise.
    let layers: Vec<String> = ["fc", "conv4", "conv3", "conv2", "conv1"].iter().map(|s| s.to_string()).collect();
    let saliency = |model: &DemoCnn| -> gaze_core::Result<Tensor> {
        let p = probe(model, &batch.images, &target, &ProbeRequest::input())?;
        Ok(p.input_gradient.expect("asked for").abs()?.max(2)?)
    };
    let report = sanity_check(&layers, Randomization::Cascading, |randomised| {
        let tensors = randomize_weights(&weights, randomised, 0)?;
        let model = DemoCnn::new(DemoCnnConfig::default(), VarBuilder::from_tensors(tensors, DType::F32, &dev))?;
        saliency(&model)
    })
    .unwrap();
    assert_eq!(report.steps.len(), 5);
    assert_eq!(report.steps[4].layers, layers);
    // The maps drift further from the trained model's with every layer randomised (the trained
    // weights give a mean rank correlation of about 0.62 with the top layer random, 0.19 with all).
    let means: Vec<f32> = report.steps.iter().map(|s| s.spearman_abs.mean()).collect();
    assert!(means[0] < 0.8, "{means:?}");
    assert!(means.windows(2).all(|w| w[1] < w[0]), "{means:?}");
    assert!(means[4] < 0.35, "{means:?}");
    assert!(report.steps[4].ssim.mean() < 0.2, "{:?}", report.steps[4].ssim);
    assert!(report.insensitive_steps(0.9).is_empty());
}
