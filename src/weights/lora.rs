//! Merging peft LoRA adapters into base weights (OSEDiff, PiSA-SR).
//!
//! peft names: `{module}.lora_A.{adapter}.weight` (`[r, in]`, or `[r, in, kh, kw]` for a
//! conv, with the base conv's kernel) and `{module}.lora_B.{adapter}.weight` (`[out, r]`
//! or `[out, r, 1, 1]`); `{module}.base_layer.{weight,bias}` are the wrapped module's own
//! (possibly fine-tuned) parameters. The forward is `base(x) + (alpha / r) * B(A(x))`
//! summed over the active adapters, so merging is `W' = W + (alpha / r) * B @ A` with the
//! conv kernels flattened. The official code uses peft's default `lora_alpha = 8`.

use std::collections::{BTreeMap, BTreeSet};

use super::torch_pickle::HostTensor;
use super::{ParamStore, WeightsError};

/// peft's default `lora_alpha`; OSEDiff and PiSA-SR do not set it (rank 4 → scale 2).
pub const PEFT_DEFAULT_ALPHA: f32 = 8.0;

/// What [`merge_peft`] did.
#[derive(Debug, Default, PartialEq)]
pub struct MergeReport {
    /// Modules that received at least one adapter.
    pub modules: usize,
    /// (module, adapter) pairs merged.
    pub merged: usize,
    /// Base tensors replaced by `base_layer` values.
    pub replaced: usize,
}

/// The adapter names present in a peft state dict.
pub fn adapter_names(state: &BTreeMap<String, HostTensor>) -> BTreeSet<String> {
    state.keys().filter_map(|k| parse_lora_key(k).map(|(_, _, a)| a.to_string())).collect()
}

/// `{module}.lora_{A|B}.{adapter}.weight` → (module, 'A' | 'B', adapter).
fn parse_lora_key(key: &str) -> Option<(&str, char, &str)> {
    let rest = key.strip_suffix(".weight")?;
    let (module, ab_adapter) = rest.split_once(".lora_")?;
    let (ab, adapter) = ab_adapter.split_once('.')?;
    let ab = match ab {
        "A" => 'A',
        "B" => 'B',
        _ => return None,
    };
    Some((module, ab, adapter))
}

/// Merge the adapters named in `active` into `store` (base weights under diffusers names)
/// and copy every `base_layer` tensor over its base tensor, through [`HostMerges`] (the
/// converter's own per-tensor merge). `rank` (from the checkpoint) is checked against each
/// adapter's A matrix. Adapters present but not active are ignored; an active adapter with no
/// tensors is an error.
pub fn merge_peft(
    store: &mut ParamStore,
    state: &BTreeMap<String, HostTensor>,
    active: &[&str],
    rank: usize,
    alpha: f32,
) -> Result<MergeReport, WeightsError> {
    let mut merges = HostMerges::new(state, active, rank, alpha)?;
    for name in merges.targets() {
        let shape = store
            .shape(&name)
            .ok_or_else(|| WeightsError::Convert(format!("LoRA target {name} is not a weight of the base model")))?
            .to_vec();
        let mut values = store.take_values(&name, &shape)?;
        merges.apply(&name, &shape, &mut values)?;
        store.insert(&name, &shape, values);
    }
    merges.finish("the LoRA checkpoint")?;
    Ok(merges.report())
}

/// The official checkpoints also list each adapter's target modules: check that every
/// listed module (duplicates allowed, as in OSEDiff's VAE list) has that adapter's weights.
pub fn check_targets(state: &BTreeMap<String, HostTensor>, modules: &[String], adapter: &str) -> Result<usize, WeightsError> {
    let unique: BTreeSet<&String> = modules.iter().collect();
    for m in &unique {
        for ab in ["A", "B"] {
            let key = format!("{m}.lora_{ab}.{adapter}.weight");
            if !state.contains_key(&key) {
                return Err(WeightsError::Convert(format!("target module {m} of adapter {adapter} has no {key}")));
            }
        }
    }
    Ok(unique.len())
}

/// The official OSEDiff / PiSA-SR UNet LoRA targets, from the UNet's parameter names:
/// every weight (names with "bias" or "norm" skipped) containing one of these patterns,
/// split into the encoder (down blocks, conv_in), decoder (up blocks, conv_out) and
/// "others" (mid block) adapters.
pub const UNET_LORA_PATTERNS: [&str; 14] = [
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out", "proj_in",
    "proj_out", "ff.net.2", "ff.net.0.proj",
];

/// `[encoder, decoder, others]` module names (without `.weight`), in the given order.
pub fn unet_lora_targets<'a>(names: impl IntoIterator<Item = &'a str>) -> [Vec<String>; 3] {
    let mut out: [Vec<String>; 3] = Default::default();
    for n in names {
        if n.contains("bias") || n.contains("norm") || !UNET_LORA_PATTERNS.iter().any(|p| n.contains(p)) {
            continue;
        }
        let module = n.replace(".weight", "");
        let part = if n.contains("down_blocks") || n.contains("conv_in") {
            0
        } else if n.contains("up_blocks") || n.contains("conv_out") {
            1
        } else {
            2
        };
        out[part].push(module);
    }
    out
}

/// OSEDiff's VAE encoder LoRA targets: every encoder conv, the encoder's mid-block attention
/// projections and `quant_conv` (deduplicated; the official list repeats names).
pub fn vae_encoder_lora_targets<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    const PATTERNS: [&str; 10] = ["conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0"];
    let mut out = Vec::new();
    for n in names {
        if n.contains("bias") || n.contains("norm") {
            continue;
        }
        let encoder = n.contains("encoder") && PATTERNS.iter().any(|p| n.contains(p));
        let quant = n.contains("quant_conv") && !n.contains("post_quant_conv");
        let module = n.replace(".weight", "");
        if (encoder || quant) && !out.contains(&module) {
            out.push(module);
        }
    }
    out
}

/// Parameters of one rank-`r` LoRA on a weight of shape `[out, in]` or `[out, in, kh, kw]`:
/// A is `r x in x kh x kw`, B is `out x r`.
pub fn lora_param_count(weight_shape: &[usize], r: usize) -> usize {
    r * weight_shape[1..].iter().product::<usize>() + weight_shape[0] * r
}

/// [`merge_peft`] one tensor at a time, on the host, for converters that stream the base
/// weights (never the whole model in memory): `base_layer` values replace their tensors, and
/// each active adapter adds `(alpha / r) * B @ A` to its module's weight.
pub struct HostMerges {
    replace: BTreeMap<String, HostTensor>,
    /// module → (adapter, A, B), in the state dict's key order.
    adapters: BTreeMap<String, Vec<(String, HostTensor, HostTensor)>>,
    scale: f32,
    used: BTreeSet<String>,
}

impl HostMerges {
    pub fn new(state: &BTreeMap<String, HostTensor>, active: &[&str], rank: usize, alpha: f32) -> Result<Self, WeightsError> {
        let present = adapter_names(state);
        if let Some(missing) = active.iter().find(|a| !present.contains(**a)) {
            return Err(WeightsError::Convert(format!("LoRA adapter {missing} is not in the checkpoint (it has {present:?})")));
        }
        let mut replace = BTreeMap::new();
        let mut adapters: BTreeMap<String, Vec<(String, HostTensor, HostTensor)>> = BTreeMap::new();
        for (key, t) in state {
            if let Some((module, param)) = key.split_once(".base_layer.") {
                replace.insert(format!("{module}.{param}"), t.clone());
            }
        }
        for (key, a) in state {
            let Some((module, 'A', adapter)) = parse_lora_key(key) else { continue };
            if !active.contains(&adapter) {
                continue;
            }
            let b_key = format!("{module}.lora_B.{adapter}.weight");
            let b = state.get(&b_key).ok_or_else(|| WeightsError::Convert(format!("{key} has no matching {b_key}")))?;
            let r = a.shape[0];
            if r != rank || b.shape.get(1) != Some(&r) || b.shape[2..].iter().any(|&d| d != 1) {
                return Err(WeightsError::Convert(format!("{module} ({adapter}): A {:?} and B {:?} do not form a rank-{rank} LoRA", a.shape, b.shape)));
            }
            adapters.entry(module.to_string()).or_default().push((adapter.to_string(), a.clone(), b.clone()));
        }
        Ok(Self { replace, adapters, scale: alpha / rank as f32, used: BTreeSet::new() })
    }

    /// Apply every replacement and adapter that targets tensor `name` (`shape`) to `values`.
    pub fn apply(&mut self, name: &str, shape: &[usize], values: &mut Vec<f32>) -> Result<(), WeightsError> {
        if let Some(t) = self.replace.get(name) {
            if t.shape != shape {
                return Err(WeightsError::Shape { name: format!("{name} (base_layer)"), got: t.shape.clone(), want: shape.to_vec() });
            }
            values.clone_from(&t.values);
            self.used.insert(name.to_string());
        }
        let Some(module) = name.strip_suffix(".weight") else { return Ok(()) };
        let Some(list) = self.adapters.get(module) else { return Ok(()) };
        for (adapter, a, b) in list {
            let (r, out) = (a.shape[0], b.shape[0]);
            let rest: usize = a.shape[1..].iter().product();
            if shape.is_empty() || shape[0] != out || shape[1..] != a.shape[1..] {
                return Err(WeightsError::Convert(format!(
                    "tensor {name}: LoRA {adapter} has A {:?} and B {:?} for a {shape:?} weight",
                    a.shape, b.shape
                )));
            }
            for o in 0..out {
                let row = &mut values[o * rest..(o + 1) * rest];
                for (j, w) in row.iter_mut().enumerate() {
                    let d: f32 = (0..r).map(|k| b.values[o * r + k] * a.values[k * rest + j]).sum();
                    *w += d * self.scale;
                }
            }
        }
        self.used.insert(module.to_string());
        Ok(())
    }

    /// The tensors this touches: every replaced parameter and every adapted `{module}.weight`.
    pub fn targets(&self) -> Vec<String> {
        let mut t: BTreeSet<String> = self.replace.keys().cloned().collect();
        t.extend(self.adapters.keys().map(|m| format!("{m}.weight")));
        t.into_iter().collect()
    }

    pub fn report(&self) -> MergeReport {
        MergeReport { modules: self.adapters.len(), merged: self.adapters.values().map(Vec::len).sum(), replaced: self.replace.len() }
    }

    /// Every replacement and adapter must have found its tensor.
    pub fn finish(&self, what: &str) -> Result<(), WeightsError> {
        let lost = self.replace.keys().chain(self.adapters.keys()).find(|k| !self.used.contains(*k));
        match lost {
            Some(k) => Err(WeightsError::Convert(format!("{what}: LoRA target {k} is not a weight of the base model"))),
            None => Ok(()),
        }
    }
}
