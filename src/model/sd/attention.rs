//! diffusers' Attention (self / cross, optional GroupNorm for the VAE's spatial variant),
//! BasicTransformerBlock with a GEGLU feed-forward, and Transformer2DModel with linear
//! projections (SD 2.x).

use burn::tensor::{Tensor, activation::gelu};

use super::nn::{GroupNorm, LayerNorm, Linear, merge_heads, scaled_dot_product_attention, split_heads};
use crate::weights::{ParamStore, WeightsError};

/// Multi-head attention: `to_q`, `to_k`, `to_v`, `to_out.0`. With `group_norm` it is the
/// VAE mid-block's spatial self-attention (normalise, attend over pixels, add the input).
pub struct Attention {
    pub group_norm: Option<GroupNorm>,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// `to_out.0` (`to_out.1` is dropout).
    pub to_out: Linear,
    heads: usize,
}

impl Attention {
    /// `context_dim = None` for self-attention. The UNet's projections have no bias, the
    /// VAE's have (`qkv_bias`); `to_out.0` always has one.
    pub fn load(
        store: &mut ParamStore,
        path: &str,
        dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        qkv_bias: bool,
    ) -> Result<Self, WeightsError> {
        let ctx = context_dim.unwrap_or(dim);
        Ok(Self {
            group_norm: None,
            to_q: Linear::load(store, &format!("{path}.to_q"), dim, dim, qkv_bias)?,
            to_k: Linear::load(store, &format!("{path}.to_k"), ctx, dim, qkv_bias)?,
            to_v: Linear::load(store, &format!("{path}.to_v"), ctx, dim, qkv_bias)?,
            to_out: Linear::load(store, &format!("{path}.to_out.0"), dim, dim, true)?,
            heads,
        })
    }

    /// The VAE mid-block attention: one head over all channels, GroupNorm first, biases on
    /// every projection. (Published SD VAE files name the projections `query`, `key`,
    /// `value`, `proj_attn`; the safetensors reader maps those names onto these.)
    pub fn load_spatial(store: &mut ParamStore, path: &str, channels: usize, groups: usize, eps: f64) -> Result<Self, WeightsError> {
        let group_norm = GroupNorm::load(store, &format!("{path}.group_norm"), groups, channels, eps)?;
        let mut attn = Self::load(store, path, channels, None, 1, true)?;
        attn.group_norm = Some(group_norm);
        Ok(attn)
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    /// `x: [B, L, dim]`, `context: [B, Lk, context_dim]` (None: self-attention).
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let ctx = context.cloned().unwrap_or_else(|| x.clone());
        if let Some(y) = self.forward_on_cpu(&x, &ctx) {
            return y;
        }
        let q = split_heads(self.to_q.forward(x), self.heads);
        let k = split_heads(self.to_k.forward(ctx.clone()), self.heads);
        let v = split_heads(self.to_v.forward(ctx), self.heads);
        self.to_out.forward(merge_heads(scaled_dot_product_attention(q, k, v, None)))
    }

    /// [`Self::forward`] with the heads read in place ([`crate::cpu::attention::attention_heads`])
    /// for f32 on burn's CPU backend; `None` elsewhere.
    fn forward_on_cpu(&self, x: &Tensor<3>, ctx: &Tensor<3>) -> Option<Tensor<3>> {
        if !crate::cpu::takes(x) {
            return None;
        }
        let (q, k, v) = (self.to_q.forward(x.clone()), self.to_k.forward(ctx.clone()), self.to_v.forward(ctx.clone()));
        let ([b, lq, c], lk) = (q.dims(), k.dims()[1]);
        let d = c / self.heads;
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        use crate::cpu::tensor::with_slice;
        let o = with_slice(&q, |q| with_slice(&k, |k| with_slice(&v, |v| crate::cpu::attention::attention_heads(q, k, v, b, self.heads, lq, lk, d, scale))));
        Some(self.to_out.forward(crate::cpu::tensor::like_of(o, [b, lq, c], &q)))
    }

    /// `x: [N, C, H, W]` → same shape: `x + attn(group_norm(x))` over the H*W pixels.
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let hs = match &self.group_norm {
            Some(norm) => norm.forward(x.clone()),
            None => x.clone(),
        };
        let hs = hs.reshape([n, c, h * w]).swap_dims(1, 2);
        let hs = self.forward(hs, None);
        x + hs.swap_dims(1, 2).reshape([n, c, h, w])
    }
}

/// `ff.net.0` (GEGLU: `proj` to 2 x inner, `hidden * gelu(gate)`) then `ff.net.2`.
pub struct FeedForward {
    /// `net.0.proj`.
    pub geglu_proj: Linear,
    /// `net.2`.
    pub out: Linear,
}

impl FeedForward {
    pub fn load(store: &mut ParamStore, path: &str, dim: usize, mult: usize) -> Result<Self, WeightsError> {
        let inner = dim * mult;
        Ok(Self {
            geglu_proj: Linear::load(store, &format!("{path}.net.0.proj"), dim, 2 * inner, true)?,
            out: Linear::load(store, &format!("{path}.net.2"), inner, dim, true)?,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let proj = self.geglu_proj.forward(x);
        if crate::cpu::takes(&proj) {
            // One vectorised pass on the CPU instead of burn's split, erf and product.
            let [b, l, two_inner] = proj.dims();
            let h = crate::cpu::tensor::with_slice(&proj, |p| crate::cpu::geglu::geglu(p, b * l, two_inner / 2));
            return self.out.forward(crate::cpu::tensor::like_of(h, [b, l, two_inner / 2], &proj));
        }
        let mut halves = proj.chunk(2, 2);
        let gate = halves.pop().expect("two halves");
        let hidden = halves.pop().expect("two halves");
        self.out.forward(hidden * gelu(gate))
    }
}

/// Pre-norm transformer block: self-attention, cross-attention on the text embedding,
/// GEGLU feed-forward, each with a residual.
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn load(store: &mut ParamStore, path: &str, dim: usize, heads: usize, context_dim: usize) -> Result<Self, WeightsError> {
        const EPS: f64 = 1e-5;
        Ok(Self {
            norm1: LayerNorm::load(store, &format!("{path}.norm1"), dim, EPS)?,
            attn1: Attention::load(store, &format!("{path}.attn1"), dim, None, heads, false)?,
            norm2: LayerNorm::load(store, &format!("{path}.norm2"), dim, EPS)?,
            attn2: Attention::load(store, &format!("{path}.attn2"), dim, Some(context_dim), heads, false)?,
            norm3: LayerNorm::load(store, &format!("{path}.norm3"), dim, EPS)?,
            ff: FeedForward::load(store, &format!("{path}.ff"), dim, 4)?,
        })
    }

    pub fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(context)) + x;
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }
}

/// GroupNorm (eps 1e-6, diffusers' fixed value) → `proj_in` (Linear) → transformer blocks
/// → `proj_out` (Linear), plus the input.
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Linear,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Linear,
}

impl Transformer2DModel {
    pub fn load(
        store: &mut ParamStore,
        path: &str,
        channels: usize,
        heads: usize,
        context_dim: usize,
        groups: usize,
        layers: usize,
    ) -> Result<Self, WeightsError> {
        Ok(Self {
            norm: GroupNorm::load(store, &format!("{path}.norm"), groups, channels, 1e-6)?,
            proj_in: Linear::load(store, &format!("{path}.proj_in"), channels, channels, true)?,
            transformer_blocks: (0..layers)
                .map(|i| BasicTransformerBlock::load(store, &format!("{path}.transformer_blocks.{i}"), channels, heads, context_dim))
                .collect::<Result<_, _>>()?,
            proj_out: Linear::load(store, &format!("{path}.proj_out"), channels, channels, true)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let hs = self.norm.forward(x.clone()).reshape([n, c, h * w]).swap_dims(1, 2);
        let mut hs = self.proj_in.forward(hs);
        for block in &self.transformer_blocks {
            hs = block.forward(hs, context);
        }
        let hs = self.proj_out.forward(hs);
        hs.swap_dims(1, 2).reshape([n, c, h, w]) + x
    }
}
