//! diffusers' AutoencoderKL as used by Stable Diffusion: Encoder (+ `quant_conv`) and
//! Decoder (+ `post_quant_conv`), GroupNorm eps 1e-6, self-attention in both mid blocks.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::attention::Attention;
use super::nn::GroupNorm;
use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D, norm_silu_conv};
use crate::model::conv::Conv2d;
use crate::weights::{ParamStore, WeightsError};

/// The fields of diffusers' `vae/config.json` that shape the math.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    /// SD 2.1-base's config has no such key; diffusers' default 0.18215 applies.
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f64,
}

fn default_scaling_factor() -> f64 {
    0.18215
}

/// diffusers hard-codes the VAE's GroupNorm epsilon.
const VAE_EPS: f64 = 1e-6;

impl AutoencoderKLConfig {
    /// stabilityai/stable-diffusion-2-1-base `vae/config.json`.
    pub fn sd21_base() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
        }
    }

    /// The test fixture's tiny VAE (tests/fixtures/sd/vae/config.json).
    pub fn tiny() -> Self {
        Self { block_out_channels: vec![8, 16, 32, 32], norm_num_groups: 4, ..Self::sd21_base() }
    }

    /// Every tensor the model loads, `(name, shape)`, without allocating any weights.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut store = ParamStore::dry_run(&crate::device::cpu());
        AutoencoderKL::load(&mut store, self).expect("a dry run cannot fail");
        store.requests().to_vec()
    }
}

/// A UNetMidBlock2D without time embedding: resnet, spatial attention, resnet.
pub struct VaeMidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
}

impl VaeMidBlock {
    fn load(store: &mut ParamStore, path: &str, c: usize, groups: usize) -> Result<Self, WeightsError> {
        let resnets = (0..2)
            .map(|i| ResnetBlock2D::load(store, &format!("{path}.resnets.{i}"), c, c, None, groups, VAE_EPS))
            .collect::<Result<_, _>>()?;
        let attentions = vec![Attention::load_spatial(store, &format!("{path}.attentions.0"), c, groups, VAE_EPS)?];
        Ok(Self { resnets, attentions })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.resnets[0].forward(x, None);
        let x = self.attentions[0].forward_spatial(x);
        self.resnets[1].forward(x, None)
    }
}

/// DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional resampler.
pub struct VaeBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
    pub upsamplers: Vec<Upsample2D>,
}

pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<VaeBlock>,
    pub mid_block: VaeMidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    pub fn load(store: &mut ParamStore, path: &str, cfg: &AutoencoderKLConfig) -> Result<Self, WeightsError> {
        let ch = &cfg.block_out_channels;
        let g = cfg.norm_num_groups;
        let conv_in = Conv2d::load(store, &format!("{path}.conv_in"), cfg.in_channels, ch[0], 3)?;
        let mut down_blocks = Vec::new();
        let mut c_in = ch[0];
        for (i, &c_out) in ch.iter().enumerate() {
            let p = format!("{path}.down_blocks.{i}");
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    let c = if j == 0 { c_in } else { c_out };
                    ResnetBlock2D::load(store, &format!("{p}.resnets.{j}"), c, c_out, None, g, VAE_EPS)
                })
                .collect::<Result<_, _>>()?;
            let downsamplers = if i + 1 < ch.len() {
                vec![Downsample2D::load(store, &format!("{p}.downsamplers.0"), c_out, 0)?]
            } else {
                vec![]
            };
            down_blocks.push(VaeBlock { resnets, downsamplers, upsamplers: vec![] });
            c_in = c_out;
        }
        let c = *ch.last().expect("at least one block");
        Ok(Self {
            conv_in,
            down_blocks,
            mid_block: VaeMidBlock::load(store, &format!("{path}.mid_block"), c, g)?,
            conv_norm_out: GroupNorm::load(store, &format!("{path}.conv_norm_out"), g, c, VAE_EPS)?,
            conv_out: Conv2d::load(store, &format!("{path}.conv_out"), c, 2 * cfg.latent_channels, 3)?,
        })
    }

    /// `[N, 3, H, W]` in [-1, 1] → `[N, 2 * latent, ceil(H/8), ceil(W/8)]` in f32 (before
    /// quant_conv).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv_in.forward(x.cast(self.conv_in.dtype()));
        for block in &self.down_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            for d in &block.downsamplers {
                x = d.forward(x);
            }
        }
        let x = self.mid_block.forward(x);
        norm_silu_conv(&self.conv_norm_out, &self.conv_out, x, true)
    }
}

pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: VaeMidBlock,
    pub up_blocks: Vec<VaeBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    pub fn load(store: &mut ParamStore, path: &str, cfg: &AutoencoderKLConfig) -> Result<Self, WeightsError> {
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let g = cfg.norm_num_groups;
        let conv_in = Conv2d::load(store, &format!("{path}.conv_in"), cfg.latent_channels, rev[0], 3)?;
        let mid_block = VaeMidBlock::load(store, &format!("{path}.mid_block"), rev[0], g)?;
        let mut up_blocks = Vec::new();
        let mut c_in = rev[0];
        for (i, &c_out) in rev.iter().enumerate() {
            let p = format!("{path}.up_blocks.{i}");
            let resnets = (0..cfg.layers_per_block + 1)
                .map(|j| {
                    let c = if j == 0 { c_in } else { c_out };
                    ResnetBlock2D::load(store, &format!("{p}.resnets.{j}"), c, c_out, None, g, VAE_EPS)
                })
                .collect::<Result<_, _>>()?;
            let upsamplers =
                if i + 1 < rev.len() { vec![Upsample2D::load(store, &format!("{p}.upsamplers.0"), c_out)?] } else { vec![] };
            up_blocks.push(VaeBlock { resnets, downsamplers: vec![], upsamplers });
            c_in = c_out;
        }
        let c = *rev.last().expect("at least one block");
        Ok(Self {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(store, &format!("{path}.conv_norm_out"), g, c, VAE_EPS)?,
            conv_out: Conv2d::load(store, &format!("{path}.conv_out"), c, cfg.out_channels, 3)?,
        })
    }

    /// `[N, latent, h, w]` (after post_quant_conv, any float dtype) → `[N, 3, 8h, 8w]` in f32,
    /// unclamped.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let z = z.cast(self.conv_in.dtype());
        let mut x = self.mid_block.forward(self.conv_in.forward(z));
        for block in &self.up_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            for u in &block.upsamplers {
                x = u.forward(x, None);
            }
        }
        norm_silu_conv(&self.conv_norm_out, &self.conv_out, x, true)
    }
}

/// Marks every 3x3 stride-1 convolution of a VAE half for kept CPU weights
/// ([`Conv2d::keep_on_cpu`]).
fn keep_on_cpu(conv_in: &mut Conv2d, blocks: &mut [VaeBlock], mid: &mut VaeMidBlock, conv_out: &mut Conv2d) {
    conv_in.keep_on_cpu();
    conv_out.keep_on_cpu();
    for b in blocks {
        b.resnets.iter_mut().for_each(ResnetBlock2D::keep_on_cpu);
        b.upsamplers.iter_mut().for_each(|u| u.conv.keep_on_cpu());
    }
    mid.resnets.iter_mut().for_each(ResnetBlock2D::keep_on_cpu);
}

pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub quant_conv: Conv2d,
    pub post_quant_conv: Conv2d,
    pub decoder: Decoder,
    pub config: AutoencoderKLConfig,
}

impl AutoencoderKL {
    /// Tensor names are the diffusers checkpoint's (`encoder.…`, `quant_conv.…`, …).
    pub fn load(store: &mut ParamStore, cfg: &AutoencoderKLConfig) -> Result<Self, WeightsError> {
        let l = cfg.latent_channels;
        let mut vae = Self {
            encoder: Encoder::load(store, "encoder", cfg)?,
            quant_conv: Conv2d::load_with(store, "quant_conv", 2 * l, 2 * l, 1, 1, 0, true)?,
            post_quant_conv: Conv2d::load_with(store, "post_quant_conv", l, l, 1, 1, 0, true)?,
            decoder: Decoder::load(store, "decoder", cfg)?,
            config: cfg.clone(),
        };
        // On burn's CPU backend the VAE's 3x3 convolutions run by crate::cpu (weights made here).
        let (e, d) = (&mut vae.encoder, &mut vae.decoder);
        keep_on_cpu(&mut e.conv_in, &mut e.down_blocks, &mut e.mid_block, &mut e.conv_out);
        keep_on_cpu(&mut d.conv_in, &mut d.up_blocks, &mut d.mid_block, &mut d.conv_out);
        Ok(vae)
    }

    /// `quant_conv(encoder(x))`: the latent distribution's moments `[N, 2 * latent, h, w]`
    /// (mean, then log-variance).
    pub fn encode_moments(&self, x: Tensor<4>) -> Tensor<4> {
        self.quant_conv.forward_f32(self.encoder.forward(x))
    }

    /// The latent distribution's mean (unscaled; multiply by `scaling_factor` for the UNet).
    pub fn encode_mean(&self, x: Tensor<4>) -> Tensor<4> {
        let l = self.config.latent_channels;
        self.encode_moments(x).narrow(1, 0, l)
    }

    /// `decoder(post_quant_conv(z))` for an unscaled latent, unclamped.
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        self.decoder.forward(self.post_quant_conv.forward_f32(z))
    }
}
