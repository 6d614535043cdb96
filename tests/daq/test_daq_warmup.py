"""No numba compilation after configure: a board or the trigger compiling mid-run stalls the run.

With a cold numba cache (a fresh clone, a new version) compiling one kernel takes seconds on
the 2-core host, longer than ``daq.board_timeout_s``: a board that meets a new kernel
signature at its first readout with pulses goes silent and is taken for dead, and its events
are flagged INCOMPLETE. The front ends and the trigger logic therefore warm every code path
up while they are configured. This test runs them in a fresh interpreter (so that no other
test has compiled anything for them), snapshots every numba dispatcher of pokerdaq after
configure, runs the real run loop (slices, trigger decisions, readout windows, window pulse
finding) and asserts that no dispatcher gained a signature: compiled or loaded from the disk
cache, either would be a stall with a cold cache.
"""

import json
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, sys
import numpy as np
import numba.core.dispatcher
from pokerdaq.config import load_config
from pokerdaq.daq._factory import make_front_end, make_trigger_logic

def dispatchers():
    found = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("pokerdaq"):
            for attr, obj in vars(mod).items():
                if isinstance(obj, numba.core.dispatcher.Dispatcher):
                    found[f"{name}.{attr}"] = obj
    return found

front_end = sys.argv[1]
seed = 7
cfg = load_config()
cfg = cfg.replace(daq={"front_end": front_end})
boards = range(cfg.channel_map.n_boards)
fes = [make_front_end(cfg, b, seed) for b in boards]
trig = make_trigger_logic(cfg, seed)
before = {k: len(d.overloads) for k, d in dispatchers().items()}
pre, win = cfg.digitizer.pretrigger_samples, cfg.digitizer.window_samples
ticks = cfg.daq.slice_ticks
recent = [[] for _ in fes]   # the stream front end hands its samples over: the last 3 slices

def window(b, first):
    if hasattr(fes[b], "read_window"):
        return fes[b].read_window(first, win)
    k0 = recent[b][0][0]
    samples = np.concatenate([s for _, s in recent[b]], axis=1)
    return samples[:, first - k0 * ticks:first - k0 * ticks + win]

events = pulses = 0
for k in range(int(sys.argv[2])):
    outs = [fe.process_slice(k) for fe in fes]
    for b, o in enumerate(outs):
        if o.samples is not None:
            recent[b] = (recent[b] + [(k, o.samples)])[-3:]
    out = trig.process_slice(k, np.concatenate([o.primitives for o in outs]), False)
    for ts in out.timestamps.tolist():
        if ts - pre < 0:
            continue
        events += 1
        for b, fe in enumerate(fes):
            pulses += len(fe.find_pulses(window(b, ts - pre), ts - pre))
after = {k: len(d.overloads) for k, d in dispatchers().items()}
new = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
print(json.dumps({"events": events, "pulses": pulses, "dispatchers": len(before), "new_signatures": new}))
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("front_end", "n_slices"), [("physics", 400), ("physics-stream", 60)])
def test_nothing_compiles_after_configure(front_end, n_slices):
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, front_end, str(n_slices)], capture_output=True, text=True, timeout=280
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the run really read out events with pulses (the paths that used to compile mid-run)
    assert result["events"] >= 3 and result["pulses"] > result["events"], result
    assert result["dispatchers"] >= 10, result
    assert result["new_signatures"] == {}, result
