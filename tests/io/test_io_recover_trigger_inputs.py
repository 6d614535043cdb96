"""recover() keeps a run file's flushed /trigger_inputs, so a recovered DAQ run can still be decided again."""

from __future__ import annotations

import numpy as np
from _io_helpers import make_batch

from pokerdaq.io import TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE, RunFile, RunFileWriter, recover


def _inputs(first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    steps = np.zeros(n, TRIGGER_STEP_DTYPE)
    steps["first_slice"] = steps["last_slice"] = np.arange(first, first + n)
    steps["n_primitives"] = np.arange(n) % 3
    prims = np.zeros(int(steps["n_primitives"].sum()), TRIGGER_PRIMITIVE_DTYPE)
    prims["time"] = np.arange(len(prims)) + 1000 * first
    prims["channel"] = np.arange(len(prims)) % 130
    return steps, prims


def test_recover_keeps_the_flushed_trigger_inputs(cfg, tmp_path):
    out = tmp_path / "r.h5"
    w = RunFileWriter(out, cfg, flush_every_events=10**6, flush_interval_s=1e6, trigger_seed=5)
    headers, samples, pulses, truth = make_batch(cfg, 10)
    steps, prims = _inputs(0, 40)
    w.write_trigger_inputs(steps, prims)
    w.write_events(headers, samples, pulses, truth)
    w.flush()
    later = _inputs(40, 25)
    w.write_trigger_inputs(*later)  # written, never flushed: a kill now loses them
    w._h5.flush()
    w._h5.close()  # abandon the file as a killed writer leaves it (no final attributes, no rename)
    w._h5 = None
    w._closed = True
    final = recover(w.part_path)
    with RunFile(final) as f:
        got = f.trigger_inputs
        assert got is not None
        assert got[0].tobytes() == steps.tobytes() and got[1].tobytes() == prims.tobytes() and got[2] == 5
        assert f.attrs["n_trigger_steps"] == 40 and f.attrs["recovered_trigger_steps_lost"] == 0
        assert len(f) == 10


def test_trigger_state_written_with_the_first_event_and_recovered(cfg, tmp_path):
    out = tmp_path / "s.h5"
    w = RunFileWriter(out, cfg, flush_every_events=10**6, flush_interval_s=1e6, trigger_seed=5)
    pre_steps, pre_prims = _inputs(7, 4)
    state = np.arange(90, dtype=np.int64)
    seen = []

    def hook(first_event: int) -> None:  # as the DAQ writer does (pokerdaq.daq _writer.py)
        seen.append(first_event)
        w.write_trigger_state(7, state, pre_steps, pre_prims, 1)

    w.first_event_hook = hook
    headers, samples, pulses, truth = make_batch(cfg, 10)
    w.write_events(headers[:5], samples[:5], pulses[: int(headers["n_pulses"][:5].sum())], truth[:5])
    w.write_events(headers[5:], samples[5:], pulses[int(headers["n_pulses"][:5].sum()) :], truth[5:])
    assert seen == [int(headers["event_number"][0])]  # once per file, before its first event
    w.flush()
    w._h5.close()  # a killed writer
    w._h5 = None
    w._closed = True
    with RunFile(recover(w.part_path)) as f:
        first_slice, version, words, steps, prims = f.trigger_state
    assert (first_slice, version) == (7, 1) and np.array_equal(words, state)
    assert steps.tobytes() == pre_steps.tobytes() and prims.tobytes() == pre_prims.tobytes()
