//! The JavaScript API: `Upscaler.load(manifestUrl, opts)`, `up.upscale(image, opts)`,
//! `up.adjust(lambdaPix, lambdaSem)`, `Upscaler.cached()`, `Upscaler.evict(manifestUrl)` and
//! `capabilities(opts)`. Every call returns a Promise; every failure rejects it with an
//! Error whose message says what happened and what to do.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, FloatDType};
use image::{GrayImage, RgbImage};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::glue::{self, aborted, get, get_f64, object};
use super::shards::{self, LoadOptions};
use crate::image_io;
use crate::model::sd::{Method, OneStepConfig};
use crate::pipeline::colour_fix::ColourFix;
use crate::pipeline::gan::{self, TileOptions};
use crate::pipeline::one_step::Guidance;
use crate::pipeline::preprocess::PreprocessOptions;
use crate::pipeline::sd_upscale::{self, Restoration, SdOptions, SdTiling};
use crate::pipeline::{Cancel, Progress, RunError};
use crate::tiling::memory::{DeviceLimits, Precision, plan_sd};
use crate::upscaler::Upscaler as Model;

/// The largest input the browser build accepts: its x4 result (RGB plus the RGBA copy
/// handed to the page) must fit wasm32's memory and one ArrayBuffer.
pub const MAX_BROWSER_INPUT_PIXELS: f64 = 4_000_000.0;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export interface LoadProgress { stage: "download" | "cache"; shard: number; shards: number; bytesDone: number; bytesTotal: number }
export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Ask the browser to keep the cached weights under storage pressure. */
  persist?: boolean;
  /** "auto" (WebGPU when there is an adapter, else the CPU), "webgpu" or "cpu". */
  backend?: "auto" | "webgpu" | "cpu";
  /** "auto": f16 compute when the adapter has shader-f16, else f32. */
  precision?: "auto" | "f16" | "f32";
  /** Largest piece of a tensor copied into the wasm heap at a time (default 4 MiB). */
  uploadBlockBytes?: number;
}
export interface RunProgress { stage: string; done: number; total: number }
export interface UpscaleOptions {
  /** Real-ESRGAN: tile side in input pixels (default 192) and overlap (default 32). */
  tile?: number; overlap?: number;
  /** PiSA-SR adjustable mode (keeps both LoRA predictions for adjust()). */
  lambdaPix?: number; lambdaSem?: number;
  colorFix?: "adain" | "wavelet" | "none";
  /** Diffusion models: inputs with a side under processSize / 4 are enlarged first (default 512). */
  processSize?: number;
  /** Diffusion models: UNet latent tile side and overlap in latents (default: the memory
   *  planner's choice, 96 / 32 when they fit), and the VAE band height in image pixels
   *  (a multiple of 8; the VAE tiling is exact). An out-of-memory run is retried once with
   *  half of each. */
  latentTile?: number; latentOverlap?: number; vaeTile?: number;
  onProgress?: (p: RunProgress) => void;
  signal?: AbortSignal;
}
export interface ModelInfo { modelId: string; architecture: string; backend: "webgpu" | "cpu"; precision: "f16" | "f32"; fromCache: number; fromNetwork: number; notices: string[] }
export interface CachedModel { url: string; modelId: string; architecture: string; bytes: number; totalBytes: number; shards: number; totalShards: number; complete: boolean }
export interface Capabilities {
  webgpu: boolean; backend: "webgpu" | "cpu"; shaderF16: boolean; notice?: string;
  adapter?: { vendor: string; architecture: string; description: string; isFallbackAdapter: boolean; features: string[]; limits: Record<string, number> };
  estimate?: { width: number; height: number; precision: "f16" | "f32"; peakBytes: number; vaeRows: number; latentTile: number; latentOverlap: number; attentionBlock: number; largestBinding: number; parkOnHost: boolean; hostBytes: number } | { error: string };
}
"#;

/// The device of this worker or page. burn's WebGPU runtime initialises once per thread, so
/// the first successful init (or its failure) is kept.
#[derive(Clone)]
struct Gpu {
    device: Device,
    f16: bool,
    limits: DeviceLimits,
}

thread_local! {
    static GPU: RefCell<Option<Result<Gpu, String>>> = const { RefCell::new(None) };
}

/// The limits the planner may use: the adapter's, never past WebGPU's defaults (phones give
/// no more).
fn planner_limits(adapter: &JsValue) -> DeviceLimits {
    let lim = get(adapter, "limits");
    let d = DeviceLimits::webgpu_default();
    DeviceLimits {
        max_binding: get_f64(&lim, "maxStorageBufferBindingSize").map_or(d.max_binding, |v| (v as u64).min(d.max_binding)),
        max_buffer: get_f64(&lim, "maxBufferSize").map_or(d.max_buffer, |v| (v as u64).min(d.max_buffer)),
        budget: d.budget,
    }
}

async fn webgpu(precision: &str) -> Result<Gpu, String> {
    if let Some(r) = GPU.with(|g| g.borrow().clone()) {
        return r;
    }
    let adapter = glue::gpu_adapter().await;
    let r = if adapter.is_null() || adapter.is_undefined() {
        Err("no WebGPU adapter (the browser lacks WebGPU or it is disabled)".to_string())
    } else {
        match Device::wgpu_options().init_async().await {
            Ok(mut device) => {
                let has_f16 = get(&adapter, "shaderF16").as_bool().unwrap_or(false);
                let f16 = has_f16 && precision != "f32" && device.configure(FloatDType::F16).is_ok();
                Ok(Gpu { device, f16, limits: planner_limits(&adapter) })
            }
            Err(e) => Err(format!("WebGPU failed to start: {e}")),
        }
    };
    GPU.with(|g| *g.borrow_mut() = Some(r.clone()));
    r
}

/// The device for `backend` ("auto", "webgpu", "cpu") and a notice when it fell back.
async fn choose_device(backend: &str, precision: &str) -> Result<(Gpu, &'static str, Option<String>), String> {
    let cpu = || Gpu { device: crate::device::cpu(), f16: false, limits: DeviceLimits::webgpu_default() };
    match backend {
        "cpu" => Ok((cpu(), "cpu", None)),
        "webgpu" => webgpu(precision).await.map(|g| (g, "webgpu", None)),
        "auto" | "" => match webgpu(precision).await {
            Ok(g) => Ok((g, "webgpu", None)),
            Err(why) => Ok((cpu(), "cpu", Some(format!("{why}; running on the CPU (slower)")))),
        },
        other => Err(format!("backend must be \"auto\", \"webgpu\" or \"cpu\", not {other:?}")),
    }
}

fn js_error(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

fn string_opt(opts: &JsValue, key: &str) -> Option<String> {
    get(opts, key).as_string()
}

/// A whole number ≥ `min` under `key`, if given.
fn whole_opt(opts: &JsValue, key: &str, min: f64) -> Result<Option<usize>, String> {
    match get_f64(opts, key) {
        None => Ok(None),
        Some(v) if v >= min && v.fract() == 0.0 => Ok(Some(v as usize)),
        Some(v) => Err(format!("{key} must be a whole number of at least {min}, not {v}")),
    }
}

fn function_opt(opts: &JsValue, key: &str) -> Option<js_sys::Function> {
    get(opts, key).dyn_into::<js_sys::Function>().ok()
}

struct State {
    model: Model,
    device: Device,
    limits: DeviceLimits,
    /// PiSA-SR's last adjustable result, its alpha plane, for `adjust`.
    last: Option<(Restoration, Option<GrayImage>)>,
}

/// A loaded model on this thread's device.
#[wasm_bindgen]
pub struct Upscaler {
    state: Rc<RefCell<Option<State>>>,
    info: JsValue,
}

/// Runs `f` with the state taken out (so a second call while one runs is refused instead of
/// racing), and puts it back whatever happens.
async fn with_state<T, F, Fut>(cell: Rc<RefCell<Option<State>>>, f: F) -> Result<T, JsValue>
where
    F: FnOnce(State) -> Fut,
    Fut: std::future::Future<Output = (State, Result<T, String>)>,
{
    let state = cell.borrow_mut().take().ok_or_else(|| js_error("this Upscaler is busy with another call; await it first"))?;
    let (state, r) = f(state).await;
    *cell.borrow_mut() = Some(state);
    r.map_err(js_error)
}

/// Reports progress to the page. Aborts reach the run through its [`glue::AbortLink`].
fn run_progress(on: Option<js_sys::Function>) -> impl FnMut(Progress) {
    move |p: Progress| {
        if let Some(f) = &on {
            let o = object(&[("stage", p.stage.into()), ("done", (p.done as f64).into()), ("total", (p.total as f64).into())]);
            let _ = f.call1(&JsValue::NULL, &o);
        }
    }
}

fn run_error(e: RunError) -> String {
    e.to_string()
}

/// RGBA pixels → RGB and an alpha plane (None when fully opaque).
fn split_rgba(image: &JsValue) -> Result<(RgbImage, Option<GrayImage>), String> {
    let px = glue::image_pixels(image).map_err(|e| glue::error_message(&e))?;
    let (w, h) = (get_f64(&px, "width").unwrap_or(0.0), get_f64(&px, "height").unwrap_or(0.0));
    if w < 1.0 || h < 1.0 {
        return Err("the image is empty".into());
    }
    if w * h > MAX_BROWSER_INPUT_PIXELS {
        return Err(format!(
            "the image is {w}x{h} pixels; the browser build takes at most {} megapixels (its x4 result must fit the tab's memory)",
            MAX_BROWSER_INPUT_PIXELS / 1e6
        ));
    }
    let data = js_sys::Uint8ClampedArray::new(&get(&px, "data")).to_vec();
    let (w, h) = (w as u32, h as u32);
    if data.len() != (w * h * 4) as usize {
        return Err("the image's pixel data does not match its size".into());
    }
    let rgb = RgbImage::from_fn(w, h, |x, y| {
        let i = ((y * w + x) * 4) as usize;
        image::Rgb([data[i], data[i + 1], data[i + 2]])
    });
    let opaque = data.chunks_exact(4).all(|p| p[3] == 255);
    let alpha = (!opaque).then(|| GrayImage::from_fn(w, h, |x, y| image::Luma([data[((y * w + x) * 4 + 3) as usize]])));
    Ok((rgb, alpha))
}

fn to_image_data(rgb: &RgbImage, alpha: Option<&GrayImage>) -> JsValue {
    let (w, h) = rgb.dimensions();
    let alpha = alpha.map(|a| image_io::resize_bicubic_gray(a, w, h));
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for (i, p) in rgb.pixels().enumerate() {
        rgba.extend_from_slice(&p.0);
        rgba.push(alpha.as_ref().map_or(255, |a| a.as_raw()[i]));
    }
    glue::make_image_data(&rgba, w, h)
}

fn colour_fix(opts: &JsValue) -> Result<ColourFix, String> {
    match string_opt(opts, "colorFix").as_deref() {
        None | Some("adain") => Ok(ColourFix::Adain),
        Some("wavelet") => Ok(ColourFix::Wavelet),
        Some("none") => Ok(ColourFix::None),
        Some(other) => Err(format!("colorFix must be \"adain\", \"wavelet\" or \"none\", not {other:?}")),
    }
}

async fn upscale_with(state: &mut State, image: JsValue, opts: JsValue) -> Result<JsValue, String> {
    let (rgb, alpha) = split_rgba(&image)?;
    let signal = get(&opts, "signal");
    if aborted(&signal) {
        return Err("cancelled".into());
    }
    let cancel = Cancel::default();
    let _abort = glue::AbortLink::new(&signal, &cancel);
    let mut progress = run_progress(function_opt(&opts, "onProgress"));
    let (lp, ls) = (get_f64(&opts, "lambdaPix"), get_f64(&opts, "lambdaSem"));
    match &state.model {
        Model::Gan(up) => {
            if lp.is_some() || ls.is_some() {
                return Err("lambdaPix / lambdaSem apply to PiSA-SR models only".into());
            }
            let d = TileOptions::default();
            let tile = TileOptions {
                tile: get_f64(&opts, "tile").map_or(d.tile, |v| v as usize),
                overlap: get_f64(&opts, "overlap").map_or(d.overlap, |v| v as usize),
            };
            if tile.tile == 0 || tile.overlap >= tile.tile {
                return Err("tile must be positive and larger than overlap".into());
            }
            let out = match gan::upscale_async(&up.model, &state.device, &rgb, tile, &mut progress, &cancel).await {
                // One retry with tiles of half the side (a quarter of the memory).
                Err(RunError::OutOfMemory(why)) if tile.tile >= 64 => {
                    let smaller = TileOptions { tile: tile.tile / 2, overlap: tile.overlap.min(tile.tile / 8) };
                    let msg = format!("out of GPU memory with {} px tiles ({why}); retrying once with {} px tiles", tile.tile, smaller.tile);
                    web_sys::console::warn_1(&msg.into());
                    gan::upscale_async(&up.model, &state.device, &rgb, smaller, &mut progress, &cancel).await
                }
                r => r,
            }
            .map_err(run_error)?;
            Ok(to_image_data(&out, alpha.as_ref()))
        }
        Model::Sd(up) => {
            let guidance = match (lp, ls) {
                (None, None) => Guidance::Default,
                _ if up.model.config.method == Method::OseDiff => {
                    return Err("lambdaPix / lambdaSem apply to PiSA-SR models only".into());
                }
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
            let result = to_image_data(&out, alpha.as_ref());
            state.last = matches!(guidance, Guidance::Adjustable { .. }).then_some((restoration, alpha));
            Ok(result)
        }
    }
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
            };
            let (manifest, store, report) = shards::load(&manifest_url, &gpu.device, &load).await.map_err(js_error)?;
            let model = Model::from_store(&manifest, store, &gpu.device).map_err(|e| js_error(e.to_string()))?;
            let notices = js_sys::Array::new();
            for n in notice.iter().chain(report.notices.iter()) {
                notices.push(&n.as_str().into());
            }
            let info = object(&[
                ("modelId", manifest.model_id.as_str().into()),
                ("architecture", manifest.architecture.as_str().into()),
                ("backend", backend.into()),
                ("precision", (if gpu.f16 { "f16" } else { "f32" }).into()),
                ("fromCache", (report.from_cache as f64).into()),
                ("fromNetwork", (report.from_network as f64).into()),
                ("notices", notices.into()),
            ]);
            let state = State { model, device: gpu.device, limits: gpu.limits, last: None };
            Ok(Upscaler { state: Rc::new(RefCell::new(Some(state))), info }.into())
        })
    }

    /// What was loaded and how: `ModelInfo`.
    #[wasm_bindgen(getter, unchecked_return_type = "ModelInfo")]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// Upscale an ImageData or ImageBitmap x4; resolves to ImageData.
    #[wasm_bindgen(unchecked_return_type = "Promise<ImageData>")]
    pub fn upscale(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageData | ImageBitmap")] image: JsValue,
        #[wasm_bindgen(unchecked_param_type = "UpscaleOptions | undefined")] opts: JsValue,
    ) -> js_sys::Promise {
        let cell = self.state.clone();
        future_to_promise(async move {
            with_state(cell, |mut s| async move {
                let r = upscale_with(&mut s, image, opts).await;
                (s, r)
            })
            .await
        })
    }

    /// PiSA-SR: the last adjustable result at new lambdas, without the encoder or the UNet
    /// (only the decoder runs). Resolves to ImageData.
    #[wasm_bindgen(unchecked_return_type = "Promise<ImageData>")]
    pub fn adjust(&self, #[wasm_bindgen(js_name = lambdaPix)] lambda_pix: f32, #[wasm_bindgen(js_name = lambdaSem)] lambda_sem: f32) -> js_sys::Promise {
        let cell = self.state.clone();
        future_to_promise(async move {
            with_state(cell, |mut s| async move {
                let r = async {
                    let up = match &s.model {
                        Model::Sd(up) if up.model.config.method == Method::PisaSr => up,
                        _ => return Err("adjust() needs a PiSA-SR model".to_string()),
                    };
                    let (restoration, alpha) = s
                        .last
                        .as_mut()
                        .ok_or("adjust() needs a PiSA-SR result made with lambdaPix / lambdaSem: call upscale() with them first")?;
                    let out = restoration.render_async(&up.model, (lambda_pix, lambda_sem), &mut |_| {}).await.map_err(run_error)?;
                    Ok(to_image_data(&out, alpha.as_ref()))
                }
                .await;
                (s, r)
            })
            .await
        })
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

/// What this browser offers: WebGPU, shader-f16, the adapter's limits, the backend a load
/// would use, and (with `{ width, height }` of an input) the memory planner's estimate for
/// PiSA-SR on SD 2.1 at x4.
#[wasm_bindgen(unchecked_return_type = "Promise<Capabilities>")]
pub fn capabilities(#[wasm_bindgen(unchecked_param_type = "{ width?: number; height?: number } | undefined")] opts: JsValue) -> js_sys::Promise {
    future_to_promise(async move {
        let adapter = glue::gpu_adapter().await;
        let webgpu = !(adapter.is_null() || adapter.is_undefined());
        let f16 = webgpu && get(&adapter, "shaderF16").as_bool().unwrap_or(false);
        let mut pairs: Vec<(&str, JsValue)> = vec![
            ("webgpu", webgpu.into()),
            ("backend", (if webgpu { "webgpu" } else { "cpu" }).into()),
            ("shaderF16", f16.into()),
        ];
        if webgpu {
            pairs.push(("adapter", adapter.clone()));
        } else {
            pairs.push(("notice", "no WebGPU adapter: models run on the CPU (slower)".into()));
        }
        if let (Some(w), Some(h)) = (get_f64(&opts, "width"), get_f64(&opts, "height")) {
            let cfg = OneStepConfig::pisa_sr_sd21();
            let precision = if f16 { Precision::F16 } else { Precision::F32 };
            let limits = planner_limits(&adapter);
            // The network input is the x4 size rounded up to a multiple of 8.
            let (oh, ow) = ((h as usize * 4).div_ceil(8) * 8, (w as usize * 4).div_ceil(8) * 8);
            let est = match plan_sd(&cfg, oh, ow, precision, limits) {
                Ok(p) => object(&[
                    ("width", w.into()),
                    ("height", h.into()),
                    ("precision", (if f16 { "f16" } else { "f32" }).into()),
                    ("peakBytes", (p.peak_bytes as f64).into()),
                    ("vaeRows", (p.vae_rows as f64).into()),
                    ("latentTile", (p.latent_tile as f64).into()),
                    ("latentOverlap", (p.latent_overlap as f64).into()),
                    ("attentionBlock", (p.max_scores as f64).into()),
                    ("largestBinding", (p.largest().bytes as f64).into()),
                    ("parkOnHost", p.park_on_host.into()),
                    ("hostBytes", (p.host_bytes as f64).into()),
                ]),
                Err(e) => object(&[("error", e.into())]),
            };
            pairs.push(("estimate", est));
        }
        Ok(object(&pairs))
    })
}
