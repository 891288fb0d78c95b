//! The project's own CPU convolutions, for burn's CPU backend (flex) natively and in wasm.
//!
//! burn runs a 3x3 convolution as im2col + gemm: every input pixel is copied nine times before
//! the matrix product, and each layer converts from and to NCHW. Here the 3x3 stride-1
//! convolutions run by Winograd F(4x4, 3x3) ([`winograd`]) on a channels-last [`map::Map`] that
//! consecutive layers pass along, with bias and activation (and ESRGAN's scaled residual) fused
//! into the pass that writes each output, weights transformed once when a model is loaded, and
//! the matrix products by the `gemm` crate (the one burn's CPU backend uses; AVX-512 / AVX2 / NEON
//! / simd128 chosen at run time). Design and error bound: docs/cpu.md.
//!
//! The GAN models use it on the CPU ([`crate::model::rrdb`], [`crate::model::srvgg`]), and the
//! SD VAE's 3x3 convolutions band by band ([`band`], with each resnet's GroupNorm + SiLU fused
//! into the copy in); the SD UNet's 3x3 convolutions on maps of 32x32 and more, weights
//! transformed block by block on each call with the semantic LoRA merged ([`per_call`]),
//! and its other convolutions as one product over gathered patches ([`im2col`]); the SD
//! models' linear layers ([`linear`]) and GEGLU ([`geglu`]); and attention without a mask, a
//! block of query rows at a time, heads read in place ([`attention`]). Tensors are read from
//! burn's CPU storage in place ([`tensor::with_slice`]).
//! `ONESTEP_CPU_CONV=burn` turns it off (natively), for comparisons.

pub mod attention;
pub mod band;
pub mod geglu;
pub mod heap;
pub mod im2col;
pub mod linear;
pub mod map;
pub mod per_call;
pub mod tensor;
pub mod winograd;

use burn::tensor::Device;

/// Whether tensors on `device` take this path: burn's CPU backend, unless turned off.
pub fn enabled(device: &Device) -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var("ONESTEP_CPU_CONV").is_ok_and(|v| v == "burn") {
        return false;
    }
    *device == Device::flex()
}

/// Whether `x` takes this path's f32 kernels: an f32 tensor on burn's CPU backend ([`enabled`]).
pub fn takes<const D: usize>(x: &burn::tensor::Tensor<D>) -> bool {
    burn::tensor::FloatDType::from(x.dtype()) == burn::tensor::FloatDType::F32 && enabled(&x.device())
}

/// A pointer shared by threads that write disjoint parts of one buffer (each use says which).
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used for disjoint writes, as stated where it is made.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

impl SendPtr {
    /// (A method, so closures capture the wrapper and not the bare pointer field.)
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `n` values uniform in [-1, 1) from `seed` (xorshift): inputs for the tests and the
/// measurements (examples/cpu_conv.rs).
#[doc(hidden)]
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}
