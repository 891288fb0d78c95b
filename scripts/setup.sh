#!/usr/bin/env bash
# Set up a fresh machine and run the main job: fetch + convert the default model, then
# upscale the bundled sample photo and print where the result is.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/fetch-models.sh
mkdir -p out
cargo run --release --quiet --bin onestep -- upscale assets/chelsea_160x120.png -o out/chelsea_160x120_x4.png "$@"
echo "upscaled: $(pwd)/out/chelsea_160x120_x4.png"
