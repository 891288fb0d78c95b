//! waifu2x and Real-CUGAN inference as their reference runtimes (waifu2x-ncnn-vulkan,
//! realcugan-ncnn-vulkan, CPU path) do it: RGB / 255; tiles of `tile` px, each read with
//! `prepadding` px of context, the image's border extended by replicate (waifu2x) or reflect
//! (Real-CUGAN) and bottom / right padded further to the network's alignment; the network's
//! output is already unpadded and its top-left `scale x tile` is kept; Real-CUGAN x4 adds the
//! input repeated 4x; each value becomes trunc(v * 255 + 0.5) clamped. The SE blocks average
//! over their tile, so with a tile at least the image's size the result is the whole image's.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::{Cancel, Progress, RunError};
use crate::model::processing::Border;
use crate::model::valid_net::ValidNet;

/// Index `i` (may be outside `0..n`) into `0..n` by `border`.
fn extend(i: isize, n: usize, border: Border) -> usize {
    let n = n as isize;
    match border {
        Border::Replicate => i.clamp(0, n - 1) as usize,
        Border::Reflect => {
            let i = i.abs();
            (if i >= n { 2 * (n - 1) - i } else { i }).clamp(0, n - 1) as usize
        }
    }
}

/// Upscale `img` with `net`, tile by tile (`tile` px; `tta`: the 8-fold average).
pub async fn upscale_async(
    net: &ValidNet,
    device: &Device,
    img: &RgbImage,
    tile: usize,
    tta: bool,
    progress: &mut dyn FnMut(Progress),
    cancel: &Cancel,
) -> Result<RgbImage, RunError> {
    let p = net.processing().clone();
    let s = net.scale();
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Reflection needs more pixels than it reaches; smaller images are first extended by
    // their edge pixels (the runtime reads out of bounds there) and cropped after.
    // Replication reaches any distance (and extending first would change the SE averages).
    let min_side = if p.border == Border::Reflect { p.prepadding + p.align + 1 } else { 1 };
    let (ew, eh) = (w.max(min_side), h.max(min_side));
    let plane = |c: usize, x: usize, y: usize| img.get_pixel(x.min(w - 1) as u32, y.min(h - 1) as u32)[c] as f32 * (1.0 / 255.0);
    let tile = tile.max(1);
    let (xtiles, ytiles) = (ew.div_ceil(tile), eh.div_ceil(tile));
    let total = xtiles * ytiles;
    let mut out = vec![0f32; 3 * s * s * ew * eh];
    progress(Progress::new("upscale", 0, total));
    for yi in 0..ytiles {
        let th = ((yi + 1) * tile).min(eh) - yi * tile;
        for xi in 0..xtiles {
            cancel.checkpoint().await?;
            let tw = ((xi + 1) * tile).min(ew) - xi * tile;
            let (x0, y0) = (xi * tile, yi * tile);
            let pad = p.prepadding as isize;
            let (iw, ih) = (tw + 2 * p.prepadding + p.align_extra(tw), th + 2 * p.prepadding + p.align_extra(th));
            let mut v = Vec::with_capacity(3 * iw * ih);
            for c in 0..3 {
                for y in 0..ih {
                    let sy = extend(y0 as isize + y as isize - pad, eh, p.border);
                    v.extend((0..iw).map(|x| plane(c, extend(x0 as isize + x as isize - pad, ew, p.border), sy)));
                }
            }
            let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [1, 3, ih, iw]), device);
            let y = net.run(x, tta).into_data_async().await?;
            let [_, _, oh, ow] = y.shape().dims();
            let y = y.convert::<f32>().try_into_vec::<f32>().map_err(|e| RunError::Execution(format!("{e:?}")))?;
            for c in 0..3 {
                for j in 0..s * th {
                    let dst = (c * s * eh + s * y0 + j) * s * ew + s * x0;
                    let src = (c * oh + j) * ow;
                    out[dst..dst + s * tw].copy_from_slice(&y[src..src + s * tw]);
                    if p.add_nearest_input {
                        // The runtime adds the nearest-upsampled input after scaling to 0..255.
                        let row = (c * ih + p.prepadding + j / s) * iw + p.prepadding;
                        for (i, o) in out[dst..dst + s * tw].iter_mut().enumerate() {
                            *o = *o * 255.0 + 0.5 + v[row + i / s] * 255.0;
                        }
                    } else {
                        for o in &mut out[dst..dst + s * tw] {
                            *o = *o * 255.0 + 0.5;
                        }
                    }
                }
            }
            progress(Progress::new("upscale", yi * xtiles + xi + 1, total));
        }
    }
    let (ow, oh) = (s * w, s * h);
    let mut rgb = Vec::with_capacity(3 * ow * oh);
    for y in 0..oh {
        for x in 0..ow {
            for c in 0..3 {
                rgb.push(out[(c * s * eh + y) * s * ew + x].trunc().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Ok(RgbImage::from_raw(ow as u32, oh as u32, rgb).expect("output size"))
}
