//! CI's short run of the fuzz targets (the long libFuzzer runs are `scripts/fuzz.sh`, recorded
//! in docs/reliability.md): every seed of fuzz/corpus and every regression input of
//! fuzz/regressions through its harness, then a few thousand deterministic mutations of each
//! seed. Plus what the seeds must parse to, and the pickle reader's refusals.

use std::path::{Path, PathBuf};

use onestep_sr::fuzzing::{self, TARGETS};
use onestep_sr::weights::torch_pickle::{PickleValue, TorchCheckpoint};

const MUTATIONS_PER_SEED: usize = 1500;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    out.sort();
    out
}

fn fuzz_dir(sub: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub).join(target)
}

/// xorshift64*: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// libFuzzer's cheap mutations: flip a bit, set a byte to an edge value, cut, duplicate or
/// delete a run, overwrite with a little-endian u32 edge value.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(0);
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => b.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let run = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, run);
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            _ => {
                let v = [0u32, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0xffff][rng.below(6)].to_le_bytes();
                for (i, x) in v.iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + i) {
                        *slot = *x;
                    }
                }
            }
        }
    }
    b
}

fn run(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let keep = std::env::temp_dir().join(format!("fuzz-smoke-{target}.bin"));
        std::fs::write(&keep, input).unwrap();
        panic!("{target}: {what} panicked; the input is saved at {} (add it to fuzz/regressions/{target}/)", keep.display());
    }
}

#[test]
fn every_target_survives_its_seeds_regressions_and_mutations() {
    for (i, (target, f)) in TARGETS.iter().enumerate() {
        let seeds = files(&fuzz_dir("corpus", target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds (python3 fuzz/seeds.py)");
        for path in seeds.iter().chain(&files(&fuzz_dir("regressions", target))) {
            run(target, *f, &std::fs::read(path).unwrap(), &path.display().to_string());
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ i as u64);
        for path in &seeds {
            let seed = std::fs::read(path).unwrap();
            for n in 0..MUTATIONS_PER_SEED {
                run(target, *f, &mutate(&seed, &mut rng), &format!("mutation {n} of {}", path.display()));
            }
        }
    }
}

/// The seed that Python's pickler wrote the way torch.save does reads back exactly, strides
/// included: the smoke run starts from inputs the parser accepts.
#[test]
fn the_torch_seed_reads_back() {
    let bytes = std::fs::read(fuzz_dir("corpus", "torch_zip").join("state_dict.pt")).unwrap();
    let ck = TorchCheckpoint::from_bytes(bytes).unwrap();
    assert_eq!(ck.int("rank_unet").unwrap(), 4);
    assert_eq!(ck.string_list("unet_lora_target_modules").unwrap(), ["to_q", "to_k"]);
    let sd = ck.tensor_dict("state_dict_unet").unwrap();
    assert_eq!(sd["conv.weight"].values, [1., 2., 3., 4., 5., 6.]);
    assert_eq!(sd["transposed"].shape, [3, 2]);
    assert_eq!(sd["transposed"].values, [1., 4., 2., 5., 3., 6.]);
    assert_eq!(sd["conv.bias"].values, [-1., 2., 65504.]);
    assert_eq!(sd["bf"].values, [1., 2.]);
}

fn checkpoint(pickle: &[u8]) -> Result<TorchCheckpoint, String> {
    TorchCheckpoint::from_bytes(fuzzing::stored_zip(&[("archive/data.pkl", pickle), ("archive/data/0", &[0; 16])])).map_err(|e| e.to_string())
}

#[test]
fn the_pickle_reader_calls_only_allowlisted_globals() {
    // pickle.dumps(os.system("ls")'s reduction), protocol 2: GLOBAL os.system, ("ls",), REDUCE.
    let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
    let e = checkpoint(evil).err().expect("refused");
    assert!(e.contains("refuses to call os.system"), "{e}");
    // NEWOBJ of any other class too.
    let e = checkpoint(b"\x80\x02cbuiltins\nobject\n)\x81.").err().expect("refused");
    assert!(e.contains("refuses to call builtins.object"), "{e}");
    // A global named but never called is only a name.
    assert!(matches!(checkpoint(b"\x80\x02cos\nsystem\n.").unwrap().root, PickleValue::Global(ref g) if g == "os.system"));
}

#[test]
fn hostile_pickles_end_in_errors_quickly() {
    // 60 levels of a memoised tuple holding itself twice: 2^60 leaves if expanded.
    let mut p = b"\x80\x02)q\x00".to_vec();
    for i in 0..60u8 {
        p.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    p.push(b'.');
    let start = std::time::Instant::now();
    let e = checkpoint(&p).err().expect("refused");
    assert!(e.contains("more than 256 MiB"), "{e}");
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    // A tensor of 2^40 x 2^40 elements over a 16-byte storage.
    let big = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x86K\x01K\x01\x86\x89ctorch\nSize\n)Rtq\x00R.";
    // (The inner Size() is refused: only allowlisted callables; without it the shape check is reached.)
    assert!(checkpoint(big).err().unwrap().contains("refuses to call torch.Size"));
    let big = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x86K\x01K\x01\x86\x89NtR.";
    let ck = checkpoint(big).unwrap();
    let PickleValue::Tensor(t) = &ck.root else { panic!("not a tensor: {:?}", ck.root) };
    let e = ck.tensor(t).err().unwrap().to_string();
    assert!(e.contains("larger than its storage"), "{e}");
}
