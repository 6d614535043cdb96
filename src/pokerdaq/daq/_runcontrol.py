"""Run control: starts the DAQ processes, drives their state machine, monitors, stops, cleans up.

States (DUNE-like): ``idle`` -> ``configured`` (processes started, every server socket bound,
then every client connected: FairMQ's bind-before-connect phases) -> ``running`` ->
``draining`` (the trigger processor has ended the run; boards flush, the builder completes or
times out the last events, the writer closes the file) -> ``stopped``. Any failure of the
trigger processor, the builder or the writer gives ``error``; ``reset`` goes back to ``idle``.
A board process that dies does not stop the run: the trigger processor marks its boards
dead and their events are flagged INCOMPLETE.

Commands travel on a ROUTER bound here; every process connects a DEALER. Monitoring
(counters, rates, live time, histograms) is published once a second on a PUB socket with a
small high-water mark: a slow subscriber loses messages, never slows the run.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pokerdaq.config import Config

from ._pool import IPC_PREFIX, NodePool, PoolError, make_ipc_dir, node_specs

__all__ = ["IPC_PREFIX", "MONITOR_TOPIC", "STATES", "DaqRun", "RunControlError", "make_ipc_dir", "output_path"]

MONITOR_TOPIC = b"pokerdaq.monitor"
STATES = ("idle", "configured", "running", "draining", "stopped", "error")


class RunControlError(RuntimeError):
    """A command failed or timed out, or a critical process died."""


@dataclass
class _Proc:
    name: str
    kind: str
    process: multiprocessing.process.BaseProcess | None  # None: a node started elsewhere
    params: dict
    hello: bool = False
    drained: bool = False
    exited: bool = False
    closed: bool = False  # its host said the run's node is gone (the host stays)
    died: int | None = None  # exit code of an unexpected death (-1: error notice, -2: silent)
    silent_s: float | None = None  # no heartbeat for this long when it was found silent

    def exitcode(self) -> int | None:
        return None if self.process is None else self.process.exitcode


def output_path(output: str | Path, run_number: int) -> Path:
    """The run file for ``--output``: a ``.h5`` path as is, else ``DIR/run_NNNNNN.h5``."""
    p = Path(output)
    if p.suffix in (".h5", ".hdf5"):
        return p
    return p / f"run_{run_number:06d}.h5"


class DaqRun:
    """One run of the DAQ: use as a context manager so every process is always cleaned up.

    Parameters
    ----------
    cfg
        The configuration ([daq] table for sockets, buffers and time-outs).
    output
        Output folder or ``.h5`` file.
    seed
        Run seed (default ``cfg.run.seed``).
    max_events
        The trigger processor ends the run after this many accepted triggers (None: no limit).
    duration_s
        Run control stops the run after this many seconds of data taking (None: no limit).
    overwrite
        Replace an existing output file.
    only
        Start only these kinds of process (``"board"``, ``"trigger"``, ``"builder"``,
        ``"writer"``); the others are played by the caller through :attr:`endpoints` (tests).
    pool
        The node processes to run on (the run-control service keeps one across runs); None:
        this run starts its own and ends them at :meth:`close` (the one-shot ``pokerdaq run``).
    run_number
        Run number (default ``cfg.run.run_number``).
    """

    def __init__(
        self,
        cfg: Config,
        output: str | Path,
        *,
        seed: int | None = None,
        max_events: int | None = None,
        duration_s: float | None = None,
        overwrite: bool = False,
        only: tuple[str, ...] | None = None,
        pool: NodePool | None = None,
        run_number: int | None = None,
    ) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events: {max_events}, expected at least 1")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s: {duration_s}, expected > 0")
        self.cfg = cfg
        self.run_number = cfg.run.run_number if run_number is None else int(run_number)
        self.seed = cfg.run.seed if seed is None else int(seed)
        self.output = output_path(output, self.run_number)
        self.max_events = max_events
        self.duration_s = duration_s
        self.overwrite = overwrite
        self.only = only
        self.state = "idle"
        self.errors: list[str] = []
        self.stats: dict[str, dict] = {}
        self.procs: dict[str, _Proc] = {}
        self.endpoints: dict[str, str] = {}
        self.pool = pool
        self._own_pool = pool is None
        self._refreshed = False  # final counters collected after a failure
        self._block_store: str | None = None  # this run's shared beam blocks (removed at close)
        self.silent_detected: dict[str, float] = {}  # node -> monotonic time its silence was found
        self.display: dict[str, Any] | None = None  # the writer's latest display message (spectra, latest event)
        self.display_received = 0
        self._replies: dict[tuple[str, str], dict] = {}
        self._t_start: float | None = None
        self._t_stop: float | None = None
        self._drain_deadline: float | None = None
        self._next_monitor = 0.0
        self._last_monitor: tuple[float, int] | None = None
        self._rate_history: collections.deque = collections.deque()
        self.monitor_messages = 0

    # ---- context management ----------------------------------------------------------
    def __enter__(self) -> DaqRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- set-up ------------------------------------------------------------------------
    def _remote(self) -> bool:
        return self.pool is not None and any(h.process is None for h in self.pool.hosts.values())

    def configure(self) -> None:
        """Start (or take) the node processes, open the run's node in each, then the bind
        phase, then the connect phase."""
        if self.state != "idle":
            raise RunControlError(f"configure in state {self.state!r}, expected 'idle'")
        cfg = self.cfg
        try:
            if self.pool is None:
                self.pool = NodePool(cfg, self.output.parent)
                for name, kind, boards in node_specs(cfg):
                    if self.only is None or kind in self.only:
                        self.pool.spawn(name, kind, boards)
                try:
                    self.pool.wait_ready()
                except PoolError as err:
                    raise RunControlError(str(err)) from None
            pool = self.pool
            want = pool.want
            # configured endpoints of processes not started here (``only``) are kept for the caller
            self.endpoints = {n: e for n, e in want.items() if "*" not in e}
            self.endpoints.update(control=pool.control, monitor=pool.monitor, display=pool.display)
            # the configuration travels with the run: a node started elsewhere runs with this one
            common = {
                "config": cfg.text if self._remote() else "",
                "run_number": self.run_number,
                "seed": self.seed,
                "endpoints": want,
            }
            extra: dict[str, dict[str, Any]] = {
                "writer": {"output": str(self.output), "overwrite": self.overwrite},
                "builder": {},
                "trigger": {"max_events": self.max_events},
                "board": {},
            }
            # the beam blocks the boards and the writer share (use_block_store): one folder per run
            # in the pool's private temporary folder, for the processes of this machine
            self._block_store = os.path.join(pool.ipc_dir, f"blocks-{self.run_number}")
            os.makedirs(self._block_store, exist_ok=True)
            for name, host in pool.hosts.items():
                params = {**common, **extra[host.kind]}
                if host.kind in ("board", "trigger"):
                    params["boards"] = host.boards
                if host.kind in ("board", "writer"):
                    params["block_store"] = self._block_store if host.process is not None else ""
                self.procs[name] = _Proc(name, host.kind, host.process, params)
            for name, p in self.procs.items():
                if not pool.send(name, "open", params=p.params):
                    raise RunControlError(f"node {name} is not connected")
            self._wait(
                lambda: all(p.hello for p in self.procs.values()), "processes to start", self.cfg.daq.start_timeout_s
            )
            for name in self.procs:
                self._send(name, "bind")
            for name in self.procs:
                self.endpoints.update(self._reply(name, "bind")["endpoints"])
            for name in self.procs:
                self._send(name, "connect", endpoints=self.endpoints)
            for name in self.procs:
                self._reply(name, "connect")
        except BaseException:
            self.state = "error"
            raise
        self.state = "configured"

    def start(self) -> None:
        if self.state != "configured":
            raise RunControlError(f"start in state {self.state!r}, expected 'configured'")
        order: list[str] = [n for n in ("writer", "builder", "trigger") if n in self.procs]
        order += [n for n, p in self.procs.items() if p.kind == "board"]
        for name in order:
            self._send(name, "start")
        self._t_start = time.monotonic()
        self._t_stop = None
        self.state = "running"
        for name in order:
            self._reply(name, "start")
        if self.state == "error":
            raise RunControlError("start failed: " + "; ".join(self.errors))

    def stop(self) -> None:
        """Begin draining: the trigger processor issues no more triggers and ends the run."""
        if self.state == "running":
            if "trigger" in self.procs:
                self._send("trigger", "stop")
            self._enter_draining()

    def reset(self) -> None:
        """Back to ``idle`` after ``stopped`` or ``error``: the run's nodes are closed (and the
        processes ended, unless they belong to a pool given by the caller)."""
        self.close()
        if self._own_pool:
            self.pool = None
        self.state = "idle"
        self.procs, self.errors, self.stats = {}, [], {}

    def _enter_draining(self) -> None:
        if self.state == "running":
            self.state = "draining"
            self._t_stop = time.monotonic()
            d = self.cfg.daq
            self._drain_deadline = time.monotonic() + d.stall_timeout_s + d.builder_timeout_s + d.command_timeout_s

    # ---- the loop ------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.1) -> str:
        """Serve messages for up to ``timeout_s``, check processes and deadlines; return the state."""
        self._receive(timeout_s)
        self._receive_display()
        self._check_processes()
        now = time.monotonic()
        if (
            self.state == "running"
            and self.duration_s is not None
            and self._t_start is not None  # set by start()
            and now - self._t_start >= self.duration_s
        ):
            self.stop()
        if self.state == "draining":
            if self._all_drained():
                self._final_status()
                self.state = "stopped"
                self._publish()  # the final numbers, for the monitors and the status page
            elif self._drain_deadline is not None and now > self._drain_deadline:  # set with 'draining'
                self._fail(
                    "drain did not finish in time: "
                    + ", ".join(n for n, p in self.procs.items() if not p.drained and p.died is None)
                )
        if self.state == "error" and not self._refreshed:
            # the figures of the summary: what every live process counts now, not its last
            # report before the failure (the trigger and builder went on meanwhile)
            self._refreshed = True
            self._final_status()
            self._publish()
        if self.state in ("running", "draining") and now >= self._next_monitor:
            self._next_monitor = now + self.cfg.daq.monitor_interval_s
            for name, p in self.procs.items():
                if p.died is None:
                    self._send(name, "status", quiet=True)
            self._publish()
        return self.state

    def wait(self, timeout_s: float | None = None) -> str:
        """Poll until ``stopped`` or ``error`` (or the time-out); return the state."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.state not in ("stopped", "error"):
            if deadline is not None and time.monotonic() > deadline:
                break
            self.poll(0.05)
        return self.state

    def _all_drained(self) -> bool:
        return all(p.drained or (p.died is not None and p.kind == "board") for p in self.procs.values())

    def _receive(self, timeout_s: float) -> None:
        if self.pool is None or self.pool.sock.closed:
            return
        for name, msg in self.pool.receive(timeout_s):
            p = self.procs.get(name)
            if p is None:
                continue
            if "notice" in msg:
                self._on_notice(p, msg)
            elif "reply" in msg:
                if msg.get("stats") is not None:
                    self.stats[name] = msg["stats"]
                if not msg.get("ok", False):
                    self._fail(f"{name}: {msg['reply']} failed: {msg.get('error')}")
                self._replies[(name, msg["reply"])] = msg

    def _on_notice(self, p: _Proc, msg: dict) -> None:
        kind = msg["notice"]
        if kind == "hello":
            p.hello = True
        elif kind == "closed":
            p.closed = True
        elif kind == "drained":
            p.drained = True
            self.stats[p.name] = msg.get("stats", {})
            if p.name == "trigger":
                self._enter_draining()
        elif kind == "error":
            if msg.get("stats"):
                self.stats[p.name] = msg["stats"]
            if p.kind == "board":
                self.errors.append(f"{p.name}: {msg.get('error')}")
                p.died = -1
            else:
                self._fail(f"{p.name}: {msg.get('error')}")

    def _check_processes(self) -> None:
        for p in self.procs.values():
            if p.exited or p.died is not None:
                continue
            code = p.exitcode()
            if code is not None:
                p.died = code
                what = f"{p.name} (pid {p.process.pid if p.process else '?'}) died with exit code {code}"
                if p.kind == "board":
                    self.errors.append(what + ": its boards are marked dead by the trigger processor")
                else:
                    self._fail(what)
        if self.pool is None or self.state not in ("configured", "running", "draining"):
            return
        watched = [n for n, p in self.procs.items() if p.hello and p.died is None and not p.closed]
        limit = self.cfg.daq.heartbeat_timeout_s
        for name, quiet in self.pool.silent(watched).items():
            p = self.procs[name]
            p.silent_s = quiet
            self.silent_detected[name] = time.monotonic()
            what = f"{name} silent: no heartbeat for {quiet:.1f} s (daq.heartbeat_timeout_s = {limit})"
            if p.kind == "board" and self.cfg.daq.on_silent_board == "continue":
                p.died = -2  # the run goes on without it (the drain does not wait for it)
                self.errors.append(
                    what + ": going on (daq.on_silent_board = 'continue'); the trigger "
                    "processor marks its boards dead, their events are flagged INCOMPLETE"
                )
            else:
                p.died = -2
                self._fail(what)

    def _fail(self, why: str) -> None:
        self.errors.append(why)
        if self.state not in ("stopped", "error"):
            self._t_stop = self._t_stop or time.monotonic()
            self.state = "error"

    def _final_status(self) -> None:
        live = [n for n, p in self.procs.items() if p.died is None]
        for name in live:
            self._replies.pop((name, "status"), None)
            self._send(name, "status", quiet=True)
        deadline = time.monotonic() + self.cfg.daq.command_timeout_s
        while time.monotonic() < deadline and not all((n, "status") in self._replies for n in live):
            self._receive(0.05)
            self._check_processes()
            live = [n for n in live if self.procs[n].died is None]
        self._receive_display()  # the writer sends its last display message before it reports drained

    # ---- commands ------------------------------------------------------------------------
    def _send(self, name: str, cmd: str, quiet: bool = False, **data: Any) -> None:
        self._replies.pop((name, cmd), None)
        if (self.pool is None or not self.pool.send(name, cmd, **data)) and not quiet:
            raise RunControlError(f"{cmd} to {name}: not connected")

    def _reply(self, name: str, cmd: str) -> dict:
        self._wait(lambda: (name, cmd) in self._replies, f"{name} to answer {cmd!r}")
        msg = self._replies.pop((name, cmd))
        if not msg.get("ok"):
            raise RunControlError(f"{name}: {cmd} failed: {msg.get('error')}")
        return msg

    def _wait(self, cond, what: str, timeout_s: float | None = None) -> None:
        timeout_s = self.cfg.daq.command_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise RunControlError(f"timed out waiting for {what} ({timeout_s} s)")
            self._receive(0.05)
            if self.state == "error":
                raise RunControlError(f"{'; '.join(self.errors)} (while waiting for {what})")
            self._receive_display()  # a bound SUB passes its subscription on only when its thread handles it
            for p in self.procs.values():
                code = p.exitcode()
                if code is not None and not p.exited:
                    raise RunControlError(f"{p.name} died with exit code {code} while waiting for {what}")

    # ---- monitoring ------------------------------------------------------------------------
    def _receive_display(self) -> None:
        """Keep the newest display message of the writer (older queued ones are skipped unparsed)."""
        sub = self.pool.display_sub if self.pool is not None else None
        if sub is None or sub.closed:
            return
        body = None
        while True:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) == 2:
                body = frames[1]
                self.display_received += 1
        if body is not None:
            try:
                msg = json.loads(body)
            except ValueError:
                msg = None
            if isinstance(msg, dict):
                self.display = msg

    def snapshot(self) -> dict[str, Any]:
        """Counters of the run as last reported, with rates and live time."""
        now = time.monotonic()
        written = self.stats.get("writer", {}).get("events_written", 0)
        # event rate over the last few seconds of counter updates
        if not self._rate_history or self._rate_history[-1][1] != written:
            self._rate_history.append((now, written))
        while len(self._rate_history) > 2 and now - self._rate_history[0][0] > 3.0:
            self._rate_history.popleft()
        rate = 0.0
        t0, n0 = self._rate_history[0]
        if now - t0 > 0.5:
            rate = (written - n0) / (now - t0)
        trig = self.stats.get("trigger", {})
        return {
            "time": time.time(),
            "state": self.state,
            "run_number": self.run_number,
            "elapsed_s": ((self._t_stop or now) - self._t_start) if self._t_start else 0.0,
            "events_written": written,
            "event_rate_hz": rate,
            "live_fraction": trig.get("live_fraction"),
            "nodes": self.stats,
            "heartbeats": self.pool.health() if self.pool is not None else {},
            "display": self.display,
            "display_received": self.display_received,
        }

    def _publish(self) -> None:
        snap = self.snapshot()
        snap["seq"] = self.monitor_messages  # a subscriber counts the snapshots it lost from gaps
        self._last_monitor = (time.monotonic(), snap["events_written"])
        if self.pool is None:
            return
        try:
            self.pool.pub.send_multipart([MONITOR_TOPIC, json.dumps(snap).encode()], zmq.NOBLOCK)
            self.monitor_messages += 1
        except zmq.Again:
            pass  # lossy by design

    # ---- results ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Final counters of the run, as printed by ``pokerdaq run``."""
        trig = self.stats.get("trigger", {})
        build = self.stats.get("builder", {})
        writer = self.stats.get("writer", {})
        boards = {n: s for n, s in self.stats.items() if self.procs.get(n) and self.procs[n].kind == "board"}
        wall = ((self._t_stop or time.monotonic()) - self._t_start) if self._t_start else 0.0
        beam_s = trig.get("ticks", 0) / self.cfg.digitizer.sampling_rate_hz
        types = {}
        for name, t in trig.get("trigger_types", {}).items():
            types[name] = {
                **t,
                "rate_beam_hz": t["accepted"] / beam_s if beam_s else 0.0,
                "rate_wall_hz": t["accepted"] / wall if wall else 0.0,
            }
        files = writer.get("files", [])
        if self.procs.get("writer") is not None and self.procs["writer"].died is not None:
            files = [str(p) for p in self._run_files()]  # with the .part its death left
        return {
            "state": self.state,
            "errors": list(self.errors),
            "run_number": self.run_number,
            "seed": self.seed,
            "wall_s": wall,
            "beam_time_s": beam_s,
            "events_issued": trig.get("events_issued", 0),
            "slices_decided": trig.get("slices_decided", 0),
            "trigger_decisions": trig.get("decisions", 0),  # decision messages (one per slice or stretch)
            "stretch_slices": trig.get("stretch_slices", 0),  # slices decided inside fast-forward stretches
            "events_built": build.get("events_built", 0),
            "events_incomplete": build.get("events_incomplete", 0),
            "events_mismatch": build.get("events_mismatch", 0),
            # events_written: what the run's files hold, read back from them (a writer killed
            # mid-run reported less than it wrote); the writer's own figures beside it
            **self._file_counts(writer),
            "events_rejected": writer.get("events_rejected", {}),
            "events_evicted_incomplete": build.get("events_evicted_incomplete", 0),
            "events_timed_out": build.get("events_timed_out", 0),
            "fragments_rejected": build.get("rejected", {}),
            "board_stalled_steps": sum(s.get("stalled_steps", 0) for s in boards.values()),
            "board_max_pending": max((s.get("max_pending", 0) for s in boards.values()), default=0),
            "fragment_peer_disconnects": build.get("fragment_peer_disconnects", 0),
            "max_in_flight": build.get("max_in_flight", 0),
            "in_flight_limit": build.get("in_flight_limit", self.cfg.daq.max_events_in_flight),
            "trigger_types": types,
            "live_fraction": trig.get("live_fraction"),
            "busy_ticks": trig.get("busy_ticks", 0),
            "dead_ticks": trig.get("dead_ticks", 0),
            "dead_boards": trig.get("dead_boards", {}),
            "died": {n: p.died for n, p in self.procs.items() if p.died is not None},
            "silent": {n: p.silent_s for n, p in self.procs.items() if p.silent_s is not None},
            "bytes_written": writer.get("bytes_written", 0),
            "mb_per_s": writer.get("bytes_written", 0) / wall / 1e6 if wall else 0.0,
            "files": files,
            "event_rate_hz": writer.get("events_written", 0) / wall if wall else 0.0,
            "histograms": build.get("histograms", {}),
            # per-spill /scalers rows: how many, their sums (equal to the run totals above) and
            # the tick up to which the trigger decided (the rows tile [0, decided_ticks))
            "spills": writer.get("scaler_rows", 0),
            "scaler_totals": writer.get("scaler_totals", {}),
            "decided_ticks": trig.get("decided_ticks", 0),
            "beam_counts": trig.get("scaler_totals", {}).get("beam_counts", 0),
            "triggers_raw": trig.get("scaler_totals", {}).get("triggers_raw", 0),
            "truth_rows": writer.get("truth_rows", 0),
            "truth_matched": writer.get("truth_matched", 0),
            "cpu_s": {n: st.get("cpu_s", 0.0) for n, st in self.stats.items()},
            # trigger-less streaming (daq.mode = "streaming"): what the writer stored
            "stream": (
                {
                    k: writer.get(k, 0)
                    for k in (
                        "hits_written",
                        "hit_samples_written",
                        "blocks_written",
                        "decisions_written",
                        "missing_board_blocks",
                    )
                }
                | {"late_hits": build.get("late_hits", 0), "boards_without_end": build.get("boards_without_end", 0)}
                if self.cfg.daq.mode == "streaming"
                else None
            ),
            # CPU seconds of each process since the start command (data taking only)
            "cpu_run_s": {n: st.get("cpu_run_s", 0.0) for n, st in self.stats.items()},
        }

    def _run_files(self) -> list[Path]:
        from pokerdaq.io import run_paths

        return run_paths(self.output, with_part=True)

    def _file_counts(self, writer: dict) -> dict[str, int]:
        """``events_written`` (the ``n_events`` of the run's files, a ``.part`` counted up to its
        last flush: what ``pokerdaq recover`` keeps when every checksum passes) and the writer's
        own last report, ``events_written_reported`` (events handed to the file)."""
        from pokerdaq.io import RunFile

        reported = writer.get("events_written", 0)
        proc = self.procs.get("writer")
        if proc is None:  # the writer is played by the caller (tests)
            return {"events_written": reported, "events_written_reported": reported}
        in_files = 0
        for path in self._run_files():
            try:
                with RunFile(path) as f:
                    in_files += len(f)
            except (OSError, ValueError):
                pass  # not readable: holds nothing that can be counted
        # a live writer may have written events it has not flushed yet; a dead one's are lost
        written = in_files if proc.died is not None else max(in_files, reported)
        return {"events_written": written, "events_written_reported": reported}

    def pid(self, name: str) -> int:
        """Process id of a node (``writer``, ``builder``, ``trigger``, ``fe0`` ...)."""
        if self.pool is None or self.pool.hosts[name].pid is None:
            raise KeyError(name)
        pid = self.pool.hosts[name].pid
        assert pid is not None
        return pid

    def close(self) -> None:
        """End the run's node in every process; a run that started its processes ends them
        too (exit command, then terminate, then kill) and frees the sockets."""
        pool = self.pool
        if pool is None:
            return
        if not pool.sock.closed:
            for name, p in self.procs.items():
                if p.exitcode() is None and p.hello and not p.closed:
                    self._send(name, "exit", quiet=True)
        if self._own_pool:
            pool.close()  # its folder, this run's blocks with it
            for p in self.procs.values():
                p.exited = True
            self._block_store = None
            return
        # a pool of the caller: wait for the hosts to say their run's node is gone
        deadline = time.monotonic() + self.cfg.daq.command_timeout_s
        while time.monotonic() < deadline and not pool.sock.closed:
            open_ = [
                n for n, p in self.procs.items() if p.hello and not p.closed and p.died is None and p.exitcode() is None
            ]
            if not open_:
                break
            self._receive(0.05)
            self._check_processes()
        self._remove_block_store()

    def _remove_block_store(self) -> None:
        """The run's beam blocks go with the run (a pool of many runs keeps its folder)."""
        if self._block_store is not None:
            shutil.rmtree(self._block_store, ignore_errors=True)
            self._block_store = None
