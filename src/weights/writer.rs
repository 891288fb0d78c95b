//! Writes format v1 (v2 when a tensor is quantized): tensors are packed in order into shards of
//! at most 32 MiB; larger tensors are split into blocks of rows. Atomic: everything goes into a hidden sibling folder,
//! the manifest last, and that folder is renamed to the target only when complete; a writer
//! dropped before [`ShardWriter::finish`] (an error, a panic) removes it. A killed conversion
//! leaves the previous model or nothing, never a manifest whose shards are missing.
//! [`ShardWriter::in_memory`] keeps finished shards for the caller instead (the browser stores
//! them in IndexedDB and registers the model only after the last one).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dtype::DType;
use super::manifest::{
    FORMAT_NAME, FORMAT_VERSION, FORMAT_VERSION_QUANT, MAX_SHARD_BYTES, Manifest, ShardEntry,
    TENSOR_ALIGN, TensorEntry, TensorPart,
};
use super::quant::{self, Quant};
#[cfg(not(target_arch = "wasm32"))]
use super::{quant::Plan, role::{gan_role, sd_role}};
use super::WeightsError;

/// How one tensor's bytes are stored (the manifest entry's `dtype`, `block`, `rel_rms`).
#[derive(Clone, Copy)]
struct Encoding {
    dtype: DType,
    block: Option<u32>,
    rel_rms: Option<f32>,
}

/// Where finished shards go.
enum Output {
    /// The target folder; `dir` is where the shards go until `finish`.
    Dir { target: PathBuf, dir: PathBuf },
    /// Held until [`ShardWriter::take_ready`]: (index, bytes).
    Memory { ready: Vec<(usize, Vec<u8>)> },
}

pub struct ShardWriter {
    out: Output,
    finished: bool,
    current: Vec<u8>,
    tensors: Vec<TensorEntry>,
    shards: Vec<ShardEntry>,
    /// Largest shard, bytes (the format's 32 MiB unless smaller shards are asked for).
    max_shard: u64,
}

fn io_err(path: &Path, source: std::io::Error) -> WeightsError {
    WeightsError::Io { path: path.display().to_string(), source }
}

impl ShardWriter {
    pub fn create(target: &Path) -> Result<Self, WeightsError> {
        let name = target.file_name().map_or("model".into(), |f| f.to_string_lossy().into_owned());
        let dir = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        Ok(Self {
            out: Output::Dir { target: target.to_path_buf(), dir },
            finished: false,
            current: Vec::new(),
            tensors: Vec::new(),
            shards: Vec::new(),
            max_shard: MAX_SHARD_BYTES,
        })
    }

    /// Shards kept in memory for the caller ([`ShardWriter::take_ready`]); `finish` writes nothing.
    pub fn in_memory() -> Self {
        Self {
            out: Output::Memory { ready: Vec::new() },
            finished: false,
            current: Vec::new(),
            tensors: Vec::new(),
            shards: Vec::new(),
            max_shard: MAX_SHARD_BYTES,
        }
    }

    /// The shards finished since the last call, with their indices (in-memory writers).
    pub fn take_ready(&mut self) -> Vec<(usize, Vec<u8>)> {
        match &mut self.out {
            Output::Memory { ready } => std::mem::take(ready),
            Output::Dir { .. } => Vec::new(),
        }
    }

    /// Bytes written so far, the current shard included.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum::<u64>() + self.current.len() as u64
    }

    /// Shards of at most `bytes` (≤ 32 MiB): smaller requests for slow links, and tests of
    /// multi-shard delivery with small models.
    pub fn with_max_shard(mut self, bytes: u64) -> Self {
        self.max_shard = bytes.clamp(TENSOR_ALIGN, MAX_SHARD_BYTES);
        self
    }

    /// Append one float tensor (`data` is little-endian `dtype`). A tensor larger than a shard
    /// is split into blocks of rows of at most one shard each (see [`TensorPart`]).
    pub fn add(&mut self, name: &str, dtype: DType, shape: &[usize], data: &[u8]) -> Result<(), WeightsError> {
        if dtype.is_quantized() {
            return Err(WeightsError::Convert(format!("tensor {name}: {dtype:?} data goes through add_quantized")));
        }
        self.add_encoded(name, Encoding { dtype, block: None, rel_rms: None }, shape, data)
    }

    /// Quantize `values` (shape `shape`, at least 2 dimensions) as `q` along each row and
    /// append them; returns the relative RMS error (also stored in the manifest).
    pub fn add_quantized(&mut self, name: &str, shape: &[usize], values: &[f32], q: Quant) -> Result<f32, WeightsError> {
        let rows = if shape.len() >= 2 { shape[0] } else { 0 };
        let (data, rel) = quant::quantize(values, rows, q).map_err(|e| WeightsError::Convert(format!("tensor {name} {shape:?}: {e}")))?;
        self.add_encoded(name, Encoding { dtype: q.dtype, block: Some(q.block), rel_rms: Some(rel) }, shape, &data)?;
        Ok(rel)
    }

    fn add_encoded(&mut self, name: &str, enc: Encoding, shape: &[usize], data: &[u8]) -> Result<(), WeightsError> {
        let length = data.len() as u64;
        if enc.dtype.byte_len(shape, enc.block) != Some(length) {
            return Err(WeightsError::Convert(format!("tensor {name}: {length} bytes for shape {shape:?} in {:?}", enc.dtype)));
        }
        if length <= self.max_shard {
            return self.push(name, enc, shape, data, None);
        }
        let row_bytes = length / shape[0] as u64;
        let rows_per_part = (self.max_shard / row_bytes.max(1)) as usize;
        if shape.len() < 2 || rows_per_part == 0 {
            return Err(WeightsError::Convert(format!(
                "tensor {name} {shape:?}: one row ({row_bytes} bytes) exceeds the {} byte shard size", self.max_shard
            )));
        }
        let count = shape[0].div_ceil(rows_per_part);
        for (index, rows) in data.chunks(rows_per_part * row_bytes as usize).enumerate() {
            let mut part_shape = shape.to_vec();
            part_shape[0] = rows.len() / row_bytes as usize;
            self.push(name, enc, &part_shape, rows, Some(TensorPart { index, count }))?;
        }
        Ok(())
    }

    fn push(&mut self, name: &str, enc: Encoding, shape: &[usize], data: &[u8], part: Option<TensorPart>) -> Result<(), WeightsError> {
        let length = data.len() as u64;
        let offset = (self.current.len() as u64).next_multiple_of(TENSOR_ALIGN);
        if offset + length > self.max_shard {
            self.flush()?;
        }
        let offset = (self.current.len() as u64).next_multiple_of(TENSOR_ALIGN);
        self.current.resize(offset as usize, 0);
        self.current.extend_from_slice(data);
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            dtype: enc.dtype,
            block: enc.block,
            rel_rms: enc.rel_rms,
            shape: shape.to_vec(),
            shard: self.shards.len(),
            offset,
            length,
            part,
        });
        Ok(())
    }

    /// Convenience: store f32 values as fp16.
    pub fn add_f16(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<(), WeightsError> {
        let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
        self.add(name, DType::F16, shape, bytemuck::cast_slice(&halves))
    }

    pub fn add_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<(), WeightsError> {
        self.add(name, DType::F32, shape, bytemuck::cast_slice(values))
    }

    fn flush(&mut self) -> Result<(), WeightsError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let index = self.shards.len();
        let file = format!("shard-{index:05}.bin");
        let entry = ShardEntry { file, bytes: self.current.len() as u64, sha256: hex::encode(Sha256::digest(&self.current)) };
        match &mut self.out {
            Output::Dir { dir, .. } => {
                let path = dir.join(&entry.file);
                std::fs::write(&path, &self.current).map_err(|e| io_err(&path, e))?;
                self.current.clear();
            }
            Output::Memory { ready } => ready.push((index, std::mem::take(&mut self.current))),
        }
        self.shards.push(entry);
        Ok(())
    }

    /// Write the last shard and `manifest.json`; returns the manifest. In memory: the last
    /// shard waits in [`ShardWriter::take_ready`] and the caller stores the manifest.
    pub fn finish(
        &mut self,
        model_id: &str,
        architecture: &str,
        config: serde_json::Value,
        source: serde_json::Value,
    ) -> Result<Manifest, WeightsError> {
        self.flush()?;
        let quantized = self.tensors.iter().any(|t| t.dtype.is_quantized());
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            format_version: if quantized { FORMAT_VERSION_QUANT } else { FORMAT_VERSION },
            model_id: model_id.into(),
            architecture: architecture.into(),
            config,
            tensors: std::mem::take(&mut self.tensors),
            shards: std::mem::take(&mut self.shards),
            source,
        };
        if let Output::Dir { target, dir } = &self.out {
            let path = dir.join("manifest.json");
            let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
            std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
            // The old model goes only once the new one is complete.
            if target.exists() {
                std::fs::remove_dir_all(target).map_err(|e| io_err(target, e))?;
            }
            std::fs::rename(dir, target).map_err(|e| io_err(target, e))?;
        }
        self.finished = true;
        Ok(manifest)
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if let (false, Output::Dir { dir, .. }) = (self.finished, &self.out) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Read the model in `src` (every shard checked against its SHA-256) and hand each tensor to
/// `f` in model order, with the row-block parts of a split tensor joined (rows are
/// self-contained in every dtype, so the parts' bytes joined are the tensor's).
fn each_tensor(
    src: &Path,
    f: &mut dyn FnMut(&TensorEntry, &[usize], &[u8]) -> Result<(), WeightsError>,
) -> Result<Manifest, WeightsError> {
    let manifest = super::loader::read_manifest(src)?;
    let count = manifest.shards.len();
    let mut shards = Vec::with_capacity(count);
    for (i, s) in manifest.shards.iter().enumerate() {
        let path = src.join(&s.file);
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        super::verify_shard(i, count, s, &bytes)?;
        shards.push(bytes);
    }
    let mut pending: Option<(Vec<usize>, Vec<u8>)> = None;
    for t in &manifest.tensors {
        let data = &shards[t.shard][t.offset as usize..(t.offset + t.length) as usize];
        match t.part {
            None => f(t, &t.shape, data)?,
            Some(part) => {
                let (shape, bytes) = pending.get_or_insert_with(|| ({ let mut s = t.shape.clone(); s[0] = 0; s }, Vec::new()));
                shape[0] += t.shape[0];
                bytes.extend_from_slice(data);
                if part.index + 1 == part.count {
                    let (shape, bytes) = pending.take().expect("just filled");
                    f(t, &shape, &bytes)?;
                }
            }
        }
    }
    Ok(manifest)
}

#[cfg(not(target_arch = "wasm32"))]
/// Write the model in `src` (a converted directory) again into `out` with shards of at most
/// `max_shard` bytes; tensors split into row blocks are joined first.
pub fn reshard(src: &Path, out: &Path, max_shard: u64) -> Result<Manifest, WeightsError> {
    let mut w = ShardWriter::create(out)?.with_max_shard(max_shard);
    let m = each_tensor(src, &mut |t, shape, data| {
        w.add_encoded(&t.name, Encoding { dtype: t.dtype, block: t.block, rel_rms: t.rel_rms }, shape, data)
    })?;
    w.finish(&m.model_id, &m.architecture, m.config.clone(), m.source.clone())
}

#[cfg(not(target_arch = "wasm32"))]
/// Write the float model in `src` again into `out` quantized as `plan` says, by the rules of
/// its converter (Real-ESRGAN: [`gan_role`]; OSEDiff / PiSA-SR:
/// [`sd_role`]); `source.quantize` records the mode. `model_id` defaults to
/// the source's with `-{mode}` appended (a cache and a catalog tell the two apart by it).
pub fn quantize_model(src: &Path, out: &Path, plan: Plan, model_id: Option<&str>) -> Result<Manifest, WeightsError> {
    let m = super::loader::read_manifest(src)?;
    let weights: Vec<&str> = m.tensors.iter().filter(|t| t.shape.len() >= 2).map(|t| t.name.as_str()).collect();
    let (first, last) = (weights.first().copied().unwrap_or(""), weights.last().copied().unwrap_or(""));
    let sd = match m.architecture.as_str() {
        "rrdbnet" | "srvgg" => false,
        "osediff" | "pisa-sr" => true,
        other => return Err(WeightsError::Convert(format!("no quantization rules for architecture {other:?}"))),
    };
    let mut w = ShardWriter::create(out)?;
    each_tensor(src, &mut |t, shape, data| {
        let role = if sd { sd_role(&t.name, shape) } else { gan_role(&t.name, shape, first, last) };
        match plan.quant(role) {
            Some(q) => {
                let values = quant::float_values(t.dtype, data).map_err(|e| WeightsError::Convert(format!("{}: {e}", t.name)))?;
                w.add_quantized(&t.name, shape, &values, q).map(drop)
            }
            None => w.add_encoded(&t.name, Encoding { dtype: t.dtype, block: t.block, rel_rms: t.rel_rms }, shape, data),
        }
    })?;
    let mut source = m.source.clone();
    if let Some(o) = source.as_object_mut() {
        o.insert("quantize".into(), plan.mode.to_string().into());
    } else {
        source = serde_json::json!({ "from": source, "quantize": plan.mode.to_string() });
    }
    let id = model_id.map_or_else(|| format!("{}-{}", m.model_id, plan.mode), str::to_string);
    w.finish(&id, &m.architecture, m.config.clone(), source)
}
