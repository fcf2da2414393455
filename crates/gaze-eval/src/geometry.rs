//! The shapes' geometry: inside tests in a shape's own frame, and a sine and cosine computed with
//! basic IEEE arithmetic only, so that every machine rasterises the same bytes (the platform's
//! `sin` and `cos` may differ in the last bit between C libraries).

use std::f64::consts::{FRAC_PI_2, PI};
use std::sync::LazyLock;

/// `(sin x, cos x)` from a range reduction to `[−π/4, π/4]` and Taylor polynomials; accurate to
/// about 1e-15 for the angles the data set draws, and bit-identical everywhere.
pub fn sin_cos(x: f64) -> (f64, f64) {
    let k = (x / FRAC_PI_2).round();
    let r = x - k * FRAC_PI_2;
    let r2 = r * r;
    // Horner forms of the Taylor series up to r^17 and r^16.
    let mut s = 1.0 / 355_687_428_096_000.0;
    let mut c = 1.0 / 20_922_789_888_000.0;
    let sin_coeffs = [
        -1.0 / 1_307_674_368_000.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 39_916_800.0,
        1.0 / 362_880.0,
        -1.0 / 5_040.0,
        1.0 / 120.0,
        -1.0 / 6.0,
        1.0,
    ];
    let cos_coeffs = [
        -1.0 / 87_178_291_200.0,
        1.0 / 479_001_600.0,
        -1.0 / 3_628_800.0,
        1.0 / 40_320.0,
        -1.0 / 720.0,
        1.0 / 24.0,
        -0.5,
        1.0,
    ];
    for a in sin_coeffs {
        s = s * r2 + a;
    }
    for a in cos_coeffs {
        c = c * r2 + a;
    }
    let (sr, cr) = (s * r, c);
    match (k as i64).rem_euclid(4) {
        0 => (sr, cr),
        1 => (cr, -sr),
        2 => (-sr, -cr),
        _ => (-cr, sr),
    }
}

/// The eight shape classes, in the order of the demo model's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShapeClass {
    Circle,
    Square,
    Triangle,
    Star,
    Cross,
    Ring,
    Diamond,
    Hexagon,
}

impl ShapeClass {
    /// Every class, in label order.
    pub const ALL: [ShapeClass; 8] = [
        ShapeClass::Circle,
        ShapeClass::Square,
        ShapeClass::Triangle,
        ShapeClass::Star,
        ShapeClass::Cross,
        ShapeClass::Ring,
        ShapeClass::Diamond,
        ShapeClass::Hexagon,
    ];

    /// The class of label `label`, if there is one.
    pub fn from_label(label: usize) -> Option<ShapeClass> {
        Self::ALL.get(label).copied()
    }

    /// The class's label: its index in [`ShapeClass::ALL`].
    pub fn label(self) -> usize {
        self as usize
    }

    /// The class's name, as in the demo model's `classes` metadata.
    pub fn name(self) -> &'static str {
        CLASS_NAMES[self as usize]
    }

    /// Whether the point `(u, v)` of the shape's own frame (centre at the origin, circumradius 1,
    /// no rotation) is inside the shape.
    pub fn contains(self, u: f64, v: f64) -> bool {
        let r2 = u * u + v * v;
        if r2 > 1.0 {
            return false;
        }
        match self {
            ShapeClass::Circle => true,
            ShapeClass::Square => u.abs() <= SQUARE_HALF && v.abs() <= SQUARE_HALF,
            ShapeClass::Cross => {
                (u.abs() <= CROSS_HALF_WIDTH && v.abs() <= CROSS_ARM)
                    || (v.abs() <= CROSS_HALF_WIDTH && u.abs() <= CROSS_ARM)
            }
            ShapeClass::Ring => r2 >= RING_INNER * RING_INNER,
            ShapeClass::Diamond => u.abs() / DIAMOND_HALF_WIDTH + v.abs() <= 1.0,
            ShapeClass::Triangle => inside_polygon(&TRIANGLE, u, v),
            ShapeClass::Hexagon => inside_polygon(&HEXAGON, u, v),
            ShapeClass::Star => inside_polygon(&STAR, u, v),
        }
    }
}

/// The class names in label order.
pub const CLASS_NAMES: [&str; 8] = ["circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon"];

const SQUARE_HALF: f64 = 0.75;
const CROSS_HALF_WIDTH: f64 = 0.3;
const CROSS_ARM: f64 = 0.92;
const RING_INNER: f64 = 0.55;
const DIAMOND_HALF_WIDTH: f64 = 0.6;
const STAR_INNER: f64 = 0.45;

static TRIANGLE: LazyLock<Vec<(f64, f64)>> = LazyLock::new(|| polygon(3, 1.0, 1.0));
static HEXAGON: LazyLock<Vec<(f64, f64)>> = LazyLock::new(|| polygon(6, 1.0, 1.0));
static STAR: LazyLock<Vec<(f64, f64)>> = LazyLock::new(|| polygon(5, 1.0, STAR_INNER));

/// The vertices of a regular polygon with `n` corners at radius `outer`, pointing up, or of an
/// `n`-pointed star when `inner` is smaller than `outer` (then `2n` vertices alternate).
fn polygon(n: usize, outer: f64, inner: f64) -> Vec<(f64, f64)> {
    let star = inner < outer;
    let count = if star { 2 * n } else { n };
    (0..count)
        .map(|i| {
            let angle = FRAC_PI_2 + 2.0 * PI * i as f64 / count as f64;
            let radius = if star && i % 2 == 1 { inner } else { outer };
            let (s, c) = sin_cos(angle);
            (radius * c, -radius * s)
        })
        .collect()
}

/// The even-odd rule: whether `(u, v)` is inside the closed polygon `vertices`.
fn inside_polygon(vertices: &[(f64, f64)], u: f64, v: f64) -> bool {
    let mut inside = false;
    let mut j = vertices.len() - 1;
    for i in 0..vertices.len() {
        let (xi, yi) = vertices[i];
        let (xj, yj) = vertices[j];
        if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_and_cosine_match_the_platform_closely() {
        for i in -400..400 {
            let x = i as f64 * 0.0173;
            let (s, c) = sin_cos(x);
            assert!((s - x.sin()).abs() < 1e-14, "sin {x}");
            assert!((c - x.cos()).abs() < 1e-14, "cos {x}");
        }
    }

    #[test]
    fn every_shape_holds_its_centre_except_the_ring() {
        for class in ShapeClass::ALL {
            assert_eq!(class.contains(0.0, 0.0), class != ShapeClass::Ring, "{class:?}");
            assert!(!class.contains(0.99, 0.99), "{class:?}");
        }
        assert!(ShapeClass::Ring.contains(0.8, 0.0));
        assert!(ShapeClass::Triangle.contains(0.0, -0.9), "the triangle points up (negative v)");
        assert!(!ShapeClass::Triangle.contains(0.0, 0.9));
        assert!(ShapeClass::Star.contains(0.0, -0.95) && !ShapeClass::Star.contains(0.5, -0.6));
    }

    #[test]
    fn shapes_have_comparable_areas() {
        let n = 400;
        for class in ShapeClass::ALL {
            let mut inside = 0;
            for i in 0..n {
                for j in 0..n {
                    let u = -1.0 + 2.0 * (i as f64 + 0.5) / n as f64;
                    let v = -1.0 + 2.0 * (j as f64 + 0.5) / n as f64;
                    inside += class.contains(u, v) as usize;
                }
            }
            let area = 4.0 * inside as f64 / (n * n) as f64;
            assert!((0.9..=3.2).contains(&area), "{class:?}: area {area}");
        }
    }
}
