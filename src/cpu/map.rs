//! The layout the CPU convolutions read and write: channels last, with a zero border, sized so
//! that Winograd tiles never read outside the buffer. Consecutive convolutions pass a `Map`
//! along instead of converting to and from burn's NCHW tensors at every layer.

/// One image (`h` x `w` pixels, `c` channels each) stored channels-last at offset
/// (`by`, `bx`) inside a zero-filled buffer of `hs` x `ws` pixels.
#[derive(Clone, Debug)]
pub struct Map {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    /// The zero border above and left of the image: a 3x3 convolution of this map pads by it.
    pub by: usize,
    pub bx: usize,
    pub hs: usize,
    pub ws: usize,
    pub data: Vec<f32>,
}

/// Output rows (or columns) of a 3x3 convolution over `n` pixels padded by `pad` on each side.
pub fn conv_out(n: usize, pad: usize) -> usize {
    (n + 2 * pad).saturating_sub(2)
}

impl Map {
    /// A zero map whose 3x3 convolution padded by (`by`, `bx`) can be run by 4x4 output tiles.
    pub fn zeros(h: usize, w: usize, c: usize, by: usize, bx: usize) -> Self {
        // Tiles cover the output rounded up to 4; each reads 2 more rows than it writes.
        let hs = (conv_out(h, by).div_ceil(4) * 4 + 2).max(h + 2 * by);
        let ws = (conv_out(w, bx).div_ceil(4) * 4 + 2).max(w + 2 * bx);
        Self { h, w, c, by, bx, hs, ws, data: vec![0.0; hs * ws * c] }
    }

    /// Index of channel 0 of image pixel (`y`, `x`).
    #[inline]
    pub fn at(&self, y: usize, x: usize) -> usize {
        ((y + self.by) * self.ws + x + self.bx) * self.c
    }

    /// Channels `c0..c0 + c` of an NCHW image `[c, h, w]`, written into this map.
    pub fn put_nchw(&mut self, c0: usize, planes: &[f32], c: usize) {
        let (h, w) = (self.h, self.w);
        assert!(c0 + c <= self.c && planes.len() == c * h * w, "put_nchw: shape");
        for y in 0..h {
            for x in 0..w {
                let at = self.at(y, x) + c0;
                let px = &mut self.data[at..at + c];
                for (k, v) in px.iter_mut().enumerate() {
                    *v = planes[(k * h + y) * w + x];
                }
            }
        }
    }

    /// Channels `c0..c0 + c` of an NCHW image `[c, h / r, w / r]` upsampled by `r` (nearest
    /// neighbour: each pixel repeated r x r) into this map: the upsampling fused into the copy.
    pub fn put_nchw_upsampled(&mut self, c0: usize, planes: &[f32], c: usize, r: usize) {
        let (h, w) = (self.h / r, self.w / r);
        assert!(r > 0 && self.h == h * r && self.w == w * r, "put_nchw_upsampled: size");
        assert!(c0 + c <= self.c && planes.len() == c * h * w, "put_nchw_upsampled: shape");
        for y in 0..self.h {
            for x in 0..self.w {
                let at = self.at(y, x) + c0;
                let src = (y / r) * w + x / r;
                for (k, v) in self.data[at..at + c].iter_mut().enumerate() {
                    *v = planes[k * h * w + src];
                }
            }
        }
    }

    /// This map upsampled by `r` (nearest neighbour), with a border of 1.
    pub fn upsampled(&self, r: usize) -> Self {
        let mut out = Self::zeros(self.h * r, self.w * r, self.c, 1, 1);
        for y in 0..out.h {
            for x in 0..out.w {
                let (to, from) = (out.at(y, x), self.at(y / r, x / r));
                out.data[to..to + self.c].copy_from_slice(&self.data[from..from + self.c]);
            }
        }
        out
    }

    /// Channels `c0..c0 + c` as an NCHW image `[c, h, w]`.
    pub fn to_nchw(&self, c0: usize, c: usize) -> Vec<f32> {
        let mut out = vec![0.0; c * self.h * self.w];
        self.write_nchw(c0, c, &mut out);
        out
    }

    /// [`Self::to_nchw`] into `out`. Eight channels at a time: each pixel's eight values read
    /// together and written to eight planes as eight sequential streams.
    pub fn write_nchw(&self, c0: usize, c: usize, out: &mut [f32]) {
        const L: usize = 8;
        let (h, w) = (self.h, self.w);
        assert_eq!(out.len(), c * h * w, "write_nchw: shape");
        for y in 0..h {
            let mut k = 0;
            while k + L <= c {
                let mut planes: [&mut [f32]; L] = {
                    let mut rest = &mut out[(k * h + y) * w..];
                    std::array::from_fn(|_| {
                        let (row, tail) = std::mem::take(&mut rest).split_at_mut(w);
                        rest = tail.get_mut((h - 1) * w..).unwrap_or_default();
                        row
                    })
                };
                for x in 0..w {
                    let at = self.at(y, x) + c0 + k;
                    for (l, plane) in planes.iter_mut().enumerate() {
                        plane[x] = self.data[at + l];
                    }
                }
                k += L;
            }
            for k in k..c {
                for x in 0..w {
                    out[(k * h + y) * w + x] = self.data[self.at(y, x) + c0 + k];
                }
            }
        }
    }

    /// An NCHW image `[c, h, w]` as a map with border (`by`, `bx`) and `extra` zero channels
    /// after its own (room for the outputs of later convolutions).
    pub fn from_nchw(planes: &[f32], c: usize, h: usize, w: usize, by: usize, bx: usize, extra: usize) -> Self {
        let mut m = Self::zeros(h, w, c + extra, by, bx);
        m.put_nchw(0, planes, c);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_round_trip_keeps_the_border_zero() {
        let planes: Vec<f32> = (0..2 * 3 * 5).map(|v| v as f32 + 1.0).collect();
        let m = Map::from_nchw(&planes, 2, 3, 5, 1, 1, 1);
        assert_eq!(m.to_nchw(0, 2), planes);
        assert_eq!(m.to_nchw(2, 1), vec![0.0; 15]);
        // Outside the image every value is zero: the sum is the image's.
        let sum: f32 = m.data.iter().sum();
        assert_eq!(sum, planes.iter().sum::<f32>());
        assert!(m.hs >= 3 + 2 && m.ws >= 8 + 2);
    }

    #[test]
    fn upsampled_copy_repeats_each_pixel() {
        let planes: Vec<f32> = (0..2 * 2 * 3).map(|v| v as f32).collect();
        let mut m = Map::zeros(4, 6, 2, 1, 1);
        m.put_nchw_upsampled(0, &planes, 2, 2);
        let got = m.to_nchw(0, 2);
        for k in 0..2 {
            for y in 0..4 {
                for x in 0..6 {
                    assert_eq!(got[(k * 4 + y) * 6 + x], planes[(k * 2 + y / 2) * 3 + x / 2]);
                }
            }
        }
    }
}
