//! `onestep bench-adjust`: what moving PiSA-SR's lambdas costs (an adjustable run, a lambda
//! grid, region re-renders); prints JSON.

use std::path::PathBuf;
use std::time::Instant;

use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::one_step::Guidance;
use onestep_sr::pipeline::preprocess::PreprocessOptions;
use onestep_sr::pipeline::sd_upscale::SdOptions;
use onestep_sr::upscaler::{self, Upscaler};

use crate::device::{DeviceArg, open_device};
use crate::model::load_any;
use crate::util::Result;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(Args { image, model, device, grid, no_grid, region, halo, process_size }: Args) -> Result<()> {
    let img = upscaler::read_image(&image)?;
    let device = open_device(device)?;
    let up = match load_any(&model, &device)? {
        Upscaler::Sd(up) if up.model.config.method == Method::PisaSr => up,
        _ => return Err(format!("{} is not a PiSA-SR model", model.display()).into()),
    };
    bench_adjust(&up, &device, &img.rgb, if no_grid { &[] } else { &grid }, region, halo, process_size)
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
