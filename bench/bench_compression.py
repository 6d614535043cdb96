"""Default compression (gzip-1 + shuffle, no plugin needed) against Blosc2 zstd-1 + bit-shuffle.

Same data (the noise-like 14-bit samples of bench_io.py: 400-count pedestal, 2-count noise,
a pulse in 10 % of the channels; 2000 events x 130 x 64), same RunFileWriter settings, the
two filters written and read alternately in the same run (best of ROUNDS, CPU seconds of this
process). Recorded in ``extra_info``: compression ratio of the file (uncompressed samples /
file size), write and read GB/s of each filter, and the gzip / zstd speed ratios.
The figures are quoted in docs/hdf5-layout.md "Compression".
Run: ``pytest bench/bench_compression.py --benchmark-only -o python_files=bench_*.py -s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench_io import TIMER, _writer_write, cfg, data  # noqa: F401  (fixtures)
from pokerdaq.io import RunFile

ROUNDS = 3
FILTERS = ("gzip", "zstd")


def _read_all(path) -> int:
    with RunFile(path) as f:
        return sum(len(f.read(i, i + 500).samples) for i in range(0, len(f), 500))


def _measure(cfg, data, folder) -> dict[str, dict[str, float]]:  # noqa: F811
    best = {name: {"write": np.inf, "read": np.inf} for name in FILTERS}
    sizes = {}
    for _ in range(ROUNDS):
        for name in FILTERS:
            path = folder / f"{name}.h5"
            t0 = TIMER()
            _writer_write(path, cfg, *data, compression=name)
            t1 = TIMER()
            _read_all(path)
            t2 = TIMER()
            best[name]["write"] = min(best[name]["write"], t1 - t0)
            best[name]["read"] = min(best[name]["read"], t2 - t1)
            sizes[name] = path.stat().st_size
    nbytes = data[1].nbytes
    return {
        name: {
            "ratio": nbytes / sizes[name],
            "write_GB_s": nbytes / best[name]["write"] / 1e9,
            "read_GB_s": nbytes / best[name]["read"] / 1e9,
        }
        for name in FILTERS
    }


@pytest.mark.benchmark(timer=TIMER)
def test_default_gzip_against_blosc2_zstd(benchmark, cfg, data, tmp_path):  # noqa: F811
    benchmark.pedantic(_writer_write, args=(tmp_path / "b.h5", cfg, *data), kwargs={"compression": "gzip"}, rounds=1)
    figures = _measure(cfg, data, tmp_path)
    for name, row in figures.items():
        for key, value in row.items():
            benchmark.extra_info[f"{name}_{key}"] = round(value, 3)
    benchmark.extra_info["write_speed_gzip_over_zstd"] = figures["gzip"]["write_GB_s"] / figures["zstd"]["write_GB_s"]
    benchmark.extra_info["read_speed_gzip_over_zstd"] = figures["gzip"]["read_GB_s"] / figures["zstd"]["read_GB_s"]
    benchmark.extra_info["size_gzip_over_zstd"] = figures["zstd"]["ratio"] / figures["gzip"]["ratio"]
    print("\n" + "\n".join(f"{n}: {r}" for n, r in figures.items()))
    assert all(r["ratio"] > 1 for r in figures.values())
