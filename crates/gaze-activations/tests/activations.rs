//! Feature maps on a hand-made model whose channels are known multiples of the input.

use candle_core::{DType, Device, Tensor};
use gaze_activations::{activation_grid, Activations, ActivationsConfig, ChannelScale};
use gaze_core::{Explainer, Result, Target};
use gaze_engine::{TapModel, Taps};

/// `features` = the input times per-channel scales `[0.5, 3, 1, 3, 0]` (channel 4 is constant),
/// `pooled` = its spatial mean, the logits.
struct Scaled {
    device: Device,
}

const SCALES: [f32; 5] = [0.5, 3.0, 1.0, 3.0, 0.0];

impl TapModel for Scaled {
    fn forward_taps(&self, x: &Tensor, taps: &mut Taps) -> Result<Tensor> {
        let s = Tensor::new(&SCALES, x.device())?.to_dtype(x.dtype())?.reshape((1, 5, 1, 1))?;
        let f = taps.tap("features", x.broadcast_mul(&s)?)?;
        let pooled = f.flatten_from(2)?.mean(2)?;
        taps.tap("pooled", pooled)
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["features".into(), "pooled".into()]
    }
    fn num_classes(&self) -> usize {
        5
    }
    fn input_shape(&self) -> [usize; 3] {
        [5, 3, 4]
    }
    fn device(&self) -> &Device {
        &self.device
    }
}

fn input(n: usize) -> Tensor {
    let v: Vec<f32> = (0..n * 5 * 12).map(|i| 1.0 + ((i * 37) % 11) as f32).collect();
    Tensor::from_vec(v, (n, 5, 3, 4), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn the_maps_are_the_layer_activations() {
    let m = Scaled { device: Device::Cpu };
    let x = input(2);
    let got = Activations::new(ActivationsConfig::new("features")).explain(&m, &x, &Target::top(2)).unwrap();
    assert_eq!(got.values.dims(), [2, 1, 5, 3, 4]);
    let mut taps = Taps::none().record("features");
    m.forward_taps(&x, &mut taps).unwrap();
    assert_eq!(values(&got.values), values(taps.activation("features").unwrap()));
    // One target per image (the first asked for), as the command line's contract says.
    assert_eq!(got.targets.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(got.meta.layers, ["features"]);
}

#[test]
fn top_k_keeps_the_largest_mean_channels_and_scaling_is_per_channel() {
    let m = Scaled { device: Device::Cpu };
    let x = input(1);
    let cfg = ActivationsConfig::new("features").with_top_k(3).with_scale(ChannelScale::PerChannel);
    let maps = Activations::new(cfg).feature_maps(&m, &x, &Target::top_class()).unwrap();
    // Channel means are the scales times the input's channel means; channels 1 and 3 share a scale.
    let input = values(&x);
    let mean = |c: usize| input[c * 12..(c + 1) * 12].iter().sum::<f32>() * SCALES[c];
    let mut want: Vec<usize> = (0..5).collect();
    want.sort_by(|&a, &b| mean(b).total_cmp(&mean(a)).then(a.cmp(&b)));
    assert_eq!(maps.channels, [want[..3].to_vec()]);
    let v = values(&maps.attribution.values);
    for tile in v.chunks(12) {
        let lo = tile.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = tile.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((lo, hi), (0.0, 1.0));
    }
    // A constant channel scales to zeros.
    let all = Activations::new(ActivationsConfig::new("features").with_scale(ChannelScale::PerChannel))
        .explain(&m, &x, &Target::top_class())
        .unwrap();
    assert!(values(&all.values)[4 * 12..].iter().all(|&v| v == 0.0));
}

#[test]
fn a_batch_gives_the_maps_of_its_images_one_by_one() {
    let m = Scaled { device: Device::Cpu };
    let x = input(3);
    let act = Activations::new(ActivationsConfig::new("features").with_top_k(2).with_scale(ChannelScale::PerChannel));
    let all = act.feature_maps(&m, &x, &Target::top_class()).unwrap();
    for i in 0..3 {
        let one = act.feature_maps(&m, &x.narrow(0, i, 1).unwrap(), &Target::top_class()).unwrap();
        assert_eq!(values(&all.attribution.values.get(i).unwrap()), values(&one.attribution.values.get(0).unwrap()));
        assert_eq!(all.channels[i], one.channels[0]);
        assert_eq!(all.attribution.targets[i], one.attribution.targets[0]);
    }
}

#[test]
fn a_constant_layer_makes_a_zero_grid() {
    let m = Scaled { device: Device::Cpu };
    let x = Tensor::ones((1, 5, 3, 4), DType::F32, &Device::Cpu).unwrap();
    let cfg = ActivationsConfig::new("features").with_top_k(1);
    let maps = Activations::new(cfg).explain(&m, &x, &Target::top_class()).unwrap();
    let grid = activation_grid(&maps.values).unwrap();
    assert_eq!((grid.rows, grid.cols), (1, 1));
    assert!(grid.values.iter().all(|v| *v == 0.0));
    let all = Activations::new(ActivationsConfig::new("features")).explain(&m, &x, &Target::top_class()).unwrap();
    let grid = activation_grid(&all.values).unwrap();
    assert_eq!((grid.height(), grid.width()), (9, 12));
    assert!(grid.values.iter().all(|v| v.is_finite()));
}

#[test]
fn bad_layers_and_options_name_the_value() {
    let m = Scaled { device: Device::Cpu };
    let x = input(1);
    let t = Target::top_class();
    let e = Activations::new(ActivationsConfig::new("pooled")).explain(&m, &x, &t).unwrap_err().to_string();
    assert!(e.contains("`pooled`") && e.contains("[1, 5]"), "{e}");
    let e = Activations::new(ActivationsConfig::new("conv9")).explain(&m, &x, &t).unwrap_err().to_string();
    assert!(e.contains("`conv9`") && e.contains("features"), "{e}");
    let e =
        Activations::new(ActivationsConfig::new("features").with_top_k(6)).explain(&m, &x, &t).unwrap_err().to_string();
    assert!(e.contains("`6`") && e.contains("1..=5"), "{e}");
    let e = ChannelScale::parse("global").unwrap_err().to_string();
    assert!(e.contains("`global`") && e.contains("per-channel"), "{e}");
}
