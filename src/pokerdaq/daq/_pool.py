"""The node processes of the DAQ and run control's two sockets, kept across runs.

A :class:`NodePool` binds the control ROUTER (every node connects a DEALER) and the lossy
monitoring PUB, starts the node hosts on this machine (``pokerdaq.daq._node.host_main``),
waits for each to say ``ready``, and hears their heartbeats. A run (:class:`~DaqRun`) opens
one node per host, drives it and closes it; the hosts stay for the next run. A host that died
or went silent is restarted by :meth:`NodePool.restart`, the healthy ones keep running.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from pokerdaq.config import Config

from ._curve import Guard, run_keys, secure_server
from ._display import DISPLAY_TOPIC
from ._node import HEARTBEAT_SUFFIX, host_main

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
            continue  # not ours, or a run between mkdtemp and its lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live run holds it
        finally:
            os.close(fd)
        shutil.rmtree(old, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{IPC_PREFIX}{os.getpid()}-")
    fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


class PoolError(RuntimeError):
    """A node host did not start or join in time."""


@dataclass
class NodeHost:
    """One node process as run control sees it."""

    name: str
    kind: str
    boards: list[int] = field(default_factory=list)
    process: multiprocessing.process.BaseProcess | None = None  # None: started elsewhere
    pid: int | None = None
    ready: bool = False
    last_beat: float | None = None  # monotonic time of the last message heard from it
    beats: int = 0
    max_gap_s: float = 0.0  # longest silence between two messages (health figure)
    loop_age_s: float = 0.0  # its main loop's last turn, as the last heartbeat told
    address: str | None = None  # the host it runs on, as it said (started elsewhere)

    def exitcode(self) -> int | None:
        return None if self.process is None else self.process.exitcode


def node_specs(cfg: Config) -> list[tuple[str, str, list[int]]]:
    """(name, kind, boards) of every node a run of ``cfg`` needs: writer, builder, trigger, fe0 ..."""
    boards = list(range(cfg.channel_map.n_boards))
    per = cfg.daq.boards_per_process
    specs = [("writer", "writer", []), ("builder", "builder", []), ("trigger", "trigger", boards)]
    specs += [(f"fe{i // per}", "board", boards[i : i + per]) for i in range(0, len(boards), per)]
    return specs


class NodePool:
    """Run control's sockets and the node hosts; use :meth:`close` (or a ``with`` block) to end them.

    Parameters
    ----------
    cfg
        Configuration: endpoints (``daq.<name>_endpoint``; empty: ipc in a fresh temporary
        folder, or loopback tcp with a free port), time-outs, heartbeat interval and time-out.
    root
        The folder the writer host may write in.
    """

    def __init__(self, cfg: Config, root: str | Path) -> None:
        from pokerdaq.config._daq import ENDPOINT_NAMES

        self.cfg = cfg
        self.root = str(root)
        self.hosts: dict[str, NodeHost] = {}
        self.guard = None
        self.keys = run_keys(cfg)  # first: a CurveError leaves nothing to clean up
        self.ipc_dir, self._ipc_lock = make_ipc_dir()
        #: the endpoint every socket of a run is to bind (``*``: a free port, told at bind)
        self.want = {n: self._endpoint(n) for n in ENDPOINT_NAMES}
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # no ROUTER_HANDOVER: a second process under a connected node's name is ignored, it cannot
        # take the first one's place (a restarted node joins once the dead one's connection is gone)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, int(cfg.daq.command_timeout_s * 1000))
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, cfg.daq.monitor_hwm)
        self.pub.setsockopt(zmq.LINGER, 0)
        # the writer's display messages (spectra, latest event: _display.py), lossy like the monitor;
        # bound here so that it outlives the runs, as the writer host does
        self.display_sub = self.ctx.socket(zmq.SUB)
        self.display_sub.setsockopt(zmq.RCVHWM, cfg.daq.display_hwm)
        self.display_sub.setsockopt(zmq.LINGER, 0)
        self.display_sub.setsockopt(zmq.SUBSCRIBE, DISPLAY_TOPIC)
        self.guard = Guard(self.ctx, self.keys, "run control") if self.keys else None
        if self.keys:
            secure_server(self.sock, self.keys)
            secure_server(self.pub, self.keys)
            secure_server(self.display_sub, self.keys)
        try:
            self.sock.bind(self.want["control"])
            self.pub.bind(self.want["monitor"])
            self.display_sub.bind(self.want["display"])
        except zmq.ZMQError:
            self.close()
            raise
        self.control = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.monitor = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.display = self.display_sub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.strays = 0  # messages from names that are not nodes of this pool
        self.refused: list[str] = []  # nodes that joined with the wrong kind or boards

    def _endpoint(self, name: str) -> str:
        value: str = getattr(self.cfg.daq, f"{name}_endpoint")
        if value:
            return value
        if self.cfg.daq.transport == "tcp":
            return "tcp://127.0.0.1:*"
        return f"ipc://{self.ipc_dir}/{name}"

    def __enter__(self) -> NodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- starting ----------------------------------------------------------------------------
    def spawn(self, name: str, kind: str, boards: list[int]) -> NodeHost:
        """Start one node host on this machine (a 'spawn' child); it joins with ``ready``."""
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(
            target=host_main,
            args=(kind, name, self.cfg, self.control, self.root, True, boards),
            name=f"pokerdaq-{name}",
            daemon=True,
        )
        p.start()
        host = NodeHost(name, kind, boards, process=p, pid=p.pid)
        self.hosts[name] = host
        return host

    def expect(self, name: str, kind: str, boards: list[int]) -> NodeHost:
        """A node host started elsewhere (``pokerdaq node``) that is to join."""
        host = NodeHost(name, kind, boards)
        self.hosts[name] = host
        return host

    def wait_ready(self, names: list[str] | None = None, timeout_s: float | None = None) -> None:
        """Serve until every host in ``names`` (default: all) said ``ready``; PoolError names the missing."""
        names = list(self.hosts) if names is None else names
        timeout_s = self.cfg.daq.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [n for n in names if not self.hosts[n].ready]
            if not missing:
                return
            for n in missing:
                code = self.hosts[n].exitcode()
                if code is not None:
                    raise PoolError(f"node {n} died with exit code {code} before joining")
            if time.monotonic() > deadline:
                raise PoolError(f"timed out after {timeout_s} s waiting for nodes to join: {', '.join(missing)}")
            self.receive(0.05)

    # ---- messages ----------------------------------------------------------------------------
    def receive(self, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Messages of the nodes for up to ``timeout_s``; heartbeats and ``ready`` are taken here."""
        out: list[tuple[str, dict[str, Any]]] = []
        if not self.sock.poll(int(timeout_s * 1000)):
            return out
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            ident = frames[0].decode(errors="replace")
            host = self.hosts.get(ident.removesuffix(HEARTBEAT_SUFFIX))
            try:
                msg = json.loads(frames[-1]) if len(frames) == 2 else None
            except ValueError:
                msg = None
            if host is None or not isinstance(msg, dict):
                self.strays += 1
                continue
            now = time.monotonic()
            if host.last_beat is not None and host.ready:
                host.max_gap_s = max(host.max_gap_s, now - host.last_beat)
            host.last_beat = now
            notice = msg.get("notice")
            if notice == "heartbeat":
                host.beats += 1
                if isinstance(age := msg.get("loop_age_s"), (int, float)):
                    host.loop_age_s = float(age)
                continue
            if notice == "ready":
                if msg.get("kind") != host.kind or list(msg.get("boards") or []) != host.boards:
                    # a node started as something this run does not need from that name
                    self.refused.append(
                        f"{host.name}: joined as {msg.get('kind')} with boards {msg.get('boards')}, "
                        f"expected {host.kind} with boards {host.boards}"
                    )
                    self.send(host.name, "shutdown")
                    continue
                host.ready = True
                host.pid = msg.get("pid", host.pid)
                host.address = msg.get("host")
                host.max_gap_s = 0.0
                continue
            out.append((host.name, msg))

    def send(self, name: str, cmd: str, **data: Any) -> bool:
        """Send a command; False when the node is not connected (ROUTER_MANDATORY) or not taking it."""
        try:
            self.sock.send_multipart([name.encode(), json.dumps({"cmd": cmd, **data}).encode()])
            return True
        except zmq.ZMQError:
            return False

    # ---- health ------------------------------------------------------------------------------
    def silent(self, names: list[str] | None = None, now: float | None = None) -> dict[str, float]:
        """The ready hosts among ``names`` heard from longer ago than ``daq.heartbeat_timeout_s``: name -> seconds."""
        now = time.monotonic() if now is None else now
        limit = self.cfg.daq.heartbeat_timeout_s
        out = {}
        for n in self.hosts if names is None else names:
            h = self.hosts[n]
            if self._is_silent(h, now, limit):
                out[n] = now - h.last_beat  # type: ignore[operator]
        return out

    @staticmethod
    def _is_silent(h: NodeHost, now: float, limit: float) -> bool:
        # one rule for run control's alarm and the health figures the status page shows
        return h.ready and h.last_beat is not None and now - h.last_beat > limit

    def health(self) -> dict[str, dict[str, Any]]:
        """Per node: pid, alive (its process has not exited), silent (as :meth:`silent` says), its boards,
        seconds since it was last heard, heartbeats, longest gap, main-loop age."""
        now = time.monotonic()
        limit = self.cfg.daq.heartbeat_timeout_s
        return {
            n: {
                "kind": h.kind,
                "pid": h.pid,
                "ready": h.ready,
                "alive": h.exitcode() is None,
                "silent": self._is_silent(h, now, limit),
                "boards": list(h.boards),
                "last_heartbeat_s": None if h.last_beat is None else round(now - h.last_beat, 3),
                "heartbeats": h.beats,
                "max_heartbeat_gap_s": round(h.max_gap_s, 3),
                "loop_age_s": h.loop_age_s,
                "local": h.process is not None,
                "host": h.address,
            }
            for n, h in self.hosts.items()
        }

    def died(self) -> dict[str, int]:
        """Local hosts whose process has exited: name -> exit code."""
        return {n: c for n, h in self.hosts.items() if (c := h.exitcode()) is not None}

    def restart(self, name: str) -> NodeHost:
        """End a local host (SIGKILL: it may be stopped or hung) and start a fresh one."""
        old = self.hosts[name]
        if old.process is None:
            # started elsewhere: only the site can restart it; wait for it to join again
            fresh = self.expect(name, old.kind, old.boards)
            return fresh
        self._kill(old)
        return self.spawn(name, old.kind, old.boards)

    @staticmethod
    def _kill(host: NodeHost) -> None:
        p = host.process
        if p is None or p.exitcode is not None:
            return
        if p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGKILL)  # also ends a SIGSTOPped process
            except ProcessLookupError:
                pass
        p.join(5.0)

    def close(self) -> None:
        """Tell every host to leave, then terminate and kill what is left; free the sockets."""
        if self.sock.closed:
            return
        for name in self.hosts:
            self.send(name, "shutdown")
        deadline = time.monotonic() + 5.0
        for h in self.hosts.values():
            if h.process is not None:
                h.process.join(max(0.0, deadline - time.monotonic()))
        for h in self.hosts.values():
            p = h.process
            if p is not None and p.exitcode is None:
                p.terminate()
                p.join(2.0)
            self._kill(h)
        self.hosts = {}
        for s in (self.sock, self.pub, self.display_sub):
            s.close(0)
        if self.guard is not None:
            self.guard.stop()
        self.ctx.term()
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        os.close(self._ipc_lock)
