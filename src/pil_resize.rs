//! Pillow's `Image.resize` for 8-bit RGB and grey (libImaging/Resample.c), bit-exact: the
//! official OSEDiff / PiSA-SR scripts pre-process with PIL, and "bicubic" there is PIL's; the
//! output scale below a model's own (`--scale`, `--width`) is PIL's LANCZOS.
//!
//! Separable, horizontal pass first (skipped when the width is unchanged), then vertical;
//! each pass rounds to uint8. Per output pixel `xx`: `center = (xx + 0.5) * in/out`,
//! `filterscale = max(in/out, 1)`, `support = filter support * filterscale`, taps
//! `xmin..xmax` with `xmin = max(int(center - support + 0.5), 0)`,
//! `xmax = min(int(center + support + 0.5), in)`; `w(x) = filter((x - center + 0.5) / filterscale)`
//! normalised to sum 1 (all in f64, as the C code), then fixed point with 22 fractional bits
//! (round half away from zero); the sum starts at 2^21, is shifted right by 22 and clamped to
//! 0..255. Bicubic uses a = -0.5 (torch uses -0.75) and renormalises the taps at the borders
//! instead of replicating edge pixels; Lanczos is `sinc(x) sinc(x/3)` on [-3, 3).
//! Ported from the numpy re-implementation in tests/fixtures/sd/generate.py (`pil_resize`).

use image::{GrayImage, RgbImage};

/// `PRECISION_BITS = 32 - 8 - 2` in Resample.c.
const PRECISION_BITS: u32 = 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// PIL's default for `Image.resize` (`Image.BICUBIC`).
    Bicubic,
    /// `Image.LANCZOS`.
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) { sinc(x) * sinc(x / 3.0) } else { 0.0 }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// Fixed-point taps `(xmin, weights)` for each output pixel (`precompute_coeffs` +
/// `normalize_coeffs_8bpc`).
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (0..xmax.saturating_sub(xmin))
                .map(|x| filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let sum: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|&v| {
                    let v = if sum != 0.0 { v / sum } else { v };
                    let f = v * (1u64 << PRECISION_BITS) as f64;
                    (if v < 0.0 { -0.5 + f } else { 0.5 + f }) as i64
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resample interleaved rows of `ch` channels: `src` is `h x w x ch`, the result `h x out_w x ch`.
fn horizontal(src: &[u8], ch: usize, w: usize, h: usize, out_w: usize, filter: Filter) -> Vec<u8> {
    let k = coeffs(w, out_w, filter);
    let mut out = vec![0u8; h * out_w * ch];
    for y in 0..h {
        let row = &src[y * w * ch..(y + 1) * w * ch];
        for (xx, (xmin, taps)) in k.iter().enumerate() {
            for c in 0..ch {
                let mut acc = 1i64 << (PRECISION_BITS - 1);
                for (i, &t) in taps.iter().enumerate() {
                    acc += row[(xmin + i) * ch + c] as i64 * t;
                }
                out[(y * out_w + xx) * ch + c] = clip8(acc);
            }
        }
    }
    out
}

fn vertical(src: &[u8], ch: usize, w: usize, h: usize, out_h: usize, filter: Filter) -> Vec<u8> {
    let k = coeffs(h, out_h, filter);
    let stride = w * ch;
    let mut out = vec![0u8; out_h * stride];
    for (yy, (ymin, taps)) in k.iter().enumerate() {
        for x in 0..stride {
            let mut acc = 1i64 << (PRECISION_BITS - 1);
            for (i, &t) in taps.iter().enumerate() {
                acc += src[(ymin + i) * stride + x] as i64 * t;
            }
            out[yy * stride + x] = clip8(acc);
        }
    }
    out
}

fn resize_raw(data: &[u8], ch: usize, (w, h): (u32, u32), (ow, oh): (u32, u32), filter: Filter) -> Vec<u8> {
    let (w, h, ow, oh) = (w as usize, h as usize, ow as usize, oh as usize);
    let mut data = data.to_vec();
    if ow != w {
        data = horizontal(&data, ch, w, h, ow, filter);
    }
    if oh != h {
        data = vertical(&data, ch, ow, h, oh, filter);
    }
    data
}

/// `img.resize((width, height), filter)` as Pillow computes it. Same size: a copy.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let data = resize_raw(img.as_raw(), 3, img.dimensions(), (width, height), filter);
    RgbImage::from_raw(width, height, data).expect("resize keeps the buffer size consistent")
}

/// The same for an `L` (grey, e.g. alpha) image.
pub fn resize_gray(img: &GrayImage, width: u32, height: u32, filter: Filter) -> GrayImage {
    let data = resize_raw(img.as_raw(), 1, img.dimensions(), (width, height), filter);
    GrayImage::from_raw(width, height, data).expect("resize keeps the buffer size consistent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_constant_images_stay_constant() {
        let img = RgbImage::from_pixel(5, 7, image::Rgb([10, 200, 255]));
        assert_eq!(resize(&img, 5, 7, Filter::Lanczos), img);
        for f in [Filter::Bicubic, Filter::Lanczos] {
            let up = resize(&img, 23, 9, f);
            assert!(up.pixels().all(|p| p.0 == [10, 200, 255]), "{f:?}");
        }
    }
}
