//! Exact tiled execution of the VAE: the image is held as horizontal bands (`[1, C, rows, W]`
//! tensors, top to bottom) and every layer runs band by band.
//!
//! - A 3x3 convolution reads one row of each neighbouring band (zeros at the image border),
//!   so it equals the whole-image convolution; stride-2 downsampling and nearest-2x
//!   upsampling do the same with their own halos.
//! - GroupNorm uses statistics over the whole image: per-band sums first (mean), then
//!   per-band sums of squared deviations (biased variance), then every band is normalised.
//! - The mid-block attention attends from each band's pixels to all pixels, one key band at a
//!   time with an online softmax ([`attention_pieces`]), so no tensor holds all keys.
//!
//! Unlike the official "tiled VAE" (per-tile variances averaged, attention inside each tile,
//! a fixed halo), the result is the whole-image result up to float summation order. Memory:
//! the bands of two or three activations live at once (the residual of a resnet), and no
//! single tensor is larger than one band. [`Norms`] keeps the GroupNorm statistics of a pass
//! and can normalise a crop with a whole image's statistics (decoding only a region).

use burn::tensor::{Device, FloatDType, Tensor, activation::silu, ops::PadMode};

use crate::cpu::band::{NormSilu, Pre, Rows};
use crate::model::chunked_attention::attention_pieces;
use crate::model::conv::{Conv2d, cpu_conv3x3};
use crate::model::sd::attention::Attention;
use crate::model::sd::nn::{GroupNorm, merge_heads, split_heads};
use crate::model::sd::resnet::{Downsample2D, ResnetBlock2D, Upsample2D, nearest_resize};
use crate::model::sd::vae::{Decoder, Encoder, VaeMidBlock};

/// An image-shaped activation as horizontal bands, top to bottom, all `[1, C, rows_i, W]`.
/// With [`Park`], the bands wait in host memory between layers and only the bands a layer is
/// working on are on the compute device.
#[derive(Clone)]
pub struct Bands(pub Vec<Tensor<4>>, pub Option<Park>);

/// Where parked bands wait (`host`, burn's CPU backend) and where they are computed.
#[derive(Clone, Debug)]
pub struct Park {
    pub compute: Device,
    pub host: Device,
}

impl Bands {
    /// Cut `x: [1, C, H, W]` into bands of `rows` (the last one takes the remainder).
    pub fn split(x: Tensor<4>, rows: usize) -> Self {
        let h = x.dims()[2];
        Self((0..h).step_by(rows.max(1)).map(|y| x.clone().narrow(2, y, rows.min(h - y))).collect(), None)
    }

    /// From now on, bands made from these wait in `park.host` between layers.
    pub fn parked(self, park: Option<Park>) -> Self {
        let mut b = Self(Vec::new(), park);
        b.0 = self.0.into_iter().map(|t| b.stow(t)).collect();
        b
    }

    /// Band `i` on the compute device.
    pub fn get(&self, i: usize) -> Tensor<4> {
        self.fetch(self.0[i].clone())
    }

    fn fetch(&self, t: Tensor<4>) -> Tensor<4> {
        match &self.1 {
            Some(p) => t.to_device(&p.compute),
            None => t,
        }
    }

    fn stow(&self, t: Tensor<4>) -> Tensor<4> {
        match &self.1 {
            Some(p) => t.to_device(&p.host),
            None => t,
        }
    }

    /// New bands with the same parking, from tensors made on the compute device.
    fn derive(&self, bands: impl IntoIterator<Item = Tensor<4>>) -> Self {
        Self(bands.into_iter().map(|t| self.stow(t)).collect(), self.1.clone())
    }

    /// The whole activation (tests, small images).
    pub fn join(self) -> Tensor<4> {
        let mut v: Vec<Tensor<4>> = self.0.iter().map(|t| self.fetch(t.clone())).collect();
        if v.len() == 1 { v.pop().expect("one band") } else { Tensor::cat(v, 2) }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total rows.
    pub fn height(&self) -> usize {
        self.0.iter().map(|t| t.dims()[2]).sum()
    }

    /// Rows `a..b` of the whole activation, gathered from the bands that hold them.
    pub fn rows(&self, a: usize, b: usize) -> Tensor<4> {
        let mut parts = Vec::new();
        let mut y = 0;
        for t in &self.0 {
            let h = t.dims()[2];
            let (s, e) = (a.max(y), b.min(y + h));
            if s < e {
                parts.push(self.fetch(t.clone().narrow(2, s - y, e - s)));
            }
            y += h;
        }
        if parts.len() == 1 { parts.pop().expect("one part") } else { Tensor::cat(parts, 2) }
    }

    /// The box `rows a..b`, `columns c..d`, keeping the band structure (bands outside dropped).
    pub fn crop(&self, a: usize, b: usize, c: usize, d: usize) -> Bands {
        let mut out = Vec::new();
        let mut y = 0;
        for t in &self.0 {
            let h = t.dims()[2];
            let (s, e) = (a.max(y), b.min(y + h));
            if s < e {
                out.push(t.clone().narrow(2, s - y, e - s).narrow(3, c, d - c));
            }
            y += h;
        }
        Bands(out, self.1.clone())
    }

    /// Apply `f` to every band.
    pub fn map(self, mut f: impl FnMut(Tensor<4>) -> Tensor<4>) -> Self {
        let out: Vec<Tensor<4>> = (0..self.len()).map(|i| f(self.get(i))).collect();
        self.derive(out)
    }

    fn zip(self, other: Bands, mut f: impl FnMut(Tensor<4>, Tensor<4>) -> Tensor<4>) -> Self {
        let out: Vec<Tensor<4>> = (0..self.len()).map(|i| f(self.get(i), other.get(i))).collect();
        self.derive(out)
    }

    /// Band `i` with `above` rows of the band before it and `below` rows of the one after
    /// (zeros past the image's top and bottom).
    fn with_halo(&self, i: usize, above: usize, below: usize) -> Tensor<4> {
        let band = &self.get(i);
        let rows = |t: &Tensor<4>, from_end: bool, n: usize| {
            let h = t.dims()[2];
            self.fetch(t.clone().narrow(2, if from_end { h - n } else { 0 }, n))
        };
        let zeros = |n: usize| {
            let [b, c, _, w] = band.dims();
            Tensor::<4>::zeros([b, c, n, w], &band.device()).cast(FloatDType::from(band.dtype()))
        };
        let mut parts = Vec::with_capacity(3);
        if above > 0 {
            parts.push(if i > 0 { rows(&self.0[i - 1], true, above) } else { zeros(above) });
        }
        parts.push(band.clone());
        if below > 0 {
            parts.push(if i + 1 < self.0.len() { rows(&self.0[i + 1], false, below) } else { zeros(below) });
        }
        Tensor::cat(parts, 2)
    }
}

/// Per-group `(mean, biased variance)`, `[1, groups, 1]` f32.
pub type Stats = (Tensor<3>, Tensor<3>);

/// Where GroupNorm takes its statistics from. Every pass computes the statistics of what it
/// sees (over all its bands) and keeps them in [`Norms::seen`], in layer order.
#[derive(Clone)]
enum Source {
    /// What the pass sees (the whole image: exact).
    Seen,
    /// Given statistics (a crop normalised like the whole image it was cut from).
    Given(Vec<Stats>),
    /// `whole + (seen - seen_then)`: the whole image's statistics at other inputs, moved by
    /// how much the crop's own statistics moved since (a crop of an image whose latent changed).
    Moved { whole: Vec<Stats>, then: Vec<Stats> },
}

#[derive(Clone)]
pub struct Norms {
    source: Source,
    seen: Vec<Stats>,
}

impl Default for Norms {
    fn default() -> Self {
        Self { source: Source::Seen, seen: Vec::new() }
    }
}

impl Norms {
    /// Normalise with the statistics of what the pass sees.
    pub fn exact() -> Self {
        Self::default()
    }

    /// Normalise with `given` (layer order) instead.
    pub fn given(given: Vec<Stats>) -> Self {
        Self { source: Source::Given(given), seen: Vec::new() }
    }

    /// Normalise with `whole + (seen - then)` per layer.
    pub fn moved(whole: Vec<Stats>, then: Vec<Stats>) -> Self {
        Self { source: Source::Moved { whole, then }, seen: Vec::new() }
    }

    /// The statistics this pass saw, in layer order.
    pub fn seen(&self) -> &[Stats] {
        &self.seen
    }

    pub fn into_seen(self) -> Vec<Stats> {
        self.seen
    }

    fn stats(&mut self, norm: &GroupNorm, x: &Bands) -> Stats {
        let seen = band_stats(norm.groups(), x);
        let k = self.seen.len();
        self.seen.push(seen.clone());
        match &self.source {
            Source::Seen => seen,
            Source::Given(given) => given.get(k).expect("the given statistics cover every layer").clone(),
            Source::Moved { whole, then } => {
                let ((wm, wv), (tm, tv)) = (&whole[k], &then[k]);
                (wm.clone() + seen.0 - tm.clone(), (wv.clone() + seen.1 - tv.clone()).clamp_min(0.0))
            }
        }
    }

    fn group_norm(&mut self, norm: &GroupNorm, x: &Bands) -> Bands {
        let (mean, var) = self.stats(norm, x);
        x.clone().map(|t| norm.normalize(t, mean.clone(), var.clone()))
    }
}

/// Mean and biased variance per group over all bands: sums first, then squared deviations
/// from the mean (two passes: no cancellation), f32.
pub fn band_stats(g: usize, x: &Bands) -> Stats {
    if crate::cpu::enabled(&x.get(0).device()) {
        return cpu_band_stats(g, x);
    }
    let grouped = |t: &Tensor<4>| {
        let [n, c, h, w] = t.dims();
        t.clone().cast(FloatDType::F32).reshape([n, g, (c / g) * h * w])
    };
    let count: usize = x.0.iter().map(|t| t.dims().iter().skip(1).product::<usize>() / g).sum();
    let sum = (0..x.len()).map(|i| grouped(&x.get(i)).sum_dim(2)).reduce(|a, b| a + b).expect("a band");
    let mean = sum / count as f64;
    let sq = (0..x.len())
        .map(|i| (grouped(&x.get(i)) - mean.clone()).powi_scalar(2).sum_dim(2))
        .reduce(|a, b| a + b)
        .expect("a band");
    (mean, sq / count as f64)
}

/// [`band_stats`] on burn's CPU backend: the same two passes in f64 over the bands' values
/// ([`crate::cpu::band::group_sums`]), as the whole-image path's fused convolutions compute
/// them, so banded and whole-image results differ only by the convolutions' rounding.
fn cpu_band_stats(g: usize, x: &Bands) -> Stats {
    use crate::cpu::band::group_sums;
    use crate::cpu::tensor::{f32_tensor, with_slice};
    let n = x.get(0).dims()[0];
    let count: usize = x.0.iter().map(|t| t.dims().iter().skip(1).product::<usize>() / g).sum();
    // Per band, its n images' groups: n * g runs of contiguous values.
    let sums = |f: &(dyn Fn(usize, f32) -> f64 + Sync)| {
        let mut total = vec![0.0f64; n * g];
        for i in 0..x.len() {
            with_slice(&x.get(i), |v| {
                for (t, s) in total.iter_mut().zip(group_sums(v, n * g, |k, v| f(k, v))) {
                    *t += s;
                }
            });
        }
        total
    };
    let mean: Vec<f64> = sums(&|_, v| f64::from(v)).iter().map(|s| s / count as f64).collect();
    let var: Vec<f64> = sums(&|k, v| (f64::from(v) - mean[k]).powi(2)).iter().map(|s| s / count as f64).collect();
    let device = x.get(0).device();
    let tensor = |v: Vec<f64>| f32_tensor(v.into_iter().map(|s| s as f32).collect(), [n, g, 1], &device);
    (tensor(mean), tensor(var))
}

/// A stride-1 3x3 (or 1x1) convolution, band by band.
fn conv(conv: &Conv2d, x: &Bands, f32: bool) -> Bands {
    let k = conv.weight.dims()[2];
    let p = k / 2;
    x.derive((0..x.len()).map(|i| halo_conv(conv, x.with_halo(i, p, p), [0, p], f32, None, false, false)).collect::<Vec<_>>())
}

/// `conv(silu(group_norm(x)))`, band by band. On the CPU path the GroupNorm + SiLU is fused
/// into the convolution's input copy ([`crate::cpu::band`]); elsewhere they are separate steps.
fn norm_silu_conv(norms: &mut Norms, norm: &GroupNorm, c: &Conv2d, x: &Bands, f32: bool) -> Bands {
    if c.winograd_kept().is_none() {
        return conv(c, &norms.group_norm(norm, x).map(silu), f32);
    }
    let (mean, var) = norms.stats(norm, x);
    let pre = norm.silu_on_cpu(mean, var);
    let last = x.len() - 1;
    x.derive((0..x.len()).map(|i| halo_conv(c, x.with_halo(i, 1, 1), [0, 1], f32, Some(&pre), i == 0, i == last)).collect::<Vec<_>>())
}

/// `conv` of a band `t` that carries its halo rows: [`cpu_conv3x3`] when the layer has kept
/// CPU weights (only 3x3, stride-1, padding-1 layers do; here padding `[0, 1]`), else
/// [`Conv2d::forward_padded`]. `pre` (the CPU path only) is applied to the input first, except
/// to the halo rows that are the image's padding.
fn halo_conv(c: &Conv2d, t: Tensor<4>, padding: [usize; 2], f32: bool, pre: Option<&NormSilu>, pad_top: bool, pad_bottom: bool) -> Tensor<4> {
    match c.winograd_kept() {
        Some(w) => {
            debug_assert_eq!(padding, [0, 1], "a kept 3x3 layer pads one column");
            let y = cpu_conv3x3(crate::cpu::band::Conv3x3::Kept(w), t, pre.map(Pre::Given), Rows::Band { pad_top, pad_bottom });
            if f32 { y.cast(FloatDType::F32) } else { y }
        }
        None => {
            assert!(pre.is_none(), "a fused GroupNorm + SiLU needs the CPU path");
            c.forward_padded(t, padding, f32)
        }
    }
}

fn resnet(r: &ResnetBlock2D, x: Bands, norms: &mut Norms) -> Bands {
    let h = norm_silu_conv(norms, &r.norm1, &r.conv1, &x, false);
    let h = norm_silu_conv(norms, &r.norm2, &r.conv2, &h, false);
    let x = match &r.conv_shortcut {
        Some(c) => conv(c, &x, false),
        None => x,
    };
    x.zip(h, |a, b| a + b)
}

/// SD's VAE downsampler: zero pad right and bottom by one, 3x3 stride 2. Bands have even
/// rows, so band `i`'s output rows need one extra input row below.
fn downsample(d: &Downsample2D, x: Bands) -> Bands {
    x.derive(
        (0..x.len())
            .map(|i| {
                let t = x.with_halo(i, 0, 1).pad((0, 1, 0, 0), PadMode::Constant(0.0));
                d.conv.forward_padded(t, [0, 0], false)
            })
            .collect::<Vec<_>>(),
    )
}

/// Nearest x2 then a 3x3 conv: one neighbouring input row on each side becomes the two
/// upsampled rows, of which the conv needs the nearer one.
fn upsample(u: &Upsample2D, x: Bands) -> Bands {
    x.derive(
        (0..x.len())
            .map(|i| {
                let t = x.with_halo(i, 1, 1);
                let [_, _, h, w] = t.dims();
                let t = nearest_resize(t, 2 * h, 2 * w);
                halo_conv(&u.conv, t.narrow(2, 1, 2 * h - 2), [0, 1], false, None, false, false)
            })
            .collect::<Vec<_>>(),
    )
}

/// `x + to_out(attention(group_norm(x)))` over all pixels of all bands.
fn spatial_attention(a: &Attention, x: Bands, norms: &mut Norms) -> Bands {
    let norm = a.group_norm.as_ref().expect("the VAE's attention has a GroupNorm");
    let hs = norms.group_norm(norm, &x);
    let tokens = |t: Tensor<4>| {
        let [n, c, h, w] = t.dims();
        t.reshape([n, c, h * w]).swap_dims(1, 2)
    };
    let heads = a.heads();
    let kv: Vec<(Tensor<4>, Tensor<4>)> = (0..hs.len())
        .map(|i| {
            let t = tokens(hs.get(i));
            (split_heads(a.to_k.forward(t.clone()), heads), split_heads(a.to_v.forward(t), heads))
        })
        .collect();
    let scale = 1.0 / ((x.0[0].dims()[1] / heads) as f64).sqrt();
    let out: Vec<Tensor<4>> = (0..hs.len())
        .map(|i| {
            let t = hs.get(i);
            let [n, c, h, w] = t.dims();
            let q = split_heads(a.to_q.forward(tokens(t)), heads);
            let o = a.to_out.forward(merge_heads(attention_pieces(q, &kv, scale)));
            o.swap_dims(1, 2).reshape([n, c, h, w])
        })
        .collect();
    let out = x.derive(out);
    x.zip(out, |a, b| a + b)
}

fn mid_block(m: &VaeMidBlock, x: Bands, norms: &mut Norms) -> Bands {
    let x = resnet(&m.resnets[0], x, norms);
    let x = spatial_attention(&m.attentions[0], x, norms);
    resnet(&m.resnets[1], x, norms)
}

/// [`Encoder::forward`] on bands: `x` `[1, 3, H, W]` with H and W multiples of 8 and band
/// rows multiples of 8 (so every downsampling stays aligned). Returns the moments' bands
/// (f32) at latent resolution.
pub fn encode(e: &Encoder, x: Bands, norms: &mut Norms) -> Bands {
    let mut x = conv(&e.conv_in, &x, false);
    for block in &e.down_blocks {
        for r in &block.resnets {
            x = resnet(r, x, norms);
        }
        for d in &block.downsamplers {
            x = downsample(d, x);
        }
    }
    let x = mid_block(&e.mid_block, x, norms);
    norm_silu_conv(norms, &e.conv_norm_out, &e.conv_out, &x, true)
}

/// [`Decoder::forward`] on bands of the latent (after post_quant_conv): the image's bands in
/// f32, unclamped.
pub fn decode(d: &Decoder, z: Bands, norms: &mut Norms) -> Bands {
    let low = decode_low(d, z, norms);
    decode_high(d, low, norms)
}

/// The decoder's part at latent resolution: conv_in, the mid block and the first up block's
/// resnets (about 8% of its work at SD's sizes).
pub fn decode_low(d: &Decoder, z: Bands, norms: &mut Norms) -> Bands {
    let z = z.map(|t| t.cast(d.conv_in.dtype()));
    let mut x = mid_block(&d.mid_block, conv(&d.conv_in, &z, false), norms);
    for r in &d.up_blocks[0].resnets {
        x = resnet(r, x, norms);
    }
    x
}

/// The rest of the decoder after [`decode_low`]: from the first upsampler to conv_out.
pub fn decode_high(d: &Decoder, mut x: Bands, norms: &mut Norms) -> Bands {
    for (i, block) in d.up_blocks.iter().enumerate() {
        if i > 0 {
            for r in &block.resnets {
                x = resnet(r, x, norms);
            }
        }
        for u in &block.upsamplers {
            x = upsample(u, x);
        }
    }
    norm_silu_conv(norms, &d.conv_norm_out, &d.conv_out, &x, true)
}
