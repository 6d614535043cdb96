"""Summary of every figure the benchmarks compute, printed after pytest-benchmark's timing table
and written as JSON (``bench/results/summary.json``, not versioned).

pytest-benchmark prints seconds per call; what the benchmarks are for (ratios to their
baselines in the same run, throughputs, fractions of the beam rate) lives in each benchmark's
``extra_info``. The table lists those: ratios first, then every other figure, one row each.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

SUMMARY_JSON = Path(__file__).resolve().parent / "results" / "summary.json"
# a figure against a baseline measured in the same run (not, e.g., a compression ratio)
_RATIO_WORDS = ("ratio_vs", "ratio_to", "_over_", "real_time_factor", "fraction_of")


def _is_ratio(key: str) -> bool:
    return any(word in key for word in _RATIO_WORDS)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value) or value == 0:
        return str(value)
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e6 else f"{value:.3e}"


def summary_rows(benchmarks) -> list[dict[str, Any]]:
    """One row per ``extra_info`` figure of each benchmark: ratios first, then the others."""
    rows = []
    for b in benchmarks:
        stats = getattr(b, "stats", None)
        min_s = getattr(stats, "min", None) if stats else None
        for key, value in (getattr(b, "extra_info", None) or {}).items():
            rows.append({"benchmark": b.name, "figure": key, "value": value, "ratio": _is_ratio(key), "min_s": min_s})
    rows.sort(key=lambda r: not r["ratio"])  # stable: within each kind, in the order benchmarks ran
    return rows


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    benchmarks = [b for b in getattr(session, "benchmarks", []) if b]
    if not benchmarks:
        return
    rows = summary_rows(benchmarks)
    tr = terminalreporter
    tr.write_sep("-", "benchmark figures (extra_info): ratios to the baselines first")
    if rows:
        w_bench = max(len(r["benchmark"]) for r in rows)
        w_key = max(len(r["figure"]) for r in rows)
        tr.write_line(f"{'benchmark':<{w_bench}}  {'figure':<{w_key}}  value")
        for k, r in enumerate(rows):
            if k == 0 or r["ratio"] != rows[k - 1]["ratio"]:
                tr.write_line("-- ratios to a baseline of the same run" if r["ratio"] else "-- other figures")
            tr.write_line(f"{r['benchmark']:<{w_bench}}  {r['figure']:<{w_key}}  {_fmt(r['value'])}")
    else:
        tr.write_line("(no benchmark recorded a figure in extra_info)")
    SUMMARY_JSON.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmarks": [
            {
                "name": b.name,
                "fullname": b.fullname,
                "min_s": b.stats.min,
                "median_s": b.stats.median,
                "rounds": b.stats.rounds,
                "extra_info": dict(b.extra_info),
            }
            for b in benchmarks
        ],
        "figures": rows,
    }
    SUMMARY_JSON.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tr.write_line(f"written {SUMMARY_JSON}")
