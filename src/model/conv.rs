use burn::tensor::{FloatDType, Tensor, module::conv2d, ops::ConvOptions};

use super::lora::ConvLora;
use crate::weights::{ParamStore, WeightsError};

/// A 2-D convolution with torch's weight layout `[out, in, k, k]` and "same" padding.
pub struct Conv2d {
    pub weight: Tensor<4>,
    pub bias: Option<Tensor<1>>,
    /// A kept (unmerged) LoRA branch, when the weights carry `{path}.lora_A/B.weight`.
    pub lora: Option<ConvLora>,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// Load `{path}.weight` and `{path}.bias` with stride 1 and padding k/2.
    pub fn load(store: &mut ParamStore, path: &str, c_in: usize, c_out: usize, k: usize) -> Result<Self, WeightsError> {
        Self::load_with(store, path, c_in, c_out, k, 1, k / 2, true)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn load_with(
        store: &mut ParamStore,
        path: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self, WeightsError> {
        let weight = store.take(&format!("{path}.weight"), [c_out, c_in, k, k])?;
        let bias = if bias { Some(store.take(&format!("{path}.bias"), [c_out])?) } else { None };
        let lora = ConvLora::load(store, path, c_in, c_out, k, stride, padding)?;
        Ok(Self { weight, bias, lora, padding, stride })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let delta = self.lora.as_ref().and_then(|l| l.delta(&x));
        let y = conv2d(
            x,
            self.weight.clone(),
            self.bias.clone(),
            ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1),
        );
        match delta {
            Some(d) => y + d,
            None => y,
        }
    }

    /// [`Self::forward`] computed in f32 whatever the input's dtype, returned in the input's
    /// dtype. For the cheap convolutions whose outputs are the model's outputs (few output
    /// channels, e.g. a UNet's or VAE's `conv_out`): with f16 compute their long f16
    /// accumulations land directly on the result. f32 input: the same as `forward`.
    pub fn forward_f32(&self, x: Tensor<4>) -> Tensor<4> {
        let dtype = FloatDType::from(x.dtype());
        if dtype == FloatDType::F32 {
            return self.forward(x);
        }
        let delta = self.lora.as_ref().and_then(|l| l.delta(&x)).map(|d| d.cast(FloatDType::F32));
        let y = conv2d(
            x.cast(FloatDType::F32),
            self.weight.clone().cast(FloatDType::F32),
            self.bias.clone().map(|b| b.cast(FloatDType::F32)),
            ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1),
        );
        match delta {
            Some(d) => y + d,
            None => y,
        }
        .cast(dtype)
    }
}
