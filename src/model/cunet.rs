//! The cascaded U-Nets of waifu2x's cunet and of Real-CUGAN (its `UpCunet2x/3x/4x`): UNet1
//! upscales (or, at x1, denoises), UNet2 refines, and UNet1's output, cropped, is added back.
//! All convolutions are unpadded, so the output is smaller than the input by the network's
//! context, which the runtime's padding supplies ([`Processing`]). Module paths follow
//! Real-CUGAN's PyTorch modules (`unet1.conv1.conv.0`, `unet2.conv3.seblock.conv1`, ...), so
//! checkpoint keys are the names below.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::layer::{crop, Layer};
use super::layer_spec::{Activation, LayerSpec};
use super::processing::Processing;
use crate::weights::{ParamStore, WeightsError};

const LEAKY: Activation = Activation::Leaky(0.1);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CunetConfig {
    /// 1 (waifu2x denoise only), 2, 3 or 4.
    pub scale: usize,
    /// Squeeze-and-excitation blocks (all but Real-CUGAN's "nose" models).
    pub se: bool,
    pub processing: Processing,
}

impl CunetConfig {
    /// Channels between UNet1 and UNet2: the image, or 64 features at x4.
    fn mid(&self) -> usize {
        if self.scale == 4 { 64 } else { 3 }
    }

    /// Every weighted layer, in the order of the ncnn graph.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        let mid = self.mid();
        // UNet1
        unet_conv(&mut out, "unet1.conv1", 3, 32, 64, false);
        out.push(LayerSpec::conv("unet1.conv1_down", 64, 64, 2, 2, LEAKY));
        unet_conv(&mut out, "unet1.conv2", 64, 128, 64, self.se);
        out.push(LayerSpec::deconv("unet1.conv2_up", 64, 64, 2, 2, 0, LEAKY));
        out.push(LayerSpec::conv("unet1.conv3", 64, 64, 3, 1, LEAKY));
        out.push(match self.scale {
            1 => LayerSpec::conv("unet1.conv_bottom", 64, mid, 3, 1, Activation::None),
            3 => LayerSpec::deconv("unet1.conv_bottom", 64, mid, 5, 3, 2, Activation::None),
            _ => LayerSpec::deconv("unet1.conv_bottom", 64, mid, 4, 2, 3, Activation::None),
        });
        // UNet2
        unet_conv(&mut out, "unet2.conv1", mid, 32, 64, false);
        out.push(LayerSpec::conv("unet2.conv1_down", 64, 64, 2, 2, LEAKY));
        unet_conv(&mut out, "unet2.conv2", 64, 64, 128, self.se);
        out.push(LayerSpec::conv("unet2.conv2_down", 128, 128, 2, 2, LEAKY));
        unet_conv(&mut out, "unet2.conv3", 128, 256, 128, self.se);
        out.push(LayerSpec::deconv("unet2.conv3_up", 128, 128, 2, 2, 0, LEAKY));
        unet_conv(&mut out, "unet2.conv4", 128, 64, 64, self.se);
        out.push(LayerSpec::deconv("unet2.conv4_up", 64, 64, 2, 2, 0, LEAKY));
        out.push(LayerSpec::conv("unet2.conv5", 64, 64, 3, 1, LEAKY));
        out.push(LayerSpec::conv("unet2.conv_bottom", 64, mid, 3, 1, Activation::None));
        if self.scale == 4 {
            out.push(LayerSpec::conv("conv_final", 64, 12, 3, 1, Activation::None));
        }
        out
    }

    /// Input pixels consumed per side beyond the output, at the input's scale: what
    /// [`Processing::prepadding`] must supply.
    pub fn context(&self) -> usize {
        match self.scale {
            1 => 28,
            3 => 14,
            4 => 19,
            _ => 18,
        }
    }
}

/// Real-CUGAN's `UNetConv`: two unpadded 3x3 convolutions with LeakyReLU(0.1), then an
/// `SEBlock` (reduction 8) when `se`.
fn unet_conv(out: &mut Vec<LayerSpec>, path: &str, c_in: usize, c_mid: usize, c_out: usize, se: bool) {
    out.push(LayerSpec::conv(format!("{path}.conv.0"), c_in, c_mid, 3, 1, LEAKY));
    out.push(LayerSpec::conv(format!("{path}.conv.2"), c_mid, c_out, 3, 1, LEAKY));
    if se {
        out.push(LayerSpec::linear(format!("{path}.seblock.conv1"), c_out, c_out / 8, Activation::Relu));
        out.push(LayerSpec::linear(format!("{path}.seblock.conv2"), c_out / 8, c_out, Activation::Sigmoid));
    }
}

pub struct Cunet {
    pub config: CunetConfig,
    /// The layers of [`CunetConfig::layers`], in order.
    layers: Vec<Layer>,
}

/// Reads the layers in order, as the forward pass uses them.
struct Cursor<'a> {
    layers: &'a [Layer],
    se: bool,
    /// The SE blocks' means given from outside (the whole image's, [`Cunet::se_input`]), for
    /// the first `means.len()` blocks; the others average their own map.
    means: &'a [Tensor<4>],
    /// SE blocks passed so far.
    block: usize,
    /// Stop before the SE block of this index; its input is kept in `stopped`.
    stop: Option<usize>,
    stopped: Option<Tensor<4>>,
}

impl Cursor<'_> {
    fn next(&mut self, x: Tensor<4>) -> Tensor<4> {
        let (first, rest) = self.layers.split_first().expect("the config's layer count");
        self.layers = rest;
        first.forward(x)
    }

    /// `UNetConv`: two convolutions, then (with `se`, when the model has SE blocks) the SE
    /// block's channel weights from the mean over the whole map. `None` where the pass stops.
    fn unet_conv(&mut self, x: Tensor<4>, se: bool) -> Option<Tensor<4>> {
        let x = self.next(x);
        let x = self.next(x);
        if !(se && self.se) {
            return Some(x);
        }
        let k = self.block;
        self.block += 1;
        if self.stop == Some(k) {
            self.stopped = Some(x);
            return None;
        }
        let mean = match self.means.get(k) {
            Some(m) => m.clone(),
            None => x.clone().mean_dims(&[2, 3]),
        };
        let w = self.next(mean);
        let w = self.next(w);
        Some(x * w)
    }
}

impl Cunet {
    pub fn load(config: &CunetConfig, store: &mut ParamStore) -> Result<Self, WeightsError> {
        if !(1..=4).contains(&config.scale) {
            return Err(WeightsError::Manifest(format!("cunet scale {} must be 1 to 4", config.scale)));
        }
        Ok(Self { config: config.clone(), layers: Layer::load_all(&config.layers(), store)? })
    }

    /// `x`: `[n, 3, h, w]` in 0..1, padded by [`CunetConfig::context`] on every side (h - 2
    /// context and w - 2 context multiples of 4 at x1 and x3, of 2 otherwise) → `[n, 3, scale
    /// (h - 2 context), ...]`, not clamped; at x4 without the input's nearest upsampling.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, &[])
    }

    /// [`Self::forward`] with the first `means.len()` SE blocks' means (`[1, c, 1, 1]`) given:
    /// a tile then computes what the whole image does ([`crate::pipeline::valid_net`]).
    pub fn forward_with(&self, x: Tensor<4>, means: &[Tensor<4>]) -> Tensor<4> {
        let mut c = Cursor { layers: &self.layers, se: self.config.se, means, block: 0, stop: None, stopped: None };
        self.pass(&mut c, x).expect("a pass without a stop runs to the end")
    }

    /// The input of SE block `k` (0..4), the earlier blocks using `means`.
    pub fn se_input(&self, x: Tensor<4>, means: &[Tensor<4>], k: usize) -> Tensor<4> {
        let mut c = Cursor { layers: &self.layers, se: self.config.se, means, block: 0, stop: Some(k), stopped: None };
        let _ = self.pass(&mut c, x);
        c.stopped.expect("the model has this SE block")
    }

    fn pass(&self, c: &mut Cursor, x: Tensor<4>) -> Option<Tensor<4>> {
        // UNet1
        let x1 = c.unet_conv(x, false)?;
        let x2 = c.next(x1.clone());
        let x2 = c.unet_conv(x2, true)?;
        let x2 = c.next(x2);
        let x3 = c.next(crop(x1, 4) + x2);
        let u1 = c.next(x3);
        // UNet2
        let x1 = c.unet_conv(u1.clone(), false)?;
        let x2 = c.next(x1.clone());
        let x2 = c.unet_conv(x2, true)?;
        let x3 = c.next(x2.clone());
        let x3 = c.unet_conv(x3, true)?;
        let x3 = c.next(x3);
        let x4 = c.unet_conv(crop(x2, 4) + x3, true)?;
        let x4 = c.next(x4);
        let x5 = c.next(crop(x1, 16) + x4);
        let u2 = c.next(x5);
        let out = u2 + crop(u1, 20);
        if self.config.scale != 4 {
            return Some(out);
        }
        Some(pixel_shuffle2(crop(c.next(out), 1)))
    }

    /// The SE blocks' map resolutions relative to the input, as `(numerator, denominator)`:
    /// UNet1's at 1/2, UNet2's at u/2, u/4, u/2 with u UNet1's factor.
    pub fn se_resolutions(&self) -> [(usize, usize); 4] {
        let u = if self.config.scale == 4 { 2 } else { self.config.scale };
        [(1, 2), (u, 2), (u, 4), (u, 2)]
    }
}

/// torch's `pixel_shuffle` by 2.
fn pixel_shuffle2(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c / 4, 2, 2, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([n, c / 4, 2 * h, 2 * w])
}
