//! Explainers and models are `Send + Sync`: several threads explain batches with one shared model
//! at once and get exactly the maps of a sequential run.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use gaze_cam::{Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_models::DemoCnn;

fn assert_send_sync<T: Send + Sync>() {}

/// A deterministic batch of `n` images, different for each `seed`.
fn batch(seed: usize, n: usize) -> Tensor {
    let len = n * 3 * 64 * 64;
    let values: Vec<f32> = (0..len).map(|i| (((i * 31 + seed * 977) % 251) as f32 / 125.0) - 1.0).collect();
    Tensor::from_vec(values, (n, 3, 64, 64), &Device::Cpu).unwrap()
}

#[test]
fn explaining_from_several_threads_with_one_shared_model_gives_the_sequential_maps() {
    assert_send_sync::<Cam>();
    assert_send_sync::<DemoCnn>();
    let model = Arc::new(DemoCnn::embedded(&Device::Cpu).unwrap());
    let methods = [CamMethod::GradCam, CamMethod::GradCamPlusPlus, CamMethod::ScoreCam, CamMethod::EigenCam];
    let jobs: Vec<(usize, CamMethod)> = (0..8).map(|j| (j, methods[j % methods.len()])).collect();
    let run = |model: &DemoCnn, seed: usize, method: CamMethod| -> Vec<f32> {
        let cam = Cam::new(CamConfig::new(method, ["relu4"])).unwrap();
        let target = Target::per_image(vec![seed % 8, (seed + 3) % 8]);
        cam.explain(model, &batch(seed, 2), &target).unwrap().values.flatten_all().unwrap().to_vec1().unwrap()
    };
    let sequential: Vec<Vec<f32>> = jobs.iter().map(|&(seed, method)| run(&model, seed, method)).collect();
    let threaded: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(seed, method)| {
                let model = Arc::clone(&model);
                s.spawn(move || run(&model, seed, method))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no thread panics")).collect()
    });
    for (j, (a, b)) in sequential.iter().zip(&threaded).enumerate() {
        assert!(a.iter().any(|v| *v != 0.0), "job {j}: an all-zero map proves nothing");
        assert_eq!(a, b, "job {j}: the threaded maps differ from the sequential ones");
    }
}
