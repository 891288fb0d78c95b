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

/// Prints the OSEDiff per-stage errors (latent, eps, z_hat) to show where f16 loses precision.
fn stages(device: &Device) {
    use onestep_sr::model::sd::Method;
    use onestep_sr::pipeline::one_step::{Latent, OneStepSr};
    use onestep_sr::weights::sd_convert::StoreDType;
    let r = Reference::open();
    let (_t, dir) = converted(Method::OseDiff, StoreDType::F16);
    let model = load_model(&dir, device);
    let z = model.encode(input(&r, device), Latent::Mean);
    check("f16 osediff z", z.clone(), &r, "osediff_z", f32::INFINITY);
    let eps = model.eps(z.clone(), true);
    check("f16 osediff eps", eps.clone(), &r, "osediff_eps_t999", f32::INFINITY);
    check("f16 osediff z_hat", OneStepSr::osediff_z_hat(z, eps), &r, "osediff_z_hat", f32::INFINITY);
    let (_t2, dir) = converted(Method::PisaSr, StoreDType::F16);
    let pisa = load_model(&dir, device);
    let z = pisa.encode(input(&r, device), Latent::Mean);
    check("f16 pisa z", z.clone(), &r, "z", f32::INFINITY);
    check("f16 pisa eps_sem", pisa.eps(z.clone(), true), &r, "pisa_eps_sem_t1", f32::INFINITY);
    check("f16 pisa eps_sem from f32 reference z", pisa.eps(r.tensor::<4>("z", device).cast(burn::tensor::FloatDType::F16), true), &r, "pisa_eps_sem_t1", f32::INFINITY);
    let out = pisa.decode(r.tensor("pisa_default_z_hat", device)) * 0.5 + 0.5;
    psnr_vs_reference("f16 pisa decoder alone (f32 reference z_hat)", out, &r, "pisa_default_out_none");
    check("f16 osediff z_hat from f32 reference eps", OneStepSr::osediff_z_hat(r.tensor("osediff_z", device), r.tensor("osediff_eps_t999", device)), &r, "osediff_z_hat", f32::INFINITY);
}

#[test]
fn osediff_and_pisa_sr_flex_f16_images_within_40db_of_f32_reference() {
    let device = cpu_f16();
    stages(&device);
    let t = Instant::now();
    let (ose, t_ose, pisa) = f16_min_psnrs(&device);
    println!(
        "flex f16: OSEDiff min PSNR {ose:.2} dB ({t_ose:.1} s), PiSA-SR min PSNR {pisa:.2} dB ({:.1} s)",
        t.elapsed().as_secs_f64() - t_ose
    );
    assert!(ose >= MIN_PSNR, "OSEDiff f16: {ose:.2} dB < {MIN_PSNR}");
    assert!(pisa >= MIN_PSNR, "PiSA-SR f16: {pisa:.2} dB < {MIN_PSNR}");
}
