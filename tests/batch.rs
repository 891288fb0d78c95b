//! `onestep upscale` on several files: folders, resume after a kill, atomic outputs, `--shard`,
//! clashing names and corrupt files (docs/batch.md). Real-ESRGAN x4plus on the CPU, tiny crops.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn onestep() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onestep"));
    cmd.current_dir(common::root());
    cmd
}

/// `onestep upscale ARGS... --device cpu --model x4plus`: (success, stdout, stderr).
fn upscale(args: &[&Path], extra: &[&str]) -> (bool, String, String) {
    let model = common::realesrgan_dir();
    let out = onestep()
        .arg("upscale")
        .args(args)
        .args(extra)
        .args(["--device", "cpu", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Square crops of the astronaut fixture: (file name, x, y, side).
fn crops(dir: &Path, specs: &[(&str, u32, u32, u32)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let src = image::open(common::fixture("realesrgan/astronaut_64.png")).unwrap().to_rgb8();
    specs
        .iter()
        .map(|&(name, x, y, side)| {
            let path = dir.join(name);
            image::imageops::crop_imm(&src, x, y, side, side).to_image().save(&path).unwrap();
            path
        })
        .collect()
}

/// Finished outputs in `dir` (`*.png`, not the hidden temporary files).
fn outputs(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png") && !n.starts_with('.'))
        .collect()
}

fn all_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A batch killed after two files resumes: no truncated PNG under a final name, the finished
/// files are skipped (untouched), the rest are written, and a batch output is exactly what the
/// single-file mode writes for that input.
#[test]
fn killed_batch_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    // Two tiny images first, then three that take long enough to be killed during.
    let files = crops(
        &input,
        &[("1_a.png", 0, 0, 8), ("2_b.png", 20, 20, 8), ("3_c.png", 0, 0, 40), ("4_d.png", 12, 12, 40), ("5_e.png", 24, 24, 40)],
    );
    let model = common::realesrgan_dir();
    let mut child = onestep()
        .arg("upscale")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["--device", "cpu", "--model"])
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while outputs(&out).len() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the batch ended before it could be killed");
        assert!(t0.elapsed() < Duration::from_secs(60), "no outputs after 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = outputs(&out);
    assert_eq!(done, set(&["1_a.png", "2_b.png"]), "killed after two files");
    for name in &done {
        image::open(out.join(name)).unwrap_or_else(|e| panic!("{name} under its final name is not a whole PNG: {e}"));
    }
    let before: Vec<_> = done
        .iter()
        .map(|n| (std::fs::metadata(out.join(n)).unwrap().modified().unwrap(), std::fs::read(out.join(n)).unwrap()))
        .collect();

    let (ok, stdout, stderr) = upscale(&[&input, Path::new("-o"), &out], &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("skipped 2 of 5 (already done)"), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "the three written outputs are listed: {stdout}");
    let after: Vec<_> = done
        .iter()
        .map(|n| (std::fs::metadata(out.join(n)).unwrap().modified().unwrap(), std::fs::read(out.join(n)).unwrap()))
        .collect();
    assert!(before == after, "skipped outputs are untouched");
    // Every output at 4x, and nothing else left behind (a stale temporary file is removed).
    assert_eq!(all_files(&out), set(&["1_a.png", "2_b.png", "3_c.png", "4_d.png", "5_e.png"]));
    for (f, n) in files.iter().zip(&all_files(&out)) {
        let (w, h) = image::image_dimensions(f).unwrap();
        assert_eq!(image::image_dimensions(out.join(n)).unwrap(), (4 * w, 4 * h), "{n}");
    }

    // The single-file mode writes the same bytes (an output of the resumed run).
    let single = tmp.path().join("single.png");
    let (ok, stdout, stderr) = upscale(&[&files[3], Path::new("-o"), &single], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), single.display().to_string());
    assert!(std::fs::read(&single).unwrap() == std::fs::read(out.join("4_d.png")).unwrap(), "batch and single-file outputs differ");
}

/// `--shard 0/2` and `--shard 1/2` write each output exactly once (positions in the sorted
/// list: even and odd); bad specs are one-line errors before any work.
#[test]
fn shards_split_the_sorted_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    // Created out of order: the split follows the sorted names.
    let files =
        crops(&input, &[("e.png", 0, 0, 8), ("a.png", 8, 0, 8), ("d.png", 16, 0, 8), ("b.png", 24, 0, 8), ("c.png", 32, 0, 8)]);
    let (ok, stdout0, stderr) = upscale(&[&input, Path::new("-o"), &out], &["--shard", "0/2"]);
    assert!(ok, "{stderr}");
    let first = outputs(&out);
    assert_eq!(first, set(&["a.png", "c.png", "e.png"]));
    assert_eq!(stdout0.lines().count(), 3, "{stdout0}");
    let (ok, stdout1, stderr) = upscale(&[&input, Path::new("-o"), &out], &["--shard", "1/2"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("skipped"), "shard 1/2 found none of its files done: {stderr}");
    let second: BTreeSet<String> = outputs(&out).difference(&first).cloned().collect();
    assert_eq!(second, set(&["b.png", "d.png"]));
    assert_eq!(stdout1.lines().count(), 2, "{stdout1}");
    for line in stdout1.lines() {
        assert!(!stdout0.contains(line), "{line} written twice");
    }
    assert_eq!(all_files(&out), set(&["a.png", "b.png", "c.png", "d.png", "e.png"]));

    // One input file into an existing folder is a batch of one: done, so skipped.
    let (ok, stdout, stderr) = upscale(&[&files[0], Path::new("-o"), &out], &[]);
    assert!(ok && stdout.is_empty() && stderr.contains("skipped 1 of 1"), "{stdout}{stderr}");

    for bad in ["2/2", "a/b", "0/0", "1", "-1/2"] {
        let fresh = tmp.path().join("fresh");
        let (ok, stdout, stderr) = upscale(&[&input, Path::new("-o"), &fresh], &["--shard", bad]);
        assert!(!ok, "--shard {bad} accepted");
        assert!(stdout.is_empty() && stderr.lines().count() == 1 && stderr.starts_with("error: --shard"), "{bad}: {stderr}");
        assert!(!fresh.exists(), "--shard {bad}: the output folder was created");
    }
}

/// Two inputs that would write the same output fail before any work, naming both.
#[test]
fn same_stem_is_an_error_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let pngs = crops(&input, &[("a.png", 0, 0, 8), ("b.png", 8, 8, 8)]);
    let jpg = input.join("a.jpg");
    image::open(&pngs[0]).unwrap().save(&jpg).unwrap();
    let out = tmp.path().join("out");
    for args in [vec![input.as_path()], vec![pngs[0].as_path(), jpg.as_path()]] {
        let mut args = args.clone();
        args.extend([Path::new("-o"), out.as_path()]);
        let (ok, stdout, stderr) = upscale(&args, &[]);
        assert!(!ok && stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains("a.png") && stderr.contains("a.jpg"), "{stderr}");
        assert!(!out.exists(), "work started");
    }
}

/// A corrupt file in a batch: reported by name, the others written, a non-zero exit with a
/// count; a rerun skips the good ones and fails on the corrupt one again.
#[test]
fn a_corrupt_file_does_not_stop_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let good = crops(&input, &[("1.png", 0, 0, 8), ("3.png", 8, 8, 8)]);
    let bad = input.join("2.png");
    let bytes = std::fs::read(&good[0]).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, stdout, stderr) = upscale(&[&input, Path::new("-o"), &out], &[]);
    assert!(!ok, "exit status was success");
    assert_eq!(all_files(&out), set(&["1.png", "3.png"]));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stderr.contains(&format!("error: {}: ", bad.display())), "{stderr}");
    assert!(stderr.lines().last().unwrap().ends_with("error: 1 of 3 failed"), "{stderr}");
    let (ok, _, stderr) = upscale(&[&input, Path::new("-o"), &out], &[]);
    assert!(!ok && stderr.contains("skipped 2 of 3 (already done)") && stderr.contains("error: 1 of 1 failed"), "{stderr}");
}
