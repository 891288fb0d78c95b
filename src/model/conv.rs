use burn::tensor::{FloatDType, Tensor, module::conv2d, ops::ConvOptions};

use super::lora::ConvLora;
use crate::cpu::{self, winograd::Winograd3x3};
use crate::weights::{ParamStore, WeightsError};

/// A 2-D convolution with torch's weight layout `[out, in, k, k]` and "same" padding.
pub struct Conv2d {
    pub weight: Tensor<4>,
    pub bias: Option<Tensor<1>>,
    /// A kept (unmerged) LoRA branch, when the weights carry `{path}.lora_A/B.weight`.
    pub lora: Option<ConvLora>,
    padding: usize,
    stride: usize,
    /// Whether [`Self::winograd_kept`] may make and keep CPU weights ([`Self::keep_on_cpu`]).
    keep: bool,
    /// [`Self::winograd`], made on first use by [`Self::winograd_kept`].
    kept: std::sync::OnceLock<Option<Winograd3x3>>,
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
        Ok(Self { weight, bias, lora, padding, stride, keep: false, kept: std::sync::OnceLock::new() })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(w) = self.winograd_kept() {
            return cpu_conv3x3(w, x, None, cpu::band::Rows::Whole);
        }
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

    /// [`Self::forward`] computed and returned in f32 whatever the input's dtype. For the cheap
    /// convolutions at a model's boundaries (few channels: a UNet's or VAE's `conv_in` /
    /// `conv_out`, `quant_conv`): with f16 compute their long f16 accumulations would land
    /// directly on the latent or the noise prediction, and an f32 result keeps the one-step
    /// arithmetic (`z - eps`) free of f16 rounding. f32 input: the same as `forward`.
    pub fn forward_f32(&self, x: Tensor<4>) -> Tensor<4> {
        if FloatDType::from(x.dtype()) == FloatDType::F32 && self.dtype() == FloatDType::F32 {
            return self.forward(x);
        }
        let delta = self.lora.as_ref().and_then(|l| l.delta(&x.clone().cast(self.dtype()))).map(|d| d.cast(FloatDType::F32));
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
    }

    /// The convolution with explicit `[pad_h, pad_w]` zero padding instead of the layer's own
    /// (tiled execution supplies neighbouring rows itself), in f32 when `f32` (see
    /// [`Self::forward_f32`]) or else in the weights' dtype. Layers with a kept LoRA branch
    /// (the UNet's semantic adapter) are never run this way.
    pub fn forward_padded(&self, x: Tensor<4>, padding: [usize; 2], f32: bool) -> Tensor<4> {
        assert!(self.lora.is_none(), "tiled convolutions have no run-time LoRA branch");
        let (x, w, b) = if f32 {
            (x.cast(FloatDType::F32), self.weight.clone().cast(FloatDType::F32), self.bias.clone().map(|b| b.cast(FloatDType::F32)))
        } else {
            (x.cast(self.dtype()), self.weight.clone(), self.bias.clone())
        };
        conv2d(x, w, b, ConvOptions::new([self.stride; 2], padding, [1, 1], 1))
    }

    /// This layer's weights transformed for the CPU convolutions ([`crate::cpu`]) when it is
    /// a 3x3, stride-1, padding-1 f32 layer without a LoRA branch on burn's CPU backend.
    pub fn winograd(&self) -> Option<Winograd3x3> {
        let [c_out, c_in, kh, kw] = self.weight.dims();
        if (kh, kw, self.stride, self.padding) != (3, 3, 1, 1)
            || self.lora.is_some()
            || self.dtype() != FloatDType::F32
            || !cpu::enabled(&self.weight.device())
        {
            return None;
        }
        let bias = self.bias.clone().map(cpu::tensor::values);
        Some(Winograd3x3::new(&cpu::tensor::values(self.weight.clone()), bias.as_deref(), c_in, c_out))
    }

    /// Lets [`Self::winograd_kept`] make and keep this layer's CPU weights: the SD VAE's
    /// convolutions. `U` is 4x the weights in f32 (SD 2.1's VAE: about 1.3 GB more), so the
    /// UNet's convolutions are not marked and stay on burn.
    pub fn keep_on_cpu(&mut self) {
        self.keep = true;
    }

    /// [`Self::winograd`] made once, on first use, and kept with the layer, for a layer marked
    /// by [`Self::keep_on_cpu`]; `None` for the others. [`Self::forward`] and the VAE's band
    /// convolutions ([`crate::tiling::vae`]) use it.
    pub fn winograd_kept(&self) -> Option<&Winograd3x3> {
        if !self.keep {
            return None;
        }
        self.kept.get_or_init(|| self.winograd()).as_ref()
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The dtype of the weights (the model's compute dtype).
    pub fn dtype(&self) -> FloatDType {
        FloatDType::from(self.weight.dtype())
    }
}

/// `w`'s convolution of each image in `x` (`[n, c_in, h, w]`, rows as `rows` says), after
/// `pre` if given, on the CPU ([`cpu::band`]); same dtype as `x`.
pub fn cpu_conv3x3(w: &Winograd3x3, x: Tensor<4>, pre: Option<&cpu::band::NormSilu>, rows: cpu::band::Rows) -> Tensor<4> {
    let [n, c, h, width] = x.dims();
    let h_out = match rows {
        cpu::band::Rows::Whole => h,
        cpu::band::Rows::Band { .. } => h - 2,
    };
    let values = cpu::tensor::values(x.clone());
    let mut out = Vec::with_capacity(n * w.c_out * h_out * width);
    for img in values.chunks(c * h * width) {
        cpu::band::conv3x3(w, img, h, width, pre, rows, &mut out);
    }
    cpu::tensor::from_values(out, [n, w.c_out, h_out, width], &x)
}
