//! Streaming loader: one shard at a time is fetched, checked (size, SHA-256), turned into
//! device tensors and dropped, so host memory never holds more than one shard.

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ShardEntry};
use super::{ParamStore, WeightsError};
use burn::tensor::Device;

/// Progress of a load: shard `index` of `count` done, `bytes_done` of `bytes_total`.
#[derive(Clone, Copy, Debug)]
pub struct LoadProgress {
    pub index: usize,
    pub count: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Where shard bytes come from (a directory natively; fetch + IndexedDB in the browser).
pub trait ShardSource {
    fn read(&mut self, index: usize, count: usize, shard: &ShardEntry) -> Result<Vec<u8>, WeightsError>;
}

/// Check a shard's size and SHA-256 against the manifest. Nothing unchecked is ever used.
pub fn verify_shard(index: usize, count: usize, shard: &ShardEntry, bytes: &[u8]) -> Result<(), WeightsError> {
    check_size(index, count, shard, bytes.len() as u64)?;
    check_digest(index, count, shard, &hex::encode(Sha256::digest(bytes)))
}

/// The size half of [`verify_shard`] (for shards hashed piece by piece).
pub fn check_size(index: usize, count: usize, shard: &ShardEntry, got: u64) -> Result<(), WeightsError> {
    if got != shard.bytes {
        return Err(WeightsError::ShardSize { index, count, file: shard.file.clone(), got, want: shard.bytes });
    }
    Ok(())
}

/// The hash half of [`verify_shard`]: `got` is the shard's SHA-256 in hex.
pub fn check_digest(index: usize, count: usize, shard: &ShardEntry, got: &str) -> Result<(), WeightsError> {
    if !got.eq_ignore_ascii_case(&shard.sha256) {
        return Err(WeightsError::ShardHash { index, count, file: shard.file.clone(), got: got.to_string(), want: shard.sha256.clone() });
    }
    Ok(())
}

/// Load every shard of `manifest` into a [`ParamStore`] on `device`.
pub fn load_into_store(
    manifest: &Manifest,
    source: &mut dyn ShardSource,
    device: &Device,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<ParamStore, WeightsError> {
    let count = manifest.shards.len();
    let bytes_total = manifest.total_bytes();
    let mut store = ParamStore::new(device);
    let mut bytes_done = 0;
    for (index, shard) in manifest.shards.iter().enumerate() {
        let bytes = source.read(index, count, shard)?;
        verify_shard(index, count, shard, &bytes)?;
        store.insert_shard(manifest, index, &bytes)?;
        bytes_done += shard.bytes;
        progress(LoadProgress { index, count, bytes_done, bytes_total });
    }
    Ok(store)
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;
    use std::path::{Path, PathBuf};

    pub struct DirSource(pub PathBuf);

    impl ShardSource for DirSource {
        fn read(&mut self, index: usize, count: usize, shard: &ShardEntry) -> Result<Vec<u8>, WeightsError> {
            std::fs::read(self.0.join(&shard.file)).map_err(|e| WeightsError::ShardMissing {
                index,
                count,
                file: shard.file.clone(),
                detail: e.to_string(),
            })
        }
    }

    pub fn read_manifest(dir: &Path) -> Result<Manifest, WeightsError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Manifest::from_json(&text)
    }

    /// Read `dir/manifest.json` and load all shards of `dir` onto `device`.
    pub fn load_dir(
        dir: &Path,
        device: &Device,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<(Manifest, ParamStore), WeightsError> {
        let manifest = read_manifest(dir)?;
        let store = load_into_store(&manifest, &mut DirSource(dir.to_path_buf()), device, progress)?;
        Ok((manifest, store))
    }
}
