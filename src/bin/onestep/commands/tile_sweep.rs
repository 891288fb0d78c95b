//! `onestep tile-sweep`: tiled vs whole-image PSNR for several tile sizes and overlaps, as a
//! Markdown table (Real-ESRGAN: image tiles; diffusion models: UNet latent tiles).

use std::time::Instant;

use onestep_sr::pipeline::colour_fix::ColourFix;
use onestep_sr::pipeline::gan::TileOptions;
use onestep_sr::pipeline::preprocess::PreprocessOptions;
use onestep_sr::pipeline::sd_upscale::{SdOptions, SdTiling};
use onestep_sr::upscaler::{self, Upscaler};

use crate::device::open_device;
use crate::model::{MeasureArgs, load_any, load_model};
use crate::util::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: MeasureArgs,
    #[arg(long, value_delimiter = ',', default_value = "96,128,192")]
    tiles: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64")]
    overlaps: Vec<usize>,
}

pub fn run(Args { input: MeasureArgs { image, model, device }, tiles, overlaps }: Args) -> Result<()> {
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
