//! GEGLU, `hidden · gelu(gate)` with the exact (erf) GELU, in one pass over the projection's
//! output, vectorised: burn's path splits the projection into two views, runs the C library's
//! `erff` value by value, and multiplies in a pass of its own.

use super::band::exp;

const LANES: usize = 16;

/// `proj: [rows, 2·inner]` (the first `inner` columns of a row are `hidden`, the rest `gate`)
/// → `[rows, inner]`: `hidden · gelu(gate)`, `gelu(x) = x/2 · (1 + erf(x/√2))`.
pub fn geglu(proj: &[f32], rows: usize, inner: usize) -> Vec<f32> {
    assert_eq!(proj.len(), rows * 2 * inner, "geglu shapes");
    let mut out = vec![0.0f32; rows * inner];
    let row = |(o, p): (&mut [f32], &[f32])| {
        let (hidden, gate) = p.split_at(inner);
        let (mut oc, mut hc, mut gc) = (o.chunks_exact_mut(LANES), hidden.chunks_exact(LANES), gate.chunks_exact(LANES));
        for ((o, h), g) in (&mut oc).zip(&mut hc).zip(&mut gc) {
            let g: [f32; LANES] = std::array::from_fn(|l| g[l]);
            let e = gelu(g);
            o.iter_mut().zip(h).zip(e).for_each(|((o, h), e)| *o = h * e);
        }
        for ((o, h), g) in oc.into_remainder().iter_mut().zip(hc.remainder()).zip(gc.remainder()) {
            *o = h * gelu([*g])[0];
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_exact_mut(inner).zip(proj.par_chunks_exact(2 * inner)).for_each(row);
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_exact_mut(inner).zip(proj.chunks_exact(2 * inner)).for_each(row);
    out
}

/// The exact GELU of each lane, with `erf` by Abramowitz and Stegun's 7.1.26 (absolute error
/// below 1.5e-7) and the vectorised [`exp`].
#[inline(always)]
pub fn gelu<const L: usize>(x: [f32; L]) -> [f32; L] {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152, 1.061_405_4];
    let z: [f32; L] = x.map(|v| v * std::f32::consts::FRAC_1_SQRT_2);
    let e = exp(z.map(|v| -v * v));
    std::array::from_fn(|l| {
        let a = z[l].abs();
        let t = 1.0 / (1.0 + P * a);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let erf_abs = 1.0 - poly * e[l];
        let erf = if z[l] < 0.0 { -erf_abs } else { erf_abs };
        0.5 * x[l] * (1.0 + erf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against `x/2 (1 + erf(x/√2))` in f64 (erf by its Taylor series below 2.5, by the
    /// continued fraction of erfc above) over [-12, 12], and the GEGLU layout.
    #[test]
    fn gelu_matches_f64() {
        let erf = |x: f64| {
            if x.abs() > 2.5 {
                // erfc z = e^(-z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …))))
                let z = x.abs();
                let k = (1..80).rev().fold(z, |k, n| z + f64::from(n) / 2.0 / k);
                return x.signum() * (1.0 - (-z * z).exp() / std::f64::consts::PI.sqrt() / k);
            }
            // erf x = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)), summed until the terms vanish
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 * sum.abs().max(1e-300) {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        let mut worst = 0.0f64;
        for i in -1200..=1200 {
            let xs: [f32; LANES] = std::array::from_fn(|l| i as f32 / 100.0 + l as f32 * 7e-4);
            for (x, g) in xs.iter().zip(gelu(xs)) {
                let x = f64::from(*x);
                let want = 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2));
                worst = worst.max((f64::from(g) - want).abs() / x.abs().max(1.0));
            }
        }
        assert!(worst < 3e-7, "error {worst:e}");
        let (rows, inner) = (3, 21);
        let proj = crate::cpu::noise(rows * 2 * inner, 9).iter().map(|v| v * 4.0).collect::<Vec<_>>();
        let got = geglu(&proj, rows, inner);
        for r in 0..rows {
            for j in 0..inner {
                let (h, g) = (proj[r * 2 * inner + j], proj[r * 2 * inner + inner + j]);
                assert_eq!(got[r * inner + j], h * gelu([g])[0]);
            }
        }
    }
}
