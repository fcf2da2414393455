//! The engine's differentiable ops: convolutions on a VGG-like and an Xception-like shape, and max
//! pooling, forward and forward plus input gradient.
//! Candle's own forward convolution runs beside ours on the VGG-like shape for reference.

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use gaze_benches::{bench_device, device_name, timed};
use gaze_engine::ops::{conv2d, max_pool2d, Conv2dConfig, Pool2dConfig};

fn random(shape: &[usize], device: &Device) -> Tensor {
    match Tensor::randn(0f32, 1.0, shape, device) {
        Ok(t) => t,
        Err(e) => panic!("cannot make a random tensor of shape {shape:?}: {e}"),
    }
}

fn bench_ops(c: &mut Criterion) {
    let device = match bench_device() {
        Ok(d) => d,
        Err(e) => panic!("no benchmark device: {e}"),
    };
    let dev = device_name(&device);
    let mut group = c.benchmark_group("ops");
    group.sample_size(10);

    // VGG16's conv2_2 shape: 64 → 128 channels, 3 × 3, at 112 × 112.
    let x = random(&[1, 64, 112, 112], &device);
    let w = random(&[128, 64, 3, 3], &device);
    let b = random(&[128], &device);
    let same = Conv2dConfig::default().padding(1);
    group.bench_function(format!("{dev}_conv2d_fwd_1x64x112x112_k3_o128"), |bench| {
        bench.iter_custom(|iters| {
            timed(&device, iters, || conv2d(&x, &w, Some(&b), same).map(drop).map_err(candle_core::Error::wrap))
        })
    });
    group.bench_function(format!("{dev}_conv2d_candle_fwd_1x64x112x112_k3_o128"), |bench| {
        bench.iter_custom(|iters| {
            timed(&device, iters, || x.conv2d(&w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((1, 128, 1, 1))?).map(drop))
        })
    });
    let xv = match Var::from_tensor(&x) {
        Ok(v) => v,
        Err(e) => panic!("cannot make a variable: {e}"),
    };
    group.bench_function(format!("{dev}_conv2d_fwd_bwd_input_1x64x112x112_k3_o128"), |bench| {
        bench.iter_custom(|iters| {
            timed(&device, iters, || {
                let y = conv2d(&xv, &w, Some(&b), same).map_err(candle_core::Error::wrap)?;
                let grads = y.sum_all()?.backward()?;
                drop(grads);
                Ok(())
            })
        })
    });

    // Xception's middle-flow depthwise convolution: 728 channels at 19 × 19.
    let x = random(&[1, 728, 19, 19], &device);
    let w = random(&[728, 1, 3, 3], &device);
    let depthwise = Conv2dConfig::default().padding(1).groups(728);
    group.bench_function(format!("{dev}_conv2d_depthwise_fwd_1x728x19x19_k3"), |bench| {
        bench.iter_custom(|iters| {
            timed(&device, iters, || conv2d(&x, &w, None, depthwise).map(drop).map_err(candle_core::Error::wrap))
        })
    });
    let xv = match Var::from_tensor(&x) {
        Ok(v) => v,
        Err(e) => panic!("cannot make a variable: {e}"),
    };
    group.bench_function(format!("{dev}_conv2d_depthwise_fwd_bwd_input_1x728x19x19_k3"), |bench| {
        bench.iter_custom(|iters| {
            timed(&device, iters, || {
                let y = conv2d(&xv, &w, None, depthwise).map_err(candle_core::Error::wrap)?;
                drop(y.sum_all()?.backward()?);
                Ok(())
            })
        })
    });

    // Max pooling after VGG16's second block, and Xception's overlapping 3 × 3 stride-2 pool.
    let x = random(&[1, 128, 112, 112], &device);
    let xv = match Var::from_tensor(&x) {
        Ok(v) => v,
        Err(e) => panic!("cannot make a variable: {e}"),
    };
    for (name, cfg) in [("k2s2", Pool2dConfig::new(2, 2)), ("k3s2p1", Pool2dConfig::new(3, 2).padding(1))] {
        group.bench_function(format!("{dev}_max_pool2d_fwd_1x128x112x112_{name}"), |bench| {
            bench.iter_custom(|iters| {
                timed(&device, iters, || max_pool2d(&x, cfg).map(drop).map_err(candle_core::Error::wrap))
            })
        });
        group.bench_function(format!("{dev}_max_pool2d_fwd_bwd_1x128x112x112_{name}"), |bench| {
            bench.iter_custom(|iters| {
                timed(&device, iters, || {
                    let y = max_pool2d(&xv, cfg).map_err(candle_core::Error::wrap)?;
                    drop(y.sum_all()?.backward()?);
                    Ok(())
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_ops);
criterion_main!(benches);
