#!/usr/bin/env bash
# Fuzz one of the project's parsers with libFuzzer: scripts/fuzz.sh TARGET SECONDS [libFuzzer args]
#   TARGET: torch_zip pickle safetensors ncnn manifest image tokenizer (fuzz/fuzz_targets/)
# Builds fuzz/ on stable Rust with the flags cargo-fuzz uses (coverage instrumentation, no
# sanitizer: the code is safe Rust, what we hunt is panics, overflows, hangs and huge
# allocations), then runs with the limits of docs/reliability.md: 10 s per input, 2 GiB per
# allocation and in total. The committed seeds (fuzz/corpus/TARGET) are read; what the fuzzer
# learns goes to $ONESTEP_CACHE/fuzz-corpus/TARGET, crashes to $ONESTEP_CACHE/fuzz-artifacts/.
# `scripts/fuzz.sh build` only builds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
target="${1:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer args]}"
host=$(rustc -vV | sed -n 's/^host: //p')
out="$ONESTEP_CACHE/fuzz-target"
# --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" --target-dir "$out" --bins
[ "$target" = build ] && exit 0
seconds="${2:?usage: scripts/fuzz.sh TARGET SECONDS}"
shift 2
corpus="$ONESTEP_CACHE/fuzz-corpus/$target"
artifacts="$ONESTEP_CACHE/fuzz-artifacts/$target/"
mkdir -p "$corpus" "$artifacts"
dict=()
[ -f "fuzz/dicts/$target.dict" ] && dict=(-dict="fuzz/dicts/$target.dict")
exec "$out/$host/release/$target" "$corpus" "fuzz/corpus/$target" "${dict[@]}" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
  -artifact_prefix="$artifacts" -print_final_stats=1 "$@"
