//! Tiled diffusion (tiny random-weight models from the fixtures, f32 on the CPU backend): exact
//! VAE bands against the whole-image VAE, chunked against full attention, UNet latent tiles
//! (PSNR, seams), the lambda grid and region re-renders; and the memory planner on the
//! full-size SD 2.1-base architecture: every tensor it plans (the real shapes: weights from
//! the model's own tensor list, band and tile activations, attention blocks) fits a 128 MiB
//! binding and the peak estimate stays under 4 GiB, at 512x512 and at 4096x4096 output.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::sd::*;
use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::preprocess::to_model_input;
use onestep_sr::model::chunked_attention::{attention, attention_pieces, set_max_scores};
use onestep_sr::tiling::vae::{self, Bands, Norms};
use onestep_sr::weights::sd_convert::StoreDType;

fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar()
}

/// A `side x side` photo: the 4x fixture crop resized (content, not noise).
fn photo(side: u32) -> image::RgbImage {
    image::imageops::resize(&png("sd/lr_up.png"), side, side, image::imageops::FilterType::CatmullRom)
}

/// The tiny PiSA-SR (f32 storage) on the CPU backend.
fn tiny_pisa() -> (onestep_sr::pipeline::one_step::OneStepSr, burn::tensor::Device) {
    let device = common::cpu();
    let (_t, dir) = converted(Method::PisaSr, StoreDType::F32);
    (load_model(&dir, &device), device)
}

#[test]
fn banded_vae_equals_the_whole_image_vae_at_512() {
    let (model, device) = tiny_pisa();
    let x = to_model_input(&photo(512), &device);

    // Whole image: the reference path (attention unbounded).
    set_max_scores(usize::MAX);
    let whole_moments = model.vae.encoder.forward(x.clone());
    let z = whole_moments.clone().narrow(1, 0, 4);
    let whole_image = model.vae.decoder.forward(model.vae.post_quant_conv.forward_f32(z.clone()));

    // Bands of 64 image rows (8 latent rows) and an attention bound that forces key chunks.
    set_max_scores(1 << 12);
    for rows in [64, 200 / 8 * 8] {
        let got = vae::encode(&model.vae.encoder, Bands::split(x.clone(), rows), &mut Norms::default()).join();
        let e = max_diff(got, whole_moments.clone());
        println!("encoder, bands of {rows} px: max |diff| {e:.2e}");
        assert!(e <= 1e-4, "encoder bands of {rows}: {e}");
        let zq = model.vae.post_quant_conv.forward_f32(z.clone());
        let got = vae::decode(&model.vae.decoder, Bands::split(zq, rows / 8), &mut Norms::default()).join();
        let e = max_diff(got, whole_image.clone());
        println!("decoder, bands of {} latent rows: max |diff| {e:.2e}", rows / 8);
        assert!(e <= 1e-4, "decoder bands of {rows}: {e}");
    }
    set_max_scores(usize::MAX);
}

#[test]
fn chunked_attention_equals_full_attention() {
    let device = common::cpu();
    // Seeded standard normals (the same inputs on every run).
    let normal = |seed: u64, n: usize| onestep_sr::pipeline::one_step::gaussian(seed, n);
    let t = |seed: u64, dims: [usize; 4]| Tensor::<4>::from_data(TensorData::new(normal(seed, dims.iter().product()), dims), &device);
    let (q, k, v) = (t(1, [2, 3, 300, 16]), t(2, [2, 3, 270, 16]), t(3, [2, 3, 270, 16]));
    let mask = Tensor::<2>::from_data(TensorData::new(normal(4, 300 * 270), [300, 270]), &device).abs() * -2.0;
    set_max_scores(usize::MAX);
    let full = attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()), 0.25);
    for budget in [6 * 300 * 100, 6 * 16 * 50, 6 * 16, 1] {
        set_max_scores(budget);
        let e = max_diff(attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()), 0.25), full.clone());
        println!("budget {budget}: max |diff| {e:.2e}");
        assert!(e <= 1e-5, "budget {budget}: {e}");
    }
    // Keys in separate pieces (the bands of a tiled image).
    set_max_scores(usize::MAX);
    let full = attention(q.clone(), k.clone(), v.clone(), None, 0.25);
    let pieces: Vec<_> = [(0, 100), (100, 7), (107, 163)]
        .iter()
        .map(|&(s, n)| (k.clone().narrow(2, s, n), v.clone().narrow(2, s, n)))
        .collect();
    for budget in [usize::MAX, 6 * 16 * 40] {
        set_max_scores(budget);
        let e = max_diff(attention_pieces(q.clone(), &pieces, 0.25), full.clone());
        println!("pieces, budget {budget}: max |diff| {e:.2e}");
        assert!(e <= 1e-5, "pieces, budget {budget}: {e}");
    }
    set_max_scores(usize::MAX);
}

/// A region re-render against the same region of a whole-image render.
#[test]
fn region_render_matches_the_whole_render() {
    use onestep_sr::pipeline::colour_fix::ColourFix;
    use onestep_sr::pipeline::one_step::Guidance;
    use onestep_sr::pipeline::sd_upscale::{Region, SdOptions, prepare};
    let (model, device) = tiny_pisa();
    let img = photo(128);
    // No colour fix over several halos; AdaIN and wavelet (whose statistics are moved too)
    // at the recorded lambdas and one move.
    let cases = |fix| match fix {
        ColourFix::None => vec![((1.0, 1.0), 8), ((0.5, 1.5), 8), ((0.5, 1.5), 16), ((0.5, 1.5), 64)],
        _ => vec![((1.0, 1.0), 8), ((0.5, 1.5), 16)],
    };
    for fix in [ColourFix::None, ColourFix::Adain, ColourFix::Wavelet] {
        let opts = SdOptions {
            colour_fix: fix,
            guidance: Guidance::Adjustable { lambda_pix: 1.0, lambda_sem: 1.0 },
            ..Default::default()
        };
        let mut r = prepare(&model, &device, &img, &opts, &mut |_| {}).unwrap();
        let reg = Region { x: 128, y: 192, w: 256, h: 128 };
        let crop = |i: &image::RgbImage| image::imageops::crop_imm(i, reg.x as u32, reg.y as u32, reg.w as u32, reg.h as u32).to_image();
        for (lambdas, halo) in cases(fix) {
            let _ = r.render(&model, (1.0, 1.0), &mut |_| {}).unwrap();
            let part = r.render_region(&model, lambdas, reg, halo).unwrap();
            let whole = r.render(&model, lambdas, &mut |_| {}).unwrap();
            let (psnr, max) = onestep_sr::tiling::metrics::psnr_u8(part.as_raw(), crop(&whole).as_raw());
            println!("{fix:?} region at {lambdas:?}, halo {halo} (statistics of (1, 1)): PSNR {psnr:.2} dB, max {max}");
            if lambdas == (1.0, 1.0) {
                // The statistics are the right ones: only the halo's edge differs.
                assert!(psnr >= 60.0, "{fix:?}: {psnr}");
            } else if halo >= 16 {
                // A large move of a random-weight model (its LoRAs change the image by ~20 dB):
                // the moved statistics hold it above 40 dB once the crop is large enough.
                assert!(psnr >= 40.0, "{fix:?} {lambdas:?} halo {halo}: {psnr}");
            }
        }
    }
}

/// `--lambda-grid`: one encoder pass and one pair of UNet passes for every pair; each image
/// equals a separate run with those lambdas, and the reference's pairs match diffusers + peft.
#[test]
fn lambda_grid_images_equal_separate_runs_and_the_reference() {
    use common::fixture;
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("pisa");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_onestep")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["convert", "sd", "--base", fixture("sd").to_str().unwrap(), "--lora", fixture("sd/pisa_sr.pkl").to_str().unwrap(),
        "--method", "pisa-sr", "--out", model.to_str().unwrap(), "--store-dtype", "f32"]);
    let common_args = ["--model", model.to_str().unwrap(), "--device", "cpu", "--process-size", "64", "--color-fix", "none"];
    let lr = fixture("sd/lr.png");
    let out = tmp.path().join("grid.png");
    let mut args = vec!["upscale", lr.to_str().unwrap(), "-o", out.to_str().unwrap(), "--lambda-grid", "0.5,1.0,1.5"];
    args.extend(common_args);
    let listed = run(&args);
    assert_eq!(listed.lines().count(), 9, "{listed}");
    let reference = Reference::open();
    let values = ["0.5", "1.0", "1.5"];
    for p in values {
        for s_ in values {
            let path = tmp.path().join(format!("grid_p{p}_s{s_}.png"));
            assert!(listed.contains(path.to_str().unwrap()), "{listed}");
            let grid = png(path.to_str().unwrap());
            let single = tmp.path().join("single.png");
            let mut args = vec!["upscale", lr.to_str().unwrap(), "-o", single.to_str().unwrap(), "--lambda-pix", p, "--lambda-sem", s_];
            args.extend(common_args);
            run(&args);
            assert!(grid == png(single.to_str().unwrap()), "({p}, {s_}): the grid image differs from a separate run");
            let key = format!("pisa_adj_{p}_{s_}_out_none");
            if reference.0.len() > 0 && ["pisa_adj_0.5_1.0", "pisa_adj_1.0_0.5", "pisa_adj_1.0_1.0"].iter().any(|k| key.starts_with(k)) {
                let (_, want) = reference.get(&key);
                let (h, w) = (64usize, 80usize);
                let mut max = 0u8;
                for (i, px) in grid.pixels().enumerate() {
                    for c in 0..3 {
                        max = max.max(px[c].abs_diff((want[c * h * w + i] * 255.0 + 0.5).clamp(0.0, 255.0) as u8));
                    }
                }
                println!("grid ({p}, {s_}) vs diffusers + peft: max diff {max} levels");
                assert!(max <= 1, "({p}, {s_}): {max}");
            }
        }
    }
}

/// UNet latent tiling is an approximation: tiled vs one-pass PSNR for a few tile / overlap
/// choices (PiSA-SR default, no colour fix, 512x512 output), and no seams: the mean
/// difference on tile borders is at most 1.5x the mean difference inside tiles.
#[test]
fn latent_tiling_psnr_and_no_seams() {
    use onestep_sr::pipeline::colour_fix::ColourFix;
    use onestep_sr::pipeline::sd_upscale::{SdOptions, SdTiling, upscale};
    use onestep_sr::tiling::latent::LatentTiles;
    let (model, device) = tiny_pisa();
    let img = photo(128);
    let opts = |tile: usize, overlap: usize| SdOptions {
        colour_fix: ColourFix::None,
        tiling: SdTiling { latent_tile: Some(tile), latent_overlap: Some(overlap), ..Default::default() },
        ..Default::default()
    };
    let whole = upscale(&model, &device, &img, &opts(64, 0), &mut |_| {}).unwrap();
    for (tile, overlap) in [(24, 8), (32, 8), (32, 16), (48, 16)] {
        let tiled = upscale(&model, &device, &img, &opts(tile, overlap), &mut |_| {}).unwrap();
        let (psnr, max) = onestep_sr::tiling::metrics::psnr_u8(tiled.as_raw(), whole.as_raw());
        // Border pixels: within 4 px of a tile edge that lies inside the image.
        let plan = LatentTiles::plan(64, 64, tile, overlap).unwrap();
        let mut edge = vec![false; 512];
        for &(y, _) in &plan.origins {
            for e in [y * 8, (y + plan.side) * 8] {
                if e > 0 && e < 512 {
                    for i in e.saturating_sub(4)..(e + 4).min(512) {
                        edge[i] = true;
                    }
                }
            }
        }
        let (mut on, mut n_on, mut inside, mut n_in) = (0f64, 0usize, 0f64, 0usize);
        for (x, y, p) in tiled.enumerate_pixels() {
            let q = whole.get_pixel(x, y);
            let d: f64 = (0..3).map(|c| p[c].abs_diff(q[c]) as f64).sum::<f64>() / 3.0;
            if edge[x as usize] || edge[y as usize] {
                on += d;
                n_on += 1;
            } else {
                inside += d;
                n_in += 1;
            }
        }
        let (on, inside) = (on / n_on as f64, inside / n_in as f64);
        println!("latent tile {tile}, overlap {overlap}: PSNR {psnr:.2} dB (max {max}); mean |diff| on borders {on:.3}, inside {inside:.3}");
        assert!(on <= 1.5 * inside, "tile {tile}/{overlap}: seams ({on:.3} vs {inside:.3})");
    }
}

/// Cancellation between tiles: a run cancelled after its first latent tile stops there.
#[test]
fn cancel_stops_between_tiles() {
    use onestep_sr::pipeline::RunError;
    use onestep_sr::pipeline::sd_upscale::{SdOptions, SdTiling, prepare};
    let (model, device) = tiny_pisa();
    let img = photo(128);
    let opts = SdOptions { tiling: SdTiling { latent_tile: Some(32), latent_overlap: Some(8), ..Default::default() }, ..Default::default() };
    let cancel = opts.cancel.clone();
    let mut tiles = 0;
    let got = prepare(&model, &device, &img, &opts, &mut |p| {
        if p.stage == "unet" {
            tiles = p.done;
            cancel.cancel();
        }
    });
    assert!(matches!(got, Err(RunError::Cancelled)), "a cancelled run must not finish");
    assert_eq!(tiles, 1, "stopped after the first of 9 tiles");
}

/// The retry after an out-of-memory run halves what the first try used: forced or planned.
#[test]
fn out_of_memory_retry_halves_the_tiles() {
    use onestep_sr::pipeline::preprocess::PreprocessOptions;
    use onestep_sr::pipeline::sd_upscale::SdTiling;
    let (model, _) = tiny_pisa();
    let img = photo(128);
    let pre = PreprocessOptions::default();
    let forced = SdTiling { latent_tile: Some(32), latent_overlap: Some(8), vae_rows: Some(64), ..Default::default() };
    let half = forced.halved(&model, &img, pre);
    assert_eq!((half.latent_tile, half.latent_overlap, half.vae_rows), (Some(16), Some(4), Some(32)));
    // Planned: the 512x512 network input fits one 96-latent tile and one band by default.
    let half = SdTiling::default().halved(&model, &img, pre);
    assert_eq!((half.latent_tile, half.latent_overlap), (Some(48), Some(16)));
    assert!(half.vae_rows.is_some_and(|r| r <= 256 && r % 8 == 0), "{:?}", half.vae_rows);
}

// ---------------------------------------------------------------- memory planner

use onestep_sr::model::sd::OneStepConfig;
use onestep_sr::tiling::memory::{DeviceLimits, Precision, plan_sd};

fn pisa_sr_full_size() -> OneStepConfig {
    OneStepConfig::pisa_sr_sd21()
}

#[test]
fn full_size_plans_fit_128_mib_bindings_and_4_gib() {
    let limits = DeviceLimits::webgpu_default();
    let cfg = pisa_sr_full_size();
    for side in [512, 1024, 4096] {
        // f16 compute (f32 compute widens the 1.8 GiB of f16 weights to 3.5 GiB: printed
        // against an 8 GiB budget, not asserted).
        for (precision, limits) in [(Precision::F16, limits), (Precision::F32, DeviceLimits { budget: 8 << 30, ..limits })] {
            let plan = plan_sd(&cfg, side, side, precision, limits).expect("a plan");
            let big = plan.largest();
            println!(
                "{side}x{side} {precision:?}: VAE bands {} px, latent tile {}/{}, attention block {} scores, park on host {}, \\
                 {} tensors, largest {} {:?} = {:.1} MiB, peak {:.2} GiB, host {:.2} GiB",
                plan.vae_rows,
                plan.latent_tile,
                plan.latent_overlap,
                plan.max_scores,
                plan.park_on_host,
                plan.buffers.len(),
                big.what,
                big.shape,
                big.bytes as f64 / (1 << 20) as f64,
                plan.peak_bytes as f64 / (1u64 << 30) as f64,
                plan.host_bytes as f64 / (1u64 << 30) as f64,
            );
            for b in &plan.buffers {
                assert!(b.bytes <= limits.max_binding, "{side}: {} {:?} is {} bytes", b.what, b.shape, b.bytes);
            }
            if precision == Precision::F16 {
                assert!(plan.peak_bytes < 4 << 30, "{side}: peak {}", plan.peak_bytes);
            }
            // The weights are all there (every UNet and VAE tensor) and the official tiles fit.
            let weights = cfg.unet.tensor_shapes().len() + cfg.vae.tensor_shapes().len();
            assert_eq!(plan.buffers.iter().filter(|b| b.what.starts_with("weight")).count(), weights);
            assert_eq!((plan.latent_tile, plan.latent_overlap), (96, 32));
        }
    }
    // A device with 4x smaller bindings gets thinner bands and smaller attention blocks.
    let small = DeviceLimits { max_binding: 32 << 20, max_buffer: 32 << 20, budget: 3 << 30 };
    let plan = plan_sd(&cfg, 1024, 1024, Precision::F16, small).unwrap();
    assert!(plan.buffers.iter().filter(|b| !b.what.starts_with("weight")).all(|b| b.bytes <= 32 << 20), "{:?}", plan.largest());
}
