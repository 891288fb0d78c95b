//! How a reference runtime prepares the input of a network whose convolutions are unpadded
//! ("valid": waifu2x, Real-CUGAN) and finishes its output: data only, recorded in the
//! manifest by the converter and followed by [`crate::pipeline::valid_net`].

use serde::{Deserialize, Serialize};

/// How the image is extended beyond its edges before the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Border {
    /// The edge pixel repeated (waifu2x).
    Replicate,
    /// Mirrored without repeating the edge pixel (Real-CUGAN; torch's mode="reflect").
    Reflect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Processing {
    pub border: Border,
    /// Pixels added on every side: the network's own context (its output is unpadded).
    pub prepadding: usize,
    /// Bottom and right are padded further so that the unpadded size is a multiple of this
    /// (the network's stride-2 layers need it); the extra output is cropped.
    pub align: usize,
    /// Real-CUGAN x4: the input, repeated 4x (nearest), is added to the output.
    #[serde(default)]
    pub add_nearest_input: bool,
}

impl Processing {
    /// waifu2x-ncnn-vulkan's: replicate, 7 px for upconv_7, 18 for cunet x2, 28 for cunet x1.
    pub fn waifu2x(prepadding: usize, scale: usize) -> Self {
        Self { border: Border::Replicate, prepadding, align: if scale == 1 { 4 } else { 2 }, add_nearest_input: false }
    }

    /// realcugan-ncnn-vulkan's (the prepadding set by the Python wrapper): reflect 18 / 14 / 19 px
    /// at x2 / x3 / x4, aligned to 2 (x2, x4) or 4 (x3).
    pub fn real_cugan(scale: usize) -> Self {
        let prepadding = match scale {
            3 => 14,
            4 => 19,
            _ => 18,
        };
        Self { border: Border::Reflect, prepadding, align: if scale == 3 { 4 } else { 2 }, add_nearest_input: scale == 4 }
    }

    /// Extra bottom (or right) padding for a side of `n` pixels.
    pub fn align_extra(&self, n: usize) -> usize {
        n.next_multiple_of(self.align.max(1)) - n
    }
}
