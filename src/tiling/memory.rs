//! The memory planner of the diffusion pipeline: from the device's limits (largest storage
//! binding, largest buffer) and a memory budget it chooses the VAE band height, the UNet
//! latent tile, the attention block and whether whole-image activations stay on the device
//! or are parked in host memory between layers; it lists every tensor the pipeline will
//! create (by role, its largest instance) and estimates the device's peak.
//!
//! The estimate follows the code in `tiling::vae`, `tiling::latent` and the UNet: one band
//! (or tile) of each live activation plus its halo, GroupNorm's f32 copy, attention blocks,
//! the weights, and, without parking, every band of the three activations a resnet keeps
//! alive (input, hidden, output).

use crate::model::sd::{Method, OneStepConfig};

/// What the device allows and what the plan may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Largest storage-buffer binding (WebGPU `maxStorageBufferBindingSize`).
    pub max_binding: u64,
    /// Largest buffer (WebGPU `maxBufferSize`).
    pub max_buffer: u64,
    /// Device memory the plan may use in all.
    pub budget: u64,
}

impl DeviceLimits {
    /// WebGPU's defaults (128 MiB bindings, 256 MiB buffers) and a 4 GiB budget: what a
    /// phone or an 8 GB laptop GPU can give a tab.
    pub fn webgpu_default() -> Self {
        Self { max_binding: 128 << 20, max_buffer: 256 << 20, budget: 4 << 30 }
    }
}

/// Compute precision (storage is f16 either way; f32 compute widens on load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F16,
    F32,
}

impl Precision {
    fn bytes(self) -> u64 {
        match self {
            Precision::F16 => 2,
            Precision::F32 => 4,
        }
    }
}

/// One tensor the pipeline creates (the largest of its role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub what: String,
    pub shape: Vec<usize>,
    pub bytes: u64,
}

#[derive(Clone, Debug)]
pub struct SdPlan {
    /// VAE band height in image pixels (multiple of 8).
    pub vae_rows: usize,
    /// UNet latent tile side and overlap (latents).
    pub latent_tile: usize,
    pub latent_overlap: usize,
    /// Most attention scores per block (see `model::chunked_attention::set_max_scores`).
    pub max_scores: usize,
    /// Whole-image VAE activations wait in host memory between layers.
    pub park_on_host: bool,
    pub buffers: Vec<Buffer>,
    /// Estimated peak device memory, bytes.
    pub peak_bytes: u64,
    /// Estimated host memory for parked activations, bytes (0 without parking).
    pub host_bytes: u64,
}

impl SdPlan {
    /// The largest planned tensor.
    pub fn largest(&self) -> &Buffer {
        self.buffers.iter().max_by_key(|b| b.bytes).expect("a plan lists buffers")
    }
}

fn buf(what: impl Into<String>, shape: &[usize], elem: u64) -> Buffer {
    Buffer { what: what.into(), shape: shape.to_vec(), bytes: shape.iter().product::<usize>() as u64 * elem }
}

/// Plan the pipeline for a network input of `h x w` pixels (multiples of 8).
pub fn plan_sd(cfg: &OneStepConfig, h: usize, w: usize, precision: Precision, limits: DeviceLimits) -> Result<SdPlan, String> {
    let p = precision.bytes();
    let limit = limits.max_binding.min(limits.max_buffer);
    let max_scores = (limit / 4) as usize;
    let (lh, lw) = (h / 8, w / 8);

    // Weights: the encoder computes in f32, the rest in the compute precision.
    let mut buffers = Vec::new();
    let mut weights = 0u64;
    for (name, shape) in cfg.vae.tensor_shapes() {
        let b = buf(format!("weight vae.{name}"), &shape, if name.starts_with("encoder.") { 4 } else { p });
        weights += b.bytes;
        buffers.push(b);
    }
    for (name, shape) in cfg.unet.tensor_shapes() {
        let b = buf(format!("weight unet.{name}"), &shape, p);
        weights += b.bytes;
        buffers.push(b);
    }
    if cfg.method == Method::PisaSr {
        weights += 4_055_712 * p; // the semantic LoRA branches (rank 4)
    }

    // The VAE: the widest full-resolution tensor is 256 channels (the decoder's last
    // upsampler), kept in f32 by GroupNorm: the band height follows from the binding limit.
    let vc = &cfg.vae.block_out_channels;
    let widest = vc.iter().rev().nth(1).copied().unwrap_or(vc[0]).max(vc[0]);
    let per_row = (widest * w) as u64 * 4;
    let rows = ((limit / per_row.max(1)) as usize / 8 * 8).max(8).min(h.div_ceil(8) * 8);
    if (widest * (rows + 2) * w) as u64 * 4 > limit + (2 * widest * w * 4) as u64 {
        return Err(format!("a {w} px wide image needs bindings over {} MiB", limit >> 20));
    }
    let n_levels = vc.len();
    let mut vae_whole = 0u64; // three whole activations of the largest VAE level, compute dtype
    for (s, &c) in vc.iter().enumerate() {
        let (rs, ws) = (rows >> s, w >> s);
        // Encoder level s (f32), decoder level n-1-s mirrored at the same resolution.
        buffers.push(buf(format!("vae encoder band, level {s}"), &[1, c, rs + 2, ws], 4));
        buffers.push(buf(format!("vae encoder GroupNorm f32 copy, level {s}"), &[1, c, rs, ws], 4));
        // The decoder at this resolution: its own block's channels and the upsampled input
        // from the block below (e.g. 256 channels at full resolution for SD).
        let dc = c.max(vc.get(s + 1).copied().unwrap_or(0));
        buffers.push(buf(format!("vae decoder band, level {s}"), &[1, dc, rs + 2, ws], p));
        buffers.push(buf(format!("vae decoder GroupNorm f32 copy, level {s}"), &[1, dc, rs, ws], 4));
        if s + 1 < n_levels {
            buffers.push(buf(format!("vae decoder nearest-x2 input, level {s}"), &[1, dc, rs + 2, ws], p));
        }
        // Three whole activations (a resnet's input, hidden and output): the encoder's in
        // f32, the decoder's in the compute precision.
        let whole = 3 * ((h >> s) * (w >> s)) as u64 * (c as u64 * 4).max(dc as u64 * p);
        vae_whole = vae_whole.max(whole);
    }
    buffers.push(buf("image band (colour fix, wavelet context)", &[1, 3, rows + 62, w], 4));
    let mid = vc[n_levels - 1];
    let tokens_band = (rows / 8) * lw;
    buffers.push(buf("vae mid-block q/k/v of one band", &[1, 1, tokens_band, mid], 4));
    buffers.push(buf("vae mid-block attention block", &[max_scores.min(tokens_band * lh * lw).max(1)], 4));
    buffers.push(buf("latent (z, eps, blend sums)", &[1, 4, lh, lw], 4));

    // The UNet on one latent tile: the official 96 / 32 unless the working set is too big.
    let uc = &cfg.unet.block_out_channels;
    let heads = &cfg.unet.attention_head_dim;
    let (mut tile, mut unet_peak) = (96usize, 0u64);
    while tile >= 16 {
        let t = tile.min(lh).min(lw);
        let mut b = Vec::new();
        let mut skips = 0u64;
        for (l, &c) in uc.iter().enumerate() {
            let s = (t >> l).max(1);
            let tok = s * s;
            let cat = c + uc.get(l + 1).copied().unwrap_or(c).max(c);
            b.push(buf(format!("unet activation, level {l}"), &[1, cat, s, s], p));
            b.push(buf(format!("unet GroupNorm f32 copy, level {l}"), &[1, cat, s, s], 4));
            b.push(buf(format!("unet GEGLU projection, level {l}"), &[1, tok, 8 * c], p));
            b.push(buf(format!("unet q/k/v, level {l}"), &[1, heads[l], tok, c / heads[l]], 4));
            b.push(buf(format!("unet attention block, level {l}"), &[max_scores.min(heads[l] * tok * tok)], 4));
            skips += 3 * (c * tok) as u64 * p;
        }
        let working = b.iter().map(|x| x.bytes).sum::<u64>() + skips;
        if tile == 16 || (working < limits.budget / 4 && b.iter().all(|x| x.bytes <= limit)) {
            buffers.extend(b);
            unet_peak = working;
            break;
        }
        tile -= 16;
    }
    let overlap = (tile / 3).min(32);

    // Peak: weights + the larger of the UNet's working set and the VAE's live activations.
    // One layer in flight: the input band with its halo, GroupNorm's copy, the output, a temporary.
    let band_set: u64 = 4 * buffers.iter().filter(|b| b.what.starts_with("vae")).map(|b| b.bytes).max().unwrap_or(0);
    let on_device = weights + unet_peak.max(vae_whole + band_set);
    let park = on_device > limits.budget;
    let peak = weights + unet_peak.max(band_set);
    let peak_bytes = if park { peak } else { on_device };
    if peak_bytes > limits.budget {
        return Err(format!("needs {} MiB of device memory, the budget is {} MiB", peak_bytes >> 20, limits.budget >> 20));
    }
    Ok(SdPlan {
        vae_rows: rows,
        latent_tile: tile,
        latent_overlap: overlap,
        max_scores,
        park_on_host: park,
        buffers,
        peak_bytes,
        host_bytes: if park { vae_whole } else { 0 },
    })
}
