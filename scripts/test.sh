#!/usr/bin/env bash
# Every test: fetch + convert the real weights if needed, native tests (CPU backend and
# wgpu on Vulkan), and the wasm32 build check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/fetch-models.sh
cargo test --release -- --test-threads=1
cargo check --release --lib --target wasm32-unknown-unknown
