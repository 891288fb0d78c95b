//! SD 2.1-base networks vs diffusers 0.42.1 / transformers 5.24 (tiny random-weight models
//! and reference outputs made by tests/fixtures/sd/generate.py; see its README), on burn's
//! CPU backend in f32. Every parity test names its tolerance: max |diff| ≤ 1e-4.
//! The full-size tests build nothing: they compare dry-run tensor listings.

mod common;

use std::collections::BTreeMap;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use onestep_sr::model::sd::{
    AutoencoderKL, AutoencoderKLConfig, ClipTextConfig, ClipTextModel, UNet2DConditionConfig, UNet2DConditionModel,
};
use onestep_sr::weights::ParamStore;
use onestep_sr::weights::diffusers::load_component;
use safetensors::{Dtype, SafeTensors};

const TOL: f32 = 1e-4;

struct Reference(Vec<u8>);

impl Reference {
    fn open() -> Self {
        Self(std::fs::read(fixture("sd/reference.safetensors")).expect("tests/fixtures/sd/reference.safetensors"))
    }

    fn get(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let v = st.tensor(name).unwrap_or_else(|e| panic!("reference {name}: {e}"));
        assert_eq!(v.dtype(), Dtype::F32, "{name}");
        let values = v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        (v.shape().to_vec(), values)
    }

    fn ids(&self, name: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let v = st.tensor(name).unwrap();
        assert_eq!(v.dtype(), Dtype::I64, "{name}");
        v.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.get(name);
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// Max |got - want|, after checking the shapes agree.
fn check<const D: usize>(what: &str, got: Tensor<D>, reference: &Reference, name: &str) -> f32 {
    let (shape, want) = reference.get(name);
    assert_eq!(got.dims().to_vec(), shape, "{what}: shape");
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("{what} vs {name}: max |diff| = {max:.3e} (max |ref| = {scale:.3})");
    assert!(max.is_finite() && max <= TOL, "{what}: max |diff| {max:e} > {TOL:e}");
    max
}

fn load_vae(device: &Device) -> AutoencoderKL {
    let (config, mut store) = load_component::<AutoencoderKLConfig>(&fixture("sd/vae"), device).unwrap();
    assert_eq!(config, AutoencoderKLConfig::tiny(), "tiny() preset = fixture config");
    let vae = AutoencoderKL::load(&mut store, &config).unwrap();
    store.finish().unwrap();
    vae
}

fn load_unet(device: &Device) -> UNet2DConditionModel {
    let (config, mut store) = load_component::<UNet2DConditionConfig>(&fixture("sd/unet"), device).unwrap();
    assert_eq!(config, UNet2DConditionConfig::tiny(), "tiny() preset = fixture config");
    let unet = UNet2DConditionModel::load(&mut store, &config).unwrap();
    store.finish().unwrap();
    unet
}

fn load_clip(device: &Device) -> ClipTextModel {
    let (config, mut store) = load_component::<ClipTextConfig>(&fixture("sd/text_encoder"), device).unwrap();
    assert_eq!(config, ClipTextConfig::tiny(), "tiny() preset = fixture config");
    let clip = ClipTextModel::load(&mut store, &config).unwrap();
    store.finish().unwrap();
    clip
}

#[test]
fn vae_encoder_tiny_matches_diffusers_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let vae = load_vae(&device);
    let x = r.tensor::<4>("input", &device);
    check("encode_moments", vae.encode_moments(x.clone()), &r, "vae_moments");
    check("encode_mean", vae.encode_mean(x), &r, "vae_latent_mean");
}

#[test]
fn vae_decoder_tiny_matches_diffusers_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let vae = load_vae(&device);
    check("decode", vae.decode(r.tensor::<4>("vae_latent_mean", &device)), &r, "vae_decoder_out");
}

#[test]
fn unet_tiny_eps_t999_matches_diffusers_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let unet = load_unet(&device);
    let eps = unet.forward(r.tensor::<4>("z", &device), 999.0, &r.tensor::<3>("text_emb_null", &device));
    check("unet t=999", eps, &r, "base_unet_eps_t999");
}

#[test]
fn unet_tiny_eps_t1_matches_diffusers_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let unet = load_unet(&device);
    let eps = unet.forward(r.tensor::<4>("z", &device), 1.0, &r.tensor::<3>("text_emb_null", &device));
    check("unet t=1", eps, &r, "base_unet_eps_t1");
}

#[test]
fn clip_tiny_text_embeddings_match_transformers_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let clip = load_clip(&device);
    let null = r.ids("text_ids_null");
    assert_eq!(&null[..3], &[49406, 49407, 0], "SD2 tokenizer: BOS, EOS, '!' padding");
    assert!(null[2..].iter().all(|&t| t == 0));
    check("clip(\"\")", clip.forward_ids(&null, &device), &r, "text_emb_null");
    let ids = Tensor::<2, Int>::from_data(TensorData::new(r.ids("text_ids_prompt"), [1, 77]), &device);
    check("clip(prompt)", clip.forward(ids), &r, "text_emb_prompt");
}

/// `sd21_base_keys.txt`: `component/name<TAB>d0,d1,...` per line.
fn reference_keys() -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
    let text = std::fs::read_to_string(fixture("sd/sd21_base_keys.txt")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, shape) = line.split_once('\t').unwrap();
        let (component, name) = name.split_once('/').unwrap();
        let shape = shape.split(',').map(|d| d.parse().unwrap()).collect();
        assert!(out.entry(component.into()).or_default().insert(name.into(), shape).is_none(), "duplicate {name}");
    }
    out
}

fn as_map(list: Vec<(String, Vec<usize>)>) -> BTreeMap<String, Vec<usize>> {
    let n = list.len();
    let map: BTreeMap<_, _> = list.into_iter().collect();
    assert_eq!(map.len(), n, "a model asks for a tensor twice");
    map
}

fn assert_same_keys(component: &str, model: &BTreeMap<String, Vec<usize>>, want: &BTreeMap<String, Vec<usize>>) {
    let missing: Vec<_> = want.keys().filter(|k| !model.contains_key(*k)).collect();
    let extra: Vec<_> = model.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong: Vec<_> = model.iter().filter(|(k, s)| want.get(*k).is_some_and(|w| w != *s)).collect();
    assert!(missing.is_empty() && extra.is_empty() && wrong.is_empty(),
        "{component}: not in the model {missing:?}; not in the checkpoint {extra:?}; shapes differ {wrong:?}");
}

fn numel(map: &BTreeMap<String, Vec<usize>>, filter: impl Fn(&str) -> bool) -> usize {
    map.iter().filter(|(k, _)| filter(k)).map(|(_, s)| s.iter().product::<usize>()).sum()
}

#[test]
fn sd21_base_tensor_names_and_shapes_match_checkpoint_listing_1to1() {
    let keys = reference_keys();
    assert_same_keys("unet", &as_map(UNet2DConditionConfig::sd21_base().tensor_shapes()), &keys["unet"]);
    assert_same_keys("vae", &as_map(AutoencoderKLConfig::sd21_base().tensor_shapes()), &keys["vae"]);
    assert_same_keys("text_encoder", &as_map(ClipTextConfig::sd21_base().tensor_shapes()), &keys["text_encoder"]);
    assert_eq!(keys.len(), 3);
}

#[test]
fn sd21_base_parameter_counts_match_diffusers() {
    let unet = as_map(UNet2DConditionConfig::sd21_base().tensor_shapes());
    assert_eq!(numel(&unet, |_| true), 865_910_724);
    let vae = as_map(AutoencoderKLConfig::sd21_base().tensor_shapes());
    assert_eq!(numel(&vae, |_| true), 83_653_863);
    assert_eq!(numel(&vae, |k| k.starts_with("encoder.") || k.starts_with("quant_conv.")), 34_163_664);
    assert_eq!(numel(&vae, |k| k.starts_with("decoder.") || k.starts_with("post_quant_conv.")), 49_490_199);
    let clip = as_map(ClipTextConfig::sd21_base().tensor_shapes());
    assert_eq!(numel(&clip, |k| !k.ends_with("position_ids")), 340_387_840);
}

#[test]
fn dry_run_store_allocates_placeholders_only() {
    let mut store = ParamStore::dry_run(&cpu());
    let t = store.take("x.weight", [1280, 1280, 3, 3]).unwrap();
    assert_eq!(t.dims(), [1, 1, 1, 1]);
    assert_eq!(store.requests(), &[("x.weight".to_string(), vec![1280, 1280, 3, 3])]);
}

// ---- LoRA (peft semantics) merged into the base weights, vs unmerged peft forwards ----

use onestep_sr::weights::lora::{PEFT_DEFAULT_ALPHA, check_targets, merge_peft};
use onestep_sr::weights::torch_pickle::TorchCheckpoint;

fn checkpoint(name: &str) -> TorchCheckpoint {
    TorchCheckpoint::from_bytes(std::fs::read(fixture(&format!("sd/{name}"))).unwrap()).unwrap()
}

/// The tiny UNet with the given adapters of `state_dict_unet` merged (and conv_in replaced).
fn lora_unet(ckpt: &TorchCheckpoint, adapters: &[&str], rank: usize, device: &Device) -> UNet2DConditionModel {
    let (config, mut store) = load_component::<UNet2DConditionConfig>(&fixture("sd/unet"), device).unwrap();
    let state = ckpt.tensor_dict("state_dict_unet").unwrap();
    let report = merge_peft(&mut store, &state, adapters, rank, PEFT_DEFAULT_ALPHA).unwrap();
    println!("merged {adapters:?}: {report:?}");
    assert_eq!(report.replaced, 2, "conv_in.base_layer weight + bias");
    let unet = UNet2DConditionModel::load(&mut store, &config).unwrap();
    store.finish().unwrap();
    unet
}

#[test]
fn torch_pickle_reads_official_checkpoint_layout() {
    let ose = checkpoint("osediff.pkl");
    assert_eq!((ose.int("rank_unet").unwrap(), ose.int("rank_vae").unwrap()), (4, 4));
    let vae_modules = ose.string_list("vae_lora_encoder_modules").unwrap();
    assert_eq!(vae_modules.len(), 65);
    assert_eq!(vae_modules.iter().filter(|m| *m == "quant_conv").count(), 10);
    assert_eq!(ose.tensor_dict("state_dict_unet").unwrap().len(), 366);
    let vae = ose.tensor_dict("state_dict_vae").unwrap();
    assert_eq!(vae.len(), 64);
    assert_eq!(check_targets(&vae, &vae_modules, "default_encoder").unwrap(), 32);
    let pisa = checkpoint("pisa_sr.pkl");
    assert_eq!((pisa.int("lora_rank_unet_pix").unwrap(), pisa.int("lora_rank_unet_sem").unwrap()), (4, 4));
    let state = pisa.tensor_dict("state_dict_unet").unwrap();
    assert_eq!(state.len(), 730);
    let mut n = 0;
    for part in ["encoder", "decoder", "others"] {
        for kind in ["pix", "sem"] {
            let modules = pisa.string_list(&format!("unet_lora_{part}_modules_{kind}")).unwrap();
            n += check_targets(&state, &modules, &format!("default_{part}_{kind}")).unwrap();
        }
    }
    assert_eq!(n, 2 * (64 + 102 + 16));
}

#[test]
fn osediff_vae_encoder_lora_tiny_matches_peft_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let ckpt = checkpoint("osediff.pkl");
    let (config, mut store) = load_component::<AutoencoderKLConfig>(&fixture("sd/vae"), &device).unwrap();
    let state = ckpt.tensor_dict("state_dict_vae").unwrap();
    let rank = ckpt.int("rank_vae").unwrap() as usize;
    let report = merge_peft(&mut store, &state, &["default_encoder"], rank, PEFT_DEFAULT_ALPHA).unwrap();
    assert_eq!((report.modules, report.merged, report.replaced), (32, 32, 0));
    let vae = AutoencoderKL::load(&mut store, &config).unwrap();
    store.finish().unwrap();
    let x = r.tensor::<4>("input", &device);
    check("osediff encode_moments", vae.encode_moments(x.clone()), &r, "osediff_vae_moments");
    let z = vae.encode_mean(x) * config.scaling_factor;
    check("osediff z", z, &r, "osediff_z");
}

#[test]
fn osediff_unet_lora_tiny_matches_peft_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let ckpt = checkpoint("osediff.pkl");
    let rank = ckpt.int("rank_unet").unwrap() as usize;
    let unet = lora_unet(&ckpt, &["default_encoder", "default_decoder", "default_others"], rank, &device);
    let (z, ctx) = (r.tensor::<4>("osediff_z", &device), r.tensor::<3>("text_emb_null", &device));
    check("osediff unet t=999", unet.forward(z.clone(), 999.0, &ctx), &r, "osediff_eps_t999");
    check("osediff unet t=1", unet.forward(z, 1.0, &ctx), &r, "osediff_eps_t1");
}

#[test]
fn pisa_sr_unet_pix_and_sem_lora_tiny_match_peft_1e4() {
    let (device, r) = (cpu(), Reference::open());
    let ckpt = checkpoint("pisa_sr.pkl");
    let rank = ckpt.int("lora_rank_unet_pix").unwrap() as usize;
    assert_eq!(rank, ckpt.int("lora_rank_unet_sem").unwrap() as usize);
    let (z, ctx) = (r.tensor::<4>("z", &device), r.tensor::<3>("text_emb_null", &device));
    let pix = ["default_encoder_pix", "default_decoder_pix", "default_others_pix"];
    let unet = lora_unet(&ckpt, &pix, rank, &device);
    check("pisa W_pix t=1", unet.forward(z.clone(), 1.0, &ctx), &r, "pisa_eps_pix_t1");
    check("pisa W_pix t=999", unet.forward(z.clone(), 999.0, &ctx), &r, "pisa_eps_pix_t999");
    let all = [pix.as_slice(), &["default_encoder_sem", "default_decoder_sem", "default_others_sem"]].concat();
    let unet = lora_unet(&ckpt, &all, rank, &device);
    check("pisa W_sem t=1", unet.forward(z, 1.0, &ctx), &r, "pisa_eps_sem_t1");
}

#[test]
fn lora_targets_follow_the_official_rule_and_pipeline_counts() {
    use onestep_sr::weights::lora::{lora_param_count, unet_lora_targets, vae_encoder_lora_targets};
    use std::collections::BTreeSet;
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();

    // Tiny models: the rule reproduces the module lists saved in the checkpoints.
    let ose = checkpoint("osediff.pkl");
    let tiny_unet = UNet2DConditionConfig::tiny().tensor_shapes();
    let parts = unet_lora_targets(tiny_unet.iter().map(|(n, _)| n.as_str()));
    for (got, key) in parts.iter().zip(["unet_lora_encoder_modules", "unet_lora_decoder_modules", "unet_lora_others_modules"]) {
        assert_eq!(set(got), set(&ose.string_list(key).unwrap()), "{key}");
    }
    let tiny_vae = AutoencoderKLConfig::tiny().tensor_shapes();
    let vae = vae_encoder_lora_targets(tiny_vae.iter().map(|(n, _)| n.as_str()));
    assert_eq!(set(&vae), set(&ose.string_list("vae_lora_encoder_modules").unwrap()));

    // Full size: pipeline.md's 258 UNet modules / 4,055,712 params and 32 VAE modules /
    // 369,356 params at r = 4.
    let full_unet = as_map(UNet2DConditionConfig::sd21_base().tensor_shapes());
    let parts = unet_lora_targets(full_unet.keys().map(String::as_str));
    assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [94, 148, 16]);
    let params: usize = parts.iter().flatten().map(|m| lora_param_count(&full_unet[&format!("{m}.weight")], 4)).sum();
    assert_eq!(params, 4_055_712);
    let full_vae = as_map(AutoencoderKLConfig::sd21_base().tensor_shapes());
    let vae = vae_encoder_lora_targets(full_vae.keys().map(String::as_str));
    assert_eq!(vae.len(), 32);
    let params: usize = vae.iter().map(|m| lora_param_count(&full_vae[&format!("{m}.weight")], 4)).sum();
    assert_eq!(params, 369_356);
}
