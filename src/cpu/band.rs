//! The SD VAE's 3x3 convolutions on the CPU. [`crate::tiling::vae`] holds an image as
//! horizontal bands of NCHW tensors and convolves each band with one halo row above and below;
//! here such a band goes into a [`Map`] (zero columns left and right are the padding), through
//! [`Winograd3x3`], and back to NCHW. A resnet's GroupNorm + SiLU before its convolution is
//! fused into that copy ([`NormSilu`]): the activation is never written as its own tensor.

use super::map::Map;
use super::per_call::PerCall;
use super::winograd::{Act, Winograd3x3};

/// A GroupNorm with its statistics folded into one scale and shift per channel, then SiLU:
/// `silu(x * scale + shift)`.
#[derive(Clone)]
pub struct NormSilu {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl NormSilu {
    /// `mean`, `var`: per group (biased variance); `weight`, `bias`: the norm's, per channel.
    pub fn new(mean: &[f32], var: &[f32], eps: f64, weight: &[f32], bias: &[f32]) -> Self {
        let (c, g) = (weight.len(), mean.len());
        assert!(g > 0 && c % g == 0 && var.len() == g && bias.len() == c, "GroupNorm shapes");
        let per = c / g;
        let scale: Vec<f32> = (0..c).map(|k| (f64::from(weight[k]) / (f64::from(var[k / per]) + eps).sqrt()) as f32).collect();
        let shift = (0..c).map(|k| (f64::from(bias[k]) - f64::from(mean[k / per]) * f64::from(scale[k])) as f32).collect();
        Self { scale, shift }
    }

    /// `silu(x * scale + shift)` of one image's NCHW values (`hw` pixels a channel), as a new
    /// buffer: the input of a convolution that does not fuse it into its own copy.
    pub fn apply_nchw(&self, x: &[f32], hw: usize) -> Vec<f32> {
        assert_eq!(x.len(), self.scale.len() * hw, "one scale per channel");
        let mut out = vec![0.0f32; x.len()];
        for ((o, x), (&a, &b)) in out.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(self.scale.iter().zip(&self.shift)) {
            let mut oc = o.chunks_exact_mut(LANES);
            let mut xc = x.chunks_exact(LANES);
            for (o, x) in (&mut oc).zip(&mut xc) {
                o.copy_from_slice(&silu(std::array::from_fn(|l| x[l] * a + b)));
            }
            for (o, x) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
                let t = x * a + b;
                *o = t / (1.0 + (-t).exp());
            }
        }
        out
    }
}

/// The GroupNorm + SiLU a fused convolution applies to its input.
#[derive(Clone, Copy)]
pub enum Pre<'a> {
    /// Made from statistics computed elsewhere (a band's: the whole image's).
    Given(&'a NormSilu),
    /// Made from each image's own NCHW values as the convolution reads them.
    Of(&'a dyn Fn(&[f32]) -> NormSilu),
}

impl<'a> Pre<'a> {
    /// The norm to apply to one image's NCHW values `img`.
    pub fn for_image(self, img: &[f32]) -> std::borrow::Cow<'a, NormSilu> {
        match self {
            Pre::Given(p) => std::borrow::Cow::Borrowed(p),
            Pre::Of(norm) => std::borrow::Cow::Owned(norm(img)),
        }
    }
}

/// Per-group mean and biased variance of one image's NCHW `values` (`groups` runs of
/// contiguous channels), in f64 and two passes (mean, then squared deviations): read from the
/// values the convolution reads anyway instead of through burn's `var_mean_bias` and its
/// temporaries. [`crate::tiling::vae::band_stats`] sums bands the same way.
pub fn group_stats(values: &[f32], groups: usize) -> (Vec<f32>, Vec<f32>) {
    let per = (values.len() / groups.max(1)) as f64;
    let mean: Vec<f64> = group_sums(values, groups, |_, v| f64::from(v)).iter().map(|s| s / per).collect();
    let var = group_sums(values, groups, |g, v| (f64::from(v) - mean[g]).powi(2));
    (mean.iter().map(|&m| m as f32).collect(), var.iter().map(|&s| (s / per) as f32).collect())
}

/// `Σ f(group, value)` over each of `groups` equal runs of `values`, in f64 with eight partial
/// sums (vectorisable, and closer to pairwise summation than one); groups in parallel natively.
pub fn group_sums(values: &[f32], groups: usize, f: impl Fn(usize, f32) -> f64 + Sync) -> Vec<f64> {
    assert!(groups > 0 && values.len() % groups == 0, "GroupNorm shapes");
    let per = values.len() / groups;
    let one = |g: usize| {
        let mut acc = [0.0f64; LANES];
        let mut chunks = values[g * per..][..per].chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(g, v);
            }
        }
        acc.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| f(g, v)).sum::<f64>()
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..groups).into_par_iter().map(one).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..groups).map(one).collect()
}

/// Which rows of the input are the convolution's padding.
#[derive(Clone, Copy, Debug)]
pub enum Rows {
    /// A whole image: zero rows above and below are the padding; the output has its rows.
    Whole,
    /// A band with one halo row above and one below its own rows: the output has two rows
    /// fewer. A halo row that is the image's own padding (`pad_top`, `pad_bottom`: the band is
    /// the first or last) holds zeros and stays zero, whatever `pre` would make of it.
    Band { pad_top: bool, pad_bottom: bool },
}

/// A 3x3 stride-1 convolution [`conv3x3`] runs: weights kept transformed (the VAE's, the
/// GANs'), or transformed block by block per call (the SD UNet's).
#[derive(Clone, Copy)]
pub enum Conv3x3<'a> {
    Kept(&'a Winograd3x3),
    PerCall(&'a PerCall<'a>),
}

impl Conv3x3<'_> {
    pub fn c_in(&self) -> usize {
        match self {
            Self::Kept(w) => w.c_in,
            Self::PerCall(p) => p.c_in,
        }
    }

    pub fn c_out(&self) -> usize {
        match self {
            Self::Kept(w) => w.c_out,
            Self::PerCall(p) => p.c_out,
        }
    }

    fn forward(&self, src: &Map, dst: &mut Map) {
        match self {
            Self::Kept(w) => w.forward(src, 0, dst, 0, Act::Identity, None),
            Self::PerCall(p) => p.forward(src, dst),
        }
    }
}

/// The 3x3 convolution (stride 1, zero columns left and right) of `x` (`[c_in, h, w]` NCHW
/// values), rows as `rows` says, after `pre` if given: `[c_out, h_out, w]` NCHW values
/// appended to `out`.
pub fn conv3x3(conv: Conv3x3, x: &[f32], h: usize, w: usize, pre: Option<&NormSilu>, rows: Rows, out: &mut Vec<f32>) {
    let c = conv.c_in();
    assert!(x.len() == c * h * w, "input shape");
    let (mut map, filled) = match rows {
        Rows::Whole => (Map::zeros(h, w, c, 1, 1), 0..h),
        Rows::Band { pad_top, pad_bottom } => {
            assert!(h >= 3, "a band with its halo rows");
            (Map::zeros(h, w, c, 0, 1), usize::from(pad_top)..h - usize::from(pad_bottom))
        }
    };
    match pre {
        Some(p) => {
            assert_eq!(p.scale.len(), c, "one scale per input channel");
            fill(&mut map, x, filled, |j, v| silu(mul_add(v, load(&p.scale, j), load(&p.shift, j))), |k, v| {
                let t = v * p.scale[k] + p.shift[k];
                t / (1.0 + (-t).exp())
            });
        }
        None => fill(&mut map, x, filled, |_, v| v, |_, v| v),
    }
    let h_out = super::map::conv_out(map.h, map.by);
    let mut y = Map::zeros(h_out, w, conv.c_out(), 0, 0);
    conv.forward(&map, &mut y);
    let at = out.len();
    out.resize(at + conv.c_out() * h_out * w, 0.0);
    y.write_nchw(0, conv.c_out(), &mut out[at..]);
}

/// Rows `rows` of NCHW `x` into `map` (channels last), each value through `f` (8 channels at a
/// time, `f(c0, values)`; `f1(k, value)` for the channels left over). Eight channel planes are
/// read as eight sequential streams and each pixel's eight values written together.
fn fill(map: &mut Map, x: &[f32], rows: std::ops::Range<usize>, f: impl Fn(usize, [f32; LANES]) -> [f32; LANES], f1: impl Fn(usize, f32) -> f32) {
    let (c, h, w) = (map.c, map.h, map.w);
    for y in rows {
        let mut k = 0;
        while k + LANES <= c {
            let planes: [&[f32]; LANES] = std::array::from_fn(|l| &x[((k + l) * h + y) * w..][..w]);
            for px in 0..w {
                let at = map.at(y, px) + k;
                let v = f(k, std::array::from_fn(|l| planes[l][px]));
                map.data[at..at + LANES].copy_from_slice(&v);
            }
            k += LANES;
        }
        for k in k..c {
            for px in 0..w {
                let at = map.at(y, px) + k;
                map.data[at] = f1(k, x[(k * h + y) * w + px]);
            }
        }
    }
}

const LANES: usize = 8;

#[inline(always)]
fn load(x: &[f32], j: usize) -> [f32; LANES] {
    let mut v = [0.0; LANES];
    v.copy_from_slice(&x[j..j + LANES]);
    v
}

#[inline(always)]
fn mul_add(v: [f32; LANES], a: [f32; LANES], b: [f32; LANES]) -> [f32; LANES] {
    std::array::from_fn(|l| v[l] * a[l] + b[l])
}

/// `x / (1 + e^-x)` with [`exp`]: lane-wise, so it vectorises.
#[inline(always)]
fn silu(x: [f32; LANES]) -> [f32; LANES] {
    let e = exp(x.map(|v| -v));
    std::array::from_fn(|l| x[l] / (1.0 + e[l]))
}

/// `e^x` for each lane, written for the auto-vectoriser (the standard library's `exp` is a call
/// per value): `2^n · e^g` with `n = round(x log2 e)` found by the 1.5·2^23 rounding trick,
/// `g = x - n ln 2`, `|g| ≤ ln2 / 2`, and `e^g` by its Taylor series to degree 7 (truncation
/// below 1e-8, relative, before f32 rounding). Inputs are clamped to [-87, 88], inside f32's normal range.
#[inline(always)]
pub fn exp<const L: usize>(x: [f32; L]) -> [f32; L] {
    const ROUND: f32 = 12_582_912.0;
    std::array::from_fn(|l| {
        let x = x[l].clamp(-87.0, 88.0);
        let r = x * std::f32::consts::LOG2_E + ROUND;
        let n = r - ROUND;
        // g = x - n ln 2 with ln 2 split in two (Cody and Waite): n · 0.693359375 is exact, so
        // g keeps f32 precision even where x is large.
        let g = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
        let p = 1.0 + g * (1.0 + g * (0.5 + g * (1.0 / 6.0 + g * (1.0 / 24.0 + g * (1.0 / 120.0 + g * (1.0 / 720.0 + g * (1.0 / 5040.0)))))));
        // 2^n from r's own bits: r's low mantissa bits hold n (its exponent is fixed by ROUND),
        // integer lane arithmetic only (`n as i32` would be a saturating conversion per lane).
        p * f32::from_bits(r.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::noise;
    use crate::cpu::winograd::direct_reference;

    #[test]
    fn exp_is_within_a_few_ulps() {
        let mut worst = 0.0f64;
        for i in -8700..=8800 {
            let xs: [f32; LANES] = std::array::from_fn(|l| i as f32 / 100.0 + l as f32 * 1.3e-3);
            for (x, e) in xs.iter().zip(exp(xs)).filter(|(x, _)| (-87.0..=88.0).contains(*x)) {
                let want = f64::from(*x).exp();
                worst = worst.max(((f64::from(e) - want) / want).abs());
            }
        }
        assert!(worst < 4e-7, "relative error {worst:e}");
    }

    /// A band in the middle of an image and one at its top: GroupNorm + SiLU then the
    /// convolution, against the same steps in f64 with the padding row left at zero.
    #[test]
    fn group_stats_match_f64_sums() {
        let x: Vec<f32> = crate::cpu::noise(6 * 37, 3).iter().enumerate().map(|(i, v)| v * 3.0 + (i / 37) as f32).collect();
        let (mean, var) = group_stats(&x, 3);
        for g in 0..3 {
            let part = &x[g * 74..][..74];
            let m = part.iter().map(|&v| f64::from(v)).sum::<f64>() / 74.0;
            let v = part.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / 74.0;
            assert!((f64::from(mean[g]) - m).abs() < 1e-6 && (f64::from(var[g]) - v).abs() < 1e-5 * v, "group {g}");
        }
    }

    #[test]
    fn fused_norm_silu_conv_matches_the_steps() {
        let (c_in, c_out, h, w, groups) = (12, 5, 7, 9, 3);
        let x = noise(c_in * h * w, 7);
        let wt: Vec<f32> = noise(c_out * c_in * 9, 8).iter().map(|v| v * 0.3).collect();
        let b = noise(c_out, 9);
        let (mean, var) = (vec![0.1, -0.2, 0.05], vec![0.3, 0.5, 0.2]);
        let (gamma, beta): (Vec<f32>, Vec<f32>) = (noise(c_in, 10), noise(c_in, 11));
        let pre = NormSilu::new(&mean, &var, 1e-6, &gamma, &beta);
        let conv = Winograd3x3::new(&wt, Some(&b), c_in, c_out);
        for pad_top in [false, true] {
            let mut act = vec![0.0f32; x.len()];
            for k in 0..c_in {
                let g = k / (c_in / groups);
                for y in 0..h {
                    for px in 0..w {
                        let i = (k * h + y) * w + px;
                        let t = (f64::from(x[i]) - f64::from(mean[g])) / (f64::from(var[g]) + 1e-6).sqrt() * f64::from(gamma[k]) + f64::from(beta[k]);
                        act[i] = if pad_top && y == 0 { 0.0 } else { (t / (1.0 + (-t).exp())) as f32 };
                    }
                }
            }
            // Rows 1..h-1 of the direct convolution padded by one: what the band computes.
            let want = direct_reference(&act, c_in, h, w, &wt, Some(&b), c_out, 1);
            let mut got = Vec::new();
            conv3x3(Conv3x3::Kept(&conv), &x, h, w, Some(&pre), Rows::Band { pad_top, pad_bottom: false }, &mut got);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for o in 0..c_out {
                for y in 1..h - 1 {
                    for px in 0..w {
                        let (g, v) = (got[(o * (h - 2) + y - 1) * w + px], want[(o * h + y) * w + px]);
                        assert!((f64::from(g) - v).abs() <= 1e-5 * scale, "pad_top {pad_top}: {g} vs {v}");
                    }
                }
            }
            if pad_top {
                continue;
            }
            // The whole image: every row, zero-padded above and below.
            let mut got = Vec::new();
            conv3x3(Conv3x3::Kept(&conv), &x, h, w, Some(&pre), Rows::Whole, &mut got);
            for (g, v) in got.iter().zip(&want) {
                assert!((f64::from(*g) - v).abs() <= 1e-5 * scale, "whole: {g} vs {v}");
            }
        }
    }
}
