//! The 1000 ImageNet-1k classes and how a model names its classes.
//!
//! The list is the one Keras's `decode_predictions` prints: each class has a WordNet id
//! (`n02124075`) and a short label (`Egyptian_cat`), in the standard order of the ImageNet-1k
//! training set (sorted WordNet ids), which torchvision and timm share.
//! It is embedded from `data/imagenet_classes.txt` beside this crate's sources, one class a line:
//! the WordNet id, a space, the label.

use std::sync::OnceLock;

/// The number of ImageNet-1k classes.
pub const IMAGENET_CLASSES: usize = 1000;

static CLASS_FILE: &str = include_str!("../data/imagenet_classes.txt");

/// One ImageNet-1k class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagenetClass {
    /// The WordNet id, such as `n02124075`.
    pub wnid: &'static str,
    /// The short label Keras prints, such as `Egyptian_cat`.
    pub label: &'static str,
}

/// Every ImageNet-1k class, by class index.
pub fn imagenet_classes() -> &'static [ImagenetClass] {
    static CLASSES: OnceLock<Vec<ImagenetClass>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        CLASS_FILE
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let (wnid, label) = line.split_once(' ').unwrap_or((line, ""));
                ImagenetClass { wnid, label }
            })
            .collect()
    })
}

/// The ImageNet-1k class with index `class`, if there is one.
pub fn imagenet_class(class: usize) -> Option<ImagenetClass> {
    imagenet_classes().get(class).copied()
}

/// The names of a model's classes: the checkpoint's own, ImageNet's, or `class N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassNames {
    /// The 1000 ImageNet-1k classes, with WordNet ids.
    Imagenet,
    /// Labels given by the checkpoint (its `classes` metadata, comma-separated).
    Custom(Vec<String>),
    /// `count` classes known only by number.
    Numbered(usize),
}

impl ClassNames {
    /// The names for a head with `num_classes` outputs: the checkpoint's `classes` metadata when it
    /// has one label per class, ImageNet's when there are 1000 classes, numbers otherwise.
    pub fn for_head(num_classes: usize, metadata_classes: Option<&str>) -> Self {
        if let Some(names) = metadata_classes {
            let names: Vec<String> = names.split(',').map(|s| s.trim().to_string()).collect();
            if names.len() == num_classes {
                return ClassNames::Custom(names);
            }
        }
        if num_classes == IMAGENET_CLASSES {
            ClassNames::Imagenet
        } else {
            ClassNames::Numbered(num_classes)
        }
    }

    /// The number of classes.
    pub fn len(&self) -> usize {
        match self {
            ClassNames::Imagenet => IMAGENET_CLASSES,
            ClassNames::Custom(names) => names.len(),
            ClassNames::Numbered(n) => *n,
        }
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of `class` (`None` beyond the class count).
    pub fn label(&self, class: usize) -> Option<String> {
        if class >= self.len() {
            return None;
        }
        Some(match self {
            ClassNames::Imagenet => imagenet_class(class)?.label.to_string(),
            ClassNames::Custom(names) => names[class].clone(),
            ClassNames::Numbered(_) => format!("class {class}"),
        })
    }

    /// The WordNet id of `class`, for ImageNet classes only.
    pub fn class_id(&self, class: usize) -> Option<String> {
        match self {
            ClassNames::Imagenet => imagenet_class(class).map(|c| c.wnid.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_1000_distinct_sorted_wordnet_ids() {
        let classes = imagenet_classes();
        assert_eq!(classes.len(), IMAGENET_CLASSES);
        for c in classes {
            assert!(
                c.wnid.len() == 9 && c.wnid.starts_with('n') && c.wnid[1..].bytes().all(|b| b.is_ascii_digit()),
                "{c:?}"
            );
            assert!(!c.label.is_empty(), "{c:?}");
        }
        assert!(classes.windows(2).all(|w| w[0].wnid < w[1].wnid));
    }

    #[test]
    fn known_classes_have_keras_names() {
        assert_eq!(imagenet_class(0), Some(ImagenetClass { wnid: "n01440764", label: "tench" }));
        assert_eq!(imagenet_class(281).map(|c| c.label), Some("tabby"));
        assert_eq!(imagenet_class(285), Some(ImagenetClass { wnid: "n02124075", label: "Egyptian_cat" }));
        assert_eq!(imagenet_class(999), Some(ImagenetClass { wnid: "n15075141", label: "toilet_tissue" }));
        assert_eq!(imagenet_class(1000), None);
    }

    #[test]
    fn class_names_follow_the_head() {
        let imagenet = ClassNames::for_head(1000, None);
        assert_eq!(imagenet.label(285).as_deref(), Some("Egyptian_cat"));
        assert_eq!(imagenet.class_id(285).as_deref(), Some("n02124075"));
        assert_eq!(imagenet.label(1000), None);
        let ten = ClassNames::for_head(10, None);
        assert_eq!(ten.label(3).as_deref(), Some("class 3"));
        assert_eq!(ten.class_id(3), None);
        assert_eq!(ten.label(10), None);
        let custom = ClassNames::for_head(2, Some("cat, dog"));
        assert_eq!(custom.label(1).as_deref(), Some("dog"));
        assert_eq!(ClassNames::for_head(3, Some("cat, dog")), ClassNames::Numbered(3));
    }
}
