//! Weight format v1: streaming, SHA-256 verification, and errors that name the shard.

mod common;

use std::path::Path;

use onestep_sr::model::{RrdbNet, RrdbNetConfig};
use onestep_sr::weights::{self, ShardEntry, ShardSource, WeightsError, writer::ShardWriter};

/// A tiny RRDBNet with deterministic pseudo-random weights, written as format v1.
fn write_tiny(dir: &Path) -> weights::Manifest {
    let cfg = RrdbNetConfig::tiny();
    let mut w = ShardWriter::create(dir).unwrap();
    let mut seed = 1u32;
    for (name, shape) in cfg.tensor_shapes() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1 << 24) as f32 * 0.2 - 0.1
            })
            .collect();
        w.add_f16(&name, &shape, &v).unwrap();
    }
    w.finish("tiny", "rrdbnet", serde_json::to_value(&cfg).unwrap(), serde_json::Value::Null).unwrap()
}

fn load_err(dir: &Path) -> String {
    match weights::load_dir(dir, &common::cpu(), &mut |_| {}) {
        Ok(_) => panic!("loading damaged weights succeeded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn roundtrip_builds_the_model_with_nothing_left_over() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_tiny(dir.path());
    assert_eq!(m.shards.len(), 1);
    let (_, mut store) = weights::load_dir(dir.path(), &common::cpu(), &mut |_| {}).unwrap();
    let model = RrdbNet::load(&RrdbNetConfig::tiny(), &mut store).unwrap();
    store.finish().unwrap();
    let x = burn::tensor::Tensor::<4>::ones([1, 3, 5, 6], &common::cpu());
    assert_eq!(model.forward(x).dims(), [1, 3, 20, 24]);
}

#[test]
fn altered_truncated_and_missing_shards_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_tiny(dir.path());
    let shard = dir.path().join(&m.shards[0].file);
    let good = std::fs::read(&shard).unwrap();

    let mut altered = good.clone();
    altered[100] ^= 1;
    std::fs::write(&shard, &altered).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("shard-00000.bin") && e.contains("SHA-256"), "{e}");

    std::fs::write(&shard, &good[..good.len() - 10]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("shard-00000.bin") && e.contains("truncated"), "{e}");

    std::fs::remove_file(&shard).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("shard-00000.bin") && e.contains("missing"), "{e}");
}

#[test]
fn a_model_never_gets_weights_of_another_shape() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path());
    let (_, mut store) = weights::load_dir(dir.path(), &common::cpu(), &mut |_| {}).unwrap();
    let mut other = RrdbNetConfig::tiny();
    other.num_feat = 16;
    let e = RrdbNet::load(&other, &mut store).err().expect("shape mismatch").to_string();
    assert!(e.contains("conv_first.weight"), "{e}");
}

/// Shards are read one at a time and each is verified before the next is read.
#[test]
fn loading_streams_and_stops_at_the_first_bad_shard() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(dir.path()).unwrap();
    // Three 20 MiB tensors -> three shards (32 MiB limit).
    for i in 0..3 {
        w.add_f16(&format!("t{i}"), &[10 << 20], &vec![i as f32; 10 << 20]).unwrap();
    }
    let m = w.finish("big", "none", serde_json::Value::Null, serde_json::Value::Null).unwrap();
    assert_eq!(m.shards.len(), 3);
    assert!(m.shards.iter().all(|s| s.bytes <= 32 << 20));

    struct Recorder(std::path::PathBuf, Vec<usize>);
    impl ShardSource for Recorder {
        fn read(&mut self, i: usize, _n: usize, s: &ShardEntry) -> Result<Vec<u8>, WeightsError> {
            self.1.push(i);
            let mut b = std::fs::read(self.0.join(&s.file)).unwrap();
            if i == 1 {
                b[0] ^= 0xff;
            }
            Ok(b)
        }
    }
    let mut src = Recorder(dir.path().to_path_buf(), vec![]);
    let mut seen = vec![];
    let r = weights::load_into_store(&m, &mut src, &common::cpu(), &mut |p| seen.push(p.index));
    let e = r.err().expect("bad shard 1").to_string();
    assert!(e.contains("shard 2 of 3") && e.contains("shard-00001.bin"), "{e}");
    assert_eq!(src.1, vec![0, 1], "shard 2 must not be read after shard 1 failed");
    assert_eq!(seen, vec![0]);
}

/// A tensor larger than a shard (SD 2.1's up-block conv1 is 56 MiB in f16) is stored as row
/// blocks in shards of at most 32 MiB and reassembled exactly on load.
#[test]
fn a_tensor_larger_than_a_shard_is_split_and_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(dir.path()).unwrap();
    let shape = [5, 3 << 20, 2]; // 5 rows of 12 MiB in f16: 60 MiB
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (i % 2048) as f32).collect(); // exact in f16
    w.add_f16("small", &[3], &[1.0, 2.0, 3.0]).unwrap();
    w.add_f16("big", &shape, &values).unwrap();
    let m = w.finish("split", "none", serde_json::Value::Null, serde_json::Value::Null).unwrap();
    assert!(m.shards.iter().all(|s| s.bytes <= 32 << 20), "{:?}", m.shards);
    let parts: Vec<_> = m.tensors.iter().filter(|t| t.name == "big").collect();
    assert_eq!(parts.len(), 3, "two rows (24 MiB) per part");
    let (_, mut store) = weights::load_dir(dir.path(), &common::cpu(), &mut |_| {}).unwrap();
    let big = store.take("big", shape).unwrap();
    assert_eq!(big.into_data().try_to_vec::<f32>().unwrap(), values);
    store.take("small", [3]).unwrap();
    store.finish().unwrap();
}

/// The browser's upload path: every tensor (and every part of a split one) copied in row
/// blocks of a few bytes and joined on the device gives the same tensors.
#[test]
fn uploading_in_row_blocks_gives_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(dir.path()).unwrap().with_max_shard(1024);
    let big: Vec<f32> = (0..40 * 9).map(|i| (i % 1000) as f32 - 300.0).collect();
    w.add_f16("big", &[40, 3, 3], &big).unwrap(); // 720 bytes: split across shards
    w.add_f32("bias", &[7], &[1.0, -2.0, 3.0, 4.5, 5.0, 6.0, 7.0]).unwrap();
    w.add_f16("scalar", &[], &[2.5]).unwrap();
    w.add_f16("wide", &[2, 400], &(0..800).map(|i| (i % 7) as f32).collect::<Vec<_>>()).unwrap();
    let m = w.finish("blocks", "none", serde_json::Value::Null, serde_json::Value::Null).unwrap();
    assert!(m.tensors.iter().any(|t| t.part.is_some()), "the test needs a tensor split across shards");
    let device = common::cpu();
    let mut store = weights::ParamStore::new(&device);
    for (i, s) in m.shards.iter().enumerate() {
        let bytes = std::fs::read(dir.path().join(&s.file)).unwrap();
        let mut reads = vec![];
        store
            .insert_shard_blocks(&m, i, 100, &mut |o, l| {
                reads.push(l);
                bytes[o as usize..(o + l) as usize].to_vec()
            })
            .unwrap();
        // Blocks of at most 100 bytes, or one row when a row is larger (`wide`: 800 bytes).
        assert!(reads.iter().all(|&l| l <= 100 || l == 800), "{reads:?}");
    }
    let values = |t: burn::tensor::Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    assert_eq!(values(store.take::<3>("big", [40, 3, 3]).unwrap().reshape([360])), big);
    assert_eq!(values(store.take::<1>("bias", [7]).unwrap()), vec![1.0, -2.0, 3.0, 4.5, 5.0, 6.0, 7.0]);
    assert_eq!(values(store.take::<2>("wide", [2, 400]).unwrap().reshape([800]))[..8], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]);
    store.take::<0>("scalar", []).unwrap();
    store.finish().unwrap();
}

/// Hostile manifests are refused when read, before any shard is opened (the folder below has
/// none): names that leave the folder or the origin, impossible sizes and shapes, duplicates.
#[test]
fn hostile_manifests_are_refused_before_any_shard_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_tiny(&dir.path().join("good"));
    let cases: Vec<common::ManifestCase> = vec![
        ("dotdot", Box::new(|m| m["shards"][0]["file"] = "..".into()), "not a plain file name"),
        ("parent", Box::new(|m| m["shards"][0]["file"] = "../secret.bin".into()), "not a plain file name"),
        ("absolute", Box::new(|m| m["shards"][0]["file"] = "/etc/passwd".into()), "not a plain file name"),
        ("scheme", Box::new(|m| m["shards"][0]["file"] = "https:evil.example".into()), "not a plain file name"),
        ("other-origin", Box::new(|m| m["shards"][0]["file"] = "//evil.example/x.bin".into()), "not a plain file name"),
        ("hidden", Box::new(|m| m["shards"][0]["file"] = ".shard.bin".into()), "not a plain file name"),
        ("huge", Box::new(|m| m["shards"][0]["bytes"] = (1u64 << 40).into()), "declares"),
        ("bad-hash", Box::new(|m| m["shards"][0]["sha256"] = "zz".repeat(32).into()), "SHA-256"),
        ("overflow", Box::new(|m| m["tensors"][0]["shape"] = serde_json::json!([4294967296u64, 4294967296u64, 16])), "impossible shape"),
        ("past-end", Box::new(|m| m["tensors"][0]["offset"] = (u64::MAX - 10).into()), "at offset"),
        ("duplicate", Box::new(|m| {
            let t = m["tensors"][0].clone();
            m["tensors"].as_array_mut().unwrap().push(t);
        }), "listed more than once"),
    ];
    common::assert_manifests_refused(dir.path(), &good, cases);
}

/// The writer is atomic: nothing at the target until `finish`; an abandoned write leaves
/// nothing behind; a finished one replaces the previous model whole.
#[test]
fn the_writer_replaces_a_model_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("model");
    let first = write_tiny(&target);
    {
        let mut w = ShardWriter::create(&target).unwrap();
        w.add_f32("x", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        // Dropped without finish (an error half way): the old model is untouched.
    }
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["model"], "no partial folder left");
    let (m, _) = weights::load_dir(&target, &common::cpu(), &mut |_| {}).unwrap();
    assert_eq!(m.tensors.len(), first.tensors.len());
    let mut w = ShardWriter::create(&target).unwrap();
    w.add_f32("x", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(weights::loader::read_manifest(&target).unwrap().tensors.len(), first.tensors.len(), "old model until finish");
    w.finish("x", "test", serde_json::Value::Null, serde_json::Value::Null).unwrap();
    assert_eq!(weights::loader::read_manifest(&target).unwrap().tensors.len(), 1);
}
