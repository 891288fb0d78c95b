//! `--model`: a folder or catalog id resolved to a converted model, its weights loaded with a
//! progress bar, and the image / model / device flags that `bench` and `tile-sweep` share.

use std::path::{Path, PathBuf};

use onestep_sr::upscaler::{GanUpscaler, Upscaler};
use onestep_sr::weights::LoadProgress;

use crate::device::DeviceArg;
use crate::progress::bar;
use crate::util::Result;

// What `bench` and `tile-sweep` measure: a model (Real-ESRGAN x4plus unless named) on an
// image, on the CPU unless told. (A plain comment on purpose: clap reads doc comments as help.)
#[derive(clap::Args)]
pub struct MeasureArgs {
    pub image: PathBuf,
    #[arg(long, default_value = "models/realesrgan-x4plus")]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

/// Load any converted model with a progress bar; a missing directory says how to make one.
pub fn load_any(dir: &Path, device: &burn::tensor::Device) -> Result<Upscaler> {
    let dir = &model_path(dir);
    if !dir.join("manifest.json").exists() {
        return Err(format!(
            "no model at {} (manifest.json missing): run scripts/fetch-models.sh (or scripts/setup.sh, or `onestep convert`); `onestep models` lists the catalog",
            dir.display()
        )
        .into());
    }
    let pb = bar("{msg} [{bar:30}] {bytes}/{total_bytes}");
    pb.set_message("loading weights");
    let up = Upscaler::load(dir, device, &mut |p: LoadProgress| {
        pb.set_length(p.bytes_total);
        pb.set_position(p.bytes_done);
    })?;
    pb.finish_and_clear();
    Ok(up)
}

/// `--model`: a converted folder, or a catalog id converted under models/.
pub fn model_path(arg: &Path) -> PathBuf {
    onestep_sr::catalog::resolve(arg, Path::new("models"))
}

/// Load a Real-ESRGAN model (the commands that only time or sweep RRDBNet).
pub fn load_model(dir: &Path, device: &burn::tensor::Device) -> Result<GanUpscaler> {
    match load_any(dir, device)? {
        Upscaler::Gan(up) => Ok(up),
        _ => Err(format!("{} is not a Real-ESRGAN model", dir.display()).into()),
    }
}
