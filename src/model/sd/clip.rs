//! transformers' CLIPTextModel (the SD 2.x text encoder, OpenCLIP ViT-H's text tower):
//! token + position embeddings, pre-norm layers with causal self-attention and a GELU MLP,
//! final LayerNorm. The output is the last hidden state `[N, 77, hidden]`.

use burn::tensor::{Int, Tensor, TensorData, activation::gelu, module::embedding};
use serde::{Deserialize, Serialize};

use super::nn::{LayerNorm, Linear, merge_heads, scaled_dot_product_attention, split_heads};
use crate::weights::{ParamStore, WeightsError};

/// The fields of transformers' `text_encoder/config.json` that shape the math.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    /// "gelu" (exact, erf) for SD 2.x; "quick_gelu" for SD 1.x's OpenAI CLIP.
    pub hidden_act: String,
}

impl ClipTextConfig {
    /// stabilityai/stable-diffusion-2-1-base `text_encoder/config.json`.
    pub fn sd21_base() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 23,
            num_attention_heads: 16,
            max_position_embeddings: 77,
            layer_norm_eps: 1e-5,
            hidden_act: "gelu".into(),
        }
    }

    /// The test fixture's tiny text encoder (tests/fixtures/sd/text_encoder/config.json).
    pub fn tiny() -> Self {
        Self { hidden_size: 16, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, ..Self::sd21_base() }
    }

    /// Every tensor the model loads, `(name, shape)`, without allocating any weights.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut store = ParamStore::dry_run(&crate::device::cpu());
        ClipTextModel::load(&mut store, self).expect("a dry run of a valid config cannot fail");
        store.requests().to_vec()
    }
}

pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    heads: usize,
}

pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    quick_gelu: bool,
}

pub struct ClipEncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: ClipAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: ClipMlp,
}

/// `-1e9` above the diagonal: each token attends to itself and the tokens before it.
pub fn causal_mask(l: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let mask: Vec<f32> = (0..l * l).map(|i| if i % l > i / l { -1e9 } else { 0.0 }).collect();
    Tensor::<2>::from_data(TensorData::new(mask, [l, l]), device)
}

impl ClipEncoderLayer {
    /// Layer `i` (`text_model.encoder.layers.{i}.…`): loadable alone, so a converter can run
    /// the encoder one layer at a time with only that layer's weights in memory.
    pub fn load(store: &mut ParamStore, cfg: &ClipTextConfig, i: usize) -> Result<Self, WeightsError> {
        let quick_gelu = match cfg.hidden_act.as_str() {
            "gelu" => false,
            "quick_gelu" => true,
            other => return Err(WeightsError::Architecture { got: format!("hidden_act {other}"), want: "gelu or quick_gelu".into() }),
        };
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let l = format!("text_model.encoder.layers.{i}");
        let lin = |store: &mut ParamStore, name: &str, a, b| Linear::load(store, &format!("{l}.{name}"), a, b, true);
        Ok(ClipEncoderLayer {
            layer_norm1: LayerNorm::load(store, &format!("{l}.layer_norm1"), d, eps)?,
            self_attn: ClipAttention {
                q_proj: lin(store, "self_attn.q_proj", d, d)?,
                k_proj: lin(store, "self_attn.k_proj", d, d)?,
                v_proj: lin(store, "self_attn.v_proj", d, d)?,
                out_proj: lin(store, "self_attn.out_proj", d, d)?,
                heads: cfg.num_attention_heads,
            },
            layer_norm2: LayerNorm::load(store, &format!("{l}.layer_norm2"), d, eps)?,
            mlp: ClipMlp { fc1: lin(store, "mlp.fc1", d, cfg.intermediate_size)?, fc2: lin(store, "mlp.fc2", cfg.intermediate_size, d)?, quick_gelu },
        })
    }

    /// Pre-norm causal self-attention, then the MLP, each added to the residual.
    pub fn forward(&self, x: Tensor<3>, mask: &Tensor<2>) -> Tensor<3> {
        let h = self.layer_norm1.forward(x.clone());
        let a = &self.self_attn;
        let q = split_heads(a.q_proj.forward(h.clone()), a.heads);
        let k = split_heads(a.k_proj.forward(h.clone()), a.heads);
        let v = split_heads(a.v_proj.forward(h), a.heads);
        let h = a.out_proj.forward(merge_heads(scaled_dot_product_attention(q, k, v, Some(mask.clone()))));
        let x = x + h;
        let h = self.mlp.fc1.forward(self.layer_norm2.forward(x.clone()));
        let h = if self.mlp.quick_gelu { h.clone() * burn::tensor::activation::sigmoid(h * 1.702) } else { gelu(h) };
        x + self.mlp.fc2.forward(h)
    }
}

pub struct ClipTextModel {
    /// `[vocab, hidden]`.
    pub token_embedding: Tensor<2>,
    /// `[max_positions, hidden]`.
    pub position_embedding: Tensor<2>,
    pub layers: Vec<ClipEncoderLayer>,
    pub final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// Tensor names carry transformers 4.x's `text_model.` prefix. The int64 buffer
    /// `text_model.embeddings.position_ids` (= 0..76) is accepted and dropped.
    pub fn load(store: &mut ParamStore, cfg: &ClipTextConfig) -> Result<Self, WeightsError> {
        let (d, p) = (cfg.hidden_size, "text_model");
        let eps = cfg.layer_norm_eps;
        store.discard(&format!("{p}.embeddings.position_ids"), &[1, cfg.max_position_embeddings])?;
        let token_embedding = store.take(&format!("{p}.embeddings.token_embedding.weight"), [cfg.vocab_size, d])?;
        let position_embedding = store.take(&format!("{p}.embeddings.position_embedding.weight"), [cfg.max_position_embeddings, d])?;
        let layers = (0..cfg.num_hidden_layers).map(|i| ClipEncoderLayer::load(store, cfg, i)).collect::<Result<_, WeightsError>>()?;
        let final_layer_norm = LayerNorm::load(store, &format!("{p}.final_layer_norm"), d, eps)?;
        Ok(Self { token_embedding, position_embedding, layers, final_layer_norm })
    }

    /// `ids: [N, L]` token ids (L ≤ 77; SD pads to 77) → last hidden state `[N, L, hidden]`
    /// after the final LayerNorm. Causal mask, no padding mask (as SD uses it).
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, l] = ids.dims();
        let device = ids.device();
        let x = embedding(self.token_embedding.clone(), ids) + self.position_embedding.clone().narrow(0, 0, l).unsqueeze::<3>();
        let mask = causal_mask(l, &device);
        let mut x = x;
        for layer in &self.layers {
            x = layer.forward(x, &mask);
        }
        self.final_layer_norm.forward(x)
    }

    /// Convenience: ids from host integers.
    pub fn forward_ids(&self, ids: &[i64], device: &burn::tensor::Device) -> Tensor<3> {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device);
        self.forward(ids)
    }
}
