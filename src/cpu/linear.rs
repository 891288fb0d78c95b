//! Fully connected layers (and anything that is one matrix product with a bias and a rank-r
//! branch) straight on `gemm`, torch's weight layouts read in place: `y = x Wᵀ + b + s (x Aᵀ) Bᵀ`.
//!
//! burn's `linear` reads a transposed weight view through a strided copy, adds the bias in a
//! second pass over the output, and a kept LoRA branch costs two more matmuls, a scaling pass
//! and an add pass over the whole output. Here the bias is written first and both products
//! accumulate into it (`gemm`'s `dst = dst + β·lhs·rhs`), so the output is written once by
//! the products; the rank-r branch goes through an `[rows, r]` intermediate only.

/// A rank-r branch `scale · (x Aᵀ) Bᵀ` in torch's layouts: `a: [r, d_in]`, `b: [d_out, r]`.
/// A convolution's branch ([`super::im2col`]) is the same with `a: [r, c_in, k, k]` (the base
/// layer's kernel, stride and padding; `d_in = c_in·k·k` over the gathered patches) and `b`
/// its 1x1 `[c_out, r]`.
#[derive(Clone, Copy)]
pub struct Branch<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub rank: usize,
    pub scale: f32,
}

/// `x: [rows, d_in]` (row-major), `w: [d_out, d_in]` (torch's layout), `bias: [d_out]` →
/// `[rows, d_out]`, plus `branch` when given.
pub fn linear(x: &[f32], rows: usize, d_in: usize, w: &[f32], d_out: usize, bias: Option<&[f32]>, branch: Option<Branch>) -> Vec<f32> {
    assert!(x.len() == rows * d_in && w.len() == d_out * d_in, "linear shapes");
    let mut y = match bias {
        Some(b) => {
            assert_eq!(b.len(), d_out, "one bias per output");
            let mut y = Vec::with_capacity(rows * d_out);
            (0..rows).for_each(|_| y.extend_from_slice(b));
            y
        }
        None => vec![0.0; rows * d_out],
    };
    if let Some(br) = branch {
        assert!(br.a.len() == br.rank * d_in && br.b.len() == d_out * br.rank, "branch shapes");
    }
    // With more rows than inputs the branch is cheaper merged into a copy of the weights
    // (`W + s B A`: d_out·d_in values written once) than added to the output afterwards (a
    // pass over rows·d_out values, behind a product of depth r that gemm runs slowly).
    let merged = branch.filter(|_| rows > d_in).map(|Branch { a, b, rank, scale }| {
        let mut m = w.to_vec();
        for (o, row) in m.chunks_exact_mut(d_in).enumerate() {
            for r in 0..rank {
                let c = scale * b[o * rank + r];
                row.iter_mut().zip(&a[r * d_in..][..d_in]).for_each(|(v, a)| *v += c * a);
            }
        }
        m
    });
    let w = merged.as_deref().unwrap_or(w);
    // SAFETY (every product): the strides and sizes describe the slices checked above.
    unsafe { product(rows, d_out, d_in, y.as_mut_ptr(), d_out, x.as_ptr(), d_in, 1, w.as_ptr(), 1, d_in, 1.0) };
    if let Some(Branch { a, b, rank, scale }) = branch.filter(|_| merged.is_none()) {
        let mut h = vec![0.0f32; rows * rank];
        unsafe {
            product(rows, rank, d_in, h.as_mut_ptr(), rank, x.as_ptr(), d_in, 1, a.as_ptr(), 1, d_in, 1.0);
            product(rows, d_out, rank, y.as_mut_ptr(), d_out, h.as_ptr(), rank, 1, b.as_ptr(), 1, rank, scale);
        }
    }
    y
}

/// `dst[m, n] += beta · lhs[m, k] · rhs[k, n]`: `dst` row-major with row stride `dst_rs`,
/// `lhs[i, p]` at `lhs_rs·i + lhs_cs·p`, `rhs[p, j]` at `rhs_rs·p + rhs_cs·j` (`rhs_rs = 1`:
/// the columns of `rhs` are rows of a torch weight `[n, k]`), on every core natively.
///
/// # Safety
/// Every index those strides reach lies inside its buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: usize, lhs: *const f32, lhs_rs: usize, lhs_cs: usize, rhs: *const f32, rhs_rs: usize, rhs_cs: usize, beta: f32) {
    #[cfg(not(target_arch = "wasm32"))]
    let par = if m * n * k >= 1 << 18 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    #[cfg(target_arch = "wasm32")]
    let par = gemm::Parallelism::None;
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m, n, k, dst, 1, dst_rs as isize, true, lhs, lhs_cs as isize, lhs_rs as isize, rhs, rhs_cs as isize, rhs_rs as isize, 1.0, beta, false, false,
            false, par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::noise;

    /// Against the sums in f64, with and without a bias and a branch, on shapes that leave
    /// remainders in every direction of gemm's blocks.
    #[test]
    fn matches_the_f64_sums() {
        // (rows > d_in: the branch merged into the weights; rows ≤ d_in: added afterwards)
        for (rows, d_in, d_out, rank) in [(37, 29, 51, 4), (1, 7, 3, 1), (130, 64, 70, 2), (20, 33, 9, 3)] {
            let (x, w, b) = (noise(rows * d_in, 1), noise(d_out * d_in, 2), noise(d_out, 3));
            let (a, bb) = (noise(rank * d_in, 4), noise(d_out * rank, 5));
            for (with_bias, with_branch) in [(true, true), (false, false), (true, false), (false, true)] {
                let branch = with_branch.then_some(Branch { a: &a, b: &bb, rank, scale: 0.7 });
                let got = linear(&x, rows, d_in, &w, d_out, with_bias.then_some(&b[..]), branch);
                for i in 0..rows {
                    for o in 0..d_out {
                        let dot = |u: &[f32], v: &[f32]| u.iter().zip(v).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum::<f64>();
                        let xi = &x[i * d_in..][..d_in];
                        let mut want = dot(xi, &w[o * d_in..][..d_in]) + if with_bias { f64::from(b[o]) } else { 0.0 };
                        if with_branch {
                            want += 0.7 * (0..rank).map(|r| dot(xi, &a[r * d_in..][..d_in]) * f64::from(bb[o * rank + r])).sum::<f64>();
                        }
                        let g = f64::from(got[i * d_out + o]);
                        assert!((g - want).abs() < 1e-5, "{rows}x{d_in}->{d_out} bias {with_bias} branch {with_branch}: {g} vs {want}");
                    }
                }
            }
        }
    }
}
