use candle_core::{DType, Device, Tensor};
use gaze_core::{Attribution, AttributionMeta, Explainer, Resolution, Result, Target};
use gaze_integrated_gradients::IntegratedGradients;
use gaze_saliency::Gradient;
use gaze_smoothgrad::{Aggregate, Noise, SmoothGrad};
use gaze_testkit::{rel, Act, Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn plan(n: usize, s: usize, scale: f64, seed: u64, dtype: DType) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = n * s * 3 * 8 * 8;
    let v: Vec<f64> = (0..len).map(|_| scale * (rng.random::<f64>() * 2.0 - 1.0)).collect();
    Tensor::from_vec(v, (n, s, 3, 8, 8), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

#[test]
fn zero_noise_gives_the_gradient() {
    let net = Net::new(1, Act::Relu, DType::F32);
    let x = net.input(2, 2);
    let target = Target::top(2);
    let grad = Gradient::saliency().explain(&net, &x, &target).unwrap();
    for aggregate in Aggregate::ALL {
        let sg = SmoothGrad::new(Gradient::saliency())
            .with_samples(4)
            .with_noise(Noise::Sigma(0.0))
            .with_aggregate(aggregate)
            .with_batch(3)
            .explain(&net, &x, &target)
            .unwrap();
        assert_eq!(sg.targets, grad.targets);
        let want = match aggregate {
            Aggregate::Mean => grad.values.clone(),
            Aggregate::Square => grad.values.sqr().unwrap(),
            Aggregate::Var => grad.values.zeros_like().unwrap(),
        };
        let err = rel(&sg.values, &want);
        match aggregate {
            Aggregate::Var => assert!(sg.values.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-10),
            _ => assert!(err < 1e-6, "{aggregate}: {err}"),
        }
    }
}

#[test]
fn every_aggregate_matches_a_direct_computation_from_the_same_draws() {
    let net = Net::new(3, Act::Relu, DType::F64);
    let x = net.input(2, 4);
    let lists = vec![vec![1, 2], vec![0, 4]];
    let target = Target::per_image_lists(lists.clone());
    let (n, s) = (2, 5);
    let noise = plan(n, s, 0.3, 5, DType::F64);
    // The maps of every noisy copy, one copy at a time.
    let mut maps = vec![Vec::new(); n];
    for i in 0..n {
        for k in 0..s {
            let copy = (x.narrow(0, i, 1).unwrap() + noise.get(i).unwrap().narrow(0, k, 1).unwrap()).unwrap();
            let m = Gradient::saliency().explain(&net, &copy, &Target::classes(lists[i].clone())).unwrap();
            maps[i].push(m.values.get(0).unwrap());
        }
    }
    let stacked: Vec<Tensor> = maps.iter().map(|m| Tensor::stack(m, 0).unwrap()).collect();
    let mean = Tensor::stack(&stacked.iter().map(|m| m.mean(0).unwrap()).collect::<Vec<_>>(), 0).unwrap();
    let sq = Tensor::stack(&stacked.iter().map(|m| m.sqr().unwrap().mean(0).unwrap()).collect::<Vec<_>>(), 0).unwrap();
    let var = Tensor::stack(
        &stacked
            .iter()
            .map(|m| m.broadcast_sub(&m.mean_keepdim(0).unwrap()).unwrap().sqr().unwrap().mean(0).unwrap())
            .collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    for (aggregate, want) in [(Aggregate::Mean, &mean), (Aggregate::Square, &sq), (Aggregate::Var, &var)] {
        for batch in [1, 3, 100] {
            let got = SmoothGrad::new(Gradient::saliency())
                .with_noise(Noise::Plan(noise.clone()))
                .with_aggregate(aggregate)
                .with_batch(batch)
                .explain(&net, &x, &target)
                .unwrap();
            assert_eq!(got.values.dims(), &[2, 2, 3, 8, 8]);
            let err = rel(&got.values, want);
            assert!(err < 1e-10, "{aggregate} batch {batch}: {err}");
            assert_eq!(got.meta.options["samples"], "5");
        }
    }
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let net = Net::new(7, Act::Relu, DType::F32);
    let x = net.input(3, 8);
    let noise = plan(3, 4, 0.2, 9, DType::F32);
    let lists = vec![vec![0], vec![3], vec![2]];
    for aggregate in Aggregate::ALL {
        let sg = |p: Tensor| {
            SmoothGrad::new(Gradient::guided_backprop())
                .with_noise(Noise::Plan(p))
                .with_aggregate(aggregate)
                .with_batch(5)
        };
        let all = sg(noise.clone()).explain(&net, &x, &Target::per_image_lists(lists.clone())).unwrap();
        for (i, list) in lists.iter().enumerate().take(3) {
            let one = sg(noise.narrow(0, i, 1).unwrap())
                .explain(&net, &x.narrow(0, i, 1).unwrap(), &Target::classes(list.clone()))
                .unwrap();
            let err = rel(&all.values.narrow(0, i, 1).unwrap(), &one.values);
            assert!(err < 1e-5, "{aggregate} image {i}: {err}");
        }
    }
}

#[test]
fn seeded_draws_are_reproducible_and_independent_of_the_batch() {
    let net = Net::new(11, Act::Relu, DType::F32);
    let x = net.input(2, 12);
    let run = |seed: u64, batch: usize| {
        SmoothGrad::new(Gradient::saliency())
            .with_samples(6)
            .with_noise(Noise::Fraction(0.2))
            .with_seed(seed)
            .with_batch(batch)
            .explain(&net, &x, &Target::top_class())
            .unwrap()
    };
    let a = run(3, 4);
    assert!(rel(&a.values, &run(3, 4).values) == 0.0);
    assert!(rel(&a.values, &run(3, 12).values) < 1e-6);
    assert!(rel(&a.values, &run(4, 4).values) > 1e-3);
    // The targets are the clean images' top classes, whatever the noise does to the ranking.
    let clean = Gradient::saliency().explain(&net, &x, &Target::top_class()).unwrap();
    assert_eq!(a.targets, clean.targets);
    assert_eq!(a.meta.method, "smoothgrad");
    assert_eq!(a.meta.options["smooth-of"], "saliency");
}

/// A method on no model at all that returns its input as the map, to look at the noise itself.
struct Identity;

impl Explainer<()> for Identity {
    fn method(&self) -> &'static str {
        "identity"
    }
    fn explain(&self, _: &(), input: &Tensor, target: &Target) -> Result<Attribution> {
        let targets = target.resolve(&Tensor::zeros((input.dim(0)?, 3), DType::F32, input.device())?)?;
        Ok(Attribution {
            values: input.unsqueeze(1)?,
            targets,
            scores: None,
            meta: AttributionMeta::new("identity", Resolution::Input),
        })
    }
}

#[test]
fn fractional_noise_scales_with_each_images_range() {
    // Image 0 spans [0, 1], image 1 spans [-5, 5]: at 10% of the range their noise has standard
    // deviations 0.1 and 1.0.
    let dev = Device::Cpu;
    let lo = Tensor::arange(0f32, 64.0, &dev).unwrap().affine(1.0 / 63.0, 0.0).unwrap();
    let hi = lo.affine(10.0, -5.0).unwrap();
    let x = Tensor::stack(&[lo, hi], 0).unwrap().reshape((2, 1, 8, 8)).unwrap();
    let var = SmoothGrad::new(Identity)
        .with_samples(400)
        .with_noise(Noise::Fraction(0.1))
        .with_aggregate(Aggregate::Var)
        .with_batch(64)
        .explain(&(), &x, &Target::classes([0]))
        .unwrap();
    let per_image = var.values.flatten_from(1).unwrap().mean(1).unwrap().to_vec1::<f32>().unwrap();
    assert!((per_image[0].sqrt() - 0.1).abs() < 0.005, "{per_image:?}");
    assert!((per_image[1].sqrt() - 1.0).abs() < 0.05, "{per_image:?}");
}

#[test]
fn a_sample_count_whose_total_overflows_is_an_error() {
    let x = Tensor::zeros((2, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let err = SmoothGrad::new(Identity)
        .with_samples(usize::MAX)
        .explain(&(), &x, &Target::classes([0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--samples")
            && err.contains(&format!("at most {} samples per image for 2 images", usize::MAX / 2)),
        "{err}"
    );
}

#[test]
fn wraps_integrated_gradients_too() {
    let net = Net::new(13, Act::Relu, DType::F32);
    let x = net.input(2, 14);
    let sg = SmoothGrad::new(IntegratedGradients::default().with_steps(4))
        .with_samples(2)
        .with_noise(Noise::Sigma(0.1))
        .explain(&net, &x, &Target::top(2))
        .unwrap();
    assert_eq!(sg.values.dims(), &[2, 2, 3, 8, 8]);
    assert_eq!(sg.meta.options["smooth-of"], "integrated-gradients");
    assert_eq!(sg.meta.options["steps"], "4");
}

#[test]
fn bad_options_name_the_value_and_what_is_valid() {
    let net = Net::new(1, Act::Relu, DType::F32);
    let x = net.input(2, 1);
    let err = SmoothGrad::new(Gradient::saliency())
        .with_noise(Noise::Plan(plan(1, 2, 0.1, 1, DType::F32)))
        .explain(&net, &x, &Target::top_class())
        .unwrap_err()
        .to_string();
    assert!(err.contains("noise plan") && err.contains("[2, S, 3, 8, 8]"), "{err}");
    let err = SmoothGrad::new(Gradient::saliency()).with_samples(0).explain(&net, &x, &Target::top_class());
    assert!(err.unwrap_err().to_string().contains("--samples"));
    let err =
        SmoothGrad::new(Gradient::saliency()).with_noise(Noise::Sigma(-1.0)).explain(&net, &x, &Target::top_class());
    assert!(err.unwrap_err().to_string().contains("-1"));
    assert!(Noise::from_options(Some(0.1), Some(0.2), Noise::Sigma(1.0)).is_err());
    assert!(matches!(Noise::from_options(None, Some(0.2), Noise::Sigma(1.0)).unwrap(), Noise::Fraction(f) if f == 0.2));
    assert_eq!(Aggregate::parse("vargrad").unwrap(), Aggregate::Var);
    let err = Aggregate::parse("median").unwrap_err().to_string();
    assert!(err.contains("median") && err.contains("square"), "{err}");
}

#[test]
fn no_more_than_batch_copies_run_at_once() {
    let net = Net::new(15, Act::Relu, DType::F32);
    let x = net.input(3, 16);
    for batch in [1, 4, 5] {
        net.largest_batch.set(0);
        SmoothGrad::new(Gradient::saliency().with_batch(100))
            .with_samples(7)
            .with_batch(batch)
            .explain(&net, &x, &Target::top(2))
            .unwrap();
        assert_eq!(net.largest_batch.get(), batch.max(3), "the clean images' ranking runs all 3 at once");
    }
}
