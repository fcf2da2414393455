//! The CAM family: `gradcam`, `gradcam++`, `xgradcam`, `hirescam`, `layercam`, `eigencam`,
//! `scorecam`, `ablationcam`.

use anyhow::Result;
use candle_core::Tensor;
use gaze_cam::{AugSmooth, Cam, CamConfig, CamMethod};
use gaze_core::Attribution;

use super::{Context, Explanation, Picture};

pub fn explain(ctx: &Context, method: CamMethod) -> Result<Explanation> {
    Ok(explain_layers(ctx, method)?.0)
}

/// Each layer's name and maps, when the layers' maps differ in size.
pub type PerLayer = Vec<(String, Attribution)>;

/// The maps and their pictures, and when the layers' maps differ in size, each layer's maps apart
/// (`[N, T, h, w]`, its own metadata): they cannot be stacked as `[N, T, L, h, w]`, so the raw
/// output is a file per layer. The explanation's attribution then holds the first layer's maps and
/// every layer's name (its targets, scores and metadata are what the summary reads).
pub fn explain_layers(ctx: &Context, method: CamMethod) -> Result<(Explanation, Option<PerLayer>)> {
    let cam = Cam::new(config(ctx, method))?;
    let model = ctx.model;
    let input = &ctx.batch.input;
    let maps = cam.explain_layers(model, input, &ctx.target)?;
    let meta = cam.meta(&ctx.target.score);
    let one_size = maps.layers.windows(2).all(|w| w[0].1.dims() == w[1].1.dims());
    let (values, per_layer) = match maps.layers.as_slice() {
        [] => anyhow::bail!("the CAM run produced no layer"),
        [(_, only)] => (only.clone(), None),
        [(_, first), ..] if !one_size => {
            let per_layer = maps
                .layers
                .iter()
                .map(|(name, m)| {
                    let mut meta = meta.clone();
                    meta.layers = vec![name.clone()];
                    let a = Attribution {
                        values: m.clone(),
                        targets: maps.targets.clone(),
                        scores: Some(maps.scores.clone()),
                        meta,
                    };
                    (name.clone(), a)
                })
                .collect();
            (first.clone(), Some(per_layer))
        }
        all => (Tensor::stack(&all.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), 2)?, None),
    };
    let attribution = Attribution { values, targets: maps.targets, scores: Some(maps.scores), meta };
    // The displayed maps explain the classes already chosen, so top-k does not run twice.
    let fixed = gaze_core::Target::per_image_lists(attribution.targets.clone()).with_score(ctx.target.score.clone());
    let shown = cam.explain_display(model, input, &fixed)?;
    Ok((Explanation { attribution, picture: Picture::Overlay { maps: shown.values } }, per_layer))
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
