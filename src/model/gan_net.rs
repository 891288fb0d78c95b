//! The GAN upscalers behind one interface, run in steps so a caller can wait (and report
//! progress) between them on a slow device.

use burn::tensor::Tensor;

use super::srvgg::Features;
use super::valid_net::ValidNet;
use super::{RrdbNet, SrVggNetCompact};

pub enum GanNet {
    Rrdb(RrdbNet),
    Compact(SrVggNetCompact),
    /// waifu2x and Real-CUGAN: [`crate::pipeline::valid_net`] runs them (one step, no state).
    Valid(ValidNet),
}

/// A forward pass between steps: the tensor the tail needs again (RRDBNet's trunk input, the
/// compact network's input) and the running activation.
pub struct GanState {
    skip: Tensor<4>,
    h: Features,
}

impl GanState {
    /// The running activation as a tensor, to wait on for progress; `None` on the CPU path,
    /// where a step's work is done when it returns.
    pub fn activation(&self) -> Option<&Tensor<4>> {
        match &self.h {
            Features::Tensor(t) => Some(t),
            Features::Maps(_) => None,
        }
    }

    /// RRDBNet's state: its steps hand tensors.
    fn tensors(self) -> (Tensor<4>, Tensor<4>) {
        match self.h {
            Features::Tensor(h) => (self.skip, h),
            Features::Maps(_) => unreachable!("RRDBNet steps hand tensors"),
        }
    }
}

impl GanNet {
    /// Output pixels per input pixel along each side.
    pub fn scale(&self) -> usize {
        match self {
            GanNet::Rrdb(m) => m.config.scale,
            GanNet::Compact(m) => m.config.scale,
            GanNet::Valid(m) => m.scale(),
        }
    }

    /// Steps between [`Self::begin`] and [`Self::end`]: RRDBNet's body blocks and its first
    /// upsampling; the compact network's convolutions after the first.
    pub fn steps(&self) -> usize {
        match self {
            GanNet::Rrdb(m) => m.body.len() + 1,
            GanNet::Compact(m) => m.convs.len() - 1,
            GanNet::Valid(_) => 0,
        }
    }

    pub fn begin(&self, x: Tensor<4>) -> GanState {
        match self {
            GanNet::Rrdb(m) => {
                let feat = m.head(x);
                GanState { skip: feat.clone(), h: Features::Tensor(feat) }
            }
            GanNet::Compact(m) => GanState { h: m.step(0, Features::Tensor(x.clone())), skip: x },
            GanNet::Valid(_) => GanState { h: Features::Tensor(x.clone()), skip: x },
        }
    }

    /// Step `i` of [`Self::steps`], in order.
    pub fn step(&self, i: usize, s: GanState) -> GanState {
        match self {
            GanNet::Rrdb(m) => {
                let (skip, h) = s.tensors();
                let h = if i < m.body.len() { m.body[i].forward(h) } else { m.up_first(skip.clone(), h) };
                GanState { h: Features::Tensor(h), skip }
            }
            GanNet::Compact(m) => GanState { h: m.step(i + 1, s.h), skip: s.skip },
            GanNet::Valid(_) => s,
        }
    }

    pub fn end(&self, s: GanState) -> Tensor<4> {
        match self {
            GanNet::Rrdb(m) => m.up_last(s.tensors().1),
            GanNet::Compact(m) => m.tail(s.skip, s.h),
            GanNet::Valid(m) => m.forward(s.skip),
        }
    }
}
