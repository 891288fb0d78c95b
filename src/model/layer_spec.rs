//! What each weighted layer of a network is, in graph order: the converter checks an ncnn
//! graph against it and names the weights by it; the model loads the same names.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// `Conv2d` (ncnn Convolution), `[out, in, k, k]`.
    Conv,
    /// `ConvTranspose2d` (ncnn Deconvolution), `[in, out, k, k]` in torch's layout.
    Deconv,
    /// A 1x1 `Conv2d` on a 1x1 map (ncnn InnerProduct), `[out, in, 1, 1]`.
    Linear,
}

/// The activation fused after a layer (ncnn's activation_type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    None,
    Relu,
    Leaky(f32),
    Sigmoid,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// The module path: `{name}.weight`, `{name}.bias`.
    pub name: String,
    pub kind: LayerKind,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub act: Activation,
}

impl LayerSpec {
    /// An unpadded convolution.
    pub fn conv(name: impl Into<String>, c_in: usize, c_out: usize, k: usize, stride: usize, act: Activation) -> Self {
        Self { name: name.into(), kind: LayerKind::Conv, c_in, c_out, k, stride, pad: 0, act }
    }

    pub fn deconv(name: impl Into<String>, c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, act: Activation) -> Self {
        Self { name: name.into(), kind: LayerKind::Deconv, c_in, c_out, k, stride, pad, act }
    }

    pub fn linear(name: impl Into<String>, c_in: usize, c_out: usize, act: Activation) -> Self {
        Self { name: name.into(), kind: LayerKind::Linear, c_in, c_out, k: 1, stride: 1, pad: 0, act }
    }

    /// The weight's shape in torch's layout.
    pub fn weight_shape(&self) -> Vec<usize> {
        match self.kind {
            LayerKind::Deconv => vec![self.c_in, self.c_out, self.k, self.k],
            _ => vec![self.c_out, self.c_in, self.k, self.k],
        }
    }

    /// Every tensor of `layers`: `(name, shape)`, weight then bias.
    pub fn tensor_shapes(layers: &[LayerSpec]) -> Vec<(String, Vec<usize>)> {
        layers
            .iter()
            .flat_map(|l| [(format!("{}.weight", l.name), l.weight_shape()), (format!("{}.bias", l.name), vec![l.c_out])])
            .collect()
    }
}
