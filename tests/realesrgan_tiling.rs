//! Tiled vs whole-image Real-ESRGAN on a 256x256 photo at each architecture's default tile size
//! and overlap: PSNR >= 45 dB (BENCHMARKS.md has the sweeps that chose the defaults).

mod common;

use common::*;
use onestep_sr::pipeline::gan::TileOptions;
use onestep_sr::tiling::metrics::psnr_u8;
use onestep_sr::upscaler::{GanUpscaler, read_image};

#[test]
fn tiled_matches_whole_image_psnr_45db() {
    let up = GanUpscaler::load(&realesrgan_dir(), &cpu(), &mut |_| {}).unwrap();
    let img = read_image(&fixture("realesrgan/astronaut_256.png")).unwrap();
    let whole = up.upscale_rgb(&img.rgb, TileOptions { tile: usize::MAX, overlap: 0, ..TileOptions::default() }, &mut |_| {}).unwrap();
    let mut tiles = 0;
    let tiled = up.upscale_rgb(&img.rgb, TileOptions::default(), &mut |p| tiles = p.total).unwrap();
    assert!(tiles > 1, "the default tile must actually tile a 256x256 image");
    let (psnr, max) = psnr_u8(whole.as_raw(), tiled.as_raw());
    println!("{tiles} tiles: PSNR {psnr:.2} dB, max |diff| {max}");
    assert!(psnr >= 45.0, "tiled vs whole PSNR {psnr:.2} dB < 45");
}

#[test]
fn tiny_images_come_out_at_exactly_4x() {
    let up = GanUpscaler::load(&realesrgan_dir(), &cpu(), &mut |_| {}).unwrap();
    let src = read_image(&fixture("realesrgan/astronaut_64.png")).unwrap().rgb;
    for (w, h) in [(1, 1), (7, 3), (10, 12)] {
        let img = image::imageops::crop_imm(&src, 20, 20, w, h).to_image();
        let out = up.upscale_rgb(&img, TileOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((out.width(), out.height()), (4 * w, 4 * h));
        // A tiny crop of a face is still face-coloured: not the garbage ncnn gives here.
        let mean = |im: &image::RgbImage| im.as_raw().iter().map(|&v| v as f64).sum::<f64>() / im.as_raw().len() as f64;
        assert!((mean(&out) - mean(&img)).abs() < 20.0, "{w}x{h}: mean {} vs {}", mean(&out), mean(&img));
    }
}

#[test]
fn compact_tiled_matches_whole_image_and_tiny_images_keep_their_scale() {
    let img = read_image(&fixture("realesrgan/astronaut_256.png")).unwrap();
    for id in ["realesr-animevideov3-x4", "realesr-animevideov3-x3"] {
        let up = GanUpscaler::load(&model_dir(id), &cpu(), &mut |_| {}).unwrap();
        let s = up.scale();
        for (w, h) in [(1, 1), (7, 3)] {
            let small = image::imageops::crop_imm(&img.rgb, 100, 100, w, h).to_image();
            let out = up.upscale_rgb(&small, up.default_tile_options(), &mut |_| {}).unwrap();
            assert_eq!((out.width(), out.height()), (s * w, s * h), "{id} {w}x{h}");
        }
        if id != "realesr-animevideov3-x4" {
            continue; // one network: x3 differs only after it
        }
        let whole = up.upscale_rgb(&img.rgb, TileOptions { tile: usize::MAX, overlap: 0, ..TileOptions::default() }, &mut |_| {}).unwrap();
        let mut tiles = 0;
        let tiled = up.upscale_rgb(&img.rgb, up.default_tile_options(), &mut |p| tiles = p.total).unwrap();
        assert!(tiles > 1, "the default tile must actually tile a 256x256 image");
        let (psnr, max) = psnr_u8(whole.as_raw(), tiled.as_raw());
        println!("{id}: {tiles} tiles: PSNR {psnr:.2} dB, max |diff| {max}");
        assert!(psnr >= 45.0, "{id}: tiled vs whole PSNR {psnr:.2} dB < 45");
    }
}
