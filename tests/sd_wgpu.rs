//! OSEDiff / PiSA-SR on burn-wgpu (Vulkan; lavapipe software Vulkan on CI) in f32 vs the
//! diffusers + peft reference: the tiny fixtures converted with f32 storage, max |diff| ≤ 1e-3
//! on every compared tensor (z_hat of OSEDiff x20, as on the CPU). The f16 test lives in its
//! own binary (sd_wgpu_f16.rs): the wgpu runtime initialises once per process, and the float
//! type must be chosen before the first tensor exists.

mod common;

use std::time::Instant;

use common::sd::*;
use common::*;
use onestep_sr::model::sd::Method;
use onestep_sr::weights::sd_convert::StoreDType;

const TOL: f32 = 1e-3;

#[test]
fn osediff_wgpu_f32_matches_diffusers_peft_1e3() {
    let t = Instant::now();
    let (_tmp, dir) = converted(Method::OseDiff, StoreDType::F32);
    let device = gpu();
    let max = osediff_matches_reference(&load_model(&dir, &device), &device, TOL);
    println!("OSEDiff on wgpu f32: max |diff| over the output images = {max:.3e} ({:.1} s)", t.elapsed().as_secs_f64());
}

#[test]
fn pisa_sr_wgpu_f32_default_and_adjustable_match_diffusers_peft_1e3() {
    // Default mode, then adjustable mode at all four reference lambda pairs, each with the
    // three colour fixes (none / AdaIN / wavelet).
    let t = Instant::now();
    let (_tmp, dir) = converted(Method::PisaSr, StoreDType::F32);
    let device = gpu();
    let max = pisa_sr_matches_reference_at(&load_model(&dir, &device), &device, TOL, &PISA_LAMBDAS);
    println!("PiSA-SR on wgpu f32: max |diff| over the output images = {max:.3e} ({:.1} s)", t.elapsed().as_secs_f64());
}

/// Exact VAE bands on wgpu, with the bands parked in host memory (burn's CPU backend) between
/// layers, against the whole-image VAE on wgpu: the planner's path for images whose
/// activations do not fit the device.
#[test]
fn parked_vae_bands_on_wgpu_equal_the_whole_image_vae() {
    use onestep_sr::pipeline::preprocess::to_model_input;
    use onestep_sr::tiling::vae::{self, Bands, Norms, Park};
    let (_tmp, dir) = converted(Method::PisaSr, StoreDType::F32);
    let device = gpu();
    let model = load_model(&dir, &device);
    let img = image::imageops::resize(&png("sd/lr_up.png"), 64, 64, image::imageops::FilterType::CatmullRom);
    let x = to_model_input(&img, &device);
    let park = Some(Park { compute: device.clone(), host: cpu() });
    let diff = |a: burn::tensor::Tensor<4>, b: burn::tensor::Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
    let whole = model.vae.encoder.forward(x.clone());
    let bands = vae::encode(&model.vae.encoder, Bands::split(x, 16).parked(park.clone()), &mut Norms::exact());
    assert!(bands.0.iter().all(|t| t.device() == cpu()), "the bands wait on the host");
    let e = diff(bands.join(), whole.clone());
    let z = model.vae.post_quant_conv.forward_f32(whole.narrow(1, 0, 4));
    let whole = model.vae.decoder.forward(z.clone());
    let d = diff(vae::decode(&model.vae.decoder, Bands::split(z, 2).parked(park), &mut Norms::exact()).join(), whole);
    println!("parked bands on wgpu: encoder max |diff| {e:.2e}, decoder {d:.2e}");
    // wgpu's f32 kernels differ by shape (whole vs band): the wgpu parity bound, as above.
    assert!(e <= TOL && d <= TOL, "{e} {d}");
}
