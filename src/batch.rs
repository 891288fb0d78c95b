//! Batch upscaling for the `onestep` CLI, the pure part: which files a run works on (folders
//! expanded, names sorted, `--shard i/n` applied), what each output is called, which outputs
//! are already done, and the atomic write that makes a killed run resumable
//! ([docs/batch.md](../docs/batch.md)). The CLI only wires these to the model.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Extensions (compared case-insensitively) of the files a folder input contributes.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("no image files (.png, .jpg, .jpeg, .webp) in the inputs")]
    NoImages,
    /// Two or more inputs would write the same output (names compared case-insensitively).
    #[error("inputs with the same name stem would write the same output {output}: {}", inputs.join(", "))]
    SameStem { output: String, inputs: Vec<String> },
    #[error("the output {0} would replace its own input")]
    ReplacesInput(String),
    #[error("--shard must be I/N with 0 <= I < N (e.g. 0/4), got {0:?}")]
    Shard(String),
}

/// Does this file name have one of [`IMAGE_EXTENSIONS`] (any case)?
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The single-file mode of `onestep upscale`: exactly one input that is not a folder (a file,
/// or a path that does not exist: reading it gives the error), and an output that is neither an
/// existing folder nor written with a trailing separator. Then the output is the file to write.
pub fn is_single_file(inputs: &[PathBuf], output: &Path) -> bool {
    let trailing_separator = output.as_os_str().to_string_lossy().chars().last().is_some_and(std::path::is_separator);
    inputs.len() == 1 && !inputs[0].is_dir() && !output.is_dir() && !trailing_separator
}

/// The image files of the inputs: a folder gives its files with an image extension (not
/// recursive; hidden files, whose names start with '.', are left out), a file is taken as it
/// is whatever its extension. Duplicates (the same file named twice) count once. The list is
/// sorted by file name (then by path), so it depends only on the names, not on the order of
/// the arguments or of the folder listing.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, BatchError> {
    let read_err = |path: &Path, e: io::Error| BatchError::Read { path: path.display().to_string(), detail: e.to_string() };
    let mut files = Vec::new();
    for input in inputs {
        let meta = fs::metadata(input).map_err(|e| read_err(input, e))?;
        if !meta.is_dir() {
            files.push(input.clone());
            continue;
        }
        for entry in fs::read_dir(input).map_err(|e| read_err(input, e))? {
            let entry = entry.map_err(|e| read_err(input, e))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && is_image_name(&path) && path.is_file() {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(BatchError::NoImages);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then_with(|| a.cmp(b)));
    // The same file reached twice (a folder and one of its files, or `./a.png` and `a.png`).
    let mut seen = std::collections::HashSet::new();
    files.retain(|p| seen.insert(fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(files)
}

/// The output file name of an input: its stem + `.png`.
pub fn output_name(input: &Path) -> OsString {
    let mut name = input.file_stem().map(OsStr::to_os_string).unwrap_or_else(|| OsString::from("out"));
    name.push(".png");
    name
}

/// One input file and the outputs it writes (one, or one per pair of a `--lambda-grid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub input: PathBuf,
    pub outputs: Vec<PathBuf>,
}

/// Outputs in `out_dir` for the sorted inputs: `out_dir/<stem>.png`. Inputs whose outputs
/// would be the same file (the same stem, compared case-insensitively because some file
/// systems are) are an error that names all of them; so is an output that is its own input.
pub fn plan(files: &[PathBuf], out_dir: &Path) -> Result<Vec<Job>, BatchError> {
    let mut by_name: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    for f in files {
        by_name.entry(output_name(f).to_string_lossy().to_lowercase()).or_default().push(f);
    }
    if let Some(clash) = by_name.values().find(|v| v.len() > 1) {
        return Err(BatchError::SameStem {
            output: out_dir.join(output_name(clash[0])).display().to_string(),
            inputs: clash.iter().map(|p| p.display().to_string()).collect(),
        });
    }
    let out_dir_real = fs::canonicalize(out_dir).ok();
    let mut jobs = Vec::with_capacity(files.len());
    for f in files {
        let output = out_dir.join(output_name(f));
        if let (Some(dir), Ok(input)) = (&out_dir_real, fs::canonicalize(f)) {
            if dir.join(output_name(f)) == input {
                return Err(BatchError::ReplacesInput(output.display().to_string()));
            }
        }
        jobs.push(Job { input: f.clone(), outputs: vec![output] });
    }
    Ok(jobs)
}

/// `--lambda-grid`: `OUT`'s stem + `_p{X}_s{Y}.png` next to `OUT`, for every pair of names.
pub fn grid_paths(output: &Path, names: &[(String, String)]) -> Vec<PathBuf> {
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    names.iter().map(|(p, s)| output.with_file_name(format!("{stem}_p{p}_s{s}.png"))).collect()
}

/// `--shard I/N`: this process takes the files at positions `p` of the sorted list of all
/// inputs with `p % N == I`. The split depends only on the sorted names, so the processes of a
/// job array need no coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole list (no `--shard`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(spec: &str) -> Result<Shard, BatchError> {
        let bad = || BatchError::Shard(spec.to_string());
        let (i, n) = spec.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The items of this shard, in order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items.into_iter().enumerate().filter(|(p, _)| p % self.count == self.index).map(|(_, x)| x).collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Are all of a job's outputs there? Outputs are written atomically, so a file under its final
/// name is complete (a non-empty file: an empty one is never ours).
pub fn is_done(job: &Job) -> bool {
    job.outputs.iter().all(|o| fs::metadata(o).is_ok_and(|m| m.is_file() && m.len() > 0))
}

/// The jobs to run and how many were skipped because they are done (none with `overwrite`).
pub fn skip_done(jobs: Vec<Job>, overwrite: bool) -> (Vec<Job>, usize) {
    if overwrite {
        return (jobs, 0);
    }
    let total = jobs.len();
    let todo: Vec<Job> = jobs.into_iter().filter(|j| !is_done(j)).collect();
    let skipped = total - todo.len();
    (todo, skipped)
}

/// The prefix of the temporary files [`write_atomic`] uses for `name`: `.<name>.tmp-`.
fn temp_prefix(name: &OsStr) -> OsString {
    let mut p = OsString::from(".");
    p.push(name);
    p.push(".tmp-");
    p
}

/// Write `bytes` to `path` so that `path` is either absent, its old content, or all of
/// `bytes`: into `.<name>.tmp-<pid>` in the same folder, fsync, rename over `path`, fsync the
/// folder. Temporary files of `path` left by a killed run are removed afterwards.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = temp_prefix(name);
    let pid = std::process::id();
    let mut attempt = 0u32;
    // A new file: a stale one with this pid (pids repeat across containers) is not reused.
    let (tmp, mut file) = loop {
        let mut tmp_name = prefix.clone();
        tmp_name.push(if attempt == 0 { format!("{pid}") } else { format!("{pid}-{attempt}") });
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    remove_stale_temps(dir, name);
    Ok(())
}

/// Remove `.<name>.tmp-*` in `dir` (what a killed [`write_atomic`] of `name` leaves).
fn remove_stale_temps(dir: &Path, name: &OsStr) {
    let prefix = temp_prefix(name);
    let prefix = prefix.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).unwrap();
    }

    fn names(files: &[PathBuf]) -> Vec<String> {
        files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn folders_give_their_images_sorted_by_name() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::create_dir(&a).unwrap();
        fs::create_dir(a.join("sub.png")).unwrap();
        for n in ["c.PNG", "b.jpg", "a.Jpeg", "d.webp", "notes.txt", ".hidden.png", "e"] {
            touch(&a.join(n), b"x");
        }
        touch(&a.join("sub.png/inner.png"), b"x");
        let extra = d.path().join("0.gif");
        touch(&extra, b"x");
        let files = collect_inputs(&[a.clone(), extra.clone(), a.join("b.jpg")]).unwrap();
        assert_eq!(names(&files), ["0.gif", "a.Jpeg", "b.jpg", "c.PNG", "d.webp"]);
        // The order of the arguments does not matter.
        assert_eq!(collect_inputs(&[extra, a.clone()]).unwrap(), files);
        let empty = d.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert_eq!(collect_inputs(&[empty]), Err(BatchError::NoImages));
        let missing = collect_inputs(&[a.join("missing.png")]).unwrap_err();
        assert!(missing.to_string().starts_with("cannot read ") && missing.to_string().contains("missing.png"), "{missing}");
    }

    #[test]
    fn single_file_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("in.png");
        touch(&f, b"x");
        let out = d.path().join("out.png");
        assert!(is_single_file(&[f.clone()], &out));
        assert!(is_single_file(&[d.path().join("missing.png")], &out));
        assert!(!is_single_file(&[f.clone()], d.path()), "an existing folder");
        assert!(!is_single_file(&[f.clone()], Path::new("new-folder/")), "a trailing '/'");
        assert!(!is_single_file(&[f.clone(), f.clone()], &out));
        assert!(!is_single_file(&[d.path().to_path_buf()], &out), "a folder input");
    }

    #[test]
    fn outputs_are_stem_png_and_clashes_name_every_input() {
        let out = Path::new("out");
        let files = vec![PathBuf::from("x/a.jpg"), PathBuf::from("y/b.webp"), PathBuf::from("y/c.png")];
        let jobs = plan(&files, out).unwrap();
        let outputs: Vec<&Path> = jobs.iter().map(|j| j.outputs[0].as_path()).collect();
        assert_eq!(outputs, [Path::new("out/a.png"), Path::new("out/b.png"), Path::new("out/c.png")]);
        let clash = plan(&[PathBuf::from("x/a.jpg"), PathBuf::from("x/a.png"), PathBuf::from("y/b.png")], out).unwrap_err();
        assert_eq!(
            clash,
            BatchError::SameStem { output: "out/a.png".into(), inputs: vec!["x/a.jpg".into(), "x/a.png".into()] }
        );
        assert!(plan(&[PathBuf::from("A.png"), PathBuf::from("a.jpg")], out).is_err(), "case-insensitive");
    }

    #[test]
    fn an_output_over_its_input_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.png");
        touch(&f, b"x");
        assert!(matches!(plan(&[f.clone()], d.path()), Err(BatchError::ReplacesInput(_))));
        let g = d.path().join("b.jpg");
        touch(&g, b"x");
        assert_eq!(plan(&[g.clone()], d.path()).unwrap()[0].outputs, [d.path().join("b.png")]);
    }

    #[test]
    fn shard_parsing_and_selection() {
        assert_eq!(Shard::parse("0/1"), Ok(Shard::ALL));
        assert_eq!(Shard::parse("3/4"), Ok(Shard { index: 3, count: 4 }));
        for bad in ["2/2", "a/b", "0/0", "1", "", "/", "-1/2", "1/2/3", "5/3"] {
            assert_eq!(Shard::parse(bad), Err(BatchError::Shard(bad.into())), "{bad:?}");
        }
        let items: Vec<usize> = (0..7).collect();
        let parts: Vec<Vec<usize>> = (0..3).map(|i| Shard { index: i, count: 3 }.select(items.clone())).collect();
        assert_eq!(parts, [vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        assert_eq!(Shard { index: 4, count: 5 }.select(vec![1, 2]), Vec::<i32>::new());
        assert_eq!(Shard::ALL.select(items.clone()), items);
    }

    #[test]
    fn done_outputs_are_skipped_unless_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let job = |n: &str| Job { input: PathBuf::from(n), outputs: vec![d.path().join(n)] };
        touch(&d.path().join("a.png"), b"png");
        touch(&d.path().join("empty.png"), b"");
        touch(&d.path().join(".b.png.tmp-77"), b"half");
        let jobs = vec![job("a.png"), job("b.png"), job("empty.png")];
        let (todo, skipped) = skip_done(jobs.clone(), false);
        assert_eq!(skipped, 1);
        assert_eq!(todo, jobs[1..]);
        assert_eq!(skip_done(jobs.clone(), true), (jobs, 0));
        // A grid job is done when every one of its outputs is.
        let grid = Job { input: "g.png".into(), outputs: grid_paths(&d.path().join("a.png"), &[("1".into(), "2".into())]) };
        assert_eq!(grid.outputs, [d.path().join("a_p1_s2.png")]);
        assert!(!is_done(&grid));
        touch(&grid.outputs[0], b"png");
        assert!(is_done(&grid));
    }

    #[test]
    fn atomic_write_replaces_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x.png");
        // Stale temporaries of a killed run, one with this very pid.
        touch(&d.path().join(format!(".x.png.tmp-{}", std::process::id())), b"stale");
        touch(&d.path().join(".x.png.tmp-1"), b"stale");
        touch(&d.path().join(".y.png.tmp-1"), b"another output's");
        write_atomic(&out, b"first").unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"first");
        write_atomic(&out, b"second").unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"second");
        let mut left: Vec<String> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, [".y.png.tmp-1", "x.png"]);
        // A folder that does not exist: an error, nothing written.
        assert!(write_atomic(&d.path().join("no/such.png"), b"x").is_err());
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
