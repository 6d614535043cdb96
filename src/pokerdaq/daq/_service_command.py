"""``pokerdaq daq serve|start|stop|wait|status|reset|shutdown|runs`` (docs/daq.md "Run-control service")."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from .._usage import UsageError, check_endpoint, check_positive


def run(args: argparse.Namespace) -> int:
    action = args.daq_command
    if action == "serve":
        return _serve(args)
    if action == "runs":
        return _runs(args)
    return _client(args)


def _serve(args: argparse.Namespace) -> int:
    from pokerdaq.config import config_from_args

    from ._service import DaqService, ServiceError

    cfg = config_from_args(args)
    if args.control:
        check_endpoint(args.control, "--control")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out}: exists and is not a folder")
    from ._command import _start_page

    page = None if getattr(args, "http", None) is None else _start_page(args.http)  # a bad address: before any process
    flag: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, frame: object) -> None:
        flag["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            service = DaqService(cfg, out, args.control)
        except ServiceError as err:
            raise UsageError(str(err)) from None
        print(
            f"pokerdaq daq serve: control {service.control}, monitor {service.pool.monitor}, output {out}, "
            f"{len(service.pool.hosts)} nodes starting",
            flush=True,
        )
        if page is not None:
            page.subscribe(service.pool.monitor)  # one PUB for the service and all its runs
            print(f"pokerdaq daq serve: status page {page.url} (JSON: {page.url}api/status)", flush=True)
        if service.lost:
            print(
                f"pokerdaq daq serve: runs {service.lost} were left running by an earlier service: marked lost",
                flush=True,
            )
        told = None
        try:
            while service.sm.state != "shutdown":
                if flag["signal"] is not None:
                    print(f"pokerdaq daq serve: {signal.Signals(flag['signal']).name}: shutting down", flush=True)
                    service._shutdown()
                    break
                service.step(0.02)
                for line in service.log:
                    print(f"pokerdaq daq serve: {line}", flush=True)
                service.log.clear()
                if service.sm.state != told and service.sm.state in ("configured", "error"):
                    told = service.sm.state
                    cause = f": {service.sm.cause}" if service.sm.state == "error" else ""
                    print(f"pokerdaq daq serve: {told}{cause}", flush=True)
                elif service.sm.state not in ("configured", "error"):
                    told = None
        finally:
            service.close()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if page is not None:
            page.close()
    print("pokerdaq daq serve: shut down", flush=True)
    return 0


def _client(args: argparse.Namespace) -> int:
    from ._client import ClientError, find_control, find_keys, request

    fields: dict[str, Any] = {}
    if args.daq_command == "start":
        check_positive("--events", args.events)
        if args.duration is not None and not args.duration > 0:
            raise UsageError(f"--duration {args.duration}: expected a positive number of seconds")
        fields = {
            k: v
            for k, v in (("events", args.events), ("duration", args.duration), ("seed", args.seed))
            if v is not None
        }
    if args.timeout is None:
        args.timeout = 10.0 if args.daq_command == "status" else 600.0
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout}: expected a positive number of seconds")
    if args.control:
        check_endpoint(args.control, "--control")
    try:
        endpoint = find_control(args.output, args.control)
        reply = request(endpoint, args.daq_command, args.timeout, find_keys(args.output, args.keys), **fields)
    except ClientError as err:
        raise UsageError(str(err)) from None
    action = args.daq_command
    if action == "status" and args.json:
        print(json.dumps(reply, indent=1))
    elif action == "start":
        print(f"run {reply['run_number']} running, output {reply['output']}")
    elif action in ("stop", "wait", "status", "shutdown"):
        _print_status(reply)
    elif action == "reset":
        print(f"{reply['state']}; restarted: {', '.join(reply['restarted']) or 'none'}")
    # a run that ended in error (or nodes that did not join): status 1, for scripts
    return 1 if action in ("stop", "wait") and reply.get("state") == "error" else 0


def _print_status(r: dict[str, Any]) -> None:
    line = f"state {r['state']}, run {r['run_number']}"
    if r.get("cause"):
        line += f", cause: {r['cause']}"
    print(line)
    if "run" in r:
        x = r["run"]
        print(f"  run: {x['state']}, {x['events_written']} events written, {x['elapsed_s']:.1f} s")
    elif "last_run" in r:
        x = r["last_run"]
        print(
            f"  last run {x['run_number']}: {x['state']}, {x['events_written']} events written "
            f"({x['events_incomplete']} incomplete), {x['wall_s']:.1f} s, files {', '.join(x['files'])}"
        )
    if "nodes" in r:
        beats = ", ".join(f"{n} {v['last_heartbeat_s']}" for n, v in r["nodes"].items())
        print(f"  last heartbeat (s ago): {beats}")


def _runs(args: argparse.Namespace) -> int:
    from ._registry import REGISTRY_NAME, RunRegistry

    folder = Path(args.output)
    if not (folder / REGISTRY_NAME).is_file():
        raise UsageError(f"--output {folder}: no run registry ({REGISTRY_NAME}) there")
    with RunRegistry(folder) as reg:
        rows = reg.rows()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"runs in {folder}")
    for col in ("run", "start (UTC)", "stop (UTC)", "config", "seed", "events", "incomplete", "end", "cause", "files"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            str(r["run_number"]),
            r["start_time"][:23],
            (r["stop_time"] or "")[:23],
            r["config_hash"][:12],
            str(r["seed"]),
            str(r["events_written"]),
            str(r["events_incomplete"]),
            r["end_state"],
            r["cause"] or "",
            ", ".join(Path(f).name for f in r["files"]),
        )
    Console(width=200).print(t)
    sys.stdout.flush()
    return 0
