//! Fuzzing harnesses: one per parser that reads bytes from outside (fuzz/fuzz_targets/ calls
//! them under libFuzzer, scripts/fuzz.sh runs them, tests/fuzz_smoke.rs replays the seeds and
//! a few thousand mutations in CI). Each takes arbitrary bytes and drives the parser the way
//! the product does; errors are the expected outcome, and a panic, a hang or a huge
//! allocation is a bug. docs/reliability.md records the runs.

use crate::image_io;
use crate::weights::clip_tokenizer::ClipTokenizer;
use crate::weights::torch_pickle::{PickleValue, TorchCheckpoint};
use crate::weights::{Manifest, ParamStore, diffusers, load_into_store, ncnn};
use crate::weights::{ShardEntry, ShardSource, WeightsError};

/// The largest image the image harness decodes (the CLI allows 25 MP; a fuzzer's time is
/// better spent on headers and entropy-coded data than on filling large buffers).
const IMAGE_MAX_PIXELS: u64 = 1 << 20;

/// A whole `torch.save` file (zip): unpickle, then read every tensor it names.
pub fn torch_zip(data: &[u8]) {
    if let Ok(ck) = TorchCheckpoint::from_bytes(data.to_vec()) {
        read_tensors(&ck, &ck.root);
    }
}

/// A bare pickle stream, stored as `archive/data.pkl` in a zip that also holds two small
/// storages (`data/0`, `data/1`), so tensors can point at real bytes.
pub fn pickle(data: &[u8]) {
    torch_zip(&stored_zip(&[
        ("archive/data.pkl", data),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &[0x3c; 256]),
        ("archive/data/1", &[0x41; 64]),
    ]));
}

fn read_tensors(ck: &TorchCheckpoint, v: &PickleValue) {
    match v {
        PickleValue::Tensor(t) => {
            let _ = ck.tensor(t);
        }
        PickleValue::List(items) | PickleValue::Tuple(items) => items.iter().for_each(|x| read_tensors(ck, x)),
        PickleValue::Dict(items) => items.iter().for_each(|(k, x)| {
            read_tensors(ck, k);
            read_tensors(ck, x)
        }),
        _ => {}
    }
}

/// A zip of stored (uncompressed) entries, as `torch.save` writes (CRCs left 0: the reader
/// does not check them).
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    let le16 = |v: &mut Vec<u8>, x: usize| v.extend_from_slice(&(x as u16).to_le_bytes());
    let le32 = |v: &mut Vec<u8>, x: usize| v.extend_from_slice(&(x as u32).to_le_bytes());
    for (name, data) in entries {
        let local = out.len();
        out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        le32(&mut out, 0); // crc
        le32(&mut out, data.len());
        le32(&mut out, data.len());
        le16(&mut out, name.len());
        le16(&mut out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        le32(&mut central, 0);
        le32(&mut central, data.len());
        le32(&mut central, data.len());
        le16(&mut central, name.len());
        central.extend_from_slice(&[0; 12]);
        le32(&mut central, local);
        central.extend_from_slice(name.as_bytes());
    }
    let cd = out.len();
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
    le16(&mut out, entries.len());
    le16(&mut out, entries.len());
    le32(&mut out, central.len());
    le32(&mut out, cd);
    le16(&mut out, 0);
    out
}

/// A `.safetensors` file (diffusers' weights) into a parameter store on the CPU.
pub fn safetensors(data: &[u8]) {
    let mut store = ParamStore::new(&crate::device::cpu());
    let _ = diffusers::insert_safetensors(&mut store, data, "fuzz input");
}

/// An ncnn model: the `.param` text, a NUL byte, then the `.bin` bytes.
pub fn ncnn(data: &[u8]) {
    let (param, bin) = split_nul(data);
    let Ok(text) = std::str::from_utf8(param) else { return };
    let _ = ncnn::read_model(text, bin, "fuzz.bin", &mut |_, _, _, _| Ok(()));
}

/// `manifest.json`, a NUL byte, then the bytes of every shard. The manifest is checked as
/// the loader checks it; if it passes, each shard's declared size and SHA-256 are set to the
/// given bytes' (a fuzzer cannot forge a hash) and the model is loaded onto the CPU, so the
/// offsets, lengths, shapes and parts a hostile manifest declares reach the loader.
pub fn manifest(data: &[u8]) {
    let (json, shard) = split_nul(data);
    let Ok(text) = std::str::from_utf8(json) else { return };
    if Manifest::from_json(text).is_err() {
        return;
    }
    let mut forged: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return,
    };
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(shard))
    };
    if let Some(shards) = forged["shards"].as_array_mut() {
        for s in shards {
            s["bytes"] = shard.len().into();
            s["sha256"] = digest.clone().into();
        }
    }
    // Forging may make the manifest invalid (an offset now past the shard): that is checked.
    let Ok(forged) = Manifest::from_json(&forged.to_string()) else { return };
    struct Same<'a>(&'a [u8]);
    impl ShardSource for Same<'_> {
        fn read(&mut self, _: usize, _: usize, _: &ShardEntry) -> Result<Vec<u8>, WeightsError> {
            Ok(self.0.to_vec())
        }
    }
    let _ = load_into_store(&forged, &mut Same(shard), &crate::device::cpu(), &mut |_| {});
}

/// An image file through the decoder with limits (format sniffing, size checks, truncation
/// checks, EXIF orientation, alpha split).
pub fn image(data: &[u8]) {
    let _ = image_io::decode_with_limit(data, IMAGE_MAX_PIXELS);
}

/// CLIP's tokenizer: the first byte chooses what the rest is. Even: a prompt, encoded with a
/// small built-in vocabulary and merges. Odd: `vocab.json`, NUL, `merges.txt`, NUL,
/// `special_tokens_map.json`, then the prompt "a photo".
pub fn tokenizer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = small_tokenizer().encode_padded(text);
        }
        return;
    }
    let mut parts = rest.splitn(3, |&b| b == 0).map(|p| std::str::from_utf8(p).ok());
    let (Some(Some(vocab)), Some(Some(merges))) = (parts.next(), parts.next()) else { return };
    let special = parts.next().flatten();
    if let Ok(t) = ClipTokenizer::from_parts(vocab, merges, special, "vocab.json") {
        let _ = t.encode_padded("a photo");
    }
}

/// Every single byte, a few letters and their merges up to "photo</w>".
fn small_tokenizer() -> &'static ClipTokenizer {
    static T: std::sync::OnceLock<ClipTokenizer> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let merges = ["p h", "ph o", "t o</w>", "pho to</w>", "a </w>", "i n", "in g</w>"];
        let mut vocab = serde_json::Map::new();
        let mut add = |s: String| {
            let n = vocab.len();
            vocab.entry(s).or_insert(n.into());
        };
        for b in 0..=255u8 {
            let c = ClipTokenizer::byte_char(b);
            add(c.to_string());
            add(format!("{c}</w>"));
        }
        for m in merges {
            add(m.replace(' ', ""));
        }
        add("<|startoftext|>".into());
        add("<|endoftext|>".into());
        let vocab = serde_json::Value::Object(vocab).to_string();
        ClipTokenizer::from_parts(&vocab, &merges.join("\n"), None, "vocab.json").expect("the built-in vocabulary is valid")
    })
}

fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The targets by name (tests/fuzz_smoke.rs and the seed generator iterate over them).
pub const TARGETS: [(&str, fn(&[u8])); 7] = [
    ("torch_zip", torch_zip),
    ("pickle", pickle),
    ("safetensors", safetensors),
    ("ncnn", ncnn),
    ("manifest", manifest),
    ("image", image),
    ("tokenizer", tokenizer),
];
