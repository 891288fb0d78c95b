//! A whole image through OSEDiff / PiSA-SR: pre-process (PIL-exact), the one-step SR,
//! clamp, `x * 0.5 + 0.5`, colour fix against the pre-processed input, 8-bit, and a final
//! Lanczos resize when the pre-processing changed the geometry, so the result is exactly
//! `scale x` the input. (No tiling yet: the whole image is one tile.)

use burn::tensor::{Device, Tensor};
use image::RgbImage;

use super::Progress;
use super::colour_fix::{self, ColourFix};
use super::one_step::{Guidance, Latent, OneStepSr};
use super::preprocess::{PreprocessOptions, Preprocessed, preprocess, to_model_input, to_output_size, to_rgb8, to_unit_tensor};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SdOptions {
    pub preprocess: PreprocessOptions,
    pub colour_fix: ColourFix,
    pub latent: Latent,
    pub guidance: Guidance,
}

/// The restored image at the network's size, `[1, 3, H, W]` in [0, 1], colour-fixed.
pub fn restore(model: &OneStepSr, pre: &Preprocessed, opts: &SdOptions, device: &Device, progress: &mut dyn FnMut(Progress)) -> Tensor<4> {
    let stages = 4;
    let mut step = |stage, done| progress(Progress { stage, done, total: stages });
    let x = to_model_input(&pre.input, device);
    let z = model.encode(x, opts.latent);
    step("encode", 1);
    let z_h = model.z_hat(z, opts.guidance);
    step("unet", 2);
    let out = model.decode(z_h) * 0.5 + 0.5;
    step("decode", 3);
    let out = colour_fix::apply(opts.colour_fix, out, to_unit_tensor(&pre.input, device));
    step("colour fix", 4);
    out
}

/// `img` → exactly `scale x` its size.
pub fn upscale(
    model: &OneStepSr,
    device: &Device,
    img: &RgbImage,
    opts: &SdOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<RgbImage, burn::tensor::ExecutionError> {
    let pre = preprocess(img, opts.preprocess);
    let out = restore(model, &pre, opts, device, progress);
    let [_, _, h, w] = out.dims();
    let values = out.try_into_data()?.convert::<f32>().try_into_vec::<f32>().expect("float output");
    Ok(to_output_size(to_rgb8(&values, h, w), pre.out_size))
}
