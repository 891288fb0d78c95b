//! What a loaded model does for one call: the state it keeps between calls, an upscale run
//! (Real-ESRGAN by tiles, or a diffusion model) and PiSA-SR's re-renders at new lambdas.

use burn::tensor::Device;
use image::GrayImage;
use wasm_bindgen::prelude::*;

use super::device::run_error;
use super::glue::{self, aborted, get, get_f64};
use super::images::{alpha_like, deliver, image_data, read_input};
use super::options::{Output, cancel_for, colour_fix, function_opt, output_opt, run_progress, whole_opt};
use crate::image_io;
use crate::model::sd::Method;
use crate::pipeline::gan::{self, GanTiler, TileOptions};
use crate::pipeline::one_step::Guidance;
use crate::pipeline::preprocess::PreprocessOptions;
use crate::pipeline::sd_upscale::{self, Region, Restoration, SdOptions, SdTiling};
use crate::pipeline::{Progress, RunError};
use crate::tiling::memory::DeviceLimits;
use crate::upscaler::Upscaler as Model;

/// PiSA-SR's last adjustable result, for `adjust` / `adjustRegion`: what comes before the
/// decoder, the input's alpha plane at the model's output size (upscaled once, for every
/// re-render) and the output size asked for.
pub(super) struct Last {
    restoration: Restoration,
    alpha: Option<GrayImage>,
    size: Option<(u32, u32)>,
}

/// An image planned for a pool of workers by `planTiles` (tiles.rs), kept for the calls on
/// its tiles.
pub(super) struct TileJob {
    pub(super) tiler: GanTiler,
    pub(super) tile: TileOptions,
    /// The pixels of one tile (the pace of `runTile` is measured per pixel).
    pub(super) tile_px: f64,
    pub(super) alpha: Option<GrayImage>,
    pub(super) size: Option<(u32, u32)>,
    pub(super) output: Output,
    /// Outputs blended so far: they must come in tile order.
    pub(super) accepted: usize,
}

pub(super) struct State {
    pub(super) model: Model,
    pub(super) device: Device,
    /// On this thread's WebGPU device, whose loss ends a run at once.
    pub(super) webgpu: bool,
    pub(super) limits: DeviceLimits,
    pub(super) last: Option<Last>,
    /// Milliseconds per pixel of a Real-ESRGAN tile (padding included) in the last run: where
    /// this run's tiles would take over a second, it also reports (and takes aborts) between
    /// the body blocks of a tile.
    pub(super) tile_px_ms: Option<f64>,
    /// The image planned for a pool of workers (`planTiles`).
    pub(super) tiles: Option<TileJob>,
}

pub(super) fn model_scale(model: &Model) -> u32 {
    match model {
        Model::Gan(up) => up.scale(),
        Model::Sd(up) => up.model.config.scale as u32,
    }
}

pub(super) async fn upscale_with(state: &mut State, image: JsValue, opts: JsValue) -> Result<JsValue, String> {
    let signal = get(&opts, "signal");
    let mut progress = run_progress(function_opt(&opts, "onProgress"));
    // Options first: a mistake is reported before any work.
    let (lp, ls) = (get_f64(&opts, "lambdaPix"), get_f64(&opts, "lambdaSem"));
    let pisa = matches!(&state.model, Model::Sd(up) if up.model.config.method == Method::PisaSr);
    if (lp.is_some() || ls.is_some()) && !pisa {
        return Err("lambdaPix / lambdaSem apply to PiSA-SR models only".into());
    }
    let scale = get_f64(&opts, "scale");
    let width = whole_opt(&opts, "width", 1.0)?.map(|w| w as u32);
    let (rgb, alpha, encoded) = read_input(&image, &mut progress).await?;
    let output = output_opt(&opts, encoded)?;
    let (w, h) = rgb.dimensions();
    let size = image_io::output_size(w, h, model_scale(&state.model), scale, width)?;
    if aborted(&signal) {
        return Err("cancelled".into());
    }
    let (cancel, _abort) = cancel_for(&signal);
    match &state.model {
        Model::Gan(up) => {
            let (tile, tile_px) = gan_tile_options(state.tile_px_ms, up.default_tile_options(), w, h, &opts)?;
            let t0 = glue::now();
            let mut tiles = 0;
            let mut counting = |p: Progress| {
                tiles = p.total;
                progress(p)
            };
            let out = match gan::upscale_async(&up.model, &state.device, &rgb, tile, &mut counting, &cancel).await {
                // One retry with tiles of half the side (a quarter of the memory).
                Err(RunError::OutOfMemory(why)) if tile.tile >= 64 => {
                    let smaller = TileOptions { tile: tile.tile / 2, overlap: tile.overlap.min(tile.tile / 8), ..tile };
                    let msg = format!("out of GPU memory with {} px tiles ({why}); retrying once with {} px tiles", tile.tile, smaller.tile);
                    web_sys::console::warn_1(&msg.into());
                    gan::upscale_async(&up.model, &state.device, &rgb, smaller, &mut counting, &cancel).await
                }
                r => r,
            }
            .map_err(run_error)?;
            state.tile_px_ms = Some((glue::now() - t0) / (tiles.max(1) as f64 * tile_px));
            let alpha = alpha_like(alpha, &out);
            deliver(out, alpha.as_ref(), size, output, &mut progress)
        }
        Model::Sd(up) => {
            let guidance = match (lp, ls) {
                (None, None) => Guidance::Default,
                (p, s) => Guidance::Adjustable { lambda_pix: p.unwrap_or(1.0) as f32, lambda_sem: s.unwrap_or(1.0) as f32 },
            };
            let mut preprocess = PreprocessOptions::default();
            if let Some(p) = get_f64(&opts, "processSize") {
                if !(p >= 8.0) {
                    return Err("processSize must be at least 8".into());
                }
                preprocess.process_size = p as u32;
            }
            let tiling = SdTiling {
                latent_tile: whole_opt(&opts, "latentTile", 1.0)?,
                latent_overlap: whole_opt(&opts, "latentOverlap", 0.0)?,
                vae_rows: whole_opt(&opts, "vaeTile", 1.0)?,
                limits: state.limits,
            };
            if tiling.latent_overlap.zip(tiling.latent_tile).is_some_and(|(o, t)| o >= t) {
                return Err("latentOverlap must be smaller than latentTile".into());
            }
            let sd = SdOptions { preprocess, colour_fix: colour_fix(&opts)?, guidance, tiling, cancel, ..SdOptions::default() };
            let (out, restoration) = match sd_upscale::upscale_async(&up.model, &state.device, &rgb, &sd, &mut progress).await {
                // One retry with latent tiles of half the side and VAE bands of half the height.
                Err(RunError::OutOfMemory(why)) => {
                    let smaller = SdOptions { tiling: tiling.halved(&up.model, &rgb, preprocess), ..sd.clone() };
                    let msg = format!(
                        "out of GPU memory ({why}); retrying once with {} latent tiles and {} px VAE bands",
                        smaller.tiling.latent_tile.unwrap_or_default(),
                        smaller.tiling.vae_rows.unwrap_or_default()
                    );
                    web_sys::console::warn_1(&msg.into());
                    sd_upscale::upscale_async(&up.model, &state.device, &rgb, &smaller, &mut progress).await
                }
                r => r,
            }
            .map_err(run_error)?;
            let alpha = alpha_like(alpha, &out);
            let result = deliver(out, alpha.as_ref(), size, output, &mut progress)?;
            state.last = matches!(guidance, Guidance::Adjustable { .. }).then_some(Last { restoration, alpha, size });
            Ok(result)
        }
    }
}

/// A Real-ESRGAN run's tile options (`tile` / `overlap` over the model's defaults, checked)
/// and the pixels of the image's largest tile (reflect padding included; a small image is
/// one tile): what one tile's time grows with. `tile_px_ms`: the last run's pace.
pub(super) fn gan_tile_options(tile_px_ms: Option<f64>, d: TileOptions, w: u32, h: u32, opts: &JsValue) -> Result<(TileOptions, f64), String> {
    let side = get_f64(opts, "tile").map_or(d.tile, |v| v as usize);
    let tile_px = ((w as usize + 2 * gan::PAD).min(side) * (h as usize + 2 * gan::PAD).min(side)) as f64;
    // Slow runs (a first run compiling shaders, a software adapter, a large tile on the
    // CPU) report between body blocks too; a second readback per block costs little there.
    let slow = tile_px_ms.is_none_or(|ms| ms * tile_px > 1000.0);
    let tile = TileOptions {
        tile: side,
        overlap: get_f64(opts, "overlap").map_or(d.overlap, |v| v as usize),
        block_checkpoints: usize::from(slow),
        tta: false,
    };
    if tile.tile == 0 || tile.overlap >= tile.tile {
        return Err("tile must be positive and larger than overlap".into());
    }
    Ok((tile, tile_px))
}

/// The PiSA-SR model and its last adjustable result, or why there are none.
fn adjustable(s: &mut State) -> Result<(&crate::pipeline::one_step::OneStepSr, &mut Last), String> {
    let up = match &s.model {
        Model::Sd(up) if up.model.config.method == Method::PisaSr => up,
        _ => return Err("adjust() needs a PiSA-SR model".to_string()),
    };
    let last = s.last.as_mut().ok_or("adjust() needs a PiSA-SR result made with lambdaPix / lambdaSem: call upscale() with them first")?;
    Ok((&up.model, last))
}

pub(super) async fn adjust_with(s: &mut State, lambdas: (f32, f32), opts: JsValue) -> Result<JsValue, String> {
    let output = output_opt(&opts, false)?;
    let signal = get(&opts, "signal");
    if aborted(&signal) {
        return Err("cancelled".into());
    }
    let mut progress = run_progress(function_opt(&opts, "onProgress"));
    let (model, last) = adjustable(s)?;
    let (cancel, _abort) = cancel_for(&signal);
    last.restoration.set_cancel(cancel);
    let out = last.restoration.render_async(model, lambdas, &mut progress).await.map_err(run_error)?;
    deliver(out, last.alpha.as_ref(), last.size, output, &mut progress)
}

/// Latents of context around a previewed region (the CLI's bench-adjust default).
const REGION_HALO: usize = 8;

pub(super) async fn adjust_region_with(s: &mut State, lambdas: (f32, f32), region: JsValue) -> Result<JsValue, String> {
    let (model, last) = adjustable(s)?;
    let r = &last.restoration;
    let (nw, nh) = r.pre.input.dimensions();
    // The caller's region is in output pixels (the model's own size, before `scale` /
    // `width`); the network input may be larger (a small image is first enlarged).
    let (ow, oh) = r.pre.out_size;
    let num = |k: &str| get_f64(&region, k).filter(|v| v.is_finite() && *v >= 0.0).ok_or(format!("region.{k} must be a number of at least 0"));
    let (x, y, w, h) = (num("x")?, num("y")?, num("width")?, num("height")?);
    if w < 1.0 || h < 1.0 || x + w > ow as f64 || y + h > oh as f64 {
        return Err(format!("the region {w}x{h} at ({x}, {y}) is not inside the {ow}x{oh} result"));
    }
    let (sx, sy) = (nw as f64 / ow as f64, nh as f64 / oh as f64);
    let net = Region {
        x: (x * sx).floor() as usize,
        y: (y * sy).floor() as usize,
        w: (((x + w) * sx).ceil() as usize).min(nw as usize) - (x * sx).floor() as usize,
        h: (((y + h) * sy).ceil() as usize).min(nh as usize) - (y * sy).floor() as usize,
    };
    let part = last.restoration.render_region_async(model, lambdas, net, REGION_HALO).await?;
    let (w, h) = (w as u32, h as u32);
    let part = if part.dimensions() == (w, h) { part } else { image::imageops::resize(&part, w, h, image::imageops::FilterType::Triangle) };
    let alpha = last.alpha.as_ref().map(|a| image::imageops::crop_imm(a, x as u32, y as u32, w, h).to_image());
    Ok(image_data(&part, alpha.as_ref()))
}
