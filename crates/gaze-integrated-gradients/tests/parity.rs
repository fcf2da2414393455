//! Parity with the Python peers on the width-reduced VGG16 and ResNet-50 fixtures written by
//! `cargo xtask golden` (see `fixtures/README.md`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use gaze_core::Target;
use gaze_models::{Classifier, ModelKind};

const MODELS: [ModelKind; 2] = [ModelKind::Vgg16, ModelKind::ResNet50];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).unwrap()
}

fn model(kind: ModelKind) -> Box<dyn Classifier> {
    let path = fixtures().join(format!("models/{}.safetensors", kind.name()));
    gaze_models::load(kind, Some(&path), &Device::Cpu).unwrap()
}

/// One class per image, from the fixture's `targets`.
fn targets(fx: &HashMap<String, Tensor>) -> Target {
    let t = fx["targets"].to_vec1::<i64>().unwrap();
    Target::per_image(t.into_iter().map(|c| c as usize))
}

/// The relative max-abs error, with the fixture as the reference.
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    gaze_core::numeric::rel_max_abs_err(&a.to_dtype(DType::F32).unwrap(), b).unwrap()
}

use gaze_integrated_gradients::{Baseline, IntegratedGradients, Quadrature};

/// The step counts the fixtures hold for every quadrature.
const STEPS: [usize; 2] = [16, 50];

/// A call whose peer attribution is farther than this from the same call in float64 (the fixture's
/// `float32_error`) is ill-conditioned: float32 rounding, not the method, decides its map.
const CONDITIONED: f64 = 1e-5;

/// Every Captum quadrature at 16 and 50 steps, from the fixture's blurred baseline, on both models.
///
/// Every call on VGG16 is well-conditioned and gaze matches Captum within 1e-4 (about 3e-7).
/// Every call on ResNet-50 is ill-conditioned: Captum's own float32 attribution is between 2e-3 and
/// 3e-2 from the same call in float64 (the fixture's `float32_error`, measured by the generator).
/// The cause, measured at single path points: one ReLU unit of `layer3` (16 channels at 3×3) or
/// `layer4` (128 channels at 2×2) of the width-reduced model has a pre-activation within about
/// 1e-6 of zero (float32 rounding of values of scale 3 to 5), and which side it falls on moves the
/// input gradient at that point by 2% to 4%.
/// About one path point in twenty to thirty is such a point, so no baseline tried (zero, uniform
/// noise, blurs of 2, 5 and 10 pixels) conditions more than two of the ten ResNet-50 calls, and
/// gaze, whose rounding differs from PyTorch's, decides some of those units differently.
/// Those calls are compared at 1e-4 only if a regenerated fixture finds them well-conditioned; the
/// test checks that each exclusion is backed by the measurement (a `float32_error` over 1e-4).
#[test]
fn integrated_gradients_match_captum_for_each_quadrature() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let (mut conditioned, mut ill_conditioned) = (0, 0);
    for kind in MODELS {
        let fx = tensors(&format!("peers/grad.{}.safetensors", kind.name()));
        let net = model(kind);
        let (x, target) = (&fx["input"], targets(&fx));
        let baseline = &fx["integrated-gradients.baseline"];
        // The stored baseline is the blur that `Baseline::Blur` computes.
        let blur = Baseline::Blur { sigma: 2.0 }.materialise(x).unwrap();
        assert!(rel(&blur, baseline) < 1e-6, "{}: blur baseline {}", kind.name(), rel(&blur, baseline));
        for q in Quadrature::ALL {
            for steps in STEPS {
                let key = format!("integrated-gradients.{}.{steps}", q.name());
                let (step_sizes, alphas) = q.rule(steps).unwrap();
                let want_alphas = fx[&format!("{key}.alphas")].to_vec1::<f64>().unwrap();
                let want_steps = fx[&format!("{key}.step_sizes")].to_vec1::<f64>().unwrap();
                assert_eq!((alphas.len(), step_sizes.len()), (want_alphas.len(), want_steps.len()), "{key}");
                // Captum's Riemann path points come from `torch.linspace` in float32, which gaze's float32
                // linspace reproduces bit for bit (each point one fused multiply-add, as PyTorch's kernel
                // computes it); NumPy's `leggauss` and gaze's Newton iteration agree to a few units in
                // the last place of a float64.
                let alpha_tolerance = if q == Quadrature::GaussLegendre { 1e-14 } else { 0.0 };
                for (a, b) in alphas.iter().zip(&want_alphas) {
                    assert!((a - b).abs() <= alpha_tolerance, "{key}: alpha {a} vs {b}");
                }
                for (a, b) in step_sizes.iter().zip(&want_steps) {
                    assert!((a - b).abs() < 1e-14, "{key}: step size {a} vs {b}");
                }
                let out = IntegratedGradients::default()
                    .with_steps(steps)
                    .with_quadrature(q)
                    .with_baseline(Baseline::Tensor(baseline.clone()))
                    .with_batch(7)
                    .explain_with_delta(&*net, x, &target)
                    .unwrap();
                let err = rel(&out.attribution.values.squeeze(1).unwrap(), &fx[&format!("{key}.attr")]) as f64;
                let peer_err = fx[&format!("{key}.float32_error")].to_vec1::<f64>().unwrap()[0];
                report.push(format!("{} {key}: {err:.1e} (peer float32 error {peer_err:.1e})", kind.name()));
                if peer_err > CONDITIONED {
                    // Excluded, with its measured cause: the peer is itself farther than 1e-4 from
                    // the exact result, or it is within 1e-4 and so is gaze.
                    ill_conditioned += 1;
                    if peer_err <= 1e-4 && err > 1e-4 {
                        failures.push(format!("{}: ill-conditioned by {peer_err:.1e} only", report.last().unwrap()));
                    }
                    continue;
                }
                conditioned += 1;
                if err > 1e-4 {
                    failures.push(report.last().unwrap().clone());
                }
                let delta = out.delta.squeeze(1).unwrap().to_vec1::<f32>().unwrap();
                let want = fx[&format!("{key}.delta")].to_vec1::<f32>().unwrap();
                let scale =
                    out.attribution.scores.unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                for (d, w) in delta.iter().zip(&want) {
                    let tolerance = 1e-4 * w.abs().max(scale).max(1.0);
                    if (d - w).abs() > tolerance {
                        failures.push(format!("{} {key} delta {delta:?} vs {want:?}", kind.name()));
                    }
                }
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(conditioned + ill_conditioned, 2 * Quadrature::ALL.len() * STEPS.len());
    // All ten VGG16 calls at least: a fixture in which they became ill-conditioned must be looked at.
    assert!(conditioned >= 10, "only {conditioned} calls were well-conditioned:\n{}", report.join("\n"));
}
