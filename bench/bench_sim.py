"""Emulator speed, measured against SimSiPM in the same run (``make bench``).

- single SiPM: waveforms/s of this emulator (one thread) and of SimSiPM for the same
  sensor (14400 cells, 5 % crosstalk, 1 % afterpulses, 2 MHz dark counts, 500 photons
  spread by a 2.4 ns scintillator, 256 samples of 4 ns); the ratio goes in extra_info;
- full POKER events: all 130 channels, one 64-sample window per beam particle, with one
  thread and with all threads; extra_info has events/s and the fraction of a 100 kHz beam.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import SiPM

from pokerdaq.config import load_config
from pokerdaq.sim import emulate_channel, emulate_windows

N_PHOTONS = 500
N_SAMPLES = 256
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def counter_cfg():
    cfg = load_config()
    # the beam counters' SiPM, made to match SimSiPM's sensor below
    return cfg.replace(
        detector={
            "beam_counters": {
                "sipm": {
                    "n_cells": 14400,
                    "crosstalk_prob": 0.05,
                    "afterpulse_prob": 0.01,
                    "dark_rate_hz": 2e6,
                    "pulse_rise_ns": 1.0,
                    "pulse_decay_ns": 8.0,
                    "gain_spread": 0.05,
                },
                "scintillator": {"decay_ns": [2.4], "fractions": [1.0], "rise_ns": 0.0},
                "electronics": {"shaping_ns": 0.0},
            }
        }
    )


def simsipm_sensor():
    p = SiPM.SiPMProperties()
    p.setSize(6.0)
    p.setPitch(50.0)
    p.setXt(0.05)
    p.setAp(0.01)
    p.setDcr(2e6)
    p.setCcgv(0.05)
    p.setRiseTime(1.0)
    p.setFallTimeFast(8.0)
    p.setSlowComponentOff()
    p.setSampling(4.0)
    p.setSignalLength(N_SAMPLES * 4.0)
    return SiPM.SiPMSensor(p)


def test_simsipm_single_sipm(benchmark):
    sensor = simsipm_sensor()
    rng = np.random.default_rng(1)
    times = [list(20.0 + rng.exponential(2.4, N_PHOTONS)) for _ in range(16)]
    n = 500

    def run():
        for i in range(n):
            sensor.resetState()
            sensor.addPhotons(times[i % 16])
            sensor.runEvent()
            np.asarray(sensor.signal().waveform())

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    RESULTS["simsipm_wf_per_s"] = n / benchmark.stats.stats.median
    benchmark.extra_info["waveforms_per_s"] = RESULTS["simsipm_wf_per_s"]


def test_pokerdaq_single_sipm_one_thread(benchmark, counter_cfg):
    ch = counter_cfg.channel_map.index("S0")
    ly = counter_cfg.detector.beam_counters.scintillator.light_yield_pe_per_mev
    n = 20000
    deposits = np.full(n, N_PHOTONS / ly)
    emulate_channel(counter_cfg, ch, deposits[:10], seed=1, n_samples=N_SAMPLES, t0_ns=20.0)  # compile
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        benchmark.pedantic(
            emulate_channel,
            args=(counter_cfg, ch, deposits),
            rounds=5,
            iterations=1,
            kwargs={"seed": 1, "n_samples": N_SAMPLES, "t0_ns": 20.0},
            warmup_rounds=1,
        )
    finally:
        numba.set_num_threads(threads)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info["waveforms_per_s"] = rate
    if "simsipm_wf_per_s" in RESULTS:
        benchmark.extra_info["ratio_vs_simsipm_per_core"] = rate / RESULTS["simsipm_wf_per_s"]
        print(
            f"\nsingle SiPM, one core: pokerdaq {rate:,.0f} wf/s, SimSiPM {RESULTS['simsipm_wf_per_s']:,.0f} wf/s,"
            f" ratio {rate / RESULTS['simsipm_wf_per_s']:.1f}"
        )


@pytest.mark.parametrize("threads", [1, 0], ids=["one_thread", "all_threads"])
def test_pokerdaq_full_events(benchmark, threads):
    cfg = load_config()
    n = 4000
    emulate_windows(cfg, 20, seed=2)  # compile
    saved = numba.get_num_threads()
    numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
    try:
        benchmark.pedantic(emulate_windows, args=(cfg, n), kwargs={"seed": 3}, rounds=3, iterations=1, warmup_rounds=1)
    finally:
        numba.set_num_threads(saved)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info["events_per_s"] = rate
    benchmark.extra_info["fraction_of_100khz_beam"] = rate / 1e5
    benchmark.extra_info["threads"] = threads or numba.config.NUMBA_NUM_THREADS
    print(f"\nfull POKER events (130 channels x 64 samples), threads={threads or 'all'}: {rate:,.0f} events/s")
