//! Attention whose score matrix never exceeds a bounded block: queries in chunks, and keys in
//! chunks with an online softmax (running max and sum, rescaled per key chunk) when even one
//! query row of scores is too long. Exact up to float rounding.
//!
//! The VAE decoder's mid-block attends over every latent pixel: at 4096x4096 output that is a
//! 262144 x 262144 score matrix (256 GiB in f32). With a block of 2^24 scores (64 MiB f32) it
//! becomes 64-row query chunks against 65536-key chunks.

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{FloatDType, Tensor, activation::softmax};

use crate::cpu;

/// The most score elements (`batch * heads * queries * keys`) one block may hold.
static MAX_SCORES: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Bound every attention in the process to blocks of at most `n` scores (the memory planner
/// sets this from the device's binding limit); `usize::MAX` lifts the bound.
pub fn set_max_scores(n: usize) {
    MAX_SCORES.store(n.max(1), Ordering::Relaxed);
}

pub fn max_scores() -> usize {
    MAX_SCORES.load(Ordering::Relaxed)
}

/// Query and key chunk lengths for `[b, heads, lq, d] x [b, heads, lk, d]` under `budget`
/// scores per block: whole keys when a chunk of at least `MIN_QUERIES` query rows fits.
pub fn chunks(bh: usize, lq: usize, lk: usize, budget: usize) -> (usize, usize) {
    const MIN_QUERIES: usize = 16;
    if bh.saturating_mul(lq).saturating_mul(lk) <= budget {
        return (lq, lk);
    }
    let per_query_row = bh.saturating_mul(lk).max(1);
    let cq = budget / per_query_row;
    if cq >= MIN_QUERIES.min(lq) && cq > 0 {
        return (cq.min(lq), lk);
    }
    let cq = MIN_QUERIES.min(lq);
    let ck = (budget / (bh * cq)).clamp(1, lk);
    (cq, ck)
}

/// `softmax(q k^T * scale + mask) v` with `q: [B, H, Lq, d]`, `k, v: [B, H, Lk, d]`, mask
/// `[Lq, Lk]` (additive, f32), blocks of at most [`max_scores`] scores. Scores and softmax
/// run in f32; the result has `q`'s dtype.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<2>>, scale: f64) -> Tensor<4> {
    let [b, h, lq, d] = q.dims();
    let lk = k.dims()[2];
    if mask.is_none() && cpu::enabled(&q.device()) {
        // burn's CPU backend: blocks of query rows, never the whole score tensor.
        use cpu::tensor::with_slice;
        let out = with_slice(&q, |qv| {
            with_slice(&k, |kv| with_slice(&v, |vv| cpu::attention::attention(qv, kv, vv, b * h, lq, lk, d, scale as f32)))
        });
        return cpu::tensor::from_values(out, [b, h, lq, d], &q);
    }
    let (cq, ck) = chunks(b * h, lq, lk, max_scores());
    let q = q.cast(FloatDType::F32) * scale;
    let k = k.cast(FloatDType::F32);
    let mut outs = Vec::with_capacity(lq.div_ceil(cq));
    for q0 in (0..lq).step_by(cq) {
        let n = cq.min(lq - q0);
        let qc = q.clone().narrow(2, q0, n);
        let mc = mask.as_ref().map(|m| m.clone().narrow(0, q0, n));
        outs.push(if ck == lk {
            full_keys(qc, k.clone(), v.clone(), mc)
        } else {
            online(qc, key_chunks(&k, &v, ck).into_iter(), mc)
        });
    }
    if outs.len() == 1 { outs.pop().expect("one chunk") } else { Tensor::cat(outs, 2) }
}

/// [`attention`] without a mask whose keys and values arrive as separate pieces (the bands of
/// a tiled image: no tensor holds all of them): `kv[i] = (k_i, v_i)`, `[B, H, Lk_i, d]` each.
pub fn attention_pieces(q: Tensor<4>, kv: &[(Tensor<4>, Tensor<4>)], scale: f64) -> Tensor<4> {
    let [b, h, lq, _] = q.dims();
    // Blocks are bounded per piece: each piece is cut like a whole key set would be.
    let longest = kv.iter().map(|(k, _)| k.dims()[2]).max().unwrap_or(1);
    let (cq, ck) = chunks(b * h, lq, longest, max_scores());
    let q = q.cast(FloatDType::F32) * scale;
    let pieces: Vec<(Tensor<4>, Tensor<4>)> =
        kv.iter().flat_map(|(k, v)| key_chunks(&k.clone().cast(FloatDType::F32), v, ck)).collect();
    let mut outs = Vec::with_capacity(lq.div_ceil(cq));
    for q0 in (0..lq).step_by(cq) {
        let n = cq.min(lq - q0);
        outs.push(online(q.clone().narrow(2, q0, n), pieces.iter().cloned(), None));
    }
    if outs.len() == 1 { outs.pop().expect("one chunk") } else { Tensor::cat(outs, 2) }
}

/// `(k, v)` cut along the key axis into chunks of at most `ck` keys.
fn key_chunks(k: &Tensor<4>, v: &Tensor<4>, ck: usize) -> Vec<(Tensor<4>, Tensor<4>)> {
    let lk = k.dims()[2];
    (0..lk).step_by(ck.max(1)).map(|k0| {
        let n = ck.min(lk - k0);
        (k.clone().narrow(2, k0, n), v.clone().narrow(2, k0, n))
    }).collect()
}

/// One query chunk against all keys: the plain softmax; the probabilities take `v`'s dtype
/// for the product (as the unchunked attention does).
fn full_keys(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<2>>) -> Tensor<4> {
    let scores = q.matmul(k.swap_dims(2, 3));
    let scores = match mask {
        Some(m) => scores + m.cast(FloatDType::F32).unsqueeze::<4>(),
        None => scores,
    };
    let dtype = FloatDType::from(v.dtype());
    softmax(scores, 3).cast(dtype).matmul(v)
}

/// One query chunk against a sequence of key chunks: running max `m`, running sum `l` and
/// the running weighted sum `acc`, each rescaled by `exp(m_old - m_new)` (f32 throughout).
/// `mask` columns follow the chunks in order.
fn online(q: Tensor<4>, kv: impl Iterator<Item = (Tensor<4>, Tensor<4>)>, mask: Option<Tensor<2>>) -> Tensor<4> {
    let mut dtype = FloatDType::F32;
    let mut state: Option<(Tensor<4>, Tensor<4>, Tensor<4>)> = None;
    let mut k0 = 0;
    for (k, v) in kv {
        dtype = FloatDType::from(v.dtype());
        let n = k.dims()[2];
        let s = q.clone().matmul(k.cast(FloatDType::F32).swap_dims(2, 3));
        let s = match &mask {
            Some(m) => s + m.clone().narrow(1, k0, n).cast(FloatDType::F32).unsqueeze::<4>(),
            None => s,
        };
        k0 += n;
        let vc = v.cast(FloatDType::F32);
        let m_chunk = s.clone().max_dim(3);
        state = Some(match state {
            None => {
                let p = (s - m_chunk.clone()).exp();
                (m_chunk, p.clone().sum_dim(3), p.matmul(vc))
            }
            Some((m, l, acc)) => {
                let m_new = m.clone().max_pair(m_chunk);
                let p = (s - m_new.clone()).exp();
                let corr = (m - m_new.clone()).exp();
                (m_new, l * corr.clone() + p.clone().sum_dim(3), acc * corr + p.matmul(vc))
            }
        });
    }
    let (_, l, acc) = state.expect("at least one key");
    (acc / l).cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunk_sizes_respect_the_budget() {
        assert_eq!(chunks(1, 100, 100, usize::MAX), (100, 100));
        assert_eq!(chunks(2, 4096, 4096, 1 << 20), (128, 4096));
        let (cq, ck) = chunks(1, 262_144, 262_144, 1 << 24);
        assert_eq!((cq, ck), (64, 262_144));
        let (cq, ck) = chunks(8, 262_144, 262_144, 1 << 20);
        assert!(8 * cq * ck <= 1 << 20 && ck < 262_144, "{cq} {ck}");
    }
}
