//! The fused convolution and ReLU, and the fused convolution, residual sum and ReLU, against the
//! ops in sequence, in every ReLU mode, and against central finite differences.

mod common;

use candle_core::{DType, Tensor, Var};
use common::{check_gradients, constant, random, values, var};
use gaze_engine::ops::{add_relu, conv2d, conv2d_add_relu, conv2d_relu, relu, Conv2dConfig, ReluMode};

const MODES: [ReluMode; 3] = [ReluMode::Normal, ReluMode::Guided, ReluMode::Deconvnet];

/// Odd convolutions on batches of 3 non-square images: a label, the input shape, the weight shape
/// and the configuration.
fn cases() -> Vec<(&'static str, [usize; 4], [usize; 4], Conv2dConfig)> {
    let c = Conv2dConfig::default();
    vec![
        ("3x3 padding 1", [3, 4, 9, 7], [5, 4, 3, 3], c.padding(1)),
        ("stride 2 padding 1", [3, 4, 10, 7], [5, 4, 3, 3], c.stride(2).padding(1)),
        (
            "3x2 kernel stride (2, 3) dilation 2",
            [3, 4, 11, 9],
            [4, 4, 3, 2],
            c.stride_hw((2, 3)).padding_hw((1, 2)).dilation(2),
        ),
        ("groups 2 stride 2", [3, 4, 9, 7], [6, 2, 3, 3], c.groups(2).stride(2).padding(1)),
        ("depthwise padding 1", [3, 4, 9, 7], [4, 1, 3, 3], c.groups(4).padding(1)),
        ("depthwise stride 2", [3, 4, 9, 7], [8, 1, 3, 3], c.groups(4).stride(2).padding(1)),
        ("pointwise 1x1", [3, 6, 5, 7], [5, 6, 1, 1], c),
    ]
}

/// A weight of `shape` whose output channel 1 is all zeros, so that with a zero bias there the
/// convolution's output is exactly 0 on a whole channel: the rules at 0 are exercised.
fn weight_with_a_zero_channel(shape: [usize; 4], seed: u64) -> Var {
    let w = random(&shape, seed);
    let mask: Vec<f64> = (0..shape[0]).map(|c| if c == 1 { 0.0 } else { 1.0 }).collect();
    let mask = Tensor::from_vec(mask, (shape[0], 1, 1, 1), w.device()).unwrap();
    Var::from_tensor(&w.broadcast_mul(&mask).unwrap()).unwrap()
}

fn bias_with_a_zero(len: usize, seed: u64) -> Var {
    let b = values(&random(&[len], seed));
    let b: Vec<f64> = b.iter().enumerate().map(|(c, v)| if c == 1 { 0.0 } else { *v }).collect();
    Var::from_tensor(&Tensor::new(b, &candle_core::Device::Cpu).unwrap()).unwrap()
}

/// The output and the gradients of `Σ y ⊙ r` with respect to `x`, `w` and `b`.
fn run(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> gaze_engine::Result<Tensor>,
    (x, w, b): (&Var, &Var, &Var),
    r: &Tensor,
) -> Vec<Vec<f64>> {
    let y = f(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![values(&y)];
    for v in [x, w, b] {
        out.push(values(grads.get(v.as_tensor()).expect("a gradient for every variable")));
    }
    out
}

#[test]
fn fused_equals_conv2d_then_relu_in_every_mode_bit_for_bit() {
    for (i, (label, xs, ws, cfg)) in cases().into_iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        let x = var(&xs, seed);
        let w = weight_with_a_zero_channel(ws, seed + 1);
        let b = bias_with_a_zero(ws[0], seed + 2);
        let probe = conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), cfg).unwrap();
        let r = random(probe.dims(), seed + 3);
        let y = values(&probe);
        assert!(y.contains(&0.0), "{label}: the zero channel gives outputs of exactly 0");
        assert!(y.iter().any(|v| *v < 0.0) && y.iter().any(|v| *v > 0.0), "{label}: outputs of both signs");
        for mode in MODES {
            let fused = run(|x, w, b| conv2d_relu(x, w, Some(b), cfg, mode), (&x, &w, &b), &r);
            let unfused = run(|x, w, b| relu(&conv2d(x, w, Some(b), cfg)?, mode), (&x, &w, &b), &r);
            for (what, a, e) in ["y", "dx", "dw", "db"].iter().zip(&fused).zip(&unfused).map(|((w, a), e)| (w, a, e)) {
                assert_eq!(a, e, "{label} {mode:?}: {what}");
            }
        }
    }
}

#[test]
fn fused_equals_conv2d_then_relu_in_f32() {
    let cfg = Conv2dConfig::default().stride(2).padding(1);
    let x = Var::from_tensor(&random(&[3, 4, 10, 7], 401).to_dtype(DType::F32).unwrap()).unwrap();
    let w = random(&[5, 4, 3, 3], 402).to_dtype(DType::F32).unwrap();
    let b = random(&[5], 403).to_dtype(DType::F32).unwrap();
    let r = random(&[3, 5, 5, 4], 404).to_dtype(DType::F32).unwrap();
    for mode in MODES {
        let grad = |y: Tensor| {
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (values(&y), values(g.get(x.as_tensor()).unwrap()))
        };
        let fused = grad(conv2d_relu(x.as_tensor(), &w, Some(&b), cfg, mode).unwrap());
        let unfused = grad(relu(&conv2d(x.as_tensor(), &w, Some(&b), cfg).unwrap(), mode).unwrap());
        assert_eq!(fused, unfused, "{mode:?}");
    }
}

#[test]
fn fused_gradients_match_finite_differences() {
    for (i, (label, xs, ws, cfg)) in cases().into_iter().enumerate() {
        let seed = 500 + 10 * i as u64;
        // Two images, so that every input stays within the check's size.
        let x = var(&[2, xs[1], xs[2], xs[3]], seed);
        let w = var(&ws, seed + 1);
        let b = var(&[ws[0]], seed + 2);
        check_gradients(
            &format!("conv2d_relu {label}"),
            &[("x", &x), ("weight", &w), ("bias", &b)],
            || conv2d_relu(&x, &w, Some(&b), cfg, ReluMode::Normal),
            seed + 3,
        );
    }
}

#[test]
fn fused_with_constant_weights_stores_only_the_input_gradient() {
    let cfg = Conv2dConfig::default().padding(1);
    let x = var(&[3, 4, 9, 7], 601);
    let (w, b) = (var(&[5, 4, 3, 3], 602), var(&[5], 603));
    let (wc, bc) = (constant(&w), constant(&b));
    for mode in MODES {
        let y = conv2d_relu(&x, &wc, Some(&bc), cfg, mode).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some(), "{mode:?}");
        assert!(grads.get(&wc).is_none() && grads.get(&bc).is_none(), "{mode:?}");
    }
    // Nothing tracked: no gradient at all, and no error.
    let y = conv2d_relu(&constant(&x), &wc, None, cfg, ReluMode::Normal).unwrap();
    assert!(y.sum_all().unwrap().backward().is_ok());
}

#[test]
fn fused_on_a_batch_equals_each_image() {
    let cfg = Conv2dConfig::default().stride(2).padding(1).groups(2);
    let x = random(&[3, 4, 9, 7], 701);
    let (w, b) = (random(&[6, 2, 3, 3], 702), random(&[6], 703));
    for mode in MODES {
        let batch = values(&conv2d_relu(&x, &w, Some(&b), cfg, mode).unwrap());
        let one_by_one: Vec<f64> = (0..3)
            .flat_map(|i| values(&conv2d_relu(&x.narrow(0, i, 1).unwrap(), &w, Some(&b), cfg, mode).unwrap()))
            .collect();
        assert_eq!(batch, one_by_one, "{mode:?}");
    }
}

#[test]
fn fused_rejects_what_conv2d_rejects() {
    let x = random(&[2, 4, 9, 7], 801);
    let w = random(&[5, 4, 3, 3], 802);
    let e = conv2d_relu(&x, &w, Some(&random(&[4], 803)), Conv2dConfig::default(), ReluMode::Normal)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias") && e.contains("[5]"), "{e}");
    assert!(conv2d_relu(&x, &w, None, Conv2dConfig::default().groups(3), ReluMode::Guided).is_err());
}

/// The convolution with a constant bias, plus a residual, then the ReLU, as one op: the values and
/// the gradients of the input, the weight and the residual equal the three ops' bit for bit, in
/// every mode and on every shape (a residual cancelling some outputs exactly, so the rules at 0
/// are exercised).
#[test]
fn conv_add_relu_equals_the_three_ops_in_every_mode_bit_for_bit() {
    for (i, (label, xs, ws, cfg)) in cases().into_iter().enumerate() {
        let seed = 900 + 10 * i as u64;
        let x = var(&xs, seed);
        let w = var(&ws, seed + 1);
        let b = random(&[ws[0]], seed + 2);
        let y0 = conv2d(x.as_tensor(), w.as_tensor(), Some(&b), cfg).unwrap();
        // The residual cancels the convolution on channel 1: sums of exactly 0 there.
        let mask: Vec<f64> = (0..ws[0]).map(|c| if c == 1 { 0.0 } else { 1.0 }).collect();
        let mask = Tensor::from_vec(mask, (1, ws[0], 1, 1), &candle_core::Device::Cpu).unwrap();
        let other = random(y0.dims(), seed + 3);
        let cancel = (y0.neg().unwrap().broadcast_mul(&(1.0 - &mask).unwrap()).unwrap()
            + other.broadcast_mul(&mask).unwrap())
        .unwrap();
        let residual = Var::from_tensor(&cancel.detach()).unwrap();
        let r = random(y0.dims(), seed + 4);
        for mode in MODES {
            let grads = |y: Tensor| {
                let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![values(&y)];
                for v in [&x, &w, &residual] {
                    out.push(values(g.get(v.as_tensor()).expect("a gradient for every variable")));
                }
                out
            };
            let fused = grads(
                conv2d_add_relu(x.as_tensor(), w.as_tensor(), Some(&b), residual.as_tensor(), cfg, mode).unwrap(),
            );
            let unfused = grads(
                add_relu(&conv2d(x.as_tensor(), w.as_tensor(), Some(&b), cfg).unwrap(), residual.as_tensor(), mode)
                    .unwrap(),
            );
            assert!(fused[0].contains(&0.0), "{label}: sums of exactly 0");
            for (what, (a, e)) in ["y", "dx", "dw", "dresidual"].iter().zip(fused.iter().zip(&unfused)) {
                assert_eq!(a, e, "{label} {mode:?}: {what}");
            }
        }
    }
}

#[test]
fn conv_add_relu_gradients_match_finite_differences() {
    for (i, (label, xs, ws, cfg)) in cases().into_iter().enumerate() {
        let seed = 1100 + 10 * i as u64;
        let x = var(&[2, xs[1], xs[2], xs[3]], seed);
        let w = var(&ws, seed + 1);
        let b = random(&[ws[0]], seed + 2);
        let shape = conv2d(&x, &w, Some(&b), cfg).unwrap().dims().to_vec();
        let residual = var(&shape, seed + 3);
        check_gradients(
            &format!("conv2d_add_relu {label}"),
            &[("x", &x), ("weight", &w), ("residual", &residual)],
            || conv2d_add_relu(&x, &w, Some(&b), &residual, cfg, ReluMode::Normal),
            seed + 4,
        );
    }
}

/// A tracked bias gets its gradient (the ops then run one by one); a residual of the wrong shape
/// is an error naming the shape expected.
#[test]
fn conv_add_relu_with_a_tracked_bias_and_a_wrong_residual() {
    let cfg = Conv2dConfig::default().padding(1);
    let (x, w, b) = (var(&[2, 4, 9, 7], 1301), var(&[5, 4, 3, 3], 1302), var(&[5], 1303));
    let residual = random(&[2, 5, 9, 7], 1304);
    let y = conv2d_add_relu(&x, &w, Some(&b), &residual, cfg, ReluMode::Normal).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(b.as_tensor()).is_some(), "the tracked bias has a gradient");
    let e = conv2d_add_relu(&x, &w, None, &random(&[2, 5, 9, 6], 1305), cfg, ReluMode::Normal).unwrap_err().to_string();
    assert!(e.contains("residual") && e.contains("[2, 5, 9, 7]"), "{e}");
}

/// The fused ops on the shapes where the ReLU (and the residual) is applied to each block of
/// outputs right after the product writes it (im2col jobs on one image, with one block of output
/// channels and several) and on Winograd's F(2×2, 3×3) and F(4×4, 3×3), which apply it in a pass
/// after the convolution. Values and gradients equal the ops in sequence bit for bit, in `f64`
/// and `f32`, with outputs of exactly 0 (a zero weight channel and bias; a residual cancelling
/// channel 1).
#[test]
fn block_by_block_epilogues_equal_the_ops_in_sequence() {
    let c = Conv2dConfig::default();
    let shapes: [(&str, [usize; 4], [usize; 4], Conv2dConfig); 4] = [
        ("im2col, one image", [1, 4, 12, 11], [5, 4, 3, 3], c.padding(1)),
        ("im2col, one image, 40 channels, stride 2", [1, 8, 30, 28], [40, 8, 3, 3], c.stride(2).padding(1)),
        ("Winograd F(2x2, 3x3)", [2, 16, 20, 18], [17, 16, 3, 3], c.padding(1)),
        ("Winograd F(4x4, 3x3)", [2, 16, 36, 34], [16, 16, 3, 3], c.padding(1)),
    ];
    for (i, (label, xs, ws, cfg)) in shapes.into_iter().enumerate() {
        for dtype in [DType::F64, DType::F32] {
            let seed = 1200 + 10 * i as u64;
            let x = Var::from_tensor(&random(&xs, seed).to_dtype(dtype).unwrap()).unwrap();
            let w = Var::from_tensor(&weight_with_a_zero_channel(ws, seed + 1).to_dtype(dtype).unwrap()).unwrap();
            let mut bias: Vec<f64> = values(&random(&[ws[0]], seed + 2));
            bias[1] = 0.0;
            let b = Tensor::new(bias, &candle_core::Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let y0 = conv2d(x.as_tensor(), w.as_tensor(), Some(&b), cfg).unwrap();
            let r = random(y0.dims(), seed + 3).to_dtype(dtype).unwrap();
            let mask: Vec<f64> = (0..ws[0]).map(|c| if c == 1 { 0.0 } else { 1.0 }).collect();
            let mask =
                Tensor::from_vec(mask, (1, ws[0], 1, 1), &candle_core::Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let other = random(y0.dims(), seed + 4).to_dtype(dtype).unwrap();
            let residual = Var::from_tensor(
                &(y0.detach().neg().unwrap().broadcast_mul(&(1.0 - &mask).unwrap()).unwrap()
                    + other.broadcast_mul(&mask).unwrap())
                .unwrap(),
            )
            .unwrap();
            let grads = |y: Tensor, with_residual: bool| {
                let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![values(&y)];
                let vars: &[&Var] = if with_residual { &[&x, &w, &residual] } else { &[&x, &w] };
                for v in vars {
                    out.push(values(g.get(v.as_tensor()).expect("a gradient for every variable")));
                }
                out
            };
            for mode in MODES {
                let fused = grads(conv2d_relu(x.as_tensor(), w.as_tensor(), Some(&b), cfg, mode).unwrap(), false);
                let unfused =
                    grads(relu(&conv2d(x.as_tensor(), w.as_tensor(), Some(&b), cfg).unwrap(), mode).unwrap(), false);
                assert!(fused[0].contains(&0.0), "{label} {dtype:?}: outputs of exactly 0");
                assert_eq!(fused, unfused, "{label} {dtype:?} {mode:?}: conv2d_relu");
                let fused = grads(
                    conv2d_add_relu(x.as_tensor(), w.as_tensor(), Some(&b), residual.as_tensor(), cfg, mode).unwrap(),
                    true,
                );
                let unfused = grads(
                    add_relu(&conv2d(x.as_tensor(), w.as_tensor(), Some(&b), cfg).unwrap(), residual.as_tensor(), mode)
                        .unwrap(),
                    true,
                );
                assert!(fused[0].contains(&0.0), "{label} {dtype:?}: sums of exactly 0");
                assert_eq!(fused, unfused, "{label} {dtype:?} {mode:?}: conv2d_add_relu");
            }
        }
    }
}

/// With constant weights and bias, the fused convolution and ReLU on a Winograd shape computes
/// the input's gradient reading the output gradient through the ReLU's rule as Winograd's copy
/// takes it in: the gradient equals the ops in sequence bit for bit in every mode, `f64` and
/// `f32`, F(2×2, 3×3) and F(4×4, 3×3), with outputs of exactly 0 (a zero weight channel and
/// bias) and an output gradient of both signs.
#[test]
fn the_input_gradient_through_the_relu_rule_equals_the_ops_in_sequence() {
    let cfg = Conv2dConfig::default().padding(1);
    for (i, (xs, ws)) in [([2, 16, 20, 18], [17, 16, 3, 3]), ([1, 20, 50, 46], [16, 20, 3, 3])].into_iter().enumerate()
    {
        for dtype in [DType::F64, DType::F32] {
            let seed = 1400 + 10 * i as u64;
            let x = Var::from_tensor(&random(&xs, seed).to_dtype(dtype).unwrap()).unwrap();
            let w = constant(&weight_with_a_zero_channel(ws, seed + 1)).to_dtype(dtype).unwrap();
            let b = constant(&bias_with_a_zero(ws[0], seed + 2)).to_dtype(dtype).unwrap();
            let y0 = conv2d(x.as_tensor(), &w, Some(&b), cfg).unwrap();
            assert!(values(&y0).contains(&0.0), "{xs:?}: outputs of exactly 0");
            let r = random(y0.dims(), seed + 3).to_dtype(dtype).unwrap();
            for mode in MODES {
                let dx = |y: Tensor| {
                    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    (values(&y), values(g.get(x.as_tensor()).expect("the input's gradient")))
                };
                let fused = dx(conv2d_relu(x.as_tensor(), &w, Some(&b), cfg, mode).unwrap());
                let unfused = dx(relu(&conv2d(x.as_tensor(), &w, Some(&b), cfg).unwrap(), mode).unwrap());
                assert!(fused.1.iter().any(|&v| v != 0.0), "{xs:?} {dtype:?} {mode:?}: a gradient");
                assert_eq!(fused, unfused, "{xs:?} {dtype:?} {mode:?}");
            }
        }
    }
}
