use burn::tensor::{FloatDType, Tensor, module::conv2d, ops::ConvOptions};

use super::lora::ConvLora;
use crate::cpu::{self, band::Conv3x3, linear::Branch, per_call::PerCall, winograd::Winograd3x3};
use crate::weights::{ParamStore, WeightsError};

/// A 2-D convolution with torch's weight layout `[out, in, k, k]` and "same" padding.
pub struct Conv2d {
    pub weight: Tensor<4>,
    pub bias: Option<Tensor<1>>,
    /// A kept (unmerged) LoRA branch, when the weights carry `{path}.lora_A/B.weight`.
    pub lora: Option<ConvLora>,
    padding: usize,
    stride: usize,
    /// Whether and how this layer takes the CPU convolutions ([`Self::keep_on_cpu`],
    /// [`Self::transform_per_call`]).
    on_cpu: OnCpu,
    /// [`Self::winograd`], made (when the model is loaded) by [`Self::winograd_kept`].
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
        Ok(Self { weight, bias, lora, padding, stride, on_cpu: OnCpu::Burn, kept: std::sync::OnceLock::new() })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = self.with_cpu_weights(&x, |w| cpu_conv3x3(w, x.clone(), None, cpu::band::Rows::Whole)) {
            return y;
        }
        if let Some(y) = self.direct_on_cpu(&x, None) {
            return y;
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

    /// Whether this is a 3x3, stride-1, padding-1 f32 layer on burn's CPU backend: one the
    /// CPU convolutions ([`crate::cpu`]) can run.
    fn is_cpu_3x3(&self) -> bool {
        let [_, _, kh, kw] = self.weight.dims();
        (kh, kw, self.stride, self.padding) == (3, 3, 1, 1) && self.dtype() == FloatDType::F32 && cpu::enabled(&self.weight.device())
    }

    /// This layer's weights transformed for the CPU convolutions ([`crate::cpu`]) when it is
    /// a 3x3, stride-1, padding-1 f32 layer without a LoRA branch on burn's CPU backend.
    pub fn winograd(&self) -> Option<Winograd3x3> {
        let [c_out, c_in, _, _] = self.weight.dims();
        if !self.is_cpu_3x3() || self.lora.is_some() {
            return None;
        }
        let bias = self.bias.clone().map(cpu::tensor::values);
        Some(cpu::tensor::with_slice(&self.weight, |weight| Winograd3x3::new(weight, bias.as_deref(), c_in, c_out)))
    }

    /// Makes and keeps this layer's CPU weights ([`Self::winograd_kept`]) now, when the model
    /// is loaded, if it takes the CPU path: the SD VAE's convolutions. `U` is 4x the weights
    /// in f32 (SD 2.1's VAE: about 1.3 GB more), so the UNet's convolutions are not kept
    /// ([`Self::transform_per_call`]). Made on first use instead, 1.3 GB of fresh pages were
    /// touched inside the first encode and decode (each first touch a page fault, about 9 µs
    /// in the VMs measured; BENCHMARKS.md).
    pub fn keep_on_cpu(&mut self) {
        self.on_cpu = OnCpu::Kept;
        let _ = self.winograd_kept();
    }

    /// Lets [`Self::with_cpu_weights`] transform this layer's weights on each call (with its
    /// LoRA branch merged when switched on) for maps of at least [`PER_CALL_MIN_PIXELS`], and
    /// [`Self::direct_on_cpu`] run it otherwise: the SD UNet's convolutions, whose `U` would be
    /// too large to keep.
    pub fn transform_per_call(&mut self) {
        self.on_cpu = OnCpu::PerCall;
    }

    /// `f` with this layer's CPU weights for input `x`, when the layer takes the CPU path for
    /// it: kept ([`Self::keep_on_cpu`]) or made for this call ([`Self::transform_per_call`]).
    pub fn with_cpu_weights<R>(&self, x: &Tensor<4>, f: impl FnOnce(Conv3x3) -> R) -> Option<R> {
        match self.on_cpu {
            OnCpu::Burn => None,
            OnCpu::Kept => self.winograd_kept().map(|w| f(Conv3x3::Kept(w))),
            OnCpu::PerCall => {
                let [_, _, h, w] = x.dims();
                if h * w < PER_CALL_MIN_PIXELS || !self.is_cpu_3x3() {
                    return None;
                }
                let [c_out, c_in, _, _] = self.weight.dims();
                let bias = self.bias.clone().map(cpu::tensor::values);
                let branch = self.branch_values();
                let branch = branch.as_ref().map(BranchValues::branch);
                Some(cpu::tensor::with_slice(&self.weight, |weight| f(Conv3x3::PerCall(&PerCall::new(weight, branch, bias.as_deref(), c_in, c_out)))))
            }
        }
    }

    /// `conv(pre(x))` by [`cpu::im2col`] (any kernel and stride, the LoRA branch as two thin
    /// products) for a per-call layer ([`Self::transform_per_call`]: the SD UNet's) on burn's
    /// CPU backend in f32, where [`Self::with_cpu_weights`] does not take it: maps under
    /// [`PER_CALL_MIN_PIXELS`], 1x1 and stride-2 layers. `None` for every other layer.
    pub fn direct_on_cpu(&self, x: &Tensor<4>, pre: Option<cpu::band::Pre>) -> Option<Tensor<4>> {
        if self.on_cpu != OnCpu::PerCall || !cpu::takes(&self.weight) || !cpu::takes(x) {
            return None;
        }
        let [n, c, h, w] = x.dims();
        let [c_out, c_in, k, _] = self.weight.dims();
        assert_eq!(c, c_in, "input channels");
        let g = cpu::im2col::Geometry { c_in, c_out, k, stride: self.stride, pad: self.padding };
        let bias = self.bias.clone().map(cpu::tensor::values);
        let branch = self.branch_values();
        let branch = branch.as_ref().map(BranchValues::branch);
        let (ho, wo) = (g.out(h), g.out(w));
        let out = cpu::tensor::with_slice(x, |xs| {
            cpu::tensor::with_slice(&self.weight, |ws| {
                let mut out = Vec::with_capacity(n * c_out * ho * wo);
                for img in xs.chunks_exact(c * h * w) {
                    let act = pre.map(|p| p.for_image(img).apply_nchw(img, h * w));
                    out.extend(cpu::im2col::conv(act.as_deref().unwrap_or(img), h, w, g, ws, bias.as_deref(), branch));
                }
                out
            })
        });
        Some(cpu::tensor::from_values(out, [n, c_out, ho, wo], x))
    }

    /// The LoRA branch's factors as f32 values when it is kept and switched on (the CPU paths
    /// read them as a [`Branch`]).
    fn branch_values(&self) -> Option<BranchValues> {
        let l = self.lora.as_ref().filter(|l| l.switch.is_on())?;
        Some(BranchValues { a: cpu::tensor::values(l.a.clone()), b: cpu::tensor::values(l.b.clone()), rank: l.a.dims()[0], scale: l.scale })
    }

    /// [`Self::winograd`] made once (by [`Self::keep_on_cpu`]) and kept with the layer, for a layer marked
    /// by [`Self::keep_on_cpu`]; `None` for the others. [`Self::forward`] and the VAE's band
    /// convolutions ([`crate::tiling::vae`]) use it.
    pub fn winograd_kept(&self) -> Option<&Winograd3x3> {
        if self.on_cpu != OnCpu::Kept {
            return None;
        }
        self.kept.get_or_init(|| self.winograd()).as_ref()
    }

    /// The same layer with "same" padding 1 (a 3x3, stride-1 layer loaded unpadded): the CPU
    /// path's Winograd convolution then runs it, and the caller crops the 1 px border
    /// ([`crate::model::layer`]).
    pub fn padded_for_cpu(mut self) -> Self {
        self.padding = 1;
        self
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The dtype of the weights (the model's compute dtype).
    pub fn dtype(&self) -> FloatDType {
        FloatDType::from(self.weight.dtype())
    }
}

/// A switched-on LoRA branch's factors copied out of burn's tensors (torch's layouts).
struct BranchValues {
    a: Vec<f32>,
    b: Vec<f32>,
    rank: usize,
    scale: f32,
}

impl BranchValues {
    fn branch(&self) -> Branch<'_> {
        Branch { a: &self.a, b: &self.b, rank: self.rank, scale: self.scale }
    }
}

/// How a layer takes the CPU convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnCpu {
    /// burn's conv2d.
    Burn,
    /// `U` made at load and kept ([`Conv2d::keep_on_cpu`]).
    Kept,
    /// `U` made on each call ([`Conv2d::transform_per_call`]).
    PerCall,
}

/// The smallest map (pixels) for which a per-call layer takes the CPU path: the weight
/// transform costs 9 / tiles of the products (14% at 32x32, 56% at 16x16), and a 16x16 map
/// of SD's 1280 channels would transform 236 MB of weights for 16 tiles.
pub const PER_CALL_MIN_PIXELS: usize = 32 * 32;

/// Frees the per-call layers' transformed input (up to 35 MB, [`cpu::per_call::release_buffers`])
/// at the end of a model pass, so that what runs next (the VAE decoder) can reuse that memory
/// instead of touching fresh pages; the next pass makes it again.
pub fn release_per_call_buffer() {
    cpu::per_call::release_buffers();
}

/// `w`'s convolution of each image in `x` (`[n, c_in, h, w]`, rows as `rows` says), after
/// `pre` if given, on the CPU ([`cpu::band`]); same dtype as `x`. The values are read once,
/// for `pre`'s statistics ([`cpu::band::Pre::Of`]) and the copy in.
pub fn cpu_conv3x3(w: Conv3x3, x: Tensor<4>, pre: Option<cpu::band::Pre>, rows: cpu::band::Rows) -> Tensor<4> {
    let [n, c, h, width] = x.dims();
    let h_out = match rows {
        cpu::band::Rows::Whole => h,
        cpu::band::Rows::Band { .. } => h - 2,
    };
    let mut out = Vec::with_capacity(n * w.c_out() * h_out * width);
    cpu::tensor::with_slice(&x, |values| {
        for img in values.chunks(c * h * width) {
            let pre = pre.map(|p| p.for_image(img));
            cpu::band::conv3x3(w, img, h, width, pre.as_deref(), rows, &mut out);
        }
    });
    cpu::tensor::from_values(out, [n, w.c_out(), h_out, width], &x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::ParamStore;
    use std::sync::atomic::Ordering;

    /// A LoRA-carrying 3x3 layer on the per-call CPU path (branch merged into `U`) against
    /// burn's conv2d plus the unmerged branch, switched on and off, on a map just at the
    /// threshold and on one below it (burn's path).
    #[test]
    fn per_call_layer_with_its_lora_branch_matches_burn() {
        let device = crate::device::cpu();
        let (c_in, c_out, rank) = (24, 20, 4);
        let mut store = ParamStore::new(&device);
        store.insert("l.weight", &[c_out, c_in, 3, 3], cpu::noise(c_out * c_in * 9, 1).iter().map(|v| v * 0.2).collect());
        store.insert("l.bias", &[c_out], cpu::noise(c_out, 2));
        store.insert("l.lora_A.weight", &[rank, c_in, 3, 3], cpu::noise(rank * c_in * 9, 3));
        store.insert("l.lora_B.weight", &[c_out, rank, 1, 1], cpu::noise(c_out * rank, 4));
        let flag = store.keep_lora_branches(0.5);
        let mut conv = Conv2d::load(&mut store, "l", c_in, c_out, 3).unwrap();
        let reference = |conv: &Conv2d, x: Tensor<4>| {
            let y = conv2d(x.clone(), conv.weight.clone(), conv.bias.clone(), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
            match conv.lora.as_ref().and_then(|l| l.delta(&x)) {
                Some(d) => y + d,
                None => y,
            }
        };
        for side in [32, 20] {
            let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(cpu::noise(c_in * side * side, 5), [1, c_in, side, side]), &device);
            for on in [true, false] {
                flag.store(on, Ordering::Relaxed);
                conv.transform_per_call();
                assert_eq!(conv.with_cpu_weights(&x, |_| ()).is_some(), side * side >= PER_CALL_MIN_PIXELS);
                let got = cpu::tensor::values(conv.forward(x.clone()));
                let want = cpu::tensor::values(reference(&conv, x.clone()));
                let top = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let err = got.iter().zip(&want).fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
                // Winograd's rounding (docs/cpu.md: below 1e-5 of the output's largest value).
                assert!(err <= 1e-5 * top, "{side}x{side}, branch {on}: error {err} of {top}");
            }
        }
    }
}
