//! The browser build (wasm32 only): the JavaScript API of `pkg/` ([`api`]), weight delivery
//! through fetch and IndexedDB ([`shards`]) and the browser services they call ([`glue`]).
//! The math is the same crate's; only readbacks are awaited here instead of blocked on.

pub mod api;
pub(crate) mod glue;
pub mod shards;

use wasm_bindgen::prelude::*;

/// Runs when the module is instantiated: a panic (a bug) prints its message and stack to
/// the console instead of an opaque `unreachable`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
