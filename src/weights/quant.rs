//! Block-wise symmetric integer weights (format v2's `q8` / `q4`): which tensors a converter
//! quantizes, the converter's encoder, and the loader's decoder, which unpacks on the device
//! into the compute dtype (so only the download and the cache shrink).
//!
//! A tensor `[rows, ...]` is quantized along each row (its K = product of the other dimensions
//! values: a conv weight `[O, I, kh, kw]` along I*kh*kw, a linear `[O, I]` along I) in blocks
//! of `block` values, one f16 scale per block: value = q * scale, q in [-127, 127] (q8) or
//! [-7, 7] (q4). One row in the shard: the K values packed into little-endian u32 words (q8:
//! 4 per word, q4: 8 per word, value i in the lowest bits first, stored as q + 128 / q + 8,
//! unused bits zero), then ceil(K / block) f16 scales, zero-padded to a multiple of 4 bytes.
//! Rows are self-contained, so row blocks and row-split parts work as for float tensors.

use burn::tensor::{DType as BurnDType, Device, Int, Tensor, TensorData};
use half::f16;

use super::dtype::{BLOCKS, DType, row_bytes};
use super::role::Role;

/// A quantized encoding: `dtype` (q8 or q4) with one scale per `block` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quant {
    pub dtype: DType,
    pub block: u32,
}

/// `--quantize`: which tensors a converter stores as q8 / q4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every [`Role::Main`], [`Role::Text`] and [`Role::Vae`] tensor in q8.
    Q8,
    /// Main in q4, Text in q8, the VAE kept.
    Q4,
    /// Main and Text in q8, the VAE kept (for Real-ESRGAN, which has no VAE: the same as Q8).
    Mixed,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Q8 => "q8",
            Mode::Q4 => "q4",
            Mode::Mixed => "mixed",
        })
    }
}

/// The values of little-endian f16 / f32 bytes (a float tensor about to be quantized).
pub fn float_values(dtype: DType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    match dtype {
        DType::F16 => Ok(bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        DType::F32 => Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        q => Err(format!("already {q:?}: quantize the float model")),
    }
}

/// A `--quantize` choice: the mode, and the block sizes (q8 64 and q4 32 unless overridden).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub mode: Mode,
    pub block: Option<u32>,
}

impl Plan {
    /// How a tensor of `role` is stored; `None`: as before (f16, or f32 where the source has it).
    pub fn quant(&self, role: Role) -> Option<Quant> {
        let dtype = match (self.mode, role) {
            (_, Role::Keep) | (Mode::Q4 | Mode::Mixed, Role::Vae) => return None,
            (Mode::Q4, Role::Main) => DType::Q4,
            _ => DType::Q8,
        };
        let block = self.block.unwrap_or(if dtype == DType::Q4 { 32 } else { 64 });
        Some(Quant { dtype, block })
    }
}

/// Quantize `values` (`rows` rows, row-major) as `q`: the shard bytes and the relative RMS
/// error against `values`. Each block's scale is the one, among the block's max |value| / qmax
/// and slightly smaller ones (clipping the largest), with the least squared error after
/// rounding to f16.
pub fn quantize(values: &[f32], rows: usize, q: Quant) -> Result<(Vec<u8>, f32), String> {
    if rows == 0 || values.is_empty() || values.len() % rows != 0 || !BLOCKS.contains(&q.block) || !q.dtype.is_quantized() {
        return Err(format!("cannot store {} values in {rows} rows as {:?} blocks of {}", values.len(), q.dtype, q.block));
    }
    let (k, bits, block) = (values.len() / rows, q.dtype.bits() as usize, q.block as usize);
    let qmax = ((1 << (bits - 1)) - 1) as f32;
    let row = row_bytes(q.dtype, k as u64, block as u64) as usize;
    let packed_len = k.div_ceil(32 / bits) * 4;
    let mut out = vec![0u8; rows * row];
    let (mut err, mut norm) = (0f64, 0f64);
    for (src, dst) in values.chunks_exact(k).zip(out.chunks_exact_mut(row)) {
        let (packed, scales) = dst.split_at_mut(packed_len);
        for (b, vals) in src.chunks(block).enumerate() {
            let (scale, e) = best_scale(vals, qmax)?;
            scales[2 * b..2 * b + 2].copy_from_slice(&scale.to_le_bytes());
            let s = scale.to_f32();
            for (i, &v) in vals.iter().enumerate() {
                let q = if s > 0.0 { (v / s).round().clamp(-qmax, qmax) } else { 0.0 };
                let stored = (q + qmax + 1.0) as u8;
                let bit = (b * block + i) * bits;
                packed[bit / 8] |= stored << (bit % 8);
            }
            err += e;
            norm += vals.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        }
    }
    let rel = if norm > 0.0 { (err / norm).sqrt() as f32 } else { 0.0 };
    Ok((out, rel))
}

/// Fractions of max |value| tried as the block's range.
const CLIP: [f32; 8] = [1.0, 0.97, 0.94, 0.91, 0.88, 0.85, 0.82, 0.79];

/// The f16 scale with the least squared error for one block, and that error.
fn best_scale(vals: &[f32], qmax: f32) -> Result<(f16, f64), String> {
    let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
    if !amax.is_finite() || amax / qmax > f16::MAX.to_f32() {
        return Err(format!("a block with max |value| {amax} cannot be quantized with f16 scales"));
    }
    let sq = |d: f32| f64::from(d) * f64::from(d);
    // Scale 0 (everything 0) when the values are below f16's range.
    let mut best = (f16::ZERO, vals.iter().map(|&v| sq(v)).sum::<f64>());
    for c in CLIP {
        let scale = f16::from_f32(amax * c / qmax);
        let s = scale.to_f32();
        if s <= 0.0 {
            continue;
        }
        let e: f64 = vals.iter().map(|&v| sq(v - (v / s).round().clamp(-qmax, qmax) * s)).sum();
        if e < best.1 {
            best = (scale, e);
        }
    }
    Ok(best)
}

/// Dequantize `rows` whole rows of `k` values (`raw`: their shard bytes) on `device` into its
/// float dtype, flat `[rows * k]`. The host only splits the rows into packed words and scales;
/// unpacking and scaling are tensor ops on the device.
pub fn dequantize(raw: &[u8], q: Quant, rows: usize, k: usize, device: &Device) -> Tensor<1> {
    let (bits, block) = (q.dtype.bits() as usize, q.block as usize);
    let per_word = 32 / bits;
    let (words, nb) = (k.div_ceil(per_word), k.div_ceil(block));
    let row = row_bytes(q.dtype, k as u64, block as u64) as usize;
    let (mut packed, mut scales) = (Vec::with_capacity(rows * words * 4), Vec::with_capacity(rows * nb * 2));
    for r in raw.chunks_exact(row) {
        packed.extend_from_slice(&r[..words * 4]);
        scales.extend_from_slice(&r[words * 4..words * 4 + nb * 2]);
    }
    // i32 bit patterns: an arithmetic shift keeps the low bits that the mask selects.
    let packed = Tensor::<2, Int>::from_data(TensorData::from_bytes_vec(packed, [rows, words], BurnDType::I32), device);
    let mask = (1i32 << bits) - 1;
    let fields: Vec<Tensor<2, Int>> =
        (0..per_word).map(|i| packed.clone().bitwise_right_shift_scalar((i * bits) as i32).bitwise_and_scalar(mask)).collect();
    let values = Tensor::stack::<3>(fields, 2)
        .reshape([rows, words * per_word])
        .slice([0..rows, 0..k])
        .float()
        .sub_scalar((1 << (bits - 1)) as f32);
    let scales = Tensor::<2>::from_data(TensorData::from_bytes_vec(scales, [rows, nb], BurnDType::F16), device)
        .unsqueeze_dim::<3>(2)
        .expand([rows, nb, block])
        .reshape([rows, nb * block])
        .slice([0..rows, 0..k]);
    (values * scales).reshape([rows * k])
}
