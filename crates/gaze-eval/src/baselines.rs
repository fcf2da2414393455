//! Maps that know nothing of the model: the baselines a method's scores must beat.

use candle_core::{Device, Tensor};
use gaze_core::{Error, Result};

use crate::rng::Rng;

/// Maps `[N, 1, H, W]` of independent uniform values in `[0, 1)`: image `n`'s map draws from stream
/// `n` of `seed`, so a map does not depend on how many others are drawn with it.
///
/// A random map scores about the share of the image near the object on the pointing game, and its
/// deletion and insertion curves are those of removing pixels in a random order.
pub fn random_maps(images: usize, (h, w): (usize, usize), seed: u64, device: &Device) -> Result<Tensor> {
    check("random maps", images, h, w)?;
    let mut values = Vec::with_capacity(images * h * w);
    for n in 0..images {
        let mut rng = Rng::new(seed, n as u64);
        values.extend((0..h * w).map(|_| rng.unit() as f32));
    }
    Ok(Tensor::from_vec(values, (images, 1, h, w), device)?)
}

/// Maps `[N, 1, H, W]` that fall with the squared distance from the image's centre,
/// `1 − r² / R²` at pixel `(x, y)` with `r² = (x + ½ − W/2)² + (y + ½ − H/2)²` and `R² = (W/2)² +
/// (H/2)²`: the prior that objects sit in the middle, which photographs and many data sets reward.
/// Every value is positive, so the energy-based pointing game counts the whole map.
///
/// On an even side the four central pixels share the maximum; the pointing game counts the share
/// of them that hit.
pub fn centre_maps(images: usize, (h, w): (usize, usize), device: &Device) -> Result<Tensor> {
    check("centre maps", images, h, w)?;
    let (cy, cx) = (h as f32 / 2.0, w as f32 / 2.0);
    let far = cx * cx + cy * cy;
    let map: Vec<f32> = (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32 + 0.5 - cy, (i % w) as f32 + 0.5 - cx);
            1.0 - (x * x + y * y) / far
        })
        .collect();
    let one = Tensor::from_vec(map, (1, 1, h, w), device)?;
    Ok(one.repeat((images, 1, 1, 1))?)
}

/// The most values [`random_maps`] and [`centre_maps`] make in one call (`N · H · W`, 1 GiB of
/// f32): 2²⁸, as many as the shapes data set draws at once ([`MAX_SAMPLE_PIXELS`](crate::MAX_SAMPLE_PIXELS)).
pub const MAX_BASELINE_VALUES: usize = 1 << 28;

fn check(what: &str, images: usize, h: usize, w: usize) -> Result<()> {
    if images == 0 || h == 0 || w == 0 {
        return Err(Error::Shape {
            what: what.into(),
            expected: "at least one image of at least 1×1".into(),
            got: vec![images, 1, h, w],
        });
    }
    let values = images.checked_mul(h).and_then(|v| v.checked_mul(w));
    if values.is_none_or(|v| v > MAX_BASELINE_VALUES) {
        return Err(Error::Shape {
            what: what.into(),
            expected: format!("at most {MAX_BASELINE_VALUES} values in all (N · H · W)"),
            got: vec![images, 1, h, w],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PointingGame;

    #[test]
    fn random_maps_are_seeded_and_independent_of_the_batch() {
        let dev = Device::Cpu;
        let a = random_maps(3, (8, 8), 5, &dev).unwrap();
        let b = random_maps(1, (8, 8), 5, &dev).unwrap();
        let c = random_maps(1, (8, 8), 6, &dev).unwrap();
        let first = a.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(first, b.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_ne!(first, c.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(first.iter().all(|v| (0.0..1.0).contains(v)));
        let second = a.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn the_centre_map_peaks_at_the_four_middle_pixels() {
        let dev = Device::Cpu;
        let maps = centre_maps(2, (8, 8), &dev).unwrap();
        assert_eq!(maps.dims(), [2, 1, 8, 8]);
        let values = maps.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|&v| v > 0.0 && v < 1.0), "{values:?}");
        // An object covering only pixel (3, 3): one of the four tied maxima hits.
        let mut mask = vec![0f32; 64];
        mask[3 * 8 + 3] = 1.0;
        let mask = Tensor::from_vec([mask.clone(), mask].concat(), (2, 8, 8), &dev).unwrap();
        let got = PointingGame { tolerance: 0.0 }.score(&maps, &mask).unwrap();
        assert_eq!(got.values, vec![0.25, 0.25]);
        // A corner object misses.
        let mut corner = vec![0f32; 64];
        corner[0] = 1.0;
        let corner = Tensor::from_vec([corner.clone(), corner].concat(), (2, 8, 8), &dev).unwrap();
        assert_eq!(PointingGame::default().score(&maps, &corner).unwrap().values, vec![0.0, 0.0]);
        assert!(centre_maps(0, (8, 8), &dev).unwrap_err().to_string().contains("at least one image"));
    }

    #[test]
    fn sizes_beyond_the_limit_are_errors() {
        let dev = Device::Cpu;
        // The product overflows usize.
        let err = random_maps(usize::MAX, (usize::MAX, 2), 0, &dev).unwrap_err().to_string();
        assert!(err.contains("at most 268435456 values"), "{err}");
        // The product fits but is too large to allocate.
        let err = centre_maps(1 << 20, (1 << 10, 1 << 10), &dev).unwrap_err().to_string();
        assert!(err.contains("at most 268435456 values"), "{err}");
    }
}
