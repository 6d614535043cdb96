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
finished, with final counters), ``error`` (with the reason) and ``heartbeat`` (every
``daq.heartbeat_interval_s``, :class:`ControlLink`, so a node that stops is seen). A node also
leaves on its own when its parent process disappears, so no orphan outlives a run.

A node process is a *host* (:func:`host_main`): it lives across runs, joins run control with
``ready`` and makes one :class:`Node` per run on ``open`` (with the run's parameters), which
serves the commands above until ``exit``; the host then says ``closed`` and waits for the next
``open`` or for ``shutdown``. The control DEALER and the heartbeat belong to the host
(:class:`ControlLink`), the data sockets to the run's node.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from typing import Any

import zmq

from pokerdaq.config import Config

from ._curve import CurveKeys, Guard, run_keys, secure_client, secure_server


class NodeError(RuntimeError):
    """A node cannot go on (stall time-out, protocol error); reported to run control."""


HEARTBEAT_SUFFIX = ".hb"
"""Identity suffix of a node's heartbeat DEALER (``fe0.hb``): run control maps it to the node."""


class ControlLink:
    """A node process's connection to run control: the DEALER (identity: the node name) and its heartbeat.

    The heartbeat is sent every ``daq.heartbeat_interval_s`` by a thread on its own DEALER
    (``NAME.hb``), so it says the *process* is alive and scheduled -- what a SIGSTOP, a crash
    or a lost host take away -- also while the main loop is in a long step (a first cache
    load, a loaded host). Each beat carries the age of the main loop's last turn
    (``loop_age_s``): a loop that is stuck shows there, and ends the run at ``stall_timeout_s``.

    Parameters
    ----------
    cfg
        Configuration (``daq.command_timeout_s``, ``daq.heartbeat_interval_s``).
    name
        Node name, the DEALER identity run control addresses it by.
    endpoint
        Run control's ROUTER.
    """

    def __init__(self, cfg: Config, name: str, endpoint: str, keys: CurveKeys | None = None) -> None:
        self.name = name
        self.keys = keys
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        if keys is not None:
            secure_client(self.sock, keys)
        self.sock.setsockopt(zmq.IDENTITY, name.encode())
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDTIMEO, int(cfg.daq.command_timeout_s * 1000))
        self.sock.connect(endpoint)
        self.interval = cfg.daq.heartbeat_interval_s
        self.last_turn = time.monotonic()
        self.beats = 0
        self._stop = threading.Event()
        self._beat_sock = self.ctx.socket(zmq.DEALER)
        self._beat_sock.setsockopt(zmq.IDENTITY, (name + HEARTBEAT_SUFFIX).encode())
        self._beat_sock.setsockopt(zmq.LINGER, 0)
        self._beat_sock.setsockopt(zmq.SNDHWM, 4)  # beats of a run control that is away are dropped
        if keys is not None:
            secure_client(self._beat_sock, keys)
        self._beat_sock.connect(endpoint)
        self._thread = threading.Thread(target=self._beat_loop, name=f"{name}-heartbeat", daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        # this socket is used by this thread only (ZeroMQ sockets are not thread-safe)
        while True:
            self.beats += 1
            msg = {
                "notice": "heartbeat",
                "node": self.name,
                "n": self.beats,
                "loop_age_s": round(time.monotonic() - self.last_turn, 3),
            }
            try:
                self._beat_sock.send(json.dumps(msg).encode(), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # run control away or slow: the beat is lost, the next one tells
            if self._stop.wait(self.interval):
                break
        self._beat_sock.close(0)

    def notify(self, notice: str, **data: Any) -> None:
        try:
            self.sock.send(json.dumps({"notice": notice, "node": self.name, **data}).encode())
        except zmq.ZMQError:
            pass

    def beat(self) -> None:
        """The main loop made a turn (called from every turn)."""
        self.last_turn = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sock.close()
        self.ctx.term()


class Node:
    """Base class: subclasses implement :meth:`bind`, :meth:`connect`, :meth:`step` and :meth:`stats`."""

    def __init__(self, cfg: Config, name: str, control: str | ControlLink, params: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name = name
        self.params = params
        # the control link is the host's when it lives across runs; a bare endpoint: this node's own
        self._own_link = not isinstance(control, ControlLink)
        self.link = ControlLink(cfg, name, control, run_keys(cfg, [control])) if isinstance(control, str) else control
        self.ctl = self.link.sock
        self.ctx = zmq.Context()  # the data sockets of this run only
        self.keys = self.link.keys
        self.guard = Guard(self.ctx, self.keys, name) if self.keys is not None else None
        self.state = "idle"
        self.running = False
        self._parent = os.getppid()
        self._drained_sent = False
        self.send_timeout = cfg.daq.send_timeout_ms
        self.stall_timeout = cfg.daq.stall_timeout_s
        self.cpu_at_start: float | None = None  # process CPU seconds when data taking began

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
        if self.keys is not None:
            secure_client(s, self.keys)  # made a server by bind_socket when it binds
        return s

    @staticmethod
    def need(s: zmq.Socket | None, what: str) -> zmq.Socket:
        """A data socket that ``bind`` or ``connect`` made; NodeError if it was not (a command out of order)."""
        if s is None:
            raise NodeError(f"{what}: socket not made yet (bind and connect come before start)")
        return s

    def bind_socket(self, s: zmq.Socket, endpoint: str) -> str:
        if self.keys is not None:
            secure_server(s, self.keys)
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
        self.link.beat()
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
            self.link.beat()
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
            exiting = self.state == "exiting"  # the exit command itself ended a blocked send
            self.notify(
                "error",
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
                stats=self._safe_stats(),
            )
            # wait for the exit command so run control can still collect counters
            deadline = time.monotonic() + self.cfg.daq.command_timeout_s
            self.state = "exiting" if exiting else "error"
            while not exiting and time.monotonic() < deadline and os.getppid() == self._parent:
                self.serve_control(50)
                if self.state == "exiting":
                    break
        finally:
            try:
                self.close()
            finally:
                if self.guard is not None:
                    self.guard.stop()
                self.ctx.destroy(linger=0)
                if self._own_link:
                    self.link.close()

    def full_stats(self) -> dict[str, Any]:
        """:meth:`stats` plus the process's CPU seconds (where the time goes).

        ``cpu_s``: since the process started (imports and numba loading included);
        ``cpu_run_s``: since the ``start`` command (data taking only; 0 before it).
        """
        cpu = time.process_time()
        run = 0.0 if self.cpu_at_start is None else cpu - self.cpu_at_start
        out = {**self.stats(), "cpu_s": cpu, "cpu_run_s": run, "pid": os.getpid()}
        if self.guard is not None:
            out["curve_refused"] = self.guard.refused
        return out

    def _safe_stats(self) -> dict:
        try:
            return self.full_stats()
        except Exception:
            return {}


NODE_KINDS = ("board", "trigger", "builder", "writer")


def node_class(kind: str, cfg: Config) -> type[Node]:
    """The :class:`Node` subclass of a process kind (``board``, ``trigger``, ``builder``, ``writer``)
    for the configuration's ``daq.mode``."""
    cls: type[Node]
    if cfg.daq.mode == "streaming" and kind in ("board", "builder", "writer"):
        from . import _streaming  # trigger-less: L0 hits instead of readout (docs/daq.md "Streaming")

        cls = {
            "board": _streaming.StreamBoardGroupNode,
            "builder": _streaming.StreamBuilderNode,
            "writer": _streaming.StreamWriterNode,
        }[kind]
    elif kind == "board":
        from ._board import BoardGroupNode as cls
    elif kind == "trigger":
        from ._trigger_processor import TriggerProcessorNode as cls
    elif kind == "builder":
        from ._builder import EventBuilderNode as cls
    elif kind == "writer":
        from ._writer import WriterNode as cls
    else:
        raise ValueError(f"node kind {kind!r}")
    return cls


def _quiet_signals() -> None:
    # Ctrl-C reaches the whole process group: only run control decides how to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def node_main(kind: str, name: str, cfg: Config, control_endpoint: str, params: dict[str, Any]) -> None:
    """Entry point of a DAQ child process for one run (multiprocessing 'spawn' target)."""
    _quiet_signals()
    node_class(kind, cfg)(cfg, name, control_endpoint, params).run()


def host_main(
    kind: str,
    name: str,
    cfg: Config,
    control_endpoint: str,
    root: str | None = None,
    orphan_check: bool = True,
    boards: list[int] | None = None,
    bind_host: str | None = None,
) -> None:
    """Entry point of a node process that lives across runs (module docstring): ``ready``, then
    per run ``open`` (a :class:`Node` with the run's parameters) ... ``exit`` -> ``closed``.

    Parameters
    ----------
    root
        The folder the writer may write in: an ``open`` whose ``output`` lies outside is refused.
    orphan_check
        Leave when the parent process goes (a child of run control); off for a node started on
        its own (``pokerdaq node``), which also leaves on Ctrl-C.
    boards
        The boards of a front-end or trigger node (told in ``ready``: run control checks them).
    bind_host
        Bind this node's tcp server sockets on this address (a node on another host) instead
        of the address in the run's endpoints.
    """
    from pokerdaq.config import loads_config

    from ._protocol import check_open

    if orphan_check:
        _quiet_signals()
    cls = node_class(kind, cfg)  # warm-up; each run's node is of its own configuration's mode
    link = ControlLink(cfg, name, control_endpoint, run_keys(cfg, [control_endpoint]))
    parent = os.getppid()
    try:
        _warm_up(cls, kind, name, cfg, link, boards or [], root)
        link.notify("ready", pid=os.getpid(), kind=kind, boards=boards or [], host=bind_host or os.uname().nodename)
        while not (orphan_check and os.getppid() != parent):
            link.beat()
            if not link.sock.poll(50):
                continue
            try:
                msg = json.loads(link.sock.recv())
            except ValueError:
                continue
            cmd = msg.get("cmd") if isinstance(msg, dict) else None
            if cmd in ("shutdown", "exit"):
                break
            if cmd == "status":
                link.notify("idle")
                continue
            if cmd != "open":
                link.notify("refused", error=f"command {cmd!r} while no run is open")
                continue
            try:
                params = check_open(kind, msg.get("params"), root)
                text = params.pop("config")
                # the run's own configuration (run control's, with its number and seed: the
                # file's config_toml says them); a node on another host takes it from here too
                base = loads_config(text, "run control") if text else cfg
                run_cfg = base.replace(run={"run_number": params["run_number"], "seed": params["seed"]})
                if bind_host is not None:
                    params["endpoints"] = {k: _on_host(e, bind_host) for k, e in params["endpoints"].items()}
                node = node_class(kind, run_cfg)(run_cfg, name, link, params)
            except Exception as err:  # reported; the host stays for the next try
                link.sock.send(
                    json.dumps(
                        {"reply": "open", "node": name, "ok": False, "error": f"{type(err).__name__}: {err}"}
                    ).encode()
                )
                continue
            node._parent = parent if orphan_check else os.getppid()
            node.run()
            link.notify("closed")
    finally:
        link.close()


def _warm_up(
    cls: type[Node], kind: str, name: str, cfg: Config, link: ControlLink, boards: list[int], root: str | None
) -> None:
    """Make (and drop) one node of this kind before joining: its front ends and trigger logic
    compile or load their numba kernels now (seconds to minutes with a cold cache), while the
    service is configured, not in the first run's start. Nothing is bound, no file is opened."""
    params: dict[str, Any] = {
        "run_number": cfg.run.run_number,
        "seed": cfg.run.seed,
        "endpoints": {},
        "boards": boards,
        "max_events": None,
        "overwrite": False,
        "output": os.path.join(root or ".", "warm-up.h5"),
    }
    node = cls(cfg, name, link, params)
    if node.guard is not None:
        node.guard.stop()
    node.ctx.destroy(linger=0)


def _on_host(endpoint: str, host: str) -> str:
    """A tcp endpoint to bind with its address replaced by ``host`` (the port kept)."""
    if not endpoint.startswith("tcp://"):
        return endpoint
    port = endpoint.rsplit(":", 1)[1]
    return f"tcp://{host}:{port}"
