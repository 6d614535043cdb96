"""The run-control service (``pokerdaq daq serve``): node processes started once, run after run.

One process holds the node pool (:class:`~pokerdaq.daq._pool.NodePool`: the nodes' control
ROUTER, the monitoring PUB and the node processes), the run registry of the output folder
and a client ROUTER for ``pokerdaq daq start|stop|wait|status|reset|shutdown``. Its socket
loop serves clients, drives the current run (:class:`~pokerdaq.daq.DaqRun` on the pool) and
watches the nodes' health between runs; every decision goes through the socket-free
:class:`~pokerdaq.daq._states.ServiceStateMachine`.

The client endpoint and the process id are in ``DIR/daq-service.json`` (written once the
socket is bound, removed at shutdown); ``DIR/daq-service.lock`` (``flock``) keeps a second
service out of the folder. Requests are checked by :func:`~pokerdaq.daq._protocol.parse_request`;
a refused one gets an error reply and is counted (``rejected_requests`` in ``status``).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import zmq

from pokerdaq.config import Config

from ._curve import CurveError, Guard, run_keys, secure_server
from ._pool import NodePool, node_specs
from ._protocol import ProtocolError, parse_request
from ._registry import RunRegistry
from ._runcontrol import MONITOR_TOPIC, DaqRun, RunControlError
from ._states import ServiceStateMachine, TransitionError

ENDPOINT_FILE = "daq-service.json"
LOCK_FILE = "daq-service.lock"


class ServiceError(RuntimeError):
    """The service cannot start (folder taken by another service, endpoint not bindable)."""


class DaqService:
    """The service's state and socket loop; :meth:`serve_forever` until ``shutdown``.

    Parameters
    ----------
    cfg
        Configuration of every run (``run.run_number`` is the first run number of an empty registry).
    output
        The output folder: run files, the registry, the endpoint file.
    control
        Client endpoint to bind (default ``tcp://127.0.0.1:*``: a free loopback port).
    """

    def __init__(self, cfg: Config, output: str | Path, control: str | None = None) -> None:
        self.cfg = cfg
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.output / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise ServiceError(f"--output {self.output}: another pokerdaq daq serve runs in this folder") from None
        self.sm = ServiceStateMachine()
        self.registry = RunRegistry(self.output)
        self.lost = self.registry.mark_lost()
        try:
            self.pool = NodePool(cfg, self.output)
        except CurveError as err:
            self.registry.close()
            os.close(self._lock)
            raise ServiceError(str(err)) from None
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        self.guard: Guard | None = None
        try:
            keys = run_keys(cfg, [control or ""])
        except CurveError as err:
            self.close()
            raise ServiceError(str(err)) from None
        if keys is not None:
            self.guard = Guard(self.ctx, keys, "service clients")
            secure_server(self.sock, keys)
        try:
            self.sock.bind(control or "tcp://127.0.0.1:*")
        except zmq.ZMQError as err:
            self.close()
            raise ServiceError(f"--control {control}: {err}") from None
        self.control = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._poller = zmq.Poller()
        self._poller.register(self.sock, zmq.POLLIN)
        self._poller.register(self.pool.sock, zmq.POLLIN)
        self.run: DaqRun | None = None
        self._next_monitor = 0.0
        self.last_summary: dict[str, Any] | None = None
        self.rejected_requests = 0
        self.requests = 0
        self.restarted: list[str] = []
        self.log: list[str] = []  # one line per run start and end, for ``pokerdaq daq serve`` to print
        self._unhealthy: set[str] = set()
        self._waiters: list[tuple[bytes, str, float | None]] = []  # (client, what, deadline)
        self._join_deadline = time.monotonic() + cfg.daq.start_timeout_s
        self._start_after_join: list[tuple[bytes, dict[str, Any]]] = []
        specs = node_specs(cfg)
        unknown = sorted(set(cfg.daq.remote_nodes) - {n for n, _k, _b in specs})
        if unknown:
            self.close()
            raise ServiceError(
                f"daq.remote_nodes: {unknown} are not nodes of this configuration "
                f"(those are {', '.join(n for n, _k, _b in specs)})"
            )
        for name, kind, boards in specs:
            if name in cfg.daq.remote_nodes:
                self.pool.expect(name, kind, boards)  # started on its own: `pokerdaq node`
            else:
                self.pool.spawn(name, kind, boards)
        self.info = {
            "control": self.control,
            "nodes": self.pool.control,
            "monitor": self.pool.monitor,
            "pid": os.getpid(),
            "output": str(self.output.resolve()),
            "curve_keys": str(Path(cfg.daq.curve_keys).resolve()) if keys is not None else None,
        }
        tmp = self.output / (ENDPOINT_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info) + "\n")
        tmp.replace(self.output / ENDPOINT_FILE)  # whole or absent for a client that reads it

    # ---- the loop -----------------------------------------------------------------------------
    def serve_forever(self, stop_flag: Any = None) -> None:
        """Serve until ``shutdown`` (or ``stop_flag()`` is true: a signal); then close everything."""
        try:
            while self.sm.state != "shutdown":
                if stop_flag is not None and stop_flag():
                    self._shutdown()
                    break
                self.step(0.02)
        finally:
            self.close()

    def step(self, timeout_s: float) -> None:
        """One turn: client requests, the run or the nodes' health, the waiters."""
        ready = dict(self._poller.poll(int(timeout_s * 1000)))
        if self.sock in ready:
            self._serve_clients()
        if self.run is not None:
            self.run.poll(0.0)
            if self.run.state == "draining" and self.sm.state == "running":
                self.sm.stopping()
            if self.run.state in ("stopped", "error"):
                self._end_run()
        else:
            self.pool.receive(0.0)  # heartbeats, late notices of closed runs
            self._watch_idle()
            self._publish_idle()
        self._answer_waiters()

    def _publish_idle(self) -> None:
        """Between runs, the monitoring stream says the service's state and the nodes' health
        (during a run the run's snapshots do, with the same keys)."""
        now = time.monotonic()
        if now < self._next_monitor:
            return
        self._next_monitor = now + self.cfg.daq.monitor_interval_s
        last = self.last_summary or {}
        snap = {
            "time": time.time(),
            "state": self.sm.state,
            "run_number": self.sm.run_number,
            "elapsed_s": 0.0,
            "events_written": last.get("events_written", 0),
            "event_rate_hz": 0.0,
            "live_fraction": None,
            "nodes": {},
            "heartbeats": self.pool.health(),
            "cause": self.sm.cause,
            "between_runs": True,
        }
        try:
            self.pool.pub.send_multipart([MONITOR_TOPIC, json.dumps(snap).encode()], zmq.NOBLOCK)
        except zmq.Again:
            pass  # lossy by design

    def _watch_idle(self) -> None:
        st = self.sm.state
        if st == "idle":
            missing = [n for n, h in self.pool.hosts.items() if not h.ready]
            dead = {n: c for n, c in self.pool.died().items() if n in missing}
            if dead:
                self.sm.failed("; ".join(f"node {n} died with exit code {c} before joining" for n, c in dead.items()))
                self._unhealthy |= set(dead)
            elif not missing:
                self.sm.joined()
                for client, fields in self._start_after_join:
                    self._reply(client, self._start(fields))
                self._start_after_join = []
            elif time.monotonic() > self._join_deadline:
                self.sm.failed(
                    f"timed out after {self.cfg.daq.start_timeout_s} s waiting for nodes to join: " + ", ".join(missing)
                )
                self._unhealthy |= set(missing)
        elif st == "configured":
            died = self.pool.died()
            silent = self.pool.silent()
            if died or silent:
                why = [f"node {n} died with exit code {c}" for n, c in died.items()]
                why += [
                    f"{n} silent: no heartbeat for {s:.1f} s (daq.heartbeat_timeout_s = "
                    f"{self.cfg.daq.heartbeat_timeout_s})"
                    for n, s in silent.items()
                ]
                self.sm.failed("; ".join(why))
                self._unhealthy |= set(died) | set(silent)
        if self.sm.state == "error":
            for client, _ in self._start_after_join:
                self._reply(client, {"ok": False, "error": f"start: {self.sm.cause}"})
            self._start_after_join = []

    # ---- clients ----------------------------------------------------------------------------
    def _serve_clients(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.requests += 1
            if len(frames) != 3 or frames[1] != b"":
                self.rejected_requests += 1  # not a REQ envelope: nothing to answer to
                if len(frames) >= 2:
                    self._reply(frames[0], {"ok": False, "error": "expected one frame, a JSON request (a REQ socket)"})
                continue
            client, body = frames[0], frames[2]
            try:
                cmd, fields = parse_request(body)
                self.sm.check(cmd)
            except (ProtocolError, TransitionError) as err:
                self.rejected_requests += 1
                self._reply(client, {"ok": False, "error": str(err), "state": self.sm.state})
                continue
            self._handle(client, cmd, fields)

    def _handle(self, client: bytes, cmd: str, fields: dict[str, Any]) -> None:
        if cmd == "status":
            self._reply(client, {"ok": True, **self.status()})
        elif cmd == "start":
            if self.sm.state == "idle":
                self._start_after_join.append((client, fields))  # answered once the nodes joined
            else:
                self._reply(client, self._start(fields))
        elif cmd == "stop":
            assert self.run is not None
            self.run.stop()
            if self.sm.state == "running":
                self.sm.stopping()
            self._waiters.append((client, "run", time.monotonic() + self._drain_budget()))
        elif cmd == "wait":
            t = fields.get("timeout")
            self._waiters.append(
                (client, "run" if self.run is not None else "join", None if t is None else time.monotonic() + t)
            )
        elif cmd == "reset":
            self._reply(client, self._reset())
        elif cmd == "shutdown":
            self._shutdown()
            self._reply(client, {"ok": True, **self.status()})

    def _drain_budget(self) -> float:
        d = self.cfg.daq
        return 2 * (d.stall_timeout_s + d.builder_timeout_s + d.command_timeout_s)

    def _reply(self, client: bytes, msg: dict[str, Any]) -> None:
        try:
            self.sock.send_multipart([client, b"", json.dumps(msg).encode()])
        except zmq.ZMQError:
            pass  # the client went away

    def _answer_waiters(self) -> None:
        keep = []
        now = time.monotonic()
        for client, what, deadline in self._waiters:
            done = (self.run is None) if what == "run" else self.sm.state != "idle"
            if done:
                self._reply(client, {"ok": True, **self.status()})
            elif deadline is not None and now > deadline:
                self._reply(
                    client, {"ok": False, "error": f"wait: timed out (state {self.sm.state})", "state": self.sm.state}
                )
            else:
                keep.append((client, what, deadline))
        self._waiters = keep

    # ---- runs -------------------------------------------------------------------------------
    def _start(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self.sm.state != "configured":
            return {"ok": False, "error": f"start in state {self.sm.state!r}: {self.sm.cause}", "state": self.sm.state}
        seed = int(fields.get("seed", self.cfg.run.seed))
        number = self.registry.begin(self.cfg.text, seed, self.cfg.run.run_number)
        run = DaqRun(
            self.cfg,
            self.output,
            seed=seed,
            max_events=fields.get("events"),
            duration_s=fields.get("duration"),
            pool=self.pool,
            run_number=number,
        )
        self.run = run
        self.sm.started(number)
        try:
            run.configure()
            run.start()
        except RunControlError as err:
            if str(err) not in run.errors:
                run.errors.append(str(err))
            run.state = "error"
            self._end_run()
            return {"ok": False, "error": f"run {number}: {err}", "state": self.sm.state, "run_number": number}
        self.log.append(
            f"run {number} running (seed {seed}, events {fields.get('events')}, "
            f"duration {fields.get('duration')}), output {run.output}"
        )
        return {"ok": True, "state": "running", "run_number": number, "output": str(run.output)}

    def _end_run(self) -> None:
        run = self.run
        assert run is not None
        ok = run.state == "stopped"
        cause = None if ok else ("; ".join(run.errors) or "unknown")
        summary = run.summary()
        run.close()
        # the nodes whose run did not end cleanly are restarted by reset; the others are kept
        self._unhealthy |= {
            n
            for n, p in run.procs.items()
            if p.died is not None or (p.hello and not p.closed) or p.exitcode() is not None
        }
        if ok and self._unhealthy:  # e.g. a board that died, the run went on without it
            ok = False
            cause = "; ".join(run.errors) or f"nodes not healthy after the run: {', '.join(sorted(self._unhealthy))}"
        self.registry.finish(run.run_number, "stopped" if ok else "error", cause, summary)
        self.last_summary = summary
        self.log.append(
            f"run {run.run_number} {'stopped' if ok else 'error'}: {summary['events_written']} events "
            f"written" + (f"; cause: {cause}" if cause else "")
        )
        self.run = None
        if ok:
            self.sm.ended()
        else:
            self.sm.failed(f"run {run.run_number}: {cause}")

    def _reset(self) -> dict[str, Any]:
        if self.sm.state == "configured":
            return {"ok": True, "state": "configured", "restarted": []}
        silent = set(self.pool.silent())
        bad = sorted(self._unhealthy | set(self.pool.died()) | silent)
        for name in bad:
            self.pool.restart(name)
        self.restarted = bad
        self._unhealthy = set()
        self.sm.reset()
        self._join_deadline = time.monotonic() + self.cfg.daq.start_timeout_s
        # wait here for the restarted ones (a reset returns 'configured', or says why not)
        while self.sm.state == "idle":
            self.pool.receive(0.05)
            self._watch_idle()
        return {
            "ok": self.sm.state == "configured",
            "state": self.sm.state,
            "restarted": bad,
            **({"error": f"reset: {self.sm.cause}"} if self.sm.state != "configured" else {}),
        }

    def _shutdown(self) -> None:
        if self.run is not None:
            self.run.stop()
            deadline = time.monotonic() + self._drain_budget()
            while self.run.state not in ("stopped", "error") and time.monotonic() < deadline:
                self.run.poll(0.05)
            if self.run.state not in ("stopped", "error"):
                self.run.errors.append("shutdown: drain did not finish in time")
                self.run.state = "error"
            self._end_run()
        self.sm.shutdown()
        for client, _what, _d in self._waiters:
            self._reply(client, {"ok": True, **self.status()})
        self._waiters = []

    # ---- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``pokerdaq daq status`` shows: state, run number, cause, the run's counters, the nodes."""
        nodes = self.pool.health()
        out: dict[str, Any] = {
            "state": self.sm.state,
            "run_number": self.sm.run_number,
            "cause": self.sm.cause,
            "runs_started": self.sm.runs_started,
            "requests": self.requests,
            "rejected_requests": self.rejected_requests,
            "restarted": self.restarted,
            "nodes": nodes,
            "refused_nodes": list(self.pool.refused),
            "curve": self.guard is not None,
            "curve_refused": {
                "service": self.guard.refused if self.guard else 0,
                "run_control": self.pool.guard.refused if self.pool.guard else 0,
            },
            "control": self.control,
            "node_control": self.pool.control,
            "monitor": self.pool.monitor,
        }
        if self.run is not None:
            snap = self.run.snapshot()
            out["run"] = {
                k: snap[k] for k in ("state", "elapsed_s", "events_written", "event_rate_hz", "live_fraction")
            }
        elif self.last_summary is not None:
            s = self.last_summary
            out["last_run"] = {
                k: s[k]
                for k in (
                    "run_number",
                    "state",
                    "events_issued",
                    "events_written",
                    "events_incomplete",
                    "files",
                    "errors",
                    "wall_s",
                    "silent",
                )
            }
        return out

    def close(self) -> None:
        """End the nodes, free the sockets, remove the endpoint file, free the folder."""
        if self._lock < 0:
            return
        if self.run is not None:
            self.run.close()
            self.run = None
        if hasattr(self, "pool"):
            self.pool.close()
        if hasattr(self, "sock"):
            self.sock.close(0)
            if getattr(self, "guard", None) is not None:
                self.guard.stop()  # type: ignore[union-attr]
            self.ctx.term()
        (self.output / ENDPOINT_FILE).unlink(missing_ok=True)
        self.registry.close()
        os.close(self._lock)
        self._lock = -1
