//! `onestep upscale`: its flags and their checks, the device, and the single-file and batch
//! runs (the per-image work is in `runner`).

mod runner;

use std::path::{Path, PathBuf};

use indicatif::MultiProgress;

use onestep_sr::batch;
use onestep_sr::image_io;
use onestep_sr::upscaler;
use onestep_sr::weights;

use crate::device::{DTypeArg, DeviceArg, open_device};
use crate::model::{load_any, model_path};
use crate::progress::bar;
use crate::util::{Result, one_line};

use runner::{ColourFixArg, UpscaleSettings, make_runner, run_image, step_bar};

#[derive(clap::Args)]
pub struct Args {
    /// Image files, or folders of images (not recursive).
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<PathBuf>,
    /// The PNG to write (one input file), or the output folder (created if missing).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Redo outputs that already exist (a batch skips them by default).
    #[arg(long)]
    overwrite: bool,
    /// Do only the files at positions p (in the sorted list of all inputs) with
    /// p % N == I: task I of a job array of N (e.g. --shard 0/4).
    #[arg(long, value_name = "I/N", allow_hyphen_values = true)]
    shard: Option<String>,
    /// Converted model directory (weight format v1), or a catalog id (`onestep models`).
    #[arg(long, default_value = "models/realesrgan-x4plus")]
    model: PathBuf,
    /// Tile side in input pixels (one fixed shape; smaller images are one tile).
    /// Default: the model's own (192 for Real-ESRGAN x4plus).
    #[arg(long)]
    tile: Option<usize>,
    /// Overlap between neighbouring tiles in input pixels. Default: the model's own
    /// (32 for Real-ESRGAN x4plus).
    #[arg(long)]
    overlap: Option<usize>,
    /// waifu2x and Real-CUGAN: average the 8 flips and transposes in float before rounding,
    /// as their runtimes' TTA mode does (8x the time).
    #[arg(long)]
    tta: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// PiSA-SR adjustable mode: weight of the pixel-level LoRA (default 1.0 when
    /// --lambda-sem is given). Without either flag, the default one-pass mode runs.
    #[arg(long)]
    lambda_pix: Option<f32>,
    /// PiSA-SR adjustable mode: weight of the semantic-level LoRA.
    #[arg(long)]
    lambda_sem: Option<f32>,
    /// Diffusion models: colour correction against the bicubic-upscaled input.
    #[arg(long, value_enum, default_value = "adain")]
    color_fix: ColourFixArg,
    /// Diffusion models: inputs with a side under process-size / 4 are enlarged first.
    #[arg(long, default_value_t = 512)]
    process_size: u32,
    /// Diffusion models: sample the VAE latent with this seed (default: its mean).
    #[arg(long)]
    seed: Option<u64>,
    /// Float type of the computation (f16 needs a GPU that supports it).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DTypeArg,
    /// Diffusion models: UNet latent tile side, in latents (the official --latent_tiled_size;
    /// default: the memory planner's choice, 96 when it fits).
    #[arg(long)]
    latent_tile: Option<usize>,
    /// Diffusion models: overlap of neighbouring latent tiles (the official
    /// --latent_tiled_overlap; default 32 with 96 tiles).
    #[arg(long)]
    latent_overlap: Option<usize>,
    /// Diffusion models: VAE tile height in image pixels (a multiple of 8; tiles span the
    /// width). Default: the memory planner's choice. Tiling is exact.
    #[arg(long)]
    vae_tile: Option<usize>,
    /// PiSA-SR: every (lambda_pix, lambda_sem) pair from this list (e.g. 0.5,1.0,1.5), from one
    /// encoder pass and one pair of UNet passes; writes OUT's stem + `_p{X}_s{Y}.png`.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    lambda_grid: Option<Vec<String>>,
    /// Output scale below the model's (e.g. 2 or 1.5): the model's output is brought down
    /// by a Lanczos-3 resample.
    #[arg(long, conflicts_with = "width")]
    scale: Option<f64>,
    /// Output width in pixels (at most the model's); the height keeps the aspect ratio.
    #[arg(long)]
    width: Option<u32>,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        inputs,
        output,
        overwrite,
        shard,
        model,
        tile,
        overlap,
        tta,
        device,
        lambda_pix,
        lambda_sem,
        color_fix,
        process_size,
        seed,
        dtype,
        latent_tile,
        latent_overlap,
        vae_tile,
        lambda_grid,
        scale,
        width,
    } = args;
    if latent_tile == Some(0) || latent_overlap.is_some_and(|o| o >= latent_tile.unwrap_or(96)) {
        return Err("--latent-tile must be positive and larger than --latent-overlap".into());
    }
    if vae_tile.is_some_and(|t| t == 0 || t % 8 != 0) {
        return Err("--vae-tile must be a positive multiple of 8".into());
    }
    let grid: Option<Vec<(String, f32)>> = lambda_grid
        .map(|list| {
            list.into_iter()
                .map(|s| s.trim().parse::<f32>().map(|v| (s.trim().to_string(), v)).map_err(|_| format!("--lambda-grid: {s:?} is not a number")))
                .collect::<std::result::Result<Vec<_>, String>>()
        })
        .transpose()?;
    if grid.is_some() && (scale.is_some() || width.is_some()) {
        return Err("--lambda-grid writes the model's own size: leave out --scale / --width".into());
    }
    if grid.is_some() && (lambda_pix.is_some() || lambda_sem.is_some()) {
        return Err("--lambda-grid replaces --lambda-pix / --lambda-sem".into());
    }
    // Given values are checked now; the model's defaults fill in the rest once it is loaded.
    if tile == Some(0) || matches!((tile, overlap), (Some(t), Some(o)) if o >= t) {
        return Err("--tile must be positive and larger than --overlap".into());
    }
    if process_size == 0 {
        return Err("--process-size must be positive".into());
    }
    let shard = shard.as_deref().map(batch::Shard::parse).transpose()?.unwrap_or(batch::Shard::ALL);
    let settings = UpscaleSettings {
        tile,
        overlap,
        tta,
        lambda_pix,
        lambda_sem,
        color_fix,
        process_size,
        seed,
        latent_tile,
        latent_overlap,
        vae_tile,
        grid,
        scale,
        width,
    };
    if batch::is_single_file(&inputs, &output) {
        if shard.select(vec![()]).is_empty() {
            eprintln!("shard {shard}: nothing to do (its part of the 1 input is empty)");
            return Ok(());
        }
        upscale_single(&inputs[0], &output, &model, device, dtype, &settings)
    } else {
        upscale_batch(&inputs, &output, &model, device, dtype, &settings, shard, overwrite)
    }
}

/// The device, set to f16 first when asked (before any tensor exists on it: afterwards the
/// defaults are locked).
fn open_upscale_device(arg: DeviceArg, dtype: DTypeArg) -> Result<burn::tensor::Device> {
    let mut device = open_device(arg)?;
    if let DTypeArg::F16 = dtype {
        device
            .configure(burn::tensor::FloatDType::F16)
            .map_err(|e| format!("--dtype f16 is not available on this device ({e:?}); use --dtype f32"))?;
    }
    Ok(device)
}

/// `onestep upscale IN -o OUT.png`: the image is decoded and checked before any weights load.
fn upscale_single(input: &Path, output: &Path, model: &Path, device: DeviceArg, dtype: DTypeArg, s: &UpscaleSettings) -> Result<()> {
    let img = upscaler::read_image(input)?;
    let (in_w, in_h) = img.rgb.dimensions();
    // Checked against the model's scale (its manifest) before any weights are loaded.
    let model_scale = weights::loader::read_manifest(&model_path(model))
        .ok()
        .and_then(|m| m.config.get("scale").and_then(|v| v.as_u64()))
        .unwrap_or(4) as u32;
    image_io::output_size(in_w, in_h, model_scale, s.scale, s.width)?;
    let device = open_upscale_device(device, dtype)?;
    let runner = make_runner(load_any(model, &device)?, s)?;
    let outputs = s.outputs(output);
    run_image(&runner, &img, &outputs, s, &step_bar(&runner), true)?;
    for o in &outputs {
        println!("{}", o.display());
    }
    Ok(())
}

/// `onestep upscale IN... -o OUTDIR`: the inputs are listed, checked for clashing names and
/// sharded before any work; finished outputs are skipped; the model loads once; a file that
/// fails is reported and the others go on; the exit status says whether any failed.
#[allow(clippy::too_many_arguments)]
fn upscale_batch(
    inputs: &[PathBuf],
    out_dir: &Path,
    model: &Path,
    device: DeviceArg,
    dtype: DTypeArg,
    s: &UpscaleSettings,
    shard: batch::Shard,
    overwrite: bool,
) -> Result<()> {
    let files = batch::collect_inputs(inputs)?;
    let total = files.len();
    let mut jobs = batch::plan(&files, out_dir)?;
    for job in &mut jobs {
        job.outputs = s.outputs(&job.outputs[0]);
    }
    let jobs = shard.select(jobs);
    let mine = jobs.len();
    if mine == 0 {
        eprintln!("shard {shard}: nothing to do (its part of the {total} inputs is empty)");
        return Ok(());
    }
    let (todo, skipped) = batch::skip_done(jobs, overwrite);
    if skipped > 0 {
        eprintln!("skipped {skipped} of {mine} (already done)");
    }
    if todo.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let device = open_upscale_device(device, dtype)?;
    let runner = make_runner(load_any(model, &device)?, s)?;
    let mp = MultiProgress::new();
    let files_bar = mp.add(bar("file {prefix} [{bar:30}] {elapsed} elapsed, ETA {eta} {msg}"));
    files_bar.set_length(todo.len() as u64);
    let mut failed = 0;
    for (i, job) in todo.iter().enumerate() {
        files_bar.set_prefix(format!("{}/{}", i + 1, todo.len()));
        files_bar.set_message(job.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let pb = mp.add(step_bar(&runner));
        let result = upscaler::read_image(&job.input).map_err(Into::into).and_then(|img| {
            let (w, h) = img.rgb.dimensions();
            image_io::output_size(w, h, runner.scale(), s.scale, s.width)?;
            run_image(&runner, &img, &job.outputs, s, &pb, false)
        });
        pb.finish_and_clear();
        mp.remove(&pb);
        match result {
            Ok(()) => mp.suspend(|| job.outputs.iter().for_each(|o| println!("{}", o.display()))),
            Err(e) => {
                failed += 1;
                mp.suspend(|| eprintln!("error: {}: {}", job.input.display(), one_line(&e.to_string())));
            }
        }
        files_bar.inc(1);
    }
    files_bar.finish_and_clear();
    if failed > 0 {
        return Err(format!("{failed} of {} failed", todo.len()).into());
    }
    Ok(())
}
