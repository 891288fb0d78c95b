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
        ("corrupt.jpg", [&[0xff, 0xd8, 0xff, 0xe0][..], &vec![0x11; 500][..]].concat(), "truncated"),
        ("half.jpg", { let j = std::fs::read(common::fixture("browser/exif_rot6.jpg")).unwrap(); j[..j.len() / 2].to_vec() }, "the image file is truncated"),
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

/// A small SRVGGNetCompact graph in ncnn's text format (features `f`, `n` middle convs, x4)
/// and a matching .bin: fp16-tagged weights, raw f32 biases and slopes.
fn compact_graph(f: usize, n: usize) -> (String, Vec<u8>) {
    let mut lines = vec!["Input input 0 1 data".to_string(), "Split split 1 2 data d0 d1".to_string()];
    let mut bin = Vec::new();
    let mut conv = |lines: &mut Vec<String>, name: String, input: &str, out: &str, c_in: usize, c_out: usize| {
        lines.push(format!("Convolution {name} 1 1 {input} {out} 0={c_out} 1=3 4=1 5=1 6={}", c_in * c_out * 9));
        bin.extend_from_slice(&0x0130_6B47u32.to_le_bytes());
        let numel = c_in * c_out * 9;
        bin.extend((0..numel).flat_map(|i| half::f16::from_f32(((i % 7) as f32 - 3.0) * 0.01).to_le_bytes()));
        bin.resize(bin.len().next_multiple_of(4), 0);
        bin.extend((0..c_out).flat_map(|_| 0.01f32.to_le_bytes()));
    };
    let mut prev = "d0".to_string();
    for i in 0..=n {
        let c_in = if i == 0 { 3 } else { f };
        conv(&mut lines, format!("Conv_{}", 2 * i), &prev, &format!("c{i}"), c_in, f);
        lines.push(format!("PReLU PRelu_{} 1 1 c{i} p{i} 0={f}", 2 * i + 1));
        prev = format!("p{i}");
    }
    conv(&mut lines, format!("Conv_{}", 2 * n + 2), &prev, "last", f, 48);
    let slopes: Vec<u8> = (0..=n).flat_map(|_| (0..f).flat_map(|_| 0.25f32.to_le_bytes())).collect();
    lines.push("PixelShuffle shuffle 1 1 last ps 0=4".into());
    lines.push("Interp up 1 1 d1 near 0=1 1=4.000000e+00 2=4.000000e+00".into());
    lines.push("BinaryOp add 2 1 ps near output".into());
    // Slopes follow their convolution in the .bin: rebuild the order conv, bias, slopes.
    let conv_bytes = |c_in: usize, c_out: usize| 4 + (c_in * c_out * 9 * 2).next_multiple_of(4) + 4 * c_out;
    let mut ordered = Vec::new();
    let mut at = 0;
    for i in 0..=n {
        let len = conv_bytes(if i == 0 { 3 } else { f }, f);
        ordered.extend_from_slice(&bin[at..at + len]);
        ordered.extend_from_slice(&slopes[i * f * 4..(i + 1) * f * 4]);
        at += len;
    }
    ordered.extend_from_slice(&bin[at..]);
    (format!("7767517\n{} {}\n{}\n", lines.len(), lines.len() + 1, lines.join("\n")), ordered)
}

/// The converter recognises the graph, and a broken one (a layer removed, a shape changed, an
/// unknown layer type, a .bin of another model) fails with the layer's name, writing nothing.
#[test]
fn converter_checks_every_layer_and_writes_nothing_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let (param, bin) = compact_graph(4, 2);
    let convert = |name: &str, param: &str, bin: &[u8]| {
        let (p, b, o) = (dir.path().join(format!("{name}.param")), dir.path().join(format!("{name}.bin")), dir.path().join(name));
        std::fs::write(&p, param).unwrap();
        std::fs::write(&b, bin).unwrap();
        let (ok, out, err) = onestep(&["convert", "ncnn", "--param", p.to_str().unwrap(), "--bin", b.to_str().unwrap(), "--out", o.to_str().unwrap()]);
        (ok, out, err, o)
    };
    let (ok, out, err, o) = convert("good", &param, &bin);
    assert!(ok, "{err}");
    assert!(out.contains("srvgg x4"), "{out}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(o.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["config"]["num_conv"], 2);
    assert_eq!(manifest["tensors"][2]["name"], "body.1.weight", "PReLU slopes under basicsr's name");

    // A layer removed from a graph whose header was updated to match.
    let drop_line = |text: &str, needle: &str| {
        let mut lines: Vec<String> = text.lines().filter(|l| !l.starts_with(needle)).map(String::from).collect();
        let counts: Vec<usize> = lines[1].split(' ').map(|t| t.parse().unwrap()).collect();
        lines[1] = format!("{} {}", counts[0] - 1, counts[1]);
        lines.join("\n")
    };
    let cases = [
        ("removed", drop_line(&param, "PReLU PRelu_3 "), bin.clone(), "layer Conv_4 (Convolution): expected a PReLU body.3"),
        ("shape", param.replace("Conv_2 1 1 p0 c1 0=4", "Conv_2 1 1 p0 c1 0=5"), bin.clone(), "layer Conv_2 (Convolution): expected a Convolution body.2: 3x3, 4 -> 4"),
        ("unknown", param.replace("PReLU PRelu_3 ", "Swish PRelu_3 "), bin.clone(), "layer PRelu_3 (Swish): unknown layer type"),
        ("short_bin", param.clone(), bin[..bin.len() - 8].to_vec(), "truncated"),
        ("long_bin", param.clone(), [&bin[..], &[0u8; 8]].concat(), "left over"),
    ];
    for (name, p, b, want) in cases {
        let (ok, _, err, o) = convert(name, &p, &b);
        assert!(!ok, "{name}: converted");
        assert!(err.starts_with("error: ") && err.contains(want), "{name}: {err}");
        assert!(!o.exists(), "{name}: wrote {}", o.display());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("partial")).collect();
    assert!(left.is_empty(), "partial folders left: {left:?}");
}

/// `--scale` / `--width`: the model's output brought down by Pillow's LANCZOS to the exact size
/// asked for, alpha kept (resampled the same way, apart from the colour); the same with the x2
/// and x4 compact models; a scale above the model's is a clear error.
#[test]
fn output_scale_and_width() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = common::fixture("browser/alpha_gradient_16.png");
    let exif = common::fixture("browser/exif_rot6.jpg");
    let run = |model: &str, input: &Path, name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let model = common::model_dir(model);
        let mut args = vec!["upscale", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--device", "cpu", "--model", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, err) = onestep(&args);
        (ok, err, out)
    };
    let split = |img: &image::RgbaImage| {
        let rgb = image::DynamicImage::ImageRgba8(img.clone()).to_rgb8();
        let a = image::GrayImage::from_fn(img.width(), img.height(), |x, y| image::Luma([img.get_pixel(x, y)[3]]));
        (rgb, a)
    };
    for model in ["realesrgan-x4plus", "realesr-animevideov3-x4"] {
        let (ok, err, full) = run(model, &alpha, "full.png", &[]);
        assert!(ok, "{err}");
        let (full_rgb, full_a) = split(&common::read_rgba(&full));
        for (scale, side) in [("2", 32), ("3", 48), ("1", 16)] {
            let (ok, err, out) = run(model, &alpha, &format!("s{scale}.png"), &["--scale", scale]);
            assert!(ok, "{model} --scale {scale}: {err}");
            let out = common::read_rgba(&out);
            assert_eq!(out.dimensions(), (side, side), "{model} --scale {scale}");
            let (want_rgb, want_a) = onestep_sr::image_io::downscale(&full_rgb, Some(&full_a), (side, side));
            let (rgb, a) = split(&out);
            assert_eq!((rgb, a), (want_rgb, want_a.unwrap()), "{model} --scale {scale}: the x4 output resampled");
            assert!(out.pixels().any(|p| p[3] < 128) && out.get_pixel(0, 0)[3] > 200, "alpha kept");
        }
    }
    // The x2 model at its own scale, and at 1x (clean-up only).
    let (ok, err, x2) = run("realesr-animevideov3-x2", &alpha, "x2.png", &["--scale", "2"]);
    assert!(ok, "{err}");
    assert_eq!(common::read_rgba(&x2).dimensions(), (32, 32));
    let (ok, err, x1) = run("realesr-animevideov3-x2", &alpha, "x1.png", &["--scale", "1"]);
    assert!(ok, "{err}");
    assert_eq!(common::read_rgba(&x1).dimensions(), (16, 16));
    let (ok, err, _) = run("realesr-animevideov3-x2", &alpha, "x3.png", &["--scale", "3"]);
    assert!(!ok && err.trim().lines().count() == 1 && err.contains("at most the model's 2"), "{err}");
    // EXIF-rotated 8x12 (upright) at a target width of 20: 20x30.
    let (ok, err, w) = run("realesrgan-x4plus", &exif, "w20.png", &["--width", "20"]);
    assert!(ok, "{err}");
    assert_eq!(common::read_rgba(&w).dimensions(), (20, 30));
    // A 256x256 photo to a width of 1000 with the compact x4 model: 1000x1000.
    let (ok, err, w) = run("realesr-animevideov3-x4", &common::fixture("realesrgan/astronaut_256.png"), "w1000.png", &["--width", "1000"]);
    assert!(ok, "{err}");
    assert_eq!(common::read_rgba(&w).dimensions(), (1000, 1000));
    let (ok, err, _) = run("realesrgan-x4plus", &alpha, "x5.png", &["--scale", "5"]);
    assert!(!ok && err.trim().lines().count() == 1 && err.contains("at most the model's 4"), "{err}");
}

/// The output-scale filter is Pillow's LANCZOS: references made by Pillow itself
/// (tests/fixtures/realesrgan/generate.py) from one x4 output, RGB and alpha apart.
#[test]
fn downscale_matches_pillow_lanczos() {
    let x4 = common::read_rgba(&common::fixture("realesrgan/coffee_rgba_40_x4_ncnn.png"));
    let rgb = image::DynamicImage::ImageRgba8(x4.clone()).to_rgb8();
    let alpha = image::GrayImage::from_fn(x4.width(), x4.height(), |x, y| image::Luma([x4.get_pixel(x, y)[3]]));
    for side in [80u32, 120, 100] {
        let want = common::read_rgba(&common::fixture(&format!("realesrgan/coffee_rgba_40_x4_lanczos_{side}.png")));
        let (r, a) = onestep_sr::image_io::downscale(&rgb, Some(&alpha), (side, side));
        let a = a.unwrap();
        let got = image::RgbaImage::from_fn(side, side, |x, y| {
            let p = r.get_pixel(x, y);
            image::Rgba([p[0], p[1], p[2], a.get_pixel(x, y)[0]])
        });
        let d = common::max_abs_diff(got.as_raw(), want.as_raw());
        println!("{side}x{side}: max |diff| vs Pillow = {d}");
        assert!(d <= 1, "{side}: max |diff| {d} vs Pillow's LANCZOS");
    }
}

/// `onestep models` lists the catalog with what is converted; `--model` takes a catalog id.
#[test]
fn models_are_listed_and_chosen_by_id() {
    let (ok, out, err) = onestep(&["models", "--json"]);
    assert!(ok, "{err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    for (id, scale, arch) in [
        ("realesrgan-x4plus", 4, "rrdbnet"),
        ("realesrgan-x4plus-anime", 4, "rrdbnet"),
        ("realesr-animevideov3-x2", 2, "srvgg"),
        ("realesr-animevideov3-x3", 3, "srvgg"),
        ("realesr-animevideov3-x4", 4, "srvgg"),
    ] {
        let e = list.iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("{id} not listed"));
        assert_eq!((e["scale"].as_u64(), e["architecture"].as_str()), (Some(scale), Some(arch)), "{id}");
        assert!(e["path"].is_string() && e["bytes"].as_u64() > Some(1_000_000) && !e["licence"].as_str().unwrap().is_empty(), "{id}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x3.png");
    let input = common::fixture("realesrgan/anime_64x48.png");
    let (ok, _, err) = onestep(&["upscale", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--device", "cpu", "--model", "realesr-animevideov3-x3"]);
    assert!(ok, "{err}");
    assert_eq!(common::read_rgba(&out).dimensions(), (192, 144));
    let (ok, _, err) = onestep(&["upscale", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "no-such-model"]);
    assert!(!ok && err.contains("onestep models"), "{err}");
}
