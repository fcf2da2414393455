//! # gaze-models
//!
//! Image classifiers with named taps, ready for every gaze method: the small demo CNN embedded in
//! the crate, and (in their own modules) VGG16 ([`vgg`], <https://arxiv.org/abs/1409.1556>),
//! ResNet-50 ([`resnet`], <https://arxiv.org/abs/1512.03385>) and Xception ([`xception`],
//! <https://arxiv.org/abs/1610.02357>).
//! Each model is a struct built with `vb.pp(...)`, so checkpoint keys, layer names and tap names
//! agree; widths and class counts are read from the checkpoint.
//! The crate also owns per-model preprocessing ([`Preprocess`]) and class labels (the 1000
//! ImageNet classes with their WordNet ids, [`imagenet`]).
//!
//! It must not know about attribution methods, and it never touches the network or a cache
//! directory: callers hand it a checkpoint path (the CLI and the xtask find and fetch them).

mod checkpoint;
mod demo;
pub mod imagenet;
mod layers;
pub mod preprocess;
mod registry;
pub mod resnet;
pub mod vgg;
pub mod xception;

pub use checkpoint::Checkpoint;
pub use demo::{DemoCnn, DemoCnnConfig, DEMO_WEIGHTS};
pub use imagenet::{imagenet_class, imagenet_classes, ClassNames, ImagenetClass};
pub use preprocess::{
    input_tensor_from_bytes, load_image, load_image_bytes, load_input_tensor, resize_pil, Filter, Preprocess,
};
pub use registry::{load, load_checkpoint, Classifier, HubWeights, ModelKind};
pub use resnet::{ResNet, ResNetConfig};
pub use vgg::{Vgg16, Vgg16Config, VggLayout};
pub use xception::{Xception, XceptionConfig};

pub use gaze_core::{Error, Result};
