//! `integrated-gradients`: Captum's IntegratedGradients with its quadratures and baselines.

use anyhow::Result;
use gaze_integrated_gradients::{Baseline, IntegratedGradients, Quadrature};

use super::{Context, Explanation, Picture};

pub fn explain(ctx: &Context) -> Result<Explanation> {
    let o = ctx.options;
    let mut method = IntegratedGradients::default();
    if let Some(s) = o.steps {
        method = method.with_steps(s);
    }
    if let Some(q) = &o.quadrature {
        method = method.with_quadrature(Quadrature::parse(q)?);
    }
    if let Some(b) = &o.baseline {
        method = method.with_baseline(baseline(b, ctx)?);
    }
    if let Some(b) = o.batch {
        method = method.with_batch(b);
    }
    let out = method.explain_with_delta(ctx.model, &ctx.batch.input, &ctx.target)?;
    let mut attribution = out.attribution;
    let delta = out.delta.to_dtype(candle_core::DType::F32)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    attribution.meta = attribution.meta.clone().with_option("max_abs_convergence_delta", delta);
    Ok(Explanation { attribution, picture: Picture::Saliency })
}

/// `zero`, `blur`, `blur:SIGMA`, or a safetensors file with a tensor `baseline` (or `input`) of the
/// input's shape or of one image's shape.
fn baseline(text: &str, ctx: &Context) -> Result<Baseline> {
    let path = std::path::Path::new(text);
    if !path.exists() {
        return Ok(Baseline::parse(text)?);
    }
    let tensors =
        candle_core::safetensors::load(path, ctx.model.device()).map_err(|e| gaze_core::Error::InputTensor {
            path: path.to_path_buf(),
            reason: format!("cannot read the baseline tensors: {e}"),
        })?;
    let t = tensors.get("baseline").or_else(|| tensors.get("input")).ok_or_else(|| gaze_core::Error::InputTensor {
        path: path.to_path_buf(),
        reason: "no tensor named `baseline` or `input`".into(),
    })?;
    let input = &ctx.batch.input;
    let t = t.to_dtype(input.dtype())?;
    let t = if t.dims() == &input.dims()[1..] { t.unsqueeze(0)?.broadcast_as(input.dims())?.contiguous()? } else { t };
    if t.dims() != input.dims() {
        return Err(gaze_core::Error::Shape {
            what: format!("baseline in {}", path.display()),
            expected: format!("{:?} or {:?}", input.dims(), &input.dims()[1..]),
            got: t.dims().to_vec(),
        }
        .into());
    }
    Ok(Baseline::Tensor(t))
}
