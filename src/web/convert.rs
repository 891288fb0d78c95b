//! `addDiffusionModel(files, opts)`: the official SD 2.1-base folder and `pisa_sr.pkl` /
//! `osediff.pkl`, picked by the person, converted in this worker by the CLI's own converter
//! ([`SdConversion`]) and stored in IndexedDB as a downloaded model is (its shards, then its
//! record last, so a closed tab leaves no half-registered model). The files are read in
//! slices (FileReaderSync), never whole, and never leave the device.

use wasm_bindgen::prelude::*;

use super::glue::{self, aborted, get, object};
use super::shards::{LOCAL_SCHEME, MODELS, SHARDS, model_record, storage_room};
use crate::weights::WeightsError;
use crate::weights::folder::Folder;
use crate::weights::quant::{Mode, Plan};
use crate::weights::sd_convert::{SdConversion, SdSettings, Storage, StoreDType};
use crate::weights::writer::ShardWriter;

/// The picked files by their paths inside the picked folder.
struct PickedFolder {
    name: String,
    files: Vec<(String, JsValue, u64)>,
}

impl PickedFolder {
    /// `entries`: `[path, File]` pairs. A common first folder (the one picked) is dropped.
    fn new(entries: &js_sys::Array) -> Result<Self, String> {
        let mut files = Vec::new();
        for e in entries.iter() {
            let pair = js_sys::Array::from(&e);
            let path = pair.get(0).as_string().ok_or("addDiffusionModel: each file is a [path, File] pair")?;
            let file = pair.get(1);
            if !glue::is_blob(&file) {
                return Err(format!("addDiffusionModel: {path} is not a File"));
            }
            let size = glue::blob_size(&file) as u64;
            files.push((path.trim_start_matches('/').to_string(), file, size));
        }
        let first = |p: &str| p.split_once('/').map(|(a, _)| a.to_string());
        let top = files.first().and_then(|(p, ..)| first(p));
        let name = match top {
            Some(t) if files.iter().all(|(p, ..)| first(p).as_deref() == Some(t.as_str())) => {
                for f in &mut files {
                    f.0 = f.0[t.len() + 1..].to_string();
                }
                t
            }
            _ => "the folder".to_string(),
        };
        Ok(Self { name, files })
    }

    fn get(&self, path: &str) -> Option<&(String, JsValue, u64)> {
        self.files.iter().find(|(p, ..)| p == path)
    }
}

impl Folder for PickedFolder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn files(&self) -> Vec<String> {
        self.files.iter().map(|(p, ..)| p.clone()).collect()
    }

    fn len(&self, path: &str) -> Option<u64> {
        self.get(path).map(|f| f.2)
    }

    fn read_at(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        let (_, file, size) = self.get(path).ok_or_else(|| WeightsError::Convert(format!("{} has no {path}", self.name)))?;
        if offset + len > *size {
            return Err(WeightsError::Convert(format!("{}/{path}: bytes {offset}..{} of {size}", self.name, offset + len)));
        }
        let bytes = glue::read_slice(file, offset as f64, (offset + len) as f64).map_err(|e| {
            WeightsError::Convert(format!("cannot read {}/{path} ({}): was it moved or changed?", self.name, glue::error_message(&e)))
        })?;
        Ok(bytes.to_vec())
    }
}

/// A converter error as one line for a person ("conversion failed:" adds nothing here).
fn line(e: WeightsError) -> String {
    match e {
        WeightsError::Convert(m) => m,
        e => e.to_string(),
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.0} MB", bytes / 1e6)
}

/// Shards of conversions that never finished (a closed tab): no record names their prefix.
async fn drop_orphans() -> Result<(), JsValue> {
    let records = glue::idb_values(MODELS).await?;
    let live: Vec<String> = js_sys::Array::from(&records).iter().filter_map(|r| get(&r, "key").as_string()).collect();
    let keys = glue::idb_keys(SHARDS, "local-").await?;
    let mut prefixes: Vec<String> =
        js_sys::Array::from(&keys).iter().filter_map(|k| k.as_string()).filter_map(|k| k.split_once('/').map(|(p, _)| format!("{p}/"))).collect();
    prefixes.dedup();
    for p in prefixes.into_iter().filter(|p| !live.contains(p)) {
        glue::idb_delete_prefix(SHARDS, &p).await?;
    }
    Ok(())
}

fn report(f: &Option<js_sys::Function>, stage: &str, done: f64, total: f64) {
    if let Some(f) = f {
        let _ = f.call1(&JsValue::NULL, &object(&[("stage", stage.into()), ("bytesDone", done.into()), ("bytesTotal", total.into())]));
    }
}

async fn put_shard(key: &str, bytes: &[u8], need: f64) -> Result<(), String> {
    glue::idb_put(SHARDS, key, &js_sys::Uint8Array::from(bytes)).await.map(drop).map_err(|e| match glue::error_name(&e).as_str() {
        "QuotaExceededError" => format!("the browser's storage is full: this model needs about {} free; free some space and add it again", mb(need)),
        _ => format!("cannot store the converted weights: {}", glue::error_message(&e)),
    })
}

/// Convert every tensor, storing each finished shard under `prefix`, then the model's record
/// (last: until it is stored, nothing names these shards). Returns the record's URL.
async fn store(
    folder: &PickedFolder,
    mut conv: SdConversion,
    prefix: &str,
    need: f64,
    on_progress: &Option<js_sys::Function>,
    signal: &JsValue,
) -> Result<(String, crate::weights::Manifest), String> {
    let key = |i: usize| format!("{prefix}{i:05}");
    let total = conv.bytes_total as f64;
    let mut w = ShardWriter::in_memory();
    let mut last_yield = glue::now();
    while conv.step(folder, &mut w).map_err(line)? {
        for (i, bytes) in w.take_ready() {
            put_shard(&key(i), &bytes, need).await?;
        }
        // Let a Cancel (a message to this worker) in.
        if glue::now() - last_yield > 100.0 {
            report(on_progress, "convert", conv.bytes_done as f64, total);
            glue::next_task().await;
            last_yield = glue::now();
        }
        if aborted(signal) {
            return Err("cancelled".into());
        }
    }
    let manifest = conv.finish(&mut w).map_err(line)?;
    for (i, bytes) in w.take_ready() {
        put_shard(&key(i), &bytes, need).await?;
    }
    report(on_progress, "convert", total, total);
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    let url = format!("{LOCAL_SCHEME}{}/{}", manifest.architecture, &prefix[6..prefix.len() - 1]);
    let rec = model_record(&url, &manifest, &text, prefix, true);
    glue::idb_put(MODELS, &url, &rec)
        .await
        .map_err(|e| format!("cannot register the converted model: {}", glue::error_message(&e)))?;
    Ok((url, manifest))
}

async fn convert(entries: js_sys::Array, opts: JsValue) -> Result<JsValue, String> {
    let signal = get(&opts, "signal");
    let on_progress = get(&opts, "onProgress").dyn_into::<js_sys::Function>().ok();
    let quantize = match get(&opts, "quantize").as_string().as_deref() {
        None | Some("mixed") => Some(Plan { mode: Mode::Mixed, block: None }),
        Some("q8") => Some(Plan { mode: Mode::Q8, block: None }),
        Some("f16") | Some("none") => None,
        Some(other) => return Err(format!("quantize must be \"mixed\", \"q8\" or \"f16\", not {other:?}")),
    };
    // First: what a conversion cut short (a closed tab) left, whatever happens to this one.
    drop_orphans().await.map_err(|e| format!("cannot use the weight cache: {}", glue::error_message(&e)))?;
    let folder = PickedFolder::new(&entries)?;
    let pkl: Vec<&String> = folder.files.iter().map(|(p, ..)| p).filter(|p| !p.contains('/') && p.ends_with(".pkl")).collect();
    let pkl = match pkl.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(format!("{} has no .pkl checkpoint: put pisa_sr.pkl or osediff.pkl next to unet/ and vae/", folder.name)),
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            return Err(format!("{} has {} .pkl files ({}): keep only the checkpoint to add", folder.name, many.len(), names.join(", ")));
        }
    };
    report(&on_progress, "read", 0.0, 0.0);
    let lora = folder.read(&pkl).map_err(line)?;
    let settings = SdSettings {
        method: None,
        prompt: None,
        model_id: None,
        storage: Storage { dtype: StoreDType::F16, quantize },
    };
    let conv = SdConversion::start(&folder, lora, &pkl, settings).map_err(line)?;
    let need = conv.output_bytes() as f64;
    if let Some(room) = storage_room().await.filter(|r| need > r.free) {
        return Err(format!(
            "not enough storage to add this model: it needs {} and the browser allows {} more (quota {}, used {}); free some space and add it again",
            mb(need),
            mb(room.free),
            mb(room.quota),
            mb(room.usage)
        ));
    }
    let prefix = format!("local-{}/", glue::random_id());
    // Any failure from here on deletes what was stored under `prefix`.
    let stored = store(&folder, conv, &prefix, need, &on_progress, &signal).await;
    let (url, manifest) = match stored {
        Ok(v) => v,
        Err(e) => {
            let _ = glue::idb_delete_prefix(SHARDS, &prefix).await;
            return Err(e);
        }
    };
    Ok(object(&[
        ("url", url.into()),
        ("modelId", manifest.model_id.as_str().into()),
        ("architecture", manifest.architecture.as_str().into()),
        ("bytes", (manifest.total_bytes() as f64).into()),
        ("shards", (manifest.shards.len() as f64).into()),
    ]))
}

/// Convert the official diffusion files a person picked into a model stored on this device.
/// `files`: `[path, File]` pairs (paths inside the picked folder); options `{ quantize:
/// "mixed" | "q8" | "f16", onProgress, signal }`. Resolves to `{ url, modelId, architecture,
/// bytes, shards }`; `Upscaler.load(url)` then runs it. Runs in a worker only.
#[wasm_bindgen(js_name = addDiffusionModel)]
pub async fn add_diffusion_model(files: js_sys::Array, opts: JsValue) -> Result<JsValue, JsError> {
    convert(files, opts).await.map_err(|e| JsError::new(&e))
}
