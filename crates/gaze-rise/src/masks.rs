//! RISE's random masks: low-resolution binary grids, upsampled bilinearly and shifted.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use gaze_core::{Error, Result};

/// The draws behind a set of RISE masks for one input size: which grid cells are kept and how far
/// each upsampled mask is shifted before cropping.
///
/// Build it from a seed with [`MaskPlan::random`], or give the draws explicitly with
/// [`MaskPlan::new`] (to replay another implementation's masks).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskPlan {
    /// The grid is `grid × grid` cells.
    pub grid: usize,
    /// The probability a cell is kept (the `p` the saliency divides by).
    pub keep: f64,
    /// The input size `(H, W)` the masks cover.
    pub size: (usize, usize),
    /// One `grid × grid` row-major block of kept (`true`) and dropped cells per mask.
    pub cells: Vec<bool>,
    /// Each mask's shift `(rows, columns)`, each below the cell size along its axis.
    pub shifts: Vec<(usize, usize)>,
}

impl MaskPlan {
    /// An explicit plan, checked: `cells` holds `grid²` values per mask and every shift is below the
    /// cell size `ceil(H / grid) × ceil(W / grid)`.
    pub fn new(
        grid: usize,
        keep: f64,
        size: (usize, usize),
        cells: Vec<bool>,
        shifts: Vec<(usize, usize)>,
    ) -> Result<Self> {
        check_grid(grid, size)?;
        check_keep(keep)?;
        let masks = shifts.len();
        if masks == 0 || cells.len() != masks * grid * grid {
            return Err(Error::InvalidOption {
                option: "RISE mask plan".into(),
                value: format!("{} cells for {masks} shifts", cells.len()),
                expected: format!("at least one mask and {} cells per mask ({grid}×{grid})", grid * grid),
            });
        }
        let cell = cell_size(grid, size);
        if let Some(bad) = shifts.iter().find(|s| s.0 >= cell.0 || s.1 >= cell.1) {
            return Err(Error::InvalidOption {
                option: "RISE mask shift".into(),
                value: format!("{bad:?}"),
                expected: format!("shifts below the cell size {cell:?}"),
            });
        }
        Ok(MaskPlan { grid, keep, size, cells, shifts })
    }

    /// `masks` masks drawn from `seed`, mask by mask: its `grid²` cells row-major (each kept when a
    /// uniform draw in `[0, 1)` is below `keep`), then its shift, rows before columns, uniform over
    /// the cell size.
    ///
    /// This holds every mask's cells at once; [`MaskDraws`] gives the same masks a few at a time,
    /// which is how [`Rise`](crate::Rise) draws them.
    pub fn random(masks: usize, grid: usize, keep: f64, size: (usize, usize), seed: u64) -> Result<Self> {
        check_masks(masks)?;
        Ok(MaskDraws::new(grid, keep, size, seed)?.next_plan(masks))
    }

    /// The number of masks.
    pub fn len(&self) -> usize {
        self.shifts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shifts.is_empty()
    }

    /// Mask `i`, `H × W` row-major with values in `[0, 1]`: its grid upsampled bilinearly to
    /// `(grid + 1) · cell` per axis and cropped at its shift.
    ///
    /// The upsampling is scikit-image's `resize(grid, up, order=1, mode="reflect",
    /// anti_aliasing=False)`, which the authors use: half-pixel centres, and positions outside the
    /// grid mirrored about the edge cells' centres.
    pub fn mask(&self, i: usize) -> Vec<f32> {
        let s = self.grid;
        let (h, w) = self.size;
        let cell = cell_size(s, self.size);
        let cells = &self.cells[i * s * s..(i + 1) * s * s];
        let (dy, dx) = self.shifts[i];
        let rows: Vec<(usize, usize, f64)> = (0..h).map(|r| tap(r + dy, cell.0, s)).collect();
        let cols: Vec<(usize, usize, f64)> = (0..w).map(|c| tap(c + dx, cell.1, s)).collect();
        let value = |y: usize, x: usize| if cells[y * s + x] { 1.0 } else { 0.0 };
        let mut out = Vec::with_capacity(h * w);
        for &(y0, y1, fy) in &rows {
            for &(x0, x1, fx) in &cols {
                let top = value(y0, x0) * (1.0 - fx) + value(y0, x1) * fx;
                let bottom = value(y1, x0) * (1.0 - fx) + value(y1, x1) * fx;
                out.push((top * (1.0 - fy) + bottom * fy) as f32);
            }
        }
        out
    }
}

/// Seeded RISE masks drawn as they are needed: [`next_plan`](MaskDraws::next_plan) gives the next
/// masks of the sequence [`MaskPlan::random`] draws, so that memory holds only the masks of one
/// batch however many masks are asked for.
#[derive(Clone, Debug)]
pub struct MaskDraws {
    rng: StdRng,
    grid: usize,
    keep: f64,
    size: (usize, usize),
}

impl MaskDraws {
    /// The draws of `seed` for `grid × grid` cells kept with probability `keep` on inputs of `size`;
    /// an error naming a bad grid or probability.
    pub fn new(grid: usize, keep: f64, size: (usize, usize), seed: u64) -> Result<Self> {
        check_grid(grid, size)?;
        check_keep(keep)?;
        Ok(MaskDraws { rng: StdRng::seed_from_u64(seed), grid, keep, size })
    }

    /// The next `count` masks of the sequence, as a plan of their own.
    pub fn next_plan(&mut self, count: usize) -> MaskPlan {
        let (grid, keep) = (self.grid, self.keep);
        let cell = cell_size(grid, self.size);
        let mut cells = Vec::with_capacity(count * grid * grid);
        let mut shifts = Vec::with_capacity(count);
        for _ in 0..count {
            cells.extend((0..grid * grid).map(|_| self.rng.random::<f64>() < keep));
            shifts.push((self.rng.random_range(0..cell.0), self.rng.random_range(0..cell.1)));
        }
        MaskPlan { grid, keep, size: self.size, cells, shifts }
    }
}

/// An error for a mask count of 0; any other count is accepted, since masks are drawn a batch at a
/// time.
pub(crate) fn check_masks(masks: usize) -> Result<()> {
    if masks == 0 {
        return Err(Error::InvalidOption {
            option: "--masks".into(),
            value: "0".into(),
            expected: "at least 1 mask".into(),
        });
    }
    Ok(())
}

/// The grid positions and weight that output position `o` of the upsampled axis reads: source
/// coordinate `(o + 0.5) · s / ((s + 1) · cell) − 0.5`, neighbours mirrored into `0..s`.
fn tap(o: usize, cell: usize, s: usize) -> (usize, usize, f64) {
    let x = (o as f64 + 0.5) * s as f64 / ((s + 1) * cell) as f64 - 0.5;
    let x0 = x.floor();
    let frac = x - x0;
    let mirror = |i: isize| -> usize {
        if s == 1 {
            return 0;
        }
        let period = 2 * (s as isize - 1);
        let m = i.rem_euclid(period);
        (if m < s as isize { m } else { period - m }) as usize
    };
    (mirror(x0 as isize), mirror(x0 as isize + 1), frac)
}

/// The size of one grid cell in pixels, `ceil(H / s) × ceil(W / s)`.
pub fn cell_size(grid: usize, size: (usize, usize)) -> (usize, usize) {
    // A grid of 0 is refused wherever a plan is made; here it counts as 1 rather than dividing by 0.
    let grid = grid.max(1);
    (size.0.div_ceil(grid), size.1.div_ceil(grid))
}

fn check_grid(grid: usize, size: (usize, usize)) -> Result<()> {
    let most = size.0.min(size.1);
    if grid == 0 || grid > most {
        return Err(Error::InvalidOption {
            option: "--grid".into(),
            value: grid.to_string(),
            expected: format!("a grid size in 1..={most} (the smaller side of the input)"),
        });
    }
    Ok(())
}

fn check_keep(keep: f64) -> Result<()> {
    if keep > 0.0 && keep <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "--keep".into(),
            value: keep.to_string(),
            expected: "a probability in (0, 1]".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_scikit_image() {
        // scikit-image 0.26: resize([[1,0,1],[0,1,0],[1,1,0]], (12, 12), order=1, mode="reflect",
        // anti_aliasing=False)[1:9, 2:10]: an 8×8 input, grid 3, cell 3, shift (1, 2).
        let cells = [1, 0, 1, 0, 1, 0, 1, 1, 0].map(|c| c == 1).to_vec();
        let plan = MaskPlan::new(3, 0.5, (8, 8), cells, vec![(1, 2)]).unwrap();
        let want: [[f64; 8]; 8] = [
            [0.78125, 0.59375, 0.40625, 0.21875, 0.21875, 0.40625, 0.59375, 0.78125],
            [0.78125, 0.59375, 0.40625, 0.21875, 0.21875, 0.40625, 0.59375, 0.78125],
            [0.59375, 0.53125, 0.46875, 0.40625, 0.40625, 0.46875, 0.53125, 0.59375],
            [0.40625, 0.46875, 0.53125, 0.59375, 0.59375, 0.53125, 0.46875, 0.40625],
            [0.21875, 0.40625, 0.59375, 0.78125, 0.78125, 0.59375, 0.40625, 0.21875],
            [0.234375, 0.453125, 0.671875, 0.890625, 0.875, 0.625, 0.375, 0.125],
            [0.453125, 0.609375, 0.765625, 0.921875, 0.875, 0.625, 0.375, 0.125],
            [0.671875, 0.765625, 0.859375, 0.953125, 0.875, 0.625, 0.375, 0.125],
        ];
        let got = plan.mask(0);
        for r in 0..8 {
            for c in 0..8 {
                assert!((got[r * 8 + c] as f64 - want[r][c]).abs() < 1e-6, "({r}, {c}): {}", got[r * 8 + c]);
            }
        }
    }

    #[test]
    fn random_plans_are_reproducible_and_in_range() {
        let a = MaskPlan::random(20, 4, 0.3, (10, 13), 9).unwrap();
        assert_eq!(a, MaskPlan::random(20, 4, 0.3, (10, 13), 9).unwrap());
        assert_ne!(a, MaskPlan::random(20, 4, 0.3, (10, 13), 10).unwrap());
        assert!(a.shifts.iter().all(|&(y, x)| y < 3 && x < 4));
        let kept = a.cells.iter().filter(|&&c| c).count() as f64 / a.cells.len() as f64;
        assert!((kept - 0.3).abs() < 0.12, "{kept}");
        assert!(a.mask(3).iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn masks_drawn_a_few_at_a_time_are_the_random_plans_masks() {
        let whole = MaskPlan::random(23, 4, 0.4, (13, 10), 5).unwrap();
        let mut draws = MaskDraws::new(4, 0.4, (13, 10), 5).unwrap();
        let mut from = 0;
        for count in [1, 7, 0, 15] {
            let part = draws.next_plan(count);
            assert_eq!(part.len(), count);
            assert_eq!(part.cells, whole.cells[from * 16..(from + count) * 16]);
            assert_eq!(part.shifts, whole.shifts[from..from + count]);
            for i in 0..count {
                assert_eq!(part.mask(i), whole.mask(from + i), "mask {}", from + i);
            }
            from += count;
        }
    }

    #[test]
    fn bad_plans_name_the_value() {
        let e = MaskPlan::random(4, 0, 0.5, (8, 8), 0).unwrap_err().to_string();
        assert!(e.contains("--grid") && e.contains("1..=8"), "{e}");
        let e = MaskPlan::random(4, 2, 1.5, (8, 8), 0).unwrap_err().to_string();
        assert!(e.contains("--keep") && e.contains("`1.5`"), "{e}");
        let e = MaskPlan::new(2, 0.5, (8, 8), vec![true; 4], vec![(4, 0)]).unwrap_err().to_string();
        assert!(e.contains("(4, 0)") && e.contains("(4, 4)"), "{e}");
        let e = MaskPlan::random(0, 2, 0.5, (8, 8), 0).unwrap_err().to_string();
        assert!(e.contains("--masks"), "{e}");
    }
}
