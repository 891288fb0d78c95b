//! What a tensor is to the quantization rules ([`Role`]), by each converter's rule: a GAN's
//! by its position, OSEDiff's / PiSA-SR's by name. The converters and the re-quantizer
//! ([`super::writer::quantize_model`]) both ask here.

/// What a tensor is to the quantization rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Kept in float: a network's first and last convolution, norms, biases, LoRA branches,
    /// the prompt embedding (the layers where an error is not spread over many weights).
    Keep,
    /// A convolution or linear of the VAE.
    Vae,
    /// A layer that reads the prompt embedding (the UNet's cross-attention keys and values).
    Text,
    /// Any other convolution or linear: Real-ESRGAN's body, the UNet.
    Main,
}

/// Real-ESRGAN's rule: the network's `first` and `last` weights and every tensor under 2
/// dimensions (biases, PReLU slopes) kept, every other weight [`Role::Main`].
pub fn gan_role(name: &str, shape: &[usize], first: &str, last: &str) -> Role {
    if shape.len() < 2 || name == first || name == last { Role::Keep } else { Role::Main }
}

/// How the quantization rules see the tensor `name` (with its `unet.` / `vae.` prefix): the
/// UNet's and the VAE's first and last convolutions, the VAE's latent projections, norms,
/// biases, the semantic LoRA and the prompt embedding are kept.
pub fn sd_role(name: &str, shape: &[usize]) -> Role {
    const KEEP: [&str; 6] = [
        "unet.conv_in.weight",
        "unet.conv_out.weight",
        "vae.encoder.conv_in.weight",
        "vae.decoder.conv_out.weight",
        "vae.quant_conv.weight",
        "vae.post_quant_conv.weight",
    ];
    if shape.len() < 2 || KEEP.contains(&name) || name.contains(".lora_A.") || name.contains(".lora_B.") {
        Role::Keep
    } else if name.starts_with("vae.") {
        Role::Vae
    } else if name.starts_with("unet.") && (name.ends_with(".attn2.to_k.weight") || name.ends_with(".attn2.to_v.weight")) {
        Role::Text
    } else if name.starts_with("unet.") {
        Role::Main
    } else {
        Role::Keep
    }
}
