//! diffusers' UNet2DConditionModel as configured by Stable Diffusion 2.x: sinusoidal time
//! embedding (flip_sin_to_cos, freq_shift 0), CrossAttnDownBlock2D / DownBlock2D, a
//! UNetMidBlock2DCrossAttn, UpBlock2D / CrossAttnUpBlock2D with skip connections, linear
//! projections in the transformers, GEGLU feed-forward.

use burn::tensor::{Tensor, TensorData, activation::silu};
use serde::{Deserialize, Serialize};

use super::attention::Transformer2DModel;
use super::nn::{GroupNorm, Linear};
use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::model::conv::Conv2d;
use crate::weights::{ParamStore, WeightsError};

/// The fields of diffusers' `unet/config.json` that shape the math. As in diffusers,
/// `attention_head_dim` is the NUMBER of heads per block (SD 2.x head dim = channels / it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNet2DConditionConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub layers_per_block: usize,
    pub attention_head_dim: Vec<usize>,
    pub cross_attention_dim: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    #[serde(default = "one")]
    pub transformer_layers_per_block: usize,
}

fn one() -> usize {
    1
}

impl UNet2DConditionConfig {
    /// stabilityai/stable-diffusion-2-1-base `unet/config.json`.
    pub fn sd21_base() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Self {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            down_block_types: s(&["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
            up_block_types: s(&["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
            layers_per_block: 2,
            attention_head_dim: vec![5, 10, 20, 20],
            cross_attention_dim: 1024,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            transformer_layers_per_block: 1,
        }
    }

    /// The test fixture's tiny UNet (tests/fixtures/sd/unet/config.json).
    pub fn tiny() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Self {
            block_out_channels: vec![16, 32, 32],
            down_block_types: s(&["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
            up_block_types: s(&["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
            attention_head_dim: vec![2, 4, 8],
            cross_attention_dim: 16,
            norm_num_groups: 8,
            ..Self::sd21_base()
        }
    }

    /// Every tensor the model loads, `(name, shape)`, without allocating any weights.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut store = ParamStore::dry_run(&crate::device::cpu());
        UNet2DConditionModel::load(&mut store, self).expect("a dry run of a valid config cannot fail");
        store.requests().to_vec()
    }

    fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }
}

/// `time_embedding`: linear_1 → SiLU → linear_2.
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

/// A down, mid or up block: the lists diffusers has (empty where a block type has none).
pub struct UNetBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Vec<Downsample2D>,
    pub upsamplers: Vec<Upsample2D>,
}

pub struct UNet2DConditionModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<UNetBlock>,
    pub mid_block: UNetBlock,
    pub up_blocks: Vec<UNetBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    pub config: UNet2DConditionConfig,
}

fn has_cross_attention(block_type: &str, path: &str) -> Result<bool, WeightsError> {
    match block_type {
        "CrossAttnDownBlock2D" | "CrossAttnUpBlock2D" => Ok(true),
        "DownBlock2D" | "UpBlock2D" => Ok(false),
        other => Err(WeightsError::Architecture { got: format!("{path}: {other}"), want: "an SD 2.x UNet block".into() }),
    }
}

impl UNet2DConditionModel {
    /// Tensor names are the diffusers checkpoint's (`conv_in.weight`, `down_blocks.0.…`).
    pub fn load(store: &mut ParamStore, cfg: &UNet2DConditionConfig) -> Result<Self, WeightsError> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        if cfg.down_block_types.len() != n || cfg.up_block_types.len() != n || cfg.attention_head_dim.len() != n {
            return Err(WeightsError::Architecture {
                got: format!("{} block channels, {} down / {} up block types, {} head counts", n, cfg.down_block_types.len(), cfg.up_block_types.len(), cfg.attention_head_dim.len()),
                want: "one entry per block in each list".into(),
            });
        }
        let (g, eps, temb, ctx) = (cfg.norm_num_groups, cfg.norm_eps, cfg.time_embed_dim(), cfg.cross_attention_dim);
        let tl = cfg.transformer_layers_per_block;
        let resnet = |store: &mut ParamStore, p: String, c_in, c_out| ResnetBlock2D::load(store, &p, c_in, c_out, Some(temb), g, eps);
        let transformer = |store: &mut ParamStore, p: String, c, heads| Transformer2DModel::load(store, &p, c, heads, ctx, g, tl);

        let mut conv_in = Conv2d::load(store, "conv_in", cfg.in_channels, ch[0], 3)?;
        let time_embedding = TimestepEmbedding {
            linear_1: Linear::load(store, "time_embedding.linear_1", ch[0], temb, true)?,
            linear_2: Linear::load(store, "time_embedding.linear_2", temb, temb, true)?,
        };

        let mut down_blocks = Vec::new();
        for i in 0..n {
            let p = format!("down_blocks.{i}");
            let cross = has_cross_attention(&cfg.down_block_types[i], &p)?;
            let c_in = if i == 0 { ch[0] } else { ch[i - 1] };
            let c_out = ch[i];
            let mut block = UNetBlock { resnets: vec![], attentions: vec![], downsamplers: vec![], upsamplers: vec![] };
            for j in 0..cfg.layers_per_block {
                block.resnets.push(resnet(store, format!("{p}.resnets.{j}"), if j == 0 { c_in } else { c_out }, c_out)?);
                if cross {
                    block.attentions.push(transformer(store, format!("{p}.attentions.{j}"), c_out, cfg.attention_head_dim[i])?);
                }
            }
            if i + 1 < n {
                block.downsamplers.push(Downsample2D::load(store, &format!("{p}.downsamplers.0"), c_out, 1)?);
            }
            down_blocks.push(block);
        }

        let c_mid = ch[n - 1];
        let mut mid_block = UNetBlock {
            resnets: vec![
                resnet(store, "mid_block.resnets.0".into(), c_mid, c_mid)?,
                resnet(store, "mid_block.resnets.1".into(), c_mid, c_mid)?,
            ],
            attentions: vec![transformer(store, "mid_block.attentions.0".into(), c_mid, cfg.attention_head_dim[n - 1])?],
            downsamplers: vec![],
            upsamplers: vec![],
        };

        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let rev_heads: Vec<usize> = cfg.attention_head_dim.iter().rev().copied().collect();
        let layers = cfg.layers_per_block + 1;
        let mut up_blocks = Vec::new();
        let mut c_out = rev[0];
        for i in 0..n {
            let p = format!("up_blocks.{i}");
            let cross = has_cross_attention(&cfg.up_block_types[i], &p)?;
            let c_prev = c_out;
            c_out = rev[i];
            let c_in = rev[(i + 1).min(n - 1)];
            let mut block = UNetBlock { resnets: vec![], attentions: vec![], downsamplers: vec![], upsamplers: vec![] };
            for j in 0..layers {
                let skip = if j == layers - 1 { c_in } else { c_out };
                let res_in = if j == 0 { c_prev } else { c_out };
                block.resnets.push(resnet(store, format!("{p}.resnets.{j}"), res_in + skip, c_out)?);
                if cross {
                    block.attentions.push(transformer(store, format!("{p}.attentions.{j}"), c_out, rev_heads[i])?);
                }
            }
            if i + 1 < n {
                block.upsamplers.push(Upsample2D::load(store, &format!("{p}.upsamplers.0"), c_out)?);
            }
            up_blocks.push(block);
        }


        let mut conv_out = Conv2d::load(store, "conv_out", ch[0], cfg.out_channels, 3)?;
        // The 3x3 convolutions take the CPU path on large maps, weights transformed per call.
        conv_in.transform_per_call();
        conv_out.transform_per_call();
        for block in down_blocks.iter_mut().chain([&mut mid_block]).chain(up_blocks.iter_mut()) {
            block.resnets.iter_mut().for_each(ResnetBlock2D::transform_per_call);
            block.upsamplers.iter_mut().for_each(|u| u.conv.transform_per_call());
            block.downsamplers.iter_mut().for_each(|d| d.conv.transform_per_call());
        }
        Ok(Self {
            conv_in,
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(store, "conv_norm_out", g, ch[0], eps)?,
            conv_out,
            config: cfg.clone(),
        })
    }

    /// The noise prediction for `sample: [N, 4, h, w]` at `timestep`, conditioned on
    /// `context: [N, 77, cross_attention_dim]` (the text encoder's last hidden state).
    pub fn forward(&self, sample: Tensor<4>, timestep: f32, context: &Tensor<3>) -> Tensor<4> {
        let [n, _, h, w] = sample.dims();
        let device = sample.device();

        let t = timestep_embedding(timestep, self.config.block_out_channels[0], self.config.flip_sin_to_cos, self.config.freq_shift);
        let dim = t.len();
        let t = Tensor::<2>::from_data(TensorData::new(t, [1, dim]), &device);
        let temb = self.time_embedding.linear_2.forward(silu(self.time_embedding.linear_1.forward(t)));
        let temb = if n > 1 { temb.repeat_dim(0, n) } else { temb };

        // diffusers forwards explicit upsample sizes when the latent is not a multiple of
        // 2^(number of upsamplers), so that odd sizes come back exactly.
        let factor = 1usize << (self.up_blocks.len() - 1);
        let forward_upsample_size = h % factor != 0 || w % factor != 0;

        // The boundary convolutions run in f32 (see `Conv2d::forward_f32`): `sample` may be f32
        // and the noise prediction comes back in f32.
        let mut x = self.conv_in.forward_f32(sample).cast(self.conv_in.dtype());
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                x = resnet.forward(x, Some(&temb));
                if let Some(attn) = block.attentions.get(j) {
                    x = attn.forward(x, context);
                }
                skips.push(x.clone());
            }
            for down in &block.downsamplers {
                x = down.forward(x);
                skips.push(x.clone());
            }
        }

        x = self.mid_block.resnets[0].forward(x, Some(&temb));
        x = self.mid_block.attentions[0].forward(x, context);
        x = self.mid_block.resnets[1].forward(x, Some(&temb));

        for block in &self.up_blocks {
            let mut own = skips.split_off(skips.len() - block.resnets.len());
            let upsample_size = match skips.last() {
                Some(next) if forward_upsample_size && !block.upsamplers.is_empty() => {
                    let [_, _, sh, sw] = next.dims();
                    Some([sh, sw])
                }
                _ => None,
            };
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = own.pop().expect("one skip per resnet");
                x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(&temb));
                if let Some(attn) = block.attentions.get(j) {
                    x = attn.forward(x, context);
                }
            }
            for up in &block.upsamplers {
                x = up.forward(x, upsample_size);
            }
        }

        crate::model::conv::release_per_call_buffer();
        self.conv_out.forward_f32(silu(self.conv_norm_out.forward(x)))
    }
}

/// diffusers' `get_timestep_embedding` for one timestep, in f32 as torch computes it:
/// `freq_i = exp(-ln(10000) * i / (half - shift))`, `[sin(t f), cos(t f)]`, or
/// `[cos, sin]` with `flip_sin_to_cos`.
pub fn timestep_embedding(t: f32, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Vec<f32> {
    let half = dim / 2;
    let log_max = -(10000f64.ln() as f32);
    let denom = (half as f64 - freq_shift) as f32;
    let args: Vec<f32> = (0..half).map(|i| t * (log_max * i as f32 / denom).exp()).collect();
    let sin = args.iter().map(|a| a.sin());
    let cos = args.iter().map(|a| a.cos());
    let mut emb: Vec<f32> = if flip_sin_to_cos { cos.chain(sin).collect() } else { sin.chain(cos).collect() };
    emb.resize(dim, 0.0); // odd dims are zero-padded
    emb
}
