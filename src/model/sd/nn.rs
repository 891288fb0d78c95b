//! Building blocks shared by the VAE, the UNet and the text encoder: Linear with torch's
//! checkpoint layout, GroupNorm, LayerNorm and scaled dot-product attention, written with
//! plain burn tensor ops.

use burn::tensor::{
    FloatDType, Tensor,
    module::{layer_norm, linear},
};

use crate::cpu::band::NormSilu;
use crate::cpu::tensor::{values, with_slice};
use crate::model::lora::LinearLora;
use crate::weights::{ParamStore, WeightsError};

/// `y = x W^T + b`. The checkpoint holds torch's `[out, in]`; it is transposed once at load
/// because burn's `linear` takes `[in, out]`.
pub struct Linear {
    /// `[in, out]`.
    pub weight: Tensor<2>,
    pub bias: Option<Tensor<1>>,
    /// A kept (unmerged) LoRA branch, when the weights carry `{path}.lora_A/B.weight`.
    pub lora: Option<LinearLora>,
}

impl Linear {
    pub fn load(store: &mut ParamStore, path: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Self, WeightsError> {
        let weight = store.take(&format!("{path}.weight"), [d_out, d_in])?.transpose();
        let bias = if bias { Some(store.take(&format!("{path}.bias"), [d_out])?) } else { None };
        let lora = LinearLora::load(store, path, d_in, d_out)?;
        Ok(Self { weight, bias, lora })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(y) = self.forward_on_cpu(&x) {
            return y;
        }
        let delta = self.lora.as_ref().and_then(|l| l.delta(&x));
        let y = linear(x, self.weight.clone(), self.bias.clone());
        match delta {
            Some(d) => y + d,
            None => y,
        }
    }
}

impl Linear {
    /// [`Self::forward`] by the CPU's own matrix products ([`crate::cpu::linear`]) for f32
    /// tensors on burn's CPU backend, weights read in place; `None` elsewhere.
    fn forward_on_cpu<const D: usize>(&self, x: &Tensor<D>) -> Option<Tensor<D>> {
        if !crate::cpu::takes(x) || !crate::cpu::takes(&self.weight) {
            return None;
        }
        let dims = x.dims();
        let [d_in, d_out] = self.weight.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        // torch's layouts again ([out, in], [r, in], [out, r]): the weight a contiguous view of
        // the stored data, read in place; the rank-r factors are small and copied.
        let w = self.weight.clone().transpose();
        let bias = self.bias.as_ref().map(|b| values(b.clone()));
        let lora = self.lora.as_ref().filter(|l| l.switch.is_on());
        let ab = lora.map(|l| (values(l.a.clone().transpose()), values(l.b.clone().transpose()), l.a.dims()[1], l.scale));
        let branch = ab.as_ref().map(|(a, b, rank, scale)| crate::cpu::linear::Branch { a, b, rank: *rank, scale: *scale });
        let y = with_slice(x, |xs| with_slice(&w, |ws| crate::cpu::linear::linear(xs, rows, d_in, ws, d_out, bias.as_deref(), branch)));
        let mut out = dims;
        out[D - 1] = d_out;
        Some(crate::cpu::tensor::like_of(y, out, x))
    }
}

/// torch.nn.GroupNorm on `[N, C, H, W]` with an affine per-channel scale and shift.
/// Statistics: mean and biased variance over each group's channels and pixels.
pub struct GroupNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn load(store: &mut ParamStore, path: &str, groups: usize, channels: usize, eps: f64) -> Result<Self, WeightsError> {
        if channels % groups != 0 {
            return Err(WeightsError::Convert(format!("{path}: {channels} channels do not split into {groups} groups")));
        }
        let weight = store.take(&format!("{path}.weight"), [channels])?;
        let bias = store.take(&format!("{path}.bias"), [channels])?;
        Ok(Self { weight, bias, groups, eps })
    }

    /// Computes in f32 whatever the input's dtype (f16: mean and variance over a group's
    /// thousands of elements lose too much when accumulated in f16), and returns the input's
    /// dtype. With f32 input the casts are no-ops.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (mean, var) = self.stats(&x);
        self.normalize(x, mean, var)
    }

    /// Per-group mean and biased variance of `x`, `[N, groups, 1]`, f32.
    pub fn stats(&self, x: &Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let [n, c, h, w] = x.dims();
        let g = x.clone().cast(FloatDType::F32).reshape([n, self.groups, (c / self.groups) * h * w]);
        let (var, mean) = g.var_mean_bias(2);
        (mean, var)
    }

    /// This norm with one image's statistics (`[1, groups, 1]`), then SiLU, as the CPU
    /// convolutions' fused input step.
    pub fn silu_on_cpu(&self, mean: Tensor<3>, var: Tensor<3>) -> NormSilu {
        NormSilu::new(&values(mean), &values(var), self.eps, &values_of(&self.weight), &values_of(&self.bias))
    }

    /// [`Self::silu_on_cpu`] with the statistics of one image's NCHW `values` (f32), computed
    /// on the CPU from the values the fused convolution reads ([`crate::cpu::band::group_stats`]).
    pub fn silu_on_cpu_of(&self, values: &[f32]) -> NormSilu {
        let (mean, var) = crate::cpu::band::group_stats(values, self.groups);
        NormSilu::new(&mean, &var, self.eps, &values_of(&self.weight), &values_of(&self.bias))
    }

    /// `(x - mean) / sqrt(var + eps) * weight + bias` with given per-group statistics
    /// (`[N, groups, 1]`, f32): the whole-image statistics when `x` is one tile of it.
    pub fn normalize(&self, x: Tensor<4>, mean: Tensor<3>, var: Tensor<3>) -> Tensor<4> {
        let dtype = FloatDType::from(x.dtype());
        let [n, c, h, w] = x.dims();
        let g = x.cast(FloatDType::F32).reshape([n, self.groups, (c / self.groups) * h * w]);
        let g = (g - mean) / (var + self.eps).sqrt();
        let weight = self.weight.clone().cast(FloatDType::F32).reshape([1, c, 1, 1]);
        let bias = self.bias.clone().cast(FloatDType::F32).reshape([1, c, 1, 1]);
        (g.reshape([n, c, h, w]) * weight + bias).cast(dtype)
    }

    pub fn groups(&self) -> usize {
        self.groups
    }
}

fn values_of(t: &Tensor<1>) -> Vec<f32> {
    values(t.clone())
}

/// torch.nn.LayerNorm over the last dimension, affine.
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(store: &mut ParamStore, path: &str, dim: usize, eps: f64) -> Result<Self, WeightsError> {
        let weight = store.take(&format!("{path}.weight"), [dim])?;
        let bias = store.take(&format!("{path}.bias"), [dim])?;
        Ok(Self { weight, bias, eps })
    }

    /// In f32 whatever the input's dtype (as [`GroupNorm::forward`]); returns the input's dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = FloatDType::from(x.dtype());
        let weight = self.weight.clone().cast(FloatDType::F32);
        let bias = self.bias.clone().cast(FloatDType::F32);
        layer_norm(x.cast(FloatDType::F32), weight, Some(bias), self.eps).cast(dtype)
    }
}

/// Scaled dot-product attention, `softmax(q k^T / sqrt(d) + mask) v`, on
/// `q: [B, heads, Lq, d]`, `k, v: [B, heads, Lk, d]`, an optional additive `mask: [Lq, Lk]`.
///
/// The score matrix is computed in blocks bounded by [`crate::model::chunked_attention`]'s limit
/// (query chunks, then key chunks with an online softmax). f16 inputs: `q` is scaled before
/// the matmul (unscaled scores can overflow f16's range) and scores and softmax run in f32;
/// the probabilities go back to the input's dtype for the matmul with `v`.
pub fn scaled_dot_product_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<2>>) -> Tensor<4> {
    let d = q.dims()[3];
    crate::model::chunked_attention::attention(q, k, v, mask, 1.0 / (d as f64).sqrt())
}

/// `[B, L, heads * d]` → `[B, heads, L, d]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, l, c] = x.dims();
    x.reshape([b, l, heads, c / heads]).swap_dims(1, 2)
}

/// `[B, heads, L, d]` → `[B, L, heads * d]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, l, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * d])
}
