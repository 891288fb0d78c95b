//! OSEDiff / PiSA-SR computing in f16 on burn's CPU backend (flex) vs the float32 diffusers +
//! peft reference images: PSNR ≥ 40 dB (peak 1) for every output image — the same check as
//! sd_wgpu_f16.rs, runnable without a GPU. Own test binary: `Device::configure(FloatDType::F16)`
//! must run before any tensor exists on the device.

mod common;

use std::time::Instant;

use burn::tensor::{Device, FloatDType};
use common::sd::*;

const MIN_PSNR: f64 = 40.0;

fn cpu_f16() -> Device {
    static DEV: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEV.get_or_init(|| {
        let mut device = onestep_sr::device::cpu();
        assert!(device.supports_dtype(FloatDType::F16), "flex supports f16");
        device.configure(FloatDType::F16).expect("configure f16 before any tensor exists");
        device
    })
    .clone()
}

#[test]
fn osediff_and_pisa_sr_flex_f16_images_within_40db_of_f32_reference() {
    let device = cpu_f16();
    f16_stages(&device);
    let t = Instant::now();
    let (ose, t_ose, pisa) = f16_min_psnrs(&device);
    println!(
        "flex f16: OSEDiff min PSNR {ose:.2} dB ({t_ose:.1} s), PiSA-SR min PSNR {pisa:.2} dB ({:.1} s)",
        t.elapsed().as_secs_f64() - t_ose
    );
    assert!(ose >= MIN_PSNR, "OSEDiff f16: {ose:.2} dB < {MIN_PSNR}");
    assert!(pisa >= MIN_PSNR, "PiSA-SR f16: {pisa:.2} dB < {MIN_PSNR}");
}
