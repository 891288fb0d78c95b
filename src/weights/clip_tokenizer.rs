//! CLIP's byte-level BPE tokenizer (SD 2.x / OpenCLIP), read from a diffusers `tokenizer/`
//! folder (`vocab.json`, `merges.txt`, `special_tokens_map.json`). Only the converter uses it,
//! to precompute a prompt's embedding.
//!
//! As transformers' CLIPTokenizer: whitespace runs collapse to one space, the text is
//! lower-cased, split by CLIP's pattern `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|
//! \p{L}+|\p{N}|[^\s\p{L}\p{N}]+`, each piece mapped to byte-level unicode, BPE-merged with
//! `</w>` on its last symbol; then `[BOS] ids [EOS]` truncated to 77 and padded with the pad
//! token (SD 2.x: "!" = 0). ftfy's text repair is not applied.

use std::collections::HashMap;
use std::path::Path;

use super::WeightsError;

pub const CONTEXT_LENGTH: usize = 77;

pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_to_char: [char; 256],
    bos: u32,
    eos: u32,
    pad: u32,
}

/// GPT-2 / CLIP `bytes_to_unicode`: printable bytes map to themselves, the rest to 256 + n.
fn bytes_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).expect("latin-1")
        } else {
            n += 1;
            char::from_u32(256 + n - 1).expect("valid")
        };
    }
    out
}

fn read(path: &Path) -> Result<String, WeightsError> {
    std::fs::read_to_string(path).map_err(|source| WeightsError::Io { path: path.display().to_string(), source })
}

impl ClipTokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self, WeightsError> {
        let vocab_path = dir.join("vocab.json");
        let special = std::fs::read_to_string(dir.join("special_tokens_map.json")).ok();
        Self::from_parts(&read(&vocab_path)?, &read(&dir.join("merges.txt"))?, special.as_deref(), &vocab_path.display().to_string())
    }

    /// From the texts of `vocab.json`, `merges.txt` and (optionally) `special_tokens_map.json`;
    /// `vocab_name` names vocab.json in errors.
    pub fn from_parts(vocab: &str, merges: &str, special_tokens_map: Option<&str>, vocab_name: &str) -> Result<Self, WeightsError> {
        let vocab: HashMap<String, u32> = serde_json::from_str(vocab).map_err(|e| WeightsError::Convert(format!("{vocab_name}: {e}")))?;
        let ranks = merges
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .enumerate()
            .map(|(i, p)| (p, i))
            .collect();
        let pad_name = special_tokens_map
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| match &v["pad_token"] {
                serde_json::Value::String(s) => Some(s.clone()),
                other => other["content"].as_str().map(str::to_string),
            })
            .unwrap_or_else(|| "<|endoftext|>".into());
        let id = |name: &str| vocab.get(name).copied().ok_or_else(|| WeightsError::Convert(format!("{vocab_name}: no token {name:?}")));
        let (bos, eos, pad) = (id("<|startoftext|>")?, id("<|endoftext|>")?, id(&pad_name)?);
        Ok(Self { vocab, ranks, byte_to_char: bytes_to_unicode(), bos, eos, pad })
    }

    /// The character byte-level BPE writes for byte `b`.
    pub fn byte_char(b: u8) -> char {
        bytes_to_unicode()[b as usize]
    }

    /// CLIP's pre-tokenizer pattern, on lower-cased text.
    fn pieces(text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        let rest_starts = |i: usize, s: &str| chars[i..].iter().copied().take(s.chars().count()).eq(s.chars());
        while i < chars.len() {
            let c = chars[i];
            if let Some(special) = ["<|startoftext|>", "<|endoftext|>"].into_iter().find(|s| rest_starts(i, s)) {
                out.push(special.to_string());
                i += special.chars().count();
                continue;
            }
            if c == '\'' {
                if let Some(s) = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].into_iter().find(|s| rest_starts(i, s)) {
                    out.push(s.to_string());
                    i += s.len();
                    continue;
                }
            }
            let start = i;
            if c.is_alphabetic() {
                while i < chars.len() && chars[i].is_alphabetic() {
                    i += 1;
                }
            } else if c.is_numeric() {
                i += 1;
            } else if c.is_whitespace() {
                i += 1;
                continue;
            } else {
                while i < chars.len() && !chars[i].is_whitespace() && !chars[i].is_alphabetic() && !chars[i].is_numeric() {
                    i += 1;
                }
            }
            out.push(chars[start..i].iter().collect());
        }
        out
    }

    fn bpe(&self, piece: &str) -> Vec<String> {
        let mut word: Vec<String> = piece.bytes().map(|b| self.byte_to_char[b as usize].to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = word
                .windows(2)
                .enumerate()
                .filter_map(|(i, p)| self.ranks.get(&(p[0].clone(), p[1].clone())).map(|&r| (r, i)))
                .min();
            let Some((_, i)) = best else { break };
            let (a, b) = (word[i].clone(), word[i + 1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut j = 0;
            while j < word.len() {
                if j + 1 < word.len() && word[j] == a && word[j + 1] == b {
                    merged.push(format!("{a}{b}"));
                    j += 2;
                } else {
                    merged.push(word[j].clone());
                    j += 1;
                }
            }
            word = merged;
        }
        word
    }

    /// Token ids without BOS / EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, WeightsError> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let mut ids = Vec::new();
        for piece in Self::pieces(&text) {
            if let Some(&id) = self.vocab.get(&piece).filter(|_| piece.starts_with("<|")) {
                ids.push(id);
                continue;
            }
            for sym in self.bpe(&piece) {
                ids.push(*self.vocab.get(&sym).ok_or_else(|| WeightsError::Convert(format!("BPE symbol {sym:?} is not in vocab.json")))?);
            }
        }
        Ok(ids)
    }

    /// `[BOS] ids [EOS]`, truncated to 77 (EOS kept) and padded: what SD feeds its text encoder.
    pub fn encode_padded(&self, text: &str) -> Result<Vec<i64>, WeightsError> {
        let mut ids = vec![self.bos];
        ids.extend(self.encode(text)?.into_iter().take(CONTEXT_LENGTH - 2));
        ids.push(self.eos);
        ids.resize(CONTEXT_LENGTH, self.pad);
        Ok(ids.into_iter().map(i64::from).collect())
    }
}
