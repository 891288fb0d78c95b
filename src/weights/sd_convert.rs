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
//!
//! Streamed: [`SdConversion`] reads one base tensor at a time from a [`Folder`] (a directory,
//! or the files picked in the browser), merges what targets it, and writes it, so memory holds
//! the LoRA checkpoint, one tensor and one shard; the text encoder runs one layer at a time.
//! The CLI and the page drive the same steps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::clip_tokenizer::ClipTokenizer;
use super::folder::Folder;
use super::lora::{HostMerges, PEFT_DEFAULT_ALPHA, adapter_names, check_targets};
use super::manifest::Manifest;
use super::quant::Plan;
use super::role::sd_role;
use super::safetensors_index::Component;
use super::torch_pickle::{HostTensor, TorchCheckpoint};
use super::writer::ShardWriter;
use super::{ParamStore, WeightsError};
use crate::model::sd::{
    AutoencoderKLConfig, ClipEncoderLayer, ClipTextConfig, LoraBranchConfig, Method, OneStepConfig, UNet2DConditionConfig,
    causal_mask,
};
use crate::model::sd::nn::LayerNorm;

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
    /// `None`: read from the checkpoint.
    pub method: Option<Method>,
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

fn in_file(file: &str) -> impl Fn(WeightsError) -> WeightsError + '_ {
    move |e| WeightsError::Convert(format!("{file}: {e}"))
}

/// Every adapter must be one the method defines, and each must list its targets.
fn check_adapters(state: &BTreeMap<String, HostTensor>, allowed: &[&str], what: &str, file: &str) -> Result<(), WeightsError> {
    for name in adapter_names(state) {
        if !allowed.contains(&name.as_str()) {
            return Err(WeightsError::Convert(format!(
                "{file}: {what} has an unknown LoRA adapter {name:?} (expected {allowed:?}): is this the right --method?"
            )));
        }
    }
    for key in state.keys() {
        let lora = key.contains(".lora_A.") || key.contains(".lora_B.");
        if !lora && !key.contains(".base_layer.") {
            return Err(WeightsError::Convert(format!("{file}: {what} has an unexpected tensor {key}")));
        }
    }
    Ok(())
}

fn rank(ckpt: &TorchCheckpoint, key: &str, file: &str) -> Result<usize, WeightsError> {
    let r = ckpt.int(key).map_err(in_file(file))?;
    usize::try_from(r).ok().filter(|&r| r > 0).ok_or_else(|| WeightsError::Convert(format!("{file}: {key} = {r}")))
}

fn read_checkpoint(bytes: Vec<u8>, file: &str) -> Result<TorchCheckpoint, WeightsError> {
    TorchCheckpoint::from_bytes(bytes)
        .map_err(|e| WeightsError::Convert(format!("{file} is not a readable torch.save checkpoint ({e}): re-download it")))
}

/// Which method a checkpoint is for, from the keys only one of them saves.
pub fn detect_method(ckpt: &TorchCheckpoint, file: &str) -> Result<Method, WeightsError> {
    match (ckpt.get("lora_rank_unet_pix").is_some(), ckpt.get("rank_unet").is_some() && ckpt.get("state_dict_vae").is_some()) {
        (true, false) => Ok(Method::PisaSr),
        (false, true) => Ok(Method::OseDiff),
        _ => Err(WeightsError::Convert(format!(
            "{file} is neither a PiSA-SR checkpoint (pisa_sr.pkl) nor an OSEDiff one (osediff.pkl)"
        ))),
    }
}

/// PiSA-SR's semantic adapters as `{module}.lora_{A,B}.weight` (sorted by name), after checking
/// them against the base weights (one adapter per module, the checkpoint's rank).
fn sem_adapters(unet: &Component, state: &BTreeMap<String, HostTensor>, rank: usize, file: &str) -> Result<Vec<(String, HostTensor)>, WeightsError> {
    let mut out = BTreeMap::new();
    for (key, a) in state {
        let Some(rest) = key.strip_suffix(".weight") else { continue };
        let Some((module, adapter)) = rest.split_once(".lora_A.") else { continue };
        if !PISA_SEM.contains(&adapter) {
            continue;
        }
        let b_key = format!("{module}.lora_B.{adapter}.weight");
        let b = state.get(&b_key).ok_or_else(|| WeightsError::Convert(format!("{file}: {key} has no {b_key}")))?;
        let base = unet
            .shape(&format!("{module}.weight"))
            .ok_or_else(|| WeightsError::Convert(format!("{file}: LoRA target {module} is not a UNet weight")))?
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
                "{file}: {module} ({adapter}): A {:?} and B {:?} do not form a rank-{rank} LoRA of a {base:?} weight",
                a.shape,
                b.shape
            )));
        }
        let (a_name, b_name) = (format!("{module}.lora_A.weight"), format!("{module}.lora_B.weight"));
        if out.contains_key(&a_name) {
            return Err(WeightsError::Convert(format!("{file}: {module} has two semantic LoRA adapters")));
        }
        out.insert(a_name, a.clone());
        out.insert(b_name, b.clone());
    }
    Ok(out.into_iter().collect())
}

/// OSEDiff and PiSA-SR are trained on SD 2.1-base: name the other families plainly instead of
/// failing later on a shape.
fn check_family(folder: &dyn Folder) -> Result<(), WeightsError> {
    let name = folder.name();
    let files = folder.files();
    for dir in ["unet", "vae", "text_encoder", "tokenizer"] {
        if !files.iter().any(|f| f.starts_with(&format!("{dir}/"))) {
            return Err(WeightsError::Convert(format!(
                "{name} has no {dir}/ folder: pick the diffusers folder of Stable Diffusion 2.1-base (model_index.json, unet/, vae/, text_encoder/, tokenizer/)"
            )));
        }
    }
    let text = folder.read("unet/config.json")?;
    let cfg: serde_json::Value = serde_json::from_slice(&text).map_err(|e| WeightsError::Convert(format!("{name}/unet/config.json: {e}")))?;
    let want = "OSEDiff and PiSA-SR need Stable Diffusion 2.1-base (stabilityai/stable-diffusion-2-1-base)";
    if folder.has("text_encoder_2/config.json") || cfg.get("addition_embed_type").is_some_and(|v| !v.is_null()) {
        return Err(WeightsError::Convert(format!("{name} is a Stable Diffusion XL folder: {want}")));
    }
    if cfg.get("use_linear_projection") != Some(&serde_json::Value::Bool(true)) || cfg.get("attention_head_dim").is_some_and(|v| v.is_number()) {
        return Err(WeightsError::Convert(format!("{name} is a Stable Diffusion 1.x folder (its UNet is not the 2.x layout): {want}")));
    }
    Ok(())
}

/// The last hidden state of the text encoder for `prompt`, `[1, 77, hidden]` (host f32), one
/// layer at a time: the embedding rows of the prompt's tokens only, then each layer loaded,
/// run and dropped (SD 2.1's encoder is 1.4 GB in f32; this holds one 50 MB layer).
pub fn prompt_embedding(folder: &dyn Folder, prompt: &str) -> Result<(Vec<usize>, Vec<f32>), WeightsError> {
    use burn::tensor::{Tensor, TensorData};
    let device = crate::device::cpu();
    let tok = |f: &str| folder.read_text(&format!("tokenizer/{f}"));
    let special = tok("special_tokens_map.json").ok();
    let vocab_name = format!("{}/tokenizer/vocab.json", folder.name());
    let tokenizer = ClipTokenizer::from_parts(&tok("vocab.json")?, &tok("merges.txt")?, special.as_deref(), &vocab_name)?;
    let ids = tokenizer.encode_padded(prompt)?;
    let (cfg, mut te) = Component::open::<ClipTextConfig>(folder, "text_encoder")?;
    let what = format!("{}/text_encoder", folder.name());
    let d = cfg.hidden_size;
    let l = ids.len();
    if l > cfg.max_position_embeddings {
        return Err(WeightsError::Convert(format!("{what}: {l} tokens, {} positions", cfg.max_position_embeddings)));
    }
    let p = "text_model.embeddings";
    te.discard(&format!("{p}.position_ids"));
    let rows: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let tokens = te.read_rows(folder, &format!("{p}.token_embedding.weight"), [cfg.vocab_size, d], &rows).map_err(in_file(&what))?;
    let positions = te.read(folder, &format!("{p}.position_embedding.weight"), &[cfg.max_position_embeddings, d]).map_err(in_file(&what))?;
    // Every layer and the final norm through a small store of their own tensors.
    let mut load = |listing: Vec<(String, Vec<usize>)>| -> Result<ParamStore, WeightsError> {
        let mut store = ParamStore::new(&device);
        for (name, shape) in listing {
            let v = te.read(folder, &name, &shape).map_err(in_file(&what))?;
            store.insert(&name, &shape, v);
        }
        Ok(store)
    };
    let tokens = Tensor::<2>::from_data(TensorData::new(tokens, [l, d]), &device);
    let positions = Tensor::<2>::from_data(TensorData::new(positions, [cfg.max_position_embeddings, d]), &device);
    let mut x = (tokens + positions.narrow(0, 0, l)).unsqueeze::<3>();
    let mask = causal_mask(l, &device);
    for i in 0..cfg.num_hidden_layers {
        let mut dry = ParamStore::dry_run(&device);
        ClipEncoderLayer::load(&mut dry, &cfg, i)?;
        let mut store = load(dry.requests().to_vec())?;
        let layer = ClipEncoderLayer::load(&mut store, &cfg, i)?;
        store.finish()?;
        x = layer.forward(x, &mask);
    }
    let norm = "text_model.final_layer_norm";
    let mut dry = ParamStore::dry_run(&device);
    LayerNorm::load(&mut dry, norm, d, cfg.layer_norm_eps)?;
    let mut store = load(dry.requests().to_vec())?;
    let x = LayerNorm::load(&mut store, norm, d, cfg.layer_norm_eps)?.forward(x);
    te.finish()?;
    let shape = x.dims().to_vec();
    let values = x.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| WeightsError::Convert(format!("{e:?}")))?;
    Ok((shape, values))
}

/// How tensors are stored: f16 / f32, or quantized by the plan's roles.
#[derive(Clone, Copy)]
pub struct Storage {
    pub dtype: StoreDType,
    pub quantize: Option<Plan>,
}

fn write_tensor(w: &mut ShardWriter, name: &str, shape: &[usize], values: &[f32], how: Storage) -> Result<(), WeightsError> {
    if let Some(q) = how.quantize.and_then(|p| p.quant(sd_role(name, shape))) {
        return w.add_quantized(name, shape, values, q).map(drop);
    }
    match how.dtype {
        StoreDType::F16 => w.add_f16(name, shape, values),
        StoreDType::F32 => w.add_f32(name, shape, values),
    }
}

/// What a conversion is asked for, wherever its files come from.
pub struct SdSettings {
    /// `None`: read it from the checkpoint.
    pub method: Option<Method>,
    /// OSEDiff only; `None` = the null prompt "".
    pub prompt: Option<String>,
    pub model_id: Option<String>,
    pub storage: Storage,
}

enum Item {
    Unet(String, Vec<usize>),
    Vae(String, Vec<usize>),
    /// Host tensors written as they are (PiSA-SR's semantic LoRA, the prompt embedding).
    Host(String, HostTensor),
}

/// One conversion, a tensor per [`SdConversion::step`]: the CLI runs the steps to the end, the
/// browser stores each finished shard between steps.
pub struct SdConversion {
    method: Method,
    prompt: String,
    config: serde_json::Value,
    source: serde_json::Value,
    model_id: String,
    unet: Component,
    vae: Component,
    unet_merges: HostMerges,
    vae_merges: Option<HostMerges>,
    items: std::vec::IntoIter<Item>,
    storage: Storage,
    lora_name: String,
    /// Input bytes (the base tensors) and how many are converted.
    pub bytes_total: u64,
    pub bytes_done: u64,
}

impl SdConversion {
    /// Read the checkpoint (`lora`, named `lora_name`), check the folder, index its weights and
    /// compute the prompt embedding: everything but the weights themselves.
    pub fn start(folder: &dyn Folder, lora: Vec<u8>, lora_name: &str, s: SdSettings) -> Result<Self, WeightsError> {
        let file = lora_name;
        let ckpt = read_checkpoint(lora, file)?;
        let method = match s.method {
            Some(m) => m,
            None => detect_method(&ckpt, file)?,
        };
        check_family(folder)?;
        let (unet_cfg, unet) = Component::open::<UNet2DConditionConfig>(folder, "unet")?;
        let (vae_cfg, vae) = Component::open::<AutoencoderKLConfig>(folder, "vae")?;
        let mut sem = Vec::new();
        let mut sem_lora = None;
        let (unet_merges, vae_merges, prompt) = match method {
            Method::OseDiff => {
                let state = ckpt.tensor_dict("state_dict_unet").map_err(in_file(file))?;
                check_adapters(&state, &OSEDIFF_UNET_ADAPTERS, "state_dict_unet", file)?;
                for (part, adapter) in ["encoder", "decoder", "others"].iter().zip(OSEDIFF_UNET_ADAPTERS) {
                    let modules = ckpt.string_list(&format!("unet_lora_{part}_modules")).map_err(in_file(file))?;
                    check_targets(&state, &modules, adapter).map_err(in_file(file))?;
                }
                let r = rank(&ckpt, "rank_unet", file)?;
                let unet_m = HostMerges::new(&state, &OSEDIFF_UNET_ADAPTERS, r, PEFT_DEFAULT_ALPHA).map_err(in_file(file))?;
                let state = ckpt.tensor_dict("state_dict_vae").map_err(in_file(file))?;
                check_adapters(&state, &OSEDIFF_VAE_ADAPTERS, "state_dict_vae", file)?;
                let modules = ckpt.string_list("vae_lora_encoder_modules").map_err(in_file(file))?;
                check_targets(&state, &modules, OSEDIFF_VAE_ADAPTERS[0]).map_err(in_file(file))?;
                let r = rank(&ckpt, "rank_vae", file)?;
                let vae_m = HostMerges::new(&state, &OSEDIFF_VAE_ADAPTERS, r, PEFT_DEFAULT_ALPHA).map_err(in_file(file))?;
                (unet_m, Some(vae_m), s.prompt.clone().unwrap_or_default())
            }
            Method::PisaSr => {
                if s.prompt.as_deref().is_some_and(|p| !p.is_empty()) {
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
                let unet_m = HostMerges::new(&state, &PISA_PIX, r_pix, PEFT_DEFAULT_ALPHA).map_err(in_file(file))?;
                sem = sem_adapters(&unet, &state, r_sem, file)?;
                sem_lora = Some(LoraBranchConfig { rank: r_sem, alpha: PEFT_DEFAULT_ALPHA });
                (unet_m, None, String::new())
            }
        };
        drop(ckpt);
        let (emb_shape, emb) = prompt_embedding(folder, &prompt)?;
        if emb_shape.last() != Some(&unet_cfg.cross_attention_dim) {
            return Err(WeightsError::Convert(format!(
                "the text encoder gives {emb_shape:?}, the UNet expects width {}",
                unet_cfg.cross_attention_dim
            )));
        }
        let (unet_list, vae_list) = (unet_cfg.tensor_shapes(), vae_cfg.tensor_shapes());
        // Every tensor present with its shape, and nothing else, before any work.
        for (comp, list) in [(&unet, &unet_list), (&vae, &vae_list)] {
            for (n, s) in list {
                comp.check(n, s)?;
            }
            comp.check_only(&list.iter().map(|(n, _)| n.as_str()).collect())?;
        }
        let mut items: Vec<Item> = unet_list.into_iter().map(|(n, s)| Item::Unet(n, s)).collect();
        items.extend(sem.into_iter().map(|(n, t)| Item::Host(format!("unet.{n}"), t)));
        items.extend(vae_list.into_iter().map(|(n, s)| Item::Vae(n, s)));
        items.push(Item::Host("text_embedding".into(), HostTensor { shape: emb_shape, values: emb }));
        let bytes_total = items
            .iter()
            .map(|i| match i {
                Item::Unet(n, _) => unet.bytes_of(n),
                Item::Vae(n, _) => vae.bytes_of(n),
                Item::Host(..) => 0,
            })
            .sum();

        let arch = method.architecture();
        let config = OneStepConfig { method, scale: 4, prompt: prompt.clone(), unet: unet_cfg, vae: vae_cfg, sem_lora };
        let mut source = serde_json::json!({
            "converter": "onestep convert sd",
            "base": folder.name(),
            "lora": lora_name,
            "prompt": prompt,
            "merged": match method {
                Method::OseDiff => vec!["vae encoder LoRA", "unet LoRA (encoder, decoder, others)", "unet conv_in"],
                Method::PisaSr => vec!["unet conv_in", "unet pixel LoRA"],
            },
        });
        if let Some(p) = s.storage.quantize {
            source["quantize"] = p.mode.to_string().into();
        }
        Ok(Self {
            method,
            prompt,
            config: serde_json::to_value(&config).expect("config serialises"),
            source,
            model_id: s.model_id.unwrap_or_else(|| arch.to_string()),
            unet,
            vae,
            unet_merges,
            vae_merges,
            items: items.into_iter(),
            storage: s.storage,
            lora_name: lora_name.to_string(),
            bytes_total,
            bytes_done: 0,
        })
    }

    /// What the stored model will take, bytes (the shards, before alignment padding).
    pub fn output_bytes(&self) -> u64 {
        let stored = |name: &str, shape: &[usize]| -> u64 {
            let n = shape.iter().product::<usize>() as u64;
            match self.storage.quantize.and_then(|p| p.quant(sd_role(name, shape))) {
                Some(q) => q.dtype.byte_len(shape, Some(q.block)).unwrap_or(n * 2),
                None => n * if self.storage.dtype == StoreDType::F32 { 4 } else { 2 },
            }
        };
        self.items
            .as_slice()
            .iter()
            .map(|i| match i {
                Item::Unet(n, s) => stored(&format!("unet.{n}"), s),
                Item::Vae(n, s) => stored(&format!("vae.{n}"), s),
                Item::Host(n, t) => stored(n, &t.shape),
            })
            .sum()
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Convert and write the next tensor; `false` when none is left.
    pub fn step(&mut self, folder: &dyn Folder, w: &mut ShardWriter) -> Result<bool, WeightsError> {
        let Some(item) = self.items.next() else { return Ok(false) };
        let (name, shape, values) = match item {
            Item::Unet(n, shape) => {
                let mut v = self.unet.read(folder, &n, &shape)?;
                self.unet_merges.apply(&n, &shape, &mut v).map_err(in_file(&self.lora_name))?;
                self.bytes_done += self.unet.bytes_of(&n);
                (format!("unet.{n}"), shape, v)
            }
            Item::Vae(n, shape) => {
                let mut v = self.vae.read(folder, &n, &shape)?;
                if let Some(m) = &mut self.vae_merges {
                    m.apply(&n, &shape, &mut v).map_err(in_file(&self.lora_name))?;
                }
                self.bytes_done += self.vae.bytes_of(&n);
                (format!("vae.{n}"), shape, v)
            }
            Item::Host(n, t) => (n, t.shape, t.values),
        };
        write_tensor(w, &name, &shape, &values, self.storage)?;
        Ok(true)
    }

    /// After the last step: every input tensor used, every LoRA target found; the manifest.
    pub fn finish(self, w: &mut ShardWriter) -> Result<Manifest, WeightsError> {
        self.unet.finish()?;
        self.vae.finish()?;
        self.unet_merges.finish(&self.lora_name)?;
        if let Some(m) = &self.vae_merges {
            m.finish(&self.lora_name)?;
        }
        w.finish(&self.model_id, self.method.architecture(), self.config, self.source)
    }
}

/// `onestep convert sd`: the folder and checkpoint on disk, the model written to `opts.out`.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_sd(opts: &SdConvertOptions) -> Result<Manifest, WeightsError> {
    let folder = super::folder::DiskFolder::new(&opts.base)?;
    let lora = std::fs::read(&opts.lora).map_err(|source| WeightsError::Io { path: opts.lora.display().to_string(), source })?;
    let settings = SdSettings {
        method: opts.method,
        prompt: opts.prompt.clone(),
        model_id: opts.model_id.clone(),
        storage: Storage { dtype: opts.dtype, quantize: opts.quantize },
    };
    let mut conv = SdConversion::start(&folder, lora, &opts.lora.display().to_string(), settings)?;
    let mut w = ShardWriter::create(&opts.out)?;
    while conv.step(&folder, &mut w)? {}
    conv.finish(&mut w)
}
