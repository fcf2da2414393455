//! Maps and masks as the metrics take them, and the steps that bring any method's output there.

use candle_core::{DType, Device, Tensor};
use gaze_core::{numeric::ensure_finite, Attribution, Error, Resolution, Result};

/// One score per map: `values[n * targets + t]` is the score of image `n`'s `t`-th map.
#[derive(Clone, Debug, PartialEq)]
pub struct MapScores {
    pub images: usize,
    pub targets: usize,
    pub values: Vec<f32>,
}

impl MapScores {
    /// The score of image `n`'s `t`-th map.
    pub fn get(&self, n: usize, t: usize) -> Option<f32> {
        if n < self.images && t < self.targets {
            self.values.get(n * self.targets + t).copied()
        } else {
            None
        }
    }

    /// The mean over every map (NaN for no maps).
    pub fn mean(&self) -> f32 {
        let sum: f64 = self.values.iter().map(|&v| v as f64).sum();
        (sum / self.values.len() as f64) as f32
    }

    /// The scores as an `[N, T]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.values.clone(), (self.images, self.targets), device)?)
    }
}

/// Maps `[N, T, H, W]` on the host.
#[derive(Clone, Debug)]
pub(crate) struct HostMaps {
    pub n: usize,
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl HostMaps {
    /// Reads maps of shape `[N, H, W]` (one target per image) or `[N, T, H, W]`, checking that
    /// every value is finite.
    pub fn read(maps: &Tensor, what: &str) -> Result<Self> {
        let (n, t, h, w) = match *maps.dims() {
            [n, h, w] => (n, 1, h, w),
            [n, t, h, w] => (n, t, h, w),
            _ => {
                return Err(Error::Shape {
                    what: what.into(),
                    expected: "[N, H, W] or [N, T, H, W]".into(),
                    got: maps.dims().to_vec(),
                })
            }
        };
        if n == 0 || t == 0 || h == 0 || w == 0 {
            return Err(Error::Shape {
                what: what.into(),
                expected: "no empty dimension".into(),
                got: maps.dims().to_vec(),
            });
        }
        ensure_finite(maps, what)?;
        let data = maps.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(HostMaps { n, t, h, w, data })
    }

    /// The map of image `n` for target `t`.
    pub fn map(&self, n: usize, t: usize) -> &[f32] {
        let len = self.h * self.w;
        let start = (n * self.t + t) * len;
        &self.data[start..start + len]
    }
}

/// Ground-truth masks for maps: `[N, H, W]` (shared by every target of an image) or `[N, T, H, W]`;
/// a pixel belongs to the object where the mask is above 0.5.
#[derive(Clone, Debug)]
pub(crate) struct HostMasks {
    per_target: bool,
    t: usize,
    len: usize,
    data: Vec<bool>,
}

impl HostMasks {
    pub fn read(masks: &Tensor, maps: &HostMaps) -> Result<Self> {
        let per_target = match *masks.dims() {
            [n, h, w] if (n, h, w) == (maps.n, maps.h, maps.w) => false,
            [n, t, h, w] if (n, t, h, w) == (maps.n, maps.t, maps.h, maps.w) => true,
            _ => {
                return Err(Error::Shape {
                    what: "masks".into(),
                    expected: format!(
                        "[{n}, {h}, {w}] or [{n}, {t}, {h}, {w}] to match the maps",
                        n = maps.n,
                        t = maps.t,
                        h = maps.h,
                        w = maps.w
                    ),
                    got: masks.dims().to_vec(),
                })
            }
        };
        ensure_finite(masks, "masks")?;
        let data = masks.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.into_iter().map(|v| v > 0.5).collect();
        let out = HostMasks { per_target, t: maps.t, len: maps.h * maps.w, data };
        for n in 0..maps.n {
            for t in 0..maps.t {
                if !out.mask(n, t).iter().any(|&m| m) {
                    return Err(Error::InvalidOption {
                        option: "masks".into(),
                        value: format!("an empty mask for image {n}, target {t}"),
                        expected: "at least one object pixel in every mask".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The mask of image `n` for target `t`.
    pub fn mask(&self, n: usize, t: usize) -> &[bool] {
        let index = if self.per_target { n * self.t + t } else { n };
        &self.data[index * self.len..(index + 1) * self.len]
    }
}

/// How an input-space map `[C, H, W]` becomes one value per pixel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelReduce {
    /// The sum over channels: for attributions that add up to the score (integrated gradients,
    /// gradient×input), the attribution of the pixel.
    #[default]
    Sum,
    /// The sum of absolute values over channels.
    AbsSum,
    /// The largest absolute value over channels (Simonyan et al.'s saliency map).
    MaxAbs,
}

impl ChannelReduce {
    /// Parses `sum`, `abs-sum` or `max-abs`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "sum" => Ok(ChannelReduce::Sum),
            "abs-sum" => Ok(ChannelReduce::AbsSum),
            "max-abs" => Ok(ChannelReduce::MaxAbs),
            other => Err(Error::InvalidOption {
                option: "channel reduction".into(),
                value: other.into(),
                expected: "sum, abs-sum or max-abs".into(),
            }),
        }
    }
}

/// Brings any method's [`Attribution`] to one map per image and target at the image's resolution,
/// `[N, T, H, W]`, ready for the metrics.
///
/// - Input-space maps `[N, T, C, H, W]` are reduced over channels by `reduce`.
/// - Layer maps `[N, T, h, w]` (the CAM family) are upsampled bilinearly to `size`.
/// - Several layers' maps `[N, T, L, h, w]` are averaged over the layers, then upsampled.
pub fn pixel_maps(attribution: &Attribution, reduce: ChannelReduce, size: (usize, usize)) -> Result<Tensor> {
    let v = attribution.values.to_dtype(DType::F32)?;
    let maps = match (attribution.meta.resolution, v.rank()) {
        (_, 4) => v,
        (Resolution::Input, 5) => match reduce {
            ChannelReduce::Sum => v.sum(2)?,
            ChannelReduce::AbsSum => v.abs()?.sum(2)?,
            ChannelReduce::MaxAbs => v.abs()?.max(2)?,
        },
        (Resolution::Layer, 5) => v.mean(2)?,
        _ => {
            return Err(Error::Shape {
                what: format!("{} attribution", attribution.meta.method),
                expected: "[N, T, h, w], [N, T, L, h, w] (layers) or [N, T, C, H, W] (input space)".into(),
                got: v.dims().to_vec(),
            })
        }
    };
    resize_bilinear(&maps, size)
}

/// Resizes maps `[..., h, w]` to `[..., H, W]` bilinearly with half-pixel centres (PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`, OpenCV's `INTER_LINEAR` when enlarging);
/// a map already at the size is returned as it is.
pub fn resize_bilinear(maps: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let dims = maps.dims().to_vec();
    if dims.len() < 2 {
        return Err(Error::Shape { what: "maps".into(), expected: "[..., h, w]".into(), got: dims });
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let (oh, ow) = size;
    if (h, w) == (oh, ow) {
        return Ok(maps.clone());
    }
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(Error::Shape {
            what: format!("maps resized to {oh}×{ow}"),
            expected: "no empty side".into(),
            got: dims,
        });
    }
    let axis = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        (0..out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(oh, h), axis(ow, w));
    let data = maps.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(data.len() / (h * w) * oh * ow);
    for map in data.chunks(h * w) {
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
                let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    let mut shape = dims[..dims.len() - 2].to_vec();
    shape.extend([oh, ow]);
    Ok(Tensor::from_vec(out, shape, maps.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaze_core::AttributionMeta;

    #[test]
    fn bilinear_matches_pytorch_half_pixel_resizing() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
        // mode="bilinear", align_corners=False)
        let m = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let r = resize_bilinear(&m, (4, 4)).unwrap().to_vec2::<f32>().unwrap();
        let expected = [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]];
        for (row, want) in r.iter().zip(expected) {
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{r:?}");
            }
        }
    }

    #[test]
    fn input_space_maps_are_reduced_over_channels() {
        let v = Tensor::new(&[1f32, -3.0, 2.0, 0.5], &Device::Cpu).unwrap().reshape((1, 1, 2, 1, 2)).unwrap();
        let att = Attribution {
            values: v,
            targets: vec![vec![0]],
            scores: None,
            meta: AttributionMeta::new("saliency", Resolution::Input),
        };
        let get = |r| pixel_maps(&att, r, (1, 2)).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(get(ChannelReduce::Sum), vec![3.0, -2.5]);
        assert_eq!(get(ChannelReduce::AbsSum), vec![3.0, 3.5]);
        assert_eq!(get(ChannelReduce::MaxAbs), vec![2.0, 3.0]);
        assert!(ChannelReduce::parse("mean").unwrap_err().to_string().contains("sum, abs-sum or max-abs"));
    }

    #[test]
    fn masks_must_match_the_maps_and_be_non_empty() {
        let maps = HostMaps::read(&Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap(), "maps").unwrap();
        let err = HostMasks::read(&Tensor::ones((2, 4, 5), DType::F32, &Device::Cpu).unwrap(), &maps).unwrap_err();
        assert!(err.to_string().contains("[2, 4, 4] or [2, 3, 4, 4]"), "{err}");
        let mut m = vec![1f32; 2 * 16];
        m[16..].fill(0.0);
        let err = HostMasks::read(&Tensor::from_vec(m, (2, 4, 4), &Device::Cpu).unwrap(), &maps).unwrap_err();
        assert!(err.to_string().contains("image 1"), "{err}");
    }
}
