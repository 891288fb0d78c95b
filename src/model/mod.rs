//! The math only: modules whose field paths are the checkpoint's tensor names.
//! Nothing here reads files or the network.

pub mod conv;
pub mod lora;
pub mod rrdb;
pub mod sd;

pub use rrdb::{RrdbNet, RrdbNetConfig};
