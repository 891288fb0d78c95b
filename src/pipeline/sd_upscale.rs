//! A whole image through OSEDiff / PiSA-SR, tiled so that memory stays bounded:
//!
//! 1. pre-process (PIL-exact) to the network input `x`;
//! 2. `z = E(x) * sf`: the encoder on bands of `x` (exact, [`crate::tiling::vae`]);
//! 3. the noise prediction(s) on latent tiles with Gaussian blending (the official scheme,
//!    [`crate::tiling::latent`]); PiSA-SR's adjustable mode keeps both `eps_pix` and `eps_sem`;
//! 4. `z_h` by the method's formula, `D(z_h / sf)` on bands, clamp, `* 0.5 + 0.5`, colour fix
//!    band by band against the pre-processed input, 8-bit rows, and a final Lanczos resize when
//!    the pre-processing changed the geometry, so the result is exactly `scale x` the input.
//!
//! Steps 1-3 give a [`Restoration`]; step 4 ([`Restoration::render`]) can run again at other
//! lambdas without the encoder or the UNet, for the whole image or only a region.

use burn::tensor::{Device, FloatDType, Tensor};
use image::RgbImage;

use super::{Cancel, Progress, RunError};
use super::colour_fix::{self, ColourFix};
use super::one_step::{Guidance, Latent, OneStepSr};
use super::preprocess::{PreprocessOptions, Preprocessed, input_size, preprocess, to_model_input, to_output_size, to_rgb8, to_unit_tensor};
use crate::model::chunked_attention::set_max_scores;
use crate::model::sd::Method;
use crate::tiling::latent::{Blend, LatentTiles};
use crate::tiling::memory::{DeviceLimits, Precision, plan_sd};
use crate::tiling::vae::{self, Bands, Norms, Park};

/// How the work is cut: each `None` is the memory planner's choice for `limits`
/// ([`plan_sd`]; the official 96 / 32 latent tiles whenever they fit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SdTiling {
    /// UNet latent tile side and overlap, in latents.
    pub latent_tile: Option<usize>,
    pub latent_overlap: Option<usize>,
    /// VAE band height in image pixels (a multiple of 8).
    pub vae_rows: Option<usize>,
    pub limits: DeviceLimits,
}

impl Default for SdTiling {
    fn default() -> Self {
        Self { latent_tile: None, latent_overlap: None, vae_rows: None, limits: DeviceLimits::webgpu_default() }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SdOptions {
    pub preprocess: PreprocessOptions,
    pub colour_fix: ColourFix,
    pub latent: Latent,
    pub guidance: Guidance,
    pub tiling: SdTiling,
    /// Checked between tiles and bands.
    pub cancel: Cancel,
}

/// The noise prediction(s) of one image, blended over the latent tiles (f32).
#[derive(Clone)]
pub enum Eps {
    /// OSEDiff's eps, or PiSA-SR's default-mode eps_sem.
    One(Tensor<4>),
    /// PiSA-SR's adjustable mode: both LoRA sets' predictions.
    Pair { pix: Tensor<4>, sem: Tensor<4> },
}

/// A region of the network input, in pixels (multiples of 8 after [`Region::aligned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// What a whole-image render saw: GroupNorm statistics in layer order, AdaIN's (target,
/// source) statistics, at these lambdas.
struct WholeStats {
    lambdas: (f32, f32),
    norms: Vec<vae::Stats>,
    adain: Option<(Stats, Stats)>,
}

/// What a region (with its halo) saw at the whole render's lambdas.
struct RegionStats {
    key: (Region, usize),
    norms: Vec<vae::Stats>,
    adain: Stats,
}

/// Everything before the decoder: re-rendering at other lambdas needs only this.
pub struct Restoration {
    pub pre: Preprocessed,
    /// `z = E(x) * sf`, f32.
    pub z: Tensor<4>,
    pub eps: Eps,
    method: Method,
    colour_fix: ColourFix,
    /// VAE band rows (image pixels), and where bands wait between layers.
    rows: usize,
    park: Option<Park>,
    cancel: Cancel,
    /// The statistics of the last whole-image render, and of the last region (for regions).
    last: Option<WholeStats>,
    region: Option<RegionStats>,
}

/// How [`SdTiling`] resolves for one network input: the planner's choices where the caller
/// left `None`.
struct Cuts {
    rows: usize,
    latent_tile: usize,
    latent_overlap: usize,
    max_scores: usize,
    park_on_host: bool,
}

fn precision(model: &OneStepSr) -> Precision {
    if model.dtype() == FloatDType::F16 { Precision::F16 } else { Precision::F32 }
}

/// The memory planner's estimate of the device's peak (bytes) for `img`, with the planner's
/// own tiling for `opts`' device limits.
pub fn planned_peak(model: &OneStepSr, img: &RgbImage, opts: &SdOptions) -> Option<u64> {
    let (w, h) = input_size(img.dimensions(), opts.preprocess);
    plan_sd(&model.config, h as usize, w as usize, precision(model), opts.tiling.limits).ok().map(|p| p.peak_bytes)
}

impl SdTiling {
    fn cuts(&self, model: &OneStepSr, h: usize, w: usize) -> Cuts {
        let plan = plan_sd(&model.config, h, w, precision(model), self.limits).ok();
        let latent_tile = self.latent_tile.or(plan.as_ref().map(|p| p.latent_tile)).unwrap_or(96);
        Cuts {
            rows: self.vae_rows.or(plan.as_ref().map(|p| p.vae_rows)).unwrap_or(h).max(8) / 8 * 8,
            latent_tile,
            latent_overlap: self.latent_overlap.or(plan.as_ref().map(|p| p.latent_overlap)).unwrap_or(32).min(latent_tile - 1),
            max_scores: plan.as_ref().map_or(usize::MAX, |p| p.max_scores),
            park_on_host: plan.as_ref().is_some_and(|p| p.park_on_host),
        }
    }

    /// The tiling for the one retry after the device ran out of memory on `img`: latent tiles
    /// of half the side (a quarter of the UNet's activations) and VAE bands of half the height.
    pub fn halved(&self, model: &OneStepSr, img: &RgbImage, preprocess: PreprocessOptions) -> SdTiling {
        let (w, h) = input_size(img.dimensions(), preprocess);
        let c = self.cuts(model, h as usize, w as usize);
        SdTiling {
            latent_tile: Some((c.latent_tile / 2).max(8)),
            latent_overlap: Some(c.latent_overlap / 2),
            vae_rows: Some((c.rows / 2).max(8) / 8 * 8),
            limits: self.limits,
        }
    }
}

/// Waits until the device has computed `t` (one value is read back), so progress means work
/// done.
async fn settle(t: &Tensor<4>) -> Result<(), RunError> {
    t.clone().slice([0..1, 0..1, 0..1, 0..1]).into_data_async().await?;
    Ok(())
}

/// Steps 1-3: pre-process, encode, the UNet pass(es).
#[cfg(not(target_arch = "wasm32"))]
pub fn prepare(
    model: &OneStepSr,
    device: &Device,
    img: &RgbImage,
    opts: &SdOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restoration, RunError> {
    futures_lite::future::block_on(prepare_async(model, device, img, opts, progress))
}

/// [`prepare`], waiting for the device after the encoder and after each latent tile (and
/// checking for cancellation there) without blocking.
pub async fn prepare_async(
    model: &OneStepSr,
    device: &Device,
    img: &RgbImage,
    opts: &SdOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restoration, RunError> {
    let pre = preprocess(img, opts.preprocess);
    let (w, h) = (pre.input.width() as usize, pre.input.height() as usize);
    let cuts = opts.tiling.cuts(model, h, w);
    set_max_scores(cuts.max_scores);
    // Parking only helps when the compute device is not the host itself.
    let host = crate::device::cpu();
    // Not in the browser either: moving bands to the host needs a blocking readback there.
    let park = (cuts.park_on_host && *device != host && !cfg!(target_arch = "wasm32"))
        .then(|| Park { compute: device.clone(), host });

    progress(Progress::new("encode", 0, 1));
    let x = to_model_input(&pre.input, device);
    let moments = vae::encode(&model.vae.encoder, Bands::split(x, cuts.rows).parked(park.clone()), &mut Norms::default())
        .map(|t| model.vae.quant_conv.forward_f32(t))
        .join();
    let z = model.latent_from_moments(moments, opts.latent);
    settle(&z).await?;
    progress(Progress::new("encode", 1, 1));
    opts.cancel.checkpoint().await?;

    let tiles = LatentTiles::plan(h / 8, w / 8, cuts.latent_tile, cuts.latent_overlap);
    let sems: &[bool] = match (model.config.method, opts.guidance) {
        (Method::OseDiff, _) | (Method::PisaSr, Guidance::Default) => &[true],
        // PiSA-SR's adjustable mode: eps_sem, then eps_pix.
        (Method::PisaSr, Guidance::Adjustable { .. }) => &[true, false],
    };
    let n = tiles.as_ref().map_or(1, |t| t.origins.len());
    progress(Progress::new("unet", 0, sems.len() * n));
    let mut passes = Vec::with_capacity(sems.len());
    for (pass, &sem) in sems.iter().enumerate() {
        let mut tile = async |i: usize, t: Tensor<4>| -> Result<Tensor<4>, RunError> {
            let eps = model.eps(t, sem).cast(FloatDType::F32);
            settle(&eps).await?;
            progress(Progress::new("unet", pass * n + i + 1, sems.len() * n));
            opts.cancel.checkpoint().await?;
            Ok(eps)
        };
        passes.push(match &tiles {
            None => tile(0, z.clone()).await?,
            Some(t) => {
                let mut blend = Blend::new(&z, t);
                for (i, &origin) in t.origins.iter().enumerate() {
                    blend.add(origin, tile(i, Blend::input(&z, t, origin)).await?);
                }
                blend.finish()
            }
        });
    }
    let eps = match <[Tensor<4>; 2]>::try_from(passes) {
        Ok([sem, pix]) => Eps::Pair { pix, sem },
        Err(mut one) => Eps::One(one.remove(0)),
    };
    let (colour_fix, cancel) = (opts.colour_fix, opts.cancel.clone());
    Ok(Restoration { pre, z, eps, method: model.config.method, colour_fix, rows: cuts.rows, park, cancel, last: None, region: None })
}

impl Restoration {
    /// The denoised latent (f32) at `lambdas` (PiSA-SR adjustable mode; ignored otherwise).
    pub fn z_hat(&self, lambdas: (f32, f32)) -> Tensor<4> {
        match (&self.eps, self.method) {
            (Eps::One(eps), Method::OseDiff) => OneStepSr::osediff_z_hat(self.z.clone(), eps.clone()),
            (Eps::One(eps), Method::PisaSr) => self.z.clone() - eps.clone(),
            (Eps::Pair { pix, sem }, _) => OneStepSr::pisa_z_hat(self.z.clone(), pix.clone(), sem.clone(), lambdas.0, lambdas.1),
        }
    }

    /// Where the next renders check for cancellation (a new call brings its own flag).
    pub fn set_cancel(&mut self, cancel: Cancel) {
        self.cancel = cancel;
    }

    /// The decoder's input bands for `lambdas`: `post_quant_conv(z_h / sf)`.
    fn latent_bands(&self, model: &OneStepSr, lambdas: (f32, f32)) -> Bands {
        let zq = model.vae.post_quant_conv.forward_f32(self.z_hat(lambdas) / model.sf());
        Bands::split(zq, self.rows / 8).parked(self.park.clone())
    }

    /// Step 4 for the whole image: exactly `scale x` the input. Keeps the normalisation
    /// statistics for [`Self::render_region`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn render(
        &mut self,
        model: &OneStepSr,
        lambdas: (f32, f32),
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RgbImage, RunError> {
        futures_lite::future::block_on(self.render_async(model, lambdas, progress))
    }

    /// [`Self::render`] without blocking on readbacks (the browser's only way).
    pub async fn render_async(
        &mut self,
        model: &OneStepSr,
        lambdas: (f32, f32),
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RgbImage, RunError> {
        self.cancel.check()?;
        progress(Progress::new("decode", 0, 1));
        let mut norms = Norms::exact();
        let img = vae::decode(&model.vae.decoder, self.latent_bands(model, lambdas), &mut norms)
            .map(|t| t.clamp(-1.0, 1.0) * 0.5 + 0.5);
        progress(Progress::new("decode", 1, 1));
        let adain = (self.colour_fix == ColourFix::Adain).then(|| self.adain_stats(&img));
        let out = self.colour_fixed(&img, adain.clone(), progress).await?;
        self.last = Some(WholeStats { lambdas, norms: norms.into_seen(), adain });
        self.region = None;
        Ok(to_output_size(out, self.pre.out_size))
    }

    /// The decoder on the latent box `[y0, y1) x [x0, x1)` (its latent-resolution part on the
    /// whole latent, the rest on the box): the box's pixels in [0, 1], before colour fix.
    fn decode_box(&self, model: &OneStepSr, lambdas: (f32, f32), b: [usize; 4], norms: &mut Norms) -> Tensor<4> {
        let low = vae::decode_low(&model.vae.decoder, self.latent_bands(model, lambdas), norms);
        vae::decode_high(&model.vae.decoder, low.crop(b[0], b[1], b[2], b[3]), norms)
            .map(|t| t.clamp(-1.0, 1.0) * 0.5 + 0.5)
            .join()
    }

    /// Step 4 for `region` of the network input only (the part of the image on screen), for
    /// a slider: the decoder's latent-resolution part (conv_in, mid block, the first up block's
    /// resnets) runs on the whole latent, the rest on the region plus `halo` latents on each side.
    ///
    /// What it approximates: the higher-resolution layers' GroupNorm statistics (and AdaIN's) are those of
    /// the whole image at new lambdas. They are estimated as the last whole render's
    /// statistics moved by how much the region's own statistics moved since then (the first
    /// call for a region also decodes it at the whole render's lambdas to know them). Pixels
    /// within the halo's reach of the region's edge see zeros beyond the halo. Exporting
    /// re-renders the whole image exactly ([`Self::render`]). Returns the region's pixels at
    /// the network's resolution.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn render_region(&mut self, model: &OneStepSr, lambdas: (f32, f32), region: Region, halo: usize) -> Result<RgbImage, String> {
        futures_lite::future::block_on(self.render_region_async(model, lambdas, region, halo))
    }

    /// [`Self::render_region`] without blocking on the readback.
    pub async fn render_region_async(
        &mut self,
        model: &OneStepSr,
        lambdas: (f32, f32),
        region: Region,
        halo: usize,
    ) -> Result<RgbImage, String> {
        let whole = self.last.as_ref().ok_or("render the whole image once before a region")?;
        let (w, h) = (self.pre.input.width() as usize, self.pre.input.height() as usize);
        if region.w == 0 || region.h == 0 || region.x + region.w > w || region.y + region.h > h {
            return Err(format!("region {region:?} is not inside the {w}x{h} image"));
        }
        // The latent box: the region rounded out to latents, plus the halo.
        let (lh, lw) = (h / 8, w / 8);
        let (ly0, lx0) = ((region.y / 8).saturating_sub(halo), (region.x / 8).saturating_sub(halo));
        let (ly1, lx1) = (((region.y + region.h).div_ceil(8) + halo).min(lh), ((region.x + region.w).div_ceil(8) + halo).min(lw));
        let bx = [ly0, ly1, lx0, lx1];
        let crop_stats = |t: &Tensor<4>| band_stats(&Bands(vec![t.clone()], None));
        if self.region.as_ref().is_none_or(|r| r.key != (region, halo)) {
            let mut then = Norms::given(whole.norms.clone());
            let img = self.decode_box(model, whole.lambdas, bx, &mut then);
            self.region = Some(RegionStats { key: (region, halo), adain: crop_stats(&img), norms: then.into_seen() });
        }
        let (whole, then) = (self.last.as_ref().expect("checked"), self.region.as_ref().expect("just set"));
        let mut norms = Norms::moved(whole.norms.clone(), then.norms.clone());
        let img = self.decode_box(model, lambdas, bx, &mut norms);
        let (by, bx) = (ly0 * 8, lx0 * 8);
        let [_, _, bh, bw] = img.dims();
        let device = img.device();
        let source = || to_unit_tensor(&image::imageops::crop_imm(&self.pre.input, bx as u32, by as u32, bw as u32, bh as u32).to_image(), &device);
        let fixed = match self.colour_fix {
            ColourFix::None => img,
            ColourFix::Adain => {
                let ((wm, ws), src) = whole.adain.clone().expect("AdaIN statistics are kept by render");
                let (nm, ns) = crop_stats(&img);
                let (tm, ts) = then.adain.clone();
                let target = (wm + nm - tm, (ws + ns - ts).clamp_min(1e-3));
                colour_fix::adain_with(img, target, src)
            }
            ColourFix::Wavelet => colour_fix::wavelet(img, source()),
        };
        let crop = fixed.slice([0..1, 0..3, region.y - by..region.y - by + region.h, region.x - bx..region.x - bx + region.w]);
        let values = crop.into_data_async().await.map_err(|e| format!("{e:?}"))?.convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        Ok(to_rgb8(&values, region.h, region.w))
    }

    /// AdaIN's statistics over all bands: per channel mean and `sqrt(unbiased var + 1e-5)` of
    /// the decoded image and of the source (the pre-processed input, cut the same way).
    fn adain_stats(&self, img: &Bands) -> (Stats, Stats) {
        let device = img.get(0).device();
        let w = self.pre.input.width();
        let mut y = 0u32;
        let source = Bands(
            img.0
                .iter()
                .map(|t| {
                    let rows = t.dims()[2] as u32;
                    let crop = image::imageops::crop_imm(&self.pre.input, 0, y, w, rows).to_image();
                    y += rows;
                    to_unit_tensor(&crop, &device)
                })
                .collect(),
            None,
        );
        (band_stats(img), band_stats(&source))
    }

    /// Colour-fix the image bands against the pre-processed input and read them back as 8-bit
    /// rows. Wavelet: each band with 31 rows of context on each side (the blur cascade's
    /// reach), so the result equals the whole-image fix.
    async fn colour_fixed(
        &self,
        img: &Bands,
        adain: Option<((Tensor<4>, Tensor<4>), (Tensor<4>, Tensor<4>))>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RgbImage, RunError> {
        const REACH: usize = 1 + 2 + 4 + 8 + 16;
        let (w, h) = (self.pre.input.width(), self.pre.input.height() as usize);
        let device = img.get(0).device();
        let mut out = RgbImage::new(w, h as u32);
        let mut y = 0usize;
        // The decoder's work is waited for here, band by band.
        progress(Progress::new("colour fix", 0, img.len()));
        for i in 0..img.len() {
            let band = &img.get(i);
            let rows = band.dims()[2];
            let fixed = match self.colour_fix {
                ColourFix::None => band.clone(),
                ColourFix::Adain => {
                    let ((tm, ts), (sm, ss)) = adain.clone().expect("AdaIN statistics");
                    colour_fix::adain_with(band.clone(), (tm, ts), (sm, ss))
                }
                ColourFix::Wavelet => {
                    let (a, b) = (y.saturating_sub(REACH), (y + rows + REACH).min(h));
                    let source = image::imageops::crop_imm(&self.pre.input, 0, a as u32, w, (b - a) as u32).to_image();
                    colour_fix::wavelet(img.rows(a, b), to_unit_tensor(&source, &device)).narrow(2, y - a, rows)
                }
            };
            let values = fixed.into_data_async().await?.convert::<f32>().try_into_vec::<f32>().expect("float image");
            image::imageops::replace(&mut out, &to_rgb8(&values, rows, w as usize), 0, y as i64);
            y += rows;
            progress(Progress::new("colour fix", i + 1, img.len()));
            self.cancel.checkpoint().await?;
        }
        Ok(out)
    }
}

type Stats = (Tensor<4>, Tensor<4>);

/// Per-channel mean and `sqrt(unbiased var + 1e-5)` over bands (AdaIN's statistics, from the
/// per-group statistics with one channel per group).
fn band_stats(img: &Bands) -> Stats {
    let [_, c, _, w] = img.0[0].dims();
    let n = (img.height() * w) as f64;
    let (mean, var) = vae::band_stats(c, img);
    let std = (var * (n / (n - 1.0).max(1.0)) + 1e-5).sqrt();
    (mean.reshape([1, c, 1, 1]), std.reshape([1, c, 1, 1]))
}

/// `img` → exactly `scale x` its size, in the options' guidance.
#[cfg(not(target_arch = "wasm32"))]
pub fn upscale(
    model: &OneStepSr,
    device: &Device,
    img: &RgbImage,
    opts: &SdOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<RgbImage, RunError> {
    futures_lite::future::block_on(upscale_async(model, device, img, opts, progress)).map(|(img, _)| img)
}

/// [`upscale`] without blocking on readbacks; also returns the [`Restoration`] (PiSA-SR's
/// adjustable mode re-renders it at other lambdas).
pub async fn upscale_async(
    model: &OneStepSr,
    device: &Device,
    img: &RgbImage,
    opts: &SdOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(RgbImage, Restoration), RunError> {
    let mut r = prepare_async(model, device, img, opts, progress).await?;
    let out = r.render_async(model, opts.guidance.lambdas(), progress).await?;
    Ok((out, r))
}
