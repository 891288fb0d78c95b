//! A folder of input files read in pieces: a directory on disk natively, the files a person
//! picked in the browser (src/web/convert.rs). Converters read each tensor where it lies, so a
//! multi-gigabyte checkpoint never sits in memory whole.

use super::WeightsError;

pub trait Folder {
    /// What to call the folder in messages.
    fn name(&self) -> String;
    /// Every file, as a '/'-separated path relative to the folder.
    fn files(&self) -> Vec<String>;
    /// The size of `path` in bytes; `None` if there is no such file.
    fn len(&self, path: &str) -> Option<u64>;
    /// `len` bytes of `path` from `offset`.
    fn read_at(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, WeightsError>;

    fn has(&self, path: &str) -> bool {
        self.len(path).is_some()
    }

    /// A whole (small) file.
    fn read(&self, path: &str) -> Result<Vec<u8>, WeightsError> {
        let len = self.len(path).ok_or_else(|| missing(self, path))?;
        self.read_at(path, 0, len)
    }

    fn read_text(&self, path: &str) -> Result<String, WeightsError> {
        String::from_utf8(self.read(path)?).map_err(|_| WeightsError::Convert(format!("{}/{path} is not UTF-8 text", self.name())))
    }
}

pub fn missing(folder: &(impl Folder + ?Sized), path: &str) -> WeightsError {
    WeightsError::Convert(format!("{} has no {path}", folder.name()))
}

#[cfg(not(target_arch = "wasm32"))]
pub use disk::DiskFolder;

#[cfg(not(target_arch = "wasm32"))]
mod disk {
    use std::io::{Read, Seek, SeekFrom};
    use std::path::{Path, PathBuf};

    use super::{Folder, WeightsError};

    /// A directory on disk (two levels deep: a diffusers folder's components).
    pub struct DiskFolder {
        root: PathBuf,
    }

    impl DiskFolder {
        pub fn new(root: &Path) -> Result<Self, WeightsError> {
            if !root.is_dir() {
                return Err(WeightsError::Convert(format!("{} is not a folder", root.display())));
            }
            Ok(Self { root: root.to_path_buf() })
        }
    }

    fn io(path: &Path, source: std::io::Error) -> WeightsError {
        WeightsError::Io { path: path.display().to_string(), source }
    }

    impl Folder for DiskFolder {
        fn name(&self) -> String {
            self.root.display().to_string()
        }

        fn files(&self) -> Vec<String> {
            let mut out = Vec::new();
            let entries = |d: &Path| std::fs::read_dir(d).into_iter().flatten().filter_map(|e| e.ok());
            for e in entries(&self.root) {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() {
                    out.extend(entries(&e.path()).filter(|f| f.path().is_file()).map(|f| format!("{name}/{}", f.file_name().to_string_lossy())));
                } else {
                    out.push(name);
                }
            }
            out.sort();
            out
        }

        fn len(&self, path: &str) -> Option<u64> {
            std::fs::metadata(self.root.join(path)).ok().filter(|m| m.is_file()).map(|m| m.len())
        }

        fn read_at(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
            let p = self.root.join(path);
            let mut f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
            f.seek(SeekFrom::Start(offset)).map_err(|e| io(&p, e))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).map_err(|e| io(&p, e))?;
            Ok(buf)
        }
    }
}
