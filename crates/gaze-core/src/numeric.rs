//! Small numeric helpers shared by methods, tests and rendering.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// The largest absolute difference between `a` and `b`, divided by the largest absolute value of
/// `b` (the reference): the "relative max-abs error" every parity test uses.
/// Two all-zero tensors compare as 0.
pub fn rel_max_abs_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        return Err(Error::Shape {
            what: "compared tensor".into(),
            expected: format!("{:?}", b.dims()),
            got: a.dims().to_vec(),
        });
    }
    let a = a.to_dtype(DType::F32)?.flatten_all()?;
    let b = b.to_dtype(DType::F32)?.flatten_all()?;
    let diff = (&a - &b)?.abs()?.max(0)?.to_scalar::<f32>()?;
    let scale = b.abs()?.max(0)?.to_scalar::<f32>()?;
    Ok(if scale == 0.0 { diff } else { diff / scale })
}

/// The most values one map holds wherever a map is made or resized (4 GiB of `f32`): larger
/// sizes are errors rather than allocations that abort.
pub const MAX_MAP_VALUES: usize = 1 << 30;

/// The largest Gaussian blur sigma, in pixels, of a baseline or fill: a kernel spans `8σ + 1`
/// pixels per pass, so a larger one costs minutes per image and blurs any image to its mean long
/// before.
pub const MAX_BLUR_SIGMA: f64 = 1000.0;

/// Checks a batch of images as every method's `explain` takes it: `[N, C, H, W]` with at least one
/// image of at least one channel and one pixel, a floating-point dtype, and only finite values (a
/// NaN would otherwise pass through the models' ReLUs as 0 and give a normal-looking map).
/// Returns `N`.
pub fn check_images(input: &Tensor) -> Result<usize> {
    let n = match input.dims() {
        [n, c, h, w] if *n > 0 && *c > 0 && *h > 0 && *w > 0 => *n,
        dims => {
            return Err(Error::Shape {
                what: "input".into(),
                expected: "[N, C, H, W] with at least one image of at least 1×1".into(),
                got: dims.to_vec(),
            })
        }
    };
    if !input.dtype().is_float() {
        return Err(Error::InvalidOption {
            option: "input dtype".into(),
            value: format!("{:?}", input.dtype()),
            expected: "a floating-point dtype (F32, or the model's dtype)".into(),
        });
    }
    ensure_finite(input, "input")?;
    Ok(n)
}

/// Counts NaN and infinite values; an error naming `what` when there are any.
pub fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
    // One pass without a copy: a sum is finite unless some value is not (or finite values overflow
    // it, which the exact count below then clears).
    if t.elem_count() == 0 || t.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.is_finite() {
        return Ok(());
    }
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let count = v.iter().filter(|x| !x.is_finite()).count();
    if count == 0 {
        Ok(())
    } else {
        Err(Error::NonFinite { what: what.into(), count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn images_must_be_a_finite_float_batch() {
        let dev = Device::Cpu;
        let ok = Tensor::ones((2, 3, 4, 5), DType::F32, &dev).unwrap();
        assert_eq!(check_images(&ok).unwrap(), 2);
        for dims in [vec![0, 3, 4, 4], vec![1, 3, 0, 4], vec![1, 0, 4, 4], vec![3, 4, 4]] {
            let t = Tensor::zeros(dims.as_slice(), DType::F32, &dev).unwrap();
            let e = check_images(&t).unwrap_err().to_string();
            assert!(e.contains("[N, C, H, W] with at least one image"), "{dims:?}: {e}");
        }
        let e = check_images(&ok.to_dtype(DType::I64).unwrap()).unwrap_err().to_string();
        assert!(e.contains("I64") && e.contains("floating-point"), "{e}");
        let mut v = vec![0.5f32; 2 * 3 * 4 * 5];
        v[7] = f32::NAN;
        v[9] = f32::INFINITY;
        let bad = Tensor::from_vec(v, (2, 3, 4, 5), &dev).unwrap();
        assert!(check_images(&bad).unwrap_err().to_string().contains("input contains 2 NaN or infinite values"));
        // Finite values whose sum overflows f32 are fine.
        let big = Tensor::full(3e38f32, (1, 1, 2, 2), &dev).unwrap();
        assert_eq!(check_images(&big).unwrap(), 1);
    }

    #[test]
    fn relative_error_is_scaled_by_the_reference() {
        let a = Tensor::new(&[1.0f32, 2.0, 4.1], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1.0f32, 2.0, 4.0], &Device::Cpu).unwrap();
        let e = rel_max_abs_err(&a, &b).unwrap();
        assert!((e - 0.025).abs() < 1e-6, "{e}");
    }

    #[test]
    fn non_finite_values_are_counted() {
        let a = Tensor::new(&[1.0f32, f32::NAN, f32::INFINITY], &Device::Cpu).unwrap();
        let err = ensure_finite(&a, "input").unwrap_err().to_string();
        assert_eq!(err, "input contains 2 NaN or infinite values");
    }
}
