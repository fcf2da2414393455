use std::fmt;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// A user function from the model's logits `[N, K]` to the outputs to explain `[N, K']`.
///
/// It must be built from differentiable tensor operations: gradients flow through it.
pub type ScoreFn = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// Which output of the model a target's class indexes.
#[derive(Clone, Default)]
pub enum Score {
    /// The raw logit (pytorch-grad-cam's and Captum's default).
    #[default]
    Logit,
    /// The softmax probability (what a Keras model with a softmax head outputs, as tf-explain and
    /// shap's TensorFlow explainers see it).
    Probability,
    /// A user function of the logits.
    Custom(ScoreFn),
}

impl Score {
    /// The name used in metadata and on the command line: `logit`, `probability` or `custom`.
    pub fn name(&self) -> &'static str {
        match self {
            Score::Logit => "logit",
            Score::Probability => "probability",
            Score::Custom(_) => "custom",
        }
    }

    /// Parses `logit` or `probability`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "logit" => Ok(Score::Logit),
            "probability" => Ok(Score::Probability),
            other => Err(Error::InvalidOption {
                option: "--score".into(),
                value: other.into(),
                expected: "logit or probability".into(),
            }),
        }
    }
}

impl fmt::Debug for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which classes to explain for each image of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// The highest-scoring class of each image.
    TopClass,
    /// The `k` highest-scoring classes of each image, best first (SHAP's `ranked_outputs`).
    Top(usize),
    /// The same classes for every image.
    Classes(Vec<usize>),
    /// One list of classes per image; every list has the same length.
    PerImage(Vec<Vec<usize>>),
}

/// What to explain: which classes ([`TargetSpec`]) of which output ([`Score`]).
///
/// ```
/// use gaze_core::{Score, Target};
/// let t = Target::classes([281, 285]).with_score(Score::Probability);
/// assert_eq!(t.score.name(), "probability");
/// ```
#[derive(Clone, Debug)]
pub struct Target {
    pub spec: TargetSpec,
    pub score: Score,
}

impl Default for Target {
    fn default() -> Self {
        Target::top_class()
    }
}

impl Target {
    /// The top class of each image, on the logit.
    pub fn top_class() -> Self {
        Target { spec: TargetSpec::TopClass, score: Score::Logit }
    }

    /// The `k` best classes of each image, on the logit.
    pub fn top(k: usize) -> Self {
        Target { spec: TargetSpec::Top(k), score: Score::Logit }
    }

    /// The same classes for every image, on the logit.
    pub fn classes(classes: impl IntoIterator<Item = usize>) -> Self {
        Target { spec: TargetSpec::Classes(classes.into_iter().collect()), score: Score::Logit }
    }

    /// One class per image, on the logit.
    pub fn per_image(classes: impl IntoIterator<Item = usize>) -> Self {
        Target { spec: TargetSpec::PerImage(classes.into_iter().map(|c| vec![c]).collect()), score: Score::Logit }
    }

    /// Several classes per image, on the logit.
    pub fn per_image_lists(lists: Vec<Vec<usize>>) -> Self {
        Target { spec: TargetSpec::PerImage(lists), score: Score::Logit }
    }

    /// The same target on another output.
    pub fn with_score(mut self, score: Score) -> Self {
        self.score = score;
        self
    }

    /// The number of targets per image, where it is known without the outputs.
    pub fn count(&self) -> Option<usize> {
        match &self.spec {
            TargetSpec::TopClass => Some(1),
            TargetSpec::Top(k) => Some(*k),
            TargetSpec::Classes(c) => Some(c.len()),
            TargetSpec::PerImage(lists) => lists.first().map(Vec::len),
        }
    }

    /// The classes to explain for each image, `[N][T]`, given the scored outputs `[N, K]`.
    ///
    /// Checks every index against `K`, `k` of top-k against `K`, and per-image lists against `N`.
    pub fn resolve(&self, outputs: &Tensor) -> Result<Vec<Vec<usize>>> {
        let (n, k) = outputs.dims2().map_err(|_| Error::Shape {
            what: "model outputs".into(),
            expected: "[N, classes]".into(),
            got: outputs.dims().to_vec(),
        })?;
        let check = |c: usize| {
            if c < k {
                Ok(c)
            } else {
                Err(Error::ClassOutOfRange { class: c, num_classes: k })
            }
        };
        match &self.spec {
            TargetSpec::TopClass => ranked(outputs, 1),
            TargetSpec::Top(t) => {
                if *t == 0 || *t > k {
                    return Err(Error::TopKOutOfRange { k: *t, num_classes: k });
                }
                ranked(outputs, *t)
            }
            TargetSpec::Classes(classes) => {
                if classes.is_empty() {
                    return Err(Error::InvalidOption {
                        option: "target".into(),
                        value: "(none)".into(),
                        expected: "at least one class".into(),
                    });
                }
                let classes = classes.iter().map(|&c| check(c)).collect::<Result<Vec<_>>>()?;
                Ok(vec![classes; n])
            }
            TargetSpec::PerImage(lists) => {
                if lists.len() != n {
                    return Err(Error::TargetBatchMismatch { got: lists.len(), batch: n });
                }
                let t = lists.first().map(Vec::len).unwrap_or(0);
                if t == 0 || lists.iter().any(|l| l.len() != t) {
                    return Err(Error::InvalidOption {
                        option: "per-image targets".into(),
                        value: format!("{:?}", lists.iter().map(Vec::len).collect::<Vec<_>>()),
                        expected: "the same non-zero number of classes for every image".into(),
                    });
                }
                lists.iter().map(|l| l.iter().map(|&c| check(c)).collect()).collect()
            }
        }
    }
}

/// The indices of the `k` largest values of each row, best first; ties go to the lower index.
fn ranked(outputs: &Tensor, k: usize) -> Result<Vec<Vec<usize>>> {
    let rows = outputs.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            idx.truncate(k);
            idx
        })
        .collect())
}

/// Picks `outputs[n, classes[n][t]]` as a `[N, T]` tensor, differentiably.
pub fn select(outputs: &Tensor, classes: &[Vec<usize>]) -> Result<Tensor> {
    let n = classes.len();
    let t = classes.first().map(Vec::len).unwrap_or(0);
    let flat: Vec<u32> = classes.iter().flatten().map(|&c| c as u32).collect();
    let index = Tensor::from_vec(flat, (n, t), outputs.device())?;
    Ok(outputs.gather(&index, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn outputs() -> Tensor {
        Tensor::new(&[[0.1f32, 3.0, 2.0, -1.0], [5.0, 0.0, 5.0, 1.0]], &Device::Cpu).unwrap()
    }

    #[test]
    fn top_k_ranks_best_first_with_ties_to_lower_index() {
        let got = Target::top(3).resolve(&outputs()).unwrap();
        assert_eq!(got, vec![vec![1, 2, 0], vec![0, 2, 3]]);
        assert_eq!(Target::top_class().resolve(&outputs()).unwrap(), vec![vec![1], vec![0]]);
    }

    #[test]
    fn bad_targets_name_the_value_and_the_range() {
        let err = Target::classes([4]).resolve(&outputs()).unwrap_err().to_string();
        assert!(err.contains("class index 4") && err.contains("4 classes"), "{err}");
        let err = Target::top(5).resolve(&outputs()).unwrap_err().to_string();
        assert!(err.contains("top-k of 5") && err.contains("1..=4"), "{err}");
        let err = Target::per_image([1]).resolve(&outputs()).unwrap_err().to_string();
        assert!(err.contains("1 target lists") && err.contains("2 images"), "{err}");
    }

    #[test]
    fn select_gathers_per_image_classes() {
        let classes = Target::per_image_lists(vec![vec![2, 1], vec![3, 0]]).resolve(&outputs()).unwrap();
        let picked = select(&outputs(), &classes).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(picked, vec![vec![2.0, 3.0], vec![1.0, 5.0]]);
    }
}
