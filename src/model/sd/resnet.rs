//! diffusers' ResnetBlock2D, Downsample2D and Upsample2D (shared by the VAE and the UNet).

use burn::tensor::{Int, Tensor, TensorData, activation::silu, ops::PadMode};

use super::nn::{GroupNorm, Linear};
use crate::cpu::band::{Pre, Rows};
use crate::model::conv::{Conv2d, cpu_conv3x3};
use crate::weights::{ParamStore, WeightsError};

/// norm1 → SiLU → conv1 (+ time embedding) → norm2 → SiLU → conv2, plus a 1x1
/// `conv_shortcut` when the channel count changes. Output scale factor 1 (SD's value).
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// UNet only: projects the time embedding to `out` channels.
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// `temb_channels = None` for the VAE (no time embedding).
    pub fn load(
        store: &mut ParamStore,
        path: &str,
        c_in: usize,
        c_out: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f64,
    ) -> Result<Self, WeightsError> {
        Ok(Self {
            norm1: GroupNorm::load(store, &format!("{path}.norm1"), groups, c_in, eps)?,
            conv1: Conv2d::load(store, &format!("{path}.conv1"), c_in, c_out, 3)?,
            time_emb_proj: temb_channels
                .map(|t| Linear::load(store, &format!("{path}.time_emb_proj"), t, c_out, true))
                .transpose()?,
            norm2: GroupNorm::load(store, &format!("{path}.norm2"), groups, c_out, eps)?,
            conv2: Conv2d::load(store, &format!("{path}.conv2"), c_out, c_out, 3)?,
            conv_shortcut: (c_in != c_out)
                .then(|| Conv2d::load_with(store, &format!("{path}.conv_shortcut"), c_in, c_out, 1, 1, 0, true))
                .transpose()?,
        })
    }

    /// Marks the convolutions (3x3 and the 1x1 shortcut) for the CPU path of the UNet
    /// ([`Conv2d::transform_per_call`]: Winograd with weights transformed per call on large
    /// maps, [`crate::cpu::im2col`] on the rest).
    pub fn transform_per_call(&mut self) {
        self.conv1.transform_per_call();
        self.conv2.transform_per_call();
        if let Some(c) = &mut self.conv_shortcut {
            c.transform_per_call();
        }
    }

    /// Marks the 3x3 convolutions for kept CPU weights ([`Conv2d::keep_on_cpu`]): the VAE's.
    pub fn keep_on_cpu(&mut self) {
        self.conv1.keep_on_cpu();
        self.conv2.keep_on_cpu();
    }

    /// `temb`: the UNet's time embedding `[N, temb_channels]` (already the shared
    /// `time_embedding` output; SiLU is applied here, as in diffusers).
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = norm_silu_conv(&self.norm1, &self.conv1, x.clone(), false);
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => {
                let t = proj.forward(silu(t.clone()));
                let [n, c] = t.dims();
                h + t.reshape([n, c, 1, 1])
            }
            _ => h,
        };
        let h = norm_silu_conv(&self.norm2, &self.conv2, h, false);
        let x = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        x + h
    }
}

/// `conv(silu(norm(x)))` (`forward_f32` when `f32`). With kept CPU weights and one image the
/// GroupNorm + SiLU is fused into the convolution's input copy ([`crate::cpu::band`]).
pub fn norm_silu_conv(norm: &GroupNorm, conv: &Conv2d, x: Tensor<4>, f32: bool) -> Tensor<4> {
    if x.dims()[0] == 1 {
        let of = |values: &[f32]| norm.silu_on_cpu_of(values);
        let fused = conv.with_cpu_weights(&x, |w| cpu_conv3x3(w, x.clone(), Some(Pre::Of(&of)), Rows::Whole));
        if let Some(y) = fused.or_else(|| conv.direct_on_cpu(&x, Some(Pre::Of(&of)))) {
            return y;
        }
    }
    if f32 { conv.forward_f32(silu(norm.forward(x))) } else { conv.forward(silu(norm.forward(x))) }
}

/// Stride-2 3x3 conv. `padding = 0` is SD's VAE variant: pad right and bottom by one
/// (zeros) first, so odd and even sizes both halve with ceil; the UNet uses `padding = 1`.
pub struct Downsample2D {
    pub conv: Conv2d,
    padding: usize,
}

impl Downsample2D {
    pub fn load(store: &mut ParamStore, path: &str, channels: usize, padding: usize) -> Result<Self, WeightsError> {
        let conv = Conv2d::load_with(store, &format!("{path}.conv"), channels, channels, 3, 2, padding, true)?;
        Ok(Self { conv, padding })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.padding == 0 { x.pad((0, 1, 0, 1), PadMode::Constant(0.0)) } else { x };
        self.conv.forward(x)
    }
}

/// Nearest-neighbour upsampling (x2, or to an explicit size as diffusers' `upsample_size`
/// does for odd latents) followed by a 3x3 conv.
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn load(store: &mut ParamStore, path: &str, channels: usize) -> Result<Self, WeightsError> {
        Ok(Self { conv: Conv2d::load(store, &format!("{path}.conv"), channels, channels, 3)? })
    }

    /// `size = None` doubles H and W.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let [oh, ow] = size.unwrap_or([2 * h, 2 * w]);
        self.conv.forward(nearest_resize(x, oh, ow))
    }
}

/// torch's `F.interpolate(mode="nearest")`: output pixel `d` reads input
/// `min(floor(d * (in / out)), in - 1)`, the ratio computed in f32 as torch does.
pub fn nearest_resize(x: Tensor<4>, oh: usize, ow: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let device = x.device();
    let index = |n_in: usize, n_out: usize| {
        let scale = n_in as f32 / n_out as f32;
        let idx: Vec<i64> = (0..n_out).map(|d| ((d as f32 * scale).floor() as i64).min(n_in as i64 - 1)).collect();
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n_out]), &device)
    };
    let x = if oh == h { x } else { x.select(2, index(h, oh)) };
    if ow == w { x } else { x.select(3, index(w, ow)) }
}
