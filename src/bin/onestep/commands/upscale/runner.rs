//! `onestep upscale`'s settings resolved against the loaded model, and the work on one image:
//! the run, its progress bar, the files it writes.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use indicatif::ProgressBar;

use onestep_sr::batch;
use onestep_sr::image_io;
use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::colour_fix::ColourFix;
use onestep_sr::pipeline::one_step::{Guidance, Latent};
use onestep_sr::pipeline::preprocess::PreprocessOptions;
use onestep_sr::pipeline::sd_upscale::{self, SdOptions, SdTiling};
use onestep_sr::pipeline::{Progress, gan::TileOptions};
use onestep_sr::upscaler::{GanUpscaler, Upscaler};

use crate::progress::bar;
use crate::util::{Result, size};

#[derive(Clone, Copy, ValueEnum)]
pub enum ColourFixArg {
    Adain,
    Wavelet,
    None,
}

/// The flags of `onestep upscale` that shape each run (checked by the caller).
pub struct UpscaleSettings {
    pub tile: Option<usize>,
    pub overlap: Option<usize>,
    /// Test-time augmentation (waifu2x and Real-CUGAN only).
    pub tta: bool,
    pub lambda_pix: Option<f32>,
    pub lambda_sem: Option<f32>,
    pub color_fix: ColourFixArg,
    pub process_size: u32,
    pub seed: Option<u64>,
    pub latent_tile: Option<usize>,
    pub latent_overlap: Option<usize>,
    pub vae_tile: Option<usize>,
    /// `--lambda-grid`: each value as written (for file names) and as a number.
    pub grid: Option<Vec<(String, f32)>>,
    pub scale: Option<f64>,
    pub width: Option<u32>,
}

impl UpscaleSettings {
    /// `--lambda-grid`: the (lambda_pix, lambda_sem) names of every pair, in output order.
    fn grid_names(&self) -> Option<Vec<(String, String)>> {
        self.grid
            .as_ref()
            .map(|g| g.iter().flat_map(|(p, _)| g.iter().map(move |(s, _)| (p.clone(), s.clone()))).collect())
    }

    /// The files one input writes when its output is `output`.
    pub fn outputs(&self, output: &Path) -> Vec<PathBuf> {
        match self.grid_names() {
            Some(names) => batch::grid_paths(output, &names),
            None => vec![output.to_path_buf()],
        }
    }
}

/// A loaded model with the options of this run resolved.
pub enum Runner {
    Gan { up: GanUpscaler, tiles: TileOptions },
    Sd { up: onestep_sr::upscaler::SdUpscaler, opts: SdOptions, grid: Option<Vec<(f32, f32)>> },
}

impl Runner {
    /// Output pixels per input pixel along each side.
    pub fn scale(&self) -> u32 {
        match self {
            Runner::Gan { up, .. } => up.scale(),
            Runner::Sd { up, .. } => up.model.config.scale,
        }
    }
}

/// Check the flags against the loaded model and resolve its options (tile defaults included).
pub fn make_runner(up: Upscaler, s: &UpscaleSettings) -> Result<Runner> {
    match up {
        Upscaler::Gan(up) => {
            if s.lambda_pix.is_some() || s.lambda_sem.is_some() || s.seed.is_some() || s.grid.is_some() {
                return Err("--lambda-pix, --lambda-sem, --lambda-grid and --seed apply to diffusion models only".into());
            }
            let defaults = up.default_tile_options();
            let tiles = TileOptions {
                tile: s.tile.unwrap_or(defaults.tile),
                overlap: s.overlap.unwrap_or(defaults.overlap),
                tta: s.tta,
                ..defaults
            };
            if s.tta && !matches!(up.model, onestep_sr::model::GanNet::Valid(_)) {
                return Err("--tta applies to waifu2x and Real-CUGAN models only".into());
            }
            if tiles.tile == 0 || tiles.overlap >= tiles.tile {
                return Err(format!(
                    "--tile must be positive and larger than --overlap (this model's defaults: --tile {} --overlap {})",
                    defaults.tile, defaults.overlap
                )
                .into());
            }
            Ok(Runner::Gan { up, tiles })
        }
        Upscaler::Sd(up) => {
            let method = up.model.config.method;
            let guidance = match (s.lambda_pix, s.lambda_sem) {
                _ if s.grid.is_some() && method == Method::OseDiff => {
                    return Err("--lambda-grid needs a PiSA-SR model".into());
                }
                _ if s.grid.is_some() => Guidance::Adjustable { lambda_pix: 1.0, lambda_sem: 1.0 },
                (None, None) => Guidance::Default,
                _ if method == Method::OseDiff => {
                    return Err("--lambda-pix / --lambda-sem need a PiSA-SR model".into());
                }
                (lp, ls) => Guidance::Adjustable { lambda_pix: lp.unwrap_or(1.0), lambda_sem: ls.unwrap_or(1.0) },
            };
            let opts = SdOptions {
                preprocess: PreprocessOptions { scale: up.model.config.scale, process_size: s.process_size },
                colour_fix: match s.color_fix {
                    ColourFixArg::Adain => ColourFix::Adain,
                    ColourFixArg::Wavelet => ColourFix::Wavelet,
                    ColourFixArg::None => ColourFix::None,
                },
                latent: s.seed.map_or(Latent::Mean, |seed| Latent::Sample { seed }),
                guidance,
                tiling: SdTiling {
                    latent_tile: s.latent_tile,
                    latent_overlap: s.latent_overlap,
                    vae_rows: s.vae_tile,
                    ..Default::default()
                },
                cancel: Default::default(),
            };
            let grid = s
                .grid
                .as_ref()
                .map(|g| g.iter().flat_map(|(_, p)| g.iter().map(move |(_, s)| (*p, *s))).collect());
            Ok(Runner::Sd { up, opts, grid })
        }
    }
}

/// The progress bar of one image's tiles (or diffusion stages).
pub fn step_bar(runner: &Runner) -> ProgressBar {
    match runner {
        Runner::Gan { .. } => {
            let pb = bar("{msg} tile {pos}/{len} [{bar:30}] {elapsed}");
            pb.set_message("upscaling");
            pb
        }
        Runner::Sd { .. } => bar("{msg} {pos}/{len} [{bar:30}] {elapsed}"),
    }
}

/// Write a file atomically (a temporary file in the same folder, fsync, rename).
fn write_output(path: &Path, png: &[u8]) -> Result<()> {
    batch::write_atomic(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// Upscale one decoded image and write `outputs` (one file, or one per `--lambda-grid` pair).
/// `report`: print what the device's allocator holds afterwards (single-file mode).
pub fn run_image(runner: &Runner, img: &image_io::Decoded, outputs: &[PathBuf], s: &UpscaleSettings, pb: &ProgressBar, report: bool) -> Result<()> {
    let (in_w, in_h) = img.rgb.dimensions();
    let (rgb, alpha) = match runner {
        Runner::Gan { up, tiles } => {
            let out = up.upscale(img, *tiles, &mut |p: Progress| {
                pb.set_length(p.total as u64);
                pb.set_position(p.done as u64);
            })?;
            pb.finish_and_clear();
            if let Some(r) = report.then(|| device_memory(&up.device)).flatten() {
                eprintln!("{r}");
            }
            out
        }
        Runner::Sd { up, opts, grid } => {
            let mut progress = |p: Progress| {
                pb.set_message(p.stage);
                pb.set_length(p.total as u64);
                pb.set_position(p.done as u64);
            };
            if let Some(pairs) = grid {
                let (images, alpha) = up.upscale_grid(img, opts, pairs, &mut progress)?;
                pb.finish_and_clear();
                for (rgb, path) in images.iter().zip(outputs) {
                    write_output(path, &image_io::encode_png(rgb, alpha.as_ref())?)?;
                }
                return Ok(());
            }
            let out = up.upscale(img, opts, &mut progress)?;
            pb.finish_and_clear();
            if let Some(r) = report.then(|| device_memory(&up.device)).flatten() {
                let planned = sd_upscale::planned_peak(&up.model, &img.rgb, opts);
                eprintln!("{r}; the memory planner estimated a peak of {}", planned.map_or("-".into(), size));
            }
            out
        }
    };
    let (rgb, alpha) = match image_io::output_size(in_w, in_h, rgb.width() / in_w, s.scale, s.width)? {
        Some(size) => image_io::downscale(&rgb, alpha.as_ref(), size),
        None => (rgb, alpha),
    };
    write_output(&outputs[0], &image_io::encode_png(&rgb, alpha.as_ref())?)
}

/// What burn's allocator on a GPU device holds after a run (None on the CPU backend): what is
/// reserved at the end (pools keep pages for reuse, so a lower bound of the run's peak), and
/// the high-water mark of the sliced pools (the pools that carve pages; they report one).
fn device_memory(device: &burn::tensor::Device) -> Option<String> {
    let usage = device.memory_pool_usage()?;
    let sliced_peak: u64 = device.memory_pool_report().unwrap_or_default().iter().map(|p| p.page_size * p.pages_peak).sum();
    Some(format!(
        "device memory: {} reserved by burn's allocator at the end of the run ({} in use; the sliced pools' high-water mark {})",
        size(usage.bytes_reserved),
        size(usage.bytes_in_use),
        size(sliced_peak)
    ))
}
