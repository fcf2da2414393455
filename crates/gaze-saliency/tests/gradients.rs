use candle_core::{DType, Device, Tensor};
use gaze_core::{Explainer, Result, Target};
use gaze_engine::ops::linear;
use gaze_engine::{probe, ProbeRequest, ReluMode, TapModel, Taps};
use gaze_saliency::{Gradient, GradientKind};
use gaze_testkit::{rel, Act, Net, NoCuts};

/// `logits = W2 · relu(W1 · flatten(x))`: one ReLU, so every backward rule can be written by hand.
struct OneLayer {
    w1: Tensor,
    w2: Tensor,
    device: Device,
}

impl OneLayer {
    fn new() -> Self {
        let device = Device::Cpu;
        let w1: Vec<f64> = (0..6 * 8).map(|i| ((i * 37 % 17) as f64 - 8.0) / 8.0).collect();
        let w2: Vec<f64> = (0..3 * 6).map(|i| ((i * 11 % 7) as f64 - 3.0) / 3.0).collect();
        OneLayer {
            w1: Tensor::from_vec(w1, (6, 8), &device).unwrap(),
            w2: Tensor::from_vec(w2, (3, 6), &device).unwrap(),
            device,
        }
    }
}

impl TapModel for OneLayer {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let pre = taps.tap("pre", linear(&x.flatten_from(1)?, &self.w1, None)?)?;
        let h = taps.relu(&pre)?;
        linear(&h, &self.w2, None)
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["pre".into()]
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn input_shape(&self) -> [usize; 3] {
        [2, 2, 2]
    }
    fn device(&self) -> &Device {
        &self.device
    }
}

#[test]
fn guided_backprop_and_deconvnet_follow_their_relu_rules_by_hand() {
    let net = OneLayer::new();
    let x: Vec<f64> = (0..2 * 8).map(|i| ((i * 5 % 9) as f64 - 4.0) / 4.0).collect();
    let x = Tensor::from_vec(x, (2, 2, 2, 2), &net.device).unwrap();
    let classes = vec![vec![0usize, 2], vec![1, 0]];
    let target = Target::per_image_lists(classes.clone());
    let w1 = net.w1.to_vec2::<f64>().unwrap();
    let w2 = net.w2.to_vec2::<f64>().unwrap();
    let xs = x.flatten_from(1).unwrap().to_vec2::<f64>().unwrap();
    for kind in GradientKind::ALL {
        let got = Gradient::new(kind).explain(&net, &x, &target).unwrap();
        assert_eq!(got.values.dims(), &[2, 2, 2, 2, 2]);
        let got = got.values.flatten_from(2).unwrap().to_vec3::<f64>().unwrap();
        for n in 0..2 {
            let pre: Vec<f64> = w1.iter().map(|row| row.iter().zip(&xs[n]).map(|(w, v)| w * v).sum()).collect();
            for (t, &c) in classes[n].iter().enumerate() {
                // The gradient each hidden unit passes back to its pre-activation.
                let through: Vec<f64> = (0..6)
                    .map(|j| {
                        let g = w2[c][j];
                        let on = pre[j] > 0.0;
                        match kind {
                            GradientKind::Saliency | GradientKind::GradientXInput => {
                                if on {
                                    g
                                } else {
                                    0.0
                                }
                            }
                            GradientKind::GuidedBackprop => {
                                if on {
                                    g.max(0.0)
                                } else {
                                    0.0
                                }
                            }
                            GradientKind::Deconvnet => g.max(0.0),
                        }
                    })
                    .collect();
                for i in 0..8 {
                    let mut want: f64 = (0..6).map(|j| w1[j][i] * through[j]).sum();
                    if kind == GradientKind::GradientXInput {
                        want *= xs[n][i];
                    }
                    assert!((got[n][t][i] - want).abs() < 1e-12, "{kind} n {n} t {t} i {i}");
                }
            }
        }
    }
}

#[test]
fn guided_backprop_never_passes_a_negative_gradient_through_a_relu() {
    let net = Net::new(11, Act::Relu, DType::F64);
    let x = net.input(3, 12);
    for (mode, negative_allowed) in [(ReluMode::Normal, true), (ReluMode::Guided, false), (ReluMode::Deconvnet, false)]
    {
        // The gradients below each ReLU (at its input) of guided backprop are never negative.
        let request = ProbeRequest::layers(["conv1", "conv2"]).with_relu_mode(mode);
        let p = probe(&net, &x, &Target::top(3), &request).unwrap();
        let min = ["conv1", "conv2"]
            .iter()
            .map(|l| p.gradients[*l].min_all().unwrap().to_scalar::<f64>().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(min < 0.0, negative_allowed, "{mode:?}: smallest gradient below a ReLU is {min}");
    }
}

#[test]
fn saliency_is_the_signed_gradient_and_abs_is_its_magnitude() {
    let net = Net::new(13, Act::Relu, DType::F32);
    let x = net.input(2, 14);
    let target = Target::top(2);
    let g = probe(&net, &x, &target, &ProbeRequest::input()).unwrap().input_gradient.unwrap();
    let s = Gradient::saliency().explain(&net, &x, &target).unwrap();
    assert!(rel(&s.values, &g) < 1e-7);
    assert!(s.values.min_all().unwrap().to_scalar::<f32>().unwrap() < 0.0, "the map keeps its sign");
    let a = Gradient::saliency().with_abs(true).explain(&net, &x, &target).unwrap();
    assert!(rel(&a.values, &g.abs().unwrap()) < 1e-7);
    let gx = Gradient::gradient_x_input().explain(&net, &x, &target).unwrap();
    assert!(rel(&gx.values, &g.broadcast_mul(&x.unsqueeze(1).unwrap()).unwrap()) < 1e-7);
    assert_eq!(s.meta.method, "saliency");
    assert_eq!(s.scores.unwrap().dims(), &[2, 2]);
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let net = Net::new(17, Act::Relu, DType::F32);
    let x = net.input(3, 18);
    let lists = vec![vec![0, 4], vec![2, 1], vec![3, 0]];
    for kind in GradientKind::ALL {
        let method = Gradient::new(kind).with_batch(2);
        let all = method.explain(&net, &x, &Target::per_image_lists(lists.clone())).unwrap();
        assert_eq!(all.targets, lists);
        for (i, l) in lists.iter().enumerate() {
            let one = method.explain(&net, &x.narrow(0, i, 1).unwrap(), &Target::classes(l.clone())).unwrap();
            assert!(rel(&all.values.narrow(0, i, 1).unwrap(), &one.values) < 1e-6, "{kind} image {i}");
        }
        let ranked = method.explain(&net, &x, &Target::top(2)).unwrap();
        assert_eq!(Explainer::resolve_targets(&method, &net, &x, &Target::top(2)).unwrap(), ranked.targets);
    }
}

#[test]
fn names_parse_and_bad_names_list_the_valid_ones() {
    for kind in GradientKind::ALL {
        assert_eq!(GradientKind::parse(kind.name()).unwrap(), kind);
    }
    let err = GradientKind::parse("gradcam").unwrap_err().to_string();
    assert!(err.contains("gradcam") && err.contains("guided-backprop"), "{err}");
    let net = Net::new(1, Act::Relu, DType::F32);
    let err = Gradient::saliency().explain(&net, &net.input(2, 1), &Target::per_image([1])).unwrap_err();
    assert!(err.to_string().contains("2 images"), "{err}");
}

#[test]
fn guided_gradcam_is_guided_backprop_times_the_upsampled_relu_gradcam() {
    use gaze_saliency::{GuidedGradCam, Interpolation};
    let net = Net::new(19, Act::Relu, DType::F64);
    let x = net.input(2, 20);
    let target = Target::per_image_lists(vec![vec![1, 3], vec![0, 2]]);
    let got = GuidedGradCam::new("relu2").explain(&net, &x, &target).unwrap();
    assert_eq!(got.values.dims(), &[2, 2, 3, 8, 8]);
    let gb = probe(&net, &x, &target, &ProbeRequest::input().with_relu_mode(ReluMode::Guided))
        .unwrap()
        .input_gradient
        .unwrap();
    let p = probe(&net, &x, &target, &ProbeRequest::layers(["relu2"])).unwrap();
    let (a, g) = (&p.activations["relu2"], &p.gradients["relu2"]); // [2, 6, 4, 4], [2, 2, 6, 4, 4]
    let weights = g.mean_keepdim(4).unwrap().mean_keepdim(3).unwrap();
    let cam = weights.broadcast_mul(&a.unsqueeze(1).unwrap()).unwrap().sum(2).unwrap().relu().unwrap();
    // Nearest upsampling by 2: every map pixel covers a 2×2 block.
    let up = cam
        .unsqueeze(4)
        .unwrap()
        .unsqueeze(3)
        .unwrap()
        .repeat((1, 1, 1, 2, 1, 2))
        .unwrap()
        .reshape((2, 2, 8, 8))
        .unwrap();
    let want = gb.broadcast_mul(&up.unsqueeze(2).unwrap()).unwrap();
    assert!(rel(&got.values, &want) < 1e-12, "{}", rel(&got.values, &want));
    assert!(cam.min_all().unwrap().to_scalar::<f64>().unwrap() >= 0.0);
    assert_eq!(got.meta.layers, vec!["relu2".to_string()]);

    // A batch gives the maps of its images one by one, in both interpolations.
    for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
        let method = GuidedGradCam::new("pool1").with_interpolation(interpolation).with_batch(1);
        let all = method.explain(&net, &x, &Target::top(2)).unwrap();
        for i in 0..2 {
            let one = method.explain(&net, &x.narrow(0, i, 1).unwrap(), &Target::top(2)).unwrap();
            assert_eq!(one.targets[0], all.targets[i]);
            assert!(rel(&all.values.narrow(0, i, 1).unwrap(), &one.values) < 1e-12, "{interpolation} image {i}");
        }
    }
    let err = GuidedGradCam::new("fc").explain(&net, &x, &target).unwrap_err().to_string();
    assert!(err.contains("fc"), "{err}");
}

#[test]
fn no_more_than_batch_images_run_at_once() {
    use gaze_saliency::GuidedGradCam;
    let net = Net::new(23, Act::Relu, DType::F32);
    let x = net.input(5, 24);
    for batch in [1, 2, 3] {
        net.largest_batch.set(0);
        Gradient::saliency().with_batch(batch).explain(&net, &x, &Target::top(2)).unwrap();
        GuidedGradCam::new("relu2").with_batch(batch).explain(&net, &x, &Target::top(2)).unwrap();
        assert_eq!(net.largest_batch.get(), batch);
    }
}

#[test]
fn guided_gradcam_runs_the_head_once_per_chunk_where_the_layer_is_a_cut_point() {
    use gaze_saliency::GuidedGradCam;
    let net = Net::new(29, Act::Relu, DType::F64);
    let x = net.input(5, 30);
    let target = Target::top(2);
    for layer in ["pool1", "relu2"] {
        let method = GuidedGradCam::new(layer).with_batch(2);
        net.head_runs.set(0);
        net.tail_runs.set(0);
        let shared = method.explain(&net, &x, &target).unwrap();
        // Three chunks (2 + 2 + 1): one full pass each, and one tail-only pass for the map.
        assert_eq!((net.head_runs.get(), net.tail_runs.get()), (3, 3), "{layer}");
        net.head_runs.set(0);
        net.tail_runs.set(0);
        let twice = method.explain(&NoCuts(&net), &x, &target).unwrap();
        assert_eq!((net.head_runs.get(), net.tail_runs.get()), (6, 0), "{layer}");
        assert_eq!(shared.targets, twice.targets);
        assert!(rel(&shared.values, &twice.values) < 1e-12, "{layer}: {}", rel(&shared.values, &twice.values));
        assert!(rel(&shared.scores.unwrap(), &twice.scores.unwrap()) == 0.0);
    }
}
