//! Parity with pytorch-grad-cam (and Captum's `LayerGradCam`) on the width-reduced random-weight
//! VGG16 fixture (`fixtures/peers/cam.vgg16.safetensors`, made by `cargo xtask golden`, described in
//! `fixtures/README.md`).
//! The VGG16 is built here from the fixture's weights, so this crate need not depend on
//! `gaze-models`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use gaze_cam::{display_maps, Cam, CamConfig, CamMethod};
use gaze_core::{Explainer, Target};
use gaze_engine::ops::{self, Conv2dConfig, Pool2dConfig};
use gaze_engine::{Error, Result, TapModel, Taps};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "fixtures", name].iter().collect();
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// torchvision's VGG16 layout: `features.0` to `features.30`, `avgpool`, `classifier.0` to
/// `classifier.6`; every `features.*` tap is a cut point.
struct Vgg16 {
    weights: HashMap<String, Tensor>,
    device: Device,
}

const CONVS: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];
const POOLS: [usize; 5] = [4, 9, 16, 23, 30];

impl Vgg16 {
    fn w(&self, key: &str) -> &Tensor {
        &self.weights[key]
    }

    fn run(&self, from: usize, mut x: Tensor, taps: &mut Taps) -> Result<Tensor> {
        for i in from..=30 {
            x = if CONVS.contains(&i) {
                ops::conv2d(
                    &x,
                    self.w(&format!("features.{i}.weight")),
                    Some(self.w(&format!("features.{i}.bias"))),
                    Conv2dConfig { padding: (1, 1), ..Default::default() },
                )?
            } else if POOLS.contains(&i) {
                ops::max_pool2d(&x, Pool2dConfig::new(2, 2))?
            } else {
                taps.relu(&x)?
            };
            x = taps.tap(&format!("features.{i}"), x)?;
        }
        x = taps.tap("avgpool", ops::adaptive_avg_pool2d(&x, (7, 7))?)?;
        x = x.flatten_from(1)?;
        for (i, last) in [(0, false), (3, false), (6, true)] {
            x = ops::linear(
                &x,
                self.w(&format!("classifier.{i}.weight")),
                Some(self.w(&format!("classifier.{i}.bias"))),
            )?;
            x = taps.tap(&format!("classifier.{i}"), x)?;
            if !last {
                x = taps.relu(&x)?;
            }
        }
        Ok(x)
    }
}

impl TapModel for Vgg16 {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        self.run(0, x.clone(), taps)
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (0..=30).map(|i| format!("features.{i}")).collect();
        names.push("avgpool".into());
        names.extend([0, 3, 6].map(|i| format!("classifier.{i}")));
        names
    }

    fn num_classes(&self) -> usize {
        self.weights["classifier.6.bias"].dims()[0]
    }

    fn input_shape(&self) -> [usize; 3] {
        [3, 64, 64]
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn cut_points(&self) -> Vec<String> {
        (0..=30).map(|i| format!("features.{i}")).collect()
    }

    fn forward_from(&self, layer: &str, activation: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let i: usize = layer
            .strip_prefix("features.")
            .and_then(|s| s.parse().ok())
            .filter(|i| *i <= 30)
            .ok_or_else(|| Error::UnsupportedLayer { name: layer.into(), reason: "not a cut point".into() })?;
        let x = taps.tap(layer, activation.clone())?;
        self.run(i + 1, x, taps)
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn max_abs_err(got: &[f32], want: &[f32]) -> f32 {
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn every_method_matches_pytorch_grad_cam_on_vgg16() {
    let model = Vgg16 { weights: fixture("models/vgg16.safetensors"), device: Device::Cpu };
    let peer = fixture("peers/cam.vgg16.safetensors");
    let input = &peer["input"];
    let logits = model.forward(input).unwrap();
    assert!(rel_err(&values(&logits), &values(&peer["logits"])) < 1e-4);

    let classes =
        |key: &str| -> Vec<usize> { peer[key].to_vec1::<i64>().unwrap().into_iter().map(|c| c as usize).collect() };
    let mut checked = 0;
    for method in CamMethod::ALL {
        for layer in ["features.22", "features.29"] {
            for which in ["given", "top"] {
                let key = format!("{}.{layer}.{which}", method.name());
                let Some(raw) = peer.get(&format!("{key}.raw")) else {
                    continue;
                };
                let target = Target::per_image(classes(&format!("targets.{which}")));
                let signed = Cam::new(CamConfig::new(method, [layer]).with_relu(false))
                    .unwrap()
                    .explain(&model, input, &target)
                    .unwrap()
                    .values;
                let mut got = values(&signed);
                let want = values(raw);
                // pytorch-grad-cam's Eigen-CAM keeps, image by image, the sign its LAPACK returns;
                // gaze corrects it, so each of the peer's maps is gaze's or its negative.
                let per_image = want.len() / 2;
                let mut signs = vec![1.0f32; 2];
                if method == CamMethod::EigenCam {
                    for (n, sign) in signs.iter_mut().enumerate() {
                        let span = n * per_image..(n + 1) * per_image;
                        if rel_err(&got[span.clone()], &want[span.clone()]) > 1e-4 {
                            *sign = -1.0;
                            got[span].iter_mut().for_each(|v| *v = -*v);
                        }
                    }
                }
                let err = rel_err(&got, &want);
                assert!(err < 1e-4, "{key}: raw map relative error {err}");
                checked += 1;

                if let Some(out) = peer.get(&format!("{key}.out")) {
                    let shown = if signs.iter().any(|s| *s < 0.0) {
                        // The peer's display of its signs of the projection.
                        let signs = Tensor::new(signs.as_slice(), &Device::Cpu).unwrap().reshape((2, 1, 1, 1)).unwrap();
                        let peer_signed = signed.broadcast_mul(&signs).unwrap().relu().unwrap();
                        display_maps(&[peer_signed], (64, 64)).unwrap()
                    } else {
                        Cam::new(CamConfig::new(method, [layer]))
                            .unwrap()
                            .explain_display(&model, input, &target)
                            .unwrap()
                            .values
                    };
                    let err = max_abs_err(&values(&shown), &values(out));
                    assert!(err < 1e-3, "{key}: displayed map error {err}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} fixture maps were compared");

    // Grad-CAM equals Captum's LayerGradCam, with and without its ReLU.
    for layer in ["features.22", "features.29"] {
        for which in ["given", "top"] {
            let target = Target::per_image(classes(&format!("targets.{which}")));
            for (relu, suffix) in [(false, "raw"), (true, "relu")] {
                let key = format!("captum-layergradcam.{layer}.{which}.{suffix}");
                let got = Cam::new(CamConfig::new(CamMethod::GradCam, [layer]).with_relu(relu))
                    .unwrap()
                    .explain(&model, input, &target)
                    .unwrap()
                    .values;
                let err = rel_err(&values(&got), &values(&peer[&key]));
                assert!(err < 1e-4, "{key}: relative error {err}");
            }
        }
    }
}
