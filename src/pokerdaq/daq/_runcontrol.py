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
import fcntl
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pokerdaq.config import Config
from pokerdaq.config._daq import ENDPOINT_NAMES

from ._node import node_main

MONITOR_TOPIC = b"pokerdaq.monitor"
STATES = ("idle", "configured", "running", "draining", "stopped", "error")


class RunControlError(RuntimeError):
    """A command failed or timed out, or a critical process died."""


@dataclass
class _Proc:
    name: str
    kind: str
    process: multiprocessing.process.BaseProcess
    params: dict
    hello: bool = False
    drained: bool = False
    exited: bool = False
    died: int | None = None   # exit code of an unexpected death


IPC_PREFIX = "pokerdaq-ipc-"


def make_ipc_dir() -> tuple[str, int]:
    """A fresh folder for the ipc endpoints of one run, and the file descriptor that locks it.

    ``TMPDIR/pokerdaq-ipc-PID-XXXXXXXX`` (unique: ``mkdtemp``) holds a ``lock`` file that the
    run holds locked (``flock``) while it lives; the kernel drops the lock when the process
    dies, also by SIGKILL. Folders of dead runs (lock free) are removed first, so a run killed
    with kill -9 leaves its folder only until the next run starts.
    """
    base = Path(tempfile.gettempdir())
    for old in base.glob(IPC_PREFIX + "*"):
        try:
            fd = os.open(old / "lock", os.O_RDONLY)
        except OSError:
            continue   # not ours, or a run between mkdtemp and its lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue   # a live run holds it
        finally:
            os.close(fd)
        shutil.rmtree(old, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{IPC_PREFIX}{os.getpid()}-")
    fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


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
    """

    def __init__(self, cfg: Config, output: str | Path, *, seed: int | None = None,
                 max_events: int | None = None, duration_s: float | None = None,
                 overwrite: bool = False, only: tuple[str, ...] | None = None) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events: {max_events}, expected at least 1")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s: {duration_s}, expected > 0")
        self.cfg = cfg
        self.run_number = cfg.run.run_number
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
        self._tmpdir: str | None = None
        self._tmpdir_lock: int | None = None
        self._refreshed = False   # final counters collected after a failure
        self._ctx: zmq.Context | None = None
        self._ctl: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
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
    def _endpoint(self, name: str) -> str:
        value = getattr(self.cfg.daq, f"{name}_endpoint")
        if value:
            return value
        if self.cfg.daq.transport == "tcp":
            return "tcp://127.0.0.1:*"
        return f"ipc://{self._tmpdir}/{name}"

    def configure(self) -> None:
        """Start every process, then the bind phase, then the connect phase."""
        if self.state != "idle":
            raise RunControlError(f"configure in state {self.state!r}, expected 'idle'")
        cfg = self.cfg
        self._tmpdir, self._tmpdir_lock = make_ipc_dir()
        want = {n: self._endpoint(n) for n in ENDPOINT_NAMES}
        self._ctx = zmq.Context()
        self._ctl = self._ctx.socket(zmq.ROUTER)
        self._ctl.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._ctl.setsockopt(zmq.LINGER, 0)
        self._ctl.setsockopt(zmq.SNDTIMEO, int(cfg.daq.command_timeout_s * 1000))
        self._ctl.bind(want["control"])
        control = self._ctl.getsockopt_string(zmq.LAST_ENDPOINT)
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, cfg.daq.monitor_hwm)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.bind(want["monitor"])
        # configured endpoints of processes not started here (``only``) are kept for the caller
        self.endpoints = {n: e for n, e in want.items() if "*" not in e}
        self.endpoints.update(control=control, monitor=self._pub.getsockopt_string(zmq.LAST_ENDPOINT))

        boards = list(range(cfg.channel_map.n_boards))
        per = cfg.daq.boards_per_process
        # the run's folder also holds the beam blocks the boards and the writer share (use_block_store)
        common = {"run_number": self.run_number, "seed": self.seed, "endpoints": want, "block_store": self._tmpdir}
        specs = [("writer", "writer", {**common, "output": str(self.output), "overwrite": self.overwrite}),
                 ("builder", "builder", dict(common)),
                 ("trigger", "trigger", {**common, "boards": boards, "max_events": self.max_events})]
        for i in range(0, len(boards), per):
            specs.append((f"fe{i // per}", "board", {**common, "boards": boards[i:i + per]}))
        if self.only is not None:
            specs = [sp for sp in specs if sp[1] in self.only]
        ctx = multiprocessing.get_context("spawn")
        try:
            for name, kind, params in specs:
                p = ctx.Process(target=node_main, args=(kind, name, cfg, control, params), name=f"pokerdaq-{name}",
                                daemon=True)
                p.start()
                self.procs[name] = _Proc(name, kind, p, params)
            self._wait(lambda: all(p.hello for p in self.procs.values()), "processes to start",
                       self.cfg.daq.start_timeout_s)
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
        """Back to ``idle`` after ``stopped`` or ``error``: every process is ended."""
        self.close()
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
        self._check_processes()
        now = time.monotonic()
        if (self.state == "running" and self.duration_s is not None and self._t_start is not None  # set by start()
                and now - self._t_start >= self.duration_s):
            self.stop()
        if self.state == "draining":
            if self._all_drained():
                self._final_status()
                self.state = "stopped"
            elif self._drain_deadline is not None and now > self._drain_deadline:  # set with 'draining'
                self._fail("drain did not finish in time: " + ", ".join(
                    n for n, p in self.procs.items() if not p.drained and p.died is None))
        if self.state == "error" and not self._refreshed:
            # the figures of the summary: what every live process counts now, not its last
            # report before the failure (the trigger and builder went on meanwhile)
            self._refreshed = True
            self._final_status()
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
        if self._ctl is None:
            return
        if not self._ctl.poll(int(timeout_s * 1000)):
            return
        while True:
            try:
                ident, body = self._ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = json.loads(body)
            name = ident.decode()
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
            code = p.process.exitcode
            if code is not None:
                p.died = code
                what = f"{p.name} (pid {p.process.pid}) died with exit code {code}"
                if p.kind == "board":
                    self.errors.append(what + ": its boards are marked dead by the trigger processor")
                else:
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

    # ---- commands ------------------------------------------------------------------------
    def _send(self, name: str, cmd: str, quiet: bool = False, **data: Any) -> None:
        self._replies.pop((name, cmd), None)
        try:
            self._ctl.send_multipart([name.encode(), json.dumps({"cmd": cmd, **data}).encode()])
        except zmq.ZMQError as err:
            if not quiet:
                raise RunControlError(f"{cmd} to {name}: {err}") from None

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
            for p in self.procs.values():
                if p.process.exitcode is not None and not p.exited:
                    raise RunControlError(f"{p.name} died with exit code {p.process.exitcode} while waiting for {what}")

    # ---- monitoring ------------------------------------------------------------------------
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
        return {"time": time.time(), "state": self.state, "run_number": self.run_number,
                "elapsed_s": (now - self._t_start) if self._t_start else 0.0,
                "events_written": written, "event_rate_hz": rate,
                "live_fraction": trig.get("live_fraction"), "nodes": self.stats}

    def _publish(self) -> None:
        snap = self.snapshot()
        self._last_monitor = (time.monotonic(), snap["events_written"])
        try:
            self._pub.send_multipart([MONITOR_TOPIC, json.dumps(snap).encode()], zmq.NOBLOCK)
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
            types[name] = {**t, "rate_beam_hz": t["accepted"] / beam_s if beam_s else 0.0,
                           "rate_wall_hz": t["accepted"] / wall if wall else 0.0}
        files = writer.get("files", [])
        if self.procs.get("writer") is not None and self.procs["writer"].died is not None:
            files = [str(p) for p in self._run_files()]   # with the .part its death left
        return {
            "state": self.state,
            "errors": list(self.errors),
            "run_number": self.run_number,
            "seed": self.seed,
            "wall_s": wall,
            "beam_time_s": beam_s,
            "events_issued": trig.get("events_issued", 0),
            "slices_decided": trig.get("slices_decided", 0),
            "trigger_decisions": trig.get("decisions", 0),        # decision messages (one per slice or stretch)
            "stretch_slices": trig.get("stretch_slices", 0),      # slices decided inside fast-forward stretches
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
        if proc is None:   # the writer is played by the caller (tests)
            return {"events_written": reported, "events_written_reported": reported}
        in_files = 0
        for path in self._run_files():
            try:
                with RunFile(path) as f:
                    in_files += len(f)
            except (OSError, ValueError):
                pass   # not readable: holds nothing that can be counted
        # a live writer may have written events it has not flushed yet; a dead one's are lost
        written = in_files if proc.died is not None else max(in_files, reported)
        return {"events_written": written, "events_written_reported": reported}

    def pid(self, name: str) -> int:
        """Process id of a node (``writer``, ``builder``, ``trigger``, ``fe0`` ...)."""
        return self.procs[name].process.pid

    def close(self) -> None:
        """End every process (exit command, then terminate, then kill) and free the sockets."""
        for name, p in self.procs.items():
            if p.process.exitcode is None and self._ctl is not None:
                self._send(name, "exit", quiet=True)
        deadline = time.monotonic() + 5.0
        for p in self.procs.values():
            p.process.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs.values():
            if p.process.exitcode is None:
                p.process.terminate()
                p.process.join(2.0)
            if p.process.exitcode is None:
                p.process.kill()
                p.process.join(2.0)
            p.exited = True
        for s in (self._ctl, self._pub):
            if s is not None:
                s.close(0)
        self._ctl = self._pub = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        if self._tmpdir_lock is not None:
            os.close(self._tmpdir_lock)
            self._tmpdir_lock = None
