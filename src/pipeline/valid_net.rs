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

/// The image prepared for tiling: a `tile` px grid over the (edge-extended) image, each tile
/// read with the network's context as the runtime reads it.
struct Tiles<'a> {
    img: &'a RgbImage,
    p: crate::model::processing::Processing,
    tile: usize,
    /// The image's size after extending sides too small for the border mode.
    ew: usize,
    eh: usize,
}

impl Tiles<'_> {
    fn grid(&self) -> (usize, usize) {
        (self.ew.div_ceil(self.tile), self.eh.div_ceil(self.tile))
    }

    /// Tile `(xi, yi)`: its origin and size without context, and its padded input (planar
    /// values and `[1, 3, h, w]`).
    fn input(&self, xi: usize, yi: usize, device: &Device) -> (usize, usize, usize, usize, Vec<f32>, Tensor<4>) {
        let (w, h) = (self.img.width() as usize, self.img.height() as usize);
        let (x0, y0) = (xi * self.tile, yi * self.tile);
        let tw = ((xi + 1) * self.tile).min(self.ew) - x0;
        let th = ((yi + 1) * self.tile).min(self.eh) - y0;
        let p = &self.p;
        let pad = p.prepadding as isize;
        let (iw, ih) = (tw + 2 * p.prepadding + p.align_extra(tw), th + 2 * p.prepadding + p.align_extra(th));
        let mut v = Vec::with_capacity(3 * iw * ih);
        for c in 0..3 {
            for y in 0..ih {
                let sy = extend(y0 as isize + y as isize - pad, self.eh, p.border).min(h - 1);
                v.extend((0..iw).map(|x| {
                    let sx = extend(x0 as isize + x as isize - pad, self.ew, p.border).min(w - 1);
                    self.img.get_pixel(sx as u32, sy as u32)[c] as f32 * (1.0 / 255.0)
                }));
            }
        }
        let t = Tensor::<4>::from_data(TensorData::new(v.clone(), [1, 3, ih, iw]), device);
        (x0, y0, tw, th, v, t)
    }
}

/// The whole image's SE means, tile by tile: for each SE block in turn, every tile runs up to
/// it (the earlier blocks with the whole image's means) and adds up the part of its map that
/// it owns. Tiles are multiples of 4 px, so each map's grid lines up with the whole image's
/// (the stride-2 layers see the same phase) and the owned parts cover the whole image's map
/// exactly once: tile `i` owns `[i tile r, (i + 1) tile r)` at resolution `r`, the last tile
/// everything to its map's end. The means are then the whole image's, up to float rounding.
async fn whole_image_means(
    net: &crate::model::Cunet,
    tiles: &Tiles<'_>,
    device: &Device,
    cancel: &Cancel,
) -> Result<Vec<Tensor<4>>, RunError> {
    let (xtiles, ytiles) = tiles.grid();
    let mut means = Vec::new();
    for (k, (num, den)) in net.se_resolutions().into_iter().enumerate() {
        let mut sum: Option<Tensor<4>> = None;
        let mut count = 0usize;
        for yi in 0..ytiles {
            for xi in 0..xtiles {
                cancel.checkpoint().await?;
                let (_, _, tw, th, _, x) = tiles.input(xi, yi, device);
                let a = net.se_input(x, &means, k);
                let [n, c, ah, aw] = a.dims();
                let oh = if yi + 1 == ytiles { ah } else { th * num / den };
                let ow = if xi + 1 == xtiles { aw } else { tw * num / den };
                count += oh * ow;
                let part = a.slice([0..n, 0..c, 0..oh, 0..ow]).sum_dims(&[2, 3]);
                sum = Some(match sum {
                    Some(s) => s + part,
                    None => part,
                });
            }
        }
        means.push(sum.expect("at least one tile") / count as f32);
    }
    Ok(means)
}

/// Upscale `img` with `net`, tile by tile (`tile` px; `tta`: the 8-fold average). With SE
/// blocks and more than one tile, their means are first taken over the whole image
/// ([`whole_image_means`]; without TTA), so the tiles give the whole image's result.
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
    // A multiple of 4, so that tiles line up with the stride-2 layers' grid.
    let tile = tile.max(4).next_multiple_of(4);
    let tiles = Tiles { img, p: p.clone(), tile, ew, eh };
    let (xtiles, ytiles) = tiles.grid();
    let total = xtiles * ytiles;
    progress(Progress::new("upscale", 0, total));
    let means = match net.with_se() {
        Some(cunet) if total > 1 && !tta => whole_image_means(cunet, &tiles, device, cancel).await?,
        _ => Vec::new(),
    };
    let mut out = vec![0f32; 3 * s * s * ew * eh];
    for yi in 0..ytiles {
        for xi in 0..xtiles {
            cancel.checkpoint().await?;
            let (x0, y0, tw, th, v, x) = tiles.input(xi, yi, device);
            let (ih, iw) = (x.dims()[2], x.dims()[3]);
            let y = net.run(x, tta, &means).into_data_async().await?;
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
