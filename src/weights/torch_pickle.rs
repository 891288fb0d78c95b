//! A reader for `torch.save` checkpoints (the zip container, PyTorch ≥ 1.6): enough of the
//! pickle protocol to get dicts, lists, strings, numbers and tensors out of the OSEDiff and
//! PiSA-SR `.pkl` files, with no Python objects executed. Tensor bytes are the raw
//! little-endian `data/<key>` entries of the zip, which torch writes uncompressed.
//!
//! Like `torch.load(weights_only=True)`, only an allowlist of globals is ever called
//! ([`ALLOWED_GLOBALS`]: the tensor and parameter rebuilders and `OrderedDict`); any other
//! `REDUCE` / `NEWOBJ` is an error, so no object outside it is built. Hostile files are bounded
//! too: the unpickled structure may not expand past [`MAX_STRUCTURE_BYTES`] (memoised values
//! shared many times would otherwise grow exponentially), and a tensor may not read past its
//! storage nor hold more elements than its storage.
//!
//! (burn's standalone `pytorch-reader` crate does this too, but its zip dependency changes
//! shared dependency features and forces a full rebuild of burn; this file is ~300 lines.)

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use half::{bf16, f16};

use super::WeightsError;

/// A host tensor in row-major order, widened to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A tensor inside the checkpoint: a view into a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: String,
    /// e.g. `FloatStorage`, `HalfStorage`.
    pub storage_type: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PickleValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PickleValue>),
    Tuple(Vec<PickleValue>),
    Dict(Vec<(PickleValue, PickleValue)>),
    /// `module.name` of a global (class or function), as a name only.
    Global(String),
    /// A storage reference from `BINPERSID`: `(type, key)`.
    Storage(String, String),
    Tensor(TensorRef),
}

/// The only callables a checkpoint may invoke (`REDUCE` / `NEWOBJ`).
pub const ALLOWED_GLOBALS: [&str; 4] = [
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
];

/// The unpickled structure's size limit (about 40 bytes per value plus strings' bytes); the
/// tensors' data stays in the zip and does not count. Real checkpoints use a few MiB.
pub const MAX_STRUCTURE_BYTES: u64 = 256 << 20;

/// `{:?}` of a value, cut at 200 characters (a hostile value may be huge).
fn brief(v: &dyn std::fmt::Debug) -> String {
    struct Cut(String);
    impl std::fmt::Write for Cut {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = 200usize.saturating_sub(self.0.len());
            self.0.extend(s.chars().take(room));
            if self.0.len() >= 200 { Err(std::fmt::Error) } else { Ok(()) }
        }
    }
    let mut out = Cut(String::new());
    if std::fmt::write(&mut out, format_args!("{v:?}")).is_err() {
        out.0.push('…');
    }
    out.0
}

fn err(msg: impl Into<String>) -> WeightsError {
    WeightsError::Convert(format!("torch checkpoint: {}", msg.into()))
}

/// A parsed `torch.save` file: the unpickled root object and the storages' bytes.
pub struct TorchCheckpoint {
    pub root: PickleValue,
    bytes: Vec<u8>,
    /// storage key → (byte offset, byte length) in `bytes`.
    storages: HashMap<String, (usize, usize)>,
}

impl TorchCheckpoint {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, WeightsError> {
        let entries = zip_entries(&bytes)?;
        let (pkl_name, &(pkl_off, pkl_len)) = entries
            .iter()
            .find(|(n, _)| n.ends_with("/data.pkl") || n.as_str() == "data.pkl")
            .ok_or_else(|| err("no data.pkl in the zip: not a torch.save (zip) file"))?;
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        if let Some(&(o, l)) = entries.get(&format!("{prefix}byteorder")) {
            if &bytes[o..o + l] != b"little" {
                return Err(err("big-endian checkpoints are not supported"));
            }
        }
        let root = Unpickler::new(&bytes[pkl_off..pkl_off + pkl_len]).run()?;
        let data_prefix = format!("{prefix}data/");
        let storages = entries
            .iter()
            .filter_map(|(n, &v)| n.strip_prefix(&data_prefix).map(|k| (k.to_string(), v)))
            .collect();
        Ok(Self { root, bytes, storages })
    }

    /// A value of the top-level dict.
    pub fn get(&self, key: &str) -> Option<&PickleValue> {
        match &self.root {
            PickleValue::Dict(items) => items.iter().find(|(k, _)| matches!(k, PickleValue::Str(s) if s == key)).map(|(_, v)| v),
            _ => None,
        }
    }

    fn require(&self, key: &str) -> Result<&PickleValue, WeightsError> {
        self.get(key).ok_or_else(|| err(format!("no top-level key {key:?}")))
    }

    pub fn int(&self, key: &str) -> Result<i64, WeightsError> {
        match self.require(key)? {
            PickleValue::Int(i) => Ok(*i),
            other => Err(err(format!("{key} is not an int: {}", brief(other)))),
        }
    }

    pub fn string_list(&self, key: &str) -> Result<Vec<String>, WeightsError> {
        match self.require(key)? {
            PickleValue::List(items) | PickleValue::Tuple(items) => items
                .iter()
                .map(|v| match v {
                    PickleValue::Str(s) => Ok(s.clone()),
                    other => Err(err(format!("{key} holds a non-string {}", brief(other)))),
                })
                .collect(),
            other => Err(err(format!("{key} is not a list: {}", brief(other)))),
        }
    }

    /// A `{name: tensor}` dict (a state dict), every tensor read and widened to f32.
    pub fn tensor_dict(&self, key: &str) -> Result<BTreeMap<String, HostTensor>, WeightsError> {
        let PickleValue::Dict(items) = self.require(key)? else {
            return Err(err(format!("{key} is not a dict")));
        };
        items
            .iter()
            .map(|(k, v)| match (k, v) {
                (PickleValue::Str(name), PickleValue::Tensor(t)) => Ok((name.clone(), self.tensor(t)?)),
                _ => Err(err(format!("{key}: entry {} is not a named tensor", brief(k)))),
            })
            .collect()
    }

    /// Read one tensor (any strides) into row-major f32.
    pub fn tensor(&self, t: &TensorRef) -> Result<HostTensor, WeightsError> {
        let &(off, len) = self.storages.get(&t.storage).ok_or_else(|| err(format!("storage {} is missing", t.storage)))?;
        let data = &self.bytes[off..off + len];
        let (size, read): (usize, fn(&[u8]) -> f32) = match t.storage_type.as_str() {
            "FloatStorage" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            "HalfStorage" => (2, |b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            "BFloat16Storage" => (2, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            "DoubleStorage" => (8, |b| f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32),
            other => return Err(err(format!("storage type {other} is not a float type"))),
        };
        // Checked before allocating: the last element read must lie inside the storage, and
        // there may not be more elements than the storage holds (a broadcast view would need
        // a huge buffer from a tiny file).
        let too_big = || err(format!("tensor in storage {} has shape {:?} / strides {:?}: larger than its storage", t.storage, t.shape, t.stride));
        if t.shape.len() != t.stride.len() {
            return Err(err(format!("tensor in storage {} has {} sizes and {} strides", t.storage, t.shape.len(), t.stride.len())));
        }
        let numel = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(too_big)?;
        if numel > 0 {
            let last = t.shape.iter().zip(&t.stride).try_fold(t.offset, |a, (&d, &s)| a.checked_add((d - 1).checked_mul(s)?)).ok_or_else(too_big)?;
            if last.checked_add(1).and_then(|n| n.checked_mul(size)).is_none_or(|end| end > len) || numel.saturating_mul(size) > len {
                return Err(too_big());
            }
        }
        let mut values = Vec::with_capacity(numel);
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let e = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            let b = data.get(e * size..(e + 1) * size).ok_or_else(|| err(format!("tensor in storage {} reads past its end", t.storage)))?;
            values.push(read(b));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(HostTensor { shape: t.shape.clone(), values })
    }
}

fn u16_at(b: &[u8], i: usize) -> usize {
    u16::from_le_bytes([b[i], b[i + 1]]) as usize
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize
}

/// Name → (data offset, length) of every stored (uncompressed) zip entry.
fn zip_entries(b: &[u8]) -> Result<HashMap<String, (usize, usize)>, WeightsError> {
    let bad = || err("not a valid zip file");
    let start = b.len().saturating_sub(22 + 65535);
    let eocd = (start..b.len().saturating_sub(21)).rev().find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06]).ok_or_else(bad)?;
    let (count, cd) = (u16_at(b, eocd + 10), u32_at(b, eocd + 16));
    if count == 0xffff || cd == 0xffff_ffff {
        return Err(err("zip64 archives (> 4 GiB or > 65535 entries) are not supported"));
    }
    let mut out = HashMap::new();
    let mut p = cd;
    for _ in 0..count {
        if b.get(p..p + 46).is_none_or(|h| h[..4] != [0x50, 0x4b, 0x01, 0x02]) {
            return Err(bad());
        }
        let (method, size) = (u16_at(b, p + 10), u32_at(b, p + 20));
        let (n, e, c) = (u16_at(b, p + 28), u16_at(b, p + 30), u16_at(b, p + 32));
        let local = u32_at(b, p + 42);
        let name = String::from_utf8_lossy(b.get(p + 46..p + 46 + n).ok_or_else(bad)?).into_owned();
        if method != 0 {
            return Err(err(format!("zip entry {name} is compressed; torch.save writes stored entries")));
        }
        if b.get(local..local.saturating_add(30)).is_none_or(|h| h[..4] != [0x50, 0x4b, 0x03, 0x04]) {
            return Err(bad());
        }
        let data = local + 30 + u16_at(b, local + 26) + u16_at(b, local + 28);
        if data.checked_add(size).is_none_or(|end| end > b.len()) {
            return Err(err(format!("zip entry {name} is truncated")));
        }
        out.insert(name, (data, size));
        p += 46 + n + e + c;
    }
    Ok(out)
}

/// The unpickler's own values: lists and dicts live in arenas and are referenced by index,
/// so that a memoised container that is filled later (pickle's usual order) and fetched
/// again (`BINGET`) is the same object, as in Python.
#[derive(Clone, Debug)]
enum Val {
    Leaf(PickleValue),
    List(usize),
    Dict(usize),
    /// Shared, so that copying a memoised tuple costs nothing.
    Tuple(Rc<Vec<Val>>),
}

struct Unpickler<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: HashMap<usize, Val>,
    lists: Vec<Vec<Val>>,
    dicts: Vec<Vec<(Val, Val)>>,
    /// Bytes of structure resolved so far (see [`MAX_STRUCTURE_BYTES`]).
    spent: Cell<u64>,
}

impl<'a> Unpickler<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), lists: Vec::new(), dicts: Vec::new(), spent: Cell::new(0) }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WeightsError> {
        let s = self.pos.checked_add(n).and_then(|end| self.b.get(self.pos..end)).ok_or_else(|| err("pickle ends early"))?;
        self.pos += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<usize, WeightsError> {
        Ok(self.bytes(n)?.iter().rev().fold(0usize, |a, &x| (a << 8) | x as usize))
    }

    fn line(&mut self) -> Result<String, WeightsError> {
        let end = self.b[self.pos..].iter().position(|&c| c == b'\n').ok_or_else(|| err("pickle ends early"))?;
        let s = String::from_utf8_lossy(&self.b[self.pos..self.pos + end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Val, WeightsError> {
        self.stack.pop().ok_or_else(|| err("pickle stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Val>, WeightsError> {
        let m = self.marks.pop().ok_or_else(|| err("pickle MARK missing"))?;
        if m > self.stack.len() {
            return Err(err("pickle MARK beyond the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn top(&self) -> Result<&Val, WeightsError> {
        self.stack.last().ok_or_else(|| err("pickle stack underflow"))
    }

    fn push(&mut self, v: PickleValue) {
        self.stack.push(Val::Leaf(v));
    }

    fn string(&mut self, n: usize) -> Result<(), WeightsError> {
        let s = String::from_utf8_lossy(self.bytes(n)?).into_owned();
        self.push(PickleValue::Str(s));
        Ok(())
    }

    fn new_list(&mut self) -> Val {
        self.lists.push(vec![]);
        Val::List(self.lists.len() - 1)
    }

    fn new_dict(&mut self) -> Val {
        self.dicts.push(vec![]);
        Val::Dict(self.dicts.len() - 1)
    }

    fn list_on_top(&self) -> Result<usize, WeightsError> {
        match self.top()? {
            Val::List(i) => Ok(*i),
            _ => Err(err("APPEND to a non-list")),
        }
    }

    fn dict_on_top(&self) -> Result<usize, WeightsError> {
        match self.top()? {
            Val::Dict(i) => Ok(*i),
            _ => Err(err("SETITEM on a non-dict")),
        }
    }

    /// Arena references → a self-contained tree.
    fn resolve(&self, v: &Val, depth: usize) -> Result<PickleValue, WeightsError> {
        if depth > 100 {
            return Err(err("pickle nests too deep (or refers to itself)"));
        }
        let cost = 40 + match v {
            Val::Leaf(PickleValue::Str(s) | PickleValue::Global(s)) => s.len() as u64,
            Val::Leaf(PickleValue::Bytes(b)) => b.len() as u64,
            Val::Leaf(PickleValue::Storage(a, b)) => (a.len() + b.len()) as u64,
            Val::Leaf(PickleValue::Tensor(t)) => (t.storage.len() + t.storage_type.len() + 16 * t.shape.len()) as u64,
            _ => 0,
        };
        self.spent.set(self.spent.get() + cost);
        if self.spent.get() > MAX_STRUCTURE_BYTES {
            return Err(err("the pickle expands to more than 256 MiB of objects (shared values repeated): not a checkpoint"));
        }
        Ok(match v {
            Val::Leaf(p) => p.clone(),
            Val::List(i) => PickleValue::List(self.lists[*i].iter().map(|x| self.resolve(x, depth + 1)).collect::<Result<_, _>>()?),
            Val::Tuple(items) => PickleValue::Tuple(items.iter().map(|x| self.resolve(x, depth + 1)).collect::<Result<_, _>>()?),
            Val::Dict(i) => PickleValue::Dict(
                self.dicts[*i]
                    .iter()
                    .map(|(k, x)| Ok((self.resolve(k, depth + 1)?, self.resolve(x, depth + 1)?)))
                    .collect::<Result<_, WeightsError>>()?,
            ),
        })
    }

    fn run(mut self) -> Result<PickleValue, WeightsError> {
        use PickleValue as V;
        loop {
            let op = self.bytes(1)?[0];
            match op {
                0x80 => {
                    self.bytes(1)?;
                } // PROTO
                0x95 => {
                    self.bytes(8)?;
                } // FRAME
                b'.' => {
                    let root = self.pop()?;
                    return self.resolve(&root, 0);
                } // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'}' => {
                    let d = self.new_dict();
                    self.stack.push(d)
                }
                b']' => {
                    let l = self.new_list();
                    self.stack.push(l)
                }
                b')' => self.stack.push(Val::Tuple(Rc::new(vec![]))),
                b'N' => self.push(V::None),
                0x88 => self.push(V::Bool(true)),
                0x89 => self.push(V::Bool(false)),
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(V::Int(v as i64))
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(V::Int(v as i64))
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(V::Int(v as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement, n ≤ 8 bytes
                    let n = self.uint(1)?;
                    let raw = self.bytes(n)?;
                    if n > 8 {
                        return Err(err("integer wider than 64 bits"));
                    }
                    let mut v = raw.iter().rev().fold(0i64, |a, &x| (a << 8) | x as i64);
                    if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(V::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.bytes(8)?.try_into().expect("8 bytes"));
                    self.push(V::Float(v))
                }
                b'X' => {
                    let n = self.uint(4)?;
                    self.string(n)?
                }
                0x8c => {
                    let n = self.uint(1)?;
                    self.string(n)?
                }
                0x8d => {
                    let n = self.uint(8)?;
                    self.string(n)?
                }
                b'C' | b'B' => {
                    let n = if op == b'C' { self.uint(1)? } else { self.uint(4)? };
                    let v = self.bytes(n)?.to_vec();
                    self.push(V::Bytes(v))
                }
                b'q' | b'r' | 0x94 => {
                    let idx = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => self.memo.len(),
                    };
                    let v = self.top()?.clone();
                    self.memo.insert(idx, v);
                }
                b'h' | b'j' => {
                    let idx = if op == b'h' { self.uint(1)? } else { self.uint(4)? };
                    let v = self.memo.get(&idx).cloned().ok_or_else(|| err(format!("memo {idx} missing")))?;
                    self.stack.push(v)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Val::Tuple(Rc::new(items)))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self.stack.len().checked_sub(n).ok_or_else(|| err("pickle stack underflow"))?;
                    let items = self.stack.split_off(at);
                    self.stack.push(Val::Tuple(Rc::new(items)))
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.list_on_top()?;
                    self.lists[l].push(v);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.list_on_top()?;
                    self.lists[l].extend(items);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.dict_on_top()?;
                    self.dicts[d].push((k, v));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.dict_on_top()?;
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        self.dicts[d].push((k, v));
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(V::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Val::Leaf(V::Str(m)), Val::Leaf(V::Str(n))) => self.push(V::Global(format!("{m}.{n}"))),
                        _ => return Err(err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    // BINPERSID: ('storage', StorageType, key, location, numel)
                    let Val::Tuple(items) = self.pop()? else { return Err(err("persistent id is not a tuple")) };
                    match items.as_slice() {
                        [Val::Leaf(V::Str(tag)), Val::Leaf(V::Global(ty)), Val::Leaf(V::Str(key)), ..] if tag == "storage" => {
                            let ty = ty.rsplit('.').next().unwrap_or(ty).to_string();
                            self.push(V::Storage(ty, key.clone()))
                        }
                        other => return Err(err(format!("unknown persistent id {}", brief(&other)))),
                    }
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v)
                }
                b'b' => {
                    // BUILD: the state of a plain object; nothing needed from it here
                    self.pop()?;
                }
                other => return Err(err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1))),
            }
        }
    }

    fn reduce(&mut self, callable: Val, args: Val) -> Result<Val, WeightsError> {
        let Val::Leaf(PickleValue::Global(name)) = callable else {
            return Err(err("REDUCE on something that is not a global"));
        };
        let args = self.resolve(&args, 0)?;
        let items = match &args {
            PickleValue::Tuple(items) => items.as_slice(),
            _ => &[],
        };
        let leaf = match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => match items {
                [PickleValue::Storage(ty, key), PickleValue::Int(offset), size, stride, ..] => PickleValue::Tensor(TensorRef {
                    storage: key.clone(),
                    storage_type: ty.clone(),
                    offset: *offset as usize,
                    shape: usizes(size)?,
                    stride: usizes(stride)?,
                }),
                _ => return Err(err(format!("{name} with unexpected arguments {}", brief(&args)))),
            },
            "torch._utils._rebuild_parameter" => match items.first() {
                Some(t @ PickleValue::Tensor(_)) => t.clone(),
                _ => return Err(err("_rebuild_parameter without a tensor")),
            },
            "collections.OrderedDict" => return Ok(self.new_dict()),
            // Anything else is refused, never built (keep in step with ALLOWED_GLOBALS).
            _ => return Err(err(format!("refuses to call {name}: a checkpoint may only rebuild tensors and dicts ({})", ALLOWED_GLOBALS.join(", ")))),
        };
        Ok(Val::Leaf(leaf))
    }
}

fn usizes(v: &PickleValue) -> Result<Vec<usize>, WeightsError> {
    match v {
        PickleValue::Tuple(items) | PickleValue::List(items) => items
            .iter()
            .map(|x| match x {
                PickleValue::Int(i) if *i >= 0 => Ok(*i as usize),
                other => Err(err(format!("expected a size, got {}", brief(other)))),
            })
            .collect(),
        other => Err(err(format!("expected a tuple of sizes, got {}", brief(other)))),
    }
}
