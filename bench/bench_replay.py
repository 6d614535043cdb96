"""Replay throughput against its baseline, side by side in the same run: reading the file plus
``find_pulses`` alone on the same samples.

Workload: the 2000-event shower windows of bench_dsp.py (130 channels x 64 samples, registers
from poker.toml), written once with RunFileWriter (default compression) together with the
pulses and window-mode trigger words that the configuration gives them, as
``pokerdaq.replay.record_minimum_bias`` stores them; once with the default gzip, once with
Blosc2 zstd (faster to decompress: reading is a smaller part of both).

- baseline: ``RunFile.read`` in batches of ``replay.BATCH_EVENTS`` events and
  ``find_pulses_batch`` on each batch's samples: nothing else;
- ``replay_file`` with the file's own configuration: pulse finding, window trigger, prescalers,
  the pulse-by-pulse and word-by-word comparison with what is stored;
- ``replay_file`` with a new configuration (ECAL cut lowered): pulse finding and trigger twice.

Ratios (baseline time / replay time; goal >= 0.5 for the own configuration) are stored in
``extra_info`` and printed, from alternating measurements (baseline, replay, baseline, ...,
best of each) in CPU time of this process (all threads) and in wall-clock time.
Run: ``pytest bench/bench_replay.py --benchmark-only -o python_files=bench_*.py -s``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from bench_dsp import _alternating_best, _workload
from pokerdaq.config import load_config
from pokerdaq.dsp import find_pulses_batch
from pokerdaq.io import EVENT_DTYPE, RunFile, RunFileWriter
from pokerdaq.replay import Prescaler, WindowSetup, decision_words, replay_file, replay_windows
from pokerdaq.replay._replay import BATCH_EVENTS

ROUNDS = 5


@pytest.fixture(scope="module", params=["gzip", "zstd"])
def run_file(request, tmp_path_factory):
    cfg = load_config()
    samples, _ = _workload(kind="shower")
    setup = WindowSetup.from_config(cfg)
    pulses, offsets, trig = replay_windows(samples, setup)
    headers = np.zeros(len(samples), EVENT_DTYPE)
    headers["event_number"] = np.arange(len(samples))
    headers["n_pulses"] = np.diff(offsets)
    headers["trigger_word"] = decision_words(trig, Prescaler(setup.prescale))
    path = tmp_path_factory.mktemp("replay") / f"minbias_{request.param}.h5"
    with RunFileWriter(path, cfg, producer="minimum-bias", compression=request.param) as w:
        w.write_events(headers, samples, pulses)
    return path, cfg, setup


def _read_and_find(path, params) -> int:
    n = 0
    with RunFile(path) as f:
        for a in range(0, len(f), BATCH_EVENTS):
            pulses, _ = find_pulses_batch(f.read(a, a + BATCH_EVENTS).samples, params)
            n += len(pulses)
    return n


def test_replay_against_reading_plus_find_pulses(benchmark, run_file):
    path, cfg, setup = run_file
    new_cfg = cfg.replace(trigger={"ecal_cut_gev": 0.5 * cfg.trigger.ecal_cut_at(cfg.beam.energy_gev)})
    n_events = len(RunFile(path))
    fns = {
        "baseline": lambda: _read_and_find(path, setup.pulse_params),
        "replay": lambda: replay_file(path),
        "replay_new_config": lambda: replay_file(path, new_cfg),
    }
    for fn in fns.values():  # JIT and page cache warm
        fn()
    result = replay_file(path)
    assert result.reproduced and result.replayed_pulses == result.stored_pulses > 0
    benchmark.pedantic(fns["replay"], rounds=ROUNDS, iterations=1)
    cpu = _alternating_best(fns, time.process_time, ROUNDS)
    wall = _alternating_best(fns, time.perf_counter, ROUNDS)
    info = benchmark.extra_info
    for name in fns:
        info[f"{name}_events_per_cpu_s"] = n_events / cpu[name]
        info[f"{name}_events_per_wall_s"] = n_events / wall[name]
    for name in ("replay", "replay_new_config"):
        info[f"cpu_ratio_{name}_to_baseline"] = cpu["baseline"] / cpu[name]
        info[f"wall_ratio_{name}_to_baseline"] = wall["baseline"] / wall[name]
    info["load_average"] = os.getloadavg()[0]
    print("\n" + "\n".join(f"{k}: {v:.4g}" for k, v in info.items()))
