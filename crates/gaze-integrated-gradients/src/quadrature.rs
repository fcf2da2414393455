//! Captum's quadratures of the path integral: where on the path the gradient is taken (`alphas`)
//! and how much each point weighs (`step sizes`).

use std::fmt;

use gaze_core::{Error, Result};

/// How the path integral of integrated gradients is approximated, as Captum names them
/// (`captum/attr/_utils/approximation_methods.py`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quadrature {
    /// Gauss–Legendre nodes and weights rescaled from `[-1, 1]` to `[0, 1]` (Captum's default).
    #[default]
    GaussLegendre,
    /// Left Riemann sum: `n` points from 0 to `1 - 1/n`, each weighing `1/n`.
    RiemannLeft,
    /// Right Riemann sum: `n` points from `1/n` to 1, each weighing `1/n`.
    RiemannRight,
    /// Midpoint Riemann sum: `n` points from `1/(2n)` to `1 - 1/(2n)`, each weighing `1/n`.
    RiemannMiddle,
    /// Trapezoid rule as Captum writes it: `n` points from 0 to 1, weighing `1/n` except the two ends,
    /// which weigh `1/(2n)` (so the weights sum to `1 - 1/n`, not 1).
    RiemannTrapezoid,
}

/// The most steps a rule takes: 200 times Captum's default of 50, far past where the integral
/// stops changing. The rule's points and weights are kept for every step, and the Gauss–Legendre
/// nodes cost `O(n²)` to find (about 2 s at this bound), so the count is bounded rather than
/// left to exhaust memory and time.
pub const MAX_STEPS: usize = 10_000;

impl Quadrature {
    /// Every quadrature, in the order the command line lists them.
    pub const ALL: [Quadrature; 5] = [
        Quadrature::GaussLegendre,
        Quadrature::RiemannLeft,
        Quadrature::RiemannRight,
        Quadrature::RiemannMiddle,
        Quadrature::RiemannTrapezoid,
    ];

    /// The name Captum and the command line use, e.g. `gausslegendre` or `riemann_left`.
    pub fn name(self) -> &'static str {
        match self {
            Quadrature::GaussLegendre => "gausslegendre",
            Quadrature::RiemannLeft => "riemann_left",
            Quadrature::RiemannRight => "riemann_right",
            Quadrature::RiemannMiddle => "riemann_middle",
            Quadrature::RiemannTrapezoid => "riemann_trapezoid",
        }
    }

    /// Parses a name as [`Quadrature::name`] writes it.
    pub fn parse(text: &str) -> Result<Self> {
        Quadrature::ALL.into_iter().find(|q| q.name() == text).ok_or_else(|| Error::InvalidOption {
            option: "--quadrature".into(),
            value: text.into(),
            expected: Quadrature::ALL.iter().map(|q| q.name()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The smallest number of steps the quadrature accepts (Captum asserts the same bounds).
    pub fn min_steps(self) -> usize {
        match self {
            Quadrature::GaussLegendre => 1,
            _ => 2,
        }
    }

    /// The step sizes (weights) and the alphas (points in `[0, 1]`) of an `n`-step rule, for `n`
    /// in `min_steps()..=`[`MAX_STEPS`].
    ///
    /// Riemann alphas are computed as `torch.linspace` computes them in `float32`, and Gauss–Legendre
    /// nodes to `f64` precision, so that the points match Captum's to the last bit that matters.
    pub fn rule(self, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        if n < self.min_steps() || n > MAX_STEPS {
            return Err(Error::InvalidOption {
                option: "--steps".into(),
                value: n.to_string(),
                expected: format!(
                    "a step count in {}..={MAX_STEPS} for the {} quadrature",
                    self.min_steps(),
                    self.name()
                ),
            });
        }
        let nf = n as f64;
        let uniform = vec![1.0 / nf; n];
        Ok(match self {
            Quadrature::GaussLegendre => {
                let (nodes, weights) = gauss_legendre(n);
                (weights.iter().map(|w| 0.5 * w).collect(), nodes.iter().map(|x| 0.5 * (1.0 + x)).collect())
            }
            Quadrature::RiemannLeft => (uniform, linspace_f32(0.0, 1.0 - 1.0 / nf, n)),
            Quadrature::RiemannRight => (uniform, linspace_f32(1.0 / nf, 1.0, n)),
            Quadrature::RiemannMiddle => (uniform, linspace_f32(1.0 / (2.0 * nf), 1.0 - 1.0 / (2.0 * nf), n)),
            Quadrature::RiemannTrapezoid => {
                let mut w = uniform;
                w[0] /= 2.0;
                w[n - 1] /= 2.0;
                (w, linspace_f32(0.0, 1.0, n))
            }
        })
    }
}

impl fmt::Display for Quadrature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `torch.linspace(start, end, n)` in `float32`, as PyTorch's CPU kernel computes it: the first half
/// counts up from `start`, the second half counts down from `end`, each point a fused
/// multiply-add (one rounding, not two).
fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f64> {
    let (s, e) = (start as f32, end as f32);
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            let v = if i < half { step.mul_add(i as f32, s) } else { (-step).mul_add((n - 1 - i) as f32, e) };
            v as f64
        })
        .collect()
}

/// The nodes (ascending) and weights of the `n`-point Gauss–Legendre rule on `[-1, 1]`, as numpy's
/// `leggauss` returns them.
///
/// Each root of the Legendre polynomial `P_n` is found by Newton's method from Tricomi's estimate,
/// iterated until the step no longer changes the root; the weight is `2 / ((1 - x²) P_n'(x)²)`.
/// Nodes and weights are then made exactly symmetric and the weights scaled to sum to 2, as numpy
/// does.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    let nf = n as f64;
    for i in 0..n {
        // Roots come out descending; index from the end to store them ascending.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, x);
            dp = d;
            let dx = p / d;
            x -= dx;
            if dx.abs() <= 1e-16 * x.abs().max(1.0) {
                break;
            }
        }
        let (_, d) = legendre(n, x);
        if d.is_finite() {
            dp = d;
        }
        nodes[n - 1 - i] = x;
        weights[n - 1 - i] = 2.0 / ((1.0 - x * x) * dp * dp);
    }
    let sym_nodes: Vec<f64> = (0..n).map(|i| (nodes[i] - nodes[n - 1 - i]) / 2.0).collect();
    let sym_weights: Vec<f64> = (0..n).map(|i| (weights[i] + weights[n - 1 - i]) / 2.0).collect();
    let total: f64 = sym_weights.iter().sum();
    let scaled = sym_weights.iter().map(|w| w * 2.0 / total).collect();
    (sym_nodes, scaled)
}

/// `P_n(x)` and `P_n'(x)` by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    let d = n as f64 * (x * p1 - p0) / (x * x - 1.0);
    (p1, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_known_rules() {
        let (x, w) = gauss_legendre(1);
        assert_eq!((x, w), (vec![0.0], vec![2.0]));
        let (x, w) = gauss_legendre(3);
        let r = (3.0f64 / 5.0).sqrt();
        for (a, b) in x.iter().zip([-r, 0.0, r]) {
            assert!((a - b).abs() < 1e-15, "{x:?}");
        }
        for (a, b) in w.iter().zip([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0]) {
            assert!((a - b).abs() < 1e-15, "{w:?}");
        }
        // numpy.polynomial.legendre.leggauss(5).
        let (x, w) = gauss_legendre(5);
        let nx =
            [-0.906_179_845_938_664, -0.538_469_310_105_683_1, 0.0, 0.538_469_310_105_683_1, 0.906_179_845_938_664];
        let nw = [
            0.236_926_885_056_189_08,
            0.478_628_670_499_366_47,
            0.568_888_888_888_888_9,
            0.478_628_670_499_366_47,
            0.236_926_885_056_189_08,
        ];
        for i in 0..5 {
            assert!((x[i] - nx[i]).abs() < 1e-15, "{x:?}");
            assert!((w[i] - nw[i]).abs() < 1e-15, "{w:?}");
        }
    }

    #[test]
    fn gauss_legendre_integrates_polynomials_of_degree_2n_minus_1_exactly() {
        for n in [2usize, 7, 16, 50, 200] {
            let (x, w) = gauss_legendre(n);
            assert!(x.windows(2).all(|p| p[0] < p[1]), "nodes not ascending");
            for deg in [0usize, 1, 2, 2 * n - 2, 2 * n - 1] {
                let approx: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(deg as i32)).sum();
                let exact = if deg % 2 == 1 { 0.0 } else { 2.0 / (deg as f64 + 1.0) };
                assert!((approx - exact).abs() < 1e-13, "n {n} deg {deg}: {approx} vs {exact}");
            }
        }
    }

    #[test]
    fn riemann_rules_follow_captum() {
        let (w, a) = Quadrature::RiemannTrapezoid.rule(5).unwrap();
        assert_eq!(w, vec![0.1, 0.2, 0.2, 0.2, 0.1]);
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let (_, a) = Quadrature::RiemannLeft.rule(4).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75]);
        let (_, a) = Quadrature::RiemannRight.rule(4).unwrap();
        assert_eq!(a, vec![0.25, 0.5, 0.75, 1.0]);
        let (w, a) = Quadrature::RiemannMiddle.rule(4).unwrap();
        assert_eq!(w, vec![0.25; 4]);
        assert_eq!(a, vec![0.125, 0.375, 0.625, 0.875]);
        // torch.linspace(0, 1, 3) in float32 gives exactly 0.5 in the middle; 1/3 steps round in f32.
        let (_, a) = Quadrature::RiemannLeft.rule(3).unwrap();
        assert_eq!(a[1], (2.0f32 / 3.0 / 2.0) as f64);
        let (w, a) = Quadrature::GaussLegendre.rule(1).unwrap();
        assert_eq!((w, a), (vec![1.0], vec![0.5]));
    }

    #[test]
    fn bad_steps_and_names_are_errors_that_list_what_is_valid() {
        let err = Quadrature::RiemannLeft.rule(1).unwrap_err().to_string();
        assert!(err.contains("in 2..=10000 for the riemann_left"), "{err}");
        let err = Quadrature::GaussLegendre.rule(0).unwrap_err().to_string();
        assert!(err.contains("`0`") && err.contains("1..=10000"), "{err}");
        for q in Quadrature::ALL {
            let err = q.rule(1_000_000_000).unwrap_err().to_string();
            assert!(err.contains("`1000000000` for --steps") && err.contains("..=10000"), "{}: {err}", q.name());
            assert_eq!(q.rule(MAX_STEPS).unwrap().0.len(), MAX_STEPS, "{}", q.name());
        }
        let err = Quadrature::parse("simpson").unwrap_err().to_string();
        assert!(err.contains("simpson") && err.contains("riemann_trapezoid"), "{err}");
        for q in Quadrature::ALL {
            assert_eq!(Quadrature::parse(q.name()).unwrap(), q);
        }
    }
}
