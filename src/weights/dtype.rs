//! How a tensor's values are stored in a shard: the manifest's `dtype`, and for the
//! block-quantized ones (format v2) the allowed blocks and the bytes of one row. The manifest
//! checks entries against these rules and the quantizer ([`super::quant`]) writes by them.

use serde::{Deserialize, Serialize};

/// The block sizes a manifest may declare.
pub const BLOCKS: [u32; 3] = [32, 64, 128];

/// Bytes of one row of `k` values.
pub fn row_bytes(dtype: DType, k: u64, block: u64) -> u64 {
    k.div_ceil(32 / dtype.bits()) * 4 + (k.div_ceil(block) * 2).next_multiple_of(4)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F16,
    F32,
    /// Block-wise symmetric 8-bit integers with f16 scales (format v2; layout in [`super::quant`]).
    Q8,
    /// The same with 4-bit integers.
    Q4,
}

impl DType {
    pub fn bits(self) -> u64 {
        match self {
            DType::F16 => 16,
            DType::F32 => 32,
            DType::Q8 => 8,
            DType::Q4 => 4,
        }
    }

    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Q8 | DType::Q4)
    }

    /// Bytes of a tensor of `shape` stored as this dtype (`block`: q8 / q4 only); `None` when
    /// the combination is not allowed.
    pub fn byte_len(self, shape: &[usize], block: Option<u32>) -> Option<u64> {
        let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
        match (self.is_quantized(), block) {
            (false, None) => numel.checked_mul(self.bits() / 8),
            (true, Some(block)) if BLOCKS.contains(&block) && shape.len() >= 2 && numel > 0 => {
                let rows = shape[0] as u64;
                rows.checked_mul(row_bytes(self, numel / rows, u64::from(block)))
            }
            _ => None,
        }
    }
}
