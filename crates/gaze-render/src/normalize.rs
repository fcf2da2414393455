//! Normalisation: from a map's values to positions in `[0, 1]` on a colormap.

use gaze_core::{Error, Result};

/// How to choose the values that go to the two ends of a colormap.
///
/// Non-finite values never take part in choosing the limits (numpy's `nanpercentile`, where the
/// peers use it); NaN then shows as transparent, infinities as the end colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalize {
    /// From the smallest value to the largest (pytorch-grad-cam's `scale_cam_image`, tf-explain's
    /// `heatmap_display`).
    MinMax,
    /// From `−m` to `m` with `m` the largest absolute value, so that zero sits at the centre of the
    /// colormap.
    Symmetric,
    /// Fixed limits, the same for every map (for example a shared scale across a figure).
    Fixed { vmin: f32, vmax: f32 },
    /// From the `low`-th to the `high`-th percentile (numpy's linear interpolation, percentages in
    /// `[0, 100]`); values beyond them take the end colours.
    Percentile { low: f32, high: f32 },
    /// From `−q` to `q` with `q` the `percentile`-th percentile of the absolute values: SHAP's
    /// `image_plot` uses 99.9.
    SymmetricPercentile { percentile: f32 },
    /// Captum's `visualize_image_attr` scale: `t` is the smallest absolute value at which the sorted
    /// absolute values have summed to `100 − outlier_perc` percent of their total (Captum's default
    /// `outlier_perc` is 2).
    /// The limits are `−t..t` when `symmetric` (Captum's sign `all`), otherwise `0..t`.
    CumulativeSum { outlier_perc: f32, symmetric: bool },
}

/// The two values a colormap's ends stand for, and how to place values between them.
///
/// When the limits are equal (a constant map under [`Normalize::MinMax`], an all-zero map under a
/// symmetric normalisation) nothing is divided by zero: a value equal to the limit goes to the
/// centre of the colormap (0.5) when the limits are symmetric, and to its start (0) otherwise,
/// as pytorch-grad-cam draws a constant CAM; smaller values go to 0 and larger ones to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub low: f32,
    pub high: f32,
    /// Whether the limits stand for a scale centred on zero.
    pub symmetric: bool,
}

impl Limits {
    /// Limits from `low` to `high`, symmetric when `low == −high`.
    pub fn new(low: f32, high: f32) -> Limits {
        Limits { low, high, symmetric: low == -high }
    }

    /// Limits from `−m` to `m`.
    pub fn symmetric(m: f32) -> Limits {
        let m = m.abs();
        Limits { low: -m, high: m, symmetric: true }
    }

    /// The position of `v` on the colormap, in `[0, 1]`; NaN stays NaN.
    pub fn position(&self, v: f32) -> f32 {
        if v.is_nan() {
            return f32::NAN;
        }
        let span = self.high - self.low;
        if span > 0.0 && span.is_finite() {
            return ((v - self.low) / span).clamp(0.0, 1.0);
        }
        if v < self.low {
            0.0
        } else if v > self.high {
            1.0
        } else if self.symmetric {
            0.5
        } else {
            0.0
        }
    }
}

impl Normalize {
    /// The limits this normalisation gives for `values`.
    /// Percentages outside `[0, 100]` and reversed fixed limits are errors.
    pub fn limits(&self, values: &[f32]) -> Result<Limits> {
        let finite = || values.iter().copied().filter(|v| v.is_finite());
        let limits = match *self {
            Normalize::MinMax => {
                let (lo, hi) = finite().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
                if lo > hi {
                    Limits::new(0.0, 0.0)
                } else {
                    Limits { low: lo, high: hi, symmetric: false }
                }
            }
            Normalize::Symmetric => Limits::symmetric(finite().fold(0.0f32, |m, v| m.max(v.abs()))),
            Normalize::Fixed { vmin, vmax } => {
                if !(vmin.is_finite() && vmax.is_finite() && vmin <= vmax) {
                    return Err(Error::InvalidOption {
                        option: "fixed limits".into(),
                        value: format!("{vmin}..{vmax}"),
                        expected: "finite limits with vmin ≤ vmax".into(),
                    });
                }
                Limits::new(vmin, vmax)
            }
            Normalize::Percentile { low, high } => {
                check_percent("low percentile", low)?;
                check_percent("high percentile", high)?;
                if low > high {
                    return Err(Error::InvalidOption {
                        option: "percentiles".into(),
                        value: format!("{low}..{high}"),
                        expected: "low ≤ high".into(),
                    });
                }
                let mut sorted: Vec<f32> = finite().collect();
                sort(&mut sorted);
                Limits {
                    low: percentile_sorted(&sorted, low),
                    high: percentile_sorted(&sorted, high),
                    symmetric: false,
                }
            }
            Normalize::SymmetricPercentile { percentile } => {
                check_percent("percentile", percentile)?;
                let mut sorted: Vec<f32> = finite().map(f32::abs).collect();
                sort(&mut sorted);
                Limits::symmetric(percentile_sorted(&sorted, percentile))
            }
            Normalize::CumulativeSum { outlier_perc, symmetric } => {
                check_percent("outlier percentage", outlier_perc)?;
                let abs: Vec<f32> = finite().map(f32::abs).collect();
                let t = cumulative_sum_threshold(abs, 100.0 - outlier_perc);
                if symmetric {
                    Limits::symmetric(t)
                } else {
                    Limits { low: 0.0, high: t, symmetric: false }
                }
            }
        };
        Ok(limits)
    }

    /// The positions of `values` on a colormap, each in `[0, 1]` (NaN stays NaN).
    pub fn apply(&self, values: &[f32]) -> Result<Vec<f32>> {
        let limits = self.limits(values)?;
        Ok(values.iter().map(|&v| limits.position(v)).collect())
    }
}

fn check_percent(option: &str, p: f32) -> Result<()> {
    if (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: option.into(),
            value: p.to_string(),
            expected: "a percentage in [0, 100]".into(),
        })
    }
}

fn sort(values: &mut [f32]) {
    values.sort_unstable_by(f32::total_cmp);
}

/// The `q`-th percentile (`q` in `[0, 100]`) of finite values sorted ascending, with numpy's default
/// linear interpolation; 0 for no values.
pub fn percentile_sorted(sorted: &[f32], q: f32) -> f32 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = f64::from(q) / 100.0 * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = rank - lo as f64;
    let (a, b) = (f64::from(sorted[lo]), f64::from(sorted[hi]));
    (a + (b - a) * frac) as f32
}

/// The `q`-th percentile (`q` in `[0, 100]`) of the finite values, with numpy's default linear
/// interpolation (`np.nanpercentile` for NaN); 0 when there are none.
pub fn percentile(values: &[f32], q: f32) -> Result<f32> {
    check_percent("percentile", q)?;
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sort(&mut sorted);
    Ok(percentile_sorted(&sorted, q))
}

/// Captum's `_cumulative_sum_threshold`: the first sorted value at which the running sum reaches
/// `percent` percent of the total; 0 for no values.
fn cumulative_sum_threshold(mut abs: Vec<f32>, percent: f32) -> f32 {
    sort(&mut abs);
    let total: f64 = abs.iter().map(|&v| f64::from(v)).sum();
    let goal = total * 0.01 * f64::from(percent);
    let mut running = 0.0f64;
    for &v in &abs {
        running += f64::from(v);
        if running >= goal {
            return v;
        }
    }
    abs.last().copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy() {
        // python -c "import numpy as np; v=np.array([3,1,4,1,5,9,2,6],'f4'); print([float(np.percentile(v,q)) for q in (0,10,50,99.9,100)])"
        // [1.0, 1.0, 3.5, 8.979000091552734, 9.0]
        let v = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let got: Vec<f32> = [0.0, 10.0, 50.0, 99.9, 100.0].iter().map(|&q| percentile(&v, q).unwrap()).collect();
        let want = [1.0, 1.0, 3.5, 8.979, 9.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
        assert!(percentile(&v, 100.5).is_err());
    }

    #[test]
    fn cumulative_sum_threshold_matches_captum() {
        // Sorted |v| = 1, 1, 2, 3, 4, 5, 6, 9 (sum 31); 98 % of 31 = 30.38, first reached at 9.
        let v = [3.0, -1.0, 4.0, 1.0, -5.0, 9.0, 2.0, 6.0];
        let l = Normalize::CumulativeSum { outlier_perc: 2.0, symmetric: true }.limits(&v).unwrap();
        assert_eq!((l.low, l.high), (-9.0, 9.0));
        // 70 % of 31 = 21.7, reached at 1+1+2+3+4+5+6 = 22, so the threshold is 6.
        let l = Normalize::CumulativeSum { outlier_perc: 30.0, symmetric: false }.limits(&v).unwrap();
        assert_eq!((l.low, l.high), (0.0, 6.0));
    }

    #[test]
    fn constant_maps_do_not_divide_by_zero() {
        let v = [2.5f32; 6];
        let p = Normalize::MinMax.apply(&v).unwrap();
        assert!(p.iter().all(|&x| x == 0.0), "{p:?}");
        let zeros = [0.0f32; 6];
        for norm in [
            Normalize::Symmetric,
            Normalize::SymmetricPercentile { percentile: 99.9 },
            Normalize::CumulativeSum { outlier_perc: 2.0, symmetric: true },
        ] {
            let p = norm.apply(&zeros).unwrap();
            assert!(p.iter().all(|&x| x == 0.5), "{norm:?}: {p:?}");
        }
        // An empty or all-NaN map has no limits to find, and still does not fail.
        let p = Normalize::MinMax.apply(&[f32::NAN, 1.0]).unwrap();
        assert!(p[0].is_nan());
        assert_eq!(p[1], 0.0);
    }

    #[test]
    fn values_beyond_the_limits_take_the_ends() {
        let l = Limits::new(-1.0, 3.0);
        assert_eq!(l.position(-5.0), 0.0);
        assert_eq!(l.position(1.0), 0.5);
        assert_eq!(l.position(f32::INFINITY), 1.0);
        let p = Normalize::Percentile { low: 0.0, high: 50.0 }.apply(&[0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(p, [0.0, 0.5, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn bad_options_are_errors_naming_the_value() {
        let err = Normalize::Fixed { vmin: 2.0, vmax: 1.0 }.limits(&[0.0]).unwrap_err().to_string();
        assert!(err.contains("2..1"), "{err}");
        assert!(Normalize::Percentile { low: 60.0, high: 40.0 }.limits(&[0.0]).is_err());
    }
}
