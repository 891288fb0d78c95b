//! The `onestep` binary on bad input: one-line errors, non-zero exits, no huge allocations.

mod common;

use std::path::Path;
use std::process::Command;

fn onestep(args: &[&str]) -> (bool, String, String) {
    // 2 GiB of address space: decoding a lying header must not try to allocate gigabytes.
    let cmd = format!(
        "ulimit -v 2097152; exec {} {}",
        env!("CARGO_BIN_EXE_onestep"),
        args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
    );
    let out = Command::new("sh").arg("-c").arg(cmd).current_dir(common::root()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let body = [kind, data].concat();
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    c
}

/// A valid PNG header claiming 100000x100000 RGB pixels, with a tiny IDAT.
fn huge_png() -> Vec<u8> {
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

fn expect_one_line_error(input: &Path, must_contain: &str) {
    let out = input.with_extension("out.png");
    let (ok, _, err) = onestep(&["upscale", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--device", "cpu"]);
    assert!(!ok, "{}: exit status was success", input.display());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{}: expected one line, got {err:?}", input.display());
    assert!(lines[0].starts_with("error: ") && lines[0].contains(must_contain), "{}: {err:?}", input.display());
    assert!(!out.exists());
}

#[test]
fn bad_images_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(common::fixture("realesrgan/astronaut_64.png")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", vec![], "empty"),
        ("notes.png", b"these are not pixels\n".to_vec(), "not a PNG, JPEG or WebP"),
        ("truncated.png", real[..real.len() / 2].to_vec(), "corrupt or truncated"),
        ("corrupt.png", [&real[..200], &vec![0x55; 3000][..]].concat(), "corrupt"),
        ("huge.png", huge_png(), "100000x100000"),
        ("corrupt.jpg", [&[0xff, 0xd8, 0xff, 0xe0][..], &vec![0x11; 500][..]].concat(), "corrupt"),
    ];
    for (name, bytes, msg) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        expect_one_line_error(&p, msg);
    }
    expect_one_line_error(&dir.path().join("does-not-exist.png"), "cannot read");
}

#[test]
fn a_damaged_model_names_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let src = common::realesrgan_dir();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), model.join(f.file_name())).unwrap();
    }
    let shard = model.join("shard-00000.bin");
    let mut b = std::fs::read(&shard).unwrap();
    b[12345] ^= 0x40;
    std::fs::write(&shard, b).unwrap();
    let input = common::fixture("realesrgan/astronaut_64.png");
    let out = dir.path().join("o.png");
    let (ok, _, err) = onestep(&[
        "upscale", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", model.to_str().unwrap(), "--device", "cpu",
    ]);
    assert!(!ok);
    assert!(err.contains("shard 1 of 1 (shard-00000.bin) failed its SHA-256 check"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn converter_rejects_a_mismatched_bin() {
    let dir = tempfile::tempdir().unwrap();
    let param = dir.path().join("x.param");
    let bin = dir.path().join("x.bin");
    std::fs::write(&param, "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=64 1=3 4=1 5=1 6=1728\n").unwrap();
    std::fs::write(&bin, [0u8; 10]).unwrap();
    let (ok, _, err) = onestep(&[
        "convert", "ncnn", "--param", param.to_str().unwrap(), "--bin", bin.to_str().unwrap(), "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.starts_with("error: ") && err.contains("Interp"), "{err}");
}

/// `--scale` / `--width`: the model's output brought down by Lanczos-3 to the exact size asked
/// for, alpha kept (and resampled the same way); a scale above the model's is a clear error.
#[test]
fn output_scale_and_width() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::realesrgan_dir();
    let alpha = common::fixture("browser/alpha_gradient_16.png");
    let exif = common::fixture("browser/exif_rot6.jpg");
    let run = |input: &Path, name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["upscale", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--device", "cpu", "--model", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, err) = onestep(&args);
        (ok, err, out)
    };
    let (ok, err, full) = run(&alpha, "full.png", &[]);
    assert!(ok, "{err}");
    let (ok, err, half) = run(&alpha, "half.png", &["--scale", "2"]);
    assert!(ok, "{err}");
    let (full, half) = (common::read_rgba(&full), common::read_rgba(&half));
    assert_eq!(half.dimensions(), (32, 32));
    let want = image::imageops::resize(&full, 32, 32, image::imageops::FilterType::Lanczos3);
    assert!(common::max_abs_diff(half.as_raw(), want.as_raw()) <= 1, "the x2 output is the x4 output resampled");
    assert!(half.pixels().any(|p| p[3] < 128) && half.get_pixel(0, 0)[3] > 200, "alpha kept");
    // EXIF-rotated 8x12 (upright) at a target width of 20: 20x30.
    let (ok, err, w) = run(&exif, "w20.png", &["--width", "20"]);
    assert!(ok, "{err}");
    assert_eq!(common::read_rgba(&w).dimensions(), (20, 30));
    let (ok, err, _) = run(&alpha, "x5.png", &["--scale", "5"]);
    assert!(!ok && err.trim().lines().count() == 1 && err.contains("at most the model's 4"), "{err}");
}
