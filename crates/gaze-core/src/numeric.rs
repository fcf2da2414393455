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

/// Counts NaN and infinite values; an error naming `what` when there are any.
pub fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
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
