//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016):
//! each 4x4 block of outputs is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for its 6x6 input patch `d`, so the
//! 36 products per (output, input) channel pair replace 144 multiply-adds of the direct
//! convolution (4x fewer). Summed over input channels, the 36 element-wise products are 36
//! independent matrix products `M_k = U_k V_k` (`U_k`: c_out x c_in, `V_k`: c_in x tiles), run by
//! the `gemm` crate; the transforms around them run across channels, which the channels-last
//! [`Map`] keeps contiguous, so the compiler vectorises them.
//!
//! Error: the transforms use the points 0, ±1, ±2 (entries up to 8 in `Aᵀ`, 1/24 in `G`); in f32
//! the result differs from a direct convolution by a few ulps of the largest term, measured in
//! `tests` below and stated in docs/cpu.md.

use super::SendPtr;
use super::map::{Map, conv_out};

/// Output tiles transformed, multiplied and written back together: one gemm per transform
/// point per chunk. 64 tiles of 192 channels keep a chunk's `V` (1.7 MiB) near the L2 cache.
const TILES_PER_CHUNK: usize = 64;

/// The element-wise step fused after the convolution and its bias.
#[derive(Clone, Copy, Debug)]
pub enum Act<'a> {
    Identity,
    LeakyRelu(f32),
    /// One slope per output channel.
    Prelu(&'a [f32]),
}

/// Adds `scale * conv + residual` instead of the plain output: the residual scaling of
/// ESRGAN's dense blocks, fused into the same pass.
#[derive(Clone, Copy, Debug)]
pub struct Residual<'a> {
    pub map: &'a Map,
    pub c0: usize,
    pub scale: f32,
}

/// A 3x3 convolution's weights transformed once: `U_k` for the 36 points, each c_out x c_in
/// stored column-major (`[36][c_in][c_out]`), and the bias.
pub struct Winograd3x3 {
    pub c_in: usize,
    pub c_out: usize,
    u: Vec<f32>,
    bias: Vec<f32>,
}

impl Winograd3x3 {
    /// `weight`: torch's `[c_out, c_in, 3, 3]`. `U` is made by the vectorised f32 transform of
    /// [`Self::per_call`] (every core natively): the f64 scalar one it replaced took 7% of a
    /// full-size SD VAE decode, whose kept layers make their `U` when the model loads, and differs from
    /// it by about 1e-7 relative (test `f32_transform_matches_the_f64_one`).
    pub fn new(weight: &[f32], bias: Option<&[f32]>, c_in: usize, c_out: usize) -> Self {
        Self::per_call(weight, None, bias, c_in, c_out, Vec::new())
    }

    /// [`Self::new`] per call, for layers whose `U` is not kept (the SD UNet's: 4x its 3.5 GB of
    /// weights): in f32, eight output channels at a time and every core natively, into `u`
    /// (a buffer from an earlier call, [`Self::into_buffer`], so its pages are not faulted in
    /// again). With `merge`, the layer's low-rank branch is added to the weight first
    /// (`W + scale · B A`), so a LoRA-carrying layer costs one convolution. `G`'s entries
    /// 1/6, 1/12, 1/24 round in f32: `U` differs from the f64 one by about 1e-7 relative
    /// (test `f32_transform_matches_the_f64_one`).
    pub fn per_call(weight: &[f32], merge: Option<Merge>, bias: Option<&[f32]>, c_in: usize, c_out: usize, mut u: Vec<f32>) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9, "3x3 weight shape");
        // Only grows: every value of the first 36 c_in c_out is written below. A larger buffer
        // is made fresh (the old one freed first), as growing in place would copy the old values.
        if u.len() < 36 * c_in * c_out {
            drop(std::mem::take(&mut u));
            u = vec![0.0; 36 * c_in * c_out];
        }
        // B's columns scaled, output channels contiguous: `[rank][c_out]`.
        let b_t: Vec<f32> = merge.as_ref().map_or_else(Vec::new, |m| {
            assert_eq!((m.a.len(), m.b.len()), (m.rank * c_in * 9, c_out * m.rank), "LoRA shapes");
            (0..m.rank).flat_map(|r| (0..c_out).map(move |o| m.scale * m.b[o * m.rank + r])).collect()
        });
        let out = SendPtr(u.as_mut_ptr());
        let job = |g: &mut Vec<f32>, i: usize| {
            // SAFETY: input channel i writes only `u[(k c_in + i) c_out..][..c_out]` for each k.
            unsafe { transform_weights_dispatch(weight, merge.as_ref().map(|m| (m.a, m.rank)), &b_t, c_in, c_out, i, g, out.get()) }
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            (0..c_in).into_par_iter().for_each_init(Vec::new, job);
        }
        #[cfg(target_arch = "wasm32")]
        {
            let mut g = Vec::new();
            (0..c_in).for_each(|i| job(&mut g, i));
        }
        let bias = bias.map(<[f32]>::to_vec).unwrap_or_else(|| vec![0.0; c_out]);
        assert_eq!(bias.len(), c_out, "bias shape");
        Self { c_in, c_out, u, bias }
    }

    /// The transformed weights' memory, for the next [`Self::per_call`].
    pub fn into_buffer(self) -> Vec<f32> {
        self.u
    }

    /// Convolves channels `src_c0..src_c0 + c_in` of `src` (padded by its border) into channels
    /// `dst_c0..dst_c0 + c_out` of `dst`, after `act` and, if given, the scaled residual.
    pub fn forward(&self, src: &Map, src_c0: usize, dst: &mut Map, dst_c0: usize, act: Act, residual: Option<Residual>) {
        assert!(!std::ptr::eq(src, dst));
        assert!(src_c0 + self.c_in <= src.c, "input channels past the map");
        let source = Source { ptr: src.data.as_ptr(), geometry: Geometry::of(src), c0: src_c0 };
        self.run(source, Geometry::of(src), dst, dst_c0, act, residual);
    }

    /// [`Self::forward`] within one map: reads channels `src_c0..+c_in` and writes
    /// `dst_c0..+c_out`, which must not overlap (a dense block's growing concatenation).
    pub fn forward_in_place(&self, map: &mut Map, src_c0: usize, dst_c0: usize, act: Act) {
        assert!(src_c0 + self.c_in <= dst_c0 || dst_c0 + self.c_out <= src_c0, "channel ranges overlap");
        assert!(src_c0 + self.c_in <= map.c, "input channels past the map");
        let geometry = Geometry::of(map);
        let source = Source { ptr: map.data.as_ptr(), geometry, c0: src_c0 };
        self.run(source, geometry, map, dst_c0, act, None);
    }

    fn run(&self, source: Source, src: Geometry, dst: &mut Map, dst_c0: usize, act: Act, residual: Option<Residual>) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        assert!(dst_c0 + c_out <= dst.c, "output channels past the map");
        let (h_out, w_out) = (conv_out(src.h, src.by), conv_out(src.w, src.bx));
        assert!(dst.h == h_out && dst.w == w_out, "output map is {}x{}, the convolution gives {h_out}x{w_out}", dst.h, dst.w);
        if let Act::Prelu(s) = act {
            assert_eq!(s.len(), c_out, "one PReLU slope per channel");
        }
        if let Some(r) = residual {
            assert!(r.map.h == h_out && r.map.w == w_out && r.c0 + c_out <= r.map.c, "residual shape");
        }
        let (tiles_y, tiles_x) = (h_out.div_ceil(4), w_out.div_ceil(4));
        let tiles = tiles_y * tiles_x;
        let out = Out { ptr: dst.data.as_mut_ptr(), geometry: Geometry::of(dst), c0: dst_c0 };
        let job = |buffers: &mut Buffers, chunk: usize, par: gemm::Parallelism| {
            let first = chunk * TILES_PER_CHUNK;
            let n = TILES_PER_CHUNK.min(tiles - first);
            // SAFETY: chunks write disjoint output tiles; input and output channel ranges are
            // disjoint when they share a map (checked by the callers), so reads never see a write.
            unsafe { self.chunk_dispatch(&source, &out, tiles_x, first, n, buffers, act, residual, par) };
        };
        for_each_chunk(tiles, c_in, c_out, job);
    }

    /// [`Self::chunk`] compiled for AVX2 + FMA where the CPU has them: the transforms are
    /// written for the auto-vectoriser, and the default x86-64 target stops at SSE2. (An
    /// AVX-512 variant measured slower here: gemm already picks its own kernels at run time.)
    #[allow(clippy::too_many_arguments)]
    unsafe fn chunk_dispatch(&self, input: &Source, out: &Out, tiles_x: usize, first: usize, n: usize, b: &mut Buffers, act: Act, residual: Option<Residual>, par: gemm::Parallelism) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2(conv: &Winograd3x3, input: &Source, out: &Out, tiles_x: usize, first: usize, n: usize, b: &mut Buffers, act: Act, residual: Option<Residual>, par: gemm::Parallelism) {
                unsafe { conv.chunk(input, out, tiles_x, first, n, b, act, residual, par) }
            }
            return unsafe { avx2(self, input, out, tiles_x, first, n, b, act, residual, par) };
        }
        unsafe { self.chunk(input, out, tiles_x, first, n, b, act, residual, par) }
    }

    /// Transform `n` tiles starting at raster index `first`, multiply, transform back, write.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn chunk(&self, input: &Source, out: &Out, tiles_x: usize, first: usize, n: usize, b: &mut Buffers, act: Act, residual: Option<Residual>, par: gemm::Parallelism) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        // V_k: [36][n][c_in]
        for t in 0..n {
            unsafe { transform_tile(input.ptr, &input.geometry, input.c0, c_in, tiles_x, first + t, &mut b.tmp, b.v.as_mut_ptr(), n * c_in, t * c_in) };
        }
        let (v, k_stride, tile_stride) = (b.v.as_ptr(), n * c_in, c_in);
        // M_k = U_k V_k: [36][n][c_out]
        for k in 0..36 {
            unsafe {
                gemm::gemm(
                    c_out,
                    n,
                    c_in,
                    b.m.as_mut_ptr().add(k * n * c_out),
                    c_out as isize,
                    1,
                    false,
                    self.u.as_ptr().add(k * c_in * c_out),
                    c_out as isize,
                    1,
                    v.add(k * k_stride),
                    tile_stride as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
        let og = &out.geometry;
        for t in 0..n {
            let (ty, tx) = ((first + t) / tiles_x, (first + t) % tiles_x);
            let rows = 4.min(og.h - 4 * ty);
            let cols = 4.min(og.w - 4 * tx);
            output_transform(&b.m, n * c_out, t * c_out, c_out, &mut b.tmp[..24 * c_out], &mut b.y);
            for i in 0..rows {
                for o in 0..cols {
                    let (y, x) = (4 * ty + i, 4 * tx + o);
                    let at = ((y + og.by) * og.ws + x + og.bx) * og.c + out.c0;
                    // SAFETY: this tile's pixels belong to this chunk alone.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(at), c_out) };
                    let acc = &b.y[(i * 4 + o) * c_out..][..c_out];
                    let res = residual.map(|r| (&r.map.data[r.map.at(y, x) + r.c0..][..c_out], r.scale));
                    epilogue(acc, &self.bias, act, res, dst);
                }
            }
        }
    }
}

/// A low-rank branch merged into a 3x3 weight by [`Winograd3x3::per_call`]: `W + scale · B A`
/// with `a`: `[rank, c_in, 3, 3]`, `b`: `[c_out, rank]` (peft's lora_A / lora_B).
pub struct Merge<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub rank: usize,
    pub scale: f32,
}

/// [`transform_weights`] compiled for AVX2 + FMA where the CPU has them.
///
/// # Safety
/// As [`transform_weights`].
#[allow(clippy::too_many_arguments)]
unsafe fn transform_weights_dispatch(w: &[f32], a: Option<(&[f32], usize)>, b_t: &[f32], c_in: usize, c_out: usize, i: usize, g: &mut Vec<f32>, u: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2(w: &[f32], a: Option<(&[f32], usize)>, b_t: &[f32], c_in: usize, c_out: usize, i: usize, g: &mut Vec<f32>, u: *mut f32) {
            unsafe { transform_weights(w, a, b_t, c_in, c_out, i, g, u) }
        }
        return unsafe { avx2(w, a, b_t, c_in, c_out, i, g, u) };
    }
    unsafe { transform_weights(w, a, b_t, c_in, c_out, i, g, u) }
}

/// `U_k[i][·] = (G g Gᵀ)_k` for input channel `i` and every output channel, written to
/// `u[(k c_in + i) c_out..][..c_out]`; `g` is scratch. With `a` (and `b_t`, B's scaled columns
/// `[rank][c_out]`), the branch is added to each 3x3 kernel first.
///
/// # Safety
/// `u` has room for `36 c_in c_out` values; no other thread writes input channel `i`'s rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn transform_weights(w: &[f32], a: Option<(&[f32], usize)>, b_t: &[f32], c_in: usize, c_out: usize, i: usize, g: &mut Vec<f32>, u: *mut f32) {
    // The 9 taps of every output channel's kernel, output channels contiguous: `[9][c_out]`.
    g.resize(9 * c_out, 0.0);
    for o in 0..c_out {
        let k = &w[(o * c_in + i) * 9..][..9];
        for (j, v) in k.iter().enumerate() {
            g[j * c_out + o] = *v;
        }
    }
    if let Some((a, rank)) = a {
        for r in 0..rank {
            let b = &b_t[r * c_out..][..c_out];
            for j in 0..9 {
                let a_rij = a[(r * c_in + i) * 9 + j];
                g[j * c_out..][..c_out].iter_mut().zip(b).for_each(|(g, b)| *g += a_rij * b);
            }
        }
    }
    #[inline(always)]
    fn block<const N: usize>(g: &[f32], c_out: usize, o: usize, u: *mut f32, c_in: usize, i: usize) {
        let tap: [[f32; N]; 9] = std::array::from_fn(|j| load::<N>(&g[j * c_out..], o));
        // G applied to three values (the zeros of G left out, so no multiplications by 0).
        #[inline(always)]
        fn g6<const N: usize>(x0: [f32; N], x1: [f32; N], x2: [f32; N]) -> [[f32; N]; 6] {
            let mut y = [[0.0f32; N]; 6];
            for l in 0..N {
                let (a, b, c) = (x0[l], x1[l], x2[l]);
                y[0][l] = a * (1.0 / 4.0);
                y[1][l] = (a + b + c) * (-1.0 / 6.0);
                y[2][l] = (a - b + c) * (-1.0 / 6.0);
                y[3][l] = a * (1.0 / 24.0) + b * (1.0 / 12.0) + c * (1.0 / 6.0);
                y[4][l] = a * (1.0 / 24.0) - b * (1.0 / 12.0) + c * (1.0 / 6.0);
                y[5][l] = c;
            }
            y
        }
        // G g: column c of the kernel (taps c, 3 + c, 6 + c) → gg[·][c].
        let cols: [[[f32; N]; 6]; 3] = std::array::from_fn(|c| g6(tap[c], tap[3 + c], tap[6 + c]));
        for r in 0..6 {
            // (G g) Gᵀ: row r.
            let row = g6(cols[0][r], cols[1][r], cols[2][r]);
            for (s, v) in row.iter().enumerate() {
                // SAFETY: within input channel i's rows (the caller's contract).
                let dst = unsafe { std::slice::from_raw_parts_mut(u.add(((r * 6 + s) * c_in + i) * c_out + o), N) };
                dst.copy_from_slice(v);
            }
        }
    }
    by_lanes(c_out, |o, wide| if wide { block::<LANES>(g, c_out, o, u, c_in, i) } else { block::<1>(g, c_out, o, u, c_in, i) });
}

/// `job(buffers, chunk, parallelism)` for every chunk of `tiles`, on every core natively, with
/// this thread's scratch buffers. With fewer chunks than cores (a UNet's 32x32 map is one chunk)
/// the chunks run in turn and each matrix product uses every core instead.
fn for_each_chunk(tiles: usize, c_in: usize, c_out: usize, job: impl Fn(&mut Buffers, usize, gemm::Parallelism) + Sync) {
    let job = |chunk: usize, par| {
        // Taken out, not borrowed: a rayon thread waiting inside a matrix product may run
        // another convolution meanwhile.
        let mut buffers = SCRATCH.take();
        buffers.fit(c_in, c_out);
        job(&mut buffers, chunk, par);
        SCRATCH.set(buffers);
    };
    let chunks = tiles.div_ceil(TILES_PER_CHUNK);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        if chunks < rayon::current_num_threads() {
            (0..chunks).for_each(|c| job(c, gemm::Parallelism::Rayon(0)));
        } else {
            (0..chunks).into_par_iter().for_each(|c| job(c, gemm::Parallelism::None));
        }
    }
    #[cfg(target_arch = "wasm32")]
    (0..chunks).for_each(|c| job(c, gemm::Parallelism::None));
}

/// `Bᵀ d B` of tile `tile` (raster order) of the map at `ptr`, channels `c0..c0 + c`, written
/// to `v[k * k_stride + at..][..c]` for point k.
///
/// # Safety
/// `ptr` is a map of `g`'s geometry with at least `c0 + c` channels whose tiles' patches lie
/// inside it ([`Map::zeros`] sizes it so); `v` has room for every point.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn transform_tile(ptr: *const f32, g: &Geometry, c0: usize, c: usize, tiles_x: usize, tile: usize, tmp: &mut [f32], v: *mut f32, k_stride: usize, at: usize) {
    let (ty, tx) = (tile / tiles_x, tile % tiles_x);
    // Top-left of the 6x6 patch in stored coordinates (the border is the padding).
    let base = (4 * ty * g.ws + 4 * tx) * g.c + c0;
    let patch = |r: usize, s: usize| unsafe { std::slice::from_raw_parts(ptr.add(base + (r * g.ws + s) * g.c), c) };
    input_transform(patch, &mut tmp[..36 * c], v, k_stride, at, c);
}

/// What a chunk needs of a map, copied out so no reference to it crosses threads.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    by: usize,
    bx: usize,
    ws: usize,
}

impl Geometry {
    fn of(m: &Map) -> Self {
        Self { h: m.h, w: m.w, c: m.c, by: m.by, bx: m.bx, ws: m.ws }
    }
}

/// A convolution's input: channels `c0..` of a map, transformed chunk by chunk as it runs.
/// (Keeping a dense block's whole concatenation transformed instead, so each feature is
/// transformed once, measured 1.4x slower on x4plus: the transformed map is 2.25x the map and
/// outgrows the caches, where a chunk's stays in L2.)
struct Source {
    ptr: *const f32,
    geometry: Geometry,
    c0: usize,
}
struct Out {
    ptr: *mut f32,
    geometry: Geometry,
    c0: usize,
}
// SAFETY: the pointers are only used as described in `Winograd3x3::run`.
unsafe impl Sync for Source {}
unsafe impl Sync for Out {}

/// Per-thread scratch: `V` and `M` for one chunk, and the transforms' intermediate rows.
#[derive(Default)]
struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
    tmp: Vec<f32>,
    y: Vec<f32>,
}

std::thread_local! {
    /// Kept per thread across calls: a fresh 2 MiB of zeroes per chunk cost more than the
    /// transforms.
    static SCRATCH: std::cell::RefCell<Buffers> = const { std::cell::RefCell::new(Buffers { v: Vec::new(), m: Vec::new(), tmp: Vec::new(), y: Vec::new() }) };
}

impl Buffers {
    /// Grows the buffers to what a chunk of `c_in` → `c_out` needs; every value read is
    /// written first, so old contents do not matter.
    fn fit(&mut self, c_in: usize, c_out: usize) {
        let grow = |b: &mut Vec<f32>, n: usize| {
            if b.len() < n {
                b.resize(n, 0.0);
            }
        };
        grow(&mut self.v, 36 * TILES_PER_CHUNK * c_in);
        grow(&mut self.m, 36 * TILES_PER_CHUNK * c_out);
        grow(&mut self.tmp, 36 * c_in.max(c_out));
        grow(&mut self.y, 16 * c_out);
    }
}

/// `Bᵀ d B` for one patch, every channel at once: `d(r, s)` is pixel (r, s)'s channels; the
/// result for point k goes to `v[k * k_stride + at..][..c]`.
#[inline(always)]
fn input_transform<'a>(d: impl Fn(usize, usize) -> &'a [f32], tmp: &mut [f32], v: *mut f32, k_stride: usize, at: usize, c: usize) {
    // Rows: t[i][s] = Σ_r Bᵀ[i][r] d[r][s].
    for s in 0..6 {
        let (d0, d1, d2, d3, d4, d5) = (d(0, s), d(1, s), d(2, s), d(3, s), d(4, s), d(5, s));
        let t = &mut tmp[s * 6 * c..][..6 * c];
        let (t0, rest) = t.split_at_mut(c);
        let (t1, rest) = rest.split_at_mut(c);
        let (t2, rest) = rest.split_at_mut(c);
        let (t3, rest) = rest.split_at_mut(c);
        let (t4, t5) = rest.split_at_mut(c);
        bt_row([d0, d1, d2, d3, d4, d5], [t0, t1, t2, t3, t4, t5], c);
    }
    // Columns: V[i*6 + k] = Σ_s t[i][s] B[s][k].
    for i in 0..6 {
        let e = |s: usize| &tmp[(s * 6 + i) * c..][..c];
        let (e0, e1, e2, e3, e4, e5) = (e(0), e(1), e(2), e(3), e(4), e(5));
        // SAFETY: the caller gives room for every point; the six slots are disjoint.
        let outs: [&mut [f32]; 6] = std::array::from_fn(|k| unsafe { std::slice::from_raw_parts_mut(v.add((i * 6 + k) * k_stride + at), c) });
        bt_row([e0, e1, e2, e3, e4, e5], outs, c);
    }
}

/// Channels handled together by the transforms: one AVX2 register (two SSE / simd128 ones).
/// Loading into fixed-size arrays before storing lets the compiler vectorise without run-time
/// checks that the rows do not overlap.
const LANES: usize = 8;

#[inline(always)]
fn load<const N: usize>(x: &[f32], j: usize) -> [f32; N] {
    let mut v = [0.0; N];
    v.copy_from_slice(&x[j..j + N]);
    v
}

/// `block(j, wide)` for channels `0..c`: [`LANES`] at a time (`wide`), then one by one.
#[inline(always)]
fn by_lanes(c: usize, mut block: impl FnMut(usize, bool)) {
    let mut j = 0;
    while j + LANES <= c {
        block(j, true);
        j += LANES;
    }
    while j < c {
        block(j, false);
        j += 1;
    }
}

/// One application of `Bᵀ` to six rows of `c` values.
#[inline(always)]
fn bt_row(d: [&[f32]; 6], t: [&mut [f32]; 6], c: usize) {
    #[inline(always)]
    fn block<const N: usize>(d: [&[f32]; 6], t: &mut [&mut [f32]; 6], j: usize) {
        let (d0, d1, d2, d3, d4, d5) = (load::<N>(d[0], j), load::<N>(d[1], j), load::<N>(d[2], j), load::<N>(d[3], j), load::<N>(d[4], j), load::<N>(d[5], j));
        let mut y = [[0.0f32; N]; 6];
        for l in 0..N {
            let (a1, a2, a3, a4) = (d1[l], d2[l], d3[l], d4[l]);
            y[0][l] = 4.0 * d0[l] - 5.0 * a2 + a4;
            y[1][l] = (a4 + a3) - 4.0 * (a1 + a2);
            y[2][l] = (a4 - a3) + 4.0 * (a1 - a2);
            y[3][l] = (a4 - a2) + 2.0 * (a3 - a1);
            y[4][l] = (a4 - a2) - 2.0 * (a3 - a1);
            y[5][l] = 4.0 * a1 - 5.0 * a3 + d5[l];
        }
        for (t, y) in t.iter_mut().zip(&y) {
            t[j..j + N].copy_from_slice(y);
        }
    }
    let mut t = t;
    by_lanes(c, |j, wide| if wide { block::<LANES>(d, &mut t, j) } else { block::<1>(d, &mut t, j) });
}

/// `Aᵀ m A` for one tile: `m` point k at `m[k * k_stride + at..][..c]`; the 4x4 result goes to
/// `y[(i * 4 + o) * c..][..c]`.
#[inline(always)]
fn output_transform(m: &[f32], k_stride: usize, at: usize, c: usize, tmp: &mut [f32], y: &mut [f32]) {
    // Rows: t[i][s] = Σ_r Aᵀ[i][r] m[r][s].
    for s in 0..6 {
        let p = |r: usize| &m[(r * 6 + s) * k_stride + at..][..c];
        let t = &mut tmp[s * 4 * c..][..4 * c];
        let (t0, rest) = t.split_at_mut(c);
        let (t1, rest) = rest.split_at_mut(c);
        let (t2, t3) = rest.split_at_mut(c);
        at_row([p(0), p(1), p(2), p(3), p(4), p(5)], [t0, t1, t2, t3], c);
    }
    // Columns: y[i][o] = Σ_s t[i][s] A[s][o].
    for i in 0..4 {
        let e = |s: usize| &tmp[(s * 4 + i) * c..][..c];
        let row = &mut y[i * 4 * c..][..4 * c];
        let (y0, rest) = row.split_at_mut(c);
        let (y1, rest) = rest.split_at_mut(c);
        let (y2, y3) = rest.split_at_mut(c);
        at_row([e(0), e(1), e(2), e(3), e(4), e(5)], [y0, y1, y2, y3], c);
    }
}

/// One application of `Aᵀ` to six rows of `c` values.
#[inline(always)]
fn at_row(m: [&[f32]; 6], t: [&mut [f32]; 4], c: usize) {
    #[inline(always)]
    fn block<const N: usize>(m: [&[f32]; 6], t: &mut [&mut [f32]; 4], j: usize) {
        let (m0, m1, m2, m3, m4, m5) = (load::<N>(m[0], j), load::<N>(m[1], j), load::<N>(m[2], j), load::<N>(m[3], j), load::<N>(m[4], j), load::<N>(m[5], j));
        let mut y = [[0.0f32; N]; 4];
        for l in 0..N {
            let (s12, d12, s34, d34) = (m1[l] + m2[l], m1[l] - m2[l], m3[l] + m4[l], m3[l] - m4[l]);
            y[0][l] = m0[l] + s12 + s34;
            y[1][l] = d12 + 2.0 * d34;
            y[2][l] = s12 + 4.0 * s34;
            y[3][l] = d12 + 8.0 * d34 + m5[l];
        }
        for (t, y) in t.iter_mut().zip(&y) {
            t[j..j + N].copy_from_slice(y);
        }
    }
    let mut t = t;
    by_lanes(c, |j, wide| if wide { block::<LANES>(m, &mut t, j) } else { block::<1>(m, &mut t, j) });
}

#[inline(always)]
fn epilogue(acc: &[f32], bias: &[f32], act: Act, residual: Option<(&[f32], f32)>, dst: &mut [f32]) {
    let c = dst.len();
    let (acc, bias) = (&acc[..c], &bias[..c]);
    match act {
        Act::Identity => dst.iter_mut().zip(acc.iter().zip(bias)).for_each(|(d, (a, b))| *d = a + b),
        Act::LeakyRelu(slope) => dst.iter_mut().zip(acc.iter().zip(bias)).for_each(|(d, (a, b))| {
            let v = a + b;
            *d = if v >= 0.0 { v } else { v * slope };
        }),
        Act::Prelu(slopes) => dst.iter_mut().zip(acc.iter().zip(bias).zip(&slopes[..c])).for_each(|(d, ((a, b), s))| {
            let v = a + b;
            *d = if v >= 0.0 { v } else { v * s };
        }),
    }
    if let Some((r, scale)) = residual {
        dst.iter_mut().zip(&r[..c]).for_each(|(d, r)| *d = *d * scale + r);
    }
}

/// The direct convolution in f64, for tests and the error bound: `[c_out, h_out, w_out]`.
#[doc(hidden)]
pub fn direct_reference(x: &[f32], c_in: usize, h: usize, w: usize, weight: &[f32], bias: Option<&[f32]>, c_out: usize, pad: usize) -> Vec<f64> {
    let (ho, wo) = (conv_out(h, pad), conv_out(w, pad));
    let mut out = vec![0.0f64; c_out * ho * wo];
    for o in 0..c_out {
        for y in 0..ho {
            for xo in 0..wo {
                let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                for i in 0..c_in {
                    for r in 0..3 {
                        for s in 0..3 {
                            let (iy, ix) = ((y + r) as isize - pad as isize, (xo + s) as isize - pad as isize);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += x[(i * h + iy as usize) * w + ix as usize] as f64 * weight[((o * c_in + i) * 3 + r) * 3 + s] as f64;
                            }
                        }
                    }
                }
                out[(o * ho + y) * wo + xo] = acc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::noise;

    impl Winograd3x3 {
        /// [`Self::new`] with `U` computed in f64 and rounded once, scalar and on one thread: the
        /// tests' reference for the f32 transform.
        fn new_f64(weight: &[f32], bias: Option<&[f32]>, c_in: usize, c_out: usize) -> Self {
            assert_eq!(weight.len(), c_out * c_in * 9, "3x3 weight shape");
            const G: [[f32; 3]; 6] = [
                [1.0 / 4.0, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ];
            let mut u = vec![0.0f32; 36 * c_in * c_out];
            for i in 0..c_in {
                for o in 0..c_out {
                    let g = &weight[(o * c_in + i) * 9..][..9];
                    // G g (6x3), then (G g) Gᵀ (6x6); in f64 so the transform adds no rounding.
                    let mut gg = [[0.0f64; 3]; 6];
                    for (r, row) in G.iter().enumerate() {
                        for c in 0..3 {
                            gg[r][c] = (0..3).map(|k| row[k] as f64 * g[k * 3 + c] as f64).sum();
                        }
                    }
                    for r in 0..6 {
                        for s in 0..6 {
                            let v: f64 = (0..3).map(|k| gg[r][k] * G[s][k] as f64).sum();
                            u[((r * 6 + s) * c_in + i) * c_out + o] = v as f32;
                        }
                    }
                }
            }
            let bias = bias.map(<[f32]>::to_vec).unwrap_or_else(|| vec![0.0; c_out]);
            assert_eq!(bias.len(), c_out, "bias shape");
            Self { c_in, c_out, u, bias }
        }
    }

    /// Every padding and a size that is not a multiple of 4; error relative to the output's
    /// largest magnitude.
    #[test]
    fn matches_the_direct_convolution() {
        for (c_in, c_out, h, w, pad) in [(3, 5, 7, 9, 1), (8, 4, 13, 6, 0), (16, 8, 4, 4, 1), (5, 3, 2, 3, 1), (32, 16, 21, 19, 1)] {
            let x = noise(c_in * h * w, 1);
            let wt = noise(c_out * c_in * 9, 2);
            let b = noise(c_out, 3);
            let want = direct_reference(&x, c_in, h, w, &wt, Some(&b), c_out, pad);
            let conv = Winograd3x3::new(&wt, Some(&b), c_in, c_out);
            let src = Map::from_nchw(&x, c_in, h, w, pad, pad, 0);
            let mut dst = Map::zeros(conv_out(h, pad), conv_out(w, pad), c_out, 1, 1);
            conv.forward(&src, 0, &mut dst, 0, Act::Identity, None);
            let got = dst.to_nchw(0, c_out);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
            assert!(err <= 1e-5 * scale, "c_in {c_in} c_out {c_out} {h}x{w} pad {pad}: error {err} of {scale}");
            // The border of the output map stays zero (the next convolution's padding).
            let total: f64 = dst.data.iter().map(|v| *v as f64).sum();
            let inside: f64 = got.iter().map(|v| *v as f64).sum();
            assert!((total - inside).abs() < 1e-3, "wrote outside the image");
        }
    }

    /// The f32 transform (eight output channels at a time, and a tail) against the f64 one,
    /// with and without a merged LoRA branch, into a reused larger buffer.
    #[test]
    fn f32_transform_matches_the_f64_one() {
        let (c_in, c_out, rank, scale) = (13, 19, 4, 0.7f32);
        let wt = noise(c_out * c_in * 9, 7);
        let (a, b) = (noise(rank * c_in * 9, 8), noise(c_out * rank, 9));
        let mut merged = wt.clone();
        for o in 0..c_out {
            for i in 0..c_in {
                for j in 0..9 {
                    let ba: f64 = (0..rank).map(|r| b[o * rank + r] as f64 * a[(r * c_in + i) * 9 + j] as f64).sum();
                    merged[(o * c_in + i) * 9 + j] = (wt[(o * c_in + i) * 9 + j] as f64 + scale as f64 * ba) as f32;
                }
            }
        }
        let n = 36 * c_in * c_out;
        for (weights, merge) in [(&wt, None), (&merged, Some(Merge { a: &a, b: &b, rank, scale }))] {
            let want = Winograd3x3::new_f64(weights, None, c_in, c_out);
            let got = Winograd3x3::per_call(&wt, merge, None, c_in, c_out, vec![f32::NAN; n + 100]);
            let top = want.u.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = got.u[..n].iter().zip(&want.u).fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
            assert!(err <= 1e-6 * top, "U differs by {err} of {top}");
            // The convolution reads only its own part of a longer buffer.
            let x = noise(c_in * 9 * 11, 10);
            let src = Map::from_nchw(&x, c_in, 9, 11, 1, 1, 0);
            let (mut d1, mut d2) = (Map::zeros(9, 11, c_out, 1, 1), Map::zeros(9, 11, c_out, 1, 1));
            want.forward(&src, 0, &mut d1, 0, Act::Identity, None);
            got.forward(&src, 0, &mut d2, 0, Act::Identity, None);
            let top = d1.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = d1.data.iter().zip(&d2.data).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(diff <= 1e-5 * top, "outputs differ by {diff} of {top}");
        }
    }

    #[test]
    fn fused_epilogue_and_in_place_channels() {
        let (c_in, c_out, h, w) = (6, 4, 9, 10);
        let x = noise(c_in * h * w, 4);
        let wt = noise(c_out * c_in * 9, 5);
        let b = noise(c_out, 6);
        let slopes = [0.1, 0.2, 0.3, 0.4];
        let want = direct_reference(&x, c_in, h, w, &wt, Some(&b), c_out, 1);
        let conv = Winograd3x3::new(&wt, Some(&b), c_in, c_out);
        let mut map = Map::from_nchw(&x, c_in, h, w, 1, 1, c_out);
        conv.forward_in_place(&mut map, 0, c_in, Act::Prelu(&slopes));
        let got = map.to_nchw(c_in, c_out);
        assert_eq!(map.to_nchw(0, c_in), x, "the input channels are kept");
        for (k, (g, v)) in got.iter().zip(&want).enumerate() {
            let s = slopes[k / (h * w)] as f64;
            let v = if *v >= 0.0 { *v } else { v * s };
            assert!((*g as f64 - v).abs() < 1e-5, "{g} vs {v}");
        }
        // Residual: out = 0.2 * leaky(conv) + x[0..c_out].
        let mut dst = Map::zeros(h, w, c_out, 1, 1);
        let src = Map::from_nchw(&x, c_in, h, w, 1, 1, 0);
        conv.forward(&src, 0, &mut dst, 0, Act::LeakyRelu(0.2), Some(Residual { map: &src, c0: 0, scale: 0.2 }));
        for (k, g) in dst.to_nchw(0, c_out).iter().enumerate() {
            let w = want[k];
            let w = if w >= 0.0 { w } else { w * 0.2 } * 0.2 + x[k] as f64;
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
    }
}
