//! Bindings to `glue.js`: the browser services the Rust side uses.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/web/glue.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = idbGet)]
    pub async fn idb_get(store: &str, key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = idbPut)]
    pub async fn idb_put(store: &str, key: &str, value: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = idbKeys)]
    pub async fn idb_keys(store: &str, prefix: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = idbValues)]
    pub async fn idb_values(store: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = idbDelete)]
    pub async fn idb_delete(store: &str, key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = idbDeletePrefix)]
    pub async fn idb_delete_prefix(store: &str, prefix: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = errorName)]
    pub fn error_name(e: &JsValue) -> String;
    #[wasm_bindgen(js_name = errorMessage)]
    pub fn error_message(e: &JsValue) -> String;
    #[wasm_bindgen(catch, js_name = absoluteUrl)]
    pub fn absolute_url(url: &str) -> Result<String, JsValue>;
    #[wasm_bindgen(catch, js_name = resolveUrl)]
    pub fn resolve_url(file: &str, base: &str) -> Result<String, JsValue>;
    #[wasm_bindgen(catch, js_name = fetchText)]
    pub async fn fetch_text(url: &str, signal: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = fetchBytes)]
    pub async fn fetch_bytes(url: &str, signal: &JsValue, limit: f64, on_bytes: &js_sys::Function) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = storageEstimate)]
    pub async fn storage_estimate() -> JsValue;
    #[wasm_bindgen(js_name = storagePersist)]
    pub async fn storage_persist() -> JsValue;
    #[wasm_bindgen(js_name = gpuAdapter)]
    pub async fn gpu_adapter() -> JsValue;
    #[wasm_bindgen(catch, js_name = imagePixels)]
    pub fn image_pixels(img: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = lockAcquire)]
    pub async fn lock_acquire(name: &str, signal: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = nextTask)]
    pub async fn next_task();
    #[wasm_bindgen(js_name = onAbort)]
    pub fn on_abort(signal: &JsValue, f: &js_sys::Function) -> js_sys::Function;
    #[wasm_bindgen(js_name = isBlob)]
    pub fn is_blob(v: &JsValue) -> bool;
    #[wasm_bindgen(catch, js_name = blobBytes)]
    pub async fn blob_bytes(blob: &JsValue, limit: Option<f64>) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = blobSize)]
    pub fn blob_size(blob: &JsValue) -> f64;
    #[wasm_bindgen(js_name = watchDeviceRequests)]
    pub fn watch_device_requests() -> js_sys::Function;
    #[wasm_bindgen(js_name = deviceLostInfo)]
    pub fn device_lost_info() -> JsValue;
    #[wasm_bindgen(js_name = deviceLost)]
    pub fn device_lost() -> js_sys::Promise;
    #[wasm_bindgen(js_name = pngBlob)]
    pub fn png_blob(bytes: &[u8]) -> JsValue;
    pub fn now() -> f64;
    #[wasm_bindgen(js_name = makeImageData)]
    pub fn make_image_data(rgba: &[u8], width: u32, height: u32) -> JsValue;
    #[wasm_bindgen(catch, js_name = readSlice)]
    pub fn read_slice(blob: &JsValue, start: f64, end: f64) -> Result<js_sys::Uint8Array, JsValue>;
    #[wasm_bindgen(js_name = randomId)]
    pub fn random_id() -> String;
}

/// `obj[key]`, undefined when absent.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() { js_sys::Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED) } else { JsValue::UNDEFINED }
}

pub fn get_f64(obj: &JsValue, key: &str) -> Option<f64> {
    get(obj, key).as_f64()
}

/// A plain object from key/value pairs.
pub fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// Whether an AbortSignal (or undefined) has fired.
pub fn aborted(signal: &JsValue) -> bool {
    get(signal, "aborted").as_bool().unwrap_or(false)
}

/// Sets a [`Cancel`](crate::pipeline::Cancel) as soon as `signal` aborts (the pipelines give
/// the worker a turn between tiles, so the abort event runs there); stops listening on drop.
pub struct AbortLink {
    off: js_sys::Function,
    _f: Closure<dyn FnMut()>,
}

impl AbortLink {
    pub fn new(signal: &JsValue, cancel: &crate::pipeline::Cancel) -> Self {
        let c = cancel.clone();
        let f = Closure::<dyn FnMut()>::new(move || c.cancel());
        let off = on_abort(signal, f.as_ref().unchecked_ref());
        Self { off, _f: f }
    }
}

impl Drop for AbortLink {
    fn drop(&mut self) {
        let _ = self.off.call0(&JsValue::NULL);
    }
}

/// A held Web Lock ([`lock_acquire`]), released when dropped (on every return path).
pub struct HeldLock(js_sys::Function);

impl HeldLock {
    /// Wait for the lock `name` (every tab and worker of the origin); `signal` aborts the wait.
    pub async fn acquire(name: &str, signal: &JsValue) -> Result<Self, JsValue> {
        let release = lock_acquire(name, signal).await?;
        Ok(Self(release.dyn_into().unwrap_or_else(|_| js_sys::Function::new_no_args(""))))
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.call0(&JsValue::NULL);
    }
}
