//! The one-step SR of OSEDiff and PiSA-SR, as the papers write it (docs: pipeline.md):
//!
//! - OSEDiff: `z = E_lora(x) * sf; eps = unet(z, 999, text); z_h = (z - sqrt(1 - a) eps) / sqrt(a);
//!   x_h = D(z_h / sf).clamp(-1, 1)` with `a = alpha_bar(999)`.
//! - PiSA-SR: `z = E(x) * sf; z_h = z - eps_hat; x_h = D(z_h / sf).clamp(-1, 1)` at t = 1, where
//!   the default mode is one pass with W_sem (`eps_hat = eps_sem`) and the adjustable mode
//!   `eps_hat = lambda_pix * eps_pix + lambda_sem * (eps_sem - eps_pix)`.
//!
//! Pre-processing, colour fix, tiling and progress wrap these functions (see `sd_upscale`).

use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::model::lora::LoraSwitch;
use crate::model::sd::{AutoencoderKL, Method, OneStepConfig, UNet2DConditionModel};
use crate::weights::{ParamStore, WeightsError};

/// SD 2.1-base's scheduler (`scheduler_config.json`): `beta_schedule "scaled_linear"`,
/// `beta_start 0.00085`, `beta_end 0.012`, `num_train_timesteps 1000`.
const BETA_START: f64 = 0.00085;
const BETA_END: f64 = 0.012;
const TRAIN_STEPS: usize = 1000;

/// `alphas_cumprod` as diffusers computes it in float32: `betas = linspace(sqrt(start),
/// sqrt(end), 1000) ** 2` (torch's linspace: from the start for the first half, from the end
/// for the second), `cumprod(1 - betas)` (torch's CPU cumprod accumulates in f64 and rounds
/// each element to f32). `[999]` = 0.0046600951.
pub fn alphas_cumprod() -> Vec<f32> {
    // python: beta_start ** 0.5 in f64, then float32 ends; the step is float32 and each
    // element `start + step * i` (first half) or `end - step * (999 - i)` (second half) is
    // evaluated in f64 and rounded once (checked bit-exact against torch 2.15's CPU linspace).
    let (start, end) = (BETA_START.sqrt() as f32, BETA_END.sqrt() as f32);
    let step = ((end - start) / (TRAIN_STEPS - 1) as f32) as f64;
    let half = TRAIN_STEPS / 2;
    let mut acc = 1f64;
    (0..TRAIN_STEPS)
        .map(|i| {
            let s = if i < half {
                (start as f64 + step * i as f64) as f32
            } else {
                (end as f64 - step * (TRAIN_STEPS - 1 - i) as f64) as f32
            };
            acc *= (1.0 - s * s) as f64;
            acc as f32
        })
        .collect()
}

/// How the latent is taken from the VAE encoder's distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Latent {
    /// The mean (deterministic; the default).
    #[default]
    Mean,
    /// `mean + exp(logvar / 2) * n`, n ~ N(0, 1) from a seeded host generator (the official
    /// OSEDiff code samples, unseeded).
    Sample { seed: u64 },
}

/// PiSA-SR's two modes (OSEDiff ignores this).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Guidance {
    /// One UNet pass with W_sem.
    #[default]
    Default,
    /// Two passes: `eps_hat = lambda_pix * eps_pix + lambda_sem * (eps_sem - eps_pix)`.
    Adjustable { lambda_pix: f32, lambda_sem: f32 },
}

impl Guidance {
    /// `(lambda_pix, lambda_sem)`; the default mode is `(1, 1)`.
    pub fn lambdas(self) -> (f32, f32) {
        match self {
            Guidance::Adjustable { lambda_pix, lambda_sem } => (lambda_pix, lambda_sem),
            Guidance::Default => (1.0, 1.0),
        }
    }
}

pub struct OneStepSr {
    pub config: OneStepConfig,
    pub vae: AutoencoderKL,
    pub unet: UNet2DConditionModel,
    /// `[1, 77, cross_attention_dim]`.
    pub text_embedding: Tensor<3>,
    /// PiSA-SR: the semantic LoRA branches (on = W_sem, off = W_pix).
    pub sem_lora: Option<LoraSwitch>,
}

impl OneStepSr {
    /// Build from a format-v1 store (`unet.…`, `vae.…`, `text_embedding`, plus PiSA-SR's
    /// `unet.*.lora_{A,B}.weight`). Every tensor must be used.
    pub fn load(config: OneStepConfig, mut store: ParamStore) -> Result<Self, WeightsError> {
        let mut unet_store = store.split_prefix("unet");
        let sem_lora = match (config.method, config.sem_lora) {
            (Method::PisaSr, Some(l)) => {
                Some(LoraSwitch::from_shared(unet_store.keep_lora_branches(l.alpha / l.rank as f32)))
            }
            (Method::PisaSr, None) => return Err(WeightsError::Manifest("pisa-sr config has no sem_lora".into())),
            (Method::OseDiff, _) => None,
        };
        let unet = UNet2DConditionModel::load(&mut unet_store, &config.unet)?;
        unet_store.finish()?;
        let mut vae_store = store.split_prefix("vae");
        // The VAE encoder computes in f32 whatever the device's dtype: z feeds both the UNet
        // and `z - eps` directly, and f16 rounding of z is amplified by the UNet (on the
        // f16 wgpu check, PiSA-SR 39.6-39.9 dB with an f16 encoder, 42.8 dB with f32; see
        // tests/sd_wgpu_f16.rs). The UNet and the decoder, ~75% of the FLOPs, stay in f16.
        vae_store.cast_prefix("encoder.", FloatDType::F32);
        let vae = AutoencoderKL::load(&mut vae_store, &config.vae)?;
        vae_store.finish()?;
        let text_embedding = store.take("text_embedding", [1, 77, config.unet.cross_attention_dim])?;
        store.finish()?;
        Ok(Self { config, vae, unet, text_embedding, sem_lora })
    }

    pub fn sf(&self) -> f64 {
        self.config.vae.scaling_factor
    }

    /// `z = E(x) * scaling_factor` for `x: [1, 3, H, W]` in [-1, 1].
    pub fn encode(&self, x: Tensor<4>, latent: Latent) -> Tensor<4> {
        self.latent_from_moments(self.vae.encode_moments(x), latent)
    }

    /// `z = latent(moments) * scaling_factor` from the encoder's moments (after quant_conv):
    /// the mean, or a seeded sample.
    pub fn latent_from_moments(&self, moments: Tensor<4>, latent: Latent) -> Tensor<4> {
        let l = self.config.vae.latent_channels;
        let mean = moments.clone().narrow(1, 0, l);
        let z = match latent {
            Latent::Mean => mean,
            Latent::Sample { seed } => {
                // diffusers' DiagonalGaussianDistribution clamps the log-variance to [-30, 20].
                let std = (moments.narrow(1, l, l).clamp(-30.0, 20.0) * 0.5).exp();
                let dims = mean.dims();
                let noise = Tensor::<4>::from_data(TensorData::new(gaussian(seed, dims.iter().product()), dims), &mean.device())
                    .cast(FloatDType::from(mean.dtype()));
                mean + std * noise
            }
        };
        z * self.sf()
    }

    /// `eps = unet(z, t, text)`; for PiSA-SR with the semantic branch `sem` on or off.
    pub fn eps(&self, z: Tensor<4>, sem: bool) -> Tensor<4> {
        if let Some(switch) = &self.sem_lora {
            switch.set(sem);
        }
        self.unet.forward(z, self.config.method.timestep() as f32, &self.text_embedding)
    }

    /// The float dtype the model computes in (f16 when the device was configured so).
    pub fn dtype(&self) -> FloatDType {
        FloatDType::from(self.text_embedding.dtype())
    }

    /// `x_h = D(z_h / scaling_factor).clamp(-1, 1)`, in f32. `z_h` is f32 (the latent arithmetic
    /// runs in f32) and stays f32 through post_quant_conv.
    pub fn decode(&self, z_h: Tensor<4>) -> Tensor<4> {
        self.vae.decode(z_h.cast(FloatDType::F32) / self.sf()).clamp(-1.0, 1.0)
    }

    /// OSEDiff's DDPM x0 step at t = 999: `(z - sqrt(1 - a) eps) / sqrt(a)`, in f32 whatever
    /// the inputs' dtype (it multiplies eps by 14.6), returned in f32.
    pub fn osediff_z_hat(z: Tensor<4>, eps: Tensor<4>) -> Tensor<4> {
        let a = alphas_cumprod()[999];
        (z.cast(FloatDType::F32) - eps.cast(FloatDType::F32) * (1.0 - a).sqrt()) / a.sqrt()
    }

    /// PiSA-SR's adjustable mode from cached `eps_pix`, `eps_sem` (moving the sliders re-runs
    /// only this and the decoder): `z - (lp * eps_pix + ls * (eps_sem - eps_pix))`, in f32
    /// whatever the inputs' dtype, returned in f32.
    pub fn pisa_z_hat(z: Tensor<4>, eps_pix: Tensor<4>, eps_sem: Tensor<4>, lambda_pix: f32, lambda_sem: f32) -> Tensor<4> {
        let (eps_pix, eps_sem) = (eps_pix.cast(FloatDType::F32), eps_sem.cast(FloatDType::F32));
        let eps_hat = eps_pix.clone() * lambda_pix + (eps_sem - eps_pix) * lambda_sem;
        z.cast(FloatDType::F32) - eps_hat
    }

    /// The denoised latent `z_h` for the encoded latent `z`, in f32 (see [`Self::decode`]).
    pub fn z_hat(&self, z: Tensor<4>, guidance: Guidance) -> Tensor<4> {
        match (self.config.method, guidance) {
            (Method::OseDiff, _) => Self::osediff_z_hat(z.clone(), self.eps(z, true)),
            (Method::PisaSr, Guidance::Default) => z.clone().cast(FloatDType::F32) - self.eps(z, true).cast(FloatDType::F32),
            (Method::PisaSr, Guidance::Adjustable { lambda_pix, lambda_sem }) => {
                let eps_sem = self.eps(z.clone(), true);
                let eps_pix = self.eps(z.clone(), false);
                Self::pisa_z_hat(z, eps_pix, eps_sem, lambda_pix, lambda_sem)
            }
        }
    }

    /// The whole one-step SR: `x` in [-1, 1] → `x_h` in [-1, 1], same size.
    pub fn forward(&self, x: Tensor<4>, latent: Latent, guidance: Guidance) -> Tensor<4> {
        let z = self.encode(x, latent);
        let z_h = self.z_hat(z, guidance);
        self.decode(z_h)
    }
}

/// `n` standard normal values from `seed` (splitmix64 + Box-Muller): the same on every device.
pub fn gaussian(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}
