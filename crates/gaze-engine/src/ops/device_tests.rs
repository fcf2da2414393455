//! Every op's device path against its host kernels, on the host in `f64` (and the resize in
//! `f32`): the values and the gradient of `Σ y ⊙ r` (a fixed random `r`) with respect to every
//! tracked operand, within 1e-10 of the largest magnitude. The host kernels are held to finite
//! differences and to PyTorch elsewhere, so the device path inherits those checks.
//! Each case also counts the values the device path attached, so a case that silently kept the
//! host kernels fails.

use std::cell::Cell;

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::set_device_path_on_host;
use crate::ops::{
    adaptive_avg_pool2d, add_relu, avg_pool2d, batch_norm, batch_norm_relu, conv2d, conv2d_add_relu, conv2d_relu,
    linear, max_pool2d, relu, softmax_last_dim, upsample_bilinear2d, Conv2dConfig, Pool2dConfig, ReluMode,
};

thread_local! {
    /// How many values the device path attached on this thread.
    pub(super) static ATTACHED: Cell<usize> = const { Cell::new(0) };
}

const MODES: [ReluMode; 3] = [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet];

/// Values uniform in [-1, 1), rounded to `step` when it is not 0 (ties for max pooling).
fn random(shape: &[usize], seed: u64, step: f64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|_| {
            let v: f64 = rng.random_range(-1.0..1.0);
            if step > 0.0 {
                (v / step).round() * step
            } else {
                v
            }
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("a tensor")
}

fn var(shape: &[usize], seed: u64) -> Var {
    Var::from_tensor(&random(shape, seed, 0.0)).expect("a variable")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f64>()).expect("values")
}

/// The output of `f` and the gradients of `Σ y ⊙ r` for `tracked`, on the host kernels or on
/// the device path.
fn run(f: &dyn Fn() -> crate::Result<Tensor>, tracked: &[&Var], device: bool) -> Vec<Vec<f64>> {
    set_device_path_on_host(device);
    let y = f().expect("the op runs");
    let r = random(y.dims(), 99, 0.0).to_dtype(y.dtype()).expect("r");
    let grads = (&y * &r).and_then(|t| t.sum_all()).and_then(|t| t.backward()).expect("backward");
    set_device_path_on_host(false);
    let mut out = vec![values(&y)];
    for v in tracked {
        out.push(values(grads.get(v.as_tensor()).expect("a gradient for every tracked operand")));
    }
    out
}

/// Checks the device path of `f` against its host kernels to `tol` times the largest magnitude,
/// and that it attached a value (`expect_device`) or kept the host kernels.
fn check(label: &str, f: impl Fn() -> crate::Result<Tensor>, tracked: &[&Var], expect_device: bool, tol: f64) {
    let host = run(&f, tracked, false);
    let before = ATTACHED.with(Cell::get);
    let device = run(&f, tracked, true);
    let attached = ATTACHED.with(Cell::get) - before;
    assert_eq!(attached > 0, expect_device, "{label}: the device path attached {attached} values");
    for (i, (h, d)) in host.iter().zip(&device).enumerate() {
        let what = if i == 0 { "the value".to_string() } else { format!("gradient {i}") };
        assert_eq!(
            h.len(),
            d.len(),
            "{label}: {what} has {} elements on the device path, {} on the host",
            d.len(),
            h.len()
        );
        let scale = h.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{label}: {what} vanishes");
        let (worst, at) = h.iter().zip(d).map(|(a, b)| (a - b).abs()).enumerate().fold((0.0, 0), |(m, at), (i, e)| {
            if e > m {
                (e, i)
            } else {
                (m, at)
            }
        });
        assert!(
            worst <= tol * scale,
            "{label}: {what} differs by {worst:e} at element {at} (host {}, device path {}, largest {scale:e})",
            h[at],
            d[at]
        );
    }
}

const TOL: f64 = 1e-10;

/// A convolution case: a label, the input shape, the weight shape, the configuration, and whether
/// candle's kernels express it (one stride and one dilation).
type ConvCase = (&'static str, [usize; 4], [usize; 4], Conv2dConfig, bool);

/// Odd convolutions on batches of non-square images.
fn conv_cases() -> Vec<ConvCase> {
    let c = Conv2dConfig::default();
    vec![
        ("3x3 padding 1", [2, 4, 9, 7], [5, 4, 3, 3], c.padding(1), true),
        ("stride 2 padding 1", [2, 4, 10, 7], [5, 4, 3, 3], c.stride(2).padding(1), true),
        ("stride 2 no padding odd size", [2, 3, 11, 8], [4, 3, 3, 3], c.stride(2), true),
        ("7x7 stride 2 padding 3", [1, 3, 13, 11], [4, 3, 7, 7], c.stride(2).padding(3), true),
        ("3x2 kernel padding (1, 2) dilation 2", [2, 4, 11, 9], [4, 4, 3, 2], c.padding_hw((1, 2)).dilation(2), true),
        ("stride 3 padding 2 (more than the reach)", [1, 2, 8, 9], [3, 2, 3, 3], c.stride(3).padding(1), true),
        ("stride (2, 3): host kernels", [2, 4, 11, 9], [4, 4, 3, 2], c.stride_hw((2, 3)).padding_hw((1, 2)), false),
        ("groups 2 stride 2", [2, 4, 9, 7], [6, 2, 3, 3], c.groups(2).stride(2).padding(1), true),
        ("depthwise padding 1", [2, 4, 9, 7], [4, 1, 3, 3], c.groups(4).padding(1), true),
        ("depthwise stride 2 multiplier 2", [2, 4, 9, 7], [8, 1, 3, 3], c.groups(4).stride(2).padding(1), true),
        (
            "depthwise stride 2 padding 2 dilation 2",
            [2, 5, 10, 9],
            [5, 1, 3, 3],
            c.groups(5).stride(2).padding(2).dilation(2),
            true,
        ),
        ("depthwise 5x3 stride 2 no padding", [1, 3, 11, 8], [3, 1, 5, 3], c.groups(3).stride(2), true),
        ("pointwise 1x1 stride 2", [2, 6, 5, 7], [5, 6, 1, 1], c.stride(2), true),
    ]
}

#[test]
fn convolutions_match_the_host_kernels() {
    for (label, xs, ws, cfg, device) in conv_cases() {
        let (x, w, b) = (var(&xs, 1), var(&ws, 2), var(&[ws[0]], 3));
        // Constant weights and bias (a model's), then every operand tracked.
        let (wc, bc) = (w.as_tensor().detach(), b.as_tensor().detach());
        check(label, || conv2d(x.as_tensor(), &wc, Some(&bc), cfg), &[&x], device, TOL);
        check(label, || conv2d(x.as_tensor(), &wc, None, cfg), &[&x], device, TOL);
        let all = [&x, &w, &b];
        check(label, || conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), cfg), &all, device, TOL);
    }
}

#[test]
fn fused_convolutions_match_the_host_kernels_in_every_relu_mode() {
    for (label, xs, ws, cfg, device) in conv_cases() {
        let (x, b) = (var(&xs, 4), random(&[ws[0]], 6, 0.0));
        // Output channel 1 is exactly 0 where its bias is 0 too: the ReLU's rules at 0.
        let mask: Vec<f64> = (0..ws[0]).map(|c| if c == 1 { 0.0 } else { 1.0 }).collect();
        let mask = Tensor::from_vec(mask, (ws[0], 1, 1, 1), &Device::Cpu).expect("mask");
        let w = random(&ws, 5, 0.0).broadcast_mul(&mask).expect("w");
        let b = (b * mask.flatten_all().expect("flat")).expect("b");
        let probe = conv2d(x.as_tensor(), &w, Some(&b), cfg).expect("shape");
        let residual = var(probe.dims(), 7);
        for mode in MODES {
            let l = format!("{label} {mode:?}");
            check(&l, || conv2d_relu(x.as_tensor(), &w, Some(&b), cfg, mode), &[&x], device, TOL);
            let add = || conv2d_add_relu(x.as_tensor(), &w, Some(&b), residual.as_tensor(), cfg, mode);
            check(&l, add, &[&x, &residual], device, TOL);
        }
    }
}

#[test]
fn relus_match_the_host_kernels() {
    // Values rounded to 0.25: exact zeros, where the rules differ.
    let x = Var::from_tensor(&random(&[2, 3, 4, 5], 8, 0.25)).expect("x");
    let y = var(&[2, 3, 4, 5], 9);
    for mode in MODES {
        check(&format!("relu {mode:?}"), || relu(x.as_tensor(), mode), &[&x], true, TOL);
        check(&format!("add_relu {mode:?}"), || add_relu(x.as_tensor(), y.as_tensor(), mode), &[&x, &y], true, TOL);
        let yc = y.as_tensor().detach();
        check(&format!("add_relu {mode:?} one operand"), || add_relu(x.as_tensor(), &yc, mode), &[&x], true, TOL);
    }
}

#[test]
fn poolings_match_the_host_kernels() {
    let p = |k, s| Pool2dConfig::new(k, s);
    let cases = [
        ("3x3 stride 2 padding 1", [2, 3, 9, 8], p(3, 2).padding(1)),
        ("2x2 stride 2 odd size", [2, 3, 7, 9], p(2, 2)),
        ("3x3 stride 1 padding 1", [1, 2, 6, 5], p(3, 1).padding(1)),
        ("3x3 stride 2 ceil mode", [2, 2, 8, 7], p(3, 2).ceil_mode(true)),
        ("3x3 stride 2 padding 1 ceil mode", [1, 2, 8, 10], p(3, 2).padding(1).ceil_mode(true)),
        ("3x2 stride (2, 1) padding (1, 0)", [2, 2, 7, 6], Pool2dConfig::rect((3, 2), (2, 1)).padding_hw((1, 0))),
    ];
    for (label, shape, cfg) in cases {
        // Values rounded to 0.25, so windows hold ties: the first maximum takes the gradient.
        let x = Var::from_tensor(&random(&shape, 10, 0.25)).expect("x");
        check(&format!("max {label}"), || max_pool2d(x.as_tensor(), cfg), &[&x], true, TOL);
        for include in [true, false] {
            let l = format!("avg {label} count_include_pad {include}");
            check(&l, || avg_pool2d(x.as_tensor(), cfg.count_include_pad(include)), &[&x], true, TOL);
        }
    }
    let x = var(&[2, 3, 8, 6], 11);
    for (out, device) in [((4, 3), true), ((1, 1), true), ((8, 6), true), ((3, 4), false)] {
        let l = format!("adaptive average to {out:?}");
        check(&l, || adaptive_avg_pool2d(x.as_tensor(), out), &[&x], device, TOL);
    }
}

#[test]
fn bilinear_resizing_matches_the_host_kernel() {
    let x = var(&[2, 3, 5, 4], 12);
    for (out, align) in
        [((9, 7), false), ((9, 7), true), ((3, 2), false), ((3, 2), true), ((5, 4), false), ((1, 1), true)]
    {
        let l = format!("bilinear to {out:?} align_corners {align}");
        check(&l, || upsample_bilinear2d(x.as_tensor(), out, align), &[&x], true, TOL);
    }
    // In f32 the taps are computed in f32, as the host kernel computes them; the gradient sums
    // about 2,500 products per input pixel in another order (measured 2.5e-6 of the largest).
    let x32 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F32).expect("f32")).expect("x32");
    check("bilinear f32", || upsample_bilinear2d(x32.as_tensor(), (224, 224), false), &[&x32], true, 1e-5);
}

#[test]
fn batch_norms_linear_layers_and_softmax_match_the_host_kernels() {
    let x = var(&[2, 4, 3, 5], 13);
    let (w, b, m) = (var(&[4], 14), var(&[4], 15), var(&[4], 16));
    let v = Var::from_tensor(&random(&[4], 17, 0.0).abs().expect("abs")).expect("v");
    let (wc, bc, mc, vc) = [&w, &b, &m, &v].map(|t| t.as_tensor().detach()).into();
    check("batch_norm", || batch_norm(x.as_tensor(), &wc, &bc, &mc, &vc, 1e-5), &[&x], true, TOL);
    for mode in MODES {
        let l = format!("batch_norm_relu {mode:?}");
        check(&l, || batch_norm_relu(x.as_tensor(), &wc, &bc, &mc, &vc, 1e-5, mode), &[&x], true, TOL);
    }
    let all = [&x, &w, &b, &m, &v];
    let tracked = || {
        batch_norm_relu(
            x.as_tensor(),
            w.as_tensor(),
            b.as_tensor(),
            m.as_tensor(),
            v.as_tensor(),
            1e-5,
            ReluMode::Normal,
        )
    };
    check("batch_norm_relu, statistics tracked", tracked, &all, true, TOL);

    let (xi, wi, bi) = (var(&[3, 6], 18), var(&[4, 6], 19), var(&[4], 20));
    let (wic, bic) = (wi.as_tensor().detach(), bi.as_tensor().detach());
    check("linear", || linear(xi.as_tensor(), &wic, Some(&bic)), &[&xi], true, TOL);
    check("linear without bias", || linear(xi.as_tensor(), &wic, None), &[&xi], true, TOL);
    check(
        "linear, all tracked",
        || linear(xi.as_tensor(), wi.as_tensor(), Some(bi.as_tensor())),
        &[&xi, &wi, &bi],
        true,
        TOL,
    );
    check("softmax", || softmax_last_dim(xi.as_tensor()), &[&xi], true, TOL);
}

#[test]
fn untracked_inputs_get_values_and_no_graph() {
    set_device_path_on_host(true);
    let x = random(&[1, 2, 6, 6], 21, 0.0);
    let w = random(&[3, 2, 3, 3], 22, 0.0);
    let y = conv2d(&x, &w, None, Conv2dConfig::default().padding(1));
    set_device_path_on_host(false);
    let y = y.expect("conv2d");
    assert!(!y.track_op(), "a value of untracked operands is tracked");
    let host = conv2d(&x, &w, None, Conv2dConfig::default().padding(1)).expect("conv2d");
    let diff = (y - host).and_then(|d| d.abs()).and_then(|d| d.max_all()).and_then(|d| d.to_scalar::<f64>());
    assert!(diff.expect("diff") < 1e-12);
}
