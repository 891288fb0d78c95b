//! Resampling inside networks: nearest upsampling by an integer factor and the bicubic
//! resize of ncnn's `Interp` (resize_type 3) and torch's `interpolate(mode="bicubic",
//! align_corners=False)`: a = -0.75, source indices clamped at the borders.

use burn::tensor::{Tensor, TensorData};

/// Nearest-neighbour upsampling by `r` (torch `interpolate(scale_factor=r, mode="nearest")`).
pub fn upsample_nearest(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, r, w, r]).reshape([n, c, r * h, r * w])
}

/// The cubic convolution kernel's 4 weights for a source offset `t` in 0..1 (a = -0.75).
pub fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index, the 4 source indices (clamped to the edge) and their weights.
pub fn bicubic_taps(len_in: usize, len_out: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = len_in as f64 / len_out as f64;
    (0..len_out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5) as f32;
            let i0 = src.floor();
            let w = cubic_weights(src - i0);
            let idx = [-1i64, 0, 1, 2].map(|d| (i0 as i64 + d).clamp(0, len_in as i64 - 1) as usize);
            (idx, w)
        })
        .collect()
}

/// The taps as a `[len_in, len_out]` matrix (a column per output index).
fn bicubic_matrix(len_in: usize, len_out: usize) -> Vec<f32> {
    let mut m = vec![0f32; len_in * len_out];
    for (o, (idx, w)) in bicubic_taps(len_in, len_out).into_iter().enumerate() {
        for k in 0..4 {
            m[idx[k] * len_out + o] += w[k];
        }
    }
    m
}

/// Bicubic resize of `[n, c, h, w]` to `[n, c, out_h, out_w]`: the width, then the height,
/// each a product with the taps' matrix (on the device, in the input's dtype).
pub fn resize_bicubic(x: Tensor<4>, out_h: usize, out_w: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let dtype = x.dtype();
    let matrix = |len_in: usize, len_out: usize| {
        Tensor::<2>::from_data(TensorData::new(bicubic_matrix(len_in, len_out), [len_in, len_out]), &device).cast(dtype)
    };
    let x = x.reshape([n * c * h, w]).matmul(matrix(w, out_w)).reshape([n, c, h, out_w]);
    let x = x.swap_dims(2, 3).reshape([n * c * out_w, h]).matmul(matrix(h, out_h));
    x.reshape([n, c, out_w, out_h]).swap_dims(2, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_uses_the_symmetric_taps_and_keeps_constants() {
        // out/in = 1/2: every source point falls half way, weights (-3/32, 19/32, 19/32, -3/32).
        let taps = bicubic_taps(8, 4);
        assert_eq!(taps[1].0, [1, 2, 3, 4]);
        for (got, want) in taps[1].1.iter().zip([-0.09375, 0.59375, 0.59375, -0.09375]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(taps[0].0, [0, 0, 1, 2], "clamped at the left edge");
        let device = crate::device::cpu();
        let x = Tensor::<4>::full([1, 2, 6, 9], 0.25, &device);
        let y: Vec<f32> = resize_bicubic(x, 4, 6).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y.len(), 2 * 4 * 6);
        assert!(y.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }
}
