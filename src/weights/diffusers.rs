//! Reading a diffusers pipeline folder (`unet/`, `vae/`, `text_encoder/` with
//! `config.json` + `*.safetensors`) into a [`ParamStore`]. f16 / bf16 are widened to f32.
//! The published SD VAE's legacy attention names (`query`, `key`, `value`, `proj_attn`)
//! are mapped onto diffusers' current ones (`to_q`, `to_k`, `to_v`, `to_out.0`), so one set
//! of module fields serves both layouts.

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use super::{ParamStore, WeightsError};

/// Insert every tensor of one safetensors file into `store` under its canonical name.
/// Returns the number of tensors read.
pub fn insert_safetensors(store: &mut ParamStore, bytes: &[u8], what: &str) -> Result<usize, WeightsError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError::Convert(format!("{what} is not a valid safetensors file ({e}): re-download it")))?;
    let mut count = 0;
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            // Index buffers such as CLIP's `position_ids`: small integers, exact in f32.
            Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
            other => {
                return Err(WeightsError::Convert(format!("{what}: tensor {name} has dtype {other:?}; expected F32, F16, BF16 or I64")));
            }
        };
        let canonical = canonical_name(&name);
        if store.contains(&canonical) {
            return Err(WeightsError::Convert(format!("{what}: tensor {canonical} appears twice (legacy and current names?)")));
        }
        store.insert(&canonical, view.shape(), values);
        count += 1;
    }
    Ok(count)
}

/// `….attentions.N.{query,key,value,proj_attn}.…` → `….attentions.N.{to_q,to_k,to_v,to_out.0}.…`
/// (the legacy VAE attention block); every other name is returned unchanged.
pub fn canonical_name(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    for i in 2..parts.len() {
        let new = match parts[i] {
            "query" => "to_q",
            "key" => "to_k",
            "value" => "to_v",
            "proj_attn" => "to_out.0",
            _ => continue,
        };
        if parts[i - 2] == "attentions" && parts[i - 1].parse::<usize>().is_ok() {
            let mut out: Vec<&str> = parts.clone();
            out[i] = new;
            return out.join(".");
        }
    }
    name.to_string()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::Path;

    use burn::tensor::Device;
    use serde::de::DeserializeOwned;

    use super::*;

    fn read(path: &Path) -> Result<Vec<u8>, WeightsError> {
        std::fs::read(path).map_err(|source| WeightsError::Io { path: path.display().to_string(), source })
    }

    /// One component folder of a diffusers pipeline (e.g. `…/vae`): its parsed
    /// `config.json` and a store holding every tensor of its `*.safetensors` file(s).
    pub fn load_component<C: DeserializeOwned>(dir: &Path, device: &Device) -> Result<(C, ParamStore), WeightsError> {
        let config_path = dir.join("config.json");
        let config = serde_json::from_slice(&read(&config_path)?)
            .map_err(|e| WeightsError::Convert(format!("{}: {e}", config_path.display())))?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|source| WeightsError::Io { path: dir.display().to_string(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(WeightsError::Convert(format!("{} holds no .safetensors file", dir.display())));
        }
        // Prefer the plain file when a folder also carries variants (`*.fp16.safetensors`).
        let plain: Vec<_> = files.iter().filter(|p| !p.to_string_lossy().contains(".fp16.")).cloned().collect();
        let files = if plain.is_empty() { files } else { plain };
        let mut store = ParamStore::new(device);
        for file in &files {
            insert_safetensors(&mut store, &read(file)?, &file.display().to_string())?;
        }
        Ok((config, store))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::load_component;

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn legacy_vae_attention_names_map_to_current() {
        assert_eq!(canonical_name("encoder.mid_block.attentions.0.query.weight"), "encoder.mid_block.attentions.0.to_q.weight");
        assert_eq!(canonical_name("decoder.mid_block.attentions.0.proj_attn.bias"), "decoder.mid_block.attentions.0.to_out.0.bias");
        assert_eq!(canonical_name("encoder.mid_block.attentions.0.to_k.weight"), "encoder.mid_block.attentions.0.to_k.weight");
        let unet = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight";
        assert_eq!(canonical_name(unet), unet);
    }
}
