//! Diffusion-model test helpers shared by the CPU (sd_pipeline.rs) and wgpu (sd_wgpu*.rs)
//! parity tests: the reference tensors of tests/fixtures/sd, the converter, the loader and the
//! end-to-end comparisons.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use onestep_sr::model::sd::{Method, OneStepConfig};
use onestep_sr::pipeline::colour_fix::{self, ColourFix};
use onestep_sr::pipeline::one_step::{Guidance, Latent, OneStepSr};
use onestep_sr::pipeline::preprocess::to_unit_tensor;
use onestep_sr::weights::sd_convert::{SdConvertOptions, StoreDType, convert_sd};
use onestep_sr::weights;
use safetensors::{Dtype, SafeTensors};

use super::fixture;

pub struct Reference(pub Vec<u8>);

impl Reference {
    pub fn open() -> Self {
        Self(std::fs::read(fixture("sd/reference.safetensors")).expect("tests/fixtures/sd/reference.safetensors"))
    }

    pub fn get(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let v = st.tensor(name).unwrap_or_else(|e| panic!("reference {name}: {e}"));
        assert_eq!(v.dtype(), Dtype::F32, "{name}");
        (v.shape().to_vec(), v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    }

    pub fn ids(&self, name: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        st.tensor(name).unwrap().data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }

    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.get(name);
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// Max |got - want| after checking the shapes; fails above `tol`.
pub fn check<const D: usize>(what: &str, got: Tensor<D>, r: &Reference, name: &str, tol: f32) -> f32 {
    let (shape, want) = r.get(name);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    let got = got.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("{what} vs {name}: max |diff| = {max:.3e}");
    assert!(max.is_finite() && max <= tol, "{what}: max |diff| {max:e} > {tol:e}");
    max
}

pub fn png(rel: &str) -> image::RgbImage {
    image::open(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")).to_rgb8()
}

pub fn colour_source(device: &Device) -> Tensor<4> {
    to_unit_tensor(&png("sd/lr_up.png"), device)
}

pub fn convert(method: Method, dtype: StoreDType, out: &Path) -> weights::Manifest {
    let lora = match method {
        Method::OseDiff => "sd/osediff.pkl",
        Method::PisaSr => "sd/pisa_sr.pkl",
    };
    convert_sd(&SdConvertOptions {
        base: fixture("sd"),
        lora: fixture(lora),
        method: Some(method),
        out: out.to_path_buf(),
        prompt: None,
        model_id: None,
        dtype,
        quantize: None,
    })
    .unwrap()
}

/// Load a converted directory the way the CLI does (streaming loader, ParamStore).
pub fn load_model(dir: &Path, device: &Device) -> OneStepSr {
    let (manifest, store) = weights::load_dir(dir, device, &mut |_| {}).unwrap();
    let config: OneStepConfig = serde_json::from_value(manifest.config.clone()).unwrap();
    assert_eq!(config.method.architecture(), manifest.architecture);
    OneStepSr::load(config, store).unwrap()
}

pub fn converted(method: Method, dtype: StoreDType) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    let m = convert(method, dtype, &dir);
    assert_eq!(m.architecture, method.architecture());
    assert!(m.tensors.iter().all(|t| !t.name.starts_with("text_encoder")), "no text encoder shipped");
    (tmp, dir)
}

/// The reference's network input (= lr_up.png, checked exactly above).
pub fn input(r: &Reference, device: &Device) -> Tensor<4> {
    r.tensor::<4>("input", device)
}

/// OSEDiff end to end on `device`: latent, eps, z_hat, decoded and the three colour fixes.
/// Returns the max error over the final images.
pub fn osediff_matches_reference(model: &OneStepSr, device: &Device, tol: f32) -> f32 {
    let r = Reference::open();
    let z = model.encode(input(&r, device), Latent::Mean);
    check("osediff z", z.clone(), &r, "osediff_z", tol);
    let eps = model.eps(z.clone(), true);
    check("osediff eps", eps.clone(), &r, "osediff_eps_t999", tol);
    let z_h = OneStepSr::osediff_z_hat(z, eps);
    check("osediff z_hat", z_h.clone(), &r, "osediff_z_hat", tol * 20.0); // |z_hat| ≤ 19.7
    let out = model.decode(z_h) * 0.5 + 0.5;
    let mut max = 0f32;
    for (fix, name) in [(ColourFix::None, "none"), (ColourFix::Adain, "adain"), (ColourFix::Wavelet, "wavelet")] {
        let img = colour_fix::apply(fix, out.clone(), colour_source(device));
        max = max.max(check(&format!("osediff {name}"), img, &r, &format!("osediff_out_{name}"), tol));
    }
    // The whole forward in one call gives the same image.
    let whole = model.forward(input(&r, device), Latent::Mean, Guidance::Default) * 0.5 + 0.5;
    max.max(check("osediff forward", whole, &r, "osediff_out_none", tol))
}

/// PiSA-SR default mode and adjustable mode at the four reference lambda pairs, with the
/// three colour fixes. Returns the max error over the final images.
pub fn pisa_sr_matches_reference(model: &OneStepSr, device: &Device, tol: f32) -> f32 {
    pisa_sr_matches_reference_at(model, device, tol, &PISA_LAMBDAS)
}

/// The (lambda_pix, lambda_sem) pairs the reference holds.
pub const PISA_LAMBDAS: [(f32, f32); 4] = [(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (1.2, 1.5)];

/// [`pisa_sr_matches_reference`] on a subset of the reference's lambda pairs.
pub fn pisa_sr_matches_reference_at(model: &OneStepSr, device: &Device, tol: f32, lambdas: &[(f32, f32)]) -> f32 {
    let r = Reference::open();
    let z = model.encode(input(&r, device), Latent::Mean);
    check("pisa z", z.clone(), &r, "z", tol);
    let eps_pix = model.eps(z.clone(), false);
    check("pisa eps_pix (branch off)", eps_pix.clone(), &r, "pisa_eps_pix_t1", tol);
    let eps_sem = model.eps(z.clone(), true);
    check("pisa eps_sem (branch on)", eps_sem.clone(), &r, "pisa_eps_sem_t1", tol);
    let mut max = 0f32;
    let fixes = [(ColourFix::None, "none"), (ColourFix::Adain, "adain"), (ColourFix::Wavelet, "wavelet")];
    let z_h = model.z_hat(z.clone(), Guidance::Default);
    check("pisa default z_hat", z_h.clone(), &r, "pisa_default_z_hat", tol);
    let out = model.decode(z_h) * 0.5 + 0.5;
    for (fix, name) in fixes {
        let img = colour_fix::apply(fix, out.clone(), colour_source(device));
        max = max.max(check(&format!("pisa default {name}"), img, &r, &format!("pisa_default_out_{name}"), tol));
    }
    for &(lp, ls) in lambdas {
        let key = format!("pisa_adj_{lp:.1}_{ls:.1}");
        let z_h = model.z_hat(z.clone(), Guidance::Adjustable { lambda_pix: lp, lambda_sem: ls });
        check(&key, z_h.clone(), &r, &format!("{key}_z_hat"), tol);
        // Cached eps: the slider path gives the same latent.
        let cached = OneStepSr::pisa_z_hat(z.clone(), eps_pix.clone(), eps_sem.clone(), lp, ls);
        check(&format!("{key} cached"), cached, &r, &format!("{key}_z_hat"), tol);
        let out = model.decode(z_h) * 0.5 + 0.5;
        for (fix, name) in fixes {
            let img = colour_fix::apply(fix, out.clone(), colour_source(device));
            max = max.max(check(&format!("{key} {name}"), img, &r, &format!("{key}_out_{name}"), tol));
        }
    }
    max
}


/// PSNR (dB, peak 1) of an image in [0, 1] against a reference image; also prints it.
pub fn psnr_vs_reference(what: &str, got: Tensor<4>, r: &Reference, name: &str) -> f64 {
    let (shape, want) = r.get(name);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    let got = got.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let mse = got.iter().zip(&want).map(|(a, b)| ((*a as f64) - (*b as f64)).powi(2)).sum::<f64>() / got.len() as f64;
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let psnr = -10.0 * mse.log10();
    println!("{what} vs {name}: PSNR {psnr:.2} dB, max |diff| {max:.3e}");
    assert!(psnr.is_finite() || mse == 0.0, "{what}: non-finite output");
    psnr
}

const FIXES: [(ColourFix, &str); 3] = [(ColourFix::None, "none"), (ColourFix::Adain, "adain"), (ColourFix::Wavelet, "wavelet")];

/// Runs `forward` with `guidance` on an f16-computing `device` and compares the three
/// colour-fixed images with `{prefix}_out_{fix}`; returns the lowest PSNR.
pub fn f16_min_psnr(model: &OneStepSr, device: &Device, guidance: Guidance, prefix: &str) -> f64 {
    let r = Reference::open();
    let out = model.forward(input(&r, device), Latent::Mean, guidance) * 0.5 + 0.5;
    assert_eq!(model.dtype(), burn::tensor::FloatDType::F16, "the computation runs in f16");
    let mut min = f64::INFINITY;
    for (fix, name) in FIXES {
        let img = colour_fix::apply(fix, out.clone(), colour_source(device));
        min = min.min(psnr_vs_reference(&format!("{prefix} f16 {name}"), img, &r, &format!("{prefix}_out_{name}")));
    }
    min
}

/// The f16-compute check shared by the CPU (flex) and wgpu f16 binaries, on f16-stored
/// conversions: (OSEDiff min PSNR, OSEDiff seconds, PiSA-SR min PSNR over default and two
/// adjustable pairs).
pub fn f16_min_psnrs(device: &Device) -> (f64, f64, f64) {
    let t = std::time::Instant::now();
    let (_t1, dir) = converted(Method::OseDiff, StoreDType::F16);
    let ose = f16_min_psnr(&load_model(&dir, device), device, Guidance::Default, "osediff");
    let t_ose = t.elapsed().as_secs_f64();
    let (_t2, dir) = converted(Method::PisaSr, StoreDType::F16);
    let model = load_model(&dir, device);
    let mut pisa = f16_min_psnr(&model, device, Guidance::Default, "pisa_default");
    for (lp, ls) in [(0.5f32, 1.0f32), (1.2, 1.5)] {
        let g = Guidance::Adjustable { lambda_pix: lp, lambda_sem: ls };
        pisa = pisa.min(f16_min_psnr(&model, device, g, &format!("pisa_adj_{lp:.1}_{ls:.1}")));
    }
    (ose, t_ose, pisa)
}

/// Prints the per-stage errors (latent, eps, z_hat, decoder alone) to show where f16 loses precision.
pub fn f16_stages(device: &Device) {
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

