"""``/trigger_inputs`` of run files: written by RunFileWriter, read by RunFile, checked by the
stream-mode re-decision (real HDF5 files, no DAQ processes: see test_replay_daq.py for those)."""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.io import (
    TRIGGER_PRIMITIVE_DTYPE,
    TRIGGER_STEP_DTYPE,
    RunFile,
    RunFileWriter,
)
from pokerdaq.replay._decisions import stream_decisions
from pokerdaq.trigger import TriggerRegisters


def _steps(n: int, per_step: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    steps = np.zeros(n, TRIGGER_STEP_DTYPE)
    steps["first_slice"] = np.arange(first, first + n)
    steps["last_slice"] = steps["first_slice"]
    steps["n_primitives"] = per_step
    steps["dead_until"] = -(1 << 62)  # the model's "no trigger yet"
    prims = np.zeros(n * per_step, TRIGGER_PRIMITIVE_DTYPE)
    prims["time"] = np.arange(len(prims)) * 6400
    prims["channel"] = np.arange(len(prims)) % 130
    prims["integral_net"] = 0  # no energy: no candidate
    return steps, prims


def test_trigger_inputs_go_to_the_open_file_and_read_back(tmp_path):
    cfg = load_config()
    with RunFileWriter(tmp_path / "r.h5", cfg, producer="pokerdaq run", trigger_seed=77) as w:
        a = _steps(3, 4)
        w.write_trigger_inputs(*a)
        b = _steps(2, 5, first=3)
        w.write_trigger_inputs(*b)
    steps, prims, seed = RunFile(tmp_path / "r.h5").trigger_inputs
    assert seed == 77
    np.testing.assert_array_equal(steps, np.concatenate([a[0], b[0]]))
    np.testing.assert_array_equal(prims, np.concatenate([a[1], b[1]]))
    with RunFile(tmp_path / "r.h5") as f:
        assert int(f.attrs["n_trigger_steps"]) == 5 and int(f.attrs["n_trigger_primitives"]) == 22


def _empty(path) -> bool:
    steps, prims, seed = RunFile(path).trigger_inputs
    return len(steps) == 0 and len(prims) == 0 and seed is None


def test_a_file_without_trigger_inputs_has_empty_ones(tmp_path):
    with RunFileWriter(tmp_path / "r.h5", load_config()) as w:
        w.flush()
    assert _empty(tmp_path / "r.h5")


@pytest.mark.parametrize("bad", ["dtype", "count"])
def test_bad_trigger_inputs_are_refused_before_anything_is_written(tmp_path, bad):
    steps, prims = _steps(2, 3)
    if bad == "dtype":
        prims = prims.astype([(n, "<i8") for n in prims.dtype.names])
        match = "dtypes"
    else:
        prims = prims[:-1]
        match = "steps hold 6 primitives, 5 given"
    with RunFileWriter(tmp_path / "r.h5", load_config()) as w, pytest.raises(ValueError, match=match):
        w.write_trigger_inputs(steps, prims)
    assert _empty(tmp_path / "r.h5")


def test_recorded_state_that_the_model_does_not_meet_is_counted():
    cfg = load_config().replace(trigger={"random_rate_hz": 0.0})  # no random trigger
    regs = TriggerRegisters.from_config(cfg, 1)
    steps, prims = _steps(4, 0)
    ok = stream_decisions(regs, steps, prims, cfg.daq.slice_ticks)
    assert ok.state_mismatches == 0 and ok.first_state_mismatch is None
    steps["dead_until"][2] = 12345
    bad = stream_decisions(regs, steps, prims, cfg.daq.slice_ticks)
    assert bad.state_mismatches == 1 and bad.first_state_mismatch["step"] == 2
    with pytest.raises(ValueError, match="the steps hold 0 primitives, 1 stored"):
        stream_decisions(regs, steps, np.zeros(1, TRIGGER_PRIMITIVE_DTYPE), cfg.daq.slice_ticks)
