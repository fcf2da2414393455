//! Building occluded copies.

use candle_core::Tensor;
use gaze_core::Result;

use crate::incremental::Rect;
use crate::patches::Patch;

/// The part of `image` `[C, H, W]` inside `window` (which must lie inside the image and hold the
/// patch's rectangle), with the patch's box replaced by the same box of `baseline`: Captum's
/// `input · (1 − mask) + baseline · mask` restricted to the window, `[C, wh, ww]`.
pub(crate) fn occlude(image: &Tensor, baseline: &Tensor, patch: &Patch, window: Rect) -> Result<Tensor> {
    let (c, _, _) = image.dims3()?;
    let (top, left) = (window[0].start as usize, window[1].start as usize);
    let crop = image.narrow(1, top, window[0].len())?.narrow(2, left, window[1].len())?;
    let rows = |t: &Tensor| -> Result<Tensor> {
        Ok(t.narrow(1, patch.start[1], patch.len(1))?.narrow(2, patch.start[2], patch.len(2))?)
    };
    let filled = rows(&baseline.narrow(0, patch.start[0], patch.len(0))?)?;
    let src = if patch.len(0) == c {
        filled
    } else {
        let mut parts = Vec::with_capacity(3);
        if patch.start[0] > 0 {
            parts.push(rows(&image.narrow(0, 0, patch.start[0])?)?);
        }
        parts.push(filled);
        if patch.end[0] < c {
            parts.push(rows(&image.narrow(0, patch.end[0], c - patch.end[0])?)?);
        }
        Tensor::cat(&parts, 0)?
    };
    crate::incremental::paste_rect(&crop, &src, patch.start[1] - top, patch.start[2] - left)
}
