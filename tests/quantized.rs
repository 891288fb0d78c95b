//! Format v2's block-quantized weights (q8 / q4): exact round trips through the writer, the
//! streaming loader and the device decoder (CPU and wgpu), the error the manifest records, the
//! manifest's checks of the new fields, and quantized real and diffusion weights against f16.

mod common;

use std::path::Path;

use burn::tensor::{Device, Tensor};
use common::sd::{Reference, colour_source, input, load_model};
use onestep_sr::model::sd::Method;
use onestep_sr::pipeline::colour_fix::{self, ColourFix};
use onestep_sr::pipeline::one_step::{Guidance, Latent, OneStepSr};
use onestep_sr::pipeline::preprocess::to_unit_tensor;
use onestep_sr::upscaler::{GanUpscaler, read_image};
use onestep_sr::weights::quant::{Mode, Plan, Quant};
use onestep_sr::weights::role::sd_role;
use onestep_sr::weights::sd_convert::{SdConvertOptions, StoreDType, convert_sd};
use onestep_sr::weights::writer::{ShardWriter, quantize_model};
use onestep_sr::weights::{self, DType, Manifest, ParamStore};

/// Uniform in [0, 1) (xorshift32; deterministic).
fn uniform(seed: &mut u32) -> f32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    (*seed >> 8) as f32 / (1 << 24) as f32
}

fn normal(seed: &mut u32) -> f32 {
    let (u, v) = (uniform(seed).max(1e-7), uniform(seed));
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// Student-t with 3 degrees of freedom: heavy tails, as trained weights have and Gaussian
/// draws do not (a block's largest value sets its scale).
fn student_t3(seed: &mut u32) -> f32 {
    let chi2: f32 = (0..3).map(|_| normal(seed).powi(2)).sum();
    normal(seed) / (chi2 / 3.0).sqrt()
}

/// Values that `q` stores exactly: in each block of each row, multiples of a power of two s
/// with one of ±qmax·s, so the block's scale is s.
fn representable(rows: usize, k: usize, q: Quant, seed: &mut u32) -> Vec<f32> {
    let qmax = if q.dtype == DType::Q8 { 127 } else { 7 };
    let mut out = Vec::with_capacity(rows * k);
    for _ in 0..rows {
        for b in 0..k.div_ceil(q.block as usize) {
            let s = 2f32.powi(-4 - (uniform(seed) * 8.0) as i32);
            let n = (q.block as usize).min(k - b * q.block as usize);
            for i in 0..n {
                let v = if i == 0 { qmax } else { (uniform(seed) * (2 * qmax + 1) as f32) as i32 - qmax };
                out.push(v as f32 * s * if i == 0 && uniform(seed) < 0.5 { -1.0 } else { 1.0 });
            }
        }
    }
    out
}

const Q8_32: Quant = Quant { dtype: DType::Q8, block: 32 };
const Q8_64: Quant = Quant { dtype: DType::Q8, block: 64 };
const Q4_32: Quant = Quant { dtype: DType::Q4, block: 32 };
const Q4_128: Quant = Quant { dtype: DType::Q4, block: 128 };

/// (name, shape, encoding): rows whose length is no multiple of the block (63, 33), q4 rows of
/// an odd length (half a byte of padding), and a tensor split across shards (`big`).
fn cases() -> Vec<(&'static str, Vec<usize>, Quant)> {
    vec![
        ("conv_q8", vec![6, 7, 3, 3], Q8_32),
        ("conv_q4", vec![6, 7, 3, 3], Q4_32),
        ("linear_q4", vec![5, 200], Q4_128),
        ("big", vec![40, 33], Q8_64),
    ]
}

/// A model of [`cases`] with representable values (plus an f16 tensor) in shards of 1 KiB.
fn write_exact(dir: &Path) -> (Manifest, Vec<(&'static str, Vec<usize>, Vec<f32>)>) {
    let mut w = ShardWriter::create(dir).unwrap().with_max_shard(1024);
    let mut seed = 7;
    let mut want = Vec::new();
    for (name, shape, q) in cases() {
        let values = representable(shape[0], shape[1..].iter().product(), q, &mut seed);
        let rel = w.add_quantized(name, &shape, &values, q).unwrap();
        assert_eq!(rel, 0.0, "{name}: representable values are stored exactly");
        want.push((name, shape, values));
    }
    w.add_f16("bias", &[6], &[0.5, -1.0, 2.0, 0.25, 3.0, -4.0]).unwrap();
    want.push(("bias", vec![6], vec![0.5, -1.0, 2.0, 0.25, 3.0, -4.0]));
    (w.finish("exact", "none", serde_json::Value::Null, serde_json::Value::Null).unwrap(), want)
}

fn flat(store: &mut ParamStore, name: &str, shape: &[usize]) -> Vec<f32> {
    store.take_values(name, shape).unwrap()
}

/// Loads the model of [`write_exact`] whole (the native path) and in row blocks of at most 100
/// bytes (the browser's path): every value comes back exactly.
fn exact_round_trip(device: &Device) {
    let dir = tempfile::tempdir().unwrap();
    let (m, want) = write_exact(dir.path());
    assert_eq!(m.format_version, 2);
    assert!(m.shards.iter().all(|s| s.bytes <= 1024));
    assert!(m.tensors.iter().filter(|t| t.name == "big").count() > 1, "big is split across shards");
    let manifest = weights::loader::read_manifest(dir.path()).unwrap();
    let (_, mut whole) = weights::load_dir(dir.path(), device, &mut |_| {}).unwrap();
    let mut blocks = ParamStore::new(device);
    for (i, s) in manifest.shards.iter().enumerate() {
        let bytes = std::fs::read(dir.path().join(&s.file)).unwrap();
        blocks.insert_shard_blocks(&manifest, i, 100, &mut |o, l| bytes[o as usize..(o + l) as usize].to_vec()).unwrap();
    }
    for (name, shape, values) in &want {
        assert_eq!(&flat(&mut whole, name, shape), values, "{name} (whole)");
        assert_eq!(&flat(&mut blocks, name, shape), values, "{name} (row blocks)");
    }
    whole.finish().unwrap();
    blocks.finish().unwrap();
}

#[test]
fn q8_and_q4_round_trip_exactly_on_the_cpu() {
    exact_round_trip(&common::cpu());
}

#[test]
fn q8_and_q4_round_trip_exactly_on_wgpu() {
    exact_round_trip(&common::gpu());
}

/// Gaussian and Student-t(3) weights: the error measured on what the device decoded equals
/// the `rel_rms` the manifest records, and is what 8 and 4 bits allow.
#[test]
fn the_recorded_error_is_the_decoded_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(dir.path()).unwrap();
    let mut seed = 11;
    let mut drawn = Vec::new();
    for (dist, draw) in [("gauss", normal as fn(&mut u32) -> f32), ("t3", student_t3)] {
        let values: Vec<f32> = (0..64 * 576).map(|_| 0.02 * draw(&mut seed)).collect();
        for (tag, q) in [("q8", Q8_64), ("q4", Q4_32)] {
            let name = format!("{dist}_{tag}");
            w.add_quantized(&name, &[64, 64, 3, 3], &values, q).unwrap();
            drawn.push((name, values.clone()));
        }
    }
    let m = w.finish("err", "none", serde_json::Value::Null, serde_json::Value::Null).unwrap();
    let (_, mut store) = weights::load_dir(dir.path(), &common::cpu(), &mut |_| {}).unwrap();
    for (name, values) in drawn {
        let got = flat(&mut store, &name, &[64, 64, 3, 3]);
        let err: f64 = got.iter().zip(&values).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let norm: f64 = values.iter().map(|v| f64::from(*v).powi(2)).sum();
        let rel = (err / norm).sqrt();
        let recorded = f64::from(m.tensors.iter().find(|t| t.name == name).unwrap().rel_rms.unwrap());
        println!("{name}: rel RMS {rel:.3e} (manifest {recorded:.3e})");
        assert!((rel - recorded).abs() <= 1e-4 * recorded, "{name}: decoded {rel:e}, recorded {recorded:e}");
        let bound = if name.ends_with("q8") { 0.012 } else { 0.15 };
        assert!(rel < bound, "{name}: rel RMS {rel:e} ≥ {bound}");
    }
}

/// The new fields are checked when the manifest is read, before any shard is opened.
#[test]
fn hostile_quantized_manifests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = write_exact(&dir.path().join("good"));
    let idx = |name: &str| good.tensors.iter().position(|t| t.name == name).unwrap();
    let (q8, q4, big1, bias) = (idx("conv_q8"), idx("conv_q4"), idx("big") + 1, idx("bias"));
    let cases: Vec<common::ManifestCase> = vec![
        ("block-48", Box::new(move |m| m["tensors"][q8]["block"] = 48.into()), "need a block"),
        ("no-block", Box::new(move |m| m["tensors"][q8].as_object_mut().unwrap().remove("block").map(drop).unwrap()), "need a block"),
        ("f16-block", Box::new(move |m| m["tensors"][bias]["block"] = 32.into()), "need a block"),
        ("1-d", Box::new(move |m| m["tensors"][q8]["shape"] = serde_json::json!([378])), "need a block"),
        ("empty-row", Box::new(move |m| m["tensors"][q8]["shape"] = serde_json::json!([6, 0])), "need a block"),
        ("q8-as-q4", Box::new(move |m| m["tensors"][q8]["dtype"] = "q4".into()), "has length"),
        ("q4-as-q8", Box::new(move |m| m["tensors"][q4]["dtype"] = "q8".into()), "has length"),
        ("wider", Box::new(move |m| m["tensors"][q8]["shape"] = serde_json::json!([6, 7, 3, 4])), "has length"),
        ("in-v1", Box::new(|m| m["format_version"] = 1.into()), "needs format version 2"),
        ("v3", Box::new(|m| m["format_version"] = 3.into()), "not supported"),
        ("part-block", Box::new(move |m| m["tensors"][big1]["block"] = 128.into()), "mismatched"),
        ("q16", Box::new(move |m| m["tensors"][q8]["dtype"] = "q16".into()), "unknown variant"),
    ];
    common::assert_manifests_refused(dir.path(), &good, cases);
}

/// Nothing quantized: still format v1, readable by older builds.
#[test]
fn float_models_are_still_written_as_v1() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(dir.path()).unwrap();
    w.add_f16("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(w.finish("v1", "none", serde_json::Value::Null, serde_json::Value::Null).unwrap().format_version, 1);
    let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    assert!(text.contains("\"format_version\": 1") && !text.contains("block") && !text.contains("rel_rms"), "{text}");
}

fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// Quantizes the converted f16 model `id` (models/) as q8 and q4 and upscales `photos` with
/// each on the CPU: (download bytes f16, q8, q4) and the lowest PSNR of q8 and q4 against f16.
fn gan_quality(id: &str, photos: &[&str]) -> ([u64; 3], f64, f64) {
    let device = common::cpu();
    let src = common::model_dir(id);
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = [weights::loader::read_manifest(&src).unwrap().total_bytes(), 0, 0];
    let load = |dir: &Path, what: &str| {
        let t = std::time::Instant::now();
        let up = GanUpscaler::load(dir, &device, &mut |_| {}).unwrap();
        println!("{id} {what}: loaded in {:.2} s", t.elapsed().as_secs_f64());
        up
    };
    let mut ups = vec![load(&src, "f16")];
    for (i, mode) in [Mode::Q8, Mode::Q4].into_iter().enumerate() {
        let out = tmp.path().join(mode.to_string());
        let m = quantize_model(&src, &out, Plan { mode, block: None }, None).unwrap();
        assert_eq!((m.format_version, m.model_id.clone()), (2, format!("{id}-{mode}")));
        bytes[i + 1] = m.total_bytes();
        ups.push(load(&out, &mode.to_string()));
    }
    let mut min = [f64::INFINITY; 2];
    for photo in photos {
        let img = read_image(&common::fixture(&format!("realesrgan/{photo}.png"))).unwrap();
        let outs: Vec<image::RgbImage> = ups.iter().map(|u| u.upscale(&img, u.default_tile_options(), &mut |_| {}).unwrap().0).collect();
        for (i, tag) in ["q8", "q4"].iter().enumerate() {
            let p = psnr_u8(outs[i + 1].as_raw(), outs[0].as_raw());
            println!("{id} {tag} vs f16, {photo}: PSNR {p:.2} dB");
            min[i] = min[i].min(p);
        }
    }
    println!("{id}: {} bytes f16, {} q8, {} q4", bytes[0], bytes[1], bytes[2]);
    (bytes, min[0], min[1])
}

/// The compact model (1.2 MB, real weights): q8 is close to f16, q4 recognisably the same.
#[test]
fn compact_model_q8_and_q4_against_f16() {
    let (bytes, q8, q4) = gan_quality("realesr-animevideov3-x4", &["astronaut_64", "anime_64x48"]);
    assert!(bytes[1] * 100 <= bytes[0] * 55 && bytes[2] * 100 <= bytes[0] * 33, "{bytes:?}");
    assert!(q8 >= 45.0, "q8: {q8:.2} dB");
    assert!(q4 >= 25.0, "q4: {q4:.2} dB");
}

/// Real-ESRGAN x4plus (33 MB, real weights) on the three photos: the targets. About
/// 40 s on 2 cores: `cargo test --release --test quantized -- --ignored --nocapture`.
#[test]
#[ignore]
fn x4plus_q8_is_half_the_download_within_45db() {
    let (bytes, q8, q4) = gan_quality("realesrgan-x4plus", &["astronaut_64", "chelsea_80x48", "coffee_rgba_40"]);
    println!("x4plus: q8 min {q8:.2} dB, q4 min {q4:.2} dB");
    assert!(bytes[1] <= 17_500_000, "{bytes:?}");
    assert!(q8 >= 45.0, "q8: {q8:.2} dB");
}

/// PSNR (peak 1) of `got` against `want`, and the relative RMS difference.
fn compare(got: Tensor<4>, want: Tensor<4>) -> (f64, f64) {
    let v = |t: Tensor<4>| t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let (g, w) = (v(got), v(want));
    let err: f64 = g.iter().zip(&w).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let norm: f64 = w.iter().map(|b| f64::from(*b).powi(2)).sum();
    (-10.0 * (err / g.len() as f64).log10(), (err / norm).sqrt())
}

/// The stages of PiSA-SR's default mode with `model` against `base` on the tiny fixture's
/// input: (rel RMS of z, of eps, PSNR of the output image), printed.
fn pisa_stages(what: &str, model: &OneStepSr, base: &OneStepSr, device: &Device) -> (f64, f64, f64) {
    let r = Reference::open();
    pisa_stages_on(what, model, base, input(&r, device), colour_source(device))
}

/// [`pisa_stages`] on the network input `x` (`[-1, 1]`) with `source` for the colour fix.
fn pisa_stages_on(what: &str, model: &OneStepSr, base: &OneStepSr, x: Tensor<4>, source: Tensor<4>) -> (f64, f64, f64) {
    let (z, z0) = (model.encode(x.clone(), Latent::Mean), base.encode(x, Latent::Mean));
    let (_, z_rel) = compare(z.clone(), z0.clone());
    // eps from the same latent: the UNet's own error.
    let (_, eps_rel) = compare(model.eps(z0.clone(), true), base.eps(z0.clone(), true));
    let img = |m: &OneStepSr, z: Tensor<4>| colour_fix::apply(ColourFix::Adain, m.decode(m.z_hat(z, Guidance::Default)) * 0.5 + 0.5, source.clone());
    let (psnr, _) = compare(img(model, z), img(base, z0));
    println!("{what}: z rel RMS {z_rel:.3e}, eps rel RMS {eps_rel:.3e}, image PSNR {psnr:.2} dB");
    (z_rel, eps_rel, psnr)
}

fn convert_pisa(out: &Path, quantize: Option<Plan>) -> Manifest {
    convert_sd(&SdConvertOptions {
        base: common::fixture("sd"),
        lora: common::fixture("sd/pisa_sr.pkl"),
        method: Some(Method::PisaSr),
        out: out.to_path_buf(),
        prompt: None,
        model_id: None,
        dtype: StoreDType::F16,
        quantize,
    })
    .unwrap()
}

/// Rewrite the f16 model in `src` with every UNet weight the rules quantize replaced by
/// Student-t(3) draws of the same RMS, once in f16 (`f16`) and once as `plan` (`quant`).
fn student_t_models(src: &Path, f16: &Path, quant: &Path, plan: Plan) {
    student_t_rewrite(src, f16, Some(quant), plan);
}

/// [`student_t_models`], the quantized copy only when `quant` is given.
fn student_t_rewrite(src: &Path, f16: &Path, quant: Option<&Path>, plan: Plan) {
    let cpu = common::cpu();
    let (m, mut store) = weights::load_dir(src, &cpu, &mut |_| {}).unwrap();
    let (mut a, mut b) = (ShardWriter::create(f16).unwrap(), quant.map(|q| ShardWriter::create(q).unwrap()));
    let mut seed = 5;
    let mut seen = std::collections::BTreeSet::new();
    for t in &m.tensors {
        if !seen.insert(t.name.clone()) {
            continue;
        }
        let shape: Vec<usize> = {
            let mut s = t.shape.clone();
            s[0] = m.tensors.iter().filter(|u| u.name == t.name).map(|u| u.shape[0]).sum();
            s
        };
        let mut values = store.take_values(&t.name, &shape).unwrap();
        let r = sd_role(&t.name, &shape);
        if t.name.starts_with("unet.") && plan.quant(r).is_some() {
            let rms = (values.iter().map(|v| v * v).sum::<f32>() / values.len() as f32).sqrt();
            // Student-t(3) has variance 3.
            values.iter_mut().for_each(|v| *v = rms / 3f32.sqrt() * student_t3(&mut seed));
        }
        a.add_f16(&t.name, &shape, &values).unwrap();
        match (b.as_mut(), plan.quant(r)) {
            (Some(b), Some(q)) => b.add_quantized(&t.name, &shape, &values, q).map(drop).unwrap(),
            (Some(b), None) => b.add_f16(&t.name, &shape, &values).unwrap(),
            (None, _) => {}
        }
    }
    a.finish(&m.model_id, &m.architecture, m.config.clone(), m.source.clone()).unwrap();
    if let Some(mut b) = b {
        b.finish(&m.model_id, &m.architecture, m.config.clone(), m.source.clone()).unwrap();
    }
}

/// Tiny PiSA-SR (random weights of SD 2.1's structure) quantized by the converter, and the
/// same with heavy-tailed Student-t(3) UNet weights, against its f16 conversion per stage.
#[test]
fn tiny_pisa_sr_quantized_per_stage() {
    let device = common::cpu();
    let tmp = tempfile::tempdir().unwrap();
    let f16 = tmp.path().join("f16");
    let f16_manifest = convert_pisa(&f16, None);
    let base = load_model(&f16, &device);
    let mut results = Vec::new();
    for mode in [Mode::Q8, Mode::Mixed, Mode::Q4] {
        let plan = Plan { mode, block: None };
        let dir = tmp.path().join(mode.to_string());
        let m = convert_pisa(&dir, Some(plan));
        let count = |d: DType| m.tensors.iter().filter(|t| t.dtype == d).count();
        println!("{mode}: {} q8 and {} q4 tensors, {} bytes (f16 {})", count(DType::Q8), count(DType::Q4), m.total_bytes(), f16_manifest.total_bytes());
        assert!(m.tensors.iter().all(|t| !t.dtype.is_quantized() || t.name.starts_with("unet.") || mode == Mode::Q8), "{mode}: the VAE is kept");
        assert!(m.tensors.iter().all(|t| !t.name.contains(".lora_") || !t.dtype.is_quantized()), "the LoRA branch is kept");
        let (z, eps, psnr) = pisa_stages(&format!("pisa {mode}"), &load_model(&dir, &device), &base, &device);
        if mode != Mode::Q8 {
            assert_eq!(z, 0.0, "{mode}: the VAE encoder is f16 as in the base");
        }
        results.push((format!("{mode}"), eps, psnr));
        let (tf, tq) = (tmp.path().join(format!("t-f16-{mode}")), tmp.path().join(format!("t-{mode}")));
        student_t_models(&f16, &tf, &tq, plan);
        let (_, eps, psnr) = pisa_stages(&format!("pisa {mode}, Student-t(3) UNet"), &load_model(&tq, &device), &load_model(&tf, &device), &device);
        results.push((format!("{mode} Student-t"), eps, psnr));
    }
    // Regression bounds, about 20 % (eps) and 2 dB (image) from what was measured: random
    // weights make a tiny network chaotic, so these are no quality claims (docs/weights-format.md).
    let bounds = [(0.025, 33.5), (0.065, 30.5), (0.025, 39.5), (0.065, 32.5), (0.35, 17.0), (0.8, 14.5)];
    for ((what, eps, psnr), (eps_max, psnr_min)) in results.into_iter().zip(bounds) {
        assert!(eps < eps_max && psnr >= psnr_min, "{what}: eps rel {eps:e} (bound {eps_max}), {psnr:.2} dB (bound {psnr_min})");
    }
}

/// The full-size PiSA-SR (SD 2.1-base layout, **random weights**: the f16 model that
/// scripts/bench-pisa-sr-fullsize.sh converts, `$ONESTEP_FULLSIZE_MODEL`, by default
/// `$ONESTEP_CACHE/bench-sd/model`) quantized q8, mixed and q4, and the same with the UNet's
/// weights redrawn from Student-t(3), against f16 per stage on `$ONESTEP_FULLSIZE_DEVICE`
/// (`cpu`, the default, or `wgpu`: lavapipe here). Input: a 96x64 crop of the sample photo as
/// the network input (a 12x8 latent), 48x32 on `wgpu` (a q8 + q4 run at 96x64 had not finished
/// its first model pair on lavapipe after 51 minutes). Heavy (about 11 GB of scratch under `$ONESTEP_CACHE`):
/// `cargo test --release --test quantized full_size -- --ignored --nocapture`
/// (`ONESTEP_FULLSIZE_MODES=q8` for fewer modes). Results: docs/weights-format.md.
#[test]
#[ignore]
fn full_size_pisa_sr_quantized_per_stage() {
    let cache = std::env::var_os("ONESTEP_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/onestep-sr"));
    let f16 = std::env::var_os("ONESTEP_FULLSIZE_MODEL").map_or_else(|| cache.join("bench-sd/model"), std::path::PathBuf::from);
    assert!(f16.join("manifest.json").exists(), "{}: run scripts/bench-pisa-sr-fullsize.sh first", f16.display());
    let wgpu = std::env::var("ONESTEP_FULLSIZE_DEVICE").as_deref() == Ok("wgpu");
    let device = if wgpu { common::gpu() } else { common::cpu() };
    // ONESTEP_FULLSIZE_MODES=q8,q4: fewer modes (lavapipe takes minutes per pass).
    let modes: Vec<Mode> = std::env::var("ONESTEP_FULLSIZE_MODES")
        .unwrap_or_else(|_| "q8,mixed,q4".into())
        .split(',')
        .map(|m| *[Mode::Q8, Mode::Mixed, Mode::Q4].iter().find(|k| k.to_string() == m.trim()).expect("q8, mixed or q4"))
        .collect();
    let work = cache.join("quant-fullsize");
    let made = |dir: &Path| dir.join("manifest.json").exists();
    // The quantized and Student-t models are made once and kept: later runs (the other device)
    // reuse them.
    let t_f16 = work.join("t3-f16");
    if !made(&t_f16) {
        student_t_rewrite(&f16, &t_f16, None, Plan { mode: Mode::Q8, block: None });
    }
    let img = image::open(common::root().join("assets/chelsea_160x120.png")).unwrap().to_rgb8();
    // lavapipe runs the full-size models at well under 1 GFLOP/s on these CPUs: a quarter of
    // the pixels there (the per-stage errors are relative, so the crop's size matters little).
    let (cw, ch) = if wgpu { (48, 32) } else { (96, 64) };
    let photo = to_unit_tensor(&image::imageops::crop_imm(&img, 40, 24, cw, ch).to_image(), &device);
    let x = photo.clone() * 2.0 - 1.0;
    let f16_bytes = weights::loader::read_manifest(&f16).unwrap().total_bytes();
    for (dist, src) in [("Gaussian", &f16), ("Student-t(3) UNet", &t_f16)] {
        let base = load_model(src, &device);
        for mode in modes.iter().copied() {
            let dir = work.join(format!("{}-{mode}", if src == &f16 { "gauss" } else { "t3" }));
            if !made(&dir) {
                quantize_model(src, &dir, Plan { mode, block: None }, None).unwrap();
            }
            let bytes = weights::loader::read_manifest(&dir).unwrap().total_bytes();
            let what = format!("full-size PiSA-SR {mode}, {dist} weights ({bytes} bytes, f16 {f16_bytes})");
            let (z, eps, psnr) = pisa_stages_on(&what, &load_model(&dir, &device), &base, x.clone(), photo.clone());
            // Loose sanity bounds only (random weights): the numbers are the result. (q4 on
            // lavapipe's 48x32 crop measured eps 1.10, over this bound: docs/weights-format.md.)
            assert!(z.is_finite() && eps.is_finite() && psnr.is_finite(), "{what}");
            assert!(eps < if mode == Mode::Q4 { 1.0 } else { 0.2 }, "{what}: eps rel RMS {eps:e}");
        }
    }
}

/// The official LoRA target patterns (OSEDiff / PiSA-SR `initialize_unet`; first match wins).
const UNET_GREP: [&str; 14] = [
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out", "proj_in",
    "proj_out", "ff.net.2", "ff.net.0.proj",
];

/// The full-size PiSA-SR model's tensors as `onestep convert sd` writes them, from the
/// architecture alone: the UNet, its semantic LoRA (rank 4 on every weight the official rule
/// targets), the VAE and the prompt embedding.
fn full_size_pisa_sr_tensors() -> Vec<(String, Vec<usize>)> {
    let cfg = onestep_sr::model::sd::OneStepConfig::pisa_sr_sd21();
    let rank = cfg.sem_lora.unwrap().rank;
    let unet = cfg.unet.tensor_shapes();
    let mut lora = Vec::new();
    for (name, shape) in &unet {
        let Some(module) = name.strip_suffix(".weight") else { continue };
        if module.contains("norm") || shape.len() < 2 || !UNET_GREP.iter().any(|p| module.contains(p)) {
            continue;
        }
        let (mut a, mut b) = (shape.clone(), vec![shape[0], rank]);
        a[0] = rank;
        b.extend(std::iter::repeat_n(1, shape.len() - 2));
        lora.push((format!("unet.{module}.lora_A.weight"), a));
        lora.push((format!("unet.{module}.lora_B.weight"), b));
    }
    lora.sort();
    let mut all: Vec<(String, Vec<usize>)> = unet.into_iter().map(|(n, s)| (format!("unet.{n}"), s)).collect();
    all.extend(lora);
    all.extend(cfg.vae.tensor_shapes().into_iter().map(|(n, s)| (format!("vae.{n}"), s)));
    all.push(("text_embedding".into(), vec![1, 77, cfg.unet.cross_attention_dim]));
    all
}

/// Shard bytes of those tensors stored as `plan` says (f16 without one): each tensor's length
/// from the manifest rules, padded to the 64-byte alignment (the writer's shard ends differ by
/// less than 64 bytes a shard). No weights are written.
fn full_size_bytes(plan: Option<Plan>) -> u64 {
    full_size_pisa_sr_tensors()
        .iter()
        .map(|(name, shape)| {
            let (dtype, block) = match plan.and_then(|p| p.quant(sd_role(name, shape))) {
                Some(q) => (q.dtype, Some(q.block)),
                None => (DType::F16, None),
            };
            dtype.byte_len(shape, block).unwrap().next_multiple_of(64)
        })
        .sum()
}

/// Full-size PiSA-SR (SD 2.1-base): the f16 total matches the 1.907 GB that converting random
/// weights of this layout wrote (BENCHMARKS.md), mixed q8 ≤ 1.1 GB, q4 UNet ≤ 0.7 GB.
#[test]
fn full_size_pisa_sr_sizes_from_the_tensor_list() {
    let f16 = full_size_bytes(None);
    let sizes: Vec<(Mode, u64)> =
        [Mode::Q8, Mode::Mixed, Mode::Q4].into_iter().map(|mode| (mode, full_size_bytes(Some(Plan { mode, block: None })))).collect();
    println!("full-size PiSA-SR: f16 {f16} bytes; {sizes:?}");
    assert!(f16.abs_diff(1_907_000_000) < 1_000_000, "f16 {f16}");
    let size = |m: Mode| sizes.iter().find(|s| s.0 == m).unwrap().1;
    assert!(size(Mode::Mixed) <= 1_100_000_000, "mixed {}", size(Mode::Mixed));
    assert!(size(Mode::Q4) <= 700_000_000, "q4 {}", size(Mode::Q4));
}
