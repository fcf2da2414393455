//! What an occluded window is filled with.

use std::fmt;

use candle_core::{DType, Tensor};
use gaze_core::{Error, Result};

/// The value an occluded window takes (Captum's `baselines`).
///
/// Every fill is given in the model's input space. Images are preprocessed by a per-channel affine
/// map (`(x − mean_c) / std_c`, possibly after reordering channels), which commutes with every fill
/// here: a constant `v` in image space is the per-channel constant `(v − mean_c) / std_c` in model
/// space, and the image mean and the blurred image map to the mean and the blur of the preprocessed
/// image. So occluding "before preprocessing" is [`Fill::PerChannel`] with the mapped values.
#[derive(Clone, Debug)]
pub enum Fill {
    /// One value for every element (Captum's scalar baseline; tf-explain's 127.5).
    Constant(f64),
    /// One value per channel.
    PerChannel(Vec<f64>),
    /// Each image's own mean, per channel.
    Mean,
    /// A Gaussian blur of the image with this standard deviation in pixels, over height and width
    /// (SciPy's `gaussian_filter`, borders reflected), as integrated gradients' `blur` baseline.
    Blur { sigma: f64 },
    /// An explicit baseline, `[C, H, W]`, `[1, C, H, W]` or `[N, C, H, W]` (Captum's tensor baseline).
    Baseline(Tensor),
}

impl Default for Fill {
    fn default() -> Self {
        Fill::Constant(0.0)
    }
}

impl fmt::Display for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fill::Constant(v) => write!(f, "{v}"),
            Fill::PerChannel(v) => {
                let v: Vec<String> = v.iter().map(f64::to_string).collect();
                write!(f, "{}", v.join(","))
            }
            Fill::Mean => f.write_str("mean"),
            Fill::Blur { sigma } => write!(f, "blur:{sigma}"),
            Fill::Baseline(t) => write!(f, "tensor{:?}", t.dims()),
        }
    }
}

impl Fill {
    /// The blur's standard deviation when `blur` is given without one.
    pub const DEFAULT_BLUR_SIGMA: f64 = 5.0;

    /// The largest blur sigma accepted, in pixels ([`gaze_core::numeric::MAX_BLUR_SIGMA`]).
    pub const MAX_BLUR_SIGMA: f64 = gaze_core::numeric::MAX_BLUR_SIGMA;

    /// Parses `--fill`: a number, comma-separated numbers (one per channel), `mean`, `blur` or
    /// `blur:SIGMA`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidOption {
            option: "--fill".into(),
            value: text.into(),
            expected: format!(
                "a number, one number per channel (comma-separated), `mean`, `blur` or `blur:SIGMA` with SIGMA in (0, {}]",
                Self::MAX_BLUR_SIGMA
            ),
        }
        };
        let finite = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        match text.trim() {
            "mean" => Ok(Fill::Mean),
            "blur" => Ok(Fill::Blur { sigma: Self::DEFAULT_BLUR_SIGMA }),
            t if t.starts_with("blur:") => match finite(&t[5..]) {
                Some(sigma) if sigma > 0.0 && sigma <= Self::MAX_BLUR_SIGMA => Ok(Fill::Blur { sigma }),
                _ => Err(bad()),
            },
            t if t.contains(',') => {
                t.split(',').map(|s| finite(s).ok_or_else(bad)).collect::<Result<Vec<_>>>().map(Fill::PerChannel)
            }
            t => finite(t).map(Fill::Constant).ok_or_else(bad),
        }
    }

    /// The filled image for every image of `input` `[N, C, H, W]`, the same shape and dtype.
    ///
    /// A constant or per-channel fill built by hand with a NaN or infinite value is refused, as
    /// [`Fill::parse`] refuses it.
    pub fn baseline(&self, input: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = input.dims4().map_err(|_| Error::Shape {
            what: "occlusion input".into(),
            expected: "[N, C, H, W]".into(),
            got: input.dims().to_vec(),
        })?;
        let values = match self {
            Fill::Constant(v) => std::slice::from_ref(v),
            Fill::PerChannel(v) => v.as_slice(),
            _ => &[],
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidOption {
                option: "--fill".into(),
                value: self.to_string(),
                expected: "finite fill values".into(),
            });
        }
        let dtype = input.dtype();
        let device = input.device();
        Ok(match self {
            Fill::Constant(v) => input.ones_like()?.affine(0.0, *v)?,
            Fill::PerChannel(values) => {
                if values.len() != c {
                    return Err(Error::InvalidOption {
                        option: "--fill".into(),
                        value: self.to_string(),
                        expected: format!("one value per channel ({c} values)"),
                    });
                }
                Tensor::new(values.as_slice(), device)?
                    .to_dtype(dtype)?
                    .reshape((1, c, 1, 1))?
                    .broadcast_as((n, c, h, w))?
                    .contiguous()?
            }
            Fill::Mean => input
                .to_dtype(DType::F64)?
                .flatten_from(2)?
                .mean_keepdim(2)?
                .unsqueeze(3)?
                .broadcast_as((n, c, h, w))?
                .to_dtype(dtype)?
                .contiguous()?,
            Fill::Blur { sigma } => {
                if !(sigma.is_finite() && *sigma > 0.0 && *sigma <= Self::MAX_BLUR_SIGMA) {
                    return Err(Error::InvalidOption {
                        option: "--fill".into(),
                        value: self.to_string(),
                        expected: format!("a blur with a sigma in (0, {}] pixels", Self::MAX_BLUR_SIGMA),
                    });
                }
                let data = input.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                let out = gaussian_blur(&data, n * c, h, w, *sigma);
                Tensor::from_vec(out, (n, c, h, w), device)?.to_dtype(dtype)?
            }
            Fill::Baseline(given) => {
                let t = match given.rank() {
                    3 => given.unsqueeze(0)?,
                    _ => given.clone(),
                };
                let ok = t.rank() == 4 && t.dims()[1..] == [c, h, w] && (t.dims()[0] == 1 || t.dims()[0] == n);
                if !ok {
                    return Err(Error::Shape {
                        what: "occlusion baseline".into(),
                        expected: format!("[{c}, {h}, {w}], [1, {c}, {h}, {w}] or [{n}, {c}, {h}, {w}]"),
                        got: given.dims().to_vec(),
                    });
                }
                gaze_core::numeric::ensure_finite(&t, "the occlusion baseline")?;
                t.to_device(device)?.to_dtype(dtype)?.broadcast_as((n, c, h, w))?.contiguous()?
            }
        })
    }
}

/// A separable Gaussian blur of `planes` planes of `h × w`, as
/// `scipy.ndimage.gaussian_filter(x, (0, sigma, sigma))` computes it: radius `round(4σ)`, weights
/// normalised to sum to one, borders reflected about the edge pixels' outer side
/// (`d c b a | a b c d`).
fn gaussian_blur(data: &[f64], planes: usize, h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5).floor() as isize;
    let mut kernel: Vec<f64> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let period = 2 * n;
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - 1 - m }) as usize
    };
    let mut tmp = vec![0.0; data.len()];
    let mut out = vec![0.0; data.len()];
    for p in 0..planes {
        let src = &data[p * h * w..(p + 1) * h * w];
        let mid = &mut tmp[p * h * w..(p + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                mid[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * src[y * w + reflect(x as isize + k as isize - radius, w)])
                    .sum();
            }
        }
        let dst = &mut out[p * h * w..(p + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                dst[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * mid[reflect(y as isize + k as isize - radius, h) * w + x])
                    .sum();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn parses_every_form_and_names_the_bad_value() {
        assert!(matches!(Fill::parse("0.5").unwrap(), Fill::Constant(v) if v == 0.5));
        assert!(matches!(Fill::parse("mean").unwrap(), Fill::Mean));
        assert!(matches!(Fill::parse("blur").unwrap(), Fill::Blur { sigma } if sigma == 5.0));
        assert!(matches!(Fill::parse("blur:2").unwrap(), Fill::Blur { sigma } if sigma == 2.0));
        assert!(matches!(Fill::parse("1,2,3").unwrap(), Fill::PerChannel(v) if v == [1.0, 2.0, 3.0]));
        for bad in ["grey", "blur:-1", "1,x", "nan", "blur:1e300", "blur:1001"] {
            let e = Fill::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("--fill"), "{e}");
        }
        let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let e = Fill::Blur { sigma: 1e300 }.baseline(&x).unwrap_err().to_string();
        assert!(e.contains("(0, 1000]"), "{e}");
    }

    #[test]
    fn mean_is_per_image_and_channel() {
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu).unwrap().reshape((2, 2, 2, 2)).unwrap();
        let m = Fill::Mean.baseline(&x).unwrap();
        let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&v[..4], &[1.5; 4]);
        assert_eq!(&v[12..], &[13.5; 4]);
    }

    #[test]
    fn blur_keeps_constants_and_mass() {
        let x = Tensor::full(2.0f32, (1, 1, 5, 7), &Device::Cpu).unwrap();
        let b = Fill::Blur { sigma: 1.5 }.baseline(&x).unwrap();
        let v = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|&y| (y - 2.0).abs() < 1e-6), "{v:?}");
        // A centred impulse spreads symmetrically and keeps its sum away from the borders.
        let mut d = vec![0f64; 81];
        d[40] = 1.0;
        let out = gaussian_blur(&d, 1, 9, 9, 1.0);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((out[39] - out[41]).abs() < 1e-12 && (out[31] - out[49]).abs() < 1e-12);
        assert!(out[40] > out[39] && out[39] > out[38]);
    }

    #[test]
    fn baseline_shapes_are_checked() {
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let ok = Tensor::ones((3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(Fill::Baseline(ok).baseline(&x).unwrap().dims(), [2, 3, 4, 4]);
        let bad = Tensor::ones((3, 4, 5), DType::F32, &Device::Cpu).unwrap();
        let e = Fill::Baseline(bad).baseline(&x).unwrap_err().to_string();
        assert!(e.contains("[3, 4, 5]"), "{e}");
        let e = Fill::PerChannel(vec![1.0, 2.0]).baseline(&x).unwrap_err().to_string();
        assert!(e.contains("3 values"), "{e}");
    }

    #[test]
    fn non_finite_values_built_by_hand_are_refused() {
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        for (fill, shown) in [
            (Fill::Constant(f64::NAN), "`NaN`"),
            (Fill::Constant(f64::INFINITY), "`inf`"),
            (Fill::PerChannel(vec![0.0, f64::NAN, 1.0]), "`0,NaN,1`"),
        ] {
            let e = fill.baseline(&x).unwrap_err().to_string();
            assert!(e.contains(shown) && e.contains("--fill") && e.contains("finite"), "{e}");
        }
        assert!(Fill::Constant(0.5).baseline(&x).is_ok());
    }
}
