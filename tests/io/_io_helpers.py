"""Helpers of the io tests: deterministic event batches (a module with a unique name: every
test folder's ``conftest.py`` is imported as ``conftest``, so importing helpers from it breaks
as soon as two folders are collected together)."""

from __future__ import annotations

import numpy as np

from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io import EVENT_DTYPE, EventFlags

TRUTH_TEST_DTYPE = np.dtype([("energy_gev", np.float64), ("species", "S8"), ("signal", np.bool_)])


def make_batch(cfg, n: int, first_event: int = 0, seed: int = 1, with_truth: bool = True):
    """Events with every field filled with distinct, checkable values (headers, samples, pulses, truth)."""
    rng = np.random.default_rng([seed, first_event])
    n_ch, window = len(cfg.channel_map), cfg.digitizer.window_samples
    headers = np.zeros(n, EVENT_DTYPE)
    headers["event_number"] = np.arange(first_event, first_event + n, dtype=np.uint64)
    headers["timestamp"] = (headers["event_number"] * 1000 + 7).astype(np.uint64)
    headers["trigger_word"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    headers["flags"] = np.where(rng.random(n) < 0.2, int(EventFlags.INCOMPLETE | EventFlags.TRUNCATED), 0)
    headers["missing_boards"] = rng.integers(0, 2**12, n, dtype=np.uint64)
    headers["n_pulses"] = rng.integers(0, 4, n, dtype=np.uint32)
    samples = (400 + rng.normal(0, 3, (n, n_ch, window))).astype(np.uint16)
    samples[:, :, window // 2] = rng.integers(0, cfg.digitizer.adc_max + 1, (n, n_ch), dtype=np.uint16)
    pulses = np.zeros(int(headers["n_pulses"].sum()), PULSE_DTYPE)
    for name in PULSE_DTYPE.names:
        info = np.iinfo(PULSE_DTYPE[name])
        pulses[name] = rng.integers(0, min(info.max, 1 << 20), len(pulses), dtype=np.int64)
    pulses["channel"] = rng.integers(0, n_ch, len(pulses))
    truth = None
    if with_truth:
        truth = np.zeros(n, TRUTH_TEST_DTYPE)
        truth["energy_gev"] = rng.normal(100, 1, n)
        truth["species"] = rng.choice([b"e+", b"pi-", b"mu+"], n)
        truth["signal"] = rng.random(n) < 0.1
    return headers, samples, pulses, truth
