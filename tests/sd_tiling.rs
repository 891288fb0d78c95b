//! Exact VAE tiling and chunked attention (tiny random-weight models from the fixtures, f32 on
//! the CPU backend): bands of a 512x512 image against the whole-image VAE, and the chunked
//! attention against one full softmax.

mod common;

use burn::tensor::{Distribution, Tensor};
use common::sd::*;
use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::preprocess::to_model_input;
use onestep_sr::tiling::attention::{attention, attention_pieces, set_max_scores};
use onestep_sr::tiling::vae::{self, Bands, Norms};
use onestep_sr::weights::sd_convert::StoreDType;

fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar()
}

/// A 512x512 photo: the 4x fixture crop enlarged (content, not noise).
fn photo_512() -> image::RgbImage {
    image::imageops::resize(&png("sd/lr_up.png"), 512, 512, image::imageops::FilterType::CatmullRom)
}

#[test]
fn banded_vae_equals_the_whole_image_vae_at_512() {
    let device = common::cpu();
    let (_t, dir) = converted(Method::PisaSr, StoreDType::F32);
    let model = load_model(&dir, &device);
    let x = to_model_input(&photo_512(), &device);

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
    let t = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 2.0), &device);
    let (q, k, v) = (t([2, 3, 300, 16]), t([2, 3, 270, 16]), t([2, 3, 270, 16]));
    let mask = Tensor::<2>::random([300, 270], Distribution::Uniform(-4.0, 0.0), &device);
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
    let device = common::cpu();
    let (_t, dir) = converted(Method::PisaSr, StoreDType::F32);
    let model = load_model(&dir, &device);
    let img = image::imageops::resize(&png("sd/lr_up.png"), 128, 128, image::imageops::FilterType::CatmullRom);
    for fix in [ColourFix::None, ColourFix::Adain, ColourFix::Wavelet] {
        let opts = SdOptions { colour_fix: fix, guidance: Guidance::Adjustable { lambda_pix: 1.0, lambda_sem: 1.0 }, ..Default::default() };
        let mut r = prepare(&model, &device, &img, &opts, &mut |_| {});
        let reg = Region { x: 128, y: 192, w: 256, h: 128 };
        let crop = |i: &image::RgbImage| image::imageops::crop_imm(i, reg.x as u32, reg.y as u32, reg.w as u32, reg.h as u32).to_image();
        for lambdas in [(1.0, 1.0), (0.5, 1.5)] {
            let _ = r.render(&model, (1.0, 1.0), &mut |_| {}).unwrap();
            let part = r.render_region(&model, lambdas, reg, 8).unwrap();
            let whole = r.render(&model, lambdas, &mut |_| {}).unwrap();
            let (psnr, max) = onestep_sr::tiling::metrics::psnr_u8(part.as_raw(), crop(&whole).as_raw());
            println!("{fix:?} region at {lambdas:?}: PSNR {psnr:.2} dB, max {max}");
        }
    }
}
