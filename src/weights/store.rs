//! Parameters on the device, addressed by their checkpoint names. Models take what they need
//! (shape-checked); `finish` reports anything left over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::tensor::{DType as BurnDType, Device, Tensor, TensorData};

use super::dtype::DType;
use super::manifest::Manifest;
use super::{WeightsError, quant};

/// Largest packed piece of a q8 / q4 tensor dequantized at once (the browser's block size).
const QUANT_BLOCK_BYTES: u64 = 4 << 20;

pub struct ParamStore {
    device: Device,
    tensors: BTreeMap<String, (Vec<usize>, Tensor<1>)>,
    /// Parts of split tensors received so far (they arrive in consecutive shards).
    parts: BTreeMap<String, Vec<(Vec<usize>, Tensor<1>)>>,
    /// Dry run: every request is recorded here and answered with a 1-element placeholder.
    requests: Option<Vec<(String, Vec<usize>)>>,
    /// Keep `{module}.lora_A/B.weight` as run-time branches (scale, shared on/off flag).
    lora: Option<(f32, Arc<AtomicBool>)>,
}

impl ParamStore {
    pub fn new(device: &Device) -> Self {
        Self { device: device.clone(), tensors: BTreeMap::new(), parts: BTreeMap::new(), requests: None, lora: None }
    }

    /// A store that holds nothing and records what a model asks for: building a model
    /// against it lists the model's tensors (name, shape) without allocating them. The
    /// tensors it hands out have one element per dimension and must not be used.
    pub fn dry_run(device: &Device) -> Self {
        Self { device: device.clone(), tensors: BTreeMap::new(), parts: BTreeMap::new(), requests: Some(Vec::new()), lora: None }
    }

    /// The tensors requested so far by a dry run, in request order (empty otherwise).
    pub fn requests(&self) -> &[(String, Vec<usize>)] {
        self.requests.as_deref().unwrap_or(&[])
    }

    /// From now on, modules built from this store attach the LoRA tensors they find
    /// (`{module}.lora_A.weight`, `{module}.lora_B.weight`) as branches scaled by `scale`,
    /// all switched by the returned flag (initially on).
    pub fn keep_lora_branches(&mut self, scale: f32) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(true));
        self.lora = Some((scale, flag.clone()));
        flag
    }

    /// The branch settings of [`keep_lora_branches`](Self::keep_lora_branches), if any.
    pub fn lora_branches(&self) -> Option<(f32, Arc<AtomicBool>)> {
        self.lora.clone()
    }

    /// The shape of a tensor not yet taken.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| s.as_slice())
    }

    /// Move every tensor named `{prefix}.…` into a new store (same device), without the prefix.
    pub fn split_prefix(&mut self, prefix: &str) -> ParamStore {
        let head = format!("{prefix}.");
        let names: Vec<String> = self.tensors.keys().filter(|k| k.starts_with(&head)).cloned().collect();
        let mut out = ParamStore::new(&self.device);
        for name in names {
            let entry = self.tensors.remove(&name).expect("listed");
            out.tensors.insert(name[head.len()..].to_string(), entry);
        }
        out
    }

    /// Cast every tensor named `{prefix}…` to `dtype` on the device (a part of a model that
    /// computes in another precision than the rest).
    pub fn cast_prefix(&mut self, prefix: &str, dtype: burn::tensor::FloatDType) {
        for (name, (_, t)) in self.tensors.iter_mut() {
            if name.starts_with(prefix) {
                *t = t.clone().cast(dtype);
            }
        }
    }

    /// Take tensor `name` (exactly `shape`) as host f32 values (converters).
    pub fn take_values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let (got, tensor) = self
            .tensors
            .remove(name)
            .ok_or_else(|| WeightsError::MissingTensor { name: name.to_string() })?;
        if got.as_slice() != shape {
            return Err(WeightsError::Shape { name: name.to_string(), got, want: shape.to_vec() });
        }
        tensor
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| WeightsError::Convert(format!("tensor {name}: {e:?}")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names and shapes of the tensors not yet taken.
    pub fn remaining(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors.iter().map(|(k, (s, _))| (k.as_str(), s.as_slice()))
    }

    /// Accept a tensor that checkpoints may carry but the math never needs (e.g. CLIP's
    /// int64 `position_ids` buffer): drop it if present, after checking its shape.
    pub fn discard(&mut self, name: &str, shape: &[usize]) -> Result<(), WeightsError> {
        if let Some(req) = &mut self.requests {
            req.push((name.to_string(), shape.to_vec()));
            return Ok(());
        }
        match self.tensors.remove(name) {
            Some((got, _)) if got.as_slice() != shape => {
                Err(WeightsError::Shape { name: name.to_string(), got, want: shape.to_vec() })
            }
            _ => Ok(()),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Upload the tensors of one verified shard (widened, or dequantized, to the device's float
    /// dtype).
    pub fn insert_shard(&mut self, manifest: &Manifest, shard: usize, bytes: &[u8]) -> Result<(), WeightsError> {
        self.insert_shard_blocks(manifest, shard, u64::MAX, &mut |offset, length| {
            bytes[offset as usize..(offset + length) as usize].to_vec()
        })
    }

    /// [`Self::insert_shard`] reading the shard through `read(offset, length)` in blocks of
    /// whole rows of at most `max_block` bytes (one row when a row is larger), so the host
    /// never holds more than one block of a tensor: the browser keeps the shard outside the
    /// wasm heap and copies in one block at a time. The blocks of a tensor (and the row-block
    /// parts of a tensor split across shards) are joined on the device.
    pub fn insert_shard_blocks(
        &mut self,
        manifest: &Manifest,
        shard: usize,
        max_block: u64,
        read: &mut dyn FnMut(u64, u64) -> Vec<u8>,
    ) -> Result<(), WeightsError> {
        for t in manifest.tensors.iter().filter(|t| t.shard == shard) {
            let rows = t.shape.first().copied().unwrap_or(1).max(1);
            let row_bytes = t.length / rows as u64;
            // Unpacking makes device temporaries several times the packed size: bounded blocks.
            let max_block = if t.dtype.is_quantized() { max_block.min(QUANT_BLOCK_BYTES) } else { max_block };
            let rows_per_block = ((max_block / row_bytes.max(1)) as usize).clamp(1, rows);
            let blocks = self.parts.entry(t.name.clone()).or_default();
            for r0 in (0..rows).step_by(rows_per_block) {
                let n = rows_per_block.min(rows - r0);
                let raw = read(t.offset + r0 as u64 * row_bytes, n as u64 * row_bytes);
                let mut shape = t.shape.clone();
                if let Some(first) = shape.first_mut() {
                    *first = n;
                }
                let float = |raw: Vec<u8>, dtype, size| {
                    let numel = raw.len() / size;
                    Tensor::<1>::from_data(TensorData::from_bytes_vec(raw, [numel], dtype), &self.device)
                };
                let tensor = match (t.dtype, t.block) {
                    (DType::F16, _) => float(raw, BurnDType::F16, 2),
                    (DType::F32, _) => float(raw, BurnDType::F32, 4),
                    (dtype, block) => {
                        let block = block.ok_or_else(|| WeightsError::Manifest(format!("tensor {} is {dtype:?} without a block", t.name)))?;
                        let k = t.numel() / t.shape[0];
                        quant::dequantize(&raw, quant::Quant { dtype, block }, n, k, &self.device)
                    }
                };
                blocks.push((shape, tensor));
            }
            // Row blocks in order: their flat concatenation is the whole tensor.
            if t.part.is_none_or(|p| p.index + 1 == p.count) {
                let mut blocks = self.parts.remove(&t.name).expect("just inserted");
                let (shape, whole) = if blocks.len() == 1 {
                    let (_, b) = blocks.pop().expect("one block");
                    (t.shape.clone(), b)
                } else {
                    let mut shape = blocks[0].0.clone();
                    shape[0] = blocks.iter().map(|(s, _)| s[0]).sum();
                    (shape, Tensor::cat(blocks.into_iter().map(|(_, b)| b).collect(), 0))
                };
                self.tensors.insert(t.name.clone(), (shape, whole));
            }
        }
        Ok(())
    }

    /// Insert a host tensor directly (tests, converters).
    pub fn insert(&mut self, name: &str, shape: &[usize], values: Vec<f32>) {
        let numel = values.len();
        let tensor = Tensor::<1>::from_data(TensorData::new(values, [numel]), &self.device);
        self.tensors.insert(name.to_string(), (shape.to_vec(), tensor));
    }

    /// Replace the values of an existing tensor of the same shape (fine-tuned parameters).
    pub fn replace(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<(), WeightsError> {
        match self.tensors.get(name) {
            None => Err(WeightsError::MissingTensor { name: name.to_string() }),
            Some((got, _)) if got.as_slice() != shape => {
                Err(WeightsError::Shape { name: name.to_string(), got: got.clone(), want: shape.to_vec() })
            }
            Some(_) => {
                self.insert(name, shape, values);
                Ok(())
            }
        }
    }

    /// Apply `f` to the flat values of tensor `name` after `check` accepted its shape
    /// (an `Err` message from `check` becomes a shape error naming the tensor).
    pub fn update(
        &mut self,
        name: &str,
        check: impl FnOnce(&[usize]) -> Result<(), String>,
        f: impl FnOnce(Tensor<1>) -> Tensor<1>,
    ) -> Result<(), WeightsError> {
        let (shape, tensor) =
            self.tensors.remove(name).ok_or_else(|| WeightsError::MissingTensor { name: name.to_string() })?;
        if let Err(why) = check(&shape) {
            let err = WeightsError::Convert(format!("{name} {shape:?}: {why}"));
            self.tensors.insert(name.to_string(), (shape, tensor));
            return Err(err);
        }
        self.tensors.insert(name.to_string(), (shape, f(tensor)));
        Ok(())
    }

    /// Take the tensor `name`, which must have exactly `shape`.
    pub fn take<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>, WeightsError> {
        if let Some(req) = &mut self.requests {
            req.push((name.to_string(), shape.to_vec()));
            return Ok(Tensor::zeros([1; D], &self.device));
        }
        let (got, tensor) = self
            .tensors
            .remove(name)
            .ok_or_else(|| WeightsError::MissingTensor { name: name.to_string() })?;
        if got.as_slice() != shape.as_slice() {
            return Err(WeightsError::Shape { name: name.to_string(), got, want: shape.to_vec() });
        }
        Ok(tensor.reshape(shape))
    }

    /// Every tensor must have been taken: leftovers mean the weights are for another model.
    pub fn finish(self) -> Result<(), WeightsError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.tensors.keys().map(String::as_str).take(8).collect();
        let more = self.tensors.len().saturating_sub(names.len());
        let mut list = names.join(", ");
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        Err(WeightsError::Unused(list))
    }
}
