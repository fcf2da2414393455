//! The engine's ops against central finite differences (in `f64`), against hand-computed values
//! where PyTorch's rules decide ties and divisors, and against candle's forward where candle is
//! right.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{assert_close, check_gradients, constant, random, values, var};
use gaze_engine::ops::{
    adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, linear, max_pool2d, relu, softmax_last_dim,
    upsample_bilinear2d, Conv2dConfig, Pool2dConfig, ReluMode,
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

/// Convolutions to check: a label, the input shape, the weight shape and the configuration.
fn conv_cases() -> Vec<(&'static str, [usize; 4], [usize; 4], Conv2dConfig)> {
    let c = Conv2dConfig::default();
    vec![
        ("3x3", [2, 4, 9, 7], [3, 4, 3, 3], c),
        ("stride 2 padding 1", [2, 4, 9, 7], [3, 4, 3, 3], c.stride(2).padding(1)),
        (
            "stride 2 padding 1, H + 2p − k not divisible by the stride",
            [2, 4, 10, 7],
            [3, 4, 3, 3],
            c.stride(2).padding(1),
        ),
        ("3x2 kernel stride (2, 3) padding (1, 2)", [2, 4, 9, 7], [3, 4, 3, 2], c.stride_hw((2, 3)).padding_hw((1, 2))),
        ("dilation 2 padding 2", [2, 4, 9, 7], [2, 4, 3, 3], c.dilation(2).padding(2)),
        ("dilation (2, 1) stride 2", [2, 4, 9, 7], [2, 4, 3, 2], c.dilation_hw((2, 1)).stride(2)),
        ("groups 2 stride 2", [2, 4, 9, 7], [4, 2, 3, 3], c.groups(2).stride(2)),
        ("depthwise padding 1", [2, 4, 9, 7], [4, 1, 3, 3], c.groups(4).padding(1)),
        ("depthwise stride 2 padding 1", [2, 4, 9, 7], [4, 1, 3, 3], c.groups(4).stride(2).padding(1)),
        ("depthwise multiplier 2 dilation 2", [2, 4, 9, 7], [8, 1, 3, 3], c.groups(4).dilation(2).padding(1)),
        ("pointwise 1x1", [2, 4, 9, 7], [5, 4, 1, 1], c),
        ("1x1 stride 2", [2, 4, 9, 7], [5, 4, 1, 1], c.stride(2)),
        ("single input channel", [2, 1, 9, 7], [3, 1, 3, 3], c.padding(1)),
    ]
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    for (i, (label, xs, ws, cfg)) in conv_cases().into_iter().enumerate() {
        let seed = 70 + 10 * i as u64;
        let x = var(&xs, seed);
        let w = var(&ws, seed + 1);
        let b = var(&[ws[0]], seed + 2);
        check_gradients(
            &format!("conv2d {label}"),
            &[("x", &x), ("weight", &w), ("bias", &b)],
            || conv2d(&x, &w, Some(&b), cfg),
            seed + 3,
        );
    }
}

#[test]
fn conv2d_forward_matches_a_direct_sum() {
    for (label, xs, ws, cfg) in conv_cases() {
        let x = random(&xs, 1);
        let w = random(&ws, 2);
        let b = random(&[ws[0]], 3);
        let y = conv2d(&x, &w, Some(&b), cfg).unwrap();
        let (xv, wv, bv) = (values(&x), values(&w), values(&b));
        let [n, cin, h, wd] = xs;
        let [cout, cin_g, kh, kw] = ws;
        let (oh, ow) = (y.dims()[2], y.dims()[3]);
        let cout_g = cout / cfg.groups;
        let mut expected = vec![0.0; n * cout * oh * ow];
        for img in 0..n {
            for co in 0..cout {
                let grp = co / cout_g;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bv[co];
                        for c in 0..cin_g {
                            let ci = grp * cin_g + c;
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy =
                                        (oy * cfg.stride.0 + ki * cfg.dilation.0) as isize - cfg.padding.0 as isize;
                                    let ix =
                                        (ox * cfg.stride.1 + kj * cfg.dilation.1) as isize - cfg.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    acc += wv[((co * cin_g + c) * kh + ki) * kw + kj]
                                        * xv[((img * cin + ci) * h + iy as usize) * wd + ix as usize];
                                }
                            }
                        }
                        expected[((img * cout + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        let expected = Tensor::from_vec(expected, (n, cout, oh, ow), &Device::Cpu).unwrap();
        assert_close(&format!("conv2d {label}"), &y, &expected, 1e-12);
    }
}

#[test]
fn conv2d_forward_matches_candle_where_candle_is_right() {
    let x = random(&[2, 4, 9, 7], 4);
    let w = random(&[3, 4, 3, 3], 5);
    for (padding, stride) in [(0, 1), (1, 1), (1, 2)] {
        let ours = conv2d(&x, &w, None, Conv2dConfig::default().padding(padding).stride(stride)).unwrap();
        let candle = x.conv2d(&w, padding, stride, 1, 1).unwrap();
        assert_close(&format!("conv2d padding {padding} stride {stride}"), &ours, &candle, 1e-12);
    }
}

#[test]
fn conv2d_and_linear_with_constant_weights_store_no_weight_gradient() {
    let x = var(&[2, 3, 8, 6], 6);
    let w = constant(&var(&[4, 3, 3, 3], 7));
    let b = constant(&var(&[4], 8));
    let lw = constant(&var(&[5, 4 * 4 * 3], 9));
    let lb = constant(&var(&[5], 10));
    let cfg = Conv2dConfig::default().stride(2).padding(1);
    let y = conv2d(&x, &w, Some(&b), cfg).unwrap();
    assert_eq!(y.dims(), [2, 4, 4, 3]);
    let y = linear(&y.flatten_from(1).unwrap(), &lw, Some(&lb)).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    for (name, t) in [("conv weight", &w), ("conv bias", &b), ("linear weight", &lw), ("linear bias", &lb)] {
        assert!(grads.get(t).is_none(), "the gradient store holds the {name}");
    }
    assert!(grads.get(x.as_tensor()).is_some());
    // The same network with variable weights gets every gradient.
    let wv = Var::from_tensor(&w).unwrap();
    let y = conv2d(&x, &wv, Some(&b), cfg).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(wv.as_tensor()).is_some());
    assert!(grads.get(&b).is_none());
}

#[test]
fn conv2d_on_a_batch_equals_each_image() {
    let x = random(&[3, 4, 9, 7], 11);
    for (label, _, ws, cfg) in conv_cases() {
        if ws[1] * cfg.groups != 4 {
            continue;
        }
        let w = random(&ws, 12);
        let batch = conv2d(&x, &w, None, cfg).unwrap();
        for i in 0..3 {
            let one = conv2d(&x.narrow(0, i, 1).unwrap(), &w, None, cfg).unwrap();
            assert_close(label, &batch.narrow(0, i, 1).unwrap(), &one, 1e-12);
        }
    }
}

#[test]
fn bad_conv2d_arguments_are_errors() {
    let x = random(&[1, 4, 6, 5], 13);
    let w = random(&[6, 4, 3, 3], 14);
    let c = Conv2dConfig::default();
    let e = conv2d(&x, &w, None, c.groups(3)).unwrap_err().to_string();
    assert!(e.contains('3') && e.contains("4 input channels"), "{e}");
    let e = conv2d(&x, &w, None, c.groups(2)).unwrap_err().to_string();
    assert!(e.contains("[6, 4, 3, 3]"), "{e}");
    assert!(conv2d(&x, &w, None, c.stride(0)).is_err());
    assert!(conv2d(&x, &w, None, c.dilation(0)).is_err());
    assert!(conv2d(&x, &w, None, c.dilation(3)).is_err());
    assert!(conv2d(&x, &w, Some(&random(&[5], 15)), c).is_err());
    assert!(conv2d(&random(&[4, 6, 5], 16), &w, None, c).is_err());
    let e = conv2d(&x.to_dtype(candle_core::DType::F32).unwrap(), &w, None, c).unwrap_err().to_string();
    assert!(e.contains("F64"), "{e}");
}

#[test]
fn bilinear_upsampling_gradients_match_finite_differences() {
    for (i, (shape, out)) in
        [([2, 2, 5, 4], (9, 11)), ([2, 2, 9, 7], (4, 3)), ([1, 2, 6, 5], (3, 8)), ([1, 2, 4, 3], (1, 1))]
            .into_iter()
            .enumerate()
    {
        for align in [false, true] {
            let x = var(&shape, 80 + i as u64);
            check_gradients(
                &format!("upsample_bilinear2d {shape:?} -> {out:?} align_corners={align}"),
                &[("x", &x)],
                || upsample_bilinear2d(&x, out, align),
                800 + i as u64,
            );
        }
    }
}

#[test]
fn bilinear_upsampling_matches_pytorch_values() {
    let x = Tensor::new(&[[[[0.0f64, 1.0], [2.0, 3.0]]]], &Device::Cpu).unwrap();
    // F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    let expected = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0];
    assert_eq!(values(&upsample_bilinear2d(&x, (4, 4), false).unwrap()), expected);
    // align_corners=True, to 3 × 3.
    let expected = [0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0];
    assert_eq!(values(&upsample_bilinear2d(&x, (3, 3), true).unwrap()), expected);
    // Shrinking without antialiasing samples between pixels: 4 × 4 to 2 × 2 averages 2 × 2 blocks.
    let x = Tensor::arange(0.0f64, 16.0, &Device::Cpu).unwrap().reshape((1, 1, 4, 4)).unwrap();
    assert_eq!(values(&upsample_bilinear2d(&x, (2, 2), false).unwrap()), [2.5, 4.5, 10.5, 12.5]);
    // The same size is the identity.
    let x = random(&[1, 2, 5, 3], 17);
    assert_eq!(values(&upsample_bilinear2d(&x, (5, 3), false).unwrap()), values(&x));
    assert!(upsample_bilinear2d(&x, (0, 3), false).is_err());
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let x = var(&[2, 3, 5, 4], 90);
    let weight = var(&[3], 91);
    let bias = var(&[3], 92);
    let mean = var(&[3], 93);
    let variance = Var::from_tensor(&(random(&[3], 94).abs().unwrap() + 0.5).unwrap()).unwrap();
    check_gradients(
        "batch_norm",
        &[("x", &x), ("weight", &weight), ("bias", &bias), ("running mean", &mean), ("running variance", &variance)],
        || batch_norm(&x, &weight, &bias, &mean, &variance, 1e-5),
        900,
    );
    let y = batch_norm(&x, &weight, &bias, &mean, &variance, 1e-3).unwrap();
    let per_channel = |t: &Var| t.reshape((1, 3, 1, 1)).unwrap();
    let expected = x
        .broadcast_sub(&per_channel(&mean))
        .unwrap()
        .broadcast_div(&(per_channel(&variance) + 1e-3).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&per_channel(&weight))
        .unwrap()
        .broadcast_add(&per_channel(&bias))
        .unwrap();
    assert_close("batch_norm forward", &y, &expected, 1e-12);
}

#[test]
fn batch_norm_with_constant_parameters_stores_only_the_input_gradient() {
    let x = var(&[2, 3, 4, 4], 95);
    let params: Vec<Tensor> = (0..4).map(|i| random(&[3], 96 + i).abs().unwrap()).collect();
    let y = batch_norm(&x, &params[0], &params[1], &params[2], &params[3], 1e-5).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(x.as_tensor()).is_some());
    for p in &params {
        assert!(grads.get(p).is_none());
    }
    let e = batch_norm(&x, &params[0], &random(&[4], 1), &params[2], &params[3], 1e-5).unwrap_err().to_string();
    assert!(e.contains("bias") && e.contains("[4]"), "{e}");
    assert!(batch_norm(&x, &params[0], &params[1], &params[2], &params[3], -1.0).is_err());
}

/// conv → batch norm → relu → max pool → conv → avg pool → adaptive pool → linear → softmax.
#[test]
fn a_small_cnn_has_exact_gradients_end_to_end() {
    let x = var(&[2, 3, 9, 8], 100);
    let w1 = var(&[4, 3, 3, 3], 101);
    let b1 = random(&[4], 102);
    let bn: Vec<Tensor> = (0..4).map(|i| random(&[4], 103 + i).abs().unwrap()).collect();
    let w2 = (random(&[6, 2, 3, 3], 107) * 0.3).unwrap();
    let w3 = Var::from_tensor(&(random(&[3, 6 * 2 * 2], 108) * 0.1).unwrap()).unwrap();
    let b3 = Var::from_tensor(&(random(&[3], 109) * 0.1).unwrap()).unwrap();
    let net = || -> gaze_engine::Result<Tensor> {
        let h = conv2d(&x, &w1, Some(&b1), Conv2dConfig::default().padding(1))?;
        let h = batch_norm(&h, &bn[0], &bn[1], &bn[2], &(&bn[3] + 1.0)?, 1e-5)?;
        let h = relu(&h, ReluMode::Normal)?;
        let h = max_pool2d(&h, Pool2dConfig::new(3, 2).padding(1).ceil_mode(true))?;
        let h = conv2d(&h, &w2, None, Conv2dConfig::default().groups(2).padding(1))?;
        let h = avg_pool2d(&h, Pool2dConfig::new(2, 1).count_include_pad(false))?;
        let h = adaptive_avg_pool2d(&h, (2, 2))?;
        let h = linear(&h.flatten_from(1)?, &w3, Some(&b3))?;
        softmax_last_dim(&h)
    };
    let y = net().unwrap();
    let spread = values(&y).iter().fold(0.0f64, |m, &p| m.max(p));
    assert!(spread < 0.9, "the softmax saturates ({y}), which would hide its gradient");
    assert_eq!(y.dims(), [2, 3]);
    check_gradients(
        "small CNN",
        &[("x", &x), ("first conv weight", &w1), ("linear weight", &w3), ("linear bias", &b3)],
        net,
        1000,
    );
}

/// The check itself can fail: candle 0.11's own max pooling backward (which this crate replaces)
/// does not match finite differences.
#[test]
#[should_panic(expected = "differs from finite differences")]
fn the_finite_difference_check_catches_a_wrong_gradient() {
    let x = var(&[1, 2, 6, 4], 110);
    check_gradients("candle max_pool2d", &[("x", &x)], || Ok(x.max_pool2d(2)?), 1100);
}

/// The `f32` kernels compute what the `f64` ones do, to `f32` precision.
#[test]
fn f32_ops_agree_with_f64() {
    use candle_core::DType::{F32, F64};
    let x = random(&[2, 4, 9, 7], 120);
    let w = random(&[6, 2, 3, 3], 121);
    let b = random(&[6], 122);
    let lw = random(&[3, 6 * 2 * 2], 123);
    let f32 = |t: &Tensor| t.to_dtype(F32).unwrap();
    let net = |x: &Tensor, w: &Tensor, b: &Tensor, lw: &Tensor| -> gaze_engine::Result<Tensor> {
        let h = conv2d(x, w, Some(b), Conv2dConfig::default().groups(2).stride(2).padding(1))?;
        let h = batch_norm(&h, b, b, b, &(b.abs()? + 1.0)?, 1e-5)?;
        let h = max_pool2d(&h, Pool2dConfig::new(2, 1))?;
        let h = avg_pool2d(&h, Pool2dConfig::new(3, 2).padding(1).ceil_mode(true))?;
        let h = upsample_bilinear2d(&h, (5, 3), false)?;
        let h = adaptive_avg_pool2d(&h, (2, 2))?;
        let h = linear(&h.flatten_from(1)?, lw, None)?;
        softmax_last_dim(&relu(&h, ReluMode::Normal)?)
    };
    let wide = net(&x, &w, &b, &lw).unwrap();
    let narrow = net(&f32(&x), &f32(&w), &f32(&b), &f32(&lw)).unwrap();
    assert_eq!(narrow.dtype(), F32);
    assert_close("f32 network", &narrow.to_dtype(F64).unwrap(), &wide, 1e-5);
    let xv = Var::from_tensor(&f32(&x)).unwrap();
    let y = conv2d(&xv, &f32(&w), None, Conv2dConfig::default().groups(2)).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let xw = Var::from_tensor(&x).unwrap();
    let y = conv2d(&xw, &w, None, Conv2dConfig::default().groups(2)).unwrap();
    let gw = y.sum_all().unwrap().backward().unwrap();
    assert_close(
        "f32 conv2d input gradient",
        &g.get(xv.as_tensor()).unwrap().to_dtype(F64).unwrap(),
        gw.get(xw.as_tensor()).unwrap(),
        1e-5,
    );
}
