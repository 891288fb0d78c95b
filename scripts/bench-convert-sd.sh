#!/usr/bin/env bash
# `onestep convert sd` of the full-size random PiSA-SR folder ($WORK/base, made by
# `ROUNDS=0 scripts/bench-pisa-sr-fullsize.sh`), two builds in alternating rounds: time and
# peak RSS of each (GNU time). OLD: another onestep binary (e.g. built at an older commit);
# NEW: this checkout's (default). Extra arguments go to both (e.g. --quantize mixed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
B="${WORK:-$ONESTEP_CACHE/bench-sd}/base"
OLD="${OLD:?set OLD to the onestep binary to compare with}"
NEW="${NEW:-$CARGO_TARGET_DIR/release/onestep}"
ROUNDS="${ROUNDS:-2}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for v in OLD NEW; do
    rm -rf "$out/$v"
    /usr/bin/time -f "$v round $r: %e s, peak RSS %M KiB" "${!v}" convert sd --base "$B" --lora "$B/pisa_sr.pkl" \
      --method pisa-sr --out "$out/$v" "$@" > /dev/null
  done
done
