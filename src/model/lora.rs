//! Low-rank branches kept unmerged at run time (peft semantics), for PiSA-SR: the pixel LoRA
//! is merged into the base weights by the converter, the semantic LoRA stays a rank-r branch
//! `out = base(x) + scale * B(A(x))` on each targeted Linear / Conv2d, so both UNet passes
//! (W_pix: branch off, W_sem: branch on) share one set of full weights.
//!
//! Every branch of a model shares one [`LoraSwitch`]. A module without a branch pays one
//! `Option` check per forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Tensor, module::{conv2d, linear}, ops::ConvOptions};

use crate::weights::{ParamStore, WeightsError};

/// Turns every branch of one model on or off (cheap to clone; clones share the state).
#[derive(Clone, Debug)]
pub struct LoraSwitch(Arc<AtomicBool>);

impl LoraSwitch {
    pub fn from_shared(flag: Arc<AtomicBool>) -> Self {
        Self(flag)
    }

    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `(rank, scale, switch)` for the branch of module `path`, if the store keeps branches and
/// holds `{path}.lora_A.weight`.
fn branch_spec(store: &ParamStore, path: &str) -> Option<(usize, f32, LoraSwitch)> {
    let (scale, flag) = store.lora_branches()?;
    let rank = *store.shape(&format!("{path}.lora_A.weight"))?.first()?;
    Some((rank, scale, LoraSwitch::from_shared(flag)))
}

/// A Linear's branch: A `[in, r]`, B `[r, out]` (transposed from torch's `[r, in]`, `[out, r]`).
pub struct LinearLora {
    pub a: Tensor<2>,
    pub b: Tensor<2>,
    pub scale: f32,
    pub switch: LoraSwitch,
}

impl LinearLora {
    pub fn load(store: &mut ParamStore, path: &str, d_in: usize, d_out: usize) -> Result<Option<Self>, WeightsError> {
        let Some((r, scale, switch)) = branch_spec(store, path) else { return Ok(None) };
        let a = store.take(&format!("{path}.lora_A.weight"), [r, d_in])?.transpose();
        let b = store.take(&format!("{path}.lora_B.weight"), [d_out, r])?.transpose();
        Ok(Some(Self { a, b, scale, switch }))
    }

    /// `scale * B(A(x))`, or `None` while switched off.
    pub fn delta<const D: usize>(&self, x: &Tensor<D>) -> Option<Tensor<D>> {
        self.switch.is_on().then(|| linear(linear(x.clone(), self.a.clone(), None), self.b.clone(), None) * self.scale)
    }
}

/// A Conv2d's branch: A is a conv with the base kernel, stride and padding `[r, in, k, k]`,
/// B a 1x1 conv `[out, r, 1, 1]`, neither with a bias.
pub struct ConvLora {
    pub a: Tensor<4>,
    pub b: Tensor<4>,
    pub scale: f32,
    pub switch: LoraSwitch,
    stride: usize,
    padding: usize,
}

impl ConvLora {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        store: &mut ParamStore,
        path: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Option<Self>, WeightsError> {
        let Some((r, scale, switch)) = branch_spec(store, path) else { return Ok(None) };
        let a = store.take(&format!("{path}.lora_A.weight"), [r, c_in, k, k])?;
        let b = store.take(&format!("{path}.lora_B.weight"), [c_out, r, 1, 1])?;
        Ok(Some(Self { a, b, scale, switch, stride, padding }))
    }

    pub fn delta(&self, x: &Tensor<4>) -> Option<Tensor<4>> {
        self.switch.is_on().then(|| {
            let h = conv2d(x.clone(), self.a.clone(), None, ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1));
            conv2d(h, self.b.clone(), None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)) * self.scale
        })
    }
}
