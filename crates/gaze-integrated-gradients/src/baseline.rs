//! The point the integration path starts from.

use std::fmt;

use candle_core::{DType, Tensor};
use gaze_core::{Error, Result};

/// The Gaussian blur a bare `blur` baseline uses, in pixels.
pub const DEFAULT_BLUR_SIGMA: f64 = 5.0;

/// The largest blur sigma accepted, in pixels ([`gaze_core::numeric::MAX_BLUR_SIGMA`]).
pub const MAX_BLUR_SIGMA: f64 = gaze_core::numeric::MAX_BLUR_SIGMA;

/// The start of the integration path.
#[derive(Clone, Debug, Default)]
pub enum Baseline {
    /// All zeros in the model's input space (Captum's default).
    #[default]
    Zero,
    /// A given tensor: `[N, C, H, W]` (one per image), or `[1, C, H, W]` or `[C, H, W]` (the same for
    /// every image).
    Tensor(Tensor),
    /// Each image blurred by a Gaussian of this standard deviation in pixels, over height and width
    /// only, as `scipy.ndimage.gaussian_filter(x, (0, sigma, sigma))` computes it (mirror-reflected
    /// borders, the kernel cut at four standard deviations).
    Blur { sigma: f64 },
}

impl Baseline {
    /// Parses `zero`, `blur` or `blur:SIGMA`; a file is the caller's to load into
    /// [`Baseline::Tensor`].
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::InvalidOption {
            option: "--baseline".into(),
            value: text.into(),
            expected: format!("zero, blur, blur:SIGMA (a number of pixels in (0, {MAX_BLUR_SIGMA}]) or a tensor file"),
        };
        match text {
            "zero" => Ok(Baseline::Zero),
            "blur" => Ok(Baseline::Blur { sigma: DEFAULT_BLUR_SIGMA }),
            other => {
                let sigma = other.strip_prefix("blur:").and_then(|s| s.parse::<f64>().ok()).ok_or_else(bad)?;
                if sigma.is_finite() && sigma > 0.0 && sigma <= MAX_BLUR_SIGMA {
                    Ok(Baseline::Blur { sigma })
                } else {
                    Err(bad())
                }
            }
        }
    }

    /// The baseline of every image of `input` `[N, ...]`, with the input's shape, dtype and device.
    /// An input without a batch dimension (a scalar) is refused.
    pub fn materialise(&self, input: &Tensor) -> Result<Tensor> {
        if input.rank() == 0 {
            return Err(Error::Shape {
                what: "input of the baseline".into(),
                expected: "[N, ...] with a batch dimension, as [N, C, H, W]".into(),
                got: vec![],
            });
        }
        match self {
            Baseline::Zero => Ok(input.zeros_like()?),
            Baseline::Tensor(t) => {
                gaze_core::numeric::ensure_finite(t, "the baseline")?;
                let dims = input.dims();
                let t = t.to_dtype(input.dtype())?.to_device(input.device())?;
                if t.dims() == dims {
                    Ok(t)
                } else if t.dims() == &dims[1..] {
                    Ok(t.unsqueeze(0)?.broadcast_as(dims)?.contiguous()?)
                } else if t.dims().first() == Some(&1) && t.dims()[1..] == dims[1..] {
                    Ok(t.broadcast_as(dims)?.contiguous()?)
                } else {
                    Err(Error::Shape {
                        what: "baseline".into(),
                        expected: format!(
                            "{dims:?}, [1, {rest}] or [{rest}] to match the input",
                            rest = dims[1..].iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                        ),
                        got: t.dims().to_vec(),
                    })
                }
            }
            Baseline::Blur { sigma } => gaussian_blur(input, *sigma),
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Baseline::Zero => f.write_str("zero"),
            Baseline::Tensor(t) => write!(f, "tensor{:?}", t.dims()),
            Baseline::Blur { sigma } => write!(f, "blur:{sigma}"),
        }
    }
}

/// Blurs each channel of a batch `[N, C, H, W]` with a Gaussian of standard deviation `sigma`
/// pixels, as `scipy.ndimage.gaussian_filter(x, (0, 0, sigma, sigma))` does: a separable kernel of
/// radius `round(4 sigma)`, normalised to sum to one, over mirror-reflected borders (`d c b a | a b c
/// d`). The sums run in `f64`; the result has the input's dtype and device.
pub fn gaussian_blur(input: &Tensor, sigma: f64) -> Result<Tensor> {
    if !(sigma.is_finite() && sigma > 0.0 && sigma <= MAX_BLUR_SIGMA) {
        return Err(Error::InvalidOption {
            option: "blur sigma".into(),
            value: sigma.to_string(),
            expected: format!("a number of pixels in (0, {MAX_BLUR_SIGMA}]"),
        });
    }
    let (n, c, h, w) = input.dims4().map_err(|_| Error::Shape {
        what: "blurred input".into(),
        expected: "[N, C, H, W]".into(),
        got: input.dims().to_vec(),
    })?;
    let radius = (4.0 * sigma + 0.5) as usize;
    let mut kernel: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let d = i as f64 - radius as f64;
            (-0.5 * d * d / (sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);

    let data = input.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let mut out = vec![0.0; data.len()];
    let mut rows = vec![0.0; h * w];
    for plane in 0..n * c {
        let src = &data[plane * h * w..(plane + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                rows[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, v)| v * src[y * w + reflect(x as isize + k as isize - radius as isize, w)])
                    .sum();
            }
        }
        let dst = &mut out[plane * h * w..(plane + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                dst[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, v)| v * rows[reflect(y as isize + k as isize - radius as isize, h) * w + x])
                    .sum();
            }
        }
    }
    Ok(Tensor::from_vec(out, (n, c, h, w), input.device())?.to_dtype(input.dtype())?)
}

/// The index `i` mirrored into `0..n` the way scipy's `reflect` mode does, for any distance
/// outside.
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period);
    if m < n as isize {
        m as usize
    } else {
        (period - 1 - m) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reflection_mirrors_about_the_edge() {
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]);
    }

    #[test]
    fn blur_keeps_constants_and_the_mean_and_matches_a_hand_sum() {
        let dev = Device::Cpu;
        let flat = Tensor::full(2.5f32, (1, 2, 5, 6), &dev).unwrap();
        let got = gaussian_blur(&flat, 1.3).unwrap();
        let diff = (got - &flat).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);

        // A single bright pixel in the middle of a 1×1×1×9 row spreads as the normalised kernel.
        let mut v = vec![0.0f64; 9];
        v[4] = 1.0;
        let x = Tensor::from_vec(v, (1, 1, 1, 9), &dev).unwrap();
        let got = gaussian_blur(&x, 0.5).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let k: Vec<f64> = [-2.0f64, -1.0, 0.0, 1.0, 2.0].iter().map(|d| (-0.5 * d * d / 0.25).exp()).collect();
        let s: f64 = k.iter().sum();
        for (i, kv) in k.iter().enumerate() {
            assert!((got[2 + i] - kv / s).abs() < 1e-15, "{got:?}");
        }
        // The height has one row, so reflection keeps it; the row sums to one.
        assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn baselines_parse_and_broadcast() {
        let dev = Device::Cpu;
        let x = Tensor::ones((2, 3, 4, 4), DType::F32, &dev).unwrap();
        let one = Tensor::full(0.5f32, (3, 4, 4), &dev).unwrap();
        let b = Baseline::Tensor(one).materialise(&x).unwrap();
        assert_eq!(b.dims(), &[2, 3, 4, 4]);
        let bad =
            Baseline::Tensor(Tensor::zeros((3, 4), DType::F32, &dev).unwrap()).materialise(&x).unwrap_err().to_string();
        assert!(bad.contains("baseline") && bad.contains("[3, 4]"), "{bad}");
        assert!(matches!(Baseline::parse("zero").unwrap(), Baseline::Zero));
        assert!(matches!(Baseline::parse("blur:2").unwrap(), Baseline::Blur { sigma } if sigma == 2.0));
        let err = Baseline::parse("blur:-1").unwrap_err().to_string();
        assert!(err.contains("blur:-1") && err.contains("zero, blur"), "{err}");
        // A sigma beyond the bound would allocate and run a kernel of 8σ + 1 taps.
        for huge in ["blur:1e300", "blur:1000.5"] {
            let err = Baseline::parse(huge).unwrap_err().to_string();
            assert!(err.contains(huge) && err.contains("(0, 1000]"), "{err}");
        }
        assert!(Baseline::parse("blur:1000").is_ok());
        let err = gaussian_blur(&x, 1e300).unwrap_err().to_string();
        assert!(err.contains("(0, 1000]"), "{err}");
    }

    #[test]
    fn a_scalar_input_is_refused() {
        let dev = Device::Cpu;
        let scalar = Tensor::new(1f32, &dev).unwrap();
        for baseline in [
            Baseline::Tensor(Tensor::new(0f32, &dev).unwrap()),
            Baseline::Tensor(Tensor::zeros(3, DType::F32, &dev).unwrap()),
            Baseline::Zero,
        ] {
            let err = baseline.materialise(&scalar).unwrap_err().to_string();
            assert!(
                err.contains("input of the baseline") && err.contains("[N, ...]") && err.contains("got []"),
                "{baseline}: {err}"
            );
        }
    }
}
