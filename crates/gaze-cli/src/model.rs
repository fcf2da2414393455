//! Choosing a model and its weights from the command line.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args as ClapArgs;
use gaze_models::{Classifier, ModelKind};

/// `--model` and `--weights`, shared by every command.
#[derive(ClapArgs, Clone, Debug)]
pub struct ModelArgs {
    /// The architecture: `demo` (the default, embedded).
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
        Ok(gaze_models::load(kind, self.weights.as_deref(), &device)?)
    }
}
