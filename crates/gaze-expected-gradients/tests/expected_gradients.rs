use candle_core::{DType, Tensor, Var};
use gaze_core::{select, Explainer, Target};
use gaze_engine::{probe, scored_outputs, ProbeRequest, TapModel, Taps};
use gaze_expected_gradients::{ExpectedGradients, RankOrder, SamplePlan, Space};
use gaze_testkit::{rel, Act, Net, NoCuts};

fn alphas(n: usize, s: usize) -> Vec<Vec<f64>> {
    (0..n).map(|i| (0..s).map(|k| ((i * 7 + k * 3) % 11) as f64 / 11.0 + 0.03).collect()).collect()
}

fn indices(n: usize, s: usize, b: usize) -> Vec<Vec<usize>> {
    (0..n).map(|i| (0..s).map(|k| (i + 2 * k) % b).collect()).collect()
}

/// The mean and `var / √S` over the first dimension.
fn mean_and_variance(samples: &Tensor) -> (Tensor, Tensor) {
    let s = samples.dim(0).unwrap() as f64;
    let mean = samples.mean(0).unwrap();
    let var = samples.broadcast_sub(&mean.unsqueeze(0).unwrap()).unwrap().sqr().unwrap().mean(0).unwrap();
    (mean, (var / s.sqrt()).unwrap())
}

#[test]
fn one_background_row_with_replayed_alphas_is_a_riemann_sum_of_integrated_gradients() {
    let net = Net::new(1, Act::Relu, DType::F64);
    let x = net.input(2, 2);
    let baseline = net.input(1, 3);
    let (n, s) = (2, 6);
    let plan = SamplePlan { indices: vec![vec![0; s]; n], alphas: alphas(n, s), noise: None };
    let target = Target::per_image_lists(vec![vec![2, 0], vec![1, 4]]);
    let got = ExpectedGradients::new(baseline.clone())
        .with_plan(plan.clone())
        .with_batch(5)
        .explain_with_variance(&net, &x, &target)
        .unwrap();
    for i in 0..n {
        let xi = x.narrow(0, i, 1).unwrap();
        let diff = (&xi - &baseline).unwrap();
        let classes = Target::classes(got.attribution.targets[i].clone());
        let mut samples = Vec::new();
        for k in 0..s {
            let point = (&baseline + (&diff * plan.alphas[i][k]).unwrap()).unwrap();
            let g = probe(&net, &point, &classes, &ProbeRequest::input()).unwrap().input_gradient.unwrap();
            samples.push(g.broadcast_mul(&diff.unsqueeze(1).unwrap()).unwrap().get(0).unwrap());
        }
        let (mean, var) = mean_and_variance(&Tensor::stack(&samples, 0).unwrap());
        let got_mean = got.attribution.values.get(i).unwrap();
        assert!(rel(&got_mean, &mean) < 1e-12, "image {i}");
        assert!(rel(&got.variance.get(i).unwrap(), &var) < 1e-9, "image {i}");
    }
}

#[test]
fn at_a_layer_it_multiplies_the_gradient_by_the_activation_at_the_sample_as_shap_does() {
    let net = Net::new(3, Act::Relu, DType::F64);
    let x = net.input(2, 4);
    let background = net.input(3, 5);
    let (n, s) = (2, 5);
    let noise = net.input(n * s, 6).affine(0.1, 0.0).unwrap().reshape((n, s, 3, 8, 8)).unwrap();
    let plan = SamplePlan { indices: indices(n, s, 3), alphas: alphas(n, s), noise: Some(noise.clone()) };
    let got = ExpectedGradients::new(background.clone())
        .with_space(Space::Layer("pool1".into()))
        .with_plan(plan.clone())
        .with_batch(3)
        .explain_with_variance(&net, &x, &Target::top(2))
        .unwrap();
    assert_eq!(got.attribution.values.dims(), &[2, 2, 4, 4, 4]);
    for i in 0..n {
        let classes = Target::classes(got.attribution.targets[i].clone());
        let mut samples = Vec::new();
        for k in 0..s {
            let xi = (x.narrow(0, i, 1).unwrap() + noise.get(i).unwrap().narrow(0, k, 1).unwrap()).unwrap();
            let bg = background.narrow(0, plan.indices[i][k], 1).unwrap();
            let t = plan.alphas[i][k];
            let z = ((&xi * t).unwrap() + (&bg * (1.0 - t)).unwrap()).unwrap();
            let p = probe(&net, &z, &classes, &ProbeRequest::layers(["pool1"])).unwrap();
            let h = p.activations["pool1"].unsqueeze(1).unwrap();
            samples.push(p.gradients["pool1"].broadcast_mul(&h).unwrap().get(0).unwrap());
        }
        let (mean, var) = mean_and_variance(&Tensor::stack(&samples, 0).unwrap());
        assert!(rel(&got.attribution.values.get(i).unwrap(), &mean) < 1e-12, "image {i}");
        assert!(rel(&got.variance.get(i).unwrap(), &var) < 1e-9, "image {i}");
    }
    assert_eq!(got.attribution.meta.layers, vec!["pool1".to_string()]);
}

/// The gradient of the target scores at a substituted activation of `layer`, the head run on `x`.
fn tail_gradient(net: &Net, x: &Tensor, layer: &str, z: &Tensor, classes: &[usize]) -> Tensor {
    let v = Var::from_tensor(z).unwrap();
    let mut taps = Taps::none().substitute(layer, v.as_tensor().clone());
    let logits = net.forward_taps(x, &mut taps).unwrap();
    let mut out = Vec::new();
    for &c in classes {
        let score = select(&scored_outputs(&logits, &Default::default()).unwrap(), &[vec![c]]).unwrap();
        out.push(score.sum_all().unwrap().backward().unwrap().get(v.as_tensor()).unwrap().get(0).unwrap());
    }
    Tensor::stack(&out, 0).unwrap()
}

#[test]
fn layer_space_follows_the_tensorflow_definition_and_never_runs_the_head_per_sample() {
    let net = Net::new(5, Act::Relu, DType::F64);
    let x = net.input(2, 6);
    let background = net.input(3, 7);
    let layer = "relu1";
    let (n, s) = (2, 8);
    let plan = SamplePlan { indices: indices(n, s, 3), alphas: alphas(n, s), noise: None };
    let eg = ExpectedGradients::new(background.clone())
        .with_space(Space::LayerSpace(layer.into()))
        .with_plan(plan.clone())
        .with_batch(3);
    net.head_runs.set(0);
    net.tail_runs.set(0);
    let got = eg.explain_with_variance(&net, &x, &Target::top(2)).unwrap();
    // One full pass for the images, one for the background; the 16 samples run in 6 tail passes.
    assert_eq!((net.head_runs.get(), net.tail_runs.get()), (2, 6));

    let record = |input: &Tensor| {
        let mut taps = Taps::none().record(layer);
        net.forward_taps(input, &mut taps).unwrap();
        taps.activation(layer).unwrap().clone()
    };
    let (hx, hb) = (record(&x), record(&background));
    for i in 0..n {
        let mut samples = Vec::new();
        for k in 0..s {
            let a = hx.narrow(0, i, 1).unwrap();
            let b = hb.narrow(0, plan.indices[i][k], 1).unwrap();
            let t = plan.alphas[i][k];
            let z = ((&a * t).unwrap() + (&b * (1.0 - t)).unwrap()).unwrap();
            let g = tail_gradient(&net, &x.narrow(0, i, 1).unwrap(), layer, &z, &got.attribution.targets[i]);
            samples.push(g.broadcast_mul(&(&a - &b).unwrap()).unwrap());
        }
        let (mean, var) = mean_and_variance(&Tensor::stack(&samples, 0).unwrap());
        assert!(rel(&got.attribution.values.get(i).unwrap(), &mean) < 1e-12, "image {i}");
        assert!(rel(&got.variance.get(i).unwrap(), &var) < 1e-9, "image {i}");
    }

    // Twice the samples: the head still runs twice.
    net.head_runs.set(0);
    eg.clone()
        .with_plan(SamplePlan { indices: indices(n, 2 * s, 3), alphas: alphas(n, 2 * s), noise: None })
        .explain(&net, &x, &Target::top(2))
        .unwrap();
    assert_eq!(net.head_runs.get(), 2);
}

#[test]
fn ranked_outputs_share_one_forward_pass_per_chunk_and_return_the_ranks() {
    let net = Net::new(7, Act::Relu, DType::F32);
    let x = net.input(3, 8);
    let background = net.input(4, 9);
    let logits = net.forward(&x).unwrap().to_vec2::<f32>().unwrap();
    for order in RankOrder::ALL {
        let eg = ExpectedGradients::new(background.clone()).with_samples(10).with_rank_order(order).with_batch(4);
        net.head_runs.set(0);
        let got = eg.explain(&net, &x, &Target::top(3)).unwrap();
        // One pass to rank, then ceil(30 / 4) = 8 chunks, each shared by the 3 targets.
        assert_eq!(net.head_runs.get(), 1 + 8, "{order}");
        for (row, ranks) in logits.iter().zip(&got.targets) {
            let key = |c: usize| match order {
                RankOrder::Max => -row[c],
                RankOrder::Min => row[c],
                RankOrder::MaxAbs => -row[c].abs(),
            };
            assert!(ranks.windows(2).all(|w| key(w[0]) <= key(w[1])), "{order}: {ranks:?} of {row:?}");
            let worst = key(ranks[2]);
            assert_eq!((0..row.len()).filter(|&c| key(c) < worst).count(), 2, "{order}: {ranks:?} of {row:?}");
        }
        assert_eq!(Explainer::resolve_targets(&eg, &net, &x, &Target::top(3)).unwrap(), got.targets);
    }
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let net = Net::new(9, Act::Relu, DType::F32);
    let x = net.input(3, 10);
    let background = net.input(4, 11);
    let (n, s) = (3, 5);
    let plan = SamplePlan { indices: indices(n, s, 4), alphas: alphas(n, s), noise: None };
    let lists = vec![vec![0, 1], vec![4, 2], vec![3, 3]];
    for space in [Space::Input, Space::Layer("conv2".into()), Space::LayerSpace("pool1".into())] {
        let eg = ExpectedGradients::new(background.clone()).with_space(space.clone()).with_batch(4);
        let all =
            eg.clone().with_plan(plan.clone()).explain(&net, &x, &Target::per_image_lists(lists.clone())).unwrap();
        for (i, list) in lists.iter().enumerate().take(n) {
            let one_plan = SamplePlan {
                indices: vec![plan.indices[i].clone()],
                alphas: vec![plan.alphas[i].clone()],
                noise: None,
            };
            let one = eg
                .clone()
                .with_plan(one_plan)
                .explain(&net, &x.narrow(0, i, 1).unwrap(), &Target::classes(list.clone()))
                .unwrap();
            let err = rel(&all.values.narrow(0, i, 1).unwrap(), &one.values);
            assert!(err < 1e-5, "{space:?} image {i}: {err}");
        }
    }
}

#[test]
fn seeded_draws_with_local_smoothing_are_reproducible() {
    let net = Net::new(13, Act::Relu, DType::F32);
    let x = net.input(2, 14);
    let eg = ExpectedGradients::new(net.input(3, 15)).with_samples(6).with_local_smoothing(0.1).with_seed(5);
    let a = eg.explain(&net, &x, &Target::top_class()).unwrap();
    let b = eg.clone().with_batch(7).explain(&net, &x, &Target::top_class()).unwrap();
    assert!(rel(&a.values, &b.values) < 1e-6);
    let c = eg.clone().with_seed(6).explain(&net, &x, &Target::top_class()).unwrap();
    assert!(rel(&a.values, &c.values) > 1e-3);
    assert_eq!(a.meta.options["local-smoothing"], "0.1");
}

#[test]
fn bad_options_name_the_value_and_what_is_valid() {
    let net = Net::new(1, Act::Relu, DType::F32);
    let x = net.input(2, 1);
    let bg = net.input(2, 2);
    let bad_plan = SamplePlan { indices: vec![vec![0, 5], vec![1, 1]], alphas: alphas(2, 2), noise: None };
    let err = ExpectedGradients::new(bg.clone()).with_plan(bad_plan).explain(&net, &x, &Target::top_class());
    let err = err.unwrap_err().to_string();
    assert!(err.contains('5') && err.contains("0..2"), "{err}");
    for alpha in [f64::NAN, -0.5, 1.5] {
        let mut a = alphas(2, 2);
        a[1][0] = alpha;
        let plan = SamplePlan { indices: vec![vec![0, 1], vec![1, 1]], alphas: a, noise: None };
        let err = ExpectedGradients::new(bg.clone()).with_plan(plan).explain(&net, &x, &Target::top_class());
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains("sample plan alpha (image 1)")
                && err.contains(&format!("`{alpha}`"))
                && err.contains("[0, 1]"),
            "{err}"
        );
    }
    let err = ExpectedGradients::new(bg.clone())
        .with_space(Space::LayerSpace("pool1".into()))
        .explain(&NoCuts(&Net::new(1, Act::Relu, DType::F32)), &x, &Target::top_class())
        .unwrap_err()
        .to_string();
    assert!(err.contains("pool1") && err.contains("(none)"), "{err}");
    let err =
        ExpectedGradients::new(bg.clone()).with_space(Space::Layer("conv9".into())).explain(&net, &x, &Target::top(2));
    assert!(err.unwrap_err().to_string().contains("relu2"));
    let err = ExpectedGradients::new(bg.narrow(2, 0, 4).unwrap()).explain(&net, &x, &Target::top_class());
    assert!(err.unwrap_err().to_string().contains("background"));
    let err = ExpectedGradients::new(bg).explain(&net, &x, &Target::top(6)).unwrap_err().to_string();
    assert!(err.contains("top-k of 6"), "{err}");
    assert!(Space::from_options(None, true).is_err());
    assert_eq!(RankOrder::parse("max_abs").unwrap(), RankOrder::MaxAbs);
}

#[test]
fn no_more_than_batch_samples_run_at_once() {
    let net = Net::new(17, Act::Relu, DType::F32);
    let x = net.input(2, 18);
    let background = net.input(3, 19);
    for space in [Space::Input, Space::Layer("pool1".into()), Space::LayerSpace("pool1".into())] {
        for batch in [1, 2, 5] {
            net.largest_batch.set(0);
            ExpectedGradients::new(background.clone())
                .with_space(space.clone())
                .with_samples(9)
                .with_batch(batch)
                .explain(&net, &x, &Target::top(2))
                .unwrap();
            assert_eq!(net.largest_batch.get(), batch, "{space:?}");
        }
    }
}

/// Seeded samples are drawn as they run, image by image and sample by sample, a background row
/// then a point: the same samples as a plan drawn that way up front.
#[test]
fn seeded_samples_are_the_plan_drawn_image_by_image() {
    use rand::{Rng, SeedableRng};
    let net = Net::new(4, Act::Tanh, DType::F64);
    let x = net.input(3, 5);
    let background = net.input(4, 6);
    let (n, s, seed) = (3, 9, 21);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut indices, mut alphas) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (idx, alp): (Vec<usize>, Vec<f64>) = (0..s).map(|_| (rng.random_range(0..4), rng.random::<f64>())).unzip();
        indices.push(idx);
        alphas.push(alp);
    }
    let target = Target::top(2);
    let seeded = ExpectedGradients::new(background.clone())
        .with_samples(s)
        .with_seed(seed)
        .with_batch(4)
        .explain(&net, &x, &target);
    let planned = ExpectedGradients::new(background)
        .with_plan(SamplePlan { indices, alphas, noise: None })
        .with_batch(4)
        .explain(&net, &x, &target);
    let (seeded, planned) = (seeded.unwrap(), planned.unwrap());
    assert_eq!(rel(&seeded.values, &planned.values), 0.0);
}

/// A huge sample count used to draw every sample's row and point before the first pass (16 bytes
/// a sample, gigabytes for 10⁹); they are drawn a chunk at a time, so the run reaches the model at
/// once and stops where the model does.
#[test]
fn a_huge_sample_count_is_not_drawn_up_front() {
    let net = Net::new(1, Act::Relu, DType::F32);
    let x = net.input(2, 1);
    let stopping = gaze_testkit::StopAfter::new(&net, 3);
    let err = ExpectedGradients::new(net.input(3, 2))
        .with_samples(1_000_000_000_000)
        .with_batch(8)
        .explain(&stopping, &x, &Target::top_class())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "stopped");
    assert_eq!(stopping.left(), 0);

    let err = ExpectedGradients::new(net.input(3, 2))
        .with_samples(usize::MAX)
        .explain(&net, &x, &Target::top_class())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("`{}` for --samples", usize::MAX)) && err.contains("for 2 images"), "{err}");
}
