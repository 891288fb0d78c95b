//! The GAN upscalers behind one interface, run in steps so a caller can wait (and report
//! progress) between them on a slow device.

use burn::tensor::Tensor;

use super::{RrdbNet, SrVggNetCompact};

pub enum GanNet {
    Rrdb(RrdbNet),
    Compact(SrVggNetCompact),
}

/// A forward pass between steps: the tensor the tail needs again (RRDBNet's trunk input, the
/// compact network's input) and the running activation.
pub struct GanState {
    skip: Tensor<4>,
    h: Tensor<4>,
}

impl GanState {
    pub fn activation(&self) -> &Tensor<4> {
        &self.h
    }
}

impl GanNet {
    /// Output pixels per input pixel along each side.
    pub fn scale(&self) -> usize {
        match self {
            GanNet::Rrdb(m) => m.config.scale,
            GanNet::Compact(m) => m.config.scale,
        }
    }

    /// Steps between [`Self::begin`] and [`Self::end`]: RRDBNet's body blocks and its first
    /// upsampling; the compact network's convolutions after the first.
    pub fn steps(&self) -> usize {
        match self {
            GanNet::Rrdb(m) => m.body.len() + 1,
            GanNet::Compact(m) => m.convs.len() - 1,
        }
    }

    pub fn begin(&self, x: Tensor<4>) -> GanState {
        match self {
            GanNet::Rrdb(m) => {
                let feat = m.head(x);
                GanState { skip: feat.clone(), h: feat }
            }
            GanNet::Compact(m) => GanState { h: m.step(0, x.clone()), skip: x },
        }
    }

    /// Step `i` of [`Self::steps`], in order.
    pub fn step(&self, i: usize, s: GanState) -> GanState {
        match self {
            GanNet::Rrdb(m) if i < m.body.len() => GanState { h: m.body[i].forward(s.h), skip: s.skip },
            GanNet::Rrdb(m) => GanState { h: m.up_first(s.skip.clone(), s.h), skip: s.skip },
            GanNet::Compact(m) => GanState { h: m.step(i + 1, s.h), skip: s.skip },
        }
    }

    pub fn end(&self, s: GanState) -> Tensor<4> {
        match self {
            GanNet::Rrdb(m) => m.up_last(s.h),
            GanNet::Compact(m) => m.tail(s.skip, s.h),
        }
    }
}
