use std::path::Path;
use std::str::FromStr;

use candle_core::Device;
use gaze_engine::TapModel;

use crate::{Checkpoint, DemoCnn, Error, Preprocess, Result};

/// A classifier the command line and the reports can run: a [`TapModel`] with its preprocessing and
/// class labels.
pub trait Classifier: TapModel + Send + Sync {
    /// The architecture's name, as `--model` takes it.
    fn kind(&self) -> ModelKind;
    /// How images are prepared for this model.
    fn preprocess(&self) -> Preprocess;
    /// The human-readable label of a class (`None` beyond the class count).
    fn label(&self, class: usize) -> Option<String>;
    /// A stable identifier of a class (an ImageNet WordNet id such as `n02123045`), when known.
    fn class_id(&self, class: usize) -> Option<String> {
        let _ = class;
        None
    }
}

/// The architectures gaze knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// The small demo CNN (the default).
    Demo,
}

impl ModelKind {
    pub const ALL: [ModelKind; 1] = [ModelKind::Demo];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Demo => "demo",
        }
    }
}

impl FromStr for ModelKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ModelKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| Error::InvalidOption {
            option: "--model".into(),
            value: s.into(),
            expected: ModelKind::ALL.map(ModelKind::name).join(", "),
        })
    }
}

/// Loads a model of `kind` from `weights`, or its embedded weights where it has some.
pub fn load(kind: ModelKind, weights: Option<&Path>, device: &Device) -> Result<Box<dyn Classifier>> {
    match kind {
        ModelKind::Demo => {
            let model = match weights {
                Some(path) => DemoCnn::from_checkpoint(&Checkpoint::open(path, device)?, device)?,
                None => DemoCnn::embedded(device)?,
            };
            Ok(Box::new(model))
        }
    }
}

impl Classifier for DemoCnn {
    fn kind(&self) -> ModelKind {
        ModelKind::Demo
    }

    fn preprocess(&self) -> Preprocess {
        DemoCnn::preprocess(self)
    }

    fn label(&self, class: usize) -> Option<String> {
        self.class_names().get(class).cloned()
    }
}
