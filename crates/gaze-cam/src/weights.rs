//! The weights of each variant and how they combine with the activations.
//!
//! Shapes: activations `A` are `[N, C, h, w]`; gradients `g` of the T target scores at the layer are
//! `[N, T, C, h, w]`. Every function stays on the tensors' device.

use candle_core::Tensor;

use crate::eigen::first_component_projection;
use crate::{GradientFilter, Result};

/// What a variant contributes to the map.
#[derive(Debug)]
pub(crate) enum Weights {
    /// One weight per channel `[N, T, C]`: the map is `Σ_k w_k A_k`.
    Channel(Tensor),
    /// One weight per activation `[N, T, C, h, w]`: the map is `Σ_k w_k ⊙ A_k`.
    Elementwise(Tensor),
    /// The map itself `[N, T, h, w]` (Eigen-CAM).
    Map(Tensor),
}

/// The activations broadcast against the per-target gradients: `[N, 1, C, h, w]`.
fn per_target(a: &Tensor) -> Result<Tensor> {
    Ok(a.unsqueeze(1)?)
}

/// The spatial sums of the activations, `[N, 1, C, 1, 1]`.
fn spatial_sums(a: &Tensor) -> Result<Tensor> {
    Ok(a.sum_keepdim((2, 3))?.unsqueeze(1)?)
}

/// tf-explain's guided gradients `(A > 0) · (g > 0) · g`, or `g` unchanged.
pub(crate) fn filter_gradients(a: &Tensor, g: &Tensor, filter: GradientFilter) -> Result<Tensor> {
    match filter {
        GradientFilter::Raw => Ok(g.clone()),
        GradientFilter::Guided => {
            let a_pos = per_target(&a.gt(0.0)?.to_dtype(g.dtype())?)?;
            let g_pos = g.gt(0.0)?.to_dtype(g.dtype())?;
            Ok(a_pos.broadcast_mul(&g_pos)?.mul(g)?)
        }
    }
}

/// Grad-CAM: `w_k = mean_ij g_kij`.
pub(crate) fn grad_cam(g: &Tensor) -> Result<Weights> {
    Ok(Weights::Channel(g.mean((3, 4))?))
}

/// Grad-CAM++ as pytorch-grad-cam computes it (the paper's Eq. 19 with the exponential replaced by
/// the identity):
/// `α_kij = g² / (2g² + (Σ_ab A_kab) g³ + 1e-6)`, zero where `g = 0`; `w_k = Σ_ij relu(g_kij) α_kij`.
pub(crate) fn grad_cam_plus_plus(a: &Tensor, g: &Tensor) -> Result<Weights> {
    let g2 = g.sqr()?;
    let g3 = g2.mul(g)?;
    let denom = g2.affine(2.0, 0.0)?.add(&g3.broadcast_mul(&spatial_sums(a)?)?)?.affine(1.0, 1e-6)?;
    let alpha = g2.div(&denom)?;
    let alpha = g.ne(0.0)?.where_cond(&alpha, &alpha.zeros_like()?)?;
    Ok(Weights::Channel(g.relu()?.mul(&alpha)?.sum((3, 4))?))
}

/// XGrad-CAM: `w_k = Σ_ij g_kij A_kij / (Σ_ab A_kab + 1e-7)`.
pub(crate) fn xgrad_cam(a: &Tensor, g: &Tensor) -> Result<Weights> {
    let ga = g.broadcast_mul(&per_target(a)?)?;
    let norm = spatial_sums(a)?.affine(1.0, 1e-7)?;
    Ok(Weights::Channel(ga.broadcast_div(&norm)?.sum((3, 4))?))
}

/// HiResCAM: the element-wise weights are the gradient itself.
pub(crate) fn hires_cam(g: &Tensor) -> Result<Weights> {
    Ok(Weights::Elementwise(g.clone()))
}

/// LayerCAM: the element-wise weights are the positive part of the gradient.
pub(crate) fn layer_cam(g: &Tensor) -> Result<Weights> {
    Ok(Weights::Elementwise(g.relu()?))
}

/// Eigen-CAM: the activations' projection on their first principal component, the same map for
/// every target.
pub(crate) fn eigen_cam(a: &Tensor, targets: usize) -> Result<Weights> {
    let (n, _, h, w) = a.dims4()?;
    let p = first_component_projection(a)?;
    Ok(Weights::Map(p.unsqueeze(1)?.broadcast_as((n, targets, h, w))?.contiguous()?))
}

/// The map `[N, T, h, w]`: the weighted activations summed over channels, or with `eigen_smooth`
/// projected on their first principal component.
pub(crate) fn combine(a: &Tensor, weights: Weights, eigen_smooth: bool) -> Result<Tensor> {
    let (n, c, h, w) = a.dims4()?;
    match weights {
        Weights::Map(m) => Ok(m),
        Weights::Channel(wt) if !eigen_smooth => {
            // [N, T, C] × [N, C, hw]: one batched product instead of a broadcast and a sum.
            let t = wt.dim(1)?;
            let flat = a.reshape((n, c, h * w))?;
            let m = wt.contiguous()?.matmul(&flat)?;
            Ok(m.reshape((n, t, h, w))?)
        }
        Weights::Channel(wt) => {
            let weighted = wt.unsqueeze(3)?.unsqueeze(4)?.broadcast_mul(&per_target(a)?)?;
            project(&weighted)
        }
        Weights::Elementwise(e) => {
            let weighted = e.broadcast_mul(&per_target(a)?)?;
            if eigen_smooth {
                project(&weighted)
            } else {
                Ok(weighted.sum(2)?)
            }
        }
    }
}

/// `[N, T, C, h, w]` → `[N, T, h, w]` by the first-component projection of each `[C, h, w]`.
fn project(weighted: &Tensor) -> Result<Tensor> {
    let (n, t, c, h, w) = weighted.dims5()?;
    let p = first_component_projection(&weighted.reshape((n * t, c, h, w))?)?;
    Ok(p.reshape((n, t, h, w))?)
}
