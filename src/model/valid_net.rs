//! The networks of unpadded convolutions (waifu2x upconv_7 and cunet, Real-CUGAN) behind one
//! interface, with test-time augmentation; [`crate::pipeline::valid_net`] pads and tiles.

use burn::tensor::Tensor;

use super::processing::Processing;
use super::{Cunet, UpConv7};

pub enum ValidNet {
    UpConv7(UpConv7),
    Cunet(Cunet),
}

impl ValidNet {
    pub fn scale(&self) -> usize {
        match self {
            ValidNet::UpConv7(m) => m.config.scale,
            ValidNet::Cunet(m) => m.config.scale,
        }
    }

    pub fn processing(&self) -> &Processing {
        match self {
            ValidNet::UpConv7(m) => &m.config.processing,
            ValidNet::Cunet(m) => &m.config.processing,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, &[])
    }

    /// [`Self::forward`] with the SE blocks' means given (cunet; see [`Cunet::forward_with`]).
    pub fn forward_with(&self, x: Tensor<4>, means: &[Tensor<4>]) -> Tensor<4> {
        match self {
            ValidNet::UpConv7(m) => m.forward(x),
            ValidNet::Cunet(m) => m.forward_with(x, means),
        }
    }

    /// The network with SE blocks, when this is one.
    pub fn with_se(&self) -> Option<&Cunet> {
        match self {
            ValidNet::Cunet(m) if m.config.se => Some(m),
            _ => None,
        }
    }

    /// The network on `x` (SE means as [`Self::forward_with`]), or with `tta` the mean of its
    /// 8 flips and transposes (each undone on the output; each its own SE means), in float as
    /// the runtimes do.
    pub fn run(&self, x: Tensor<4>, tta: bool, means: &[Tensor<4>]) -> Tensor<4> {
        if !tta {
            return self.forward_with(x, means);
        }
        let mut sum: Option<Tensor<4>> = None;
        for t in 0..8 {
            let y = undo(self.forward(transform(x.clone(), t)), t);
            sum = Some(match sum {
                Some(s) => s + y,
                None => y,
            });
        }
        sum.expect("8 passes") / 8.0
    }
}

/// Transform `t` of the 8 (bit 0: flip rows, bit 1: flip columns, bit 2: transpose).
fn transform(x: Tensor<4>, t: usize) -> Tensor<4> {
    let x = if t & 4 != 0 { x.swap_dims(2, 3) } else { x };
    let x = if t & 1 != 0 { x.flip([2]) } else { x };
    if t & 2 != 0 { x.flip([3]) } else { x }
}

fn undo(y: Tensor<4>, t: usize) -> Tensor<4> {
    let y = if t & 2 != 0 { y.flip([3]) } else { y };
    let y = if t & 1 != 0 { y.flip([2]) } else { y };
    if t & 4 != 0 { y.swap_dims(2, 3) } else { y }
}

