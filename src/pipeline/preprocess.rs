//! Pre- and post-processing of the official OSEDiff / PiSA-SR test scripts (PIL):
//! 1. if a side is under `process_size / scale`, enlarge (PIL bicubic) so that the short side
//!    equals it; 2. PIL bicubic x `scale`; 3. PIL Lanczos to the floor multiple of 8 (a
//!    resample, not a crop; nothing happens when the size already is one); 4. `x / 255 * 2 - 1`.
//! The network output is delivered at exactly `scale x` the input size (see [`Preprocessed::out_size`]).

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use crate::pil_resize::{Filter, resize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreprocessOptions {
    /// The upscaling factor (x4 for both published models).
    pub scale: u32,
    /// `--process_size` of the official scripts (default 512): inputs with a side under
    /// `process_size / scale` are first enlarged.
    pub process_size: u32,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        Self { scale: 4, process_size: 512 }
    }
}

/// Every step's image, so each can be checked against PIL.
pub struct Preprocessed {
    /// Step 1, when it applied.
    pub enlarged: Option<RgbImage>,
    /// Step 2: bicubic x scale.
    pub up: RgbImage,
    /// Step 3: the network input (sides multiples of 8) and the colour-fix source.
    pub input: RgbImage,
    /// `scale x` the original size: what the user gets.
    pub out_size: (u32, u32),
}

pub fn preprocess(img: &RgbImage, opts: PreprocessOptions) -> Preprocessed {
    let (w, h) = img.dimensions();
    let enlarged = enlarged_size((w, h), opts).map(|(ew, eh)| resize(img, ew, eh, Filter::Bicubic));
    let base = enlarged.as_ref().unwrap_or(img);
    let up = resize(base, base.width() * opts.scale, base.height() * opts.scale, Filter::Bicubic);
    let (iw, ih) = multiple_of_8(up.dimensions());
    let input = resize(&up, iw, ih, Filter::Lanczos);
    Preprocessed { enlarged, up, input, out_size: (w * opts.scale, h * opts.scale) }
}

/// The size of [`Preprocessed::input`] for a `w x h` image, without making any pixels.
pub fn input_size((w, h): (u32, u32), opts: PreprocessOptions) -> (u32, u32) {
    let (bw, bh) = enlarged_size((w, h), opts).unwrap_or((w, h));
    multiple_of_8((bw * opts.scale, bh * opts.scale))
}

/// The enlarged size when a side is under `process_size / scale`.
fn enlarged_size((w, h): (u32, u32), opts: PreprocessOptions) -> Option<(u32, u32)> {
    let min_side = opts.process_size / opts.scale; // python `process_size // upscale`
    (w < min_side || h < min_side).then(|| {
        let s = min_side as f64 / w.min(h) as f64; // python float, then int() truncates
        ((s * w as f64) as u32, (s * h as f64) as u32)
    })
}

/// Each side cut down to a multiple of 8 (at least 8).
fn multiple_of_8((w, h): (u32, u32)) -> (u32, u32) {
    ((w - w % 8).max(8), (h - h % 8).max(8))
}

/// RGB u8 → `[1, 3, H, W]` in [0, 1] (`to_tensor`: u8 / 255 in f32).
pub fn to_unit_tensor(img: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut v = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            v[c * h * w + i] = p[c] as f32 / 255.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 3, h, w]), device)
}

/// The network input: `to_tensor(img) * 2 - 1`, `[1, 3, H, W]` in [-1, 1].
pub fn to_model_input(img: &RgbImage, device: &Device) -> Tensor<4> {
    to_unit_tensor(img, device) * 2.0 - 1.0
}

/// `[1, 3, H, W]` in [0, 1] (host values, planar) → RGB u8, rounded to nearest.
/// (torchvision's `ToPILImage` truncates; rounding is the more exact choice.)
pub fn to_rgb8(values: &[f32], h: usize, w: usize) -> RgbImage {
    let mut out = vec![0u8; 3 * h * w];
    for i in 0..h * w {
        for c in 0..3 {
            out[i * 3 + c] = (values[c * h * w + i] * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).expect("size")
}

/// Deliver exactly `out_size`: when steps 1 or 3 changed the geometry, the 8-bit result is
/// resampled with PIL's Lanczos (what PiSA-SR's script does; OSEDiff's forgets it).
pub fn to_output_size(img: RgbImage, out_size: (u32, u32)) -> RgbImage {
    if img.dimensions() == out_size { img } else { resize(&img, out_size.0, out_size.1, Filter::Lanczos) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_size_is_the_size_preprocess_makes() {
        for (w, h) in [(20, 16), (32, 32), (37, 129), (130, 64), (200, 150)] {
            for process_size in [64, 128, 512] {
                let opts = PreprocessOptions { scale: 4, process_size };
                let img = RgbImage::new(w, h);
                assert_eq!(input_size((w, h), opts), preprocess(&img, opts).input.dimensions(), "{w}x{h}, {process_size}");
            }
        }
    }
}
