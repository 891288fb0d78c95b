//! A transposed convolution with torch's `ConvTranspose2d` weight layout `[in, out, k, k]`
//! (ncnn's Deconvolution stores `[out, in, k, k]`; the converter transposes it).

use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::Tensor;

use crate::weights::{ParamStore, WeightsError};

pub struct ConvTranspose2d {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
    stride: usize,
    padding: usize,
}

impl ConvTranspose2d {
    pub fn load(store: &mut ParamStore, path: &str, c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize) -> Result<Self, WeightsError> {
        let weight = store.take(&format!("{path}.weight"), [c_in, c_out, k, k])?;
        let bias = store.take(&format!("{path}.bias"), [c_out])?;
        Ok(Self { weight, bias, stride, padding })
    }

    /// `[n, c_in, h, w]` → `[n, c_out, (h - 1) stride + k - 2 padding, ...]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let opts = ConvTransposeOptions::new([self.stride; 2], [self.padding; 2], [0, 0], [1, 1], 1);
        conv_transpose2d(x, self.weight.clone(), Some(self.bias.clone()), opts)
    }
}
