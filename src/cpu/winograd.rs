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

/// `$block::<N>($args.., j)` for channels `j` in `0..$c`: [`LANES`] at a time, then one by one.
/// A macro, not a function taking a closure: the closure was compiled out of line for the
/// default target (SSE2), so the AVX2 build of the transforms around it never reached the
/// arithmetic (`perf annotate`: no `ymm` register in it).
macro_rules! by_lanes {
    ($c:expr, $block:ident($($arg:expr),*)) => {{
        let c = $c;
        let mut j = 0;
        while j + LANES <= c {
            $block::<LANES>($($arg,)* j);
            j += LANES;
        }
        while j < c {
            $block::<1>($($arg,)* j);
            j += 1;
        }
    }};
}

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
    /// `weight`: torch's `[c_out, c_in, 3, 3]`. `U` is made in f32, eight output channels at a
    /// time and every core natively: the f64 scalar transform it replaced took 7% of a
    /// full-size SD VAE decode, whose kept layers make their `U` when the model loads. `G`'s
    /// entries 1/6, 1/12, 1/24 round in f32: `U` differs from the f64 one by about 1e-7
    /// relative (test `f32_transform_matches_the_f64_one`).
    pub fn new(weight: &[f32], bias: Option<&[f32]>, c_in: usize, c_out: usize) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9, "3x3 weight shape");
        let mut u = vec![0.0; 36 * c_in * c_out];
        let out = SendPtr(u.as_mut_ptr());
        let job = |g: &mut Vec<f32>, i: usize| {
            // SAFETY: input channel i writes only `u[(k c_in + i) c_out..][..c_out]` for each k.
            unsafe { transform_weights_dispatch(weight, c_in, c_out, i, g, out.get()) }
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
        // V_k: [36][n][c_in]; M_k = U_k V_k: [36][n][c_out].
        unsafe {
            transform_tiles(input, self.c_in, tiles_x, first, n, &mut b.tmp, b.v.as_mut_ptr(), point_stride(n * self.c_in), first);
            self.products(b.v.as_ptr(), point_stride(n * self.c_in), b.m.as_mut_ptr(), point_stride(n * self.c_out), n, par);
        }
        self.transform_out(out, tiles_x, first, n, &b.m, point_stride(n * self.c_out), first, &mut b.tmp, &mut b.y, act, residual);
    }

    /// `M_k = U_k V_k` for the 36 points over `tiles` tiles (`V_k`: `[tiles][c_in]` at
    /// `v[k v_stride..]`, `M_k`: `[tiles][c_out]` at `m[k m_stride..]`).
    ///
    /// # Safety
    /// `v` and `m` have room for 36 points at those strides.
    unsafe fn products(&self, v: *const f32, v_stride: usize, m: *mut f32, m_stride: usize, tiles: usize, par: gemm::Parallelism) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        for k in 0..36 {
            unsafe {
                gemm::gemm(
                    c_out,
                    tiles,
                    c_in,
                    m.add(k * m_stride),
                    c_out as isize,
                    1,
                    false,
                    self.u.as_ptr().add(k * c_in * c_out),
                    c_out as isize,
                    1,
                    v.add(k * v_stride),
                    c_in as isize,
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
    }

    /// `Aᵀ M A` of tiles `first..first + n` (`M` laid out as [`Self::products`] writes it, points
    /// `m_stride` apart, tile `t` at `t - at0`), then the epilogue, into the output map.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn transform_out(&self, out: &Out, tiles_x: usize, first: usize, n: usize, m: &[f32], m_stride: usize, at0: usize, tmp: &mut [f32], y: &mut [f32], act: Act, residual: Option<Residual>) {
        let c_out = self.c_out;
        let og = &out.geometry;
        for tile in first..first + n {
            let (ty, tx) = (tile / tiles_x, tile % tiles_x);
            let rows = 4.min(og.h - 4 * ty);
            let cols = 4.min(og.w - 4 * tx);
            output_transform(m, m_stride, (tile - at0) * c_out, c_out, &mut tmp[..24 * c_out], y);
            for i in 0..rows {
                for o in 0..cols {
                    let (yy, x) = (4 * ty + i, 4 * tx + o);
                    let at = ((yy + og.by) * og.ws + x + og.bx) * og.c + out.c0;
                    // SAFETY: this tile's pixels are written by this call alone.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(at), c_out) };
                    let acc = &y[(i * 4 + o) * c_out..][..c_out];
                    let res = residual.map(|r| (&r.map.data[r.map.at(yy, x) + r.c0..][..c_out], r.scale));
                    epilogue(acc, &self.bias, act, res, dst);
                }
            }
        }
    }

}

/// The distance between consecutive points' values in the transforms' buffers (`V`, `M`, a
/// piece of `U`) that hold `values` per point: a little more than `values`, so the 36 points a
/// transform reads or writes for one tile do not all fall in one set of the L1 cache, as they do
/// when `values` is a multiple of 1024 (4 KiB). Padded so, the per-call kernel transform of a
/// full-size UNet pass went 0.32 → 0.14 s (summed over both threads; docs/cpu.md).
pub(super) fn point_stride(values: usize) -> usize {
    values + 16
}

/// Lengthens `b` to at least `n` values (its old values kept: callers write before reading).
pub(super) fn grow(b: &mut Vec<f32>, n: usize) {
    if b.len() < n {
        b.resize(n, 0.0);
    }
}

/// `f(i)` for `i` in `0..n`, over every core natively.
pub(super) fn for_each_index(n: usize, f: impl Fn(usize) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).for_each(f);
}


/// [`transform_weights`] compiled for AVX2 + FMA where the CPU has them.
///
/// # Safety
/// As [`transform_weights`].
#[allow(clippy::too_many_arguments)]
unsafe fn transform_weights_dispatch(w: &[f32], c_in: usize, c_out: usize, i: usize, g: &mut Vec<f32>, u: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(w: &[f32], c_in: usize, c_out: usize, i: usize, g: &mut Vec<f32>, u: *mut f32) {
            unsafe { transform_weights(w, c_in, c_out, i, g, u) }
        }
        return unsafe { avx2(w, c_in, c_out, i, g, u) };
    }
    unsafe { transform_weights(w, c_in, c_out, i, g, u) }
}

/// `U_k[i][·] = (G g Gᵀ)_k` for input channel `i` and every output channel, written to
/// `u[(k c_in + i) c_out..][..c_out]`; `g` is scratch.
///
/// # Safety
/// `u` has room for `36 c_in c_out` values; no other thread writes input channel `i`'s rows.
#[inline(always)]
unsafe fn transform_weights(w: &[f32], c_in: usize, c_out: usize, i: usize, g: &mut Vec<f32>, u: *mut f32) {
    // The 9 taps of every output channel's kernel, output channels contiguous: `[9][c_out]`.
    g.resize(9 * c_out, 0.0);
    for o in 0..c_out {
        let k = &w[(o * c_in + i) * 9..][..9];
        for (j, v) in k.iter().enumerate() {
            g[j * c_out + o] = *v;
        }
    }
    // SAFETY: input channel i's rows `u[(k c_in + i) c_out..][..c_out]` (the caller's contract).
    unsafe { kernel_transform(g, c_out, u.add(i * c_out), c_in * c_out) };
}

/// `G g Gᵀ` of `n` kernels whose 9 taps are `g[j n + o]` (kernel `o` of `0..n`), point k of
/// kernel `o` written to `dst[k k_stride + o]`, eight kernels at a time.
///
/// # Safety
/// `dst` has room for `35 k_stride + n` values; nothing else writes them meanwhile.
#[inline(always)]
pub(super) unsafe fn kernel_transform(g: &[f32], n: usize, dst: *mut f32, k_stride: usize) {
    #[inline(always)]
    fn block<const N: usize>(g: &[f32], n: usize, dst: *mut f32, k_stride: usize, o: usize) {
        // Named values, not an array built by `from_fn`: that one was assembled on the stack and
        // copied by a `memcpy` call per block (a quarter of a UNet layer's time on 16x16 maps).
        let tap = |j: usize| load::<N>(&g[j * n..], o);
        let (t0, t1, t2, t3, t4, t5, t6, t7, t8) = (tap(0), tap(1), tap(2), tap(3), tap(4), tap(5), tap(6), tap(7), tap(8));
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
        let (c0, c1, c2) = (g6(t0, t3, t6), g6(t1, t4, t7), g6(t2, t5, t8));
        for r in 0..6 {
            // (G g) Gᵀ: row r.
            let row = g6(c0[r], c1[r], c2[r]);
            for (s, v) in row.iter().enumerate() {
                // SAFETY: within `dst` (the caller's contract).
                let d = unsafe { std::slice::from_raw_parts_mut(dst.add((r * 6 + s) * k_stride + o), N) };
                d.copy_from_slice(v);
            }
        }
    }
    by_lanes!(n, block(g, n, dst, k_stride));
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

/// `Bᵀ d B` of tiles `first..first + n` (raster order) of `input`'s `c` channels: tile `t`'s
/// point k at `v[k k_stride + (t - at0) c..][..c]`.
///
/// # Safety
/// As [`transform_tile`]; `v` has room for `36 k_stride` values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn transform_tiles(input: &Source, c: usize, tiles_x: usize, first: usize, n: usize, tmp: &mut [f32], v: *mut f32, k_stride: usize, at0: usize) {
    for t in first..first + n {
        unsafe { transform_tile(input.ptr, &input.geometry, input.c0, c, tiles_x, t, tmp, v, k_stride, (t - at0) * c) };
    }
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
pub(super) struct Geometry {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c: usize,
    pub(super) by: usize,
    pub(super) bx: usize,
    pub(super) ws: usize,
}

impl Geometry {
    pub(super) fn of(m: &Map) -> Self {
        Self { h: m.h, w: m.w, c: m.c, by: m.by, bx: m.bx, ws: m.ws }
    }
}

/// A convolution's input: channels `c0..` of a map, transformed chunk by chunk as it runs.
/// (Keeping a dense block's whole concatenation transformed instead, so each feature is
/// transformed once, measured 1.4x slower on x4plus: the transformed map is 2.25x the map and
/// outgrows the caches, where a chunk's stays in L2.)
pub(super) struct Source {
    pub(super) ptr: *const f32,
    pub(super) geometry: Geometry,
    pub(super) c0: usize,
}
pub(super) struct Out {
    pub(super) ptr: *mut f32,
    pub(super) geometry: Geometry,
    pub(super) c0: usize,
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
        grow(&mut self.v, 36 * point_stride(TILES_PER_CHUNK * c_in));
        grow(&mut self.m, 36 * point_stride(TILES_PER_CHUNK * c_out));
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
pub(super) fn load<const N: usize>(x: &[f32], j: usize) -> [f32; N] {
    let mut v = [0.0; N];
    v.copy_from_slice(&x[j..j + N]);
    v
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
    by_lanes!(c, block(d, &mut t));
}

/// `Aᵀ m A` for one tile: `m` point k at `m[k * k_stride + at..][..c]`; the 4x4 result goes to
/// `y[(i * 4 + o) * c..][..c]`.
#[inline(always)]
pub(super) fn output_transform(m: &[f32], k_stride: usize, at: usize, c: usize, tmp: &mut [f32], y: &mut [f32]) {
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
    by_lanes!(c, block(m, &mut t));
}

#[inline(always)]
pub(super) fn epilogue(acc: &[f32], bias: &[f32], act: Act, residual: Option<(&[f32], f32)>, dst: &mut [f32]) {
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

    /// The f32 transform (eight output channels at a time, and a tail) against the f64 one.
    #[test]
    fn f32_transform_matches_the_f64_one() {
        let (c_in, c_out) = (13, 19);
        let wt = noise(c_out * c_in * 9, 7);
        let want = Winograd3x3::new_f64(&wt, None, c_in, c_out);
        let got = Winograd3x3::new(&wt, None, c_in, c_out);
        let top = want.u.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = got.u.iter().zip(&want.u).fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
        assert!(err <= 1e-6 * top, "U differs by {err} of {top}");
        let x = noise(c_in * 9 * 11, 10);
        let src = Map::from_nchw(&x, c_in, 9, 11, 1, 1, 0);
        let (mut d1, mut d2) = (Map::zeros(9, 11, c_out, 1, 1), Map::zeros(9, 11, c_out, 1, 1));
        want.forward(&src, 0, &mut d1, 0, Act::Identity, None);
        got.forward(&src, 0, &mut d2, 0, Act::Identity, None);
        let top = d1.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = d1.data.iter().zip(&d2.data).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff <= 1e-5 * top, "outputs differ by {diff} of {top}");
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
