//! Load a converted model (a directory natively, shards from the web in the browser) and
//! upscale decoded images.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use burn::tensor::Device;
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use image::{GrayImage, RgbImage};
use thiserror::Error;

use crate::device::DeviceError;
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use crate::image_io::{self, Decoded, ImageError};
use crate::model::sd::{Method, OneStepConfig};
use crate::model::valid_net::ValidNet;
use crate::model::{Cunet, CunetConfig, GanNet, RrdbNet, RrdbNetConfig, SrVggNetCompact, SrVggNetConfig, UpConv7, UpConv7Config};
use crate::pipeline::one_step::OneStepSr;
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use crate::pipeline::sd_upscale::{self, SdOptions};
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use crate::pipeline::{Progress, gan};
use crate::weights::{Manifest, ParamStore, WeightsError};
#[cfg(not(target_arch = "wasm32"))]
use crate::weights::{self, LoadProgress};

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("the device failed while running the model: {0}")]
    Execution(String),
    /// Out of memory or device lost: their messages say what to do.
    #[error(transparent)]
    Run(crate::pipeline::RunError),
    #[error("cancelled")]
    Cancelled,
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
}

pub struct GanUpscaler {
    pub model: GanNet,
    pub device: Device,
}

impl GanUpscaler {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &Path, device: &Device, progress: &mut dyn FnMut(LoadProgress)) -> Result<Self, Error> {
        let (manifest, store) = weights::load_dir(dir, device, progress)?;
        Self::from_store(&manifest, store, device)
    }

    /// Build the network from a store that holds every shard of `manifest`.
    pub fn from_store(manifest: &Manifest, mut store: ParamStore, device: &Device) -> Result<Self, Error> {
        fn config<T: serde::de::DeserializeOwned>(manifest: &Manifest) -> Result<T, WeightsError> {
            serde_json::from_value(manifest.config.clone())
                .map_err(|e| WeightsError::Manifest(format!("{} config: {e}", manifest.architecture)))
        }
        let model = match manifest.architecture.as_str() {
            "rrdbnet" => GanNet::Rrdb(RrdbNet::load(&config::<RrdbNetConfig>(manifest)?, &mut store)?),
            "srvgg" => GanNet::Compact(SrVggNetCompact::load(&config::<SrVggNetConfig>(manifest)?, &mut store)?),
            "upconv7" => GanNet::Valid(ValidNet::UpConv7(UpConv7::load(&config::<UpConv7Config>(manifest)?, &mut store)?)),
            "cunet" => GanNet::Valid(ValidNet::Cunet(Cunet::load(&config::<CunetConfig>(manifest)?, &mut store)?)),
            other => return Err(WeightsError::Architecture { got: other.into(), want: "rrdbnet, srvgg, upconv7 or cunet".into() }.into()),
        };
        store.finish()?;
        Ok(Self { model, device: device.clone() })
    }

    /// The tile size and overlap chosen for this network (BENCHMARKS.md, tiled vs whole).
    pub fn default_tile_options(&self) -> gan::TileOptions {
        gan::TileOptions::for_net(&self.model)
    }

    /// Output pixels per input pixel along each side.
    pub fn scale(&self) -> u32 {
        self.model.scale() as u32
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn upscale_rgb(
        &self,
        rgb: &RgbImage,
        opts: gan::TileOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RgbImage, Error> {
        Ok(gan::upscale(&self.model, &self.device, rgb, opts, progress)?)
    }

    /// RGB through the network; alpha (if any) by bicubic, as the reference runtime does.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn upscale(
        &self,
        img: &Decoded,
        opts: gan::TileOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(RgbImage, Option<GrayImage>), Error> {
        let rgb = self.upscale_rgb(&img.rgb, opts, progress)?;
        let alpha = img.alpha.as_ref().map(|a| image_io::resize_bicubic_gray(a, rgb.width(), rgb.height()));
        Ok((rgb, alpha))
    }
}

/// OSEDiff or PiSA-SR from a converted directory (architecture `osediff` / `pisa-sr`).
pub struct SdUpscaler {
    pub model: OneStepSr,
    pub device: Device,
}

impl SdUpscaler {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &Path, device: &Device, progress: &mut dyn FnMut(LoadProgress)) -> Result<Self, Error> {
        let (manifest, store) = weights::load_dir(dir, device, progress)?;
        Self::from_store(&manifest, store, device)
    }

    /// Build the model from a store that holds every shard of `manifest`.
    pub fn from_store(manifest: &Manifest, store: ParamStore, device: &Device) -> Result<Self, Error> {
        let method = Method::from_architecture(&manifest.architecture).ok_or_else(|| WeightsError::Architecture {
            got: manifest.architecture.clone(),
            want: "osediff or pisa-sr".into(),
        })?;
        let config: OneStepConfig = serde_json::from_value(manifest.config.clone())
            .map_err(|e| WeightsError::Manifest(format!("{} config: {e}", manifest.architecture)))?;
        if config.method != method {
            return Err(WeightsError::Manifest(format!("architecture {} but config.method {:?}", manifest.architecture, config.method)).into());
        }
        Ok(Self { model: OneStepSr::load(config, store)?, device: device.clone() })
    }

    /// RGB through the one-step SR (exactly scale x the input); alpha by bicubic.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn upscale(
        &self,
        img: &Decoded,
        opts: &SdOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(RgbImage, Option<GrayImage>), Error> {
        let rgb = sd_upscale::upscale(&self.model, &self.device, &img.rgb, opts, progress)?;
        let alpha = img.alpha.as_ref().map(|a| image_io::resize_bicubic_gray(a, rgb.width(), rgb.height()));
        Ok((rgb, alpha))
    }
}

impl SdUpscaler {
    /// PiSA-SR at every `(lambda_pix, lambda_sem)` of `pairs` from one encoder pass and one
    /// pair of UNet passes (only the decoder runs per pair); alpha by bicubic, once.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn upscale_grid(
        &self,
        img: &Decoded,
        opts: &SdOptions,
        pairs: &[(f32, f32)],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Vec<RgbImage>, Option<GrayImage>), Error> {
        let opts = SdOptions { guidance: crate::pipeline::one_step::Guidance::Adjustable { lambda_pix: 1.0, lambda_sem: 1.0 }, ..opts.clone() };
        let mut r = sd_upscale::prepare(&self.model, &self.device, &img.rgb, &opts, progress)?;
        let images = pairs.iter().map(|&l| r.render(&self.model, l, progress)).collect::<Result<Vec<_>, _>>()?;
        let (w, h) = images.first().map_or((0, 0), |i| i.dimensions());
        let alpha = img.alpha.as_ref().map(|a| image_io::resize_bicubic_gray(a, w, h));
        Ok((images, alpha))
    }
}

impl From<crate::pipeline::RunError> for Error {
    fn from(e: crate::pipeline::RunError) -> Self {
        match e {
            crate::pipeline::RunError::Cancelled => Error::Cancelled,
            e @ (crate::pipeline::RunError::OutOfMemory(_) | crate::pipeline::RunError::DeviceLost(_)) => Error::Run(e),
            crate::pipeline::RunError::Execution(m) => Error::Execution(m),
        }
    }
}

/// Any converted model, chosen by the manifest's architecture.
pub enum Upscaler {
    Gan(GanUpscaler),
    Sd(SdUpscaler),
}

impl Upscaler {
    /// Refuse a manifest of another architecture before its shards are read.
    pub fn check_architecture(manifest: &Manifest) -> Result<(), Error> {
        match manifest.architecture.as_str() {
            "rrdbnet" | "srvgg" | "upconv7" | "cunet" | "osediff" | "pisa-sr" => Ok(()),
            other => Err(WeightsError::Architecture { got: other.into(), want: "rrdbnet, srvgg, upconv7, cunet, osediff or pisa-sr".into() }.into()),
        }
    }

    /// The model `manifest` describes, from a store holding all its shards.
    pub fn from_store(manifest: &Manifest, store: ParamStore, device: &Device) -> Result<Self, Error> {
        Self::check_architecture(manifest)?;
        match manifest.architecture.as_str() {
            "rrdbnet" | "srvgg" | "upconv7" | "cunet" => Ok(Self::Gan(GanUpscaler::from_store(manifest, store, device)?)),
            _ => Ok(Self::Sd(SdUpscaler::from_store(manifest, store, device)?)),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &Path, device: &Device, progress: &mut dyn FnMut(LoadProgress)) -> Result<Self, Error> {
        // The architecture is checked before any shard is read.
        Self::check_architecture(&weights::loader::read_manifest(dir)?)?;
        let (manifest, store) = weights::load_dir(dir, device, progress)?;
        Self::from_store(&manifest, store, device)
    }
}

/// Read and decode an image file.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_image(path: &Path) -> Result<Decoded, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Read { path: path.display().to_string(), detail: e.to_string() })?;
    Ok(image_io::decode(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::Error;
    use crate::pipeline::RunError;

    #[test]
    fn device_errors_keep_their_own_message() {
        let oom = Error::from(RunError::OutOfMemory("Out of memory: 268435456 bytes".into())).to_string();
        assert!(oom.starts_with("the GPU ran out of memory: Out of memory: 268435456 bytes; try a smaller tile"), "{oom}");
        let lost = Error::from(RunError::DeviceLost("VK_ERROR_DEVICE_LOST".into())).to_string();
        assert!(lost.starts_with("the GPU device was lost"), "{lost}");
        assert_eq!(Error::from(RunError::Cancelled).to_string(), "cancelled");
    }
}
