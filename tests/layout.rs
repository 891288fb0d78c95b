//! The code's layout rules (README, "The code"), checked on the sources themselves:
//! - no cycle of imports between files (in particular no two files that import each other),
//!   in the Rust crate (`crate::` / `super::` / `self::` paths, in `use` and inline) and in
//!   web/src's TypeScript (`import … from './x.js'`, `export … from`, `import('./x.js')`);
//! - rooms in layers: a file imports only rooms at its own level or below ([`RANK`]);
//! - no file under src/ or web/src/ over 750 lines, none under src/bin/ over 400.
//!
//! Plain text scanning (comments and strings skipped), no compiler: a path that names a module
//! file counts as an import of that file; a `mod.rs`'s declarations of its children do not.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The rooms of src/ by level: a file may import its own level and below, never above.
/// model and weights share a level: the model modules read their parameters from a
/// `weights::ParamStore`, and the converters run the model (the prompt embedding) and name
/// its configs.
const RANK: &[(&str, u8)] = &[
    ("cpu", 0),
    ("device", 0),
    ("pil_resize", 0),
    ("model", 1),
    ("weights", 1),
    ("tiling", 2),
    ("image_io", 2),
    ("catalog", 2),
    ("pipeline", 3),
    ("upscaler", 4),
    ("batch", 5),
    ("fuzzing", 5),
    ("web", 6),
];

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// The source with comments and string / char literals blanked (newlines kept).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            i += end;
        } else if b[i] == b'"' || b[i] == b'`' || (b[i] == b'\'' && rest.len() > 2 && rest[1..].chars().nth(1) == Some('\'')) {
            // A string (TS backtick templates too) or a one-char literal like 'x'; lifetimes
            // ('a) are left alone.
            let q = b[i];
            let mut j = i + 1;
            while j < b.len() && b[j] != q {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push(' ');
            out.extend(src[i..(j + 1).min(b.len())].chars().filter(|&c| c == '\n'));
            i = j + 1;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path a Rust file names from `crate`, `super` or `self`, expanded out of `use`
/// groups, with the inline module (`mod tests { … }`) it appears in.
fn rust_paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    // Tokens: identifiers, `::`, and single punctuation.
    let mut toks: Vec<String> = Vec::new();
    let cs: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if ident_char(c) {
            let s = i;
            while i < cs.len() && ident_char(cs[i]) {
                i += 1;
            }
            toks.push(cs[s..i].iter().collect());
        } else if c == ':' && cs.get(i + 1) == Some(&':') {
            toks.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                toks.push(c.to_string());
            }
            i += 1;
        }
    }
    let mut out = Vec::new();
    // Inline modules: (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut t = 0;
    while t < toks.len() {
        let tok = toks[t].as_str();
        let here = || inline.iter().map(|(n, _)| n.clone()).collect::<Vec<String>>();
        match tok {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(t + 2).is_some_and(|x| x == "{") => {
                inline.push((toks[t + 1].clone(), depth));
            }
            "use" => {
                let end = (t..toks.len()).find(|&k| toks[k] == ";").unwrap_or(toks.len());
                let mut paths = Vec::new();
                expand_use(&toks[t + 1..end], &mut Vec::new(), &mut paths);
                out.extend(paths.into_iter().filter(|p| matches!(p[0].as_str(), "crate" | "super" | "self")).map(|p| (here(), p)));
                t = end;
                continue;
            }
            "crate" | "super" | "self" if toks.get(t + 1).is_some_and(|x| x == "::") && (t == 0 || toks[t - 1] != "::") => {
                let mut p = vec![tok.to_string()];
                let mut k = t + 1;
                while toks.get(k).is_some_and(|x| x == "::") && toks.get(k + 1).is_some_and(|x| x.chars().all(ident_char)) {
                    p.push(toks[k + 1].clone());
                    k += 2;
                }
                out.push((here(), p));
                t = k;
                continue;
            }
            _ => {}
        }
        t += 1;
    }
    out
}

/// `a::b::{c, d::{e, f}}` → a::b::c, a::b::d::e, a::b::d::f (aliases and globs dropped).
fn expand_use(toks: &[String], prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut i = 0;
    let start = prefix.len();
    while i < toks.len() {
        match toks[i].as_str() {
            "{" => {
                // The group's items, split at top-level commas.
                let mut d = 0;
                let mut item = Vec::new();
                let mut j = i + 1;
                while j < toks.len() {
                    match toks[j].as_str() {
                        "{" => d += 1,
                        "}" if d == 0 => break,
                        "}" => d -= 1,
                        "," if d == 0 => {
                            expand_use(&item, prefix, out);
                            item.clear();
                            j += 1;
                            continue;
                        }
                        _ => {}
                    }
                    item.push(toks[j].clone());
                    j += 1;
                }
                expand_use(&item, prefix, out);
                prefix.truncate(start);
                return;
            }
            "as" => break,
            s if s.chars().all(ident_char) => prefix.push(s.to_string()),
            _ => {} // `::`, `*`
        }
        i += 1;
    }
    if !prefix.is_empty() {
        out.push(prefix.clone());
    }
    prefix.truncate(start);
}

struct Crate {
    /// Module path → file (relative to the repository).
    modules: BTreeMap<Vec<String>, String>,
}

impl Crate {
    /// The file a path names: the longest prefix that is a module file.
    fn resolve(&self, path: &[String]) -> Option<&String> {
        (1..=path.len()).rev().find_map(|n| self.modules.get(&path[..n]))
    }
}

/// Rust files and their import edges, crate by crate (the library, each binary).
fn rust_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut all = Vec::new();
    files(&src, "rs", &mut all);
    // A crate per root folder: src/ (lib.rs) and src/bin/<name>/ (main.rs); a single-file
    // binary src/bin/x.rs is its own crate.
    let crate_root = |rel: &Path| -> PathBuf {
        let parts: Vec<_> = rel.components().collect();
        if parts.len() >= 2 && parts[0].as_os_str() == "bin" {
            if parts.len() == 2 { rel.to_path_buf() } else { Path::new("bin").join(parts[1].as_os_str()) }
        } else {
            PathBuf::new()
        }
    };
    let module_path = |rel: &Path, root: &Path| -> Vec<String> {
        let inner = rel.strip_prefix(root).unwrap_or(Path::new(""));
        let mut p: Vec<String> = inner.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        if let Some(last) = p.pop() {
            let stem = last.trim_end_matches(".rs").to_string();
            if !matches!(stem.as_str(), "mod" | "lib" | "main") && root != rel {
                p.push(stem);
            }
        }
        p
    };
    let mut crates: BTreeMap<PathBuf, Crate> = BTreeMap::new();
    let mut info = Vec::new();
    for f in &all {
        let rel = f.strip_prefix(&src).unwrap().to_path_buf();
        let root = crate_root(&rel);
        let mp = module_path(&rel, &root);
        let name = format!("src/{}", rel.display());
        crates.entry(root.clone()).or_insert_with(|| Crate { modules: BTreeMap::new() }).modules.insert(mp.clone(), name.clone());
        info.push((name, root, mp, f.clone()));
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, root, mp, f) in info {
        let krate = &crates[&root];
        let code = code_only(&fs::read_to_string(&f).unwrap());
        let set = edges.entry(name.clone()).or_default();
        for (inline, path) in rust_paths(&code) {
            let mut here = mp.clone();
            here.extend(inline);
            let mut base = match path[0].as_str() {
                "crate" => Vec::new(),
                "super" => here[..here.len().saturating_sub(1)].to_vec(),
                _ => here.clone(),
            };
            let mut rest = &path[1..];
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            if let Some(target) = krate.resolve(&base).filter(|t| **t != name) {
                set.insert(target.clone());
            }
        }
    }
    edges
}

/// TypeScript files of web/src and their relative imports.
fn ts_graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(ROOT).join("web/src");
    let mut all = Vec::new();
    files(&dir, "ts", &mut all);
    let mut edges = BTreeMap::new();
    for f in &all {
        let name = format!("web/src/{}", f.strip_prefix(&dir).unwrap().display());
        let src = fs::read_to_string(f).unwrap();
        let mut set = BTreeSet::new();
        for line in src.lines() {
            let l = line.trim_start();
            if l.starts_with("//") || l.starts_with('*') {
                continue;
            }
            // `from './x.js'` and `import('./x.js')` / `import './x.js'`.
            for key in ["from '", "from \"", "import('", "import(\"", "import '", "import \""] {
                let mut s = l;
                while let Some(at) = s.find(key) {
                    let rest = &s[at + key.len()..];
                    let end = rest.find(['\'', '"']).unwrap_or(rest.len());
                    let spec = &rest[..end];
                    if spec.starts_with("./") || spec.starts_with("../") {
                        let target = f.parent().unwrap().join(spec);
                        let target = target.with_extension("ts");
                        if let Ok(t) = target.canonicalize()
                            && let Ok(r) = t.strip_prefix(dir.canonicalize().unwrap())
                        {
                            set.insert(format!("web/src/{}", r.display()));
                        }
                    }
                    s = &rest[end..];
                }
            }
        }
        set.remove(&name);
        edges.insert(name, set);
    }
    edges
}

/// A cycle in `edges`, if there is one (depth-first search).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        v: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(v, 1);
        stack.push(v);
        for w in edges.get(v).into_iter().flatten() {
            match state.get(w.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == w).unwrap();
                    let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                    c.push(w.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(w, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(v, 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in edges.keys() {
        if !state.contains_key(v.as_str())
            && let Some(c) = visit(v, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycles_between_files() {
    let rust = rust_graph();
    // The scanner sees the imports it must (so that a clean result means something).
    assert!(rust["src/weights/writer.rs"].contains("src/weights/quant.rs"), "{:?}", rust["src/weights/writer.rs"]);
    assert!(rust["src/tiling/vae.rs"].contains("src/model/chunked_attention.rs"));
    if let Some(c) = find_cycle(&rust) {
        panic!("Rust files import each other in a cycle: {}", c.join(" → "));
    }
    let ts = ts_graph();
    assert!(ts["web/src/element.ts"].contains("web/src/client.ts"), "{:?}", ts["web/src/element.ts"]);
    if let Some(c) = find_cycle(&ts) {
        panic!("TypeScript files import each other in a cycle: {}", c.join(" → "));
    }
}

#[test]
fn rooms_import_only_their_level_and_below() {
    let room = |file: &str| -> Option<&'static str> {
        let rest = file.strip_prefix("src/")?;
        let first = rest.split('/').next()?.trim_end_matches(".rs");
        RANK.iter().find(|(r, _)| *r == first).map(|(r, _)| *r)
    };
    let rank = |r: &str| RANK.iter().find(|(n, _)| *n == r).unwrap().1;
    let mut bad = Vec::new();
    for (file, targets) in rust_graph() {
        if file.starts_with("src/bin/") || file == "src/lib.rs" {
            continue;
        }
        let Some(from) = room(&file) else { panic!("{file}: a room missing from RANK in tests/layout.rs") };
        for t in targets {
            if let Some(to) = room(&t)
                && rank(to) > rank(from)
            {
                bad.push(format!("{file} ({from}) imports {t} ({to})"));
            }
        }
    }
    assert!(bad.is_empty(), "a lower room imports a higher one:\n{}", bad.join("\n"));
}

#[test]
fn no_crowded_files() {
    let mut all = Vec::new();
    files(&Path::new(ROOT).join("src"), "rs", &mut all);
    files(&Path::new(ROOT).join("web/src"), "ts", &mut all);
    let mut bad = Vec::new();
    for f in all {
        let rel = f.strip_prefix(ROOT).unwrap().display().to_string();
        let lines = fs::read_to_string(&f).unwrap().lines().count();
        let limit = if rel.starts_with("src/bin/") { 400 } else { 750 };
        if lines > limit {
            bad.push(format!("{rel}: {lines} lines (at most {limit})"));
        }
    }
    assert!(bad.is_empty(), "split these by concern:\n{}", bad.join("\n"));
}
