//! What a converted one-step SR model is: the manifest `config` of architectures
//! `osediff` and `pisa-sr` (weight format v1).

use serde::{Deserialize, Serialize};

use super::{AutoencoderKLConfig, UNet2DConditionConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// OSEDiff (NeurIPS 2024): LoRA-tuned VAE encoder and UNet, t = 999, DDPM x0 step.
    #[serde(rename = "osediff")]
    OseDiff,
    /// PiSA-SR (CVPR 2025): pixel + semantic LoRA on the UNet, t = 1, residual step.
    #[serde(rename = "pisa-sr")]
    PisaSr,
}

impl Method {
    /// The manifest's `architecture`.
    pub fn architecture(self) -> &'static str {
        match self {
            Method::OseDiff => "osediff",
            Method::PisaSr => "pisa-sr",
        }
    }

    pub fn from_architecture(name: &str) -> Option<Self> {
        match name {
            "osediff" => Some(Method::OseDiff),
            "pisa-sr" => Some(Method::PisaSr),
            _ => None,
        }
    }

    /// The one timestep the UNet sees.
    pub fn timestep(self) -> u32 {
        match self {
            Method::OseDiff => 999,
            Method::PisaSr => 1,
        }
    }
}

/// A LoRA kept as run-time branches (PiSA-SR's semantic LoRA): `scale = alpha / rank`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraBranchConfig {
    pub rank: usize,
    pub alpha: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneStepConfig {
    pub method: Method,
    /// Upscaling factor of the pre-processing (x4).
    pub scale: u32,
    /// The prompt whose embedding (`text_embedding`, `[1, 77, cross_attention_dim]`) was
    /// precomputed by the converter ("" = the null prompt).
    pub prompt: String,
    pub unet: UNet2DConditionConfig,
    pub vae: AutoencoderKLConfig,
    /// PiSA-SR: tensors `unet.{module}.lora_{A,B}.weight` are the semantic LoRA.
    pub sem_lora: Option<LoraBranchConfig>,
}

impl OneStepConfig {
    /// PiSA-SR on SD 2.1-base, the official layout (the memory planner's default model).
    pub fn pisa_sr_sd21() -> Self {
        Self {
            method: Method::PisaSr,
            scale: 4,
            prompt: String::new(),
            unet: UNet2DConditionConfig::sd21_base(),
            vae: AutoencoderKLConfig::sd21_base(),
            sem_lora: Some(LoraBranchConfig { rank: 4, alpha: 8.0 }),
        }
    }
}
