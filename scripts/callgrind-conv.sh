#!/usr/bin/env bash
# Instructions of one 3x3 64→64 convolution on a 128x128 map (examples/cpu_conv.rs), counted
# by callgrind (repeatable on a shared machine): burn's CPU conv2d (im2col + gemm) and the
# project's Winograd path. One convolution = the count with 2 minus the count with 1, so set-up
# and the first call's allocations cancel. valgrind's CPU has no AVX-512: gemm takes its AVX2
# kernels here, so the counts are for AVX2 code on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --quiet --example cpu_conv
bin="$CARGO_TARGET_DIR/release/examples/cpu_conv"
count() {
  local out; out=$(mktemp)
  RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" count "$1" "$2" 2>&1 \
    | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
  rm -f "$out"
}
for path in burn winograd; do
  one=$(count "$path" 1); two=$(count "$path" 2)
  echo "{\"path\": \"$path\", \"instructions_per_conv\": $((two - one))}"
done
