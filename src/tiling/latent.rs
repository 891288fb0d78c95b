//! The official latent tiling of the UNet (OSEDiff / PiSA-SR test scripts): square tiles of
//! `min(tile, h, w)` latents, stride `tile - overlap`, the last tile of a row or column
//! aligned to the edge, each tile's output weighted by a separable Gaussian and the sum
//! normalised by the summed weights. Latents with `h * w <= tile^2` are one pass.

use burn::tensor::{Tensor, TensorData};

use super::planner::axis_starts;

/// Where the tiles of an `h x w` latent go: `(y, x)` origins of `side x side` tiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatentTiles {
    pub side: usize,
    pub origins: Vec<(usize, usize)>,
}

impl LatentTiles {
    /// `None` when the latent is small enough for one pass (the official condition).
    pub fn plan(h: usize, w: usize, tile: usize, overlap: usize) -> Option<Self> {
        if h * w <= tile * tile {
            return None;
        }
        let side = tile.min(h).min(w);
        let ys = axis_starts(h, side, overlap.min(side - 1));
        let xs = axis_starts(w, side, overlap.min(side - 1));
        Some(Self { side, origins: ys.iter().flat_map(|&y| xs.iter().map(move |&x| (y, x))).collect() })
    }
}

/// The official `_gaussian_weights` along one side of `n`:
/// `exp(-(x - (n-1)/2)^2 / n^2 / (2 var)) / sqrt(2 pi var)`, var = 0.01.
pub fn gaussian_1d(n: usize) -> Vec<f32> {
    let var = 0.01f64;
    let mid = (n as f64 - 1.0) / 2.0;
    (0..n)
        .map(|x| {
            let d = x as f64 - mid;
            ((-d * d / (n * n) as f64 / (2.0 * var)).exp() / (2.0 * std::f64::consts::PI * var).sqrt()) as f32
        })
        .collect()
}

/// `[1, 1, n, n]` outer product of [`gaussian_1d`] (f32).
pub fn gaussian_2d(n: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let g = gaussian_1d(n);
    let v: Vec<f32> = g.iter().flat_map(|a| g.iter().map(move |b| a * b)).collect();
    Tensor::<4>::from_data(TensorData::new(v, [1, 1, n, n]), device).cast(burn::tensor::FloatDType::F32)
}

/// The running blend of tile predictions over `z: [1, C, h, w]`: `sum(eps_tile * w) / sum(w)`.
/// The caller runs the tiles one at a time (and may wait, report or stop between them).
pub struct Blend {
    acc: Tensor<4>,
    wsum: Tensor<4>,
    weight: Tensor<4>,
    side: usize,
}

impl Blend {
    pub fn new(z: &Tensor<4>, tiles: &LatentTiles) -> Self {
        let [n, c, h, w] = z.dims();
        let device = z.device();
        let f32 = burn::tensor::FloatDType::F32;
        Self {
            acc: Tensor::<4>::zeros([n, c, h, w], &device).cast(f32),
            wsum: Tensor::<4>::zeros([1, 1, h, w], &device).cast(f32),
            weight: gaussian_2d(tiles.side, &device),
            side: tiles.side,
        }
    }

    /// The tile at `origin` of `z` (the UNet's input).
    pub fn input(z: &Tensor<4>, tiles: &LatentTiles, (y, x): (usize, usize)) -> Tensor<4> {
        let [n, c, _, _] = z.dims();
        z.clone().slice([0..n, 0..c, y..y + tiles.side, x..x + tiles.side])
    }

    /// Adds the prediction `eps` (f32) of the tile at `origin`.
    pub fn add(&mut self, (y, x): (usize, usize), eps: Tensor<4>) {
        let [n, c, _, _] = self.acc.dims();
        let s = self.side;
        let r = [0..n, 0..c, y..y + s, x..x + s];
        self.acc = self.acc.clone().slice_assign(r.clone(), self.acc.clone().slice(r) + eps * self.weight.clone());
        let r1 = [0..1, 0..1, y..y + s, x..x + s];
        self.wsum = self.wsum.clone().slice_assign(r1.clone(), self.wsum.clone().slice(r1) + self.weight.clone());
    }

    pub fn finish(self) -> Tensor<4> {
        self.acc / self.wsum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_grid() {
        // 128 x 200 latent, tile 96, overlap 32: stride 64; rows 0, 32; columns 0, 64, 104.
        let t = LatentTiles::plan(128, 200, 96, 32).unwrap();
        assert_eq!(t.side, 96);
        assert_eq!(t.origins, vec![(0, 0), (0, 64), (0, 104), (32, 0), (32, 64), (32, 104)]);
        // Small latents are one pass; a thin one gets tiles of its short side.
        assert_eq!(LatentTiles::plan(90, 100, 96, 32), None);
        assert_eq!(LatentTiles::plan(64, 200, 96, 32).unwrap().side, 64);
        let g = gaussian_1d(96);
        assert!((g[0] - g[95]).abs() < 1e-6 && g[47] > g[10]);
    }
}
