"""``pokerdaq run``: take a run with every DAQ process, show progress, print a summary."""

from __future__ import annotations

import argparse
import re
import signal
import time
from pathlib import Path
from typing import Any

from pokerdaq.config import Config, config_from_args

from .._usage import UsageError, check_new_output, check_positive, parse_http_address
from ._runcontrol import DaqRun, output_path

_RUN_FILE = re.compile(r"run_(\d{6})(?:_\d{4})?\.h5(?:\.part)?")


class _StopRequest:
    """SIGINT / SIGTERM set a flag; run control then drains and closes the file properly."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.count = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        self.count += 1

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    cfg = config_from_args(args)
    if getattr(args, "streaming", False):  # --streaming: daq.mode = "streaming" (docs/daq.md "Streaming")
        cfg = cfg.replace(daq={"mode": "streaming"})
    check_positive("--events", args.events)
    if args.duration is not None and not args.duration > 0:
        raise UsageError(f"--duration {args.duration}: expected a positive number of seconds")
    http = getattr(args, "http", None)
    linger = getattr(args, "http_linger", 0.0)
    if not linger >= 0:
        raise UsageError(f"--http-linger {linger}: expected a number of seconds >= 0")
    if linger and http is None:
        raise UsageError(f"--http-linger {linger}: needs --http HOST:PORT")
    console = Console(stderr=False)
    # every routine output mistake is caught here, before the processes start (seconds of start-up)
    cfg, note = choose_output(cfg, args.output, args.overwrite)
    if note:
        console.print(note)
    page = None if http is None else _start_page(http)
    try:
        code = _take_run(args, cfg, console, page)
        if page is not None and linger:
            print(f"status page {page.url}: the final numbers, for {linger:g} s more (Ctrl-C ends)", flush=True)
            with _StopRequest() as stop:
                deadline = time.monotonic() + linger
                while stop.signal is None and time.monotonic() < deadline:
                    time.sleep(0.1)
    finally:
        if page is not None:
            page.close()
    return code


def _start_page(http: str):
    """The status page, listening before any DAQ process starts (a bad address costs nothing)."""
    from ._statuspage import serve_status_page

    host, port = parse_http_address(http)
    try:
        return serve_status_page(None, host, port)
    except OSError as err:
        raise UsageError(f"--http {http}: cannot listen on {host}:{port}: {err.strerror or err}") from None


def _take_run(args: argparse.Namespace, cfg: Config, console, page) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with (
        _StopRequest() as stop,
        DaqRun(
            cfg, args.output, seed=args.seed, max_events=args.events, duration_s=args.duration, overwrite=args.overwrite
        ) as daq,
    ):
        daq.configure()
        if page is not None:
            page.subscribe(daq.endpoints["monitor"])
        if stop.signal is None:
            daq.start()
            console.print(
                f"run {daq.run_number}: {len(daq.procs)} processes, output {daq.output}, "
                f"monitor {daq.endpoints['monitor']}"
            )
            if page is not None:
                print(f"status page {page.url} (JSON: {page.url}api/status)", flush=True)
            columns = [
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:>8.0f} events"),
                TextColumn("{task.fields[rate]:>7.0f} ev/s"),
                TextColumn("live {task.fields[live]}"),
                TimeElapsedColumn(),
            ]
            with Progress(*columns, console=console, transient=False) as progress:
                task = progress.add_task(daq.state, total=args.events, rate=0.0, live="n/a")
                while daq.state not in ("stopped", "error"):
                    if stop.count >= 2:  # a second Ctrl-C: abort without waiting for the drain
                        console.print("second signal: aborting the run (the file is closed as it is)")
                        daq.errors.append("aborted by a second signal during the drain")
                        daq.state = "error"
                        break
                    if stop.signal is not None and daq.state == "running":
                        console.print(f"{signal.Signals(stop.signal).name}: stopping (draining the pipeline)")
                        daq.stop()
                    daq.poll(0.1)
                    snap = daq.snapshot()
                    live = snap["live_fraction"]
                    progress.update(
                        task,
                        description=daq.state,
                        completed=snap["events_written"],
                        rate=snap["event_rate_hz"],
                        live="n/a" if live is None else f"{100 * live:5.1f}%",
                    )
        summary = daq.summary()
        if page is not None:  # the page shows the final snapshot (published at stop) before the summary
            page.wait_for(
                lambda s: s.get("state") in ("stopped", "error") and s.get("run_number") == daq.run_number,
                max(2.0, 3 * cfg.daq.monitor_interval_s),
            )
    print_summary(summary, console)
    return 0 if summary["state"] == "stopped" else 1


def choose_output(cfg: Config, output: str, overwrite: bool) -> tuple[Config, str]:
    """The configuration to run with (run number) for ``--output``, and a note for the user.

    A ``.h5`` file that exists is refused without ``overwrite``. In a folder that already
    holds the configured run's file, the run takes the next free run number (one above the
    highest ``run_NNNNNN*.h5`` there) instead, unless ``overwrite``.
    """
    target = output_path(output, cfg.run.run_number)
    if Path(output).suffix in (".h5", ".hdf5"):
        check_new_output(target, overwrite, need_folder=False)  # the writer makes missing folders
        return cfg, ""
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder}: exists and is not a folder (give a folder or a .h5 file)")
    if overwrite or not _taken(target):
        return cfg, ""
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _RUN_FILE.fullmatch(p.name))]
    nxt = max(numbers) + 1
    if nxt >= 2**32:
        raise UsageError(f"--output {folder}: run {max(numbers)} is the last run number")
    return (
        cfg.replace(run={"run_number": nxt}),
        f"{target.name} exists in {folder}: taking the next free run number, {nxt} (--overwrite replaces it)",
    )


def _taken(target: Path) -> bool:
    return target.exists() or target.with_name(target.name + ".part").exists()


def print_summary(s: dict[str, Any], console=None) -> None:
    """The end-of-run table: events, rejections by reason, rates per trigger type, live time, files."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"run {s['run_number']}: {s['state']}", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("events issued by the trigger", str(s["events_issued"]))
    t.add_row("events built", str(s["events_built"]))
    t.add_row("  of which INCOMPLETE", str(s["events_incomplete"]))
    t.add_row("  of which MISMATCH", str(s["events_mismatch"]))
    t.add_row("events written (in the files)", str(s["events_written"]))
    if s.get("events_written_reported", s["events_written"]) != s["events_written"]:
        t.add_row("  writer's last report", str(s["events_written_reported"]))
    if s.get("events_rejected"):
        t.add_row("events refused by the writer", str(sum(s["events_rejected"].values())))
        for reason, n in sorted(s["events_rejected"].items()):
            t.add_row(f"  {reason}", str(n))
    rejected = s["fragments_rejected"]
    t.add_row("fragments rejected", str(sum(rejected.values())))
    for reason, n in sorted(rejected.items()):
        t.add_row(f"  {reason}", str(n))
    if s["fragment_peer_disconnects"]:
        t.add_row("fragment-socket disconnects (e.g. oversized message)", str(s["fragment_peer_disconnects"]))
    for name, ty in s["trigger_types"].items():
        t.add_row(
            f"trigger {name} (bit {ty['bit']})",
            f"{ty['accepted']} accepted, {ty['rate_beam_hz']:.0f} Hz beam time, {ty['rate_wall_hz']:.0f} Hz wall; "
            f"lost: {ty['lost_dead_time']} dead time, {ty['lost_busy']} busy",
        )
    live = s["live_fraction"]
    t.add_row(
        "live time (trigger neither dead nor busy)",
        "n/a" if live is None else f"{100 * live:.2f} % of {s['beam_time_s'] * 1e3:.2f} ms beam time",
    )
    if s.get("slices_decided"):
        t.add_row(
            "time slices (trigger decisions)",
            f"{s['slices_decided']} ({s['trigger_decisions']}; {s['stretch_slices']} slices fast-forwarded)",
        )
    if s.get("spills"):
        t.add_row(
            "spills (/scalers rows)",
            f"{s['spills']}, {s['beam_counts']} beam coincidences, {s['triggers_raw']} raw triggers",
        )
    if s.get("truth_rows"):
        t.add_row("emulator truth", f"{s['truth_rows']} rows, {s['truth_matched']} with a beam particle in the window")
    st = s.get("stream")
    if st:
        beam = s["beam_time_s"]
        t.add_row(
            "streaming: L0 hits written",
            f"{st['hits_written']} ({st['hit_samples_written']} samples, {st['blocks_written']} blocks)",
        )
        if beam:
            t.add_row(
                "  hit rate / bytes per beam-second",
                f"{st['hits_written'] / beam:.4g} Hz / {s['bytes_written'] / beam / 1e6:.3g} MB/s",
            )
        t.add_row("  online decisions recorded", str(st["decisions_written"]))
        if st["missing_board_blocks"] or st["late_hits"] or st["boards_without_end"]:
            t.add_row(
                "  blocks without a board / late hits / boards without END",
                f"{st['missing_board_blocks']} / {st['late_hits']} / {st['boards_without_end']}",
            )
    else:
        t.add_row("builder events in flight (max / limit)", f"{s['max_in_flight']} / {s['in_flight_limit']}")
    if s["dead_boards"]:
        t.add_row("boards marked dead", ", ".join(f"{b} ({why})" for b, why in s["dead_boards"].items()))
    on_disk = sum(Path(f).stat().st_size for f in s["files"] if Path(f).is_file())
    t.add_row("written: records / on disk (compressed)", f"{s['bytes_written'] / 1e6:.1f} MB / {on_disk / 1e6:.1f} MB")
    t.add_row(
        "write rate", f"{s['mb_per_s']:.1f} MB/s of records, {s['event_rate_hz']:.0f} events/s over {s['wall_s']:.1f} s"
    )
    for f in s["files"]:
        t.add_row("output file", f)
    for e in s["errors"]:
        t.add_row("[red]error", e)
    console.print(t)
