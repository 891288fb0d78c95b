//! The math only: modules whose field paths are the checkpoint's tensor names.
//! Nothing here reads files or the network.

pub mod chunked_attention;
pub mod conv;
pub mod cunet;
pub mod deconv;
pub mod gan_net;
pub mod layer;
pub mod layer_spec;
pub mod lora;
pub mod processing;
pub mod resize;
pub mod rrdb;
pub mod sd;
pub mod srvgg;
pub mod upconv7;
pub mod valid_net;

pub use rrdb::{RrdbNet, RrdbNetConfig};
pub use gan_net::GanNet;
pub use srvgg::{SrVggNetCompact, SrVggNetConfig};
pub use cunet::{Cunet, CunetConfig};
pub use upconv7::{UpConv7, UpConv7Config};
