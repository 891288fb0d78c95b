//! The options objects the API takes: their values read and checked (a mistake is an Error
//! that names the option), and the `onProgress` / `signal` of a run.

use wasm_bindgen::prelude::*;

use super::glue::{self, get, get_f64, object};
use crate::pipeline::colour_fix::ColourFix;
use crate::pipeline::{Cancel, Progress};

pub(super) fn js_error(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

pub(super) fn string_opt(opts: &JsValue, key: &str) -> Option<String> {
    get(opts, key).as_string()
}

/// A whole number ≥ `min` under `key`, if given.
pub(super) fn whole_opt(opts: &JsValue, key: &str, min: f64) -> Result<Option<usize>, String> {
    match get_f64(opts, key) {
        None => Ok(None),
        Some(v) if v >= min && v.fract() == 0.0 => Ok(Some(v as usize)),
        Some(v) => Err(format!("{key} must be a whole number of at least {min}, not {v}")),
    }
}

pub(super) fn function_opt(opts: &JsValue, key: &str) -> Option<js_sys::Function> {
    get(opts, key).dyn_into::<js_sys::Function>().ok()
}

/// Reports progress to the page. Aborts reach the run through its [`glue::AbortLink`].
pub(super) fn run_progress(on: Option<js_sys::Function>) -> impl FnMut(Progress) {
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
pub(super) fn cancel_for(signal: &JsValue) -> (Cancel, glue::AbortLink) {
    let next_task = || -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> { Box::pin(glue::next_task()) };
    let cancel = Cancel::with_yield(std::sync::Arc::new(next_task));
    let link = glue::AbortLink::new(signal, &cancel);
    (cancel, link)
}

/// What a run returns.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Output {
    Png,
    ImageData,
}

pub(super) fn output_opt(opts: &JsValue, encoded: bool) -> Result<Output, String> {
    match string_opt(opts, "output").as_deref() {
        None => Ok(if encoded { Output::Png } else { Output::ImageData }),
        Some("png") => Ok(Output::Png),
        Some("imagedata") => Ok(Output::ImageData),
        Some(other) => Err(format!("output must be \"png\" or \"imagedata\", not {other:?}")),
    }
}

pub(super) fn colour_fix(opts: &JsValue) -> Result<ColourFix, String> {
    match string_opt(opts, "colorFix").as_deref() {
        None | Some("adain") => Ok(ColourFix::Adain),
        Some("wavelet") => Ok(ColourFix::Wavelet),
        Some("none") => Ok(ColourFix::None),
        Some(other) => Err(format!("colorFix must be \"adain\", \"wavelet\" or \"none\", not {other:?}")),
    }
}
