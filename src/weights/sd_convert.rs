//! `onestep convert sd`: a diffusers SD 2.1-base folder plus an official OSEDiff / PiSA-SR
//! checkpoint → weight format v1 (architecture `osediff` or `pisa-sr`).
//!
//! - OSEDiff: the VAE encoder LoRA, the three UNet LoRAs and the fine-tuned `conv_in` are merged.
//! - PiSA-SR: `conv_in` and the pixel LoRA (W_pix = W0 + dW_pix) are merged; the semantic
//!   LoRA is written as `unet.{module}.lora_{A,B}.weight` and applied at run time as a branch.
//! - The prompt embedding (null prompt by default; PiSA-SR always "") is computed here with
//!   the text encoder in f32 and stored as `text_embedding`; the text encoder is not shipped.
//!
//! Tensors: `unet.…` and `vae.…` under diffusers' names, `text_embedding`. Stored in f16 (the
//! format's rule) or, with `StoreDType::F32`, in f32 (exact parity checks); with a quantization
//! plan, the UNet's convolutions and linears (and with `q8` the VAE's) in q8 / q4 ([`role`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::clip_tokenizer::ClipTokenizer;
use super::diffusers::load_component;
use super::lora::{PEFT_DEFAULT_ALPHA, adapter_names, check_targets, merge_peft};
use super::manifest::Manifest;
use super::quant::Plan;
use super::role::sd_role;
use super::torch_pickle::{HostTensor, TorchCheckpoint};
use super::writer::ShardWriter;
use super::{ParamStore, WeightsError};
use crate::model::sd::{
    AutoencoderKLConfig, ClipTextConfig, ClipTextModel, LoraBranchConfig, Method, OneStepConfig, UNet2DConditionConfig,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreDType {
    #[default]
    F16,
    F32,
}

pub struct SdConvertOptions {
    /// diffusers folder with `unet/`, `vae/`, `text_encoder/`, `tokenizer/`.
    pub base: PathBuf,
    /// `osediff.pkl` / `pisa_sr.pkl`.
    pub lora: PathBuf,
    pub method: Method,
    pub out: PathBuf,
    /// OSEDiff only; `None` = the null prompt "".
    pub prompt: Option<String>,
    pub model_id: Option<String>,
    pub dtype: StoreDType,
    /// `--quantize`: which tensors are stored as q8 / q4 (format v2); `None`: all in `dtype`.
    pub quantize: Option<Plan>,
}

const OSEDIFF_UNET_ADAPTERS: [&str; 3] = ["default_encoder", "default_decoder", "default_others"];
const OSEDIFF_VAE_ADAPTERS: [&str; 1] = ["default_encoder"];
const PISA_PIX: [&str; 3] = ["default_encoder_pix", "default_decoder_pix", "default_others_pix"];
const PISA_SEM: [&str; 3] = ["default_encoder_sem", "default_decoder_sem", "default_others_sem"];

fn in_file(file: &Path) -> impl Fn(WeightsError) -> WeightsError + '_ {
    move |e| WeightsError::Convert(format!("{}: {e}", file.display()))
}

/// Every adapter must be one the method defines, and each must list its targets.
fn check_adapters(state: &BTreeMap<String, HostTensor>, allowed: &[&str], what: &str, file: &Path) -> Result<(), WeightsError> {
    for name in adapter_names(state) {
        if !allowed.contains(&name.as_str()) {
            return Err(WeightsError::Convert(format!(
                "{}: {what} has an unknown LoRA adapter {name:?} (expected {allowed:?}): is this the right --method?",
                file.display()
            )));
        }
    }
    for key in state.keys() {
        let lora = key.contains(".lora_A.") || key.contains(".lora_B.");
        if !lora && !key.contains(".base_layer.") {
            return Err(WeightsError::Convert(format!("{}: {what} has an unexpected tensor {key}", file.display())));
        }
    }
    Ok(())
}

fn rank(ckpt: &TorchCheckpoint, key: &str, file: &Path) -> Result<usize, WeightsError> {
    let r = ckpt.int(key).map_err(in_file(file))?;
    usize::try_from(r).ok().filter(|&r| r > 0).ok_or_else(|| WeightsError::Convert(format!("{}: {key} = {r}", file.display())))
}

fn read_checkpoint(file: &Path) -> Result<TorchCheckpoint, WeightsError> {
    let bytes = std::fs::read(file).map_err(|source| WeightsError::Io { path: file.display().to_string(), source })?;
    TorchCheckpoint::from_bytes(bytes).map_err(|e| {
        WeightsError::Convert(format!("{} is not a readable torch.save checkpoint ({e}): re-download it", file.display()))
    })
}

/// Keep PiSA-SR's semantic adapters as `{module}.lora_{A,B}.weight` in `store`, after checking
/// them against the base weights (one adapter per module, the checkpoint's rank).
fn keep_sem_lora(store: &mut ParamStore, state: &BTreeMap<String, HostTensor>, rank: usize, file: &Path) -> Result<usize, WeightsError> {
    let mut n = 0;
    for (key, a) in state {
        let Some(rest) = key.strip_suffix(".weight") else { continue };
        let Some((module, adapter)) = rest.split_once(".lora_A.") else { continue };
        if !PISA_SEM.contains(&adapter) {
            continue;
        }
        let b_key = format!("{module}.lora_B.{adapter}.weight");
        let b = state.get(&b_key).ok_or_else(|| WeightsError::Convert(format!("{}: {key} has no {b_key}", file.display())))?;
        let base = store
            .shape(&format!("{module}.weight"))
            .ok_or_else(|| WeightsError::Convert(format!("{}: LoRA target {module} is not a UNet weight", file.display())))?
            .to_vec();
        let ok = a.shape.len() == base.len()
            && a.shape[0] == rank
            && a.shape[1..] == base[1..]
            && b.shape.len() == base.len()
            && b.shape[0] == base[0]
            && b.shape[1] == rank
            && b.shape[2..].iter().all(|&d| d == 1);
        if !ok {
            return Err(WeightsError::Convert(format!(
                "{}: {module} ({adapter}): A {:?} and B {:?} do not form a rank-{rank} LoRA of a {base:?} weight",
                file.display(),
                a.shape,
                b.shape
            )));
        }
        let (a_name, b_name) = (format!("{module}.lora_A.weight"), format!("{module}.lora_B.weight"));
        if store.contains(&a_name) {
            return Err(WeightsError::Convert(format!("{}: {module} has two semantic LoRA adapters", file.display())));
        }
        store.insert(&a_name, &a.shape, a.values.clone());
        store.insert(&b_name, &b.shape, b.values.clone());
        n += 1;
    }
    Ok(n)
}

/// The last hidden state of the text encoder for `prompt`, `[1, 77, hidden]` (host f32).
pub fn prompt_embedding(base: &Path, prompt: &str) -> Result<(Vec<usize>, Vec<f32>), WeightsError> {
    let device = crate::device::cpu();
    let tokenizer = ClipTokenizer::from_dir(&base.join("tokenizer"))?;
    let ids = tokenizer.encode_padded(prompt)?;
    let dir = base.join("text_encoder");
    let (config, mut store) = load_component::<ClipTextConfig>(&dir, &device)?;
    let clip = ClipTextModel::load(&mut store, &config).map_err(in_file(&dir))?;
    store.finish().map_err(in_file(&dir))?;
    let emb = clip.forward_ids(&ids, &device);
    let shape = emb.dims().to_vec();
    let values = emb.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| WeightsError::Convert(format!("{e:?}")))?;
    Ok((shape, values))
}

struct Store {
    dtype: StoreDType,
    quantize: Option<Plan>,
}

fn write_tensor(w: &mut ShardWriter, name: &str, shape: &[usize], values: &[f32], how: &Store) -> Result<(), WeightsError> {
    if let Some(q) = how.quantize.and_then(|p| p.quant(sd_role(name, shape))) {
        return w.add_quantized(name, shape, values, q).map(drop);
    }
    match how.dtype {
        StoreDType::F16 => w.add_f16(name, shape, values),
        StoreDType::F32 => w.add_f32(name, shape, values),
    }
}

/// Write every tensor of `listing` (model order) from `store` under `prefix.`, then require
/// that nothing but `extra` (written after, sorted) is left.
fn write_component(
    w: &mut ShardWriter,
    mut store: ParamStore,
    listing: Vec<(String, Vec<usize>)>,
    prefix: &str,
    dir: &Path,
    how: &Store,
) -> Result<(), WeightsError> {
    for (name, shape) in listing {
        let values = store.take_values(&name, &shape).map_err(in_file(dir))?;
        write_tensor(w, &format!("{prefix}.{name}"), &shape, &values, how)?;
    }
    let lora: Vec<(String, Vec<usize>)> = store
        .remaining()
        .filter(|(n, _)| n.ends_with(".lora_A.weight") || n.ends_with(".lora_B.weight"))
        .map(|(n, s)| (n.to_string(), s.to_vec()))
        .collect();
    for (name, shape) in lora {
        let values = store.take_values(&name, &shape)?;
        write_tensor(w, &format!("{prefix}.{name}"), &shape, &values, how)?;
    }
    store.finish().map_err(in_file(dir))
}

pub fn convert_sd(opts: &SdConvertOptions) -> Result<Manifest, WeightsError> {
    let device = crate::device::cpu();
    let file = opts.lora.as_path();
    let ckpt = read_checkpoint(file)?;
    let (unet_dir, vae_dir) = (opts.base.join("unet"), opts.base.join("vae"));
    let (unet_cfg, mut unet) = load_component::<UNet2DConditionConfig>(&unet_dir, &device)?;
    let (vae_cfg, mut vae) = load_component::<AutoencoderKLConfig>(&vae_dir, &device)?;
    let mut sem_lora = None;
    let prompt = match opts.method {
        Method::OseDiff => {
            let state = ckpt.tensor_dict("state_dict_unet").map_err(in_file(file))?;
            check_adapters(&state, &OSEDIFF_UNET_ADAPTERS, "state_dict_unet", file)?;
            for (part, adapter) in ["encoder", "decoder", "others"].iter().zip(OSEDIFF_UNET_ADAPTERS) {
                let modules = ckpt.string_list(&format!("unet_lora_{part}_modules")).map_err(in_file(file))?;
                check_targets(&state, &modules, adapter).map_err(in_file(file))?;
            }
            let r = rank(&ckpt, "rank_unet", file)?;
            merge_peft(&mut unet, &state, &OSEDIFF_UNET_ADAPTERS, r, PEFT_DEFAULT_ALPHA).map_err(in_file(file))?;

            let state = ckpt.tensor_dict("state_dict_vae").map_err(in_file(file))?;
            check_adapters(&state, &OSEDIFF_VAE_ADAPTERS, "state_dict_vae", file)?;
            let modules = ckpt.string_list("vae_lora_encoder_modules").map_err(in_file(file))?;
            check_targets(&state, &modules, OSEDIFF_VAE_ADAPTERS[0]).map_err(in_file(file))?;
            let r = rank(&ckpt, "rank_vae", file)?;
            merge_peft(&mut vae, &state, &OSEDIFF_VAE_ADAPTERS, r, PEFT_DEFAULT_ALPHA).map_err(in_file(file))?;
            opts.prompt.clone().unwrap_or_default()
        }
        Method::PisaSr => {
            if opts.prompt.as_deref().is_some_and(|p| !p.is_empty()) {
                return Err(WeightsError::Convert("PiSA-SR always uses the null prompt \"\": drop --prompt".into()));
            }
            let state = ckpt.tensor_dict("state_dict_unet").map_err(in_file(file))?;
            let all: Vec<&str> = PISA_PIX.iter().chain(&PISA_SEM).copied().collect();
            check_adapters(&state, &all, "state_dict_unet", file)?;
            for part in ["encoder", "decoder", "others"] {
                for kind in ["pix", "sem"] {
                    let modules = ckpt.string_list(&format!("unet_lora_{part}_modules_{kind}")).map_err(in_file(file))?;
                    check_targets(&state, &modules, &format!("default_{part}_{kind}")).map_err(in_file(file))?;
                }
            }
            let r_pix = rank(&ckpt, "lora_rank_unet_pix", file)?;
            let r_sem = rank(&ckpt, "lora_rank_unet_sem", file)?;
            merge_peft(&mut unet, &state, &PISA_PIX, r_pix, PEFT_DEFAULT_ALPHA).map_err(in_file(file))?;
            keep_sem_lora(&mut unet, &state, r_sem, file)?;
            sem_lora = Some(LoraBranchConfig { rank: r_sem, alpha: PEFT_DEFAULT_ALPHA });
            String::new()
        }
    };
    let (emb_shape, emb) = prompt_embedding(&opts.base, &prompt)?;
    if emb_shape.last() != Some(&unet_cfg.cross_attention_dim) {
        return Err(WeightsError::Convert(format!(
            "the text encoder gives {emb_shape:?}, the UNet expects width {}",
            unet_cfg.cross_attention_dim
        )));
    }

    let config = OneStepConfig { method: opts.method, scale: 4, prompt: prompt.clone(), unet: unet_cfg.clone(), vae: vae_cfg.clone(), sem_lora };
    let mut w = ShardWriter::create(&opts.out)?;
    let how = Store { dtype: opts.dtype, quantize: opts.quantize };
    write_component(&mut w, unet, unet_cfg.tensor_shapes(), "unet", &unet_dir, &how)?;
    write_component(&mut w, vae, vae_cfg.tensor_shapes(), "vae", &vae_dir, &how)?;
    write_tensor(&mut w, "text_embedding", &emb_shape, &emb, &how)?;
    let arch = opts.method.architecture();
    let model_id = opts.model_id.clone().unwrap_or_else(|| arch.to_string());
    let mut source = serde_json::json!({
        "converter": "onestep convert sd",
        "base": opts.base.display().to_string(),
        "lora": opts.lora.display().to_string(),
        "prompt": prompt,
        "merged": match opts.method {
            Method::OseDiff => vec!["vae encoder LoRA", "unet LoRA (encoder, decoder, others)", "unet conv_in"],
            Method::PisaSr => vec!["unet conv_in", "unet pixel LoRA"],
        },
    });
    if let Some(p) = opts.quantize {
        source["quantize"] = p.mode.to_string().into();
    }
    let config = serde_json::to_value(&config).expect("config serialises");
    w.finish(&model_id, arch, config, source)
}
