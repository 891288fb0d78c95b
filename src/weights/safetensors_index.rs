//! One diffusers component folder (`unet/`, `vae/`, `text_encoder/`) read lazily: its
//! `config.json`, and the header of its safetensors file(s), so that each tensor is read from
//! its byte range when the converter asks for it and dropped once written. Names are mapped
//! with [`canonical_name`] (the legacy VAE attention names); f16 / bf16 / i64 are widened to f32.

use std::collections::{BTreeMap, BTreeSet};

use half::{bf16, f16};
use serde::de::DeserializeOwned;

use super::diffusers::canonical_name;
use super::folder::{Folder, missing};
use super::WeightsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    BF16,
    I64,
}

impl Dtype {
    fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I64 => 8,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    file: String,
    dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in `file`.
    start: u64,
    end: u64,
}

pub struct Component {
    /// `unet`, `vae`, …: the folder inside the pipeline folder.
    pub dir: String,
    tensors: BTreeMap<String, Entry>,
    used: BTreeSet<String>,
}

fn bad(file: &str, why: impl std::fmt::Display) -> WeightsError {
    WeightsError::Convert(format!("{file} is not a valid safetensors file ({why}): re-download it"))
}

/// The tensors of one safetensors file, from its header (8-byte length + JSON), each range
/// checked against the file's size (a truncated download fails here, before any work).
fn index(folder: &dyn Folder, file: &str, out: &mut BTreeMap<String, Entry>) -> Result<(), WeightsError> {
    let what = format!("{}/{file}", folder.name());
    let len = folder.len(file).ok_or_else(|| missing(folder, file))?;
    if len < 8 {
        return Err(bad(&what, format!("{len} bytes")));
    }
    let n = u64::from_le_bytes(folder.read_at(file, 0, 8)?.try_into().expect("8 bytes"));
    if n > 100 << 20 || 8 + n > len {
        return Err(bad(&what, format!("a header of {n} bytes in a file of {len}")));
    }
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&folder.read_at(file, 8, n)?).map_err(|e| bad(&what, e))?;
    let data = 8 + n;
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |k: &str| v.get(k).ok_or_else(|| bad(&what, format!("tensor {name} has no {k}")));
        let dtype = match field("dtype")?.as_str() {
            Some("F32") => Dtype::F32,
            Some("F16") => Dtype::F16,
            Some("BF16") => Dtype::BF16,
            // Index buffers such as CLIP's `position_ids`: small integers, exact in f32.
            Some("I64") => Dtype::I64,
            other => {
                return Err(WeightsError::Convert(format!("{what}: tensor {name} has dtype {other:?}; expected F32, F16, BF16 or I64")));
            }
        };
        let shape: Vec<usize> = serde_json::from_value(field("shape")?.clone()).map_err(|e| bad(&what, e))?;
        let [a, b]: [u64; 2] = serde_json::from_value(field("data_offsets")?.clone()).map_err(|e| bad(&what, e))?;
        let want = shape.iter().product::<usize>() as u64 * dtype.size();
        if b < a || b - a != want {
            return Err(bad(&what, format!("tensor {name} {shape:?} has {} bytes", b.saturating_sub(a))));
        }
        if data + b > len {
            return Err(WeightsError::Convert(format!(
                "{what} is truncated: tensor {name} ends at byte {} and the file has {len}: re-download it",
                data + b
            )));
        }
        let canonical = canonical_name(&name);
        let entry = Entry { file: file.to_string(), dtype, shape, start: data + a, end: data + b };
        if out.insert(canonical.clone(), entry).is_some() {
            return Err(WeightsError::Convert(format!("{what}: tensor {canonical} appears twice (legacy and current names?)")));
        }
    }
    Ok(())
}

fn widen(dtype: Dtype, data: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
    }
}

impl Component {
    /// `dir/config.json` parsed as `C`, and the index of `dir`'s safetensors file(s) (the plain
    /// file preferred when a folder also carries variants such as `*.fp16.safetensors`).
    pub fn open<C: DeserializeOwned>(folder: &dyn Folder, dir: &str) -> Result<(C, Self), WeightsError> {
        let config_path = format!("{dir}/config.json");
        let text = folder.read(&config_path)?;
        let config = serde_json::from_slice(&text).map_err(|e| WeightsError::Convert(format!("{}/{config_path}: {e}", folder.name())))?;
        let prefix = format!("{dir}/");
        let files: Vec<String> = folder
            .files()
            .into_iter()
            .filter(|f| f.strip_prefix(&prefix).is_some_and(|n| !n.contains('/') && n.ends_with(".safetensors")))
            .collect();
        if files.is_empty() {
            return Err(WeightsError::Convert(format!("{}/{dir} holds no .safetensors file", folder.name())));
        }
        let plain: Vec<String> = files.iter().filter(|f| !f.contains(".fp16.")).cloned().collect();
        let mut tensors = BTreeMap::new();
        for file in if plain.is_empty() { &files } else { &plain } {
            index(folder, file, &mut tensors)?;
        }
        Ok((config, Self { dir: dir.to_string(), tensors, used: BTreeSet::new() }))
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// Input bytes of every tensor (progress).
    pub fn bytes(&self) -> u64 {
        self.tensors.values().map(|e| e.end - e.start).sum()
    }

    pub fn bytes_of(&self, name: &str) -> u64 {
        self.tensors.get(name).map_or(0, |e| e.end - e.start)
    }

    /// Tensor `name` is present with exactly `shape`.
    pub fn check(&self, name: &str, shape: &[usize]) -> Result<&Entry, WeightsError> {
        let e = self.tensors.get(name).ok_or_else(|| WeightsError::MissingTensor { name: format!("{}/{name}", self.dir) })?;
        if e.shape != shape {
            return Err(WeightsError::Shape { name: format!("{}/{name}", self.dir), got: e.shape.clone(), want: shape.to_vec() });
        }
        Ok(e)
    }

    /// The files hold no tensor outside `names` (else they are another model).
    pub fn check_only(&self, names: &BTreeSet<&str>) -> Result<(), WeightsError> {
        let extra: Vec<&str> = self.tensors.keys().map(String::as_str).filter(|k| !names.contains(k)).take(5).collect();
        if extra.is_empty() { Ok(()) } else { Err(WeightsError::Unused(format!("{}/: {}", self.dir, extra.join(", ")))) }
    }

    fn entry(&mut self, name: &str, shape: &[usize]) -> Result<Entry, WeightsError> {
        let e = self.check(name, shape)?.clone();
        self.used.insert(name.to_string());
        Ok(e)
    }

    /// Tensor `name`, exactly `shape`, as f32.
    pub fn read(&mut self, folder: &dyn Folder, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let e = self.entry(name, shape)?;
        Ok(widen(e.dtype, &folder.read_at(&e.file, e.start, e.end - e.start)?))
    }

    /// Rows `rows` of the 2-D tensor `name` (`shape`), concatenated: an embedding lookup that
    /// reads only the rows it needs.
    pub fn read_rows(&mut self, folder: &dyn Folder, name: &str, shape: [usize; 2], rows: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let e = self.entry(name, &shape)?;
        let row = shape[1] as u64 * e.dtype.size();
        let mut out = Vec::with_capacity(rows.len() * shape[1]);
        for &r in rows {
            if r >= shape[0] {
                return Err(WeightsError::Convert(format!("{}/{name}: row {r} of {}", self.dir, shape[0])));
            }
            out.extend(widen(e.dtype, &folder.read_at(&e.file, e.start + r as u64 * row, row)?));
        }
        Ok(out)
    }

    /// A tensor checkpoints may carry that the math never needs (CLIP's `position_ids`).
    pub fn discard(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// Every tensor of the files must have been read: anything left means another model.
    pub fn finish(&self) -> Result<(), WeightsError> {
        let left: Vec<&str> = self.tensors.keys().filter(|k| !self.used.contains(*k)).map(String::as_str).take(5).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(WeightsError::Unused(format!("{}/: {}", self.dir, left.join(", "))))
        }
    }
}
