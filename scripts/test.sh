#!/usr/bin/env bash
# Every test: install what is missing (scripts/deps.sh), fetch + convert the real weights if
# needed, native tests (CPU backend and wgpu on Vulkan), then the browser build (pkg/ +
# web/dist) and its tests in headless Chromium (WebGPU on SwiftShader, and the CPU fallback),
# Firefox ESR and WebKitGTK's MiniBrowser (the CPU path).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh
scripts/fetch-models.sh
cargo test --release -- --test-threads=1
npm --prefix web run build
npm --prefix web test
