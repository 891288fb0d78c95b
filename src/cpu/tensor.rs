//! Between burn's NCHW tensors and [`Map`]s: one copy in and one out around a run of CPU
//! convolutions.

use burn::tensor::{FloatDType, Tensor, TensorData};

use super::map::Map;

/// Each image of `x` (`[n, c, h, w]`) upsampled by `r` (1: as it is) into a map with a border
/// of 1 and `extra` more channels; also returns the values as f32 NCHW.
pub fn to_maps(x: Tensor<4>, r: usize, extra: usize) -> (Vec<Map>, Vec<f32>) {
    let [n, c, h, w] = x.dims();
    let values = values(x);
    let maps = (0..n)
        .map(|i| {
            let mut m = Map::zeros(h * r, w * r, c + extra, 1, 1);
            m.put_nchw_upsampled(0, &values[i * c * h * w..][..c * h * w], c, r);
            m
        })
        .collect();
    (maps, values)
}

/// `f` on the values of `x` (f32, in its element order), read in place from burn's CPU backend
/// when `x` is a contiguous f32 tensor there. Reading through `into_data` copies a tensor that
/// is shared (a layer's weights, an input the caller still holds for a residual) twice: out of
/// the shared buffer, then again to realign that copy. Any other tensor is converted once.
pub fn with_slice<const D: usize, R>(x: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    if let Ok(p) = x.clone().try_into_primitive::<burn_flex::Flex>()
        && let Some(s) = p.as_slice::<f32>()
    {
        return f(s);
    }
    let data = x.clone().cast(FloatDType::F32).into_data();
    f(data.as_slice::<f32>().expect("f32 after cast"))
}

/// The values of `x` as f32, in its element order (NCHW for an image).
pub fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    // Synchronous readback: on the CPU backend the data is already on the host (in wasm too).
    x.cast(FloatDType::F32).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 after convert")
}

/// Channels `c0..c0 + c` of each map, stacked as `[n, c, h, w]` on `like`'s device and dtype.
pub fn from_maps(maps: &[Map], c0: usize, c: usize, like: &Tensor<4>) -> Tensor<4> {
    let values: Vec<f32> = maps.iter().flat_map(|m| m.to_nchw(c0, c)).collect();
    from_values(values, [maps.len(), c, maps[0].h, maps[0].w], like)
}

/// NCHW f32 `values` of `dims` as a tensor on `like`'s device and dtype.
pub fn from_values(values: Vec<f32>, dims: [usize; 4], like: &Tensor<4>) -> Tensor<4> {
    like_of(values, dims, like)
}

/// f32 `values` of `dims` as a tensor on `like`'s device and dtype (see [`f32_tensor`]).
pub fn like_of<const D: usize, const E: usize>(values: Vec<f32>, dims: [usize; D], like: &Tensor<E>) -> Tensor<D> {
    f32_tensor(values, dims, &like.device()).cast(FloatDType::from(like.dtype()))
}

/// f32 `values` of `dims` as an f32 tensor on `device`: a device configured for f16 would
/// otherwise round them to f16 on the way in.
pub fn f32_tensor<const D: usize>(values: Vec<f32>, dims: [usize; D], device: &burn::tensor::Device) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(values, dims), (device, burn::tensor::DType::F32))
}
