#!/usr/bin/env bash
# PiSA-SR default mode at full size (SD 2.1-base UNet + VAE, 64x64 latent, 512x512 out) with
# random weights, on the CPU: diffusers + peft (fp32) vs onestep (burn CPU backend, f32), the
# same weights and the same 128x128 input, in alternating rounds. Peak memory of each side
# from /usr/bin/time -v. Writes $WORK/results.json and prints it.
#   WORK   scratch folder (default $ONESTEP_CACHE/bench-sd; needs ~6 GB: fp16 base 2.4 GB,
#          converted f16 model 1.9 GB)
#   ROUNDS alternating rounds of the two sides (default 3), each side a fresh process; the
#          ratios are per round, reported as the median and the range, per stage
#   RUNS   timed passes per process (default 1; no warm-up pass, so first-call costs count)
# Needs the torch venv of tests/fixtures/sd/README.md and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
WORK="${WORK:-$ONESTEP_CACHE/bench-sd}"
RUNS="${RUNS:-1}"
ROUNDS="${ROUNDS:-3}"
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

[ "$ROUNDS" = 0 ] && { echo "made $WORK/model (ROUNDS=0: no timing)" >&2; exit 0; }

# ROUNDS alternating rounds, each side in its own process (load included, timed apart).
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r: diffusers + peft, fp32, CPU" >&2
  /usr/bin/time -v -o "$WORK/torch.$r.time" "$PY" scripts/bench_pisa_sr_fullsize.py torch "$WORK/base" > "$WORK/torch.$r.json"
  echo "== round $r: onestep, CPU backend (flex), f32" >&2
  /usr/bin/time -v -o "$WORK/onestep.$r.time" "$ONESTEP" bench "$WORK/base/photo_128.png" --model "$WORK/model" \
    --device cpu --process-size 512 --runs "$RUNS" --no-warmup > "$WORK/onestep.$r.json"
done

"$PY" - "$WORK" "$ROUNDS" <<'PY' | tee "$WORK/results.json"
import json, os, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def peak_gib(path):
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read()).group(1)) / 2**20
def best(r):  # the fastest pass of a process (RUNS > 1), per stage
    return min(r["runs"], key=lambda p: p["total_s"])
stages = ["encode_s", "unet_s", "decode_s", "total_s"]
sides = {"torch": [], "onestep": []}
for i in range(1, rounds + 1):
    t = json.load(open(os.path.join(work, f"torch.{i}.json")))
    o = json.loads(open(os.path.join(work, f"onestep.{i}.json")).read().strip().splitlines()[-1])
    sides["torch"].append((best(t), t["load_s"], peak_gib(os.path.join(work, f"torch.{i}.time")), t))
    sides["onestep"].append((best(o), o["load_s"], peak_gib(os.path.join(work, f"onestep.{i}.time")), o))
def summary(rows):
    return {k: {"median": round(statistics.median(r[0][k] for r in rows), 2),
                "range": [round(min(r[0][k] for r in rows), 2), round(max(r[0][k] for r in rows), 2)]} for k in stages} | {
        "load_s": round(statistics.median(r[1] for r in rows), 1), "peak_rss_gib": round(max(r[2] for r in rows), 2)}
ratios = {k: [o[0][k] / t[0][k] for t, o in zip(sides["torch"], sides["onestep"])] for k in stages}
t0 = sides["torch"][0][3]
print(json.dumps({
    "input": "128x128 photo -> 512x512 (latent 64x64), PiSA-SR default mode, AdaIN", "cpus": os.cpu_count(),
    "rounds": rounds, "torch_version": t0["torch"], "torch_threads": t0["threads"],
    "torch": summary(sides["torch"]), "onestep": summary(sides["onestep"]),
    "ratio_onestep_over_torch": {k: {"median": round(statistics.median(v), 2), "range": [round(min(v), 2), round(max(v), 2)]}
                                 for k, v in ratios.items()},
}, indent=1))
PY
