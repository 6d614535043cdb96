"""Where the CPU of a ``pokerdaq run`` goes: core-seconds per second of beam, by process kind and stage.

Each DAQ process reports its CPU seconds since the ``start`` command (``cpu_run_s``: data
taking only, imports and numba loading excluded; every thread of the process, ZeroMQ's I/O
threads included) and, where cheap, the CPU seconds of its main thread by stage
(``stage_cpu_s``). Divided by the beam time the run covered (the trigger's decided ticks),
that is the figure of issue 14: core-seconds of CPU per second of beam (1 would be real time
on one core). CPU time, not wall time, so the load of a shared machine matters little.

Used by ``bench/bench_daq.py::test_chain_cpu_per_beam_second`` (``make bench``) and as a script::

    python bench/daq_cpu.py [--events N] [--set KEY=VALUE ...] [--output DIR] [--compare REF.h5]

which prints the table (and, with ``--compare``, checks the run file against a reference with
:mod:`compare_runs`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pokerdaq.config import Config, load_config
from pokerdaq.daq._runcontrol import DaqRun


def _kind(name: str) -> str:
    return "boards" if name.startswith("fe") else name


def measure(cfg: Config, n_events: int, output: str | Path) -> dict[str, Any]:
    """One run of ``n_events`` events into ``output``; its CPU per beam second by process kind and stage."""
    with DaqRun(cfg, output, max_events=n_events) as run:
        run.configure()
        run.start()
        t0 = time.monotonic()
        state = run.wait(1800)
        wall = time.monotonic() - t0
        if state != "stopped":
            raise RuntimeError(f"run ended in state {state!r}: {run.errors}")
        s = run.summary()
        stats = {n: dict(st) for n, st in run.stats.items()}
        out_file = str(run.output)
    beam = s["beam_time_s"]
    by_kind: dict[str, float] = {}
    stages: dict[str, float] = {}
    for name, st in stats.items():
        kind = _kind(name)
        by_kind[kind] = by_kind.get(kind, 0.0) + st.get("cpu_run_s", 0.0) / beam
        for stage, v in (st.get("stage_cpu_s") or {}).items():
            key = f"{kind}.{stage}"
            stages[key] = stages.get(key, 0.0) + v / beam
    total = sum(by_kind.values())
    return {
        "events": n_events,
        "events_written": s["events_written"],
        "events_incomplete": s["events_incomplete"],
        "front_end_processes": sum(1 for n in stats if n.startswith("fe")),
        "beam_time_s": beam,
        "wall_s": wall,
        "beam_per_wall": beam / wall,
        "events_per_s": s["events_written"] / wall,
        "mb_per_s": s["bytes_written"] / wall / 1e6,
        "core_s_per_beam_s": total,
        "core_s_per_beam_s_by_process": by_kind,
        "core_s_per_beam_s_by_stage": dict(sorted(stages.items())),
        "file": out_file,
    }


def format_table(m: dict[str, Any]) -> str:
    lines = [f"{'process / stage':<34} core-s per beam-s"]
    for kind, v in m["core_s_per_beam_s_by_process"].items():
        lines.append(f"{kind:<34} {v:8.2f}")
        for key, sv in m["core_s_per_beam_s_by_stage"].items():
            if key.startswith(kind + "."):
                lines.append(f"  - {key[len(kind) + 1 :]:<30} {sv:8.2f}")
    lines.append(f"{'total':<34} {m['core_s_per_beam_s']:8.2f}")
    lines.append(
        f"beam {m['beam_time_s'] * 1e3:.1f} ms in {m['wall_s']:.1f} s wall (beam/wall {m['beam_per_wall']:.4f}), "
        f"{m['events_per_s']:.0f} events/s, {m['mb_per_s']:.2f} MB/s, "
        f"{m['front_end_processes']} front-end processes"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="configuration override, e.g. daq.boards_per_process=12",
    )
    ap.add_argument("--output", default=None, help="run file or folder (default: a temporary folder)")
    ap.add_argument("--compare", default=None, help="reference run file to compare the new file with")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)
    cfg = load_config()
    for item in args.set:
        key, _, value = item.partition("=")
        table, _, field = key.rpartition(".")
        cfg = cfg.replace(**_nested(table, field, json.loads(value)))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        m = measure(cfg, args.events, args.output or tmp)
        print(format_table(m))
        if args.json:
            Path(args.json).write_text(json.dumps(m, indent=1) + "\n")
        if args.compare:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from compare_runs import compare

            diffs = compare(args.compare, m["file"])
            for d in diffs:
                print(d)
            print(
                "file identical to the reference (datasets and attributes, wall-clock timestamps excluded)"
                if not diffs
                else f"file DIFFERS from the reference: {len(diffs)} differences"
            )
            return 1 if diffs else 0
    return 0


def _nested(table: str, field: str, value: Any) -> dict[str, Any]:
    """``Config.replace`` keywords for ``table.field = value`` (``daq.synthetic.x`` nests)."""
    parts = table.split(".")
    inner: dict[str, Any] = {field: value}
    for p in reversed(parts[1:]):
        inner = {p: inner}
    return {parts[0]: inner}


if __name__ == "__main__":
    sys.exit(main())
