"""Pulse-finder RTL simulation throughput (Verilator + cocotb) next to the numba model.

Workload: 16 channels x 32..256 samples x 256 windows of physics-like stimuli (difference-of-
exponentials pulses, noise, pile-up, saturation; ``tests/firmware/_stimuli.py``, seed 7),
one register set for all windows, streamed through the verilated ``pulse_finder_bank``
(16 channels in parallel, one sample per channel per clock) by the cocotb bench, records
collected. The same samples go through ``pokerdaq.dsp.find_pulses_batch`` (numba) in the same
process; the records are checked to agree, so both did the same work.

Recorded in ``benchmark.extra_info``: simulated samples/s through the RTL (whole simulator
run, start-up included, and the clock rate), numba samples/s, and the ratio
numba / RTL: how many times longer a hardware-in-the-loop style regression on the RTL takes
than the same data through the software model.
Run: ``make bench`` or ``pytest bench/bench_firmware.py --benchmark-only -o python_files=bench_*.py -s``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "firmware"))

from _sim import build_bank
from _stimuli import REG_NAMES, make_campaign

from pokerdaq.dsp import PulseParams, find_pulses_batch

NCH = 16
N_WINDOWS = 256
NUMBA_ROUNDS = 20


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    campaign = make_campaign(
        seed=7, n_channel_windows=NCH * N_WINDOWS, nch=NCH, kinds=("physics",), windows_per_batch=N_WINDOWS
    )
    assert len(campaign.batch_n) == 1
    campaign.gaps[:] = 0  # full rate: one sample per clock
    campaign.index0[:] = 0
    path = tmp_path_factory.mktemp("bench_fw")
    campaign.save(path / "stimulus.npz")
    return campaign, path


def _params(campaign) -> PulseParams:
    regs = campaign.regs[0]
    return PulseParams(**{name: regs[:, k].astype(np.int64) for k, name in enumerate(REG_NAMES)})


def test_rtl_simulation_throughput(benchmark, workload):
    campaign, path = workload
    bank = build_bank(nch=NCH)
    n = int(campaign.batch_n[0])
    samples = campaign.samples.reshape(N_WINDOWS, n, NCH).transpose(0, 2, 1).copy()
    n_samples = samples.size

    def run_rtl():
        bank.run(path / "stimulus.npz", path / "records.npz", path / "sim")

    benchmark.pedantic(run_rtl, rounds=2, iterations=1, warmup_rounds=0)
    rtl_rate = n_samples / benchmark.stats.stats.min
    result = np.load(path / "records.npz")
    clocks = int(result["clocks"])

    params = _params(campaign)
    records, _ = find_pulses_batch(samples, params)  # compiles
    best = float("inf")
    for _ in range(NUMBA_ROUNDS):
        t0 = time.perf_counter()
        records, _ = find_pulses_batch(samples, params)
        best = min(best, time.perf_counter() - t0)
    numba_rate = n_samples / best
    assert len(records) == len(result["rows"]) > 0  # both found the same pulses

    benchmark.extra_info.update(
        samples=n_samples,
        clocks=clocks,
        rtl_samples_per_s=rtl_rate,
        rtl_clocks_per_s=clocks / benchmark.stats.stats.min,
        numba_samples_per_s=numba_rate,
        numba_over_rtl=numba_rate / rtl_rate,
    )
    print(
        f"\nRTL (Verilator+cocotb, {NCH} ch): {rtl_rate:,.0f} samples/s "
        f"({clocks / benchmark.stats.stats.min:,.0f} clocks/s); numba: {numba_rate:,.0f} "
        f"samples/s; numba/RTL = {numba_rate / rtl_rate:,.0f}"
    )
