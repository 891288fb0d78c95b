#!/usr/bin/env bash
# Set up a fresh machine and open the app: fetch + convert the default model (Real-ESRGAN
# x4plus), upscale the bundled sample photo with the CLI (a smoke check), build the browser
# app (pkg/ + web/dist/) and serve it on http://127.0.0.1:$PORT/ (default 8080) until Ctrl+C.
#
#   scripts/setup.sh               everything, then serve (prints the URL to open)
#   scripts/setup.sh --no-serve    stop after the build (also when CI is set)
#   PORT=9000 scripts/setup.sh     serve on another port
#
# Other arguments go to the CLI's upscale (e.g. --device cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

serve=1
args=()
for a in "$@"; do
  case "$a" in
    --no-serve) serve=0 ;;
    *) args+=("$a") ;;
  esac
done
[ -n "${CI:-}" ] && serve=0

# 1. The weights and the CLI smoke check.
scripts/fetch-models.sh
mkdir -p out
cargo run --release --quiet --bin onestep -- upscale assets/chelsea_160x120.png -o out/chelsea_160x120_x4.png ${args[@]+"${args[@]}"}
echo "upscaled: $(pwd)/out/chelsea_160x120_x4.png"

# 2. The browser app: npm packages when missing, then pkg/ (the wasm) and web/dist/.
if [ ! -d web/node_modules/esbuild ] || [ ! -d web/node_modules/fflate ]; then
  npm --prefix web ci --no-audit --no-fund
fi
npm --prefix web run build

# 3. Serve it.
if [ "$serve" = 1 ]; then
  exec node web/scripts/serve.mjs
fi
echo "built: $(pwd)/web/dist (serve it with: npm --prefix web run serve)"
