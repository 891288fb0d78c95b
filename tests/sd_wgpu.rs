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
