//! The device a model runs on: this thread's WebGPU device (started once, with its loss
//! watched and reported) or the CPU, chosen for `backend`, and the `deviceLost()` export.

use std::cell::RefCell;

use burn::tensor::Device;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::glue::{self, get, get_f64};
use crate::pipeline::RunError;
use crate::tiling::memory::DeviceLimits;

/// The device of this worker or page. burn's WebGPU runtime initialises once per thread, so
/// the first successful init (or its failure) is kept.
#[derive(Clone)]
pub(super) struct Gpu {
    pub(super) device: Device,
    pub(super) f16: bool,
    pub(super) limits: DeviceLimits,
}

thread_local! {
    pub(super) static GPU: RefCell<Option<Result<Gpu, String>>> = const { RefCell::new(None) };
}

/// The limits the planner may use: the adapter's, never past WebGPU's defaults (phones give
/// no more).
pub(super) fn planner_limits(adapter: &JsValue) -> DeviceLimits {
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
pub(super) fn device_lost() -> Option<String> {
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
pub(super) const LOST_ADVICE: &str = "reload the page to start a new one";

thread_local! {
    /// WebGPU calls waiting for a loss of the device (a [`Loss`] each), woken by the one
    /// listener on its `lost` promise; one listener per call would pile up on that promise.
    static LOSS_WAITERS: RefCell<(u64, std::collections::HashMap<u64, std::task::Waker>)> = RefCell::new((0, Default::default()));
}

/// Listens for the loss of this thread's device, once (when it starts).
#[cfg(feature = "webgpu")]
fn wake_on_device_loss() {
    let wake = Closure::<dyn FnMut(JsValue)>::new(|_| {
        let waiting: Vec<_> = LOSS_WAITERS.with(|w| w.borrow_mut().1.drain().map(|(_, k)| k).collect());
        waiting.into_iter().for_each(std::task::Waker::wake);
    });
    let _ = glue::device_lost().then(&wake);
    wake.forget();
}

/// Ready once this thread's WebGPU device is lost.
pub(super) struct Loss(u64);

impl Loss {
    pub(super) fn new() -> Self {
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
        start(&adapter, precision).await
    };
    GPU.with(|g| *g.borrow_mut() = Some(r.clone()));
    r
}

/// burn's WebGPU device on `adapter`, in f16 where the adapter has it and `precision` allows.
#[cfg(feature = "webgpu")]
async fn start(adapter: &JsValue, precision: &str) -> Result<Gpu, String> {
    use burn::tensor::FloatDType;
    let stop_watching = glue::watch_device_requests();
    let started = Device::wgpu_options().init_async().await;
    let _ = stop_watching.call0(&JsValue::NULL);
    wake_on_device_loss();
    match started {
        Ok(mut device) => {
            let has_f16 = get(adapter, "shaderF16").as_bool().unwrap_or(false);
            let f16 = has_f16 && precision != "f32" && device.configure(FloatDType::F16).is_ok();
            Ok(Gpu { device, f16, limits: planner_limits(adapter) })
        }
        Err(e) => Err(format!("WebGPU failed to start: {e}")),
    }
}

/// The CPU-only package (built without the `webgpu` feature) has no WebGPU backend: the
/// worker loads it only when WebGPU will not run, and `pkg/` has both.
#[cfg(not(feature = "webgpu"))]
async fn start(_adapter: &JsValue, _precision: &str) -> Result<Gpu, String> {
    Err(CPU_ONLY.to_string())
}

/// Why the CPU-only package cannot run on WebGPU.
#[cfg(not(feature = "webgpu"))]
const CPU_ONLY: &str = "this is the CPU-only wasm package (pkg/cpu/), without WebGPU: load pkg/onestep_sr.js for backend \"webgpu\"";

/// Whether `auto` should skip this adapter, and why: a software adapter (SwiftShader, WARP,
/// lavapipe) runs these models far slower than the CPU backend.
pub(super) fn software_adapter(adapter: &JsValue) -> Option<String> {
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
pub(super) async fn choose_device(backend: &str, precision: &str) -> Result<(Gpu, &'static str, Option<String>), String> {
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

pub(super) fn run_error(e: RunError) -> String {
    match e {
        // burn's report is several lines with a backtrace; the device's own says why.
        RunError::DeviceLost(why) => {
            let lost = device_lost().unwrap_or_else(|| format!("the GPU device was lost: {}", why.lines().next().unwrap_or_default()));
            format!("{lost}; {LOST_ADVICE}")
        }
        e => e.to_string(),
    }
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
