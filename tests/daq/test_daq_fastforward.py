"""Fast-forward over the beam-off time (``daq.fast_forward``): same data, far fewer slice messages.

Real processes, real sockets, real files: a physics run with short spills and long gaps is
taken with fast-forward on and off and the files compared field by field; a foreign stretch
message is rejected and counted by a running trigger processor; a board killed inside a
stretch is still detected. Front-end and trigger-logic level checks compare a stretch with
the same slices one by one.
"""

import os
import signal

import numpy as np
import pytest
import zmq

from pokerdaq.config import load_config
from pokerdaq.daq._physics import PhysicsTrigger
from pokerdaq.daq._sparse import SparsePhysicsFrontEnd
from pokerdaq.daq._wire import (
    MAX_STRETCH_SLICES,
    PRIMITIVE_DTYPE,
    PRIMITIVE_MAGIC,
    MessageError,
    StretchError,
    decode_slice,
    encode_slice,
)
from pokerdaq.io import EventFlags, RunFile

from _daqhelpers import FAST, daq_run, poll_until, status

SEED = 11
# 50,000 ticks on, then 0.1 s (25 M ticks, ~1526 slices) off: almost all of the run is beam-off
GAPS = {"spill_length_s": 2e-4, "spill_period_s": 0.1}
SPILL_TICKS = 25_000_000


def gap_config(**daq):
    timeouts = {k: v for k, v in FAST.items() if k not in ("front_end", "trigger_logic")}
    return load_config().replace(daq={**timeouts, "builder_timeout_s": 60.0, "board_timeout_s": 60.0,
                                      "boards_per_process": 6, "fast_forward_slices": 512, **daq}, beam=GAPS)


def run_file(cfg, path, n_events):
    with daq_run(cfg, path, seed=SEED, max_events=n_events) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
        tp = status(run, "trigger")
    assert s["errors"] == [] and s["events_written"] == n_events
    return s, tp


def read_all(path, n):
    with RunFile(path) as f:
        b = f.read(0, n)
        return {"events": f.events, "samples": b.samples, "pulses": b.pulses, "offsets": b.pulse_offsets,
                "truth": b.truth, "scalers": f.scalers}


@pytest.mark.timeout(420)
def test_fast_forward_gives_the_same_file_with_far_fewer_decisions(tmp_path):
    n = 90
    s_on, tp_on = run_file(gap_config(fast_forward=True), tmp_path / "on", n)
    s_off, tp_off = run_file(gap_config(fast_forward=False), tmp_path / "off", n)
    on, off = read_all(s_on["files"][0], n), read_all(s_off["files"][0], n)
    # the run crossed several beam-off gaps
    assert len(on["scalers"]) >= 3 and (on["events"]["flags"] & EventFlags.INCOMPLETE == 0).all()
    for key in ("events", "samples", "pulses", "offsets", "truth", "scalers"):
        a, b = on[key], off[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if a.dtype.names:
            for name in a.dtype.names:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"{key}.{name}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
    # the same time was decided, in far fewer steps
    assert tp_on["slices_decided"] == tp_off["slices_decided"] and tp_on["decided_ticks"] == tp_off["decided_ticks"]
    assert tp_off["decisions"] == tp_off["slices_decided"] and "stretch_decisions" not in tp_off
    assert tp_on["stretch_decisions"] > 0
    assert tp_on["decisions"] * 10 < tp_off["decisions"], (tp_on["decisions"], tp_off["decisions"])
    assert tp_on.get("bad_primitive_messages", 0) == 0
