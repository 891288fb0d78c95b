//! `onestep`: upscale images, convert weights, benchmark.
//!
//! The top-level parser and the dispatch; each subcommand lives in `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod device;
mod model;
mod progress;
mod util;

use commands::{bench, bench_adjust, convert, models, tile_sweep, upscale};

#[derive(Parser)]
#[command(name = "onestep", version, about = "One-step super-resolution on your own device")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    Upscale(upscale::Args),
    /// List the model catalog: id, scale, architecture, size, whether it is converted, and
    /// what it is for. `--model` takes a path or one of these ids.
    Models(models::Args),
    /// Convert weights into format v1.
    #[command(subcommand)]
    Convert(convert::Convert),
    /// Time the model on an image (warm-up run, then `runs` timed runs); prints JSON.
    /// Diffusion models (OSEDiff / PiSA-SR, default mode, AdaIN, latent mean) also report
    /// seconds per stage: VAE encode, UNet, VAE decode + colour fix (the device is synced
    /// after each stage).
    Bench(bench::Args),
    /// PiSA-SR: what moving the lambdas costs. Times one adjustable run (encoder + both UNet
    /// passes, then the decoder), a lambda grid (one encoder + UNet pair, a decoder per pair),
    /// and a region re-render against the same region of a whole-image render; prints JSON.
    BenchAdjust(bench_adjust::Args),
    /// Tiled vs whole-image PSNR for several tile sizes and overlaps; prints a Markdown table.
    TileSweep(tile_sweep::Args),
}

fn main() -> ExitCode {
    onestep_sr::cpu::heap::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the underlying library put in its message.
            eprintln!("error: {}", util::one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> util::Result<()> {
    match command {
        Command::Upscale(args) => upscale::run(args),
        Command::Models(args) => models::run(args),
        Command::Convert(cmd) => convert::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::BenchAdjust(args) => bench_adjust::run(args),
        Command::TileSweep(args) => tile_sweep::run(args),
    }
}
