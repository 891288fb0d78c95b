//! waifu2x's upconv_7 (nunif's `UpConv7`): six unpadded 3x3 convolutions with LeakyReLU(0.1)
//! and a 4x4, stride-2 transposed convolution; the output is 2x the input less its 7 px of
//! context on every side. Module paths are `net.0` ... `net.12`, as in the PyTorch module.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::layer::Layer;
use super::layer_spec::{Activation, LayerSpec};
use super::processing::Processing;
use crate::weights::{ParamStore, WeightsError};

const CHANNELS: [usize; 8] = [3, 16, 32, 64, 128, 128, 256, 3];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpConv7Config {
    /// Always 2.
    pub scale: usize,
    pub processing: Processing,
}

impl UpConv7Config {
    /// Input pixels consumed per side beyond the output.
    pub const CONTEXT: usize = 7;

    /// Every weighted layer, in the order of the ncnn graph.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut out: Vec<LayerSpec> = (0..6)
            .map(|i| LayerSpec::conv(format!("net.{}", 2 * i), CHANNELS[i], CHANNELS[i + 1], 3, 1, Activation::Leaky(0.1)))
            .collect();
        out.push(LayerSpec::deconv("net.12", 256, 3, 4, 2, 3, Activation::None));
        out
    }
}

pub struct UpConv7 {
    pub config: UpConv7Config,
    layers: Vec<Layer>,
}

impl UpConv7 {
    pub const SCALE: usize = 2;

    pub fn load(config: &UpConv7Config, store: &mut ParamStore) -> Result<Self, WeightsError> {
        if config.scale != Self::SCALE {
            return Err(WeightsError::Manifest(format!("upconv_7 scale {} must be 2", config.scale)));
        }
        Ok(Self { config: config.clone(), layers: Layer::load_all(&config.layers(), store)? })
    }

    /// `x`: `[n, 3, h, w]` in 0..1 padded by 7 px → `[n, 3, 2 (h - 14), 2 (w - 14)]`, not clamped.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.layers.iter().fold(x, |x, l| l.forward(x))
    }
}
