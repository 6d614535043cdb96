"""The common skeleton of every DAQ process: control socket, state, main loop, clean exit.

Every process (board group, trigger processor, event builder, writer) is a :class:`Node`
started with :func:`node_main` in a 'spawn' child. It connects a DEALER (its name as
identity) to the run-control ROUTER and obeys JSON commands:

``bind``     bind the node's server sockets; reply with the endpoints actually bound
``connect``  connect its client sockets to the endpoints of the others (after every bind)
``start``    begin data taking
``stop``     stop (the trigger processor ends the run; the others drain on end-of-run)
``status``   reply with counters
``exit``     close sockets and leave

Unsolicited notices to run control: ``hello`` (started), ``drained`` (its part of the run is
finished, with final counters), ``error`` (with the reason). A node also leaves on its own
when its parent process disappears, so no orphan outlives a run.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from typing import Any

import zmq

from pokerdaq.config import Config


class NodeError(RuntimeError):
    """A node cannot go on (stall time-out, protocol error); reported to run control."""


class Node:
    """Base class: subclasses implement :meth:`bind`, :meth:`connect`, :meth:`step` and :meth:`stats`."""

    def __init__(self, cfg: Config, name: str, control_endpoint: str, params: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name = name
        self.params = params
        self.ctx = zmq.Context()
        self.ctl = self.ctx.socket(zmq.DEALER)
        self.ctl.setsockopt(zmq.IDENTITY, name.encode())
        self.ctl.setsockopt(zmq.LINGER, 1000)
        self.ctl.setsockopt(zmq.SNDTIMEO, int(cfg.daq.command_timeout_s * 1000))
        self.ctl.connect(control_endpoint)
        self.state = "idle"
        self.running = False
        self._parent = os.getppid()
        self._drained_sent = False
        self.send_timeout = cfg.daq.send_timeout_ms
        self.stall_timeout = cfg.daq.stall_timeout_s
        self.cpu_at_start: float | None = None   # process CPU seconds when data taking began

    # ---- to be implemented ----------------------------------------------------------
    def bind(self) -> dict[str, str]:
        return {}

    def connect(self, endpoints: dict[str, str]) -> None:
        pass

    def on_start(self) -> None:
        pass

    def on_stop(self) -> None:
        pass

    def sockets(self) -> list[tuple[zmq.Socket, int]]:
        """Data sockets to poll now and the events wanted."""
        return []

    def step(self, ready: dict) -> bool:
        """Do one unit of work; ``ready`` maps sockets to polled events. Return True if busy."""
        return False

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    # ---- helpers ---------------------------------------------------------------------
    def socket(self, kind: int, *, hwm: int | None = None) -> zmq.Socket:
        """A data socket with the run's high-water marks, time-outs and LINGER 0."""
        s = self.ctx.socket(kind)
        hwm = self.cfg.daq.hwm if hwm is None else hwm
        s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, hwm)
        s.setsockopt(zmq.SNDTIMEO, self.send_timeout)
        s.setsockopt(zmq.RCVTIMEO, self.send_timeout)
        s.setsockopt(zmq.LINGER, 0)
        return s

    @staticmethod
    def bind_socket(s: zmq.Socket, endpoint: str) -> str:
        s.bind(endpoint)
        return s.getsockopt_string(zmq.LAST_ENDPOINT)

    def send_with_deadline(self, s: zmq.Socket, frames: list, what: str) -> None:
        """Send on the non-lossy data path: retry (each try bounded by SNDTIMEO) until stall_timeout_s.

        Control commands keep being served while waiting, so a stop or exit is never blocked.
        """
        deadline = time.monotonic() + self.stall_timeout
        while True:
            try:
                s.send_multipart(frames, copy=False)
                return
            except zmq.Again:
                if time.monotonic() > deadline:
                    raise NodeError(f"{what}: no progress for {self.stall_timeout} s (stall_timeout_s)") from None
                self.serve_control(0)
                if self.state == "exiting":
                    raise NodeError(f"{what}: exit requested while blocked") from None

    def notify(self, notice: str, **data: Any) -> None:
        try:
            self.ctl.send(json.dumps({"notice": notice, "node": self.name, **data}).encode())
        except zmq.ZMQError:
            pass

    def notify_drained(self) -> None:
        if not self._drained_sent:
            self._drained_sent = True
            self.state = "drained"
            self.notify("drained", stats=self.full_stats())

    # ---- control ---------------------------------------------------------------------
    def serve_control(self, timeout_ms: int) -> None:
        if not self.ctl.poll(timeout_ms):
            return
        while True:
            try:
                msg = json.loads(self.ctl.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            self._handle(msg)

    def _handle(self, msg: dict) -> None:
        cmd = msg.get("cmd")
        reply: dict[str, Any] = {"reply": cmd, "node": self.name, "ok": True}
        try:
            if cmd == "bind":
                reply["endpoints"] = self.bind()
                self.state = "bound"
            elif cmd == "connect":
                self.connect(msg["endpoints"])
                self.state = "configured"
            elif cmd == "start":
                self.cpu_at_start = time.process_time()
                self.running = True
                self.state = "running"
                self.on_start()
            elif cmd == "stop":
                self.on_stop()
            elif cmd == "status":
                reply["stats"] = self.full_stats()
                reply["state"] = self.state
            elif cmd == "exit":
                self.state = "exiting"
            else:
                raise NodeError(f"unknown command {cmd!r}")
        except Exception as err:  # reported, then the node leaves the run
            reply.update(ok=False, error=f"{type(err).__name__}: {err}")
            self.state = "error"
        try:
            self.ctl.send(json.dumps(reply).encode())
        except zmq.ZMQError:
            pass

    def serve(self) -> None:
        self.notify("hello", pid=os.getpid())
        more = False
        # one poller while the node's socket set stays the same (building one per step cost
        # a few tens of microseconds, on every step of every node)
        poller: zmq.Poller = zmq.Poller()
        polled: list | None = None
        while self.state not in ("exiting", "error"):
            if os.getppid() != self._parent:
                break  # run control died: leave, never outlive the run
            want = self.sockets() if self.running else []
            if want != polled:
                poller = zmq.Poller()
                poller.register(self.ctl, zmq.POLLIN)
                for s, ev in want:
                    poller.register(s, ev)
                polled = want
            ready = dict(poller.poll(0 if more else 20))
            if self.ctl in ready:
                self.serve_control(0)
            more = False
            if self.running and self.state not in ("exiting", "error"):
                more = self.step(ready)

    def run(self) -> None:
        try:
            self.serve()
        except Exception as err:
            self.notify("error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(),
                        stats=self._safe_stats())
            # wait for the exit command so run control can still collect counters
            deadline = time.monotonic() + self.cfg.daq.command_timeout_s
            self.state = "error"
            while time.monotonic() < deadline and os.getppid() == self._parent:
                self.serve_control(100)
                if self.state == "exiting":
                    break
        finally:
            try:
                self.close()
            finally:
                self.ctx.destroy(linger=0)

    def full_stats(self) -> dict[str, Any]:
        """:meth:`stats` plus the process's CPU seconds (where the time goes).

        ``cpu_s``: since the process started (imports and numba loading included);
        ``cpu_run_s``: since the ``start`` command (data taking only; 0 before it).
        """
        cpu = time.process_time()
        run = 0.0 if self.cpu_at_start is None else cpu - self.cpu_at_start
        return {**self.stats(), "cpu_s": cpu, "cpu_run_s": run, "pid": os.getpid()}

    def _safe_stats(self) -> dict:
        try:
            return self.full_stats()
        except Exception:
            return {}


def node_main(kind: str, name: str, cfg: Config, control_endpoint: str, params: dict[str, Any]) -> None:
    """Entry point of a DAQ child process (multiprocessing 'spawn' target)."""
    # Ctrl-C reaches the whole process group: only run control decides how to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cls: type[Node]
    if kind == "board":
        from ._board import BoardGroupNode as cls
    elif kind == "trigger":
        from ._trigger_processor import TriggerProcessorNode as cls
    elif kind == "builder":
        from ._builder import EventBuilderNode as cls
    elif kind == "writer":
        from ._writer import WriterNode as cls
    else:
        raise ValueError(f"node kind {kind!r}")
    cls(cfg, name, control_endpoint, params).run()
