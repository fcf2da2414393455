//! Choosing a model and its weights from the command line.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args as ClapArgs;
use gaze_models::{Classifier, ModelKind};

/// `--model` and `--weights`, shared by every command.
#[derive(ClapArgs, Clone, Debug)]
pub struct ModelArgs {
    /// The architecture: `demo` (the default, embedded), `vgg16`, `resnet50` or `xception`.
    /// Without --weights the last three use the ImageNet weights in the local Hugging Face hub cache
    /// (`cargo xtask fetch-weights NAME` puts them there).
    #[arg(long, default_value = "demo")]
    pub model: String,
    /// A safetensors checkpoint of that architecture (widths and class count are read from it).
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the model the arguments name, on the CPU.
    pub fn load(&self) -> Result<Box<dyn Classifier>> {
        let kind: ModelKind = self.model.parse()?;
        let device = Device::Cpu;
        let cached = match &self.weights {
            None if !kind.has_embedded_weights() => Some(crate::weights::cached_weights(kind)?),
            _ => None,
        };
        Ok(gaze_models::load(kind, self.weights.as_deref().or(cached.as_deref()), &device)?)
    }
}
