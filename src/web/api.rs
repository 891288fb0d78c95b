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
use crate::pipeline::sd_upscale::{self, Region, Restoration, SdOptions, SdTiling};
use crate::pipeline::{Cancel, Progress, RunError};
use crate::tiling::memory::{DeviceLimits, Precision, plan_sd};
use crate::upscaler::Upscaler as Model;

/// The largest input the browser build accepts (docs/browser.md, "The largest input"): at x4
/// its result and the copies made to deliver it fit a tab's memory with room to spare.
pub const MAX_BROWSER_INPUT_PIXELS: u64 = 4_000_000;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
export interface LoadProgress {
  /** manifest → (cache | download) per shard → upload (to the device) per shard → build */
  stage: "manifest" | "download" | "cache" | "upload" | "build";
  /** Where the weights go: the backend this load chose. */
  backend: "webgpu" | "cpu";
  shard: number; shards: number; bytesDone: number; bytesTotal: number;
}
export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Ask the browser to keep the cached weights under storage pressure. */
  persist?: boolean;
  /** "auto" (a hardware WebGPU adapter when there is one, else the CPU: a software adapter
   *  such as SwiftShader is skipped, with a notice), "webgpu" (any adapter) or "cpu". */
  backend?: "auto" | "webgpu" | "cpu";
  /** "auto": f16 compute when the adapter has shader-f16, else f32. */
  precision?: "auto" | "f16" | "f32";
  /** Largest piece of a tensor copied into the wasm heap at a time (default 4 MiB). */
  uploadBlockBytes?: number;
}
/** A run's progress: `done` of `total` units of `stage` ("read", "upscale" tiles, "encode",
 *  "unet" latent tiles, "decode", "colour fix" bands, "write"); inside a long unit, `part`
 *  of `parts` (Real-ESRGAN: body blocks of the tile now running). */
export interface RunProgress { stage: string; done: number; total: number; part?: number; parts?: number }
export interface UpscaleOptions {
  /** "png": a PNG Blob encoded in wasm (the CLI's bytes); "imagedata": an ImageData.
   *  Default: "png" for a File / Blob input, "imagedata" for pixels. */
  output?: "png" | "imagedata";
  /** Output scale below the model's (Lanczos-3 downscale of its output), or a target width
   *  in pixels (height keeps the aspect ratio). Default: the model's own scale. */
  scale?: number; width?: number;
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
export interface AdjustOptions { output?: "png" | "imagedata"; onProgress?: (p: RunProgress) => void; signal?: AbortSignal }
export interface Region { x: number; y: number; width: number; height: number }
export interface ModelInfo { modelId: string; architecture: string; scale: number; backend: "webgpu" | "cpu"; precision: "f16" | "f32"; fromCache: number; fromNetwork: number; notices: string[] }
export interface ImageInfo { width: number; height: number; format: "png" | "jpeg" | "webp" | "pixels" }
export interface MemoryStats {
  /** Live bytes in the wasm heap (allocated and not yet freed). */
  heapBytes: number;
  /** The wasm Memory's size: it never shrinks, so it is the peak so far. */
  wasmBytes: number;
  /** burn's allocator on this thread's WebGPU device, once there is one. */
  gpu?: { allocations: number; bytesInUse: number; bytesReserved: number };
}
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

/// "the GPU device was lost (destroyed): Device was destroyed" once this thread's device
/// was lost (its `lost` promise resolved; burn's own report names no reason).
fn device_lost() -> Option<String> {
    let info = glue::device_lost_info();
    if info.is_null() || info.is_undefined() {
        return None;
    }
    let reason = get(&info, "reason").as_string().unwrap_or_default();
    let message = get(&info, "message").as_string().unwrap_or_default();
    let message = message.trim().trim_end_matches('.');
    Some(if message.is_empty() { format!("the GPU device was lost ({reason})") } else { format!("the GPU device was lost ({reason}): {message}") })
}

/// burn's runtime starts one device per thread: after a loss only a new page or worker
/// has a GPU again (the worker client starts a new worker by itself).
const LOST_ADVICE: &str = "reload the page to start a new one";

thread_local! {
    /// WebGPU calls waiting for a loss of the device (a [`Loss`] each), woken by the one
    /// listener on its `lost` promise; one listener per call would pile up on that promise.
    static LOSS_WAITERS: RefCell<(u64, std::collections::HashMap<u64, std::task::Waker>)> = RefCell::new((0, Default::default()));
}

/// Listens for the loss of this thread's device, once (when it starts).
fn wake_on_device_loss() {
    let wake = Closure::<dyn FnMut(JsValue)>::new(|_| {
        let waiting: Vec<_> = LOSS_WAITERS.with(|w| w.borrow_mut().1.drain().map(|(_, k)| k).collect());
        waiting.into_iter().for_each(std::task::Waker::wake);
    });
    let _ = glue::device_lost().then(&wake);
    wake.forget();
}

/// Ready once this thread's WebGPU device is lost.
struct Loss(u64);

impl Loss {
    fn new() -> Self {
        Self(LOSS_WAITERS.with(|w| {
            let mut w = w.borrow_mut();
            w.0 += 1;
            w.0
        }))
    }
}

impl std::future::Future for Loss {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if device_lost().is_some() {
            return std::task::Poll::Ready(());
        }
        LOSS_WAITERS.with(|w| w.borrow_mut().1.insert(self.0, cx.waker().clone()));
        std::task::Poll::Pending
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        LOSS_WAITERS.with(|w| w.borrow_mut().1.remove(&self.0));
    }
}

async fn webgpu(precision: &str) -> Result<Gpu, String> {
    if let Some(r) = GPU.with(|g| g.borrow().clone()) {
        return match (r, device_lost()) {
            (Ok(_), Some(lost)) => Err(format!("{lost}; {LOST_ADVICE}")),
            (r, _) => r,
        };
    }
    let adapter = glue::gpu_adapter().await;
    let r = if adapter.is_null() || adapter.is_undefined() {
        Err("no WebGPU adapter (the browser lacks WebGPU or it is disabled)".to_string())
    } else {
        let stop_watching = glue::watch_device_requests();
        let started = Device::wgpu_options().init_async().await;
        let _ = stop_watching.call0(&JsValue::NULL);
        wake_on_device_loss();
        match started {
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

/// Whether `auto` should skip this adapter, and why: a software adapter (SwiftShader, WARP,
/// lavapipe) runs these models far slower than the CPU backend.
fn software_adapter(adapter: &JsValue) -> Option<String> {
    if !get(adapter, "isFallbackAdapter").as_bool().unwrap_or(false) {
        return None;
    }
    let name: Vec<String> = ["description", "vendor", "architecture"].iter().filter_map(|k| get(adapter, k).as_string()).filter(|s| !s.is_empty()).collect();
    let name = if name.is_empty() { "a fallback adapter".to_string() } else { name.join(" ") };
    Some(format!(
        "the only WebGPU adapter is a software one ({name}), slower than the CPU path: running on the CPU (backend: \"webgpu\" forces the adapter)"
    ))
}

/// The device for `backend` ("auto", "webgpu", "cpu") and a notice when it fell back.
async fn choose_device(backend: &str, precision: &str) -> Result<(Gpu, &'static str, Option<String>), String> {
    let cpu = || Gpu { device: crate::device::cpu(), f16: false, limits: DeviceLimits::webgpu_default() };
    match backend {
        "cpu" => Ok((cpu(), "cpu", None)),
        "webgpu" => webgpu(precision).await.map(|g| (g, "webgpu", None)),
        "auto" | "" => {
            let adapter = glue::gpu_adapter().await;
            if !(adapter.is_null() || adapter.is_undefined()) {
                if let Some(why) = software_adapter(&adapter) {
                    return Ok((cpu(), "cpu", Some(why)));
                }
            }
            match webgpu(precision).await {
                Ok(g) => Ok((g, "webgpu", None)),
                Err(why) => Ok((cpu(), "cpu", Some(format!("{why}; running on the CPU (slower)")))),
            }
        }
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

/// PiSA-SR's last adjustable result, for `adjust` / `adjustRegion`: what comes before the
/// decoder, the input's alpha plane at the model's output size (upscaled once, for every
/// re-render) and the output size asked for.
struct Last {
    restoration: Restoration,
    alpha: Option<GrayImage>,
    size: Option<(u32, u32)>,
}

struct State {
    model: Model,
    device: Device,
    /// On this thread's WebGPU device, whose loss ends a run at once.
    webgpu: bool,
    limits: DeviceLimits,
    last: Option<Last>,
    /// Milliseconds per pixel of a Real-ESRGAN tile (padding included) in the last run: where
    /// this run's tiles would take over a second, it also reports (and takes aborts) between
    /// the body blocks of a tile.
    tile_px_ms: Option<f64>,
}

/// A loaded model on this thread's device.
#[wasm_bindgen]
pub struct Upscaler {
    state: Rc<RefCell<Option<State>>>,
    info: JsValue,
}

/// Runs `f` with the state taken out (so a second call while one runs is refused instead of
/// racing), and puts it back whatever happens. On WebGPU a loss of the device ends the call
/// at once: a readback pending then might never return, and the model is gone with it.
async fn with_state<T, F, Fut>(cell: Rc<RefCell<Option<State>>>, f: F) -> Result<T, JsValue>
where
    F: FnOnce(State) -> Fut,
    Fut: std::future::Future<Output = (State, Result<T, String>)>,
{
    let lost = || device_lost().map(|lost| js_error(format!("{lost}; {LOST_ADVICE}")));
    let Some(state) = cell.borrow_mut().take() else {
        return Err(lost().unwrap_or_else(|| js_error("this Upscaler is busy with another call; await it first")));
    };
    let webgpu = state.webgpu;
    let run = async { Some(f(state).await) };
    let outcome = if webgpu {
        futures_lite::future::or(run, async {
            Loss::new().await;
            None
        })
        .await
    } else {
        run.await
    };
    let Some((state, r)) = outcome else {
        return Err(lost().unwrap_or_else(|| js_error("the GPU device was lost")));
    };
    *cell.borrow_mut() = Some(state);
    r.map_err(js_error)
}

/// Reports progress to the page. Aborts reach the run through its [`glue::AbortLink`].
fn run_progress(on: Option<js_sys::Function>) -> impl FnMut(Progress) {
    move |p: Progress| {
        if let Some(f) = &on {
            let mut pairs = vec![("stage", p.stage.into()), ("done", (p.done as f64).into()), ("total", (p.total as f64).into())];
            if let Some((part, parts)) = p.part {
                pairs.extend([("part", (part as f64).into()), ("parts", (parts as f64).into())]);
            }
            let _ = f.call1(&JsValue::NULL, &object(&pairs));
        }
    }
}

/// A run's cancel flag, set by `signal`, whose checkpoints give the worker a turn (so the
/// abort message is seen between tiles). Keep the link alive for the run.
fn cancel_for(signal: &JsValue) -> (Cancel, glue::AbortLink) {
    let next_task = || -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> { Box::pin(glue::next_task()) };
    let cancel = Cancel::with_yield(std::sync::Arc::new(next_task));
    let link = glue::AbortLink::new(signal, &cancel);
    (cancel, link)
}

fn run_error(e: RunError) -> String {
    match e {
        // burn's report is several lines with a backtrace; the device's own says why.
        RunError::DeviceLost(why) => {
            let lost = device_lost().unwrap_or_else(|| format!("the GPU device was lost: {}", why.lines().next().unwrap_or_default()));
            format!("{lost}; {LOST_ADVICE}")
        }
        e => e.to_string(),
    }
}

/// RGBA pixels → RGB and an alpha plane (None when fully opaque).
fn split_rgba(image: &JsValue) -> Result<(RgbImage, Option<GrayImage>), String> {
    let px = glue::image_pixels(image).map_err(|e| glue::error_message(&e))?;
    let (w, h) = (get_f64(&px, "width").unwrap_or(0.0), get_f64(&px, "height").unwrap_or(0.0));
    if w < 1.0 || h < 1.0 {
        return Err("the image is empty".into());
    }
    if w * h > MAX_BROWSER_INPUT_PIXELS as f64 {
        return Err(image_io::ImageError::TooLarge { width: w as u32, height: h as u32, max: MAX_BROWSER_INPUT_PIXELS / 1_000_000 }.to_string());
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

/// What a run returns.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    Png,
    ImageData,
}

fn output_opt(opts: &JsValue, encoded: bool) -> Result<Output, String> {
    match string_opt(opts, "output").as_deref() {
        None => Ok(if encoded { Output::Png } else { Output::ImageData }),
        Some("png") => Ok(Output::Png),
        Some("imagedata") => Ok(Output::ImageData),
        Some(other) => Err(format!("output must be \"png\" or \"imagedata\", not {other:?}")),
    }
}

/// The input as RGB + alpha: a File / Blob decoded here exactly as the CLI decodes a file
/// (EXIF orientation, 16-bit, straight alpha, the header's size checked before any pixel is
/// allocated), or the pixels of an ImageData / ImageBitmap. Also whether it was encoded.
async fn read_input(image: &JsValue, progress: &mut dyn FnMut(Progress)) -> Result<(RgbImage, Option<GrayImage>, bool), String> {
    if !glue::is_blob(image) {
        let (rgb, alpha) = split_rgba(image)?;
        return Ok((rgb, alpha, false));
    }
    progress(Progress::new("read", 0, 1));
    let bytes = glue::blob_bytes(image, None).await.map_err(|e| format!("cannot read the file: {}", glue::error_message(&e)))?;
    let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
    let d = image_io::decode_with_limit(&bytes, MAX_BROWSER_INPUT_PIXELS).map_err(|e| e.to_string())?;
    progress(Progress::new("read", 1, 1));
    Ok((d.rgb, d.alpha, true))
}

/// The input's alpha plane at the size of the model's output (bicubic, as the CLI does).
fn alpha_like(alpha: Option<GrayImage>, out: &RgbImage) -> Option<GrayImage> {
    alpha.map(|a| image_io::resize_bicubic_gray(&a, out.width(), out.height()))
}

/// The model's output with its alpha (already at the output's size), brought to `size`,
/// as a PNG Blob or an ImageData.
fn deliver(rgb: RgbImage, alpha: Option<&GrayImage>, size: Option<(u32, u32)>, output: Output, progress: &mut dyn FnMut(Progress)) -> Result<JsValue, String> {
    let (rgb, smaller) = match size {
        Some(size) => image_io::downscale(&rgb, alpha, size),
        None => (rgb, None),
    };
    let alpha = smaller.as_ref().or(alpha);
    match output {
        Output::Png => {
            progress(Progress::new("write", 0, 1));
            let png = image_io::encode_png(&rgb, alpha).map_err(|e| e.to_string())?;
            progress(Progress::new("write", 1, 1));
            Ok(glue::png_blob(&png))
        }
        Output::ImageData => Ok(image_data(&rgb, alpha)),
    }
}

fn image_data(rgb: &RgbImage, alpha: Option<&GrayImage>) -> JsValue {
    let (w, h) = rgb.dimensions();
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for (i, p) in rgb.pixels().enumerate() {
        rgba.extend_from_slice(&p.0);
        rgba.push(alpha.map_or(255, |a| a.as_raw()[i]));
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

fn model_scale(model: &Model) -> u32 {
    match model {
        Model::Gan(up) => up.scale(),
        Model::Sd(up) => up.model.config.scale as u32,
    }
}

async fn upscale_with(state: &mut State, image: JsValue, opts: JsValue) -> Result<JsValue, String> {
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
            let d = up.default_tile_options();
            let side = get_f64(&opts, "tile").map_or(d.tile, |v| v as usize);
            // The pixels of this image's largest tile (reflect padding included; a small image
            // is one tile): what one tile's time grows with.
            let tile_px = ((w as usize + 2 * gan::PAD).min(side) * (h as usize + 2 * gan::PAD).min(side)) as f64;
            // Slow runs (a first run compiling shaders, a software adapter, a large tile on the
            // CPU) report between body blocks too; a second readback per block costs little there.
            let slow = state.tile_px_ms.is_none_or(|ms| ms * tile_px > 1000.0);
            let tile = TileOptions {
                tile: side,
                overlap: get_f64(&opts, "overlap").map_or(d.overlap, |v| v as usize),
                block_checkpoints: usize::from(slow),
            };
            if tile.tile == 0 || tile.overlap >= tile.tile {
                return Err("tile must be positive and larger than overlap".into());
            }
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

/// The PiSA-SR model and its last adjustable result, or why there are none.
fn adjustable(s: &mut State) -> Result<(&crate::pipeline::one_step::OneStepSr, &mut Last), String> {
    let up = match &s.model {
        Model::Sd(up) if up.model.config.method == Method::PisaSr => up,
        _ => return Err("adjust() needs a PiSA-SR model".to_string()),
    };
    let last = s.last.as_mut().ok_or("adjust() needs a PiSA-SR result made with lambdaPix / lambdaSem: call upscale() with them first")?;
    Ok((&up.model, last))
}

async fn adjust_with(s: &mut State, lambdas: (f32, f32), opts: JsValue) -> Result<JsValue, String> {
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

async fn adjust_region_with(s: &mut State, lambdas: (f32, f32), region: JsValue) -> Result<JsValue, String> {
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
            let state = State { model, device: gpu.device, webgpu: backend == "webgpu", limits: gpu.limits, last: None, tile_px_ms: None };
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
        let cell = self.state.clone();
        future_to_promise(async move {
            with_state(cell, |mut s| async move {
                let r = upscale_with(&mut s, image, opts).await;
                (s, r)
            })
            .await
        })
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
        let cell = self.state.clone();
        future_to_promise(async move {
            with_state(cell, |mut s| async move {
                let r = adjust_with(&mut s, (lambda_pix, lambda_sem), opts).await;
                (s, r)
            })
            .await
        })
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
        let cell = self.state.clone();
        future_to_promise(async move {
            with_state(cell, |mut s| async move {
                let r = adjust_region_with(&mut s, (lambda_pix, lambda_sem), region).await;
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
        // What `backend: "auto"` would pick.
        let software = webgpu.then(|| software_adapter(&adapter)).flatten();
        let mut pairs: Vec<(&str, JsValue)> = vec![
            ("webgpu", webgpu.into()),
            ("backend", (if webgpu && software.is_none() { "webgpu" } else { "cpu" }).into()),
            ("shaderF16", f16.into()),
        ];
        if webgpu {
            pairs.push(("adapter", adapter.clone()));
        } else {
            pairs.push(("notice", "no WebGPU adapter: models run on the CPU (slower)".into()));
        }
        if let Some(why) = software {
            pairs.push(("notice", why.into()));
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

/// Bytes read for an image's header first: enough for every PNG and WebP header and a JPEG's
/// metadata segments; a JPEG with more before its frame header is read whole.
const HEAD_BYTES: f64 = (1 << 20) as f64;

async fn blob_vec(blob: &JsValue, limit: Option<f64>) -> Result<Vec<u8>, JsValue> {
    let bytes = glue::blob_bytes(blob, limit).await.map_err(|e| js_error(format!("cannot read the file: {}", glue::error_message(&e))))?;
    Ok(js_sys::Uint8Array::new(&bytes).to_vec())
}

/// An image's size, read before any work: a File / Blob's header (`ImageInfo.format` names
/// it), or the width and height of an ImageData / ImageBitmap (or any object with them). Rejects, with the message `upscale` would give,
/// an empty or unknown file and anything over the browser's limit (4 megapixels), so a page
/// can refuse it before loading weights or decoding pixels.
#[wasm_bindgen(js_name = inspectImage, unchecked_return_type = "Promise<ImageInfo>")]
pub fn inspect_image(#[wasm_bindgen(unchecked_param_type = "Blob | ImageData | ImageBitmap | { width: number; height: number }")] image: JsValue) -> js_sys::Promise {
    future_to_promise(async move {
        let (w, h, format) = if glue::is_blob(&image) {
            let head = blob_vec(&image, Some(HEAD_BYTES)).await?;
            let probe = |bytes: &[u8]| image_io::probe(bytes, MAX_BROWSER_INPUT_PIXELS).map(|h| (h.width, h.height, h.format));
            match probe(&head) {
                Err(image_io::ImageError::Corrupt(_)) if glue::blob_size(&image) > HEAD_BYTES => probe(&blob_vec(&image, None).await?),
                r => r,
            }
            .map_err(|e| js_error(e.to_string()))?
        } else {
            let (w, h) = (get_f64(&image, "width").unwrap_or(0.0), get_f64(&image, "height").unwrap_or(0.0));
            if w < 1.0 || h < 1.0 {
                return Err(js_error("upscale() takes a File or Blob (PNG, JPEG or WebP), an ImageData or an ImageBitmap"));
            }
            if w * h > MAX_BROWSER_INPUT_PIXELS as f64 {
                return Err(js_error(
                    image_io::ImageError::TooLarge { width: w as u32, height: h as u32, max: MAX_BROWSER_INPUT_PIXELS / 1_000_000 }.to_string(),
                ));
            }
            (w as u32, h as u32, "pixels")
        };
        Ok(object(&[("width", w.into()), ("height", h.into()), ("format", format.into())]))
    })
}

/// Memory now: the wasm heap's live bytes and the Memory's size, and what burn's allocator
/// holds on this thread's WebGPU device (where it reports it). A long session compares them
/// between runs: they must not grow.
#[wasm_bindgen(js_name = memoryStats, unchecked_return_type = "MemoryStats")]
pub fn memory_stats() -> JsValue {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let wasm = memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64;
    let mut pairs: Vec<(&str, JsValue)> = vec![("heapBytes", (super::heap_bytes() as f64).into()), ("wasmBytes", wasm.into())];
    if let Some(Ok(gpu)) = GPU.with(|g| g.borrow().clone())
        && let Some(u) = gpu.device.memory_pool_usage()
    {
        pairs.push((
            "gpu",
            object(&[
                ("allocations", (u.number_allocs as f64).into()),
                ("bytesInUse", (u.bytes_in_use as f64).into()),
                ("bytesReserved", (u.bytes_reserved as f64).into()),
            ]),
        ));
    }
    object(&pairs)
}

/// Resolves with "the GPU device was lost (reason): message" when this thread's WebGPU device
/// is lost (never, on the CPU backend). The worker client ends its worker then: burn cannot
/// start a second device on a thread.
#[wasm_bindgen(js_name = deviceLost, unchecked_return_type = "Promise<string>")]
pub fn device_lost_promise() -> js_sys::Promise {
    future_to_promise(async {
        let _ = wasm_bindgen_futures::JsFuture::from(glue::device_lost()).await;
        Ok(device_lost().unwrap_or_else(|| "the GPU device was lost".into()).into())
    })
}
