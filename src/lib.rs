//! onestep-sr: one-step diffusion super-resolution (OSEDiff, PiSA-SR) and Real-ESRGAN on the
//! user's own device. Data flows one way:
//! image ([`image_io`]) → pre-process → model ([`model`], weights from [`weights`]) on a
//! [`device`] → tiles blended ([`tiling`], driven by [`pipeline`]) → image.

pub mod batch;
pub mod catalog;
pub mod cpu;
pub mod device;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod image_io;
pub mod model;
pub mod pil_resize;
pub mod pipeline;
pub mod tiling;
pub mod weights;
pub mod upscaler;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use device::DeviceChoice;
