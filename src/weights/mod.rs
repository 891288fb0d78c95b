//! Weights: format v1 / v2 (manifest + SHA-256-checked shards; v2 adds q8 / q4), streaming loader, parameter store,
//! converters. Bytes in, device tensors out; no arithmetic on activations here.

pub mod clip_tokenizer;
pub mod diffusers;
pub mod dtype;
mod error;
pub mod folder;
pub mod loader;
pub mod manifest;
pub mod quant;
pub mod role;
pub mod store;
pub mod torch_pickle;
pub mod lora;
#[cfg(not(target_arch = "wasm32"))]
pub mod ncnn;
#[cfg(not(target_arch = "wasm32"))]
mod ncnn_format;
#[cfg(not(target_arch = "wasm32"))]
mod ncnn_valid;
pub mod safetensors_index;
pub mod sd_convert;
pub mod writer;

pub use error::WeightsError;
pub use loader::{LoadProgress, ShardSource, check_digest, check_size, load_into_store, verify_shard};
#[cfg(not(target_arch = "wasm32"))]
pub use loader::{DirSource, load_dir};
pub use dtype::DType;
pub use manifest::{Manifest, ShardEntry, TensorEntry, TensorPart};
pub use store::ParamStore;
