//! The engine's ops against central finite differences (in `f64`), against hand-computed values
//! where PyTorch's rules decide ties and divisors, and against candle's forward where candle is
//! right.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{assert_close, check_gradients, constant, random, values, var};
use gaze_engine::ops::{
    adaptive_avg_pool2d, avg_pool2d, linear, max_pool2d, relu, softmax_last_dim, Pool2dConfig, ReluMode,
};

fn pool_configs() -> Vec<(&'static str, Pool2dConfig)> {
    vec![
        ("k2 s2", Pool2dConfig::new(2, 2)),
        ("k3 s2 p1", Pool2dConfig::new(3, 2).padding(1)),
        ("k2 s1 overlapping", Pool2dConfig::new(2, 1)),
        ("k3 s2 ceil", Pool2dConfig::new(3, 2).ceil_mode(true)),
        ("k3x2 s2x3 p1 ceil", Pool2dConfig::rect((3, 2), (2, 3)).padding_hw((1, 1)).ceil_mode(true)),
        ("k2 s3 (gaps)", Pool2dConfig::new(2, 3)),
    ]
}

#[test]
fn max_pool_gradients_match_finite_differences() {
    for (i, (label, cfg)) in pool_configs().into_iter().enumerate() {
        let x = var(&[2, 3, 9, 7], 10 + i as u64);
        check_gradients(&format!("max_pool2d {label}"), &[("x", &x)], || max_pool2d(&x, cfg), 100 + i as u64);
    }
}

#[test]
fn avg_pool_gradients_match_finite_differences() {
    for (i, (label, cfg)) in pool_configs().into_iter().enumerate() {
        for include in [true, false] {
            let x = var(&[2, 2, 9, 7], 20 + i as u64);
            let cfg = cfg.count_include_pad(include);
            check_gradients(
                &format!("avg_pool2d {label} count_include_pad={include}"),
                &[("x", &x)],
                || avg_pool2d(&x, cfg),
                200 + i as u64,
            );
        }
    }
}

#[test]
fn adaptive_avg_pool_gradients_match_finite_differences() {
    for (i, (shape, out)) in
        [([2, 3, 7, 5], (3, 2)), ([1, 2, 5, 6], (7, 4)), ([1, 2, 4, 6], (4, 6))].into_iter().enumerate()
    {
        let x = var(&shape, 30 + i as u64);
        check_gradients(
            &format!("adaptive_avg_pool2d {shape:?} -> {out:?}"),
            &[("x", &x)],
            || adaptive_avg_pool2d(&x, out),
            300 + i as u64,
        );
    }
}

#[test]
fn adaptive_avg_pool_uses_pytorch_windows() {
    // 7 rows to 3: rows 0..3, 2..5, 4..7; 5 columns to 2: columns 0..3, 2..5.
    let x = Tensor::arange(0.0f64, 35.0, &Device::Cpu).unwrap().reshape((1, 1, 7, 5)).unwrap();
    let y = values(&adaptive_avg_pool2d(&x, (3, 2)).unwrap());
    let mean = |r: std::ops::Range<usize>, c: std::ops::Range<usize>| {
        let (mut s, mut n) = (0.0, 0.0);
        for i in r {
            for j in c.clone() {
                s += (i * 5 + j) as f64;
                n += 1.0;
            }
        }
        s / n
    };
    let expected =
        [mean(0..3, 0..3), mean(0..3, 2..5), mean(2..5, 0..3), mean(2..5, 2..5), mean(4..7, 0..3), mean(4..7, 2..5)];
    assert_eq!(y, expected);
}

#[test]
fn max_pool_gives_a_tied_window_whole_gradient_to_its_first_maximum() {
    // Two 2×2 windows: {1, 3 | 3, 2} has its first maximum at (0, 1); {3, 0 | 1, 3} at (0, 2).
    let x = Var::from_tensor(&Tensor::new(&[[[[1.0f64, 3.0, 3.0, 0.0], [3.0, 2.0, 1.0, 3.0]]]], &Device::Cpu).unwrap())
        .unwrap();
    let y = max_pool2d(&x, Pool2dConfig::new(2, 2)).unwrap();
    assert_eq!(values(&y), [3.0, 3.0]);
    let r = Tensor::new(&[[[[10.0f64, 20.0]]]], &Device::Cpu).unwrap();
    let grads = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = values(grads.get(x.as_tensor()).unwrap());
    assert_eq!(g, [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);

    // Overlapping 2×2 windows, stride 1, on a constant plane: every window picks its top-left.
    let x = Var::from_tensor(&Tensor::full(5.0f64, (1, 1, 3, 3), &Device::Cpu).unwrap()).unwrap();
    let y = max_pool2d(&x, Pool2dConfig::new(2, 1)).unwrap();
    let r = Tensor::new(&[[[[1.0f64, 2.0], [4.0, 8.0]]]], &Device::Cpu).unwrap();
    let grads = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = values(grads.get(x.as_tensor()).unwrap());
    assert_eq!(g, [1.0, 2.0, 0.0, 4.0, 8.0, 0.0, 0.0, 0.0, 0.0]);

    // One maximum shared by all four windows collects all their gradients, each with weight 1.
    let mut peak = vec![0.0f64; 9];
    peak[4] = 9.0;
    let x = Var::from_tensor(&Tensor::from_vec(peak, (1, 1, 3, 3), &Device::Cpu).unwrap()).unwrap();
    let y = max_pool2d(&x, Pool2dConfig::new(2, 1)).unwrap();
    let r = Tensor::new(&[[[[1.0f64, 2.0], [4.0, 8.0]]]], &Device::Cpu).unwrap();
    let grads = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = values(grads.get(x.as_tensor()).unwrap());
    assert_eq!(g, [0.0, 0.0, 0.0, 0.0, 15.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn pooling_follows_pytorch_padding_and_ceil_mode_rules() {
    let ones = Tensor::ones((1, 1, 4, 4), candle_core::DType::F64, &Device::Cpu).unwrap();
    // F.avg_pool2d(ones(1, 1, 4, 4), 3, 2, padding=1) = [[4/9, 6/9], [6/9, 1]].
    let y = avg_pool2d(&ones, Pool2dConfig::new(3, 2).padding(1)).unwrap();
    let expected = [4.0 / 9.0, 6.0 / 9.0, 6.0 / 9.0, 1.0];
    assert_close(
        "avg k3 s2 p1",
        &y,
        &Tensor::new(&expected, &Device::Cpu).unwrap().reshape((1, 1, 2, 2)).unwrap(),
        1e-15,
    );
    // With ceil_mode a third window starts at row 3: it covers one input row and the one row of
    // padding, so count_include_pad divides by 2 per axis there.
    let cfg = Pool2dConfig::new(3, 2).padding(1).ceil_mode(true);
    let y = avg_pool2d(&ones, cfg).unwrap();
    assert_eq!(y.dims(), [1, 1, 3, 3]);
    let expected = [4.0 / 9.0, 6.0 / 9.0, 2.0 / 6.0, 6.0 / 9.0, 1.0, 3.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0, 1.0 / 4.0];
    let got = values(&y);
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 1e-15, "{got:?}");
    }
    let y = avg_pool2d(&ones, cfg.count_include_pad(false)).unwrap();
    assert!(values(&y).iter().all(|v| (v - 1.0).abs() < 1e-15));
    // A window that would start in the right padding is dropped: 5 wide, k2 s2 ceil gives 3, and
    // 4 wide, k2 s2 p1 ceil gives 3, not 4.
    let x = random(&[1, 1, 5, 4], 1);
    assert_eq!(max_pool2d(&x, Pool2dConfig::new(2, 2).ceil_mode(true)).unwrap().dims(), [1, 1, 3, 2]);
    assert_eq!(max_pool2d(&x, Pool2dConfig::new(2, 2).padding(1).ceil_mode(true)).unwrap().dims(), [1, 1, 3, 3]);
    // Max pooling pads with −∞: a negative input stays the maximum of a padded window.
    let neg = Tensor::full(-3.0f64, (1, 1, 2, 2), &Device::Cpu).unwrap();
    let y = max_pool2d(&neg, Pool2dConfig::new(3, 1).padding(1)).unwrap();
    assert!(values(&y).iter().all(|&v| v == -3.0));
}

#[test]
fn pooling_forwards_match_candle_where_candle_is_right() {
    let x = random(&[2, 3, 8, 6], 2);
    assert_close("max_pool2d k2", &max_pool2d(&x, Pool2dConfig::new(2, 2)).unwrap(), &x.max_pool2d(2).unwrap(), 0.0);
    assert_close("avg_pool2d k2", &avg_pool2d(&x, Pool2dConfig::new(2, 2)).unwrap(), &x.avg_pool2d(2).unwrap(), 1e-15);
    let x = random(&[1, 2, 7, 9], 3);
    assert_close(
        "max_pool2d k3x2 s3x2",
        &max_pool2d(&x, Pool2dConfig::rect((3, 2), (3, 2))).unwrap(),
        &x.max_pool2d_with_stride((3, 2), (3, 2)).unwrap(),
        0.0,
    );
}

#[test]
fn bad_pooling_configs_are_errors() {
    let x = random(&[1, 1, 4, 4], 4);
    for cfg in
        [Pool2dConfig::new(0, 1), Pool2dConfig::new(2, 0), Pool2dConfig::new(3, 1).padding(2), Pool2dConfig::new(5, 1)]
    {
        let e = max_pool2d(&x, cfg).unwrap_err().to_string();
        assert!(!e.is_empty());
        assert!(avg_pool2d(&x, cfg).is_err());
    }
    let e = max_pool2d(&random(&[4, 4], 5), Pool2dConfig::new(2, 2)).unwrap_err().to_string();
    assert!(e.contains("[4, 4]"), "{e}");
    assert!(adaptive_avg_pool2d(&x, (0, 2)).is_err());
}

#[test]
fn pooling_a_batch_equals_pooling_each_image() {
    let x = random(&[3, 2, 9, 7], 6);
    let cfg = Pool2dConfig::new(3, 2).padding(1).ceil_mode(true);
    for op in [max_pool2d, avg_pool2d] {
        let batch = op(&x, cfg).unwrap();
        for i in 0..3 {
            let one = op(&x.narrow(0, i, 1).unwrap(), cfg).unwrap();
            assert_close("batch", &batch.narrow(0, i, 1).unwrap(), &one, 0.0);
        }
    }
}

#[test]
fn linear_gradients_match_finite_differences() {
    let x = var(&[3, 7], 40);
    let w = var(&[5, 7], 41);
    let b = var(&[5], 42);
    check_gradients("linear", &[("x", &x), ("weight", &w), ("bias", &b)], || linear(&x, &w, Some(&b)), 400);
    check_gradients("linear without bias", &[("x", &x), ("weight", &w)], || linear(&x, &w, None), 401);
    let y = linear(&x, &w, Some(&b)).unwrap();
    let expected = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
    assert_close("linear forward", &y, &expected, 1e-14);
}

#[test]
fn linear_with_constant_weights_stores_no_weight_gradient() {
    let x = var(&[2, 6], 43);
    let w = constant(&var(&[4, 6], 44));
    let b = constant(&var(&[4], 45));
    let y = linear(&x, &w, Some(&b)).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&w).is_none());
    assert!(grads.get(&b).is_none());
    assert!(grads.get(x.as_tensor()).is_some());
}

#[test]
fn bad_linear_shapes_are_errors() {
    let x = random(&[2, 6], 46);
    let e = linear(&x, &random(&[4, 5], 47), None).unwrap_err().to_string();
    assert!(e.contains("[4, 5]"), "{e}");
    assert!(linear(&x, &random(&[4, 6], 47), Some(&random(&[3], 48))).is_err());
    assert!(linear(&random(&[2, 3, 6], 49), &random(&[4, 6], 47), None).is_err());
}

#[test]
fn relu_gradients_match_finite_differences_and_vanish_at_zero() {
    let x = var(&[2, 3, 5], 50);
    check_gradients("relu", &[("x", &x)], || relu(&x, ReluMode::Normal), 500);
    // PyTorch's rule: the gradient at exactly 0 is 0, in every mode that masks by the input.
    let x = Var::from_tensor(&Tensor::new(&[0.0f64, -1.0, 2.0], &Device::Cpu).unwrap()).unwrap();
    for mode in [ReluMode::Normal, ReluMode::Guided] {
        let g = relu(&x, mode).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(values(g.get(x.as_tensor()).unwrap()), [0.0, 0.0, 1.0]);
    }
}

#[test]
fn guided_and_deconvnet_relu_follow_their_documented_rules() {
    let x = Var::from_tensor(&Tensor::new(&[-2.0f64, -1.0, 0.0, 1.0, 2.0, 3.0], &Device::Cpu).unwrap()).unwrap();
    let upstream = Tensor::new(&[1.0f64, -1.0, 1.0, -1.0, 1.0, 0.5], &Device::Cpu).unwrap();
    let grad = |mode| {
        let y = relu(&x, mode).unwrap();
        assert_eq!(values(&y), [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        let g = (y * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        values(g.get(x.as_tensor()).unwrap())
    };
    // Normal: g · [x > 0].
    assert_eq!(grad(ReluMode::Normal), [0.0, 0.0, 0.0, -1.0, 1.0, 0.5]);
    // Guided: max(g, 0) · [x > 0].
    assert_eq!(grad(ReluMode::Guided), [0.0, 0.0, 0.0, 0.0, 1.0, 0.5]);
    // Deconvnet: max(g, 0), whatever the input.
    assert_eq!(grad(ReluMode::Deconvnet), [1.0, 0.0, 1.0, 0.0, 1.0, 0.5]);
}

#[test]
fn softmax_gradients_match_finite_differences_and_candle() {
    let x = var(&[3, 6], 60);
    check_gradients("softmax", &[("x", &x)], || softmax_last_dim(&x), 600);
    let y = softmax_last_dim(&x).unwrap();
    assert_close("softmax forward", &y, &candle_nn::ops::softmax_last_dim(&x).unwrap(), 1e-15);
}
