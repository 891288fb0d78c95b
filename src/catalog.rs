//! The model catalog (assets/catalog.json): ids, names, descriptions and licences of the
//! models this project can convert or serve. The CLI lists it with what is converted in a
//! models folder (`onestep models`); the web build writes the page's models.json from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const CATALOG: &str = include_str!("../assets/catalog.json");

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub architecture: String,
    pub scale: u32,
    /// Download size of the weights (the converted shards), when known.
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub licence: String,
    /// The manifest's path under the served root, or an absolute URL.
    pub manifest: String,
    #[serde(default)]
    pub default: bool,
}

#[derive(Deserialize)]
struct Catalog {
    models: Vec<Entry>,
}

/// The catalog compiled into the binary.
pub fn builtin() -> Vec<Entry> {
    serde_json::from_str::<Catalog>(CATALOG).expect("assets/catalog.json is valid").models
}

/// A catalog entry with where it stands in a models folder.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub entry: Entry,
    /// The converted model's folder, when its manifest is there.
    pub path: Option<PathBuf>,
}

/// Every catalog entry, plus converted models in `models` that the catalog does not name
/// (their id, architecture, scale and size from the manifest).
#[cfg(not(target_arch = "wasm32"))]
pub fn list(models: &Path) -> Vec<Listed> {
    use crate::weights::loader::read_manifest;
    let mut out: Vec<Listed> = builtin()
        .into_iter()
        .map(|mut entry| {
            let dir = models.join(&entry.id);
            let path = match read_manifest(&dir) {
                Ok(m) => {
                    entry.bytes = Some(m.total_bytes());
                    Some(dir)
                }
                Err(_) => None,
            };
            Listed { entry, path }
        })
        .collect();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(models).into_iter().flatten().flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(m) = read_manifest(&dir) else { continue };
        let id = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if out.iter().any(|l| l.entry.id == id) {
            continue;
        }
        out.push(Listed {
            entry: Entry {
                name: m.model_id.clone(),
                description: String::new(),
                architecture: m.architecture.clone(),
                scale: m.config.get("scale").and_then(|s| s.as_u64()).unwrap_or(4) as u32,
                bytes: Some(m.total_bytes()),
                licence: String::new(),
                manifest: format!("models/{id}/manifest.json"),
                default: false,
                id,
            },
            path: Some(dir),
        });
    }
    out
}

/// `--model` as given: a converted folder, or a catalog id (or folder name) under `models`.
pub fn resolve(arg: &Path, models: &Path) -> PathBuf {
    let bare = arg.components().count() == 1;
    if !arg.join("manifest.json").exists() && bare && models.join(arg).join("manifest.json").exists() {
        return models.join(arg);
    }
    arg.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_and_has_one_default() {
        let c = builtin();
        assert_eq!(c.iter().filter(|e| e.default).count(), 1);
        for id in ["realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x2", "realesr-animevideov3-x3", "realesr-animevideov3-x4"] {
            assert!(c.iter().any(|e| e.id == id), "{id} missing");
        }
        assert_eq!(c.iter().find(|e| e.id == "realesr-animevideov3-x3").unwrap().scale, 3);
    }
}
