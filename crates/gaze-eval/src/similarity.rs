//! How alike two maps are: Spearman's rank correlation and the structural similarity index.

use gaze_core::{Error, Result};

/// Spearman's rank correlation of `a` and `b`: Pearson's correlation of their ranks, tied values
/// sharing their average rank (as `scipy.stats.spearmanr`).
///
/// Where either input is constant the ranks carry no order and the correlation is undefined
/// (scipy gives NaN); here it is 0, so that a map that collapsed to a constant counts as unlike
/// the original.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return Err(Error::InvalidOption {
            option: "spearman inputs".into(),
            value: format!("lengths {} and {}", a.len(), b.len()),
            expected: "two inputs of the same length, at least 2".into(),
        });
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "spearman inputs".into(),
            count: a.iter().chain(b).filter(|v| !v.is_finite()).count(),
        });
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        let (dx, dy) = (x - mean, y - mean);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return Ok(0.0);
    }
    Ok((sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0))
}

/// Ranks from 1, ties averaged.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// The side of [`ssim`]'s uniform window, and so the smallest map side it takes.
pub(crate) const SSIM_WINDOW: usize = 7;

/// The mean structural similarity of two `h`×`w` maps (row-major), as scikit-image's
/// `structural_similarity(a, b, data_range=data_range)` with its defaults: a 7×7 uniform window,
/// `K1 = 0.01`, `K2 = 0.03`, sample covariances, and the mean taken over the windows that fit
/// inside the image.
pub fn ssim(a: &[f32], b: &[f32], h: usize, w: usize, data_range: f64) -> Result<f64> {
    const WIN: usize = SSIM_WINDOW;
    let len = h.checked_mul(w);
    if len != Some(a.len()) || len != Some(b.len()) || h < WIN || w < WIN {
        return Err(Error::InvalidOption {
            option: "ssim inputs".into(),
            value: format!("lengths {} and {} for {h}×{w}", a.len(), b.len()),
            expected: format!("two {h}×{w} maps with both sides at least {WIN}"),
        });
    }
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(Error::InvalidOption {
            option: "ssim data range".into(),
            value: data_range.to_string(),
            expected: "a positive finite range".into(),
        });
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "ssim inputs".into(),
            count: a.iter().chain(b).filter(|v| !v.is_finite()).count(),
        });
    }
    let np = (WIN * WIN) as f64;
    let cov_norm = np / (np - 1.0);
    let c1 = (0.01 * data_range).powi(2);
    let c2 = (0.03 * data_range).powi(2);
    let pad = WIN / 2;
    let (mut total, mut count) = (0.0, 0usize);
    for y in pad..h - pad {
        for x in pad..w - pad {
            let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for yy in y - pad..=y + pad {
                for xx in x - pad..=x + pad {
                    let (p, q) = (a[yy * w + xx] as f64, b[yy * w + xx] as f64);
                    sx += p;
                    sy += q;
                    sxx += p * p;
                    syy += q * q;
                    sxy += p * q;
                }
            }
            let (ux, uy) = (sx / np, sy / np);
            let vx = cov_norm * (sxx / np - ux * ux);
            let vy = cov_norm * (syy / np - uy * uy);
            let vxy = cov_norm * (sxy / np - ux * uy);
            let s = ((2.0 * ux * uy + c1) * (2.0 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
            total += s;
            count += 1;
        }
    }
    Ok(total / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair_1d() -> (Vec<f32>, Vec<f32>) {
        let a = (0..20).map(|i| ((i * 37) % 11) as f32).collect();
        let b = (0..20).map(|i| ((i * i + 3) % 13) as f32).collect();
        (a, b)
    }

    fn pair_2d() -> (Vec<f32>, Vec<f32>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..9 {
            for j in 0..10 {
                x.push(((i * 7 + j * 3) % 10) as f32 / 10.0);
                y.push(((i * i + 2 * j) % 7) as f32 / 7.0);
            }
        }
        (x, y)
    }

    // The references come from scipy 1.17.1 and scikit-image 0.26.0:
    // python -c "import numpy as np, scipy.stats as st; from skimage.metrics import structural_similarity as ss; a=np.array([(i*37)%11 for i in range(20)],float); b=np.array([(i*i+3)%13 for i in range(20)],float); print(repr(st.spearmanr(a,b).statistic)); print(repr(st.spearmanr(a,-a**2).statistic)); i,j=np.mgrid[0:9,0:10]; x=((i*7+j*3)%10)/10; y=((i*i+2*j)%7)/7; print(repr(ss(x,y,data_range=1.0))); print(repr(ss(x,x*0.5+0.25,data_range=1.0)))"

    #[test]
    fn spearman_matches_scipy_with_ties() {
        let (a, b) = pair_1d();
        assert!((spearman(&a, &b).unwrap() - -0.2223955980213026).abs() < 1e-12);
        let neg: Vec<f32> = a.iter().map(|v| -v * v).collect();
        assert!((spearman(&a, &neg).unwrap() - -1.0).abs() < 1e-12);
        assert!((spearman(&a, &a).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_of_a_constant_is_zero_and_bad_lengths_are_errors() {
        let (a, _) = pair_1d();
        assert_eq!(spearman(&a, &[3.0; 20]).unwrap(), 0.0);
        let err = spearman(&a, &a[..5]).unwrap_err().to_string();
        assert!(err.contains("lengths 20 and 5"), "{err}");
    }

    #[test]
    fn ssim_matches_scikit_image() {
        let (x, y) = pair_2d();
        assert!((ssim(&x, &y, 9, 10, 1.0).unwrap() - 0.23401490986424353).abs() < 1e-6);
        let z: Vec<f32> = x.iter().map(|v| v * 0.5 + 0.25).collect();
        assert!((ssim(&x, &z, 9, 10, 1.0).unwrap() - 0.7999948083117565).abs() < 1e-6);
        assert!((ssim(&x, &x, 9, 10, 1.0).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ssim_rejects_small_or_mismatched_maps() {
        let (x, _) = pair_2d();
        let err = ssim(&x[..36], &x[..36], 6, 6, 1.0).unwrap_err().to_string();
        assert!(err.contains("at least 7"), "{err}");
        // A size whose product overflows is an error, not a panic.
        let err = ssim(&[], &[], usize::MAX, 2, 1.0).unwrap_err().to_string();
        assert!(err.contains("lengths 0 and 0"), "{err}");
        let err = ssim(&x, &x, 9, 10, 0.0).unwrap_err().to_string();
        assert!(err.contains("positive finite range"), "{err}");
    }
}
