//! The browser build (wasm32 only): the JavaScript API of `pkg/`, weight delivery through
//! fetch and IndexedDB ([`shards`]) and the browser services they call ([`glue`]). The math
//! is the same crate's; only readbacks are awaited here instead of blocked on.
//!
//! The JavaScript API: `Upscaler.load(manifestUrl, opts)`, `up.upscale(image, opts)`,
//! `up.adjust(lambdaPix, lambdaSem)`, `Upscaler.cached()`, `Upscaler.evict(manifestUrl)`
//! (`upscaler`), `addDiffusionModel(files, opts)` (`convert`), `capabilities(opts)` (`capabilities`), `inspectImage(image)`
//! (`images`), `memoryStats()` (`memory`) and `deviceLost()` (`device`); its TypeScript
//! types are in `types`. Every call returns a Promise; every failure rejects it with an
//! Error whose message says what happened and what to do.

mod capabilities;
mod convert;
mod device;
pub(crate) mod glue;
mod images;
mod memory;
mod options;
mod run;
pub mod shards;
mod tiles;
mod types;
mod upscaler;

pub use capabilities::capabilities;
pub use convert::add_diffusion_model;
pub use device::device_lost_promise;
pub use images::{MAX_BROWSER_INPUT_PIXELS, inspect_image};
pub use memory::memory_stats;
pub use upscaler::Upscaler;

use wasm_bindgen::prelude::*;

/// Runs when the module is instantiated: a panic (a bug) prints its message and stack to
/// the console instead of an opaque `unreachable`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
