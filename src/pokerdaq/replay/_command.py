"""``pokerdaq replay``: new pulse-finder / trigger settings on stored raw samples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .._usage import UsageError, check_config_fits, check_new_output, check_positive, open_run_file
from ..config import overlay_from_args
from ..trigger import TriggerBits
from ._replay import ReplaySummary, replay_files
from ._state import check_stored_state


def run(args: argparse.Namespace) -> int:
    console = Console()
    from ..io import is_stream_file

    if args.files and is_stream_file(args.files[0]):  # trigger-less recording (pokerdaq run --streaming)
        from ._stream import run_stream_command

        return run_stream_command(args, console)
    overlay = overlay_from_args(args)  # on top of each file's own configuration
    config = overlay or None
    check_positive("--jobs", args.jobs)
    if args.output:
        check_new_output(args.output, args.overwrite)
    first_files: dict[int, tuple[int, str]] = {}  # run number -> the lowest file index given, its path
    for p in args.files:  # every routine mistake before any work: inputs, and the config fits them
        with open_run_file(p, "FILE") as f:
            if config is not None:
                check_config_fits(f.config.overlaid(config), f)
            key = int(f.attrs.get("run_number", 0))
            index = int(f.attrs.get("file_index", 0))
            if key not in first_files or index < first_files[key][0]:
                first_files[key] = (index, p)
    for index, p in first_files.values():  # a later file first: its stored trigger state starts the replay
        if index:
            with open_run_file(p, "FILE") as f:
                try:
                    check_stored_state(f)
                except ValueError as err:
                    raise UsageError(str(err)) from None
    # absolute paths: a Dask worker (or a process pool) need not share this process's folder
    files = [str(Path(p).resolve()) for p in args.files]
    results = replay_files(files, config, jobs=args.jobs, dask_scheduler=args.dask_scheduler)
    summary = ReplaySummary(results)
    given = ([f"--config {args.config}"] if args.config else []) + [f"--set {s}" for s in args.set]
    report = summary.as_dict(config_source="each file's own configuration with " + " ".join(given) if given else None)

    table = Table(title=f"Replay of {len(results)} file(s), {report['n_events']} stored events")
    for col in ("trigger type", "raw (file config)", "accepted (file config)", "raw (new)", "accepted (new)"):
        table.add_column(col, justify="right" if col != "trigger type" else "left")
    for name in TriggerBits.NAMES:
        row = report["per_trigger_type"][name]
        table.add_row(
            name, str(row["old_raw"]), str(row["old_accepted"]), str(row["new_raw"]), str(row["new_accepted"])
        )
    console.print(table)

    rep = Table(title="Reproduction with each file's own configuration")
    for col in (
        "file",
        "producer",
        "events",
        "stored words",
        "word mismatches",
        "pulses stored",
        "pulses found",
        "pulse-mismatched events",
    ):
        rep.add_column(col)
    for f in report["reproduction"]["files"]:
        rep.add_row(
            Path(f["file"]).name,
            f["producer"],
            str(f["n_events"]),
            "yes" if f["stored_trigger_words"] else "none (minimum bias)",
            str(f["trigger_word_mismatches"]),
            str(f["stored_pulses"]) if f["stored_pulses_present"] else "none stored",
            str(f["replayed_pulses"]),
            str(f["pulse_mismatched_events"]),
        )
    console.print(rep)
    if "efficiency_by_truth_class" in report:
        eff = Table(title="Raw-type efficiency by truth class (new configuration)")
        eff.add_column("class")
        eff.add_column("events", justify="right")
        for name in TriggerBits.NAMES:
            eff.add_column(name, justify="right")
        for cls, row in report["efficiency_by_truth_class"].items():
            cells = []
            for name in TriggerBits.NAMES:
                e = row["new"][name]["raw_efficiency"]
                cells.append("-" if e is None else f"{e:.3f}")
            eff.add_row(cls, str(row["n_events"]), *cells)
        console.print(eff)
    for run in report["runs"]:
        # DAQ runs: decided again in stream mode over the recorded trigger inputs; prescaling and
        # dead time are counts over the run's raw decisions (docs/replay-inspect.md)
        per = run["trigger_input_bytes_per_event"]
        t = Table(
            title=f"Run {run['run_number']}, decided in stream mode over {len(run['files'])} file(s): "
            f"{run['decision_steps']} decisions, {run['primitives']} primitives"
            + (f" ({per:.0f} bytes per event)" if per is not None else "")
        )
        for col in ("trigger type", "raw", "prescaled", "accepted", "lost dead time", "lost busy"):
            t.add_column(col, justify="right" if col != "trigger type" else "left")
        for name in TriggerBits.NAMES:
            cells = [
                f"{run['old'][k][name]} / {run['new'][k][name]}"
                for k in ("raw", "prescaled", "accepted", "lost_dead", "lost_busy")
            ]
            t.add_row(name, *cells)
        console.print(t)
        console.print("(file configuration / new configuration)")
        if run["problem"]:
            console.print(f"[yellow]run {run['run_number']}: {run['problem']}[/yellow]")
    console.print(f"events whose trigger word changed: {report['n_changed']}")
    if not report["reproduction"]["reproduced"]:
        console.print(
            "[yellow]warning: the files' own configuration does not reproduce every "
            "stored pulse / trigger word (see the report)[/yellow]"
        )

    if args.plots:
        from ._plots import plot_turn_on

        with open_run_file(args.files[0], "FILE") as f:
            file_config = f.config
        paths = plot_turn_on(
            summary,
            args.plots,
            file_config=file_config,
            new_config=None if config is None else file_config.overlaid(config),
        )
        if not paths:
            missing = [Path(f.path).name for f in summary.files if f.truth is None or not len(f.truth)]
            console.print(
                f"--plots {args.plots}: no turn-on curves drawn: they need the emulator truth "
                f"(energies deposited), and {', '.join(missing)} has none (only emulated runs, "
                f'daq.front_end "physics" or "physics-stream", store truth)'
            )
        for path in paths:
            console.print(f"wrote {path}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1))
        console.print(f"wrote {args.output}")
    if args.check and not report["reproduction"]["reproduced"]:
        return 3
    return 0
