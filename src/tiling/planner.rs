//! One fixed tile shape with overlap; the last tile of a row or column is aligned to the
//! edge so every tile has the same shape (compiled kernels and autotune results are reused).

/// A tile in input coordinates, with the overlap it shares with its neighbours on each side
/// (0 at the image border).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
    /// Overlap with the previous/next tile: top, bottom, left, right.
    pub overlap: [usize; 4],
}

#[derive(Clone, Debug)]
pub struct TilePlan {
    pub height: usize,
    pub width: usize,
    pub tiles: Vec<Tile>,
}

/// Start positions along one axis of length `len` for tiles of `tile` with `overlap`.
pub fn axis_starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile.saturating_sub(overlap).max(1);
    let mut starts: Vec<usize> = (0..).map(|i| i * stride).take_while(|&s| s + tile < len).collect();
    starts.push(len - tile);
    starts.dedup();
    starts
}

impl TilePlan {
    /// Tiles of `tile` x `tile` (or the whole side when it is shorter), row-major.
    pub fn new(height: usize, width: usize, tile: usize, overlap: usize) -> Self {
        assert!(tile > 0, "tile size must be positive");
        let (th, tw) = (tile.min(height), tile.min(width));
        let ys = axis_starts(height, tile, overlap);
        let xs = axis_starts(width, tile, overlap);
        let side = |starts: &[usize], i: usize, t: usize| -> (usize, usize) {
            let before = if i > 0 { (starts[i - 1] + t).saturating_sub(starts[i]) } else { 0 };
            let after = if i + 1 < starts.len() { (starts[i] + t).saturating_sub(starts[i + 1]) } else { 0 };
            (before, after)
        };
        let mut tiles = Vec::with_capacity(ys.len() * xs.len());
        for (iy, &y) in ys.iter().enumerate() {
            let (top, bottom) = side(&ys, iy, th);
            for (ix, &x) in xs.iter().enumerate() {
                let (left, right) = side(&xs, ix, tw);
                tiles.push(Tile { y, x, h: th, w: tw, overlap: [top, bottom, left, right] });
            }
        }
        Self { height, width, tiles }
    }

    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_with_one_shape() {
        let plan = TilePlan::new(300, 517, 128, 32);
        let mut covered = vec![false; 300 * 517];
        for t in &plan.tiles {
            assert_eq!((t.h, t.w), (128, 128));
            for y in t.y..t.y + t.h {
                for x in t.x..t.x + t.w {
                    covered[y * 517 + x] = true;
                }
            }
        }
        assert!(covered.iter().all(|&c| c));
        assert_eq!(axis_starts(300, 128, 32), vec![0, 96, 172]);
    }

    #[test]
    fn small_images_are_one_tile() {
        let plan = TilePlan::new(40, 90, 128, 16);
        assert_eq!(plan.tiles, vec![Tile { y: 0, x: 0, h: 40, w: 90, overlap: [0; 4] }]);
    }
}
