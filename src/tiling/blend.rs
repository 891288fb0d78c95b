//! Blends overlapping output tiles with weights that fade to ~0 towards a tile's inner
//! edges (where it lacked context) and normalises by the summed weight. Rows are finished
//! and handed out as soon as no later tile can touch them, so only a band of rows is kept.

use super::planner::Tile;

/// Weight of position `i` (0-based) along a tile side of length `len` whose first `before`
/// and last `after` positions are shared with neighbours: a raised-cosine ramp over each
/// shared span, 1 elsewhere. Never exactly 0, so the sum of weights is always positive.
pub fn ramp(i: usize, len: usize, before: usize, after: usize) -> f32 {
    let rise = |d: usize, span: usize| -> f32 {
        if d >= span {
            1.0
        } else {
            let t = (d as f32 + 0.5) / span as f32;
            0.5 - 0.5 * (std::f32::consts::PI * t).cos()
        }
    };
    rise(i, before) * rise(len - 1 - i, after)
}

/// Accumulates `channels`-planar float tiles into rows of 8-bit interleaved output.
pub struct RowBlender {
    width: usize,
    channels: usize,
    /// First output row still held in `acc`.
    band_start: usize,
    acc: Vec<f32>,
    weight: Vec<f32>,
}

impl RowBlender {
    pub fn new(width: usize, channels: usize) -> Self {
        Self { width, channels, band_start: 0, acc: Vec::new(), weight: Vec::new() }
    }

    fn band_rows(&self) -> usize {
        self.weight.len() / self.width
    }

    /// Add an output tile (`data` planar `[channels, tile.h, tile.w]` in output coordinates,
    /// overlaps already scaled). Tiles must arrive in row-major order of their `y`.
    pub fn add(&mut self, tile: &Tile, data: &[f32]) {
        assert!(tile.y >= self.band_start, "tiles must arrive in row order");
        assert_eq!(data.len(), self.channels * tile.h * tile.w);
        let needed = tile.y + tile.h - self.band_start;
        if needed > self.band_rows() {
            self.weight.resize(needed * self.width, 0.0);
            self.acc.resize(needed * self.width * self.channels, 0.0);
        }
        let [top, bottom, left, right] = tile.overlap;
        let wx: Vec<f32> = (0..tile.w).map(|i| ramp(i, tile.w, left, right)).collect();
        for r in 0..tile.h {
            let wy = ramp(r, tile.h, top, bottom);
            let row = tile.y + r - self.band_start;
            for c in 0..tile.w {
                let w = wy * wx[c];
                let o = row * self.width + tile.x + c;
                self.weight[o] += w;
                for ch in 0..self.channels {
                    self.acc[o * self.channels + ch] += w * data[(ch * tile.h + r) * tile.w + c];
                }
            }
        }
    }

    /// Finish every row above `y` (no later tile starts above it) and return them as
    /// interleaved values `acc / weight`, mapped through `quantise`.
    pub fn finish_rows_before(&mut self, y: usize, quantise: impl Fn(f32) -> u8) -> Vec<u8> {
        let rows = y.saturating_sub(self.band_start).min(self.band_rows());
        let n = rows * self.width;
        let out = (0..n * self.channels)
            .map(|i| quantise(self.acc[i] / self.weight[i / self.channels]))
            .collect();
        self.acc.drain(..n * self.channels);
        self.weight.drain(..n);
        self.band_start += rows;
        out
    }

    /// First row not yet returned.
    pub fn next_row(&self) -> usize {
        self.band_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiling::TilePlan;

    #[test]
    fn blending_a_constant_gives_the_constant() {
        let plan = TilePlan::new(70, 50, 32, 12);
        let mut b = RowBlender::new(50, 2);
        let mut out = Vec::new();
        for t in &plan.tiles {
            out.extend(b.finish_rows_before(t.y, |v| v.round() as u8));
            b.add(t, &vec![7.0; 2 * t.h * t.w]);
        }
        out.extend(b.finish_rows_before(70, |v| v.round() as u8));
        assert_eq!(out.len(), 70 * 50 * 2);
        assert!(out.iter().all(|&v| v == 7));
    }

    #[test]
    fn ramp_is_one_inside_and_small_at_inner_edges() {
        assert_eq!(ramp(10, 64, 8, 8), 1.0);
        assert!(ramp(0, 64, 8, 0) < 0.05);
        assert_eq!(ramp(0, 64, 0, 8), 1.0);
    }
}
