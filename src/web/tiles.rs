//! A Real-ESRGAN run split at its tiles, for the page's pool of workers (web/src/pool.ts):
//! every worker plans the same tiles of the same image (`planTiles`) and runs the ones it is
//! handed (`runTile`); one of them blends the outputs in tile order (`acceptTile`) and
//! post-processes the result (`finishTiles`) with `upscale`'s own code, so the PNG is the
//! same bytes whatever the number of workers.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::device::run_error;
use super::glue::{self, aborted, get, get_f64, object};
use super::images::{alpha_like, deliver, read_input};
use super::options::{cancel_for, function_opt, output_opt, run_progress, whole_opt};
use super::run::{State, TileJob, gan_tile_options, model_scale};
use super::upscaler::{Upscaler, with_state};
use crate::image_io;
use crate::pipeline::gan::{self, GanTiler};
use crate::upscaler::Upscaler as Model;

const NO_PLAN: &str = "no tiles planned: call planTiles() first";

async fn plan_with(s: &mut State, image: JsValue, opts: JsValue) -> Result<JsValue, String> {
    let mut progress = run_progress(function_opt(&opts, "onProgress"));
    let Model::Gan(up) = &s.model else {
        return Err("planTiles() applies to Real-ESRGAN models only".into());
    };
    if get_f64(&opts, "lambdaPix").is_some() || get_f64(&opts, "lambdaSem").is_some() {
        return Err("lambdaPix / lambdaSem apply to PiSA-SR models only".into());
    }
    // The checks and their order are upscale()'s: the same mistake gives the same message.
    let scale = get_f64(&opts, "scale");
    let width = whole_opt(&opts, "width", 1.0)?.map(|w| w as u32);
    s.tiles = None;
    let (rgb, alpha, encoded) = read_input(&image, &mut progress).await?;
    let output = output_opt(&opts, encoded)?;
    let (w, h) = rgb.dimensions();
    let size = image_io::output_size(w, h, model_scale(&s.model), scale, width)?;
    if aborted(&get(&opts, "signal")) {
        return Err("cancelled".into());
    }
    let (tile, tile_px) = gan_tile_options(s.tile_px_ms, up.default_tile_options(), w, h, &opts)?;
    let tiler = GanTiler::new(&rgb, up.scale() as usize, tile);
    let total = tiler.plan.len();
    s.tiles = Some(TileJob { tiler, tile, tile_px, alpha, size, output, accepted: 0 });
    Ok(object(&[("total", (total as f64).into())]))
}

async fn run_with(s: &mut State, index: usize, opts: JsValue) -> Result<JsValue, String> {
    let mut progress = run_progress(function_opt(&opts, "onProgress"));
    let signal = get(&opts, "signal");
    let Model::Gan(up) = &s.model else {
        return Err("runTile() applies to Real-ESRGAN models only".into());
    };
    let job = s.tiles.as_ref().ok_or(NO_PLAN)?;
    if index >= job.tiler.plan.len() {
        return Err(format!("tile {index} is not in the plan of {} tiles", job.tiler.plan.len()));
    }
    if aborted(&signal) {
        return Err("cancelled".into());
    }
    let (cancel, _abort) = cancel_for(&signal);
    let t0 = glue::now();
    let values = gan::run_tile(&up.model, &s.device, &job.tiler, index, job.tile, &mut progress, &cancel).await.map_err(run_error)?;
    s.tile_px_ms = Some((glue::now() - t0) / job.tile_px);
    Ok(js_sys::Float32Array::from(&values[..]).into())
}

fn accept_with(s: &mut State, index: usize, values: &js_sys::Float32Array) -> Result<JsValue, String> {
    let scale = model_scale(&s.model) as usize;
    let job = s.tiles.as_mut().ok_or(NO_PLAN)?;
    if index != job.accepted {
        return Err(format!("tile {index} came out of order: tile {} is next", job.accepted));
    }
    let t = job.tiler.plan.tiles[index];
    let want = 3 * scale * scale * t.h * t.w;
    if values.length() as usize != want {
        return Err(format!("tile {index} has {} values, not the {want} of its output", values.length()));
    }
    job.tiler.accept(index, &values.to_vec());
    job.accepted += 1;
    Ok(JsValue::UNDEFINED)
}

fn finish_with(s: &mut State, opts: JsValue) -> Result<JsValue, String> {
    let mut progress = run_progress(function_opt(&opts, "onProgress"));
    let job = s.tiles.take().ok_or(NO_PLAN)?;
    if job.accepted != job.tiler.plan.len() {
        return Err(format!("{} of {} tiles blended: accept them all first", job.accepted, job.tiler.plan.len()));
    }
    let out = job.tiler.finish();
    let alpha = alpha_like(job.alpha, &out);
    deliver(out, alpha.as_ref(), job.size, job.output, &mut progress)
}

#[wasm_bindgen]
impl Upscaler {
    /// Real-ESRGAN, split at its tiles (a pool of workers): read `image` and plan its tiles
    /// with `upscale`'s options, checked as `upscale` checks them; resolves to `{ total }`.
    /// The plan is kept for `runTile`, `acceptTile` and `finishTiles`.
    #[wasm_bindgen(js_name = planTiles, unchecked_return_type = "Promise<{ total: number }>")]
    pub fn plan_tiles(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Blob | ImageData | ImageBitmap")] image: JsValue,
        #[wasm_bindgen(unchecked_param_type = "UpscaleOptions | undefined")] opts: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| plan_with(s, image, opts).await))
    }

    /// The network on tile `index` of the plan: its output values (planar RGB at the model's
    /// scale), for `acceptTile` in whichever worker blends. `signal` stops it between steps.
    #[wasm_bindgen(js_name = runTile, unchecked_return_type = "Promise<Float32Array>")]
    pub fn run_tile(
        &self,
        index: u32,
        #[wasm_bindgen(unchecked_param_type = "{ onProgress?: (p: RunProgress) => void; signal?: AbortSignal } | undefined")] opts: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| run_with(s, index as usize, opts).await))
    }

    /// Blend tile `index`'s output into the result; tiles must come in order (0, 1, ...), as
    /// `upscale` blends them.
    #[wasm_bindgen(js_name = acceptTile, unchecked_return_type = "Promise<void>")]
    pub fn accept_tile(&self, index: u32, values: js_sys::Float32Array) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| accept_with(s, index as usize, &values)))
    }

    /// The blended result, post-processed as `upscale` does (alpha, `scale` / `width`, PNG or
    /// ImageData); the plan is released.
    #[wasm_bindgen(js_name = finishTiles, unchecked_return_type = "Promise<Blob | ImageData>")]
    pub fn finish_tiles(&self, #[wasm_bindgen(unchecked_param_type = "AdjustOptions | undefined")] opts: JsValue) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| finish_with(s, opts)))
    }
}
