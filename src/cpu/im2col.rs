//! Convolutions of any kernel size and stride as one matrix product over gathered patches
//! (im2col), for the maps where Winograd's per-call weight transform costs more than it saves
//! (the SD UNet's 16x16 and 8x8 levels) and for the 1x1 and stride-2 layers: the weights are
//! used in torch's layout `[c_out, c_in·k·k]` as they are stored, the output comes out NCHW,
//! the bias is written first and the products accumulate into it, and a kept rank-r branch
//! (`B (A * x)`) adds two thin products instead of two more convolutions and an add pass.
//! burn's CPU conv2d makes the same matrix product, with a transposed weight copy per call
//! and the bias and branch in passes of their own.

pub use super::linear::Branch;
use super::linear::product;

/// A convolution's geometry: kernel `k`x`k`, `stride`, zero padding `pad` on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// Output height or width for input size `n`.
    pub fn out(&self, n: usize) -> usize {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }
}

/// One image `x` (`[c_in, h, w]`) convolved with `weight` (`[c_out, c_in, k, k]`) →
/// `[c_out, h_out, w_out]`, plus `bias` and `branch` when given.
pub fn conv(x: &[f32], h: usize, w: usize, g: Geometry, weight: &[f32], bias: Option<&[f32]>, branch: Option<Branch>) -> Vec<f32> {
    let Geometry { c_in, c_out, k, .. } = g;
    assert!(x.len() == c_in * h * w && weight.len() == c_out * c_in * k * k, "conv shapes");
    let (ho, wo) = (g.out(h), g.out(w));
    let (n, kk) = (ho * wo, c_in * k * k);
    let gathered;
    // A 1x1, stride-1, unpadded layer reads its input as the patch matrix itself.
    let cols: &[f32] = if (k, g.stride, g.pad) == (1, 1, 0) {
        x
    } else {
        gathered = patches(x, h, w, g);
        &gathered
    };
    let mut y = match bias {
        Some(b) => {
            assert_eq!(b.len(), c_out, "one bias per output channel");
            b.iter().flat_map(|&v| std::iter::repeat_n(v, n)).collect()
        }
        None => vec![0.0f32; c_out * n],
    };
    // SAFETY (every product): `weight` is [c_out, kk], `cols` [kk, n], `y` [c_out, n], `a`
    // [rank, kk], `b` [c_out, rank], `t` [rank, n], all row-major, as checked above.
    unsafe { product(c_out, n, kk, y.as_mut_ptr(), n, weight.as_ptr(), kk, 1, cols.as_ptr(), n, 1, 1.0) };
    if let Some(Branch { a, b, rank, scale }) = branch {
        assert!(a.len() == rank * kk && b.len() == c_out * rank, "branch shapes");
        let mut t = vec![0.0f32; rank * n];
        unsafe {
            product(rank, n, kk, t.as_mut_ptr(), n, a.as_ptr(), kk, 1, cols.as_ptr(), n, 1, 1.0);
            product(c_out, n, rank, y.as_mut_ptr(), n, b.as_ptr(), rank, 1, t.as_ptr(), n, 1, scale);
        }
    }
    y
}

/// The patch matrix `[c_in·k·k, h_out·w_out]`: row `(c, dy, dx)` holds input channel `c`
/// shifted by `(dy, dx)` and strided, zero where the shifted pixel is padding.
fn patches(x: &[f32], h: usize, w: usize, g: Geometry) -> Vec<f32> {
    let Geometry { c_in, k, stride, pad, .. } = g;
    let (ho, wo) = (g.out(h), g.out(w));
    let mut cols = vec![0.0f32; c_in * k * k * ho * wo];
    let fill = |(c, rows): (usize, &mut [f32])| {
        let plane = &x[c * h * w..][..h * w];
        for (tap, row) in rows.chunks_exact_mut(ho * wo).enumerate() {
            let (dy, dx) = (tap / k, tap % k);
            for oy in 0..ho {
                let Some(iy) = (oy * stride + dy).checked_sub(pad).filter(|&iy| iy < h) else { continue };
                let src = &plane[iy * w..][..w];
                let dst = &mut row[oy * wo..][..wo];
                for (ox, d) in dst.iter_mut().enumerate() {
                    if let Some(ix) = (ox * stride + dx).checked_sub(pad).filter(|&ix| ix < w) {
                        *d = src[ix];
                    }
                }
            }
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        cols.par_chunks_mut(k * k * ho * wo).enumerate().for_each(fill);
    }
    #[cfg(target_arch = "wasm32")]
    cols.chunks_mut(k * k * ho * wo).enumerate().for_each(fill);
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::noise;

    /// Against the direct sums in f64 for 3x3 (padded, stride 1 and 2, odd sizes) and 1x1,
    /// with and without a bias and a branch.
    #[test]
    fn matches_the_direct_sums() {
        for (c_in, c_out, k, stride, pad, h, w, rank) in [(5, 7, 3, 1, 1, 6, 9, 2), (4, 6, 3, 2, 1, 9, 8, 3), (6, 3, 1, 1, 0, 5, 4, 1), (3, 5, 3, 2, 0, 7, 7, 2)] {
            let g = Geometry { c_in, c_out, k, stride, pad };
            let (x, wt, bias) = (noise(c_in * h * w, 1), noise(c_out * c_in * k * k, 2), noise(c_out, 3));
            let (a, b) = (noise(rank * c_in * k * k, 4), noise(c_out * rank, 5));
            let (ho, wo) = (g.out(h), g.out(w));
            // direct convolution of `x` by a [co, c_in, k, k] kernel, in f64
            let direct = |kern: &[f32], co: usize| -> Vec<f64> {
                let mut y = vec![0.0f64; co * ho * wo];
                for o in 0..co {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut s = 0.0;
                            for c in 0..c_in {
                                for dy in 0..k {
                                    for dx in 0..k {
                                        let (iy, ix) = ((oy * stride + dy) as isize - pad as isize, (ox * stride + dx) as isize - pad as isize);
                                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                            s += f64::from(x[(c * h + iy as usize) * w + ix as usize]) * f64::from(kern[((o * c_in + c) * k + dy) * k + dx]);
                                        }
                                    }
                                }
                            }
                            y[(o * ho + oy) * wo + ox] = s;
                        }
                    }
                }
                y
            };
            let base = direct(&wt, c_out);
            let low = direct(&a, rank);
            for (with_bias, with_branch) in [(true, true), (false, false), (true, false), (false, true)] {
                let branch = with_branch.then_some(Branch { a: &a, b: &b, rank, scale: 0.6 });
                let got = conv(&x, h, w, g, &wt, with_bias.then_some(&bias[..]), branch);
                assert_eq!(got.len(), c_out * ho * wo);
                for o in 0..c_out {
                    for p in 0..ho * wo {
                        let mut want = base[o * ho * wo + p] + if with_bias { f64::from(bias[o]) } else { 0.0 };
                        if with_branch {
                            want += 0.6 * (0..rank).map(|r| low[r * ho * wo + p] * f64::from(b[o * rank + r])).sum::<f64>();
                        }
                        let got = f64::from(got[o * ho * wo + p]);
                        assert!((got - want).abs() < 1e-5, "{g:?} {h}x{w} bias {with_bias} branch {with_branch}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
