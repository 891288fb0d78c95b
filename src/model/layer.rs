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
    /// Pixels to crop after the convolution: 1 for an unpadded 3x3 layer run padded by the
    /// CPU's Winograd kernels (the border they compute from zeros is dropped).
    crop_after: usize,
}

enum Op {
    Conv(Box<Conv2d>),
    Deconv(ConvTranspose2d),
}

impl Layer {
    pub fn load(spec: &LayerSpec, store: &mut ParamStore) -> Result<Self, WeightsError> {
        let mut crop_after = 0;
        let op = match spec.kind {
            LayerKind::Conv | LayerKind::Linear => {
                let mut conv = Conv2d::load_with(store, &spec.name, spec.c_in, spec.c_out, spec.k, spec.stride, spec.pad, true)?;
                let cpu = crate::cpu::enabled(&conv.weight.device());
                if cpu && (spec.k, spec.stride, spec.pad) == (3, 1, 0) {
                    // Winograd (crate::cpu::winograd), made once at load.
                    conv = conv.padded_for_cpu();
                    conv.keep_on_cpu();
                    crop_after = 1;
                } else if spec.kind == LayerKind::Conv {
                    // The 2x2 stride-2 layers: im2col (crate::cpu::im2col); the SE blocks'
                    // 1x1 layers on a 1x1 map stay with burn.
                    conv.transform_per_call();
                }
                Op::Conv(Box::new(conv))
            }
            LayerKind::Deconv => Op::Deconv(ConvTranspose2d::load(store, &spec.name, spec.c_in, spec.c_out, spec.k, spec.stride, spec.pad)?),
        };
        Ok(Self { op, act: spec.act, crop_after })
    }

    /// Load every layer of `specs`, in order.
    pub fn load_all(specs: &[LayerSpec], store: &mut ParamStore) -> Result<Vec<Self>, WeightsError> {
        specs.iter().map(|s| Self::load(s, store)).collect()
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.op {
            Op::Conv(c) if self.crop_after > 0 => crop(c.forward(x), self.crop_after),
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
