#!/usr/bin/env bash
# PiSA-SR default mode at full size (SD 2.1-base UNet + VAE, 64x64 latent, 512x512 out) with
# random weights, on the CPU: diffusers + peft (fp32) vs onestep (burn CPU backend, f32), the
# same weights and the same 128x128 input, one after the other in this run. Peak memory of
# each side from /usr/bin/time -v. Writes $WORK/results.json and prints it.
#   WORK   scratch folder (default $ONESTEP_CACHE/bench-sd; needs ~6 GB: fp16 base 2.4 GB,
#          converted f16 model 1.9 GB)
#   RUNS   timed passes per side (default 1; no warm-up pass, so first-call costs count)
# Needs the torch venv of tests/fixtures/sd/README.md and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
WORK="${WORK:-$ONESTEP_CACHE/bench-sd}"
RUNS="${RUNS:-1}"
PY="${TORCH_PY:-$ONESTEP_CACHE/torch-venv/bin/python}"
export HF_HUB_OFFLINE=1 RUNS
mkdir -p "$WORK"
peak_kib() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }

if [ ! -f "$WORK/base/pisa_sr.pkl" ]; then
  echo "== random full-size SD 2.1-base + PiSA-SR LoRAs -> $WORK/base" >&2
  "$PY" scripts/bench_pisa_sr_fullsize.py make "$WORK/base"
fi
cargo build --release --quiet --bin onestep
ONESTEP="$CARGO_TARGET_DIR/release/onestep"
if [ ! -f "$WORK/model/manifest.json" ]; then
  echo "== onestep convert sd" >&2
  /usr/bin/time -v -o "$WORK/convert.time" "$ONESTEP" convert sd --base "$WORK/base" \
    --lora "$WORK/base/pisa_sr.pkl" --method pisa-sr --out "$WORK/model" >&2
  echo "convert: peak RSS $(peak_kib "$WORK/convert.time") KiB" >&2
fi

echo "== diffusers + peft, fp32, CPU" >&2
/usr/bin/time -v -o "$WORK/torch.time" "$PY" scripts/bench_pisa_sr_fullsize.py torch "$WORK/base" > "$WORK/torch.json"
echo "== onestep, CPU backend (flex), f32" >&2
/usr/bin/time -v -o "$WORK/onestep.time" "$ONESTEP" bench "$WORK/base/photo_128.png" --model "$WORK/model" \
  --device cpu --process-size 512 --runs "$RUNS" --no-warmup > "$WORK/onestep.json"

"$PY" - "$WORK" "$(peak_kib "$WORK/torch.time")" "$(peak_kib "$WORK/onestep.time")" <<'PY' | tee "$WORK/results.json"
import json, os, sys
work, torch_kib, ours_kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = json.load(open(os.path.join(work, "torch.json")))
o = json.loads(open(os.path.join(work, "onestep.json")).read().strip().splitlines()[-1])
def stages(r):
    best = min(r["runs"], key=lambda p: p["total_s"])
    return {k: round(v, 2) for k, v in best.items()}
print(json.dumps({
    "input": "128x128 photo -> 512x512 (latent 64x64), PiSA-SR default mode, AdaIN", "cpus": os.cpu_count(),
    "torch": {"version": t["torch"], "threads": t["threads"], "stages_s": stages(t), "median_s": round(t["median_s"], 2),
              "load_s": round(t["load_s"], 1), "peak_rss_gib": round(torch_kib / 2**20, 2)},
    "onestep": {"stages_s": stages(o), "median_s": round(o["median_s"], 2), "load_s": round(o["load_s"], 1),
                "peak_rss_gib": round(ours_kib / 2**20, 2)},
    "ratio_onestep_over_torch": round(o["median_s"] / t["median_s"], 2),
}, indent=1))
PY
