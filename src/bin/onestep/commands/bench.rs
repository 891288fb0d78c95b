//! `onestep bench`: time a model on an image (Real-ESRGAN: whole runs; diffusion models: seconds
//! per stage); prints JSON.

use std::path::Path;
use std::time::Instant;

use onestep_sr::pipeline::colour_fix::ColourFix;
use onestep_sr::pipeline::gan::TileOptions;
use onestep_sr::pipeline::one_step::{Guidance, Latent};
use onestep_sr::pipeline::preprocess::PreprocessOptions;
use onestep_sr::upscaler::{self, Upscaler};
use onestep_sr::weights;

use crate::device::open_device;
use crate::model::{MeasureArgs, load_model, model_path};
use crate::util::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: MeasureArgs,
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
}

pub fn run(Args { input: MeasureArgs { image, model, device }, runs, tile, process_size, no_warmup }: Args) -> Result<()> {
    let img = upscaler::read_image(&image)?;
    let device = open_device(device)?;
    let model = model_path(&model);
    if !matches!(weights::loader::read_manifest(&model)?.architecture.as_str(), "rrdbnet" | "srvgg" | "upconv7" | "cunet") {
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

/// `onestep bench` for OSEDiff / PiSA-SR: default mode, latent mean, AdaIN colour fix, one
/// whole-image pass per run; seconds per stage with a device sync (a read-back) after each.
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
