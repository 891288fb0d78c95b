//! Merging peft LoRA adapters into base weights (OSEDiff, PiSA-SR).
//!
//! peft names: `{module}.lora_A.{adapter}.weight` (`[r, in]`, or `[r, in, kh, kw]` for a
//! conv, with the base conv's kernel) and `{module}.lora_B.{adapter}.weight` (`[out, r]`
//! or `[out, r, 1, 1]`); `{module}.base_layer.{weight,bias}` are the wrapped module's own
//! (possibly fine-tuned) parameters. The forward is `base(x) + (alpha / r) * B(A(x))`
//! summed over the active adapters, so merging is `W' = W + (alpha / r) * B @ A` with the
//! conv kernels flattened. The official code uses peft's default `lora_alpha = 8`.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::{Tensor, TensorData};

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
/// and copy every `base_layer` tensor over its base tensor. `rank` (from the checkpoint) is
/// checked against each adapter's A matrix. Adapters present but not active are ignored;
/// an active adapter with no tensors is an error.
pub fn merge_peft(
    store: &mut ParamStore,
    state: &BTreeMap<String, HostTensor>,
    active: &[&str],
    rank: usize,
    alpha: f32,
) -> Result<MergeReport, WeightsError> {
    let present = adapter_names(state);
    if let Some(missing) = active.iter().find(|a| !present.contains(**a)) {
        return Err(WeightsError::Convert(format!("LoRA adapter {missing} is not in the checkpoint (it has {present:?})")));
    }
    let mut report = MergeReport::default();
    let device = store.device().clone();

    // Fully fine-tuned parameters of wrapped modules (OSEDiff's / PiSA-SR's conv_in).
    for (key, t) in state {
        if let Some((module, param)) = key.split_once(".base_layer.") {
            let name = format!("{module}.{param}");
            store.replace(&name, &t.shape, t.values.clone())?;
            report.replaced += 1;
        }
    }

    let mut modules = BTreeSet::new();
    for (key, a) in state {
        let Some((module, 'A', adapter)) = parse_lora_key(key) else { continue };
        if !active.contains(&adapter) {
            continue;
        }
        let b_key = format!("{module}.lora_B.{adapter}.weight");
        let b = state.get(&b_key).ok_or_else(|| WeightsError::Convert(format!("{key} has no matching {b_key}")))?;
        let r = a.shape[0];
        let out = b.shape[0];
        let rest: usize = a.shape[1..].iter().product();
        if r != rank || b.shape.get(1) != Some(&r) || b.shape[2..].iter().any(|&d| d != 1) {
            return Err(WeightsError::Convert(format!(
                "{module} ({adapter}): A {:?} and B {:?} do not form a rank-{rank} LoRA",
                a.shape, b.shape
            )));
        }
        let name = format!("{module}.weight");
        let scale = alpha / r as f32;
        let a_t = Tensor::<2>::from_data(TensorData::new(a.values.clone(), [r, rest]), &device);
        let b_t = Tensor::<2>::from_data(TensorData::new(b.values.clone(), [out, r]), &device);
        let delta = (b_t.matmul(a_t) * scale).reshape([out * rest]);
        store.update(&name, |shape| {
            let base_rest: usize = shape[1..].iter().product();
            (shape[0] == out && base_rest == rest && shape[1..] == a.shape[1..]).then_some(())
                .ok_or_else(|| format!("LoRA {adapter} has A {:?} and B {:?}", a.shape, b.shape))
        }, |w| w + delta)?;
        modules.insert(module.to_string());
        report.merged += 1;
    }
    report.modules = modules.len();
    Ok(report)
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
