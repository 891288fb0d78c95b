//! One weighted layer of a [`LayerSpec`] list with its fused activation: how waifu2x's and
//! Real-CUGAN's networks run each of theirs.

use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::Tensor;

use super::conv::Conv2d;
use super::deconv::ConvTranspose2d;
use super::layer_spec::{Activation, LayerKind, LayerSpec};
use crate::weights::{ParamStore, WeightsError};

pub struct Layer {
    op: Op,
    act: Activation,
}

enum Op {
    Conv(Conv2d),
    Deconv(ConvTranspose2d),
}

impl Layer {
    pub fn load(spec: &LayerSpec, store: &mut ParamStore) -> Result<Self, WeightsError> {
        let op = match spec.kind {
            LayerKind::Conv | LayerKind::Linear => {
                let mut conv = Conv2d::load_with(store, &spec.name, spec.c_in, spec.c_out, spec.k, spec.stride, spec.pad, true)?;
                // On burn's CPU backend: the project's im2col / Winograd kernels (crate::cpu);
                // the SE blocks' 1x1 layers on a 1x1 map stay with burn.
                if spec.kind == LayerKind::Conv {
                    conv.transform_per_call();
                }
                Op::Conv(conv)
            }
            LayerKind::Deconv => Op::Deconv(ConvTranspose2d::load(store, &spec.name, spec.c_in, spec.c_out, spec.k, spec.stride, spec.pad)?),
        };
        Ok(Self { op, act: spec.act })
    }

    /// Load every layer of `specs`, in order.
    pub fn load_all(specs: &[LayerSpec], store: &mut ParamStore) -> Result<Vec<Self>, WeightsError> {
        specs.iter().map(|s| Self::load(s, store)).collect()
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.op {
            Op::Conv(c) => c.forward(x),
            Op::Deconv(d) => d.forward(x),
        };
        match self.act {
            Activation::None => y,
            Activation::Relu => relu(y),
            Activation::Leaky(s) => leaky_relu(y, s as f64),
            Activation::Sigmoid => sigmoid(y),
        }
    }
}

/// `x` without `k` pixels on every side (ncnn's Crop in these graphs; torch's negative pad).
pub fn crop(x: Tensor<4>, k: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.slice([0..n, 0..c, k..h - k, k..w - k])
}
