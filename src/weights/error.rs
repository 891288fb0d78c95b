use thiserror::Error;

/// Everything that can go wrong between weight bytes and a built model. Each message names
/// the file, shard (counted from 1; `index` is 0-based) or tensor and says what to do.
#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("shard {} of {count} ({file}) is missing: {detail}; re-download or re-convert the model", .index + 1)]
    ShardMissing { index: usize, count: usize, file: String, detail: String },
    #[error("shard {} of {count} ({file}) is truncated or has the wrong size: {got} bytes, manifest says {want}; re-download it", .index + 1)]
    ShardSize { index: usize, count: usize, file: String, got: u64, want: u64 },
    #[error("shard {} of {count} ({file}) failed its SHA-256 check (got {got}, manifest says {want}); re-download it", .index + 1)]
    ShardHash { index: usize, count: usize, file: String, got: String, want: String },
    #[error("tensor {name} is missing from the weights")]
    MissingTensor { name: String },
    #[error("tensor {name} has shape {got:?}, the model expects {want:?}")]
    Shape { name: String, got: Vec<usize>, want: Vec<usize> },
    #[error("the weights hold tensors the model does not use: {0}")]
    Unused(String),
    #[error("architecture {got:?} is not {want:?}")]
    Architecture { got: String, want: String },
    #[error("conversion failed: {0}")]
    Convert(String),
}
