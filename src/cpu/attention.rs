//! `softmax(q kᵀ · scale) v` on the CPU, a block of query rows at a time: the scores of a
//! block (at most [`BLOCK_SCORES`]) are made by one matrix product, turned into probabilities in
//! place with a vectorised `exp`, and multiplied by `v` straight into the output rows; the
//! division by the row sums comes last, on `d` values a row instead of `lk`. burn's path
//! writes the whole `[heads, lq, lk]` score tensor and its softmax temporaries (the SD UNet's
//! 64x64 level: 5 x 4096 x 4096, 320 MB each, faulted in anew each time) and calls the
//! C library's `expf` per score.

use super::SendPtr;
use super::band::exp;

/// Scores per block: 64 query rows of 4096 keys (1 MiB), fewer rows for longer key sets.
const BLOCK_SCORES: usize = 1 << 18;
const LANES: usize = 16;

/// `q: [bh, lq, d]`, `k, v: [bh, lk, d]` (f32, contiguous) → `[bh, lq, d]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], bh: usize, lq: usize, lk: usize, d: usize, scale: f32) -> Vec<f32> {
    attention_heads(q, k, v, bh, 1, lq, lk, d, scale)
}

/// Heads side by side as the projections write them: `q: [b, lq, heads·d]`, `k, v: [b, lk,
/// heads·d]` → `[b, lq, heads·d]`, each head reading and writing its `d` columns in place
/// (the matrix products take row strides), so the heads are never split into copies of
/// their own and merged back.
#[allow(clippy::too_many_arguments)]
pub fn attention_heads(q: &[f32], k: &[f32], v: &[f32], b: usize, heads: usize, lq: usize, lk: usize, d: usize, scale: f32) -> Vec<f32> {
    let w = heads * d;
    assert!(q.len() == b * lq * w && k.len() == b * lk * w && v.len() == b * lk * w, "attention shapes");
    let rows = (BLOCK_SCORES / lk.max(1)).clamp(1, 64).min(lq.max(1));
    let blocks_per_head = lq.div_ceil(rows);
    let mut out = vec![0.0f32; b * lq * w];
    let dst = SendPtr(out.as_mut_ptr());
    let job = |scores: &mut Vec<f32>, block: usize| {
        let (bh, r0) = (block / blocks_per_head, (block % blocks_per_head) * rows);
        let (img, head) = (bh / heads, bh % heads);
        let n = rows.min(lq - r0);
        // Each from its first value to its last: rows of `w` values, this head's `d` of them.
        let span = |rows: usize| (rows - 1) * w + d;
        let at = |l: usize, r: usize| (img * l + r) * w + head * d;
        let (q, k, v) = (&q[at(lq, r0)..][..span(n)], &k[at(lk, 0)..][..span(lk)], &v[at(lk, 0)..][..span(lk)]);
        // SAFETY: each block writes its own `n` rows of its head's columns (the rows between
        // are other heads' or other blocks', never written through this slice).
        let o = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at(lq, r0)), span(n)) };
        block_dispatch(q, k, v, n, lk, d, w, scale, scores, o);
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..b * heads * blocks_per_head).into_par_iter().for_each_init(Vec::new, job);
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut scores = Vec::new();
        (0..b * heads * blocks_per_head).for_each(|b| job(&mut scores, b));
    }
    out
}

/// [`block`] compiled for AVX-512 or AVX2 + FMA where the CPU has them (the softmax loop is
/// written for the auto-vectoriser, 16 lanes: one AVX-512 register, two AVX2 ones).
#[allow(clippy::too_many_arguments)]
fn block_dispatch(q: &[f32], k: &[f32], v: &[f32], n: usize, lk: usize, d: usize, w: usize, scale: f32, s: &mut Vec<f32>, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512(q: &[f32], k: &[f32], v: &[f32], n: usize, lk: usize, d: usize, w: usize, scale: f32, s: &mut Vec<f32>, o: &mut [f32]) {
                block(q, k, v, n, lk, d, w, scale, s, o)
            }
            // SAFETY: the feature was just detected.
            return unsafe { avx512(q, k, v, n, lk, d, w, scale, s, o) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2(q: &[f32], k: &[f32], v: &[f32], n: usize, lk: usize, d: usize, w: usize, scale: f32, s: &mut Vec<f32>, o: &mut [f32]) {
                block(q, k, v, n, lk, d, w, scale, s, o)
            }
            // SAFETY: the features were just detected.
            return unsafe { avx2(q, k, v, n, lk, d, w, scale, s, o) };
        }
    }
    block(q, k, v, n, lk, d, w, scale, s, o)
}

/// One block of `n` query rows: `o = softmax(q kᵀ · scale) v`, rows `w` values apart in `q`,
/// `k`, `v` and `o` (`d` of them used).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block(q: &[f32], k: &[f32], v: &[f32], n: usize, lk: usize, d: usize, w: usize, scale: f32, s: &mut Vec<f32>, o: &mut [f32]) {
    if s.len() < n * lk {
        s.resize(n * lk, 0.0);
    }
    // S = scale · q kᵀ, stored column by column (S(i, j) at j n + i): with that layout gemm
    // reads kᵀ in place; written row by row it packed all of k again for every block.
    // SAFETY: the strides and sizes describe the slices above.
    unsafe {
        gemm::gemm(
            n, lk, d, s.as_mut_ptr(), n as isize, 1, false, q.as_ptr(), 1, w as isize, k.as_ptr(), w as isize, 1, 0.0, scale,
            false, false, false, gemm::Parallelism::None,
        );
    }
    // P = exp(S - row max), unnormalised; the row sums divide the output at the end. A column
    // holds one score of each row: the rows' maxima and sums run across it, lane by lane.
    let s = &mut s[..n * lk];
    let mut maxs = vec![f32::NEG_INFINITY; n];
    for col in s.chunks_exact(n) {
        maxs.iter_mut().zip(col).for_each(|(m, v)| *m = m.max(*v));
    }
    let mut sums = vec![0.0f32; n];
    let whole = n - n % LANES;
    for col in s.chunks_exact_mut(n) {
        for ((c, m), t) in col.chunks_exact_mut(LANES).zip(maxs.chunks_exact(LANES)).zip(sums.chunks_exact_mut(LANES)) {
            let e = exp::<LANES>(std::array::from_fn(|l| c[l] - m[l]));
            c.copy_from_slice(&e);
            t.iter_mut().zip(&e).for_each(|(t, e)| *t += e);
        }
        for ((x, m), t) in col[whole..].iter_mut().zip(&maxs[whole..]).zip(&mut sums[whole..]) {
            *x = (*x - m).exp();
            *t += *x;
        }
    }
    // O = P v, row-major [n][d] (P read column by column, in place).
    // SAFETY: as above.
    unsafe {
        gemm::gemm(
            n, d, lk, o.as_mut_ptr(), 1, w as isize, false, s.as_ptr(), n as isize, 1, v.as_ptr(), 1, w as isize, 0.0, 1.0,
            false, false, false, gemm::Parallelism::None,
        );
    }
    for (i, sum) in sums.iter().enumerate() {
        let inv = 1.0 / sum;
        o[i * w..][..d].iter_mut().for_each(|x| *x *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::noise;

    /// Heads read in place from `[b, l, heads·d]` give what each head gives split out on its own.
    #[test]
    fn heads_in_place_match_split_heads() {
        let (b, heads, lq, lk, d) = (2, 3, 70, 41, 8);
        let w = heads * d;
        let (q, k, v) = (noise(b * lq * w, 4), noise(b * lk * w, 5), noise(b * lk * w, 6));
        let got = attention_heads(&q, &k, &v, b, heads, lq, lk, d, 0.3);
        // [b, l, heads, d] → [b, heads, l, d]
        let split = |x: &[f32], l: usize| -> Vec<f32> {
            (0..b * heads).flat_map(|bh| (0..l).flat_map(move |i| (0..d).map(move |c| (bh, i, c)))).map(|(bh, i, c)| x[((bh / heads) * l + i) * w + (bh % heads) * d + c]).collect()
        };
        let want = attention(&split(&q, lq), &split(&k, lk), &split(&v, lk), b * heads, lq, lk, d, 0.3);
        assert_eq!(split(&got, lq), want);
    }

    /// Against the softmax in f64, for key counts that split into several blocks, a remainder
    /// of lanes, and rows of large scores (the max subtraction).
    #[test]
    fn matches_the_f64_softmax() {
        for (bh, lq, lk, d, scale) in [(2, 70, 33, 8, 0.35f32), (1, 5, 5000, 16, 0.25), (3, 1, 1, 4, 1.0), (1, 130, 64, 64, 4.0)] {
            let (q, k, v) = (noise(bh * lq * d, 1), noise(bh * lk * d, 2), noise(bh * lk * d, 3));
            let got = attention(&q, &k, &v, bh, lq, lk, d, scale);
            for h in 0..bh {
                for i in 0..lq {
                    let s: Vec<f64> = (0..lk)
                        .map(|j| (0..d).map(|c| q[(h * lq + i) * d + c] as f64 * k[(h * lk + j) * d + c] as f64).sum::<f64>() * scale as f64)
                        .collect();
                    let m = s.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
                    let p: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let total: f64 = p.iter().sum();
                    for c in 0..d {
                        let want: f64 = (0..lk).map(|j| p[j] * v[(h * lk + j) * d + c] as f64).sum::<f64>() / total;
                        let g = got[(h * lq + i) * d + c] as f64;
                        // Scores up to ~85 (scale 4, d 64) carry f32 rounding of ~1e-5 into exp.
                        assert!((g - want).abs() < 1e-5, "bh {bh} lq {lq} lk {lk} d {d}: {g} vs {want}");
                    }
                }
            }
        }
    }
}
