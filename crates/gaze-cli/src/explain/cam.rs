//! The CAM family: `gradcam`, `gradcam++`, `xgradcam`, `hirescam`, `layercam`, `eigencam`,
//! `scorecam`, `ablationcam`.

use anyhow::Result;
use gaze_cam::{AugSmooth, Cam, CamConfig, CamMethod};
use gaze_core::Explainer;

use super::{Context, Explanation, Picture};

pub fn explain(ctx: &Context, method: CamMethod) -> Result<Explanation> {
    let cam = Cam::new(config(ctx, method))?;
    let model = ctx.model;
    let input = &ctx.batch.input;
    let attribution = Explainer::explain(&cam, model, input, &ctx.target)?;
    // The displayed maps explain the classes already chosen, so top-k does not run twice.
    let fixed = gaze_core::Target::per_image_lists(attribution.targets.clone()).with_score(ctx.target.score.clone());
    let shown = cam.explain_display(model, input, &fixed)?;
    Ok(Explanation { attribution, picture: Picture::Overlay { maps: shown.values } })
}

/// The CAM configuration the options describe.
pub fn config(ctx: &Context, method: CamMethod) -> CamConfig {
    let o = ctx.options;
    let mut config = CamConfig::new(method, ctx.layers.iter().cloned())
        .with_relu(o.relu())
        .with_eigen_smooth(o.eigen_smooth)
        .with_aug_smooth(o.aug_smooth.then(AugSmooth::default));
    if let Some(b) = o.batch {
        config = config.with_batch(b);
    }
    config
}
