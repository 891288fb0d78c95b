//! The math only: modules whose field paths are the checkpoint's tensor names.
//! Nothing here reads files or the network.

pub mod chunked_attention;
pub mod conv;
pub mod gan_net;
pub mod lora;
pub mod resize;
pub mod rrdb;
pub mod sd;
pub mod srvgg;

pub use rrdb::{RrdbNet, RrdbNetConfig};
pub use gan_net::GanNet;
pub use srvgg::{SrVggNetCompact, SrVggNetConfig};
