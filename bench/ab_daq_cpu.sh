#!/bin/sh
# Before/after in one session: bench/daq_cpu.py from a BEFORE source tree (PYTHONPATH) and from
# this tree, alternately, ROUNDS times each, with the same venv; the JSON of each run in OUT.
#   bench/ab_daq_cpu.sh BEFORE_SRC OUT [ROUNDS] [extra daq_cpu.py arguments]
set -e
before=$1; out=$2; rounds=${3:-2}; shift 3 || shift $#
mkdir -p "$out"
py=.venv/bin/python
for r in $(seq 1 "$rounds"); do
  PYTHONPATH="$before" nice -n 10 $py bench/daq_cpu.py --json "$out/before_$r.json" "$@" > "$out/before_$r.txt"
  nice -n 10 $py bench/daq_cpu.py --json "$out/after_$r.json" "$@" > "$out/after_$r.txt"
done
$py - "$out" <<'PY'
import json, sys, glob, statistics
out = sys.argv[1]
def load(k): return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{k}_*.json"))]
b, a = load("before"), load("after")
keys = sorted({k for m in b + a for k in m["core_s_per_beam_s_by_process"]})
stages = sorted({k for m in b + a for k in m["core_s_per_beam_s_by_stage"]})
med = lambda ms, f: statistics.median(f(m) for m in ms)
print(f"{'process / stage':<32} {'before':>8} {'after':>8}   (core-s per beam-s, median of {len(b)} / {len(a)} runs)")
for k in keys:
    g = lambda m: m["core_s_per_beam_s_by_process"].get(k, 0.0)
    print(f"{k:<32} {med(b, g):8.2f} {med(a, g):8.2f}")
    for s in stages:
        if s.startswith(k + "."):
            g = lambda m: m["core_s_per_beam_s_by_stage"].get(s, 0.0)
            print(f"  - {s[len(k) + 1:]:<28} {med(b, g):8.2f} {med(a, g):8.2f}")
for f in ("core_s_per_beam_s", "beam_per_wall", "events_per_s", "mb_per_s"):
    print(f"{f:<32} {med(b, lambda m: m[f]):8.4g} {med(a, lambda m: m[f]):8.4g}")
PY
