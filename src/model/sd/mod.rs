//! Stable Diffusion 2.1-base's networks as diffusers / transformers define them: the VAE
//! (AutoencoderKL), the UNet (UNet2DConditionModel) and the text encoder (CLIPTextModel).
//! Field paths equal the checkpoint keys; configs have `sd21_base()` and `tiny()` presets.

pub mod attention;
pub mod clip;
pub mod config;
pub mod nn;
pub mod resnet;
pub mod unet;
pub mod vae;

pub use clip::{ClipEncoderLayer, ClipTextConfig, ClipTextModel, causal_mask};
pub use config::{LoraBranchConfig, Method, OneStepConfig};
pub use unet::{UNet2DConditionConfig, UNet2DConditionModel};
pub use vae::{AutoencoderKL, AutoencoderKLConfig};
