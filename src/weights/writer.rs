//! Writes format v1: tensors are packed in order into shards of at most 32 MiB; larger
//! tensors are split into blocks of rows. Atomic: everything goes into a hidden sibling folder,
//! the manifest last, and that folder is renamed to the target only when complete; a writer
//! dropped before [`ShardWriter::finish`] (an error, a panic) removes it. A killed conversion
//! leaves the previous model or nothing, never a manifest whose shards are missing.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{
    DType, FORMAT_NAME, FORMAT_VERSION, MAX_SHARD_BYTES, Manifest, ShardEntry, TENSOR_ALIGN,
    TensorEntry, TensorPart,
};
use super::WeightsError;

pub struct ShardWriter {
    /// The target folder; `dir` is where the shards go until `finish`.
    target: PathBuf,
    dir: PathBuf,
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
            target: target.to_path_buf(),
            dir,
            finished: false,
            current: Vec::new(),
            tensors: Vec::new(),
            shards: Vec::new(),
            max_shard: MAX_SHARD_BYTES,
        })
    }

    /// Shards of at most `bytes` (≤ 32 MiB): smaller requests for slow links, and tests of
    /// multi-shard delivery with small models.
    pub fn with_max_shard(mut self, bytes: u64) -> Self {
        self.max_shard = bytes.clamp(TENSOR_ALIGN, MAX_SHARD_BYTES);
        self
    }

    /// Append one tensor (`data` is little-endian `dtype`). A tensor larger than a shard is
    /// split into blocks of rows of at most one shard each (see [`TensorPart`]).
    pub fn add(&mut self, name: &str, dtype: DType, shape: &[usize], data: &[u8]) -> Result<(), WeightsError> {
        let length = data.len() as u64;
        let numel: usize = shape.iter().product();
        if length != numel as u64 * dtype.size() {
            return Err(WeightsError::Convert(format!("tensor {name}: {length} bytes for shape {shape:?}")));
        }
        if length <= self.max_shard {
            return self.push(name, dtype, shape, data, None);
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
            self.push(name, dtype, &part_shape, rows, Some(TensorPart { index, count }))?;
        }
        Ok(())
    }

    fn push(&mut self, name: &str, dtype: DType, shape: &[usize], data: &[u8], part: Option<TensorPart>) -> Result<(), WeightsError> {
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
            dtype,
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
        let file = format!("shard-{:05}.bin", self.shards.len());
        let path = self.dir.join(&file);
        std::fs::write(&path, &self.current).map_err(|e| io_err(&path, e))?;
        self.shards.push(ShardEntry {
            file,
            bytes: self.current.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.current)),
        });
        self.current.clear();
        Ok(())
    }

    /// Write the last shard and `manifest.json`; returns the manifest.
    pub fn finish(
        mut self,
        model_id: &str,
        architecture: &str,
        config: serde_json::Value,
        source: serde_json::Value,
    ) -> Result<Manifest, WeightsError> {
        self.flush()?;
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            model_id: model_id.into(),
            architecture: architecture.into(),
            config,
            tensors: std::mem::take(&mut self.tensors),
            shards: std::mem::take(&mut self.shards),
            source,
        };
        let path = self.dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
        // The old model goes only once the new one is complete.
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).map_err(|e| io_err(&self.target, e))?;
        }
        std::fs::rename(&self.dir, &self.target).map_err(|e| io_err(&self.target, e))?;
        self.finished = true;
        Ok(manifest)
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Write the model in `src` (a converted directory) again into `out` with shards of at most
/// `max_shard` bytes; tensors split into row blocks are joined first. Every source shard is
/// checked against its SHA-256.
pub fn reshard(src: &Path, out: &Path, max_shard: u64) -> Result<Manifest, WeightsError> {
    let manifest = super::loader::read_manifest(src)?;
    let count = manifest.shards.len();
    let mut shards = Vec::with_capacity(count);
    for (i, s) in manifest.shards.iter().enumerate() {
        let path = src.join(&s.file);
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        super::verify_shard(i, count, s, &bytes)?;
        shards.push(bytes);
    }
    let mut w = ShardWriter::create(out)?.with_max_shard(max_shard);
    let mut pending: Option<(String, DType, Vec<usize>, Vec<u8>)> = None;
    for t in &manifest.tensors {
        let data = &shards[t.shard][t.offset as usize..(t.offset + t.length) as usize];
        match t.part {
            None => w.add(&t.name, t.dtype, &t.shape, data)?,
            Some(part) => {
                let (_, _, shape, bytes) = pending.get_or_insert_with(|| (t.name.clone(), t.dtype, { let mut s = t.shape.clone(); s[0] = 0; s }, Vec::new()));
                shape[0] += t.shape[0];
                bytes.extend_from_slice(data);
                if part.index + 1 == part.count {
                    let (name, dtype, shape, bytes) = pending.take().expect("just filled");
                    w.add(&name, dtype, &shape, &bytes)?;
                }
            }
        }
    }
    w.finish(&manifest.model_id, &manifest.architecture, manifest.config.clone(), manifest.source.clone())
}
