//! Weight delivery in the browser: the manifest from its URL, each shard from IndexedDB or
//! the network (streamed, status / type / length / SHA-256 checked before it is stored or
//! used), uploaded to the device as soon as it is verified and then dropped, so the wasm
//! heap holds one shard at a time. Shards are cached one by one under the manifest's
//! SHA-256, so an interrupted download resumes at the first missing shard.

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

use super::glue::{self, aborted, get, get_f64, object};
use crate::weights::{Manifest, ParamStore, WeightsError, check_digest, check_size};
use burn::tensor::Device;

pub(crate) const SHARDS: &str = "shards";
pub(crate) const MODELS: &str = "models";
/// The URL scheme of models made on this device (`addDiffusionModel`): they live in the cache
/// only, their shards under the record's own key.
pub(crate) const LOCAL_SCHEME: &str = "onestep-local:";

/// What `Upscaler.load` was asked for.
pub struct LoadOptions {
    pub on_progress: Option<js_sys::Function>,
    pub signal: JsValue,
    /// Ask the browser to keep the cache under storage pressure.
    pub persist: bool,
    /// Largest piece of a tensor copied into the wasm heap at a time.
    pub block_bytes: u64,
    /// Where the weights go ("webgpu" or "cpu"), named in every progress report.
    pub backend: &'static str,
}

/// The default [`LoadOptions::block_bytes`]: 4 MiB (8 MiB once widened to f32).
pub const BLOCK_BYTES: u64 = 4 << 20;

/// Size and SHA-256 of a shard held by JavaScript, hashed in blocks so that the wasm heap never
/// holds the whole shard.
fn verify(index: usize, count: usize, shard: &crate::weights::ShardEntry, bytes: &js_sys::Uint8Array) -> Result<(), WeightsError> {
    let len = bytes.length() as u64;
    check_size(index, count, shard, len)?;
    let mut h = Sha256::new();
    let mut buf = Vec::new();
    for a in (0..len).step_by(BLOCK_BYTES as usize) {
        let b = (a + BLOCK_BYTES).min(len);
        buf.resize((b - a) as usize, 0);
        bytes.subarray(a as u32, b as u32).copy_to(&mut buf);
        h.update(&buf);
    }
    check_digest(index, count, shard, &hex::encode(h.finalize()))
}

/// How a load went: where the shards came from, and anything the caller should know.
#[derive(Default)]
pub struct LoadReport {
    pub from_cache: usize,
    pub from_network: usize,
    pub notices: Vec<String>,
}

fn mb(bytes: f64) -> String {
    format!("{:.0} MB", bytes / 1e6)
}

fn cancelled() -> String {
    "cancelled".into()
}

struct Progress<'a> {
    f: Option<&'a js_sys::Function>,
    backend: &'static str,
    shards: usize,
    bytes_total: f64,
}

impl Progress<'_> {
    fn report(&self, stage: &str, shard: usize, bytes_done: f64) {
        if let Some(f) = self.f {
            let p = object(&[
                ("stage", stage.into()),
                ("backend", self.backend.into()),
                ("shard", (shard as f64).into()),
                ("shards", (self.shards as f64).into()),
                ("bytesDone", bytes_done.into()),
                ("bytesTotal", self.bytes_total.into()),
            ]);
            let _ = f.call1(&JsValue::NULL, &p);
        }
    }
}

/// The last stage of a load, after [`load`]: the model is being built from the store.
pub fn report_built(manifest: &Manifest, opts: &LoadOptions) {
    let (n, bytes) = (manifest.shards.len(), manifest.total_bytes() as f64);
    Progress { f: opts.on_progress.as_ref(), backend: opts.backend, shards: n, bytes_total: bytes }.report("build", n, bytes);
}

/// The manifest's text: from the network, or from the cache when the network fails
/// (offline use of a model loaded before).
async fn manifest_text(url: &str, signal: &JsValue, notices: &mut Vec<String>) -> Result<String, String> {
    let net = glue::fetch_text(url, signal).await;
    if aborted(signal) {
        return Err(cancelled());
    }
    let why = match net {
        Ok(r) => {
            let status = get_f64(&r, "status").unwrap_or(0.0);
            if status == 200.0 {
                return Ok(get(&r, "text").as_string().unwrap_or_default());
            }
            format!("HTTP {status}")
        }
        Err(e) => glue::error_message(&e),
    };
    match glue::idb_get(MODELS, url).await {
        Ok(rec) if !rec.is_null() => {
            notices.push(format!("the manifest could not be fetched ({why}); using the cached copy"));
            Ok(get(&rec, "manifest").as_string().unwrap_or_default())
        }
        _ => Err(format!("cannot fetch the weight manifest {url}: {why}")),
    }
}

/// What the browser's storage allows this origin (`navigator.storage.estimate()`), when it says.
pub(crate) struct Room {
    pub free: f64,
    pub quota: f64,
    pub usage: f64,
}

pub(crate) async fn storage_room() -> Option<Room> {
    let est = glue::storage_estimate().await;
    let (quota, usage) = (get_f64(&est, "quota")?, get_f64(&est, "usage")?);
    Some(Room { free: (quota - usage).max(0.0), quota, usage })
}

/// The cache is keyed by absolute URLs, whichever form the caller used.
fn absolute(url: &str) -> Result<String, String> {
    glue::absolute_url(url).map_err(|e| format!("{url:?} is not a URL: {}", glue::error_message(&e)))
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One shard over the network: checked status, content type, length and hash. One retry
/// for a dropped connection or damaged bytes.
async fn fetch_shard(
    manifest: &Manifest,
    base: &str,
    index: usize,
    opts: &LoadOptions,
    progress: &Progress<'_>,
    done_before: f64,
) -> Result<js_sys::Uint8Array, String> {
    let count = manifest.shards.len();
    let shard = &manifest.shards[index];
    let url = glue::resolve_url(&shard.file, base).map_err(|e| glue::error_message(&e))?;
    let what = format!("shard {} of {count} ({})", index + 1, shard.file);
    let mut last = String::new();
    for attempt in 0..2 {
        let received = std::rc::Rc::new(std::cell::Cell::new(0f64));
        let seen = received.clone();
        let (report, backend, shards, total) = (progress.f.cloned(), progress.backend, progress.shards, progress.bytes_total);
        let on_bytes = Closure::<dyn Fn(f64)>::new(move |n: f64| {
            seen.set(n);
            Progress { f: report.as_ref(), backend, shards, bytes_total: total }.report("download", index + 1, done_before + n);
        });
        let f: &js_sys::Function = on_bytes.as_ref().unchecked_ref();
        let r = glue::fetch_bytes(&url, &opts.signal, shard.bytes as f64, f).await;
        if aborted(&opts.signal) {
            return Err(cancelled());
        }
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                last = format!(
                    "{what}: the connection failed after {} of {} bytes ({}); loading again resumes from this shard",
                    received.get(),
                    shard.bytes,
                    glue::error_message(&e)
                );
                continue;
            }
        };
        let status = get_f64(&r, "status").unwrap_or(0.0);
        if status != 200.0 {
            return Err(format!("{what}: the server answered HTTP {status} for {url}"));
        }
        let ty = get(&r, "type").as_string().unwrap_or_default();
        if ty.to_ascii_lowercase().starts_with("text/html") {
            return Err(format!("{what}: the server answered with an HTML page instead of weights ({url}); check the model URL"));
        }
        let bytes = js_sys::Uint8Array::new(&get(&r, "bytes"));
        match verify(index, count, shard, &bytes) {
            Ok(()) => {
                progress.report("download", index + 1, done_before + shard.bytes as f64);
                if attempt > 0 {
                    web_sys::console::warn_1(&format!("{what}: succeeded on the second try").into());
                }
                return Ok(bytes);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Load every shard of the manifest at `url` into a store on `device`.
pub async fn load(url: &str, device: &Device, opts: &LoadOptions) -> Result<(Manifest, ParamStore, LoadReport), String> {
    let url = &absolute(url)?;
    let mut report = LoadReport::default();
    Progress { f: opts.on_progress.as_ref(), backend: opts.backend, shards: 0, bytes_total: 0.0 }.report("manifest", 0, 0.0);
    let (text, prefix) = if url.starts_with(LOCAL_SCHEME) {
        let rec = glue::idb_get(MODELS, url).await.map_err(|e| format!("cannot read the weight cache: {}", glue::error_message(&e)))?;
        if rec.is_null() || rec.is_undefined() {
            return Err(format!("{url} was added on this device and is no longer stored: add it again"));
        }
        (get(&rec, "manifest").as_string().unwrap_or_default(), get(&rec, "key").as_string().unwrap_or_default())
    } else {
        let text = manifest_text(url, &opts.signal, &mut report.notices).await?;
        let prefix = format!("{}/", hex_sha256(text.as_bytes()));
        (text, prefix)
    };
    let local = url.starts_with(LOCAL_SCHEME);
    let manifest = Manifest::from_json(&text).map_err(|e| format!("{url} is not a weight manifest: {e}"))?;
    // Before any shard is downloaded.
    crate::upscaler::Upscaler::check_architecture(&manifest).map_err(|e| e.to_string())?;
    let count = manifest.shards.len();
    let key = |i: usize| format!("{prefix}{i:05}");
    // One load or eviction of these bytes at a time across the origin's tabs and workers: a
    // second tab waits, then reads what the first stored (no second download), and an
    // eviction never removes shards under a load. Shards are still checked when read.
    let _lock = glue::HeldLock::acquire(&lock_name(&prefix), &opts.signal)
        .await
        .map_err(|e| if aborted(&opts.signal) { cancelled() } else { format!("cannot lock the weight cache: {}", glue::error_message(&e)) })?;

    // What is cached already (the cache may be unavailable: then memory only).
    let mut cache_ok = true;
    let cached: std::collections::HashSet<String> = match glue::idb_keys(SHARDS, &prefix).await {
        Ok(keys) => js_sys::Array::from(&keys).iter().filter_map(|k| k.as_string()).collect(),
        Err(e) => {
            cache_ok = false;
            report.notices.push(format!("no weight cache ({}): the model loads from the network every time", glue::error_message(&e)));
            Default::default()
        }
    };
    let missing: f64 =
        manifest.shards.iter().enumerate().filter(|(i, _)| !cached.contains(&key(*i))).map(|(_, s)| s.bytes as f64).sum();
    if cache_ok && missing > 0.0 {
        if let Some(room) = storage_room().await.filter(|r| missing > r.free) {
            return Err(format!(
                "not enough storage for this model: it needs {} more and the browser allows {} (quota {}, used {}); free some space or use a smaller model",
                mb(missing),
                mb(room.free),
                mb(room.quota),
                mb(room.usage)
            ));
        }
    }
    if opts.persist && !glue::storage_persist().await.is_truthy() {
        report.notices.push("the browser did not grant persistent storage: the cache may be evicted under storage pressure".into());
    }
    if cache_ok && !local {
        let rec = model_record(url, &manifest, &text, &prefix, false);
        if let Err(e) = glue::idb_put(MODELS, url, &rec).await {
            report.notices.push(format!("the model is not cached ({})", glue::error_message(&e)));
            cache_ok = false;
        }
    }

    let progress = Progress { f: opts.on_progress.as_ref(), backend: opts.backend, shards: count, bytes_total: manifest.total_bytes() as f64 };
    let mut store = ParamStore::new(device);
    let mut done = 0f64;
    for (i, shard) in manifest.shards.iter().enumerate() {
        if aborted(&opts.signal) {
            return Err(cancelled());
        }
        let mut bytes = None;
        if cached.contains(&key(i)) {
            if let Ok(v) = glue::idb_get(SHARDS, &key(i)).await {
                let v = if v.is_null() { js_sys::Uint8Array::new_with_length(0) } else { js_sys::Uint8Array::new(&v) };
                // A damaged cache entry is dropped and downloaded again.
                if verify(i, count, shard, &v).is_ok() {
                    bytes = Some(v);
                    report.from_cache += 1;
                    progress.report("cache", i + 1, done + shard.bytes as f64);
                } else {
                    let _ = glue::idb_delete(SHARDS, &key(i)).await;
                }
            }
        }
        let bytes = match bytes {
            Some(b) => b,
            None if local => {
                return Err(format!("shard {} of {count} of this model (added on this device) is missing or damaged: delete it and add it again", i + 1));
            }
            None => {
                let b = fetch_shard(&manifest, url, i, opts, &progress, done).await?;
                report.from_network += 1;
                if cache_ok {
                    if let Err(e) = glue::idb_put(SHARDS, &key(i), &b).await {
                        cache_ok = false;
                        let why = match glue::error_name(&e).as_str() {
                            "QuotaExceededError" => "the storage quota is exhausted".to_string(),
                            _ => glue::error_message(&e),
                        };
                        report.notices.push(format!("{why}: the model runs from memory and downloads again next time"));
                    }
                }
                b
            }
        };
        progress.report("upload", i + 1, done);
        store
            .insert_shard_blocks(&manifest, i, opts.block_bytes, &mut |offset, length| {
                let mut v = vec![0u8; length as usize];
                bytes.subarray(offset as u32, (offset + length) as u32).copy_to(&mut v);
                v
            })
            .map_err(|e| e.to_string())?;
        drop(bytes);
        // burn's fusion queue holds uploads back to batch them, and with them their host
        // copies: hand them to the device and wait for the queue before the next shard
        // (full-size PiSA-SR: peak wasm memory 81.8 MiB with this, 208 MiB without).
        device.flush().map_err(|e| format!("the device failed while receiving the weights: {e}"))?;
        burn::tensor::Tensor::<1>::zeros([1], device)
            .into_data_async()
            .await
            .map_err(|e| format!("the device failed while receiving the weights: {}", e.to_string().lines().next().unwrap_or_default()))?;
        done += shard.bytes as f64;
    }
    if cache_ok && !local {
        let _ = glue::idb_put(MODELS, url, &model_record(url, &manifest, &text, &prefix, true)).await;
    }
    Ok((manifest, store, report))
}

pub(crate) fn model_record(url: &str, manifest: &Manifest, text: &str, prefix: &str, complete: bool) -> JsValue {
    object(&[
        ("url", url.into()),
        ("modelId", manifest.model_id.as_str().into()),
        ("architecture", manifest.architecture.as_str().into()),
        ("bytes", (manifest.total_bytes() as f64).into()),
        ("shards", (manifest.shards.len() as f64).into()),
        ("key", prefix.into()),
        ("manifest", text.into()),
        ("complete", complete.into()),
    ])
}

/// The cached models: `{ url, modelId, architecture, bytes, shards, complete }` each, where
/// `bytes` counts the shards actually stored.
pub async fn cached() -> Result<JsValue, String> {
    let recs = glue::idb_values(MODELS).await.map_err(|e| glue::error_message(&e))?;
    let out = js_sys::Array::new();
    for rec in js_sys::Array::from(&recs).iter() {
        let text = get(&rec, "manifest").as_string().unwrap_or_default();
        let prefix = get(&rec, "key").as_string().unwrap_or_default();
        let Ok(m) = Manifest::from_json(&text) else { continue };
        let keys = glue::idb_keys(SHARDS, &prefix).await.map_err(|e| glue::error_message(&e))?;
        let have: Vec<String> = js_sys::Array::from(&keys).iter().filter_map(|k| k.as_string()).collect();
        let stored: f64 = m
            .shards
            .iter()
            .enumerate()
            .filter(|(i, _)| have.contains(&format!("{prefix}{i:05}")))
            .map(|(_, s)| s.bytes as f64)
            .sum();
        out.push(&object(&[
            ("url", get(&rec, "url")),
            ("modelId", m.model_id.as_str().into()),
            ("architecture", m.architecture.as_str().into()),
            ("bytes", stored.into()),
            ("totalBytes", (m.total_bytes() as f64).into()),
            ("shards", (have.len() as f64).into()),
            ("totalShards", (m.shards.len() as f64).into()),
            ("complete", (have.len() == m.shards.len()).into()),
        ]));
    }
    Ok(out.into())
}

/// The Web Lock guarding the cached shards under `prefix` (a manifest's hash).
fn lock_name(prefix: &str) -> String {
    format!("onestep-sr weights {prefix}")
}

/// Delete a cached model's shards and record; true when there was one. Waits for a load of the
/// same model in any tab to finish first.
pub async fn evict(url: &str) -> Result<bool, String> {
    let url = &absolute(url)?;
    let rec = glue::idb_get(MODELS, url).await.map_err(|e| glue::error_message(&e))?;
    if rec.is_null() || rec.is_undefined() {
        return Ok(false);
    }
    let prefix = get(&rec, "key").as_string().unwrap_or_default();
    let _lock = glue::HeldLock::acquire(&lock_name(&prefix), &JsValue::UNDEFINED).await.map_err(|e| glue::error_message(&e))?;
    // Another manifest URL may share the same bytes (same hash): keep them then.
    let others = glue::idb_values(MODELS).await.map_err(|e| glue::error_message(&e))?;
    let shared = js_sys::Array::from(&others)
        .iter()
        .any(|r| get(&r, "url").as_string().as_deref() != Some(url) && get(&r, "key").as_string() == Some(prefix.clone()));
    if !shared && !prefix.is_empty() {
        glue::idb_delete_prefix(SHARDS, &prefix).await.map_err(|e| glue::error_message(&e))?;
    }
    glue::idb_delete(MODELS, url).await.map_err(|e| glue::error_message(&e))?;
    Ok(true)
}
