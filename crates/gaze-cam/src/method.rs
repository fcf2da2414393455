//! The CAM variants and their command-line names.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A member of the CAM family.
///
/// Every variant runs on the same pipeline ([`Cam`](crate::Cam)); they differ only in how the
/// channel weights (or element-wise weights) of the layer's activations are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CamMethod {
    /// Grad-CAM: the spatial mean of the gradient
    /// (Selvaraju et al. 2017, <https://arxiv.org/abs/1610.02391>).
    GradCam,
    /// Grad-CAM++: positive gradients weighted by second- and third-order terms
    /// (Chattopadhyay et al. 2018, <https://arxiv.org/abs/1710.11063>).
    GradCamPlusPlus,
    /// XGrad-CAM: gradients weighted by the normalised activations
    /// (Fu et al. 2020, <https://arxiv.org/abs/2008.02312>).
    XGradCam,
    /// HiResCAM: the element-wise product of gradient and activation
    /// (Draelos and Carin 2020, <https://arxiv.org/abs/2011.08891>).
    HiResCam,
    /// LayerCAM: the element-wise product of the positive gradient and the activation
    /// (Jiang et al. 2021, IEEE TIP, <https://ieeexplore.ieee.org/document/9462463>).
    LayerCam,
    /// Eigen-CAM: the activations projected on their first principal component, without gradients
    /// (Muhammad and Yeasin 2020, <https://arxiv.org/abs/2008.00299>).
    EigenCam,
    /// Score-CAM: the softmax of the target scores of the input masked by each upsampled channel
    /// (Wang et al. 2020, <https://arxiv.org/abs/1910.01279>).
    ScoreCam,
    /// Ablation-CAM: the relative drop of the target score when a channel is ablated
    /// (Desai and Ramaswamy 2020, WACV,
    /// <https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf>).
    AblationCam,
}

impl CamMethod {
    /// Every variant, in the order of the command line's method list.
    pub const ALL: [CamMethod; 8] = [
        CamMethod::GradCam,
        CamMethod::GradCamPlusPlus,
        CamMethod::XGradCam,
        CamMethod::HiResCam,
        CamMethod::LayerCam,
        CamMethod::EigenCam,
        CamMethod::ScoreCam,
        CamMethod::AblationCam,
    ];

    /// The command-line name: `gradcam`, `gradcam++`, `xgradcam`, `hirescam`, `layercam`,
    /// `eigencam`, `scorecam` or `ablationcam`.
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::GradCamPlusPlus => "gradcam++",
            CamMethod::XGradCam => "xgradcam",
            CamMethod::HiResCam => "hirescam",
            CamMethod::LayerCam => "layercam",
            CamMethod::EigenCam => "eigencam",
            CamMethod::ScoreCam => "scorecam",
            CamMethod::AblationCam => "ablationcam",
        }
    }

    /// Parses a command-line name; the error lists the valid names.
    ///
    /// ```
    /// use gaze_cam::CamMethod;
    /// assert_eq!(CamMethod::parse("gradcam++").unwrap(), CamMethod::GradCamPlusPlus);
    /// assert!(CamMethod::parse("gradcam+").unwrap_err().to_string().contains("ablationcam"));
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        CamMethod::ALL.into_iter().find(|m| m.name() == text).ok_or_else(|| Error::InvalidOption {
            option: "--method".into(),
            value: text.into(),
            expected: format!("one of the CAM methods: {}", CamMethod::ALL.map(CamMethod::name).join(", ")),
        })
    }

    /// Whether the method needs the gradient of the target at the layer (and so a backward pass).
    pub fn uses_gradients(self) -> bool {
        matches!(
            self,
            CamMethod::GradCam
                | CamMethod::GradCamPlusPlus
                | CamMethod::XGradCam
                | CamMethod::HiResCam
                | CamMethod::LayerCam
        )
    }

    /// Whether the method runs the model on perturbed inputs or activations, in batches.
    pub fn is_perturbation(self) -> bool {
        matches!(self, CamMethod::ScoreCam | CamMethod::AblationCam)
    }

    /// The batch size pytorch-grad-cam uses for the perturbation methods: 16 masked inputs for
    /// Score-CAM, 32 ablated copies for Ablation-CAM; `None` for the others.
    pub fn default_batch(self) -> Option<usize> {
        match self {
            CamMethod::ScoreCam => Some(16),
            CamMethod::AblationCam => Some(32),
            _ => None,
        }
    }
}

impl fmt::Display for CamMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CamMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        CamMethod::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in CamMethod::ALL {
            assert_eq!(CamMethod::parse(m.name()).unwrap(), m);
            assert_eq!(m.to_string().parse::<CamMethod>().unwrap(), m);
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = CamMethod::parse("gradcam2").unwrap_err().to_string();
        assert!(err.contains("`gradcam2`"), "{err}");
        for m in CamMethod::ALL {
            assert!(err.contains(m.name()), "{err}");
        }
    }
}
