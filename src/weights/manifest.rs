//! Weight format v1 / v2: `manifest.json` plus little-endian shard files
//! (docs/weights-format.md). v2 adds block-quantized tensors (`q8`, `q4`).

use serde::{Deserialize, Serialize};

use super::dtype::{self, DType};

pub const FORMAT_NAME: &str = "onestep-sr-weights";
/// Float tensors only: what a writer writes when nothing is quantized (older readers keep working).
pub const FORMAT_VERSION: u32 = 1;
/// Adds `q8` / `q4` tensors; the newest version this build reads.
pub const FORMAT_VERSION_QUANT: u32 = 2;
/// Shards never exceed this: small enough to fetch, verify and cache one at a time.
pub const MAX_SHARD_BYTES: u64 = 32 * 1024 * 1024;
/// Tensors start at multiples of this inside a shard (aligned views, simple readers).
pub const TENSOR_ALIGN: u64 = 64;

/// A tensor larger than a shard is stored as consecutive blocks of rows (dim 0), one entry per
/// block, each with its own shape; the full tensor is their concatenation in `index` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorPart {
    pub index: usize,
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    /// q8 / q4: values per scale along each row (one of [`dtype::BLOCKS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u32>,
    /// q8 / q4: the quantization's relative RMS error against the source (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel_rms: Option<f32>,
    pub shape: Vec<usize>,
    pub shard: usize,
    pub offset: u64,
    pub length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<TensorPart>,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub model_id: String,
    /// Architecture name, e.g. `rrdbnet`; `config` is that architecture's config struct.
    pub architecture: String,
    pub config: serde_json::Value,
    pub tensors: Vec<TensorEntry>,
    pub shards: Vec<ShardEntry>,
    /// Where the weights came from (converter, source files): informative only.
    #[serde(default)]
    pub source: serde_json::Value,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }

    /// Parse and check internal consistency, so a loader can trust offsets and lengths.
    pub fn from_json(text: &str) -> Result<Self, super::WeightsError> {
        use super::WeightsError as E;
        let m: Manifest = serde_json::from_str(text).map_err(|e| E::Manifest(e.to_string()))?;
        if m.format != FORMAT_NAME {
            return Err(E::Manifest(format!("format is {:?}, expected {FORMAT_NAME:?}", m.format)));
        }
        if !(FORMAT_VERSION..=FORMAT_VERSION_QUANT).contains(&m.format_version) {
            return Err(E::Manifest(format!(
                "format version {} is not supported (this build reads versions {FORMAT_VERSION} to {FORMAT_VERSION_QUANT})",
                m.format_version
            )));
        }
        for s in &m.shards {
            // A plain file name beside the manifest: no path, no scheme (`https:x` would leave the
            // origin in a browser), no `..`, no hidden files; sizes within the format's.
            let plain = !s.file.is_empty()
                && s.file.len() <= 128
                && !s.file.starts_with('.')
                && s.file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !plain {
                return Err(E::Manifest(format!(
                    "shard file {:?} is not a plain file name (letters, digits, '.', '_', '-'; no path, scheme or leading dot)",
                    s.file
                )));
            }
            if s.bytes == 0 || s.bytes > MAX_SHARD_BYTES {
                return Err(E::Manifest(format!("shard {:?} declares {} bytes (1 to {MAX_SHARD_BYTES})", s.file, s.bytes)));
            }
            if s.sha256.len() != 64 || !s.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(E::Manifest(format!("shard {:?} has no valid SHA-256", s.file)));
            }
        }
        for t in &m.tensors {
            // Checked before anything multiplies the shape (an overflow would wrap).
            let numel = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64)).filter(|&n| n <= u64::from(u32::MAX));
            if numel.is_none() || t.shape.len() > 8 {
                return Err(E::Manifest(format!("tensor {} has an impossible shape {:?}", t.name, t.shape)));
            }
            let shard = m.shards.get(t.shard).ok_or_else(|| {
                E::Manifest(format!("tensor {} names shard {} of {}", t.name, t.shard, m.shards.len()))
            })?;
            if t.dtype.is_quantized() && m.format_version < FORMAT_VERSION_QUANT {
                return Err(E::Manifest(format!("tensor {} is {:?}, which needs format version {FORMAT_VERSION_QUANT}", t.name, t.dtype)));
            }
            let Some(want) = t.dtype.byte_len(&t.shape, t.block) else {
                return Err(E::Manifest(format!(
                    "tensor {} ({:?} {:?}) has block {:?}: q8 / q4 need a block of {:?} and a non-empty shape of 2 or more dimensions, f16 / f32 no block",
                    t.name, t.dtype, t.shape, t.block, dtype::BLOCKS
                )));
            };
            if t.length != want || t.offset.checked_add(t.length).is_none_or(|end| end > shard.bytes) {
                return Err(E::Manifest(format!(
                    "tensor {} ({:?} {:?}) has length {} at offset {} in a shard of {} bytes",
                    t.name, t.dtype, t.shape, t.length, t.offset, shard.bytes
                )));
            }
        }
        check_parts(&m)?;
        Ok(m)
    }
}

/// Every split tensor has all its parts, once each, with equal trailing dimensions, dtype and
/// block; no name is used twice otherwise.
fn check_parts(m: &Manifest) -> Result<(), super::WeightsError> {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<&str, Vec<&TensorEntry>> = BTreeMap::new();
    for t in &m.tensors {
        seen.entry(&t.name).or_default().push(t);
    }
    for (name, entries) in seen {
        let bad = |why: &str| super::WeightsError::Manifest(format!("tensor {name}: {why}"));
        match entries[0].part {
            None if entries.len() > 1 => return Err(bad("listed more than once")),
            None => {}
            Some(first) => {
                if entries.len() != first.count {
                    return Err(bad(&format!("{} of {} parts listed", entries.len(), first.count)));
                }
                for (i, e) in entries.iter().enumerate() {
                    let ok = e.part == Some(TensorPart { index: i, count: first.count })
                        && !e.shape.is_empty()
                        && e.shape[1..] == entries[0].shape[1..]
                        && (e.dtype, e.block) == (entries[0].dtype, entries[0].block);
                    if !ok {
                        return Err(bad("parts are out of order or have mismatched shapes or dtypes"));
                    }
                }
            }
        }
    }
    Ok(())
}
