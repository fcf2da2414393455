//! A batch of attributions renders exactly as its images one by one.

use candle_core::{Device, Tensor};
use gaze_render::{colorize, Colormap, Map, Normalize, Reduction};

#[test]
fn batch_maps_equal_the_maps_of_each_image() {
    let dev = Device::Cpu;
    // Two images, three targets each, two channels of 4 × 5.
    let values = Tensor::randn(0f32, 1.0, (2, 3, 2, 4, 5), &dev).unwrap();
    for reduction in [Reduction::Sum, Reduction::AbsMax, Reduction::AbsSum] {
        let batch = Map::batch_from_tensor(&values, reduction).unwrap();
        assert_eq!(batch.len(), 2);
        for (n, row) in batch.iter().enumerate() {
            assert_eq!(row.len(), 3);
            for (t, map) in row.iter().enumerate() {
                let single = values.get(n).unwrap().get(t).unwrap();
                let alone = Map::from_channels_tensor(&single, reduction).unwrap();
                assert_eq!(map, &alone, "image {n}, target {t}, {reduction:?}");
                let a = colorize(map, Colormap::Viridis, &Normalize::MinMax).unwrap();
                let b = colorize(&alone, Colormap::Viridis, &Normalize::MinMax).unwrap();
                assert_eq!(a, b);
            }
        }
    }
    // Maps without a channel axis, [N, T, H, W], come out as they are.
    let flat = values.sum(2).unwrap();
    let batch = Map::batch_from_tensor(&flat, Reduction::Sum).unwrap();
    let summed = Map::batch_from_tensor(&values, Reduction::Sum).unwrap();
    for (a, b) in batch.iter().flatten().zip(summed.iter().flatten()) {
        for (x, y) in a.values().iter().zip(b.values()) {
            assert!((x - y).abs() < 1e-5);
        }
    }
}
