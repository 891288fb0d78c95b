//! Colour correction after decoding (StableSR's, used by OSEDiff and PiSA-SR), applied to the
//! float output in [0, 1] rather than to 8-bit images (the official scripts truncate to
//! uint8 before and after; floats are the more exact choice). `source` is the pre-processed
//! (bicubic-upscaled) input at the output size, `x / 255`.

use burn::tensor::{Tensor, TensorData, module::conv2d, ops::ConvOptions, ops::PadMode};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColourFix {
    /// Per-channel mean / std of the source (the official default).
    #[default]
    Adain,
    Wavelet,
    None,
}

impl std::str::FromStr for ColourFix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adain" => Ok(Self::Adain),
            "wavelet" => Ok(Self::Wavelet),
            "none" => Ok(Self::None),
            other => Err(format!("unknown colour fix {other:?} (adain, wavelet or none)")),
        }
    }
}

/// `target`, `source`: `[N, C, H, W]` in [0, 1] → the corrected image, clamped to [0, 1].
/// Runs in the target's dtype (the decoder's output is f32 whatever the model computes in).
pub fn apply(fix: ColourFix, target: Tensor<4>, source: Tensor<4>) -> Tensor<4> {
    let source = source.cast(burn::tensor::FloatDType::from(target.dtype()));
    match fix {
        ColourFix::Adain => adain(target, source),
        ColourFix::Wavelet => wavelet(target, source),
        ColourFix::None => target,
    }
}

/// Per-channel mean and `std = sqrt(var_unbiased + 1e-5)` over the whole image.
fn mean_std(x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let [n, c, h, w] = x.dims();
    let flat = x.reshape([n, c, h * w]);
    let (var, mean) = flat.var_mean(2);
    let std = (var + 1e-5).sqrt();
    (mean.reshape([n, c, 1, 1]), std.reshape([n, c, 1, 1]))
}

/// AdaIN: `(t - mean_t) / std_t * std_s + mean_s`, clamped to [0, 1].
pub fn adain(target: Tensor<4>, source: Tensor<4>) -> Tensor<4> {
    let t = mean_std(target.clone());
    adain_with(target, t, mean_std(source))
}

/// AdaIN with given per-channel `(mean, std)` (`[N, C, 1, 1]`) of the target and the source:
/// the statistics of a whole image when `target` is one band of it.
pub fn adain_with(target: Tensor<4>, (tm, ts): (Tensor<4>, Tensor<4>), (sm, ss): (Tensor<4>, Tensor<4>)) -> Tensor<4> {
    ((target - tm) / ts * ss + sm).clamp(0.0, 1.0)
}

/// One level: the 3x3 kernel [[1,2,1],[2,4,2],[1,2,1]]/16 as a depthwise convolution with
/// dilation `radius` on the replicate-padded image.
fn wavelet_blur(x: Tensor<4>, radius: usize) -> Tensor<4> {
    let c = x.dims()[1];
    let k = [0.0625f32, 0.125, 0.0625, 0.125, 0.25, 0.125, 0.0625, 0.125, 0.0625];
    let kernel: Vec<f32> = (0..c).flat_map(|_| k).collect();
    let kernel = Tensor::<4>::from_data(TensorData::new(kernel, [c, 1, 3, 3]), &x.device()).cast(burn::tensor::FloatDType::from(x.dtype()));
    let x = x.pad((radius, radius, radius, radius), PadMode::Edge);
    conv2d(x, kernel, None, ConvOptions::new([1, 1], [0, 0], [radius, radius], c))
}

/// 5 cascaded levels (dilation 1, 2, 4, 8, 16): `(high, low)`.
fn wavelet_decomposition(mut x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let mut high = x.zeros_like();
    for i in 0..5 {
        let low = wavelet_blur(x.clone(), 1 << i);
        high = high + (x - low.clone());
        x = low;
    }
    (high, x)
}

/// The target's high frequencies plus the source's final low band, clamped to [0, 1].
pub fn wavelet(target: Tensor<4>, source: Tensor<4>) -> Tensor<4> {
    let (high, _) = wavelet_decomposition(target);
    let (_, low) = wavelet_decomposition(source);
    (high + low).clamp(0.0, 1.0)
}
