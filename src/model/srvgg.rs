//! SRVGGNetCompact (Real-ESRGAN's realesr-animevideov3 and realesr-general): a plain stack of
//! 3x3 convolutions with PReLU, a pixel shuffle, and the nearest-upsampled input added back.
//! Field paths follow basicsr's module (`body.0` the first conv, `body.1` its PReLU, ...,
//! `body.{2 num_conv + 2}` the last conv), so checkpoint keys are the paths below.
//!
//! The ncnn graphs of the x2 and x3 models are the x4 network followed by a bicubic downscale
//! (`Interp` 0.5 / 0.75); `scale` below `upscale` reproduces that (see docs/ncnn-runtime.md).

use burn::tensor::activation::prelu;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::conv::Conv2d;
use super::resize::{resize_bicubic, upsample_nearest};
use crate::cpu::map::Map;
use crate::cpu::tensor::{from_maps, to_maps, values};
use crate::cpu::winograd::{Act, Winograd3x3};
use crate::weights::{ParamStore, WeightsError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SrVggNetConfig {
    pub num_in_ch: usize,
    pub num_out_ch: usize,
    pub num_feat: usize,
    /// Convolutions between the first and the last.
    pub num_conv: usize,
    /// The network's own factor (pixel shuffle and the residual's upsampling).
    pub upscale: usize,
    /// The output factor: `upscale`, or less with a bicubic downscale after the network.
    pub scale: usize,
}

impl SrVggNetConfig {
    /// Every tensor of the model, in forward order: `(name, shape)`.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let f = self.num_feat;
        let mut out = Vec::new();
        for i in 0..=self.num_conv {
            let c_in = if i == 0 { self.num_in_ch } else { f };
            out.push((format!("body.{}.weight", 2 * i), vec![f, c_in, 3, 3]));
            out.push((format!("body.{}.bias", 2 * i), vec![f]));
            out.push((format!("body.{}.weight", 2 * i + 1), vec![f]));
        }
        let last = 2 * (self.num_conv + 1);
        let c_out = self.num_out_ch * self.upscale * self.upscale;
        out.push((format!("body.{last}.weight"), vec![c_out, f, 3, 3]));
        out.push((format!("body.{last}.bias"), vec![c_out]));
        out
    }
}

pub struct SrVggNetCompact {
    pub config: SrVggNetConfig,
    /// `body.{2i}` and the PReLU slopes `body.{2i+1}`, i = 0..=num_conv.
    pub convs: Vec<(Conv2d, Tensor<1>)>,
    pub conv_last: Conv2d,
    /// On the CPU: the convolutions transformed for [`crate::cpu`] and the PReLU slopes.
    cpu: Option<(Vec<(Winograd3x3, Vec<f32>)>, Winograd3x3)>,
}

impl SrVggNetCompact {
    pub fn load(config: &SrVggNetConfig, store: &mut ParamStore) -> Result<Self, WeightsError> {
        if config.scale == 0 || config.scale > config.upscale {
            return Err(WeightsError::Manifest(format!(
                "SRVGGNetCompact output scale {} must be 1 to the network's {}",
                config.scale, config.upscale
            )));
        }
        let f = config.num_feat;
        let convs: Vec<(Conv2d, Tensor<1>)> = (0..=config.num_conv)
            .map(|i| {
                let c_in = if i == 0 { config.num_in_ch } else { f };
                let conv = Conv2d::load(store, &format!("body.{}", 2 * i), c_in, f, 3)?;
                Ok((conv, store.take(&format!("body.{}.weight", 2 * i + 1), [f])?))
            })
            .collect::<Result<_, WeightsError>>()?;
        let c_out = config.num_out_ch * config.upscale * config.upscale;
        let conv_last = Conv2d::load(store, &format!("body.{}", 2 * (config.num_conv + 1)), f, c_out, 3)?;
        let cpu = (|| {
            let convs = convs
                .iter()
                .map(|(conv, slope)| Some((conv.winograd()?, values(slope.clone()))))
                .collect::<Option<Vec<_>>>()?;
            Some((convs, conv_last.winograd()?))
        })();
        Ok(Self { config: config.clone(), convs, conv_last, cpu })
    }

    /// `x`: `[n, 3, h, w]` in 0..1 → `[n, 3, scale h, scale w]` (not clamped).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = (0..self.convs.len()).fold(Features::Tensor(x.clone()), |h, i| self.step(i, h));
        self.tail(x, h)
    }

    /// Convolution `i` and its PReLU (`i` = 0..=num_conv, in order; the first reads the input).
    pub fn step(&self, i: usize, h: Features) -> Features {
        match &self.cpu {
            Some((convs, _)) => {
                let (conv, slope) = &convs[i];
                let out = h.into_maps().iter().map(|m| conv_map(conv, m, Act::Prelu(slope), 1)).collect();
                Features::Maps(out)
            }
            None => {
                let (conv, slope) = &self.convs[i];
                Features::Tensor(prelu(conv.forward(h.into_tensor()), slope.clone()))
            }
        }
    }

    /// The last convolution, the pixel shuffle, the input's nearest upsampling added back, and
    /// the output resize when `scale < upscale`. `x` is the network's input.
    pub fn tail(&self, x: Tensor<4>, h: Features) -> Tensor<4> {
        let r = self.config.upscale;
        let last = match &self.cpu {
            Some((_, conv)) => {
                let out: Vec<Map> = h.into_maps().iter().map(|m| conv_map(conv, m, Act::Identity, 0)).collect();
                from_maps(&out, 0, conv.c_out, &x)
            }
            None => self.conv_last.forward(h.into_tensor()),
        };
        let out = pixel_shuffle(last, r) + upsample_nearest(x, r);
        if self.config.scale == r {
            return out;
        }
        let [_, _, h, w] = out.dims();
        let s = self.config.scale;
        resize_bicubic(out, h / r * s, w / r * s)
    }
}

/// The activation between the steps: a tensor, or on the CPU path the maps (one per image) the
/// next convolution reads, so the network converts from and to NCHW once, not at every layer.
pub enum Features {
    Tensor(Tensor<4>),
    Maps(Vec<Map>),
}

impl Features {
    fn into_maps(self) -> Vec<Map> {
        match self {
            Features::Maps(m) => m,
            Features::Tensor(t) => to_maps(t, 1, 0).0,
        }
    }

    fn into_tensor(self) -> Tensor<4> {
        match self {
            Features::Tensor(t) => t,
            Features::Maps(_) => unreachable!("maps come from the CPU path only"),
        }
    }
}

/// One convolution on the CPU path, into a new map with a border of `border`.
fn conv_map(conv: &Winograd3x3, m: &Map, act: Act, border: usize) -> Map {
    let mut out = Map::zeros(m.h, m.w, conv.c_out, border, border);
    conv.forward(m, 0, &mut out, 0, act, None);
    out
}

/// torch's `pixel_shuffle`: `[n, c r², h, w]` → `[n, c, r h, r w]`, channel `c r² + i r + j`
/// landing at row offset `i`, column offset `j`.
fn pixel_shuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let c = c / (r * r);
    x.reshape([n, c, r, r, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([n, c, h * r, w * r])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn pixel_shuffle_matches_torch_layout() {
        let device = crate::device::cpu();
        // [1, 4, 1, 2]: channel k holds 10k + column.
        let v: Vec<f32> = (0..4).flat_map(|k| (0..2).map(move |x| (10 * k + x) as f32)).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v, [1, 4, 1, 2]), &device);
        let y: Vec<f32> = pixel_shuffle(x, 2).into_data().try_to_vec::<f32>().unwrap();
        // Row 0: channels 0,1 interleaved per input column; row 1: channels 2,3.
        assert_eq!(y, vec![0., 10., 1., 11., 20., 30., 21., 31.]);
    }
}
