use candle_core::{DType, Tensor};
use gaze_core::{select, Explainer, Target};
use gaze_engine::{probe, ProbeRequest, TapModel};
use gaze_integrated_gradients::{Baseline, IntegratedGradients, Quadrature};
use gaze_testkit::{rel, Act, Net};

#[test]
fn completeness_holds_within_the_reported_delta_which_shrinks_with_steps() {
    let net = Net::new(1, Act::Tanh, DType::F64);
    let x = net.input(2, 2);
    let target = Target::top(2);
    let mut last = f64::INFINITY;
    for steps in [2usize, 8, 32] {
        let out = IntegratedGradients::default().with_steps(steps).explain_with_delta(&net, &x, &target).unwrap();
        // The delta is exactly Σ attributions − (f(x) − f(0)), computed here from scratch.
        let logits_x = net.forward(&x).unwrap();
        let logits_b = net.forward(&x.zeros_like().unwrap()).unwrap();
        let classes = &out.attribution.targets;
        let gap = (select(&logits_x, classes).unwrap() - select(&logits_b, classes).unwrap()).unwrap();
        let sums = out.attribution.values.flatten_from(2).unwrap().sum(2).unwrap();
        let delta = (sums - gap).unwrap();
        assert!(rel(&out.delta, &delta) < 1e-12, "steps {steps}");
        let worst = out.delta.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(worst < last, "steps {steps}: |delta| {worst} did not shrink from {last}");
        last = worst;
    }
    assert!(last < 1e-6, "Gauss–Legendre with 32 steps on a smooth model: |delta| {last}");
}

#[test]
fn matches_a_direct_riemann_sum_of_probed_gradients() {
    let net = Net::new(3, Act::Relu, DType::F64);
    let x = net.input(2, 4);
    let baseline = net.input(1, 5);
    let target = Target::per_image_lists(vec![vec![1, 3], vec![4, 0]]);
    let steps = 5;
    let got = IntegratedGradients::default()
        .with_steps(steps)
        .with_quadrature(Quadrature::RiemannRight)
        .with_baseline(Baseline::Tensor(baseline.clone()))
        .with_batch(3)
        .explain(&net, &x, &target)
        .unwrap();
    let b = baseline.broadcast_as(x.shape()).unwrap();
    let diff = (&x - &b).unwrap();
    let mut total = x.zeros_like().unwrap().unsqueeze(1).unwrap().repeat((1, 2, 1, 1, 1)).unwrap();
    for k in 1..=steps {
        let alpha = k as f64 / steps as f64;
        let point = (&b + (&diff * alpha).unwrap()).unwrap();
        let g = probe(&net, &point, &target, &ProbeRequest::input()).unwrap().input_gradient.unwrap();
        total = (total + (g / steps as f64).unwrap()).unwrap();
    }
    let want = total.broadcast_mul(&diff.unsqueeze(1).unwrap()).unwrap();
    assert_eq!(got.targets, vec![vec![1, 3], vec![4, 0]]);
    assert!(rel(&got.values, &want) < 1e-12, "{}", rel(&got.values, &want));
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one_for_every_quadrature() {
    let net = Net::new(5, Act::Relu, DType::F32);
    let x = net.input(3, 6);
    let lists = vec![vec![0, 2], vec![4, 1], vec![3, 3]];
    for q in Quadrature::ALL {
        // A batch of 4 path points straddles images and steps.
        let ig = IntegratedGradients::default()
            .with_steps(6)
            .with_quadrature(q)
            .with_baseline(Baseline::Blur { sigma: 1.0 })
            .with_batch(4);
        let all = ig.explain_with_delta(&net, &x, &Target::per_image_lists(lists.clone())).unwrap();
        for (i, l) in lists.iter().enumerate() {
            let one = ig.explain_with_delta(&net, &x.narrow(0, i, 1).unwrap(), &Target::classes(l.clone())).unwrap();
            let a = all.attribution.values.narrow(0, i, 1).unwrap();
            assert!(rel(&a, &one.attribution.values) < 1e-5, "{q} image {i}");
            assert!(rel(&all.delta.narrow(0, i, 1).unwrap(), &one.delta) < 1e-4, "{q} image {i}");
        }
        // The batch size does not change the result beyond rounding.
        let whole = ig.clone().with_batch(1000).explain(&net, &x, &Target::per_image_lists(lists.clone())).unwrap();
        assert!(rel(&whole.values, &all.attribution.values) < 1e-5, "{q}");
    }
}

#[test]
fn the_top_class_and_the_metadata_are_reported() {
    let net = Net::new(7, Act::Relu, DType::F32);
    let x = net.input(2, 8);
    let out = IntegratedGradients::default().with_steps(4).explain(&net, &x, &Target::top_class()).unwrap();
    let logits = net.forward(&x).unwrap();
    let best: Vec<Vec<usize>> =
        logits.argmax(1).unwrap().to_vec1::<u32>().unwrap().into_iter().map(|c| vec![c as usize]).collect();
    assert_eq!(out.targets, best);
    assert_eq!(out.values.dims(), &[2, 1, 3, 8, 8]);
    let scores = out.scores.unwrap();
    assert!(rel(&scores, &select(&logits, &best).unwrap()) < 1e-6);
    assert_eq!(out.meta.method, "integrated-gradients");
    assert_eq!(out.meta.options["quadrature"], "gausslegendre");
    assert_eq!(out.meta.options["steps"], "4");
}

#[test]
fn bad_options_are_errors_naming_the_value() {
    let net = Net::new(7, Act::Relu, DType::F32);
    let x = net.input(1, 8);
    let err = IntegratedGradients::default().with_batch(0).explain(&net, &x, &Target::top_class());
    assert!(err.unwrap_err().to_string().contains("--batch"));
    let err = IntegratedGradients::default().with_quadrature(Quadrature::RiemannLeft).with_steps(1).explain(
        &net,
        &x,
        &Target::top_class(),
    );
    assert!(err.unwrap_err().to_string().contains("riemann_left"));
    let bad = Tensor::zeros((2, 3, 8, 8), DType::F32, net.device()).unwrap();
    let err =
        IntegratedGradients::default().with_baseline(Baseline::Tensor(bad)).explain(&net, &x, &Target::top_class());
    assert!(err.unwrap_err().to_string().contains("baseline"));
    let err = IntegratedGradients::default().explain(&net, &x, &Target::classes([9]));
    assert!(err.unwrap_err().to_string().contains("class index 9"));
}

#[test]
fn no_more_than_batch_path_points_run_at_once() {
    let net = Net::new(9, Act::Relu, DType::F32);
    let x = net.input(3, 10);
    for batch in [1, 4, 7] {
        net.largest_batch.set(0);
        IntegratedGradients::default().with_steps(20).with_batch(batch).explain(&net, &x, &Target::top(2)).unwrap();
        assert_eq!(net.largest_batch.get(), batch);
    }
}
