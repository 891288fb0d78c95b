//! The `capabilities()` export: what this browser offers (WebGPU, shader-f16, the adapter),
//! the backend a load would choose, and the memory planner's estimate for an input size.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::device::{planner_limits, software_adapter};
use super::glue::{self, get, get_f64, object};
use crate::model::sd::OneStepConfig;
use crate::tiling::memory::{Precision, plan_sd};

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
