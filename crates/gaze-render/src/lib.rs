//! # gaze-render
//!
//! Turns attribution maps into pictures a person can read: colormaps, normalisation, overlays on
//! the image, grids of feature maps, labelled figures with colour bars, SHAP's image plot, and PNG
//! files written atomically.
//!
//! - [`Map`]: one two-dimensional map, built from a slice or a candle [`Tensor`](candle_core::Tensor),
//!   with the display steps: [`Reduction`] of channels, [`Sign`], [`Map::resize_bilinear`].
//! - [`Normalize`] chooses the values at the ends of a [`Colormap`]; [`colorize`] applies both.
//! - [`overlay`] and [`overlay_map`] blend a heat map over an image; [`grayscale_underlay`] and
//!   [`fade`] prepare the image underneath.
//! - [`Figure`] lays out [`Panel`]s with titles and a [`Colorbar`]; [`grid`] and [`grid_maps`] tile
//!   pictures and maps; [`text`] draws labels with an embedded font (DejaVu Sans).
//! - [`shap_plot`] draws SHAP's `image_plot`.
//! - [`line_chart`] draws [`Series`] of points on shared axes (the benchmarks' time per image
//!   against batch size).
//! - [`save_png`] writes through [`write_atomic`], refusing to replace a file unless
//!   [`WriteOptions::overwrite`] says so.
//!
//! The functions follow zennit's `imgify`/`gridify` shape: plain functions and small option
//! structs.
//! Where a peer's drawing code has a fault (tf-explain's heat weight of 1.0 and its reading of float
//! images, division by zero on constant maps), this crate documents the difference in
//! `docs/rendering.md` and does not inherit it.
//!
//! This crate never runs a model and never computes gradients: it depends only on gaze-core's
//! types, candle's tensors (read, never differentiated), the `image` crate and `ab_glyph` for text.
//! It touches the file system only in [`save_png`] and [`write_atomic`], at the path it is given.
//!
//! ## References
//!
//! - SHAP's image plot: Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions",
//!   <https://arxiv.org/abs/1705.07874>.
//! - zennit's rendering helpers: Anders et al., "Software for Dataset-wide XAI: From Local
//!   Explanations to Global Insights with Zennit, CoRelAy, and ViRelAy",
//!   <https://arxiv.org/abs/2106.13200>.
//! - The saliency map ([`Reduction::AbsMax`]): Simonyan et al., "Deep Inside Convolutional
//!   Networks", <https://arxiv.org/abs/1312.6034>.

pub mod colormap;
mod draw;
mod figure;
mod map;
mod normalize;
mod output;
pub mod plot;
mod shap;
pub mod text;

pub use colormap::Colormap;
pub use draw::{
    colorize, colorize_with_limits, fade, grayscale_underlay, image_from_tensor, overlay, overlay_map, rgba_to_rgb,
    OverlayOptions, PixelRange,
};
pub use figure::{
    colorbar, grid, grid_figure, grid_maps, paste, Colorbar, Figure, FigureStyle, GridOptions, MapGridOptions, Panel,
    Scale, MAX_PICTURE_SIDE, MAX_SPACING, MAX_TEXT_SIZE,
};
pub use map::{Map, Reduction, Sign, MAX_MAP_VALUES};
pub use normalize::{percentile, Limits, Normalize};
pub use output::{save_png, write_atomic, WriteOptions};
pub use plot::{line_chart, LineChart, Series, XScale};
pub use shap::{shap_figure, shap_limits, shap_plot, ShapPlotOptions};

pub use image::{Rgb, RgbImage, Rgba, RgbaImage};
