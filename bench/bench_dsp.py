"""Pulse-finder throughput (pytest-benchmark), as ratios to baselines measured in the same run.

Workload: POKER-like windows, 130 channels x 64 samples x 2000 events (16.6 M uint16 samples,
33 MB: beyond the caches), mostly noise: a 100 GeV-like shower in the 9x9 ECAL (a hot cell,
its neighbours, a tail), pulses in the beam counters and the VETO, a few in SRD and HCAL;
registers from the embedded poker.toml.

Baselines, same array, same process:
- ``numpy copy``: ``np.copyto`` of the array (read + write, the memory roofline of one pass);
- ``numba pass``: a single-threaded numba threshold-count scan (read only, vectorised).

Ratios recorded in ``benchmark.extra_info`` and printed: find_pulses samples/s on one thread
over each baseline (goal >= 0.5 of the numba pass), the speed-up on two threads (goal >=
1.7), and the kernel over the naive pure-Python reference.

The machine may be shared and noisy, so besides pytest-benchmark's wall-clock rounds the
ratios are also taken from alternating measurements (kernel, baseline, kernel, ...; best of
each): in CPU time for the one-thread ratios (``cpu_ratio_to_*``), in wall-clock time for the
two-thread speed-up (CPU time would sum the threads), with the load average recorded beside.
Run: ``make bench`` or ``pytest bench/bench_dsp.py --benchmark-only -o python_files=bench_*.py -s``.
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, PulseStream, find_pulses_batch
from pokerdaq.dsp._reference import find_pulses_reference

N_EVENTS = 2000
N_SAMPLES = 64
ROUNDS = 7
REFERENCE_EVENTS = 10

_RATES: dict[str, float] = {}  # samples per second, best round, filled as the tests run


def _shape(t_ns: np.ndarray, rise: float = 4.0, decay: float = 15.0) -> np.ndarray:
    t = np.clip(t_ns, 0.0, None)
    f = np.exp(-t / decay) - np.exp(-t / rise)
    return np.where(t_ns > 0, f / 0.5, 0.0)  # peak about 0.56 of the amplitude scale


def _workload(seed: int = 2026, kind: str = "shower") -> tuple[np.ndarray, PulseParams]:
    """``shower``: every event a shower (about a quarter of the windows with a pulse);
    ``quiet``: noise with a pulse in about 2 % of the windows (pile-up and dark counts)."""
    cfg = load_config()
    cmap = cfg.channel_map
    rng = np.random.default_rng(seed)
    amp = np.zeros((N_EVENTS, len(cmap)), dtype=np.float32)
    ecal = cmap.channels_of("ecal")
    rows, cols = cmap.table["row"][ecal].astype(int), cmap.table["col"][ecal].astype(int)
    r0 = rng.integers(3, 6, N_EVENTS)
    c0 = rng.integers(3, 6, N_EVENTS)
    dist = np.hypot(rows[None, :] - r0[:, None], cols[None, :] - c0[:, None])
    amp[:, ecal] = 8000.0 * np.exp(-2.3 * dist)  # ~10x down per cell
    amp[:, cmap.channels_of("beam_counters")] = rng.normal(600, 60, (N_EVENTS, 1))
    for sub, prob, scale in (
        ("srd", 0.3, 400.0),
        ("hcal", 0.1, 200.0),
        ("veto", 0.05, 300.0),
        ("preshower", 1.0, 100.0),
    ):
        chans = cmap.channels_of(sub)
        hit = rng.random((N_EVENTS, len(chans))) < prob
        amp[:, chans] = hit * rng.exponential(scale, (N_EVENTS, len(chans)))
    if kind == "quiet":
        amp = np.where(rng.random(amp.shape) < 0.02, rng.exponential(300.0, amp.shape), 0.0)
        amp = amp.astype(np.float32)
    t0 = rng.uniform(60.0, 68.0, N_EVENTS)  # 16 pretrigger samples at 4 ns
    shape = _shape(np.arange(N_SAMPLES)[None, :] * 4.0 - t0[:, None]).astype(np.float32)
    wave = 400.0 + amp[:, :, None] * shape[:, None, :]
    wave += rng.normal(0.0, 2.0, wave.shape).astype(np.float32)
    samples = np.clip(np.rint(wave), 0, 16383).astype(np.uint16)
    return samples, PulseParams.from_config(cfg)


@pytest.fixture(scope="module", params=["shower", "quiet"])
def workload(request):
    samples, params = _workload(kind=request.param)
    records, offsets = find_pulses_batch(samples, params)  # compile outside the timing
    busy = np.unique(
        records["channel"].astype(np.int64) + len(params.thr) * np.repeat(np.arange(N_EVENTS), np.diff(offsets))
    )
    print(
        f"\nworkload {request.param}: {samples.shape} uint16, {len(records)} pulses, "
        f"{len(busy) / (N_EVENTS * params.n_channels):.1%} of the windows with a pulse"
    )
    yield samples, params, request.param
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


@numba.njit(nogil=True, cache=True)
def _numba_single_pass(flat, thr):
    count = 0
    for i in range(flat.shape[0]):
        count += flat[i] > thr
    return count


def _alternating_best(fns: dict, clock=time.process_time, rounds: int = ROUNDS) -> dict:
    """Best time of each function, measured in turns (so that load changes hit all alike)."""
    best = dict.fromkeys(fns, np.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            t = clock()
            fn()
            best[name] = min(best[name], clock() - t)
    return best


def _best_rate(fn, n_samples: int, rounds: int = ROUNDS) -> float:
    best = np.inf
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_samples / best


def _rate(name: str, fn, n_samples: int) -> float:
    if name not in _RATES:
        _RATES[name] = _best_rate(fn, n_samples)
    return _RATES[name]


def _baselines(samples: np.ndarray) -> dict[str, float]:
    flat = samples.ravel()
    dst = np.empty_like(samples)
    _numba_single_pass(flat, 420)
    return {
        "numpy copy": _rate("numpy copy", lambda: np.copyto(dst, samples), samples.size),
        "numba pass": _rate("numba pass", lambda: _numba_single_pass(flat, 420), samples.size),
    }


def _run_benchmark(benchmark, name: str, fn, n_samples: int, rounds: int = ROUNDS) -> float:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    rate = n_samples / benchmark.stats.stats.min
    _RATES[name] = rate
    benchmark.extra_info["samples_per_s"] = rate
    return rate


def test_roofline_numpy_copy(benchmark, workload):
    samples, _, _ = workload
    dst = np.empty_like(samples)
    rate = _run_benchmark(benchmark, "numpy copy", lambda: np.copyto(dst, samples), samples.size)
    print(f"numpy copy: {rate / 1e9:.2f} G samples/s")


def test_roofline_numba_single_pass(benchmark, workload):
    samples, _, _ = workload
    flat = samples.ravel()
    _numba_single_pass(flat, 420)
    rate = _run_benchmark(benchmark, "numba pass", lambda: _numba_single_pass(flat, 420), samples.size)
    print(f"numba single pass: {rate / 1e9:.2f} G samples/s")


def test_reference(benchmark, workload):
    samples, params, kind = workload
    sub = samples[:REFERENCE_EVENTS]

    def run():
        for event in sub:
            find_pulses_reference(event, params)

    rate = _run_benchmark(benchmark, f"reference {kind}", run, sub.size, rounds=2)
    print(f"naive reference: {rate / 1e6:.3f} M samples/s")


@pytest.mark.parametrize("threads", [1, 2])
def test_find_pulses(benchmark, workload, threads):
    samples, params, kind = workload
    if threads > numba.config.NUMBA_NUM_THREADS:
        raise RuntimeError(f"numba has {numba.config.NUMBA_NUM_THREADS} threads, need {threads}")
    numba.set_num_threads(threads)
    rate = _run_benchmark(
        benchmark, f"find_pulses {kind} {threads}", lambda: find_pulses_batch(samples, params), samples.size
    )
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    base = _baselines(samples)
    info = benchmark.extra_info
    info["samples_per_s_per_core"] = rate / threads
    info["load_average_1min"] = os.getloadavg()[0]
    for name, value in base.items():
        info[f"ratio_to_{name.replace(' ', '_')}"] = rate / threads / value
    lines = [
        f"find_pulses_batch {kind}, {threads} thread(s): {rate / 1e9:.2f} G samples/s "
        f"({rate / threads / 1e9:.2f} per core; load average {os.getloadavg()[0]:.1f})"
    ]
    lines += [
        f"  per core / {name} ({value / 1e9:.2f} G/s): {rate / threads / value:.2f}" for name, value in base.items()
    ]
    kernel = lambda: find_pulses_batch(samples, params)  # noqa: E731
    if threads == 1:
        flat = samples.ravel()
        dst = np.empty_like(samples)
        numba.set_num_threads(1)
        best = _alternating_best(
            {
                "find_pulses": kernel,
                "numba pass": lambda: _numba_single_pass(flat, 420),
                "numpy copy": lambda: np.copyto(dst, samples),
            }
        )
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        info["cpu_samples_per_s"] = samples.size / best["find_pulses"]
        for name in ("numba pass", "numpy copy"):
            ratio = best[name] / best["find_pulses"]
            info[f"cpu_ratio_to_{name.replace(' ', '_')}"] = ratio
            lines.append(f"  alternating, CPU time: / {name}: {ratio:.3f}")
        ref = _RATES.get(f"reference {kind}")
        if ref:
            info["speedup_over_reference"] = rate / ref
            lines.append(f"  over the naive reference: {rate / ref:,.0f}x")
    else:

        def on(n):
            def run():
                numba.set_num_threads(n)
                kernel()

            return run

        best = _alternating_best({1: on(1), threads: on(threads)}, clock=time.perf_counter)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        one = _RATES.get(f"find_pulses {kind} 1")
        if one is not None:
            info["speedup_2_threads"] = rate / one
            lines.append(f"  speed-up on {threads} threads: {rate / one:.2f}x (goal 1.7)")
        info["speedup_2_threads_alternating"] = best[1] / best[threads]
        lines.append(f"  speed-up on {threads} threads, alternating wall clock: {best[1] / best[threads]:.2f}x")
    print("\n".join(lines))


def test_stream(benchmark):
    """PulseStream over 130 channels x 131072 samples in chunks of 8192, quiet stream."""
    rng = np.random.default_rng(9)
    n_ch, n, chunk = 130, 131072, 8192
    x = 400 + rng.integers(-3, 4, (n_ch, n))
    hits = rng.random((n_ch, n)) < 0.002  # a pulse every 2 us per channel
    kernel = np.rint(300.0 * _shape(np.arange(16) * 4.0 - 2.0)).astype(np.int64)
    for k, v in enumerate(kernel):
        x[:, k:] += np.where(hits[:, : n - k], v, 0)
    samples = np.clip(x, 0, 16383).astype(np.uint16)
    params = PulseParams.uniform(n_ch, thr=20, nsb=2, nsa=12, nsat=2, ped_mode=1, ped_cfg=400, max_pulses=0)

    def run():
        stream = PulseStream(params)
        found = 0
        for a in range(0, n, chunk):
            found += len(stream.process(samples[:, a : a + chunk]))
        return found + len(stream.finish())

    found = run()
    numba.set_num_threads(1)
    rate = _run_benchmark(benchmark, "stream", run, samples.size, rounds=5)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    base = {k: v for k, v in _RATES.items() if k in ("numpy copy", "numba pass")}
    if not base:
        base = _baselines(samples)
    benchmark.extra_info["pulses"] = found
    for name, value in base.items():
        benchmark.extra_info[f"ratio_to_{name.replace(' ', '_')}"] = rate / value
    flat = samples.ravel()
    _numba_single_pass(flat, 420)
    numba.set_num_threads(1)
    best = _alternating_best({"stream": run, "numba pass": lambda: _numba_single_pass(flat, 420)}, rounds=3)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    benchmark.extra_info["cpu_ratio_to_numba_pass"] = best["numba pass"] / best["stream"]
    print(
        f"PulseStream, 1 thread: {rate / 1e9:.2f} G samples/s, {found} pulses; "
        + ", ".join(f"/ {k} {rate / v:.2f}" for k, v in base.items())
        + f"; alternating, CPU time: / numba pass {best['numba pass'] / best['stream']:.3f}"
    )
