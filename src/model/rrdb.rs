//! RRDBNet (ESRGAN / Real-ESRGAN x4plus): Wang et al. 2018/2021. Field names follow the
//! original PyTorch module (`conv_first`, `body.N.rdbM.convK`, `conv_body`, `conv_up1`,
//! `conv_up2`, `conv_hr`, `conv_last`), so checkpoint keys are the paths below.

use burn::tensor::{Tensor, activation::leaky_relu, module::conv2d, ops::ConvOptions};
use serde::{Deserialize, Serialize};

use super::conv::Conv2d;
use super::resize::upsample_nearest;
use crate::cpu::map::Map;
use crate::cpu::tensor::{from_maps, from_values, to_maps};
use crate::cpu::winograd::{Act, Residual, Winograd3x3};
use crate::weights::{ParamStore, WeightsError};

const LRELU_SLOPE: f64 = 0.2;
/// Residual scaling of every dense block and of every RRDB (ESRGAN's beta).
const RESIDUAL_SCALE: f32 = 0.2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RrdbNetConfig {
    pub num_in_ch: usize,
    pub num_out_ch: usize,
    pub scale: usize,
    pub num_feat: usize,
    pub num_block: usize,
    pub num_grow_ch: usize,
}

impl RrdbNetConfig {
    /// Real-ESRGAN x4plus.
    pub fn x4plus() -> Self {
        Self { num_in_ch: 3, num_out_ch: 3, scale: 4, num_feat: 64, num_block: 23, num_grow_ch: 32 }
    }

    /// A tiny network with the same topology, for tests.
    pub fn tiny() -> Self {
        Self { num_in_ch: 3, num_out_ch: 3, scale: 4, num_feat: 8, num_block: 2, num_grow_ch: 4 }
    }

    /// Every tensor of the model, in forward order: `(name, shape)`.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut conv = |name: String, c_in: usize, c_out: usize| {
            out.push((format!("{name}.weight"), vec![c_out, c_in, 3, 3]));
            out.push((format!("{name}.bias"), vec![c_out]));
        };
        let (f, g) = (self.num_feat, self.num_grow_ch);
        conv("conv_first".into(), self.num_in_ch, f);
        for b in 0..self.num_block {
            for r in 1..=3 {
                for k in 1..=5 {
                    let (c_in, c_out) = dense_conv_channels(f, g, k);
                    conv(format!("body.{b}.rdb{r}.conv{k}"), c_in, c_out);
                }
            }
        }
        conv("conv_body".into(), f, f);
        conv("conv_up1".into(), f, f);
        conv("conv_up2".into(), f, f);
        conv("conv_hr".into(), f, f);
        conv("conv_last".into(), f, self.num_out_ch);
        out
    }
}

/// conv k of a dense block sees the input plus k-1 growth outputs.
fn dense_conv_channels(num_feat: usize, num_grow: usize, k: usize) -> (usize, usize) {
    let c_in = num_feat + (k - 1) * num_grow;
    (c_in, if k == 5 { num_feat } else { num_grow })
}

/// Residual dense block: five 3x3 convs with dense connections (conv k reads the input and the
/// k-1 growth outputs before it, concatenated).
pub struct ResidualDenseBlock {
    path: DensePath,
}

enum DensePath {
    /// burn's convolutions, computed without the concatenations: a convolution of concatenated
    /// features is the sum of each feature's convolution with its slice of the weight. So each
    /// feature is convolved once, with the slices of every later conv that reads it stacked
    /// along the output channels (`fanout`), and each conv's output is the sum of its parts.
    /// Same arithmetic, but every feature is unfolded for the matrix product once instead of
    /// once per later conv (3.3x less of that copying for x4plus), in fewer, larger products.
    Burn {
        /// `fanout[i]`: `[sum of later convs' outputs, channels of feature i, 3, 3]`.
        fanout: Vec<Tensor<4>>,
        /// Output channels and bias of conv1..conv5.
        outputs: Vec<usize>,
        biases: Vec<Tensor<1>>,
    },
    /// On the CPU: conv1..conv5 transformed for [`crate::cpu`]. The concatenation is one map
    /// whose channels fill up as the block runs, so no copy is made at all.
    Cpu(Vec<Winograd3x3>),
}

impl ResidualDenseBlock {
    fn load(store: &mut ParamStore, path: &str, f: usize, g: usize) -> Result<Self, WeightsError> {
        let convs: Vec<Conv2d> = (1..=5)
            .map(|k| {
                let (c_in, c_out) = dense_conv_channels(f, g, k);
                Conv2d::load(store, &format!("{path}.conv{k}"), c_in, c_out, 3)
            })
            .collect::<Result<_, _>>()?;
        if let Some(cpu) = convs.iter().map(Conv2d::winograd).collect::<Option<Vec<_>>>() {
            return Ok(Self { path: DensePath::Cpu(cpu) });
        }
        let outputs: Vec<usize> = (1..=5).map(|k| dense_conv_channels(f, g, k).1).collect();
        // Feature i's channels in every concatenation: the input, then one growth output each.
        let channels = |i: usize| if i == 0 { 0..f } else { f + (i - 1) * g..f + i * g };
        let fanout = (0..5)
            .map(|i| {
                let parts = (i..5).map(|j| convs[j].weight.clone().slice([0..outputs[j], channels(i), 0..3, 0..3])).collect();
                Tensor::cat(parts, 0)
            })
            .collect();
        let biases = convs.into_iter().map(|c| c.bias.expect("dense convs have a bias")).collect();
        Ok(Self { path: DensePath::Burn { fanout, outputs, biases } })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let DensePath::Burn { fanout, outputs, biases } = &self.path else {
            unreachable!("the CPU path runs whole RRDBs (Rrdb::forward)")
        };
        // sums[j]: conv j's output over the features seen so far.
        let mut sums: Vec<Option<Tensor<4>>> = vec![None; 5];
        let mut feature = x.clone();
        // Convolves feature `i` into the sums of conv i..conv5 and returns conv i's finished
        // output (with its bias).
        let mut conv_step = |i: usize, feature: Tensor<4>| {
            let parts = conv2d(feature, fanout[i].clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
            let mut at = 0;
            for j in i..5 {
                let part = parts.clone().narrow(1, at, outputs[j]);
                at += outputs[j];
                sums[j] = Some(match sums[j].take() {
                    Some(s) => s + part,
                    None => part,
                });
            }
            sums[i].take().expect("conv i has all its parts") + biases[i].clone().reshape([1, outputs[i], 1, 1])
        };
        for i in 0..4 {
            feature = leaky_relu(conv_step(i, feature), LRELU_SLOPE);
        }
        conv_step(4, feature).mul_scalar(RESIDUAL_SCALE).add(x)
    }
}

/// A dense block on the CPU: `x` holds the input in channels `0..f` and room for the four
/// growth outputs after it, which conv1..conv4 fill in place; `0.2 conv5 + input` goes to
/// `out`'s channels `0..f`.
fn dense_block_cpu(convs: &[Winograd3x3], x: &mut Map, out: &mut Map) {
    for conv in &convs[..4] {
        // conv k reads the channels before its own.
        conv.forward_in_place(x, 0, conv.c_in, Act::LeakyRelu(LRELU_SLOPE as f32));
    }
    let residual = Residual { map: x, c0: 0, scale: RESIDUAL_SCALE };
    convs[4].forward(x, 0, out, 0, Act::Identity, Some(residual));
}

/// Residual-in-residual dense block: three dense blocks and a scaled skip.
pub struct Rrdb {
    pub rdb1: ResidualDenseBlock,
    pub rdb2: ResidualDenseBlock,
    pub rdb3: ResidualDenseBlock,
}

impl Rrdb {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let (DensePath::Cpu(a), DensePath::Cpu(b), DensePath::Cpu(c)) = (&self.rdb1.path, &self.rdb2.path, &self.rdb3.path) {
            return Self::forward_cpu(x, [a, b, c]);
        }
        let out = self.rdb3.forward(self.rdb2.forward(self.rdb1.forward(x.clone())));
        out.mul_scalar(RESIDUAL_SCALE).add(x)
    }

    /// The three dense blocks on two maps used in turn, and the skip added on the way out.
    fn forward_cpu(x: Tensor<4>, rdbs: [&[Winograd3x3]; 3]) -> Tensor<4> {
        let (f, growth) = (rdbs[0][4].c_out, rdbs[0][4].c_in - rdbs[0][4].c_out);
        let (mut maps, skip) = to_maps(x.clone(), 1, growth);
        let mut out = Vec::with_capacity(skip.len());
        for a in &mut maps {
            let mut b = Map::zeros(a.h, a.w, a.c, 1, 1);
            dense_block_cpu(rdbs[0], a, &mut b);
            dense_block_cpu(rdbs[1], &mut b, a);
            dense_block_cpu(rdbs[2], a, &mut b);
            out.extend(b.to_nchw(0, f));
        }
        out.iter_mut().zip(&skip).for_each(|(o, x)| *o = *o * RESIDUAL_SCALE + x);
        from_values(out, x.dims(), &x)
    }
}

/// The convolutions after the body, transformed for the CPU path.
struct TrunkCpu {
    conv_body: Winograd3x3,
    conv_up1: Winograd3x3,
    conv_up2: Winograd3x3,
    conv_hr: Winograd3x3,
    conv_last: Winograd3x3,
}

pub struct RrdbNet {
    pub config: RrdbNetConfig,
    pub conv_first: Conv2d,
    pub body: Vec<Rrdb>,
    pub conv_body: Conv2d,
    pub conv_up1: Conv2d,
    pub conv_up2: Conv2d,
    pub conv_hr: Conv2d,
    pub conv_last: Conv2d,
    cpu: Option<TrunkCpu>,
}

impl RrdbNet {
    pub fn load(config: &RrdbNetConfig, store: &mut ParamStore) -> Result<Self, WeightsError> {
        if config.scale != 4 {
            return Err(WeightsError::Convert(format!("RRDBNet scale {} is not supported (x4 only)", config.scale)));
        }
        let (f, g) = (config.num_feat, config.num_grow_ch);
        let conv_first = Conv2d::load(store, "conv_first", config.num_in_ch, f, 3)?;
        let body = (0..config.num_block)
            .map(|b| {
                let rdb = |store: &mut ParamStore, r: usize| {
                    ResidualDenseBlock::load(store, &format!("body.{b}.rdb{r}"), f, g)
                };
                Ok(Rrdb { rdb1: rdb(store, 1)?, rdb2: rdb(store, 2)?, rdb3: rdb(store, 3)? })
            })
            .collect::<Result<_, WeightsError>>()?;
        let conv_body = Conv2d::load(store, "conv_body", f, f, 3)?;
        let conv_up1 = Conv2d::load(store, "conv_up1", f, f, 3)?;
        let conv_up2 = Conv2d::load(store, "conv_up2", f, f, 3)?;
        let conv_hr = Conv2d::load(store, "conv_hr", f, f, 3)?;
        let conv_last = Conv2d::load(store, "conv_last", f, config.num_out_ch, 3)?;
        let cpu = (|| {
            Some(TrunkCpu {
                conv_body: conv_body.winograd()?,
                conv_up1: conv_up1.winograd()?,
                conv_up2: conv_up2.winograd()?,
                conv_hr: conv_hr.winograd()?,
                conv_last: conv_last.winograd()?,
            })
        })();
        Ok(Self { config: config.clone(), conv_first, body, conv_body, conv_up1, conv_up2, conv_hr, conv_last, cpu })
    }

    /// `x`: `[n, 3, h, w]` in 0..1 → `[n, 3, 4h, 4w]` (not clamped).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let feat = self.head(x);
        let body = self.body.iter().fold(feat.clone(), |h, block| block.forward(h));
        self.up_last(self.up_first(feat, body))
    }

    /// The forward pass in steps, so a caller can wait between them: `head`, each body
    /// block in order, `up_first` (with `head`'s output), `up_last`.
    pub fn head(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv_first.forward(x)
    }

    /// After the body: the trunk's residual and the first x2 upsampling. `feat` is
    /// [`Self::head`]'s output, `body` the last block's.
    pub fn up_first(&self, feat: Tensor<4>, body: Tensor<4>) -> Tensor<4> {
        if let Some(cpu) = &self.cpu {
            let (body, _) = to_maps(body, 1, 0);
            let (skip, _) = to_maps(feat.clone(), 1, 0);
            let out: Vec<Map> = body
                .iter()
                .zip(&skip)
                .map(|(body, skip)| {
                    let mut sum = Map::zeros(body.h, body.w, body.c, 0, 0);
                    let residual = Residual { map: skip, c0: 0, scale: 1.0 };
                    cpu.conv_body.forward(body, 0, &mut sum, 0, Act::Identity, Some(residual));
                    let up = sum.upsampled(2);
                    let mut out = Map::zeros(up.h, up.w, cpu.conv_up1.c_out, 1, 1);
                    cpu.conv_up1.forward(&up, 0, &mut out, 0, Act::LeakyRelu(LRELU_SLOPE as f32), None);
                    out
                })
                .collect();
            return from_maps(&out, 0, cpu.conv_up1.c_out, &feat);
        }
        let feat = feat + self.conv_body.forward(body);
        leaky_relu(self.conv_up1.forward(upsample_nearest(feat, 2)), LRELU_SLOPE)
    }

    /// The second x2 upsampling and the last convolutions.
    pub fn up_last(&self, feat: Tensor<4>) -> Tensor<4> {
        if let Some(cpu) = &self.cpu {
            let leaky = Act::LeakyRelu(LRELU_SLOPE as f32);
            let (up, _) = to_maps(feat.clone(), 2, 0);
            let out: Vec<Map> = up
                .iter()
                .map(|up| {
                    let mut a = Map::zeros(up.h, up.w, cpu.conv_up2.c_out, 1, 1);
                    cpu.conv_up2.forward(up, 0, &mut a, 0, leaky, None);
                    let mut b = Map::zeros(up.h, up.w, cpu.conv_hr.c_out, 1, 1);
                    cpu.conv_hr.forward(&a, 0, &mut b, 0, leaky, None);
                    let mut out = Map::zeros(up.h, up.w, cpu.conv_last.c_out, 0, 0);
                    cpu.conv_last.forward(&b, 0, &mut out, 0, Act::Identity, None);
                    out
                })
                .collect();
            return from_maps(&out, 0, cpu.conv_last.c_out, &feat);
        }
        let feat = leaky_relu(self.conv_up2.forward(upsample_nearest(feat, 2)), LRELU_SLOPE);
        self.conv_last.forward(leaky_relu(self.conv_hr.forward(feat), LRELU_SLOPE))
    }
}
