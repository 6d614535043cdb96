"""Throughput of RunFileWriter next to a plain h5py chunked write of the same data, same run.

The baseline is what any HDF5 writer must do at least: the same samples and headers appended
in the same batches to resizable datasets with the same chunk shape and the same Blosc2-zstd
compression, closed at the end. The writer adds what makes the file a pokerdaq run file:
input validation, per-event CRC-32, pulses and truth, fletcher32 chunk checksums, SWMR,
flushes every ``flush_every_events`` and the rename at close. The ratio (baseline time /
writer time, 1.0 = no overhead) is stored in ``extra_info['ratio_vs_raw_h5py']``.

Times are CPU seconds of this process (``time.process_time``), see TIMER.
Run: ``make bench`` or ``pytest bench/bench_io.py --benchmark-only``.
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io import EVENT_DTYPE, RunFile, RunFileWriter
from pokerdaq.io import _layout as L

N_EVENTS = 2000  # 2000 x 130 channels x 64 samples x 2 B = 33 MB per round
BATCH = 100  # events per write call, as the event builder would hand them over
ROUNDS = 7
# CPU time of this process (user + system, all threads): on the shared 2-core machine wall time
# swings by 2x with the other jobs; CPU time of the same work varies by about 10 %.
TIMER = time.process_time


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def data(cfg):
    """Noise-like 14-bit samples around a 400-count pedestal with a pulse in a few channels."""
    rng = np.random.default_rng(20261121)
    n_ch, window = len(cfg.channel_map), cfg.digitizer.window_samples
    samples = (400 + rng.normal(0, 2.0, (N_EVENTS, n_ch, window))).astype(np.uint16)
    shape = np.exp(-np.arange(window - 20) / 6.0)
    hit = rng.random((N_EVENTS, n_ch)) < 0.1
    amp = rng.exponential(800, (N_EVENTS, n_ch)) * hit
    samples[:, :, 20:] += np.minimum(amp[:, :, None] * shape, 15000).astype(np.uint16)
    headers = np.zeros(N_EVENTS, EVENT_DTYPE)
    headers["event_number"] = np.arange(N_EVENTS)
    headers["timestamp"] = np.cumsum(rng.exponential(2500, N_EVENTS)).astype(np.uint64)
    headers["n_pulses"] = hit.sum(axis=1)
    pulses = np.zeros(int(headers["n_pulses"].sum()), PULSE_DTYPE)
    pulses["channel"] = np.nonzero(hit)[1]
    pulses["peak"] = 400 + amp[hit].astype(np.uint16)
    truth = np.zeros(N_EVENTS, [("energy_gev", "f8"), ("species", "S8")])
    return headers, samples, pulses, truth


def _raw_h5py_write(path: Path, headers, samples, pulses, truth, chunk_events: int) -> None:
    """The same data, batches, chunk shape and compression with plain h5py: no checks, no extras."""
    offsets = np.concatenate([[0], np.cumsum(headers["n_pulses"].astype(np.int64))])
    filt = L.compression_filter("zstd")
    with h5py.File(path, "w") as h5:
        shape = samples.shape[1:]
        ds = h5.create_dataset(
            "samples",
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=np.uint16,
            chunks=(chunk_events, *shape),
            **filt,
        )
        ev = h5.create_dataset(
            "events", shape=(0,), maxshape=(None,), dtype=EVENT_DTYPE, chunks=(L.EVENT_CHUNK_ROWS,), **filt
        )
        pu = h5.create_dataset(
            "pulses", shape=(0,), maxshape=(None,), dtype=pulses.dtype, chunks=(L.PULSE_CHUNK_ROWS,), **filt
        )
        tr = h5.create_dataset(
            "truth", shape=(0,), maxshape=(None,), dtype=truth.dtype, chunks=(L.TRUTH_CHUNK_ROWS,), **filt
        )
        for i in range(0, len(headers), BATCH):
            j = min(i + BATCH, len(headers))
            ds.resize((j, *shape))
            ds[i:j] = samples[i:j]
            pu.resize((offsets[j],))
            pu[offsets[i] :] = pulses[offsets[i] : offsets[j]]
            tr.resize((j,))
            tr[i:j] = truth[i:j]
            ev.resize((j,))
            ev[i:j] = headers[i:j]


def _writer_write(path: Path, cfg, headers, samples, pulses, truth, compression="zstd") -> None:
    offsets = np.concatenate([[0], np.cumsum(headers["n_pulses"].astype(np.int64))])
    with RunFileWriter(path, cfg, flush_every_events=1000, compression=compression, overwrite=True) as w:
        for i in range(0, len(headers), BATCH):
            j = min(i + BATCH, len(headers))
            w.write_events(headers[i:j], samples[i:j], pulses[offsets[i] : offsets[j]], truth[i:j])


def _chunk_events(cfg) -> int:
    return max(1, L.SAMPLE_CHUNK_BYTES // (len(cfg.channel_map) * cfg.digitizer.window_samples * 2))


def _interleaved_best(cfg, data, folder: Path, rounds: int) -> tuple[float, float]:
    """Best CPU time of the raw h5py write and of the writer, run alternately so that both see
    the same machine load."""
    raw, writer = np.inf, np.inf
    for _ in range(rounds):
        t0 = TIMER()
        _raw_h5py_write(folder / "raw.h5", *data, _chunk_events(cfg))
        t1 = TIMER()
        _writer_write(folder / "run.h5", cfg, *data)
        t2 = TIMER()
        raw, writer = min(raw, t1 - t0), min(writer, t2 - t1)
    return raw, writer


@pytest.mark.benchmark(timer=TIMER)
def test_raw_h5py_chunked_write(benchmark, cfg, data, tmp_path):
    headers, samples, _, _ = data
    path = tmp_path / "raw.h5"
    benchmark.pedantic(_raw_h5py_write, args=(path, *data, _chunk_events(cfg)), rounds=ROUNDS)
    benchmark.extra_info["MB"] = samples.nbytes / 1e6
    benchmark.extra_info["compression_ratio"] = samples.nbytes / path.stat().st_size
    assert h5py.File(path, "r")["samples"].shape == samples.shape


@pytest.mark.benchmark(timer=TIMER)
def test_run_file_writer(benchmark, cfg, data, tmp_path):
    headers, samples, pulses, truth = data
    path = tmp_path / "run.h5"
    benchmark.pedantic(_writer_write, args=(path, cfg, headers, samples, pulses, truth), rounds=ROUNDS)
    raw_s, writer_s = _interleaved_best(cfg, data, tmp_path, ROUNDS)
    writer_s = min(writer_s, benchmark.stats.stats.min)
    benchmark.extra_info["MB"] = samples.nbytes / 1e6
    benchmark.extra_info["GB_per_s"] = samples.nbytes / writer_s / 1e9  # samples only, per CPU second
    benchmark.extra_info["raw_h5py_GB_per_s"] = samples.nbytes / raw_s / 1e9
    benchmark.extra_info["ratio_vs_raw_h5py"] = raw_s / writer_s
    benchmark.extra_info["compression_ratio"] = samples.nbytes / path.stat().st_size
    with RunFile(path) as f:
        assert len(f) == N_EVENTS and f.closed_cleanly


@pytest.mark.benchmark(timer=TIMER)
def test_run_file_reader(benchmark, cfg, data, tmp_path):
    headers, samples, pulses, truth = data
    path = tmp_path / "run.h5"
    _writer_write(path, cfg, headers, samples, pulses, truth)

    def read_all() -> int:
        with RunFile(path) as f:
            return sum(len(b.samples) for b in (f.read(i, i + 500) for i in range(0, len(f), 500)))

    assert benchmark.pedantic(read_all, rounds=ROUNDS) == N_EVENTS
    benchmark.extra_info["GB_per_s"] = samples.nbytes / benchmark.stats.stats.min / 1e9
