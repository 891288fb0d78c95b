//! 3x3 stride-1 convolutions by Winograd F(4x4, 3x3) whose weights are not kept transformed
//! (the SD UNet's: `U` would be 4x its 3.5 GB of f32 weights): each block of output channels
//! transforms its own slice of the kernels right before the products that use it, so `U` never
//! exists whole.
//!
//! Made whole per call instead (until 2026-12-03), a 1280 → 1280 layer wrote 236 MB of `U` and
//! the products read it back from memory, 64 tiles per value at 32x32: the weight transform and
//! those products took 1.3 s of a 5.4 s UNet pass for 66 GFLOP (docs/cpu.md). Here a task owns
//! [`OUT_BLOCK`] output channels of up to [`TILE_BLOCK`] tiles: for each [`IN_BLOCK`] input
//! channels it transforms that `[36][IN_BLOCK][OUT_BLOCK]` piece of `U` (1.2 MB, in the L2
//! cache) and accumulates the 36 products `M_k += U_k V_k` from it, then transforms its outputs
//! back. The input's `V` is made once for the whole map, the tasks spread over the cores.

use super::SendPtr;
use super::linear::Branch;
use super::map::{Map, conv_out};
use super::winograd::{Act, Geometry, Out, Source, epilogue, for_each_index, grow, kernel_transform, load, output_transform, point_stride, transform_tiles};

/// Output channels per task: one `gemm` micro-kernel panel (64 rows with AVX-512).
const OUT_BLOCK: usize = 64;
/// Input channels per piece of `U`: products 64 x 128 x tiles ran at 124 GFLOP/s per core here,
/// about what larger ones reach (`gemm` 0.17, AVX-512 Xeon).
const IN_BLOCK: usize = 128;
/// Tiles per task: a task's `M` (`[36][TILE_BLOCK][OUT_BLOCK]`, 1.2 MB) stays in the L2 cache.
const TILE_BLOCK: usize = 256;

/// A 3x3 convolution read from torch's `[c_out, c_in, 3, 3]` weights as they are, transformed
/// block by block on each call ([`Self::forward`]).
pub struct PerCall<'a> {
    pub c_in: usize,
    pub c_out: usize,
    weight: &'a [f32],
    /// The branch: `A` and `B`'s columns scaled, output channels contiguous (`[rank][c_out]`).
    merge: Option<(&'a [f32], Vec<f32>, usize)>,
    bias: Vec<f32>,
}

impl<'a> PerCall<'a> {
    /// `branch` (`a`: `[rank, c_in, 3, 3]`, `b`: `[c_out, rank]`, peft's lora_A / lora_B) is
    /// merged into the kernels as they are transformed: `W + scale · B A`.
    pub fn new(weight: &'a [f32], branch: Option<Branch<'a>>, bias: Option<&[f32]>, c_in: usize, c_out: usize) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9, "3x3 weight shape");
        let merge = branch.map(|m| {
            assert_eq!((m.a.len(), m.b.len()), (m.rank * c_in * 9, c_out * m.rank), "LoRA shapes");
            let b_t = (0..m.rank).flat_map(|r| (0..c_out).map(move |o| m.scale * m.b[o * m.rank + r])).collect();
            (m.a, b_t, m.rank)
        });
        let bias = bias.map(<[f32]>::to_vec).unwrap_or_else(|| vec![0.0; c_out]);
        assert_eq!(bias.len(), c_out, "bias shape");
        Self { c_in, c_out, weight, merge, bias }
    }

    /// Convolves the `c_in` channels of `src` (padded by its border) into channels
    /// `0..c_out` of `dst`.
    pub fn forward(&self, src: &Map, dst: &mut Map) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        assert_eq!(src.c, c_in, "input channels");
        assert!(c_out <= dst.c, "output channels past the map");
        let (h_out, w_out) = (conv_out(src.h, src.by), conv_out(src.w, src.bx));
        assert!(dst.h == h_out && dst.w == w_out, "output map is {}x{}, the convolution gives {h_out}x{w_out}", dst.h, dst.w);
        let tiles_x = w_out.div_ceil(4);
        let tiles = h_out.div_ceil(4) * tiles_x;
        let input = Source { ptr: src.data.as_ptr(), geometry: Geometry::of(src), c0: 0 };
        let out = Out { ptr: dst.data.as_mut_ptr(), geometry: Geometry::of(dst), c0: 0 };

        // V for every tile, 36 points of `[tiles][c_in]` (`v_stride` apart), a row of tiles per task.
        let mut v = std::mem::take(&mut *V_BUFFER.lock().unwrap_or_else(|e| e.into_inner()));
        let v_stride = point_stride(tiles * c_in);
        grow(&mut v, 36 * v_stride);
        let v_ptr = SendPtr(v.as_mut_ptr());
        for_each_index(tiles.div_ceil(tiles_x), |row| {
            let (first, n) = (row * tiles_x, tiles_x.min(tiles - row * tiles_x));
            with_scratch(|s| {
                grow(&mut s.tmp, 36 * c_in);
                // SAFETY: each row of tiles writes its own tiles' values; the map's border
                // covers every tile's patch (`Map` is sized so).
                unsafe { transform_tiles_dispatch(&input, c_in, tiles_x, first, n, &mut s.tmp, v_ptr.get(), v_stride) }
            });
        });

        let out_blocks = c_out.div_ceil(OUT_BLOCK);
        let v_all = &v[..];
        for_each_index(tiles.div_ceil(TILE_BLOCK) * out_blocks, |task| {
            let (t0, o0) = (task / out_blocks * TILE_BLOCK, task % out_blocks * OUT_BLOCK);
            let (nt, no) = (TILE_BLOCK.min(tiles - t0), OUT_BLOCK.min(c_out - o0));
            // SAFETY: a task writes only its own output channels of its own tiles.
            with_scratch(|s| unsafe { self.block_dispatch(v_all, v_stride, tiles_x, t0, nt, o0, no, &out, s) });
        });
        *V_BUFFER.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// [`Self::block`] compiled for AVX2 + FMA where the CPU has them (the transforms are
    /// written for the auto-vectoriser; the default x86-64 target stops at SSE2).
    #[allow(clippy::too_many_arguments)]
    unsafe fn block_dispatch(&self, v: &[f32], v_stride: usize, tiles_x: usize, t0: usize, nt: usize, o0: usize, no: usize, out: &Out, s: &mut Scratch) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2(conv: &PerCall, v: &[f32], v_stride: usize, tiles_x: usize, t0: usize, nt: usize, o0: usize, no: usize, out: &Out, s: &mut Scratch) {
                unsafe { conv.block(v, v_stride, tiles_x, t0, nt, o0, no, out, s) }
            }
            return unsafe { avx2(self, v, v_stride, tiles_x, t0, nt, o0, no, out, s) };
        }
        unsafe { self.block(v, v_stride, tiles_x, t0, nt, o0, no, out, s) }
    }

    /// Output channels `o0..o0 + no` of tiles `t0..t0 + nt`: `U`'s piece for each block of
    /// input channels, the 36 products accumulated, then `Aᵀ M A`, the bias, the output map.
    ///
    /// # Safety
    /// `v` is the whole map's `V` (points `v_stride` apart); no other task writes these outputs.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn block(&self, v: &[f32], v_stride: usize, tiles_x: usize, t0: usize, nt: usize, o0: usize, no: usize, out: &Out, s: &mut Scratch) {
        let c_in = self.c_in;
        grow(&mut s.g, 9 * IN_BLOCK.min(c_in) * no);
        grow(&mut s.u, 36 * point_stride(IN_BLOCK.min(c_in) * no));
        let m_stride = point_stride(nt * no);
        grow(&mut s.m, 36 * m_stride);
        grow(&mut s.tmp, 24 * no);
        grow(&mut s.y, 16 * no);
        for i0 in (0..c_in).step_by(IN_BLOCK) {
            let ni = IN_BLOCK.min(c_in - i0);
            self.taps(i0, ni, o0, no, &mut s.g);
            for il in 0..ni {
                // SAFETY: `s.u` holds 36 points of `[ni][no]`; kernel `il`'s at `il no` in each.
                unsafe { kernel_transform(&s.g[il * 9 * no..][..9 * no], no, s.u.as_mut_ptr().add(il * no), point_stride(ni * no)) };
            }
            for k in 0..36 {
                // M_k (no x nt, column-major) += U_k (no x ni) V_k (rows i0.., columns t0..).
                unsafe {
                    gemm::gemm(
                        no,
                        nt,
                        ni,
                        s.m.as_mut_ptr().add(k * m_stride),
                        no as isize,
                        1,
                        i0 > 0,
                        s.u.as_ptr().add(k * point_stride(ni * no)),
                        no as isize,
                        1,
                        v.as_ptr().add(k * v_stride + t0 * c_in + i0),
                        c_in as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
        let og = &out.geometry;
        let bias = &self.bias[o0..o0 + no];
        for t in 0..nt {
            let tile = t0 + t;
            let (ty, tx) = (tile / tiles_x, tile % tiles_x);
            output_transform(&s.m, m_stride, t * no, no, &mut s.tmp[..24 * no], &mut s.y);
            for i in 0..4.min(og.h - 4 * ty) {
                for o in 0..4.min(og.w - 4 * tx) {
                    let at = ((4 * ty + i + og.by) * og.ws + 4 * tx + o + og.bx) * og.c + out.c0 + o0;
                    // SAFETY: these channels of this tile's pixels belong to this task alone.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(at), no) };
                    epilogue(&s.y[(i * 4 + o) * no..][..no], bias, Act::Identity, None, dst);
                }
            }
        }
    }

    /// The 9 taps of input channels `i0..i0 + ni`'s kernels for output channels `o0..o0 + no`,
    /// the branch added, as `g[(il 9 + j) no + o]`. Each output channel's taps for these inputs
    /// are contiguous in torch's layout (`ni·9` values): eight such runs are read side by side
    /// and written across in 8x8 blocks, which the compiler turns into register shuffles (one
    /// value at a time, the copy was half of the transform's time).
    #[inline(always)]
    fn taps(&self, i0: usize, ni: usize, o0: usize, no: usize, g: &mut [f32]) {
        let (c_in, q_n) = (self.c_in, ni * 9);
        let g = &mut g[..q_n * no];
        let run = |o: usize| &self.weight[((o0 + o) * c_in + i0) * 9..][..q_n];
        let mut o = 0;
        while o + 8 <= no {
            let rows: [&[f32]; 8] = std::array::from_fn(|r| run(o + r));
            let mut q = 0;
            while q + 8 <= q_n {
                let block: [[f32; 8]; 8] = std::array::from_fn(|r| load::<8>(rows[r], q));
                for c in 0..8 {
                    let column: [f32; 8] = std::array::from_fn(|r| block[r][c]);
                    g[(q + c) * no + o..][..8].copy_from_slice(&column);
                }
                q += 8;
            }
            for q in q..q_n {
                for (r, row) in rows.iter().enumerate() {
                    g[q * no + o + r] = row[q];
                }
            }
            o += 8;
        }
        for o in o..no {
            for (q, w) in run(o).iter().enumerate() {
                g[q * no + o] = *w;
            }
        }
        if let Some((a, b_t, rank)) = &self.merge {
            for r in 0..*rank {
                let b = &b_t[r * self.c_out + o0..][..no];
                let a = &a[(r * c_in + i0) * 9..][..ni * 9];
                for (g, a) in g.chunks_exact_mut(no).zip(a) {
                    g.iter_mut().zip(b).for_each(|(g, b)| *g += a * b);
                }
            }
        }
    }
}

/// [`transform_tiles`] (the whole map's `V`) compiled for AVX2 + FMA where the CPU has them.
///
/// # Safety
/// As [`transform_tiles`].
#[allow(clippy::too_many_arguments)]
unsafe fn transform_tiles_dispatch(input: &Source, c: usize, tiles_x: usize, first: usize, n: usize, tmp: &mut [f32], v: *mut f32, k_stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2(input: &Source, c: usize, tiles_x: usize, first: usize, n: usize, tmp: &mut [f32], v: *mut f32, k_stride: usize) {
            unsafe { transform_tiles(input, c, tiles_x, first, n, tmp, v, k_stride, 0) }
        }
        return unsafe { avx2(input, c, tiles_x, first, n, tmp, v, k_stride) };
    }
    unsafe { transform_tiles(input, c, tiles_x, first, n, tmp, v, k_stride, 0) }
}

/// A task's scratch: the taps, `U`'s piece, `M`, the output transform's rows.
#[derive(Default)]
struct Scratch {
    g: Vec<f32>,
    u: Vec<f32>,
    m: Vec<f32>,
    tmp: Vec<f32>,
    y: Vec<f32>,
}

std::thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// `f` with this thread's scratch (taken out, not borrowed, as in [`super::winograd`]).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.take();
    let r = f(&mut s);
    SCRATCH.set(s);
    r
}

/// The whole map's `V`, kept between calls (up to 35 MB for the SD UNet: 960 channels at
/// 64x64) and freed by [`release_buffers`].
static V_BUFFER: std::sync::Mutex<Vec<f32>> = std::sync::Mutex::new(Vec::new());

/// Frees the kept `V` (at the end of a UNet pass, so the decoder that runs next reuses it).
pub fn release_buffers() {
    drop(std::mem::take(&mut *V_BUFFER.lock().unwrap_or_else(|e| e.into_inner())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::winograd::direct_reference;

    /// Against the direct convolution in f64, with more channels and tiles than one block of
    /// each (so pieces of `U` accumulate and tasks split the map), odd sizes, and a branch.
    #[test]
    fn matches_the_direct_convolution() {
        let (c_in, c_out, rank) = (IN_BLOCK + 45, OUT_BLOCK + 13, 4);
        for (h, w, branch) in [(46, 50, false), (13, 9, true)] {
            let x = crate::cpu::noise(c_in * h * w, 1);
            let scale = 1.0 / (9.0 * c_in as f32).sqrt();
            let weight: Vec<f32> = crate::cpu::noise(c_out * c_in * 9, 2).iter().map(|v| v * scale).collect();
            let bias = crate::cpu::noise(c_out, 3);
            let (a, b) = (crate::cpu::noise(rank * c_in * 9, 4), crate::cpu::noise(c_out * rank, 5));
            let merge = branch.then(|| Branch { a: &a, b: &b, rank, scale: 0.01 });
            // The reference's weight: W + 0.01 B A.
            let mut merged = weight.clone();
            if branch {
                for o in 0..c_out {
                    for i in 0..c_in * 9 {
                        merged[o * c_in * 9 + i] += 0.01 * (0..rank).map(|r| b[o * rank + r] * a[r * c_in * 9 + i]).sum::<f32>();
                    }
                }
            }
            let want = direct_reference(&x, c_in, h, w, &merged, Some(&bias), c_out, 1);
            let conv = PerCall::new(&weight, merge, Some(&bias), c_in, c_out);
            let mut src = Map::zeros(h, w, c_in, 1, 1);
            src.put_nchw_upsampled(0, &x, c_in, 1);
            let mut dst = Map::zeros(h, w, c_out, 0, 0);
            conv.forward(&src, &mut dst);
            let got = dst.to_nchw(0, c_out);
            let top = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
            assert!(err <= 1e-5 * top, "{h}x{w}: error {err} of {top}");
        }
    }
}
