"""``pokerdaq hil --stimulus`` on a file of a recorded channel subset (``pokerdaq import``)."""

from __future__ import annotations

import numpy as np

from pokerdaq.cli import main
from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, find_pulses_batch
from pokerdaq.hil._command import full_channel_windows
from pokerdaq.io import EVENT_DTYPE, RunFileWriter
from pokerdaq.sim import emulate_windows

CHANNELS = np.array([0, 1, 2, 3, 10, 11, 40, 41, 42, 100])


def _subset_file(path, n=12):
    cfg = load_config()
    samples, _ = emulate_windows(cfg, n, 3)
    headers = np.zeros(n, EVENT_DTYPE)
    headers["event_number"] = np.arange(n)
    with RunFileWriter(path, cfg, channels=CHANNELS, producer="import") as w:
        w.write_events(headers, np.ascontiguousarray(samples[:, CHANNELS, :]))
    return cfg, samples[:, CHANNELS, :]


def test_absent_inputs_are_driven_flat_and_find_no_pulse(tmp_path):
    cfg, sub = _subset_file(tmp_path / "sub.h5")
    full = full_channel_windows(sub, CHANNELS, cfg)
    assert full.shape == (len(sub), len(cfg.channel_map), sub.shape[2])
    pulses, _ = find_pulses_batch(full, PulseParams.from_config(cfg))
    ref, _ = find_pulses_batch(sub, PulseParams.from_config(cfg, CHANNELS), CHANNELS)
    assert len(ref) > 20
    key = ["channel", "time"]
    assert np.array_equal(np.sort(pulses[list(ref.dtype.names)], order=key), np.sort(ref, order=key))


def test_hil_cli_takes_a_subset_stimulus(tmp_path, capsys):
    _subset_file(tmp_path / "sub.h5")
    assert main(["hil", "--dut", "model", "--stimulus", str(tmp_path / "sub.h5")]) == 0
    assert "PASS" in capsys.readouterr().out
