//! The `Upscaler` class: `Upscaler.load(manifestUrl, opts)` builds a model on the chosen
//! device; `upscale`, `adjust` and `adjustRegion` run it, one call at a time; `Upscaler.cached()`
//! and `Upscaler.evict(manifestUrl)` manage the weight cache.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::device::{LOST_ADVICE, Loss, choose_device, device_lost};
use super::glue::{get, get_f64, object};
use super::options::{function_opt, js_error, string_opt};
use super::run::{State, adjust_region_with, adjust_with, model_scale, upscale_with};
use super::shards::{self, LoadOptions};
use crate::upscaler::Upscaler as Model;

/// A loaded model on this thread's device.
#[wasm_bindgen]
pub struct Upscaler {
    pub(super) state: Rc<RefCell<Option<State>>>,
    info: JsValue,
}

/// Runs `f` with the state taken out (so a second call while one runs is refused instead of
/// racing), and puts it back whatever happens. On WebGPU a loss of the device ends the call
/// at once: a readback pending then might never return, and the model is gone with it.
pub(super) async fn with_state<T>(cell: Rc<RefCell<Option<State>>>, f: impl AsyncFnOnce(&mut State) -> Result<T, String>) -> Result<T, JsValue> {
    let lost = || device_lost().map(|lost| js_error(format!("{lost}; {LOST_ADVICE}")));
    let Some(mut state) = cell.borrow_mut().take() else {
        return Err(lost().unwrap_or_else(|| js_error("this Upscaler is busy with another call; await it first")));
    };
    let webgpu = state.webgpu;
    let run = async { Some(f(&mut state).await) };
    let outcome = if webgpu {
        futures_lite::future::or(run, async {
            Loss::new().await;
            None
        })
        .await
    } else {
        run.await
    };
    let Some(r) = outcome else {
        return Err(lost().unwrap_or_else(|| js_error("the GPU device was lost")));
    };
    *cell.borrow_mut() = Some(state);
    r.map_err(js_error)
}

#[wasm_bindgen]
impl Upscaler {
    /// Fetch (or read from the cache) the model at `manifestUrl` and build it on the device.
    #[wasm_bindgen(unchecked_return_type = "Promise<Upscaler>")]
    pub fn load(
        #[wasm_bindgen(js_name = manifestUrl)] manifest_url: String,
        #[wasm_bindgen(unchecked_param_type = "LoadOptions | undefined")] opts: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(async move {
            let backend = string_opt(&opts, "backend").unwrap_or_default();
            let precision = string_opt(&opts, "precision").unwrap_or_default();
            let (gpu, backend, notice) = choose_device(&backend, &precision).await.map_err(js_error)?;
            let load = LoadOptions {
                on_progress: function_opt(&opts, "onProgress"),
                signal: get(&opts, "signal"),
                persist: get(&opts, "persist").is_truthy(),
                block_bytes: get_f64(&opts, "uploadBlockBytes").map_or(shards::BLOCK_BYTES, |v| (v as u64).max(1)),
                backend,
            };
            let (manifest, store, report) = shards::load(&manifest_url, &gpu.device, &load)
                .await
                .map_err(|e| js_error(if backend == "webgpu" { device_lost().map_or(e, |lost| format!("{lost}; {LOST_ADVICE}")) } else { e }))?;
            shards::report_built(&manifest, &load);
            let model = Model::from_store(&manifest, store, &gpu.device).map_err(|e| js_error(e.to_string()))?;
            let notices = js_sys::Array::new();
            for n in notice.iter().chain(report.notices.iter()) {
                notices.push(&n.as_str().into());
            }
            let info = object(&[
                ("modelId", manifest.model_id.as_str().into()),
                ("architecture", manifest.architecture.as_str().into()),
                ("scale", (model_scale(&model) as f64).into()),
                ("backend", backend.into()),
                ("precision", (if gpu.f16 { "f16" } else { "f32" }).into()),
                ("fromCache", (report.from_cache as f64).into()),
                ("fromNetwork", (report.from_network as f64).into()),
                ("notices", notices.into()),
            ]);
            let state = State { model, device: gpu.device, webgpu: backend == "webgpu", limits: gpu.limits, last: None, tile_px_ms: None, tiles: None };
            Ok(Upscaler { state: Rc::new(RefCell::new(Some(state))), info }.into())
        })
    }

    /// What was loaded and how: `ModelInfo`.
    #[wasm_bindgen(getter, unchecked_return_type = "ModelInfo")]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// Upscale a File / Blob (decoded here as the CLI decodes a file), an ImageData or an
    /// ImageBitmap by the model's scale (or `scale` / `width`); resolves to a PNG Blob
    /// (`output: "png"`, the default for files) or an ImageData.
    #[wasm_bindgen(unchecked_return_type = "Promise<Blob | ImageData>")]
    pub fn upscale(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Blob | ImageData | ImageBitmap")] image: JsValue,
        #[wasm_bindgen(unchecked_param_type = "UpscaleOptions | undefined")] opts: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| upscale_with(s, image, opts).await))
    }

    /// PiSA-SR: the last adjustable result at new lambdas, whole and exact, without the
    /// encoder or the UNet (only the decoder runs). Resolves to an ImageData, or a PNG Blob
    /// with `output: "png"`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Blob | ImageData>")]
    pub fn adjust(
        &self,
        #[wasm_bindgen(js_name = lambdaPix)] lambda_pix: f32,
        #[wasm_bindgen(js_name = lambdaSem)] lambda_sem: f32,
        #[wasm_bindgen(unchecked_param_type = "AdjustOptions | undefined")] opts: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| adjust_with(s, (lambda_pix, lambda_sem), opts).await))
    }

    /// PiSA-SR: a fast preview of `region` (output pixels) of the last adjustable result at
    /// new lambdas: the decoder runs on the region and its surroundings only, with the
    /// whole image's statistics estimated (`Restoration::render_region`). Resolves to an
    /// ImageData of the region; `adjust` gives the exact whole image.
    #[wasm_bindgen(js_name = adjustRegion, unchecked_return_type = "Promise<ImageData>")]
    pub fn adjust_region(
        &self,
        #[wasm_bindgen(js_name = lambdaPix)] lambda_pix: f32,
        #[wasm_bindgen(js_name = lambdaSem)] lambda_sem: f32,
        #[wasm_bindgen(unchecked_param_type = "Region")] region: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(with_state(self.state.clone(), async move |s| adjust_region_with(s, (lambda_pix, lambda_sem), region).await))
    }

    /// The models in the cache with their sizes: `CachedModel[]`.
    #[wasm_bindgen(unchecked_return_type = "Promise<CachedModel[]>")]
    pub fn cached() -> js_sys::Promise {
        future_to_promise(async move { shards::cached().await.map_err(js_error) })
    }

    /// Delete a cached model; resolves to whether there was one.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn evict(#[wasm_bindgen(js_name = manifestUrl)] manifest_url: String) -> js_sys::Promise {
        future_to_promise(async move { shards::evict(&manifest_url).await.map(JsValue::from).map_err(js_error) })
    }
}
