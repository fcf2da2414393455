use std::path::Path;
use std::str::FromStr;

use candle_core::Device;
use gaze_engine::TapModel;

use crate::{Checkpoint, DemoCnn, Error, Preprocess, ResNet, Result, Vgg16, Xception};

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
    /// The layer a CAM explains when none is named: the output of the last convolutional block.
    fn default_layer(&self) -> Option<String> {
        None
    }
    /// The model described as spatial stages, for occlusion that recomputes only what each window
    /// changes (`gaze_occlusion::Occlusion::explain_incremental`); `None` where the model has no
    /// such description (the demo CNN).
    fn incremental(&self) -> Option<&dyn gaze_engine::spatial::Incremental> {
        None
    }
}

/// The architectures gaze knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// The small demo CNN (the default).
    Demo,
    /// VGG16, torchvision's or timm's layout.
    Vgg16,
    /// ResNet-50 (or another bottleneck ResNet), torchvision's and timm's layout.
    ResNet50,
    /// Xception, timm's `legacy_xception` layout.
    Xception,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [ModelKind::Demo, ModelKind::Vgg16, ModelKind::ResNet50, ModelKind::Xception];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Demo => "demo",
            ModelKind::Vgg16 => "vgg16",
            ModelKind::ResNet50 => "resnet50",
            ModelKind::Xception => "xception",
        }
    }

    /// Whether the architecture ships its weights inside the crate (only the demo model does; the
    /// others need a checkpoint file).
    pub fn has_embedded_weights(self) -> bool {
        matches!(self, ModelKind::Demo)
    }

    /// Where the pretrained ImageNet weights of the architecture live on the Hugging Face hub
    /// (`None` for the demo model, whose weights are embedded).
    ///
    /// This is the one table `cargo xtask fetch-weights` downloads from and the command line looks
    /// up in the local hub cache; this crate itself never reads a cache or the network.
    pub fn hub_weights(self) -> Option<HubWeights> {
        let hub = |repo| HubWeights { repo, revision: "main", file: "model.safetensors", sha256: None };
        match self {
            ModelKind::Demo => None,
            ModelKind::Vgg16 => Some(hub("timm/vgg16.tv_in1k")),
            ModelKind::ResNet50 => Some(hub("timm/resnet50.tv_in1k")),
            ModelKind::Xception => Some(hub("timm/legacy_xception.tf_in1k")),
        }
    }
}

/// A checkpoint on the Hugging Face hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubWeights {
    /// The repository id, such as `timm/vgg16.tv_in1k`.
    pub repo: &'static str,
    /// The revision: a branch (`main`) or, to pin it, a commit hash.
    pub revision: &'static str,
    /// The file in the repository.
    pub file: &'static str,
    /// The file's SHA-256 in lowercase hex, when pinned; otherwise the download is checked against
    /// the SHA-256 the hub reports for the file (its LFS object id).
    pub sha256: Option<&'static str>,
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
///
/// VGG16, ResNet-50 and Xception have no embedded weights: without `weights` they are an error
/// (callers such as the command line find a checkpoint first).
pub fn load(kind: ModelKind, weights: Option<&Path>, device: &Device) -> Result<Box<dyn Classifier>> {
    match (kind, weights) {
        (_, Some(path)) => load_checkpoint(kind, &Checkpoint::open(path, device)?, device),
        (ModelKind::Demo, None) => Ok(Box::new(DemoCnn::embedded(device)?)),
        (_, None) => Err(Error::InvalidOption {
            option: "--weights".into(),
            value: "(none)".into(),
            expected: format!("a safetensors checkpoint of {}, which has no embedded weights", kind.name()),
        }),
    }
}

/// Builds a model of `kind` from an opened checkpoint (in f64 after [`Checkpoint::to_dtype`]).
pub fn load_checkpoint(kind: ModelKind, ckpt: &Checkpoint, device: &Device) -> Result<Box<dyn Classifier>> {
    Ok(match kind {
        ModelKind::Demo => Box::new(DemoCnn::from_checkpoint(ckpt, device)?),
        ModelKind::Vgg16 => Box::new(Vgg16::from_checkpoint(ckpt, device)?),
        ModelKind::ResNet50 => Box::new(ResNet::from_checkpoint(ckpt, device)?),
        ModelKind::Xception => Box::new(Xception::from_checkpoint(ckpt, device)?),
    })
}

/// The [`Classifier`] methods of a model with [`ClassNames`](crate::ClassNames).
macro_rules! imagenet_classifier {
    ($model:ty, $kind:expr, $layer:expr) => {
        imagenet_classifier!($model, $kind, $layer, {});
    };
    ($model:ty, $kind:expr, $layer:expr, { $($extra:item)* }) => {
        impl Classifier for $model {
            $($extra)*

            fn kind(&self) -> ModelKind {
                $kind
            }

            fn preprocess(&self) -> Preprocess {
                <$model>::preprocess(self)
            }

            fn label(&self, class: usize) -> Option<String> {
                self.class_names().label(class)
            }

            fn class_id(&self, class: usize) -> Option<String> {
                self.class_names().class_id(class)
            }

            fn default_layer(&self) -> Option<String> {
                Some($layer.to_string())
            }
        }
    };
}

// The default CAM layers are the last convolutional feature maps: VGG16's ReLU after its last
// convolution (Keras's `block5_conv3`), ResNet's last stage, Xception's `act4` (Keras's
// `block14_sepconv2_act`).
imagenet_classifier!(Vgg16, ModelKind::Vgg16, "features.29", {
    fn incremental(&self) -> Option<&dyn gaze_engine::spatial::Incremental> {
        Some(self)
    }
});
imagenet_classifier!(ResNet, ModelKind::ResNet50, "layer4", {
    fn incremental(&self) -> Option<&dyn gaze_engine::spatial::Incremental> {
        Some(self)
    }
});
imagenet_classifier!(Xception, ModelKind::Xception, "act4", {
    fn incremental(&self) -> Option<&dyn gaze_engine::spatial::Incremental> {
        Some(self)
    }
});

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

    fn default_layer(&self) -> Option<String> {
        Some("relu4".into())
    }
}
