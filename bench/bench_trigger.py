"""Trigger-chain throughput (pytest-benchmark): beam particles per second, and the real-time factor.

Workload: the embedded POKER configuration (100 kHz of 100 GeV e+ with hadrons, muons,
signal and the LYSO background), pulse finders in stream form (configured pedestal), one
continuous stream of ``SPAN`` samples (about 4 ms, ~400 beam particles) from
``pokerdaq.sim.SampleStream``, cut in chunks of 65536 samples.

Measured in the same run, best of ``ROUNDS``:
- ``emulator``: SampleStream.read alone;
- ``pulse finder``: PulseStream.process on the stored samples (the baseline of the chain);
- ``trigger``: TriggerModel.process on the stored pulses;
- ``chain``: emulator -> pulse finder -> trigger, with numba on one and on two threads;
- ``chain 2 processes``: emulator + pulse finder for half of the boards in each of two
  processes (``pokerdaq.trigger._chain.stream_pulses``), trigger in the parent;
- ``trigger windows``: window-mode trigger_windows on one-particle windows.

``benchmark.extra_info`` holds particles/s, the real-time factor (beam time / wall time at the
configured 100 kHz) and the ratios: chain over pulse finder alone, trigger over pulse finder,
the share of emulator / pulse finder / trigger in the chain, and two threads over one.
Run: ``make bench`` or ``pytest bench/bench_trigger.py --benchmark-only -o python_files=bench_*.py -s``.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, PulseStream, find_pulses_batch
from pokerdaq.sim import SampleStream, emulate_windows
from pokerdaq.trigger import TriggerModel, trigger_windows
from pokerdaq.trigger._chain import stream_config, stream_pulses

SPAN = 1 << 20  # samples per channel: 4.19 ms at 250 MHz
CHUNK = 1 << 16
ROUNDS = 3
SEED = 11

_RESULTS: dict[str, float] = {}  # seconds, best round


@pytest.fixture(scope="module")
def setup():
    cfg = stream_config(load_config())
    params = PulseParams.from_config(cfg)
    lag = int((params.nsa + params.nsb).max())
    stream = SampleStream(cfg, seed=SEED)
    chunks, truth = [], []
    for _ in range(SPAN // CHUNK):
        s, tr = stream.read(CHUNK)
        chunks.append(s)
        truth.append(tr)
    finder = PulseStream(params)
    pulses = [finder.process(c) for c in chunks]
    model = TriggerModel(cfg, seed=SEED)
    for p in pulses:  # compile
        model.process(p, model.tick + CHUNK - lag if model.tick + CHUNK - lag > model.tick else model.tick)
    n_particles = int(sum(len(t) for t in truth))
    print(
        f"\nworkload: {SPAN} samples x {len(cfg.channel_map)} channels, {n_particles} beam particles, "
        f"{sum(len(p) for p in pulses)} pulses"
    )
    yield dict(cfg=cfg, params=params, lag=lag, chunks=chunks, pulses=pulses, n=n_particles)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def _bench(benchmark, name, fn, setup_fn, n_particles, cfg):
    benchmark.pedantic(fn, setup=setup_fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    best = benchmark.stats.stats.min
    _RESULTS[name] = best
    beam_s = SPAN * cfg.digitizer.sample_ns * 1e-9
    benchmark.extra_info["particles_per_s"] = n_particles / best
    benchmark.extra_info["real_time_factor"] = beam_s / best
    return best


def _emulate(cfg):
    stream = SampleStream(cfg, seed=SEED)
    for _ in range(SPAN // CHUNK):
        stream.read(CHUNK)


def _chain(cfg, params, lag, timings=None):
    stream, finder, model = SampleStream(cfg, seed=SEED), PulseStream(params), TriggerModel(cfg, seed=SEED)
    spent = np.zeros(3)
    for _ in range(SPAN // CHUNK):
        t0 = time.perf_counter()
        s, _ = stream.read(CHUNK)
        t1 = time.perf_counter()
        p = finder.process(s)
        t2 = time.perf_counter()
        model.process(p, max(finder.samples_seen - lag, model.tick))
        spent += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    if timings is not None:
        timings.append(spent)


def test_emulator(benchmark, setup):
    numba.set_num_threads(1)
    cfg = setup["cfg"]
    _emulate(cfg)  # compile, tables
    _bench(benchmark, "emulator", lambda: _emulate(cfg), None, setup["n"], cfg)


def test_pulse_finder_alone(benchmark, setup):
    numba.set_num_threads(1)
    params, chunks = setup["params"], setup["chunks"]

    def run():
        finder = PulseStream(params)
        for c in chunks:
            finder.process(c)

    _bench(benchmark, "pulse finder", run, None, setup["n"], setup["cfg"])


def test_trigger_alone(benchmark, setup):
    numba.set_num_threads(1)
    cfg, pulses, lag = setup["cfg"], setup["pulses"], setup["lag"]

    def run():
        model = TriggerModel(cfg, seed=SEED)
        end = 0
        for p in pulses:
            end += CHUNK
            model.process(p, max(end - lag, model.tick))

    best = _bench(benchmark, "trigger", run, None, setup["n"], cfg)
    if "pulse finder" in _RESULTS:
        benchmark.extra_info["trigger_over_pulse_finder_time"] = best / _RESULTS["pulse finder"]


@pytest.mark.parametrize("threads", [1, 2])
def test_chain(benchmark, setup, threads):
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    cfg, params, lag = setup["cfg"], setup["params"], setup["lag"]
    timings: list = []
    best = _bench(benchmark, f"chain {threads}", lambda: _chain(cfg, params, lag, timings), None, setup["n"], cfg)
    share = min(timings, key=lambda t: t.sum())
    share = share / share.sum()
    info = benchmark.extra_info
    info["numba_threads"] = numba.get_num_threads()
    info["share_emulator"], info["share_pulse_finder"], info["share_trigger"] = (float(x) for x in share)
    if "pulse finder" in _RESULTS:
        info["chain_over_pulse_finder_time"] = best / _RESULTS["pulse finder"]
    if threads == 2 and "chain 1" in _RESULTS:
        info["speedup_two_threads"] = _RESULTS["chain 1"] / best
    print(
        f"\nchain on {info['numba_threads']} thread(s): {info['particles_per_s']:.4g} particles/s, "
        f"real-time factor {info['real_time_factor']:.4g} at {cfg.beam.rate_hz:g} Hz; time in emulator "
        f"{share[0]:.1%}, pulse finder {share[1]:.1%}, trigger {share[2]:.2%}"
        + (
            f"; chain / pulse finder alone {info['chain_over_pulse_finder_time']:.3g}x"
            if "chain_over_pulse_finder_time" in info
            else ""
        )
        + (f"; two threads / one {info['speedup_two_threads']:.3g}x" if "speedup_two_threads" in info else "")
    )


@pytest.fixture(scope="module")
def pool(setup):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn"), initializer=numba.set_num_threads, initargs=(1,)
    ) as ex:  # one core per process
        halves = _halves(setup["cfg"])
        list(ex.map(stream_pulses, [setup["cfg"]] * 2, halves, [SEED] * 2, [CHUNK] * 2))  # import, compile
        yield ex


def _halves(cfg):
    """The boards split in two halves of about equal channel count: one per process."""
    table = cfg.channel_map.table
    boards = np.unique(table["board"])
    cum = np.cumsum([np.sum(table["board"] == b) for b in boards])
    first = boards[cum <= cum[-1] / 2]
    in_first = np.isin(table["board"], first)
    return [np.flatnonzero(in_first), np.flatnonzero(~in_first)]


def test_chain_two_processes(benchmark, setup, pool):
    """Emulator + pulse finder on two processes (half of the boards each), trigger in the parent."""
    numba.set_num_threads(1)
    cfg = setup["cfg"]
    halves = _halves(cfg)

    def run():
        parts = list(pool.map(stream_pulses, [cfg] * 2, halves, [SEED] * 2, [SPAN] * 2, [CHUNK] * 2))
        pulses = np.concatenate([p for p, _ in parts])
        model = TriggerModel(cfg, seed=SEED)
        model.process(pulses, SPAN)
        return model

    best = _bench(benchmark, "chain 2 processes", run, None, setup["n"], cfg)
    info = benchmark.extra_info
    if "chain 1" in _RESULTS:
        info["speedup_two_processes"] = _RESULTS["chain 1"] / best
    if "pulse finder" in _RESULTS:
        info["chain_over_pulse_finder_time"] = best / _RESULTS["pulse finder"]
    print(
        f"\nchain on 2 processes: {info['particles_per_s']:.4g} particles/s, real-time factor "
        f"{info['real_time_factor']:.4g}"
        + (
            f"; two processes / one thread {info['speedup_two_processes']:.3g}x"
            if "speedup_two_processes" in info
            else ""
        )
    )


def test_trigger_windows(benchmark, setup):
    numba.set_num_threads(1)
    cfg = load_config()
    samples, _ = emulate_windows(cfg, 2000, seed=SEED)
    rec, offsets = find_pulses_batch(samples, PulseParams.from_config(cfg))
    window = np.repeat(np.arange(len(samples)), np.diff(offsets))
    trigger_windows(rec, window, len(samples), cfg)  # compile
    benchmark.pedantic(lambda: trigger_windows(rec, window, len(samples), cfg), rounds=ROUNDS, iterations=1)
    benchmark.extra_info["windows_per_s"] = len(samples) / benchmark.stats.stats.min
    benchmark.extra_info["pulses_per_s"] = len(rec) / benchmark.stats.stats.min
