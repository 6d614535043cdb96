"""The live status page: HTTP (standard library) over the lossy monitoring stream of run control.

:func:`serve_status_page` subscribes to run control's monitoring PUB (``MONITOR_TOPIC``, one
snapshot per ``daq.monitor_interval_s``, with the writer's spectra and latest event under
``display``) and serves ``GET /`` (the page: HTML, CSS and self-written JavaScript drawing
inline SVG, nothing fetched from anywhere else) and ``GET /api/status`` (the same numbers as
JSON). The page's only link to the data path is that SUB socket with a small receive queue:
the publisher drops what a slow page does not take, so no page, browser or client can slow
a run. :class:`StatusModel` (socket-free) turns snapshots into the status; the HTTP server is
``http.server.ThreadingHTTPServer`` (a thread per request, at most ``MAX_REQUESTS`` at once,
every answer pre-encoded): a handful of GET routes need no framework (docs/daq.md,
"Status page").
"""

from __future__ import annotations

import collections
import http.server
import json
import socket
import threading
import time
from importlib import resources
from typing import Any

import zmq

from ._runcontrol import MONITOR_TOPIC

HISTORY_POINTS = 900  # rate history kept per run: 15 minutes at one snapshot a second
MAX_REQUESTS = 8  # requests served at once; more get 503 (a loop of reloads cannot pile up threads)
_RECEIVE_HWM = 4  # snapshots queued for the page at most; the PUB drops the others


class StatusModel:
    """The page's status from monitoring snapshots (``DaqRun.snapshot`` as published).

    :meth:`update` takes each snapshot; :attr:`status` is the ``/api/status`` document: the
    run's state and numbers, the rate history per trigger type (reset when the run number
    changes or the elapsed time goes back: a new run), per-board status, the builder's queues,
    rejections by reason, the spectra and the latest event, and the page's own counters
    (snapshots received and lost, from the snapshots' sequence numbers).
    """

    def __init__(self) -> None:
        self.snapshots = 0
        self.lost = 0  # snapshots missed (gaps in seq): the lossy PUB dropped them
        self.bad = 0  # messages that were not a snapshot (counted, skipped)
        self._seq: int | None = None
        self._run: int | None = None
        self._history: collections.deque = collections.deque(maxlen=HISTORY_POINTS)
        self._prev: tuple[float, dict[str, int]] | None = None
        self.status: dict[str, Any] = self._build(None)

    def update(self, snap: Any) -> None:
        """Take one snapshot (a decoded JSON object); anything else is counted in ``bad``."""
        if not isinstance(snap, dict) or not isinstance(snap.get("nodes"), dict):
            self.bad += 1
            self.status = {**self.status, "page": self._page()}
            return
        seq = snap.get("seq")
        run = snap.get("run_number")
        elapsed = float(snap.get("elapsed_s") or 0.0)
        if run != self._run or (self._prev is not None and elapsed < self._prev[0]):
            self._run, self._prev, self._seq = run, None, None  # a new run: a new history
            self._history.clear()
        if isinstance(seq, int):
            if self._seq is not None and seq > self._seq + 1:
                self.lost += seq - self._seq - 1
            self._seq = seq
        self.snapshots += 1
        types = snap["nodes"].get("trigger", {}).get("trigger_types", {})
        accepted = {name: int(t.get("accepted", 0)) for name, t in types.items()}
        rates = {name: 0.0 for name in accepted}
        if self._prev is not None and elapsed > self._prev[0]:
            dt = elapsed - self._prev[0]
            rates = {name: max(0, n - self._prev[1].get(name, 0)) / dt for name, n in accepted.items()}
            self._history.append((elapsed, rates))
        elif self._prev is None:
            self._history.append((elapsed, rates))
        self._prev = (elapsed, accepted)
        self.status = self._build(snap, rates)

    def _page(self) -> dict[str, int]:
        return {"snapshots_received": self.snapshots, "snapshots_lost": self.lost, "bad_messages": self.bad}

    def _build(self, snap: dict | None, rates: dict[str, float] | None = None) -> dict[str, Any]:
        page = self._page()
        if snap is None:
            return {"state": "waiting", "run_number": None, "page": page}
        beats = _heartbeats(snap.get("heartbeats"))
        if snap.get("between_runs"):
            # the service between runs: its state and cause and the nodes' heartbeats, no run's
            # numbers (the last run's would look live); its number is kept apart as the last one
            return {
                "state": snap.get("state"),
                "run_number": None,
                "last_run_number": snap.get("run_number"),
                "between_runs": True,
                "cause": snap.get("cause"),
                "time": snap.get("time"),
                "heartbeats": beats,
                "boards": _boards({}, beats),
                "page": page,
            }
        nodes = snap["nodes"]
        trig = nodes.get("trigger", {})
        build = nodes.get("builder", {})
        writer = nodes.get("writer", {})
        display = snap.get("display") or {}
        types = {}
        for name, t in trig.get("trigger_types", {}).items():
            types[name] = {k: t.get(k, 0) for k in ("bit", "accepted", "candidates", "lost_dead_time", "lost_busy")}
            types[name]["rate_hz"] = (rates or {}).get(name, 0.0)
        history = {
            "elapsed_s": [t for t, _ in self._history],
            "rate_hz": {name: [r.get(name, 0.0) for _, r in self._history] for name in types},
        }
        return {
            "state": snap.get("state"),
            "run_number": snap.get("run_number"),
            "between_runs": False,
            "cause": snap.get("cause"),
            "time": snap.get("time"),
            "elapsed_s": snap.get("elapsed_s", 0.0),
            "events_issued": trig.get("events_issued", 0),
            "events_built": build.get("events_built", 0),
            "events_incomplete": build.get("events_incomplete", 0),
            "events_written": snap.get("events_written", 0),
            "event_rate_hz": snap.get("event_rate_hz", 0.0),
            "live_fraction": snap.get("live_fraction"),
            "busy_ticks": trig.get("busy_ticks", 0),
            "dead_ticks": trig.get("dead_ticks", 0),
            "trigger_types": types,
            "rate_history": history,
            "boards": _boards(nodes, beats),
            "heartbeats": beats,
            "processes": {n: {"pid": s.get("pid"), "cpu_s": s.get("cpu_s", 0.0)} for n, s in nodes.items()},
            "builder": {
                k: build.get(k, 0)
                for k in (
                    "in_flight",
                    "in_flight_limit",
                    "max_in_flight",
                    "parked",
                    "park_limit",
                    "orphans_held",
                    "orphan_limit",
                    "events_timed_out",
                    "events_evicted_incomplete",
                )
            },
            "fragments_rejected": dict(build.get("rejected", {})),
            "events_rejected": dict(writer.get("events_rejected", {})),
            "spectra": display.get("spectra"),
            "latest_event": display.get("latest_event"),
            "display": {
                "events": display.get("events", 0),
                "sent": writer.get("display_messages_sent", 0),
                "dropped": writer.get("display_messages_dropped", 0),
                "received": snap.get("display_received", 0),
                "writer_cpu_s": writer.get("display_cpu_s", 0.0),
            },  # what the tap costs the writer
            "page": page,
        }


_BEAT_KEYS = ("last_heartbeat_s", "max_heartbeat_gap_s", "loop_age_s")


def _heartbeats(health: Any) -> dict[str, dict[str, Any]]:
    """Per node (``NodePool.health`` as published): its heartbeat status and figures.

    ``status`` is ``alive`` (process running, joined, heard within ``daq.heartbeat_timeout_s``),
    ``silent`` (joined, then not heard for longer: stopped, hung, host gone), ``exited`` (the
    process ended) or ``joining`` (not ready yet); ``alive`` is True for ``alive`` only.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, h in sorted(health.items()) if isinstance(health, dict) else ():
        if not isinstance(h, dict):
            continue
        status = (
            "exited"
            if not h.get("alive", True)
            else "silent"
            if h.get("silent")
            else "joining"
            if not h.get("ready", True)
            else "alive"
        )
        out[name] = {
            "kind": h.get("kind"),
            "pid": h.get("pid"),
            "status": status,
            "alive": status == "alive",
            "boards": list(h.get("boards") or []) if h.get("kind") == "board" else [],
            "heartbeats": h.get("heartbeats", 0),
            **{k: h.get(k) for k in _BEAT_KEYS},
        }
    return out


def _boards(nodes: dict[str, dict], beats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per board: alive (the trigger processor's view), busy, silence, fragments, and the
    heartbeat of the node that holds it (``fe<k>``; the only row fields between runs)."""
    trig = nodes.get("trigger", {})
    live = set(trig.get("live_boards", []))
    dead = trig.get("dead_boards", {})
    silence = trig.get("board_silence_s", {})
    holder = {b: n for n, h in beats.items() for b in h["boards"]}
    rows: dict[int, dict[str, Any]] = {}
    for proc, st in sorted(nodes.items()):
        for b, x in st.get("boards", {}).items() if isinstance(st.get("boards"), dict) else ():
            rows[int(b)] = {
                "board": int(b),
                "process": proc,
                "alive": int(b) in live and b not in dead,
                "dead_reason": dead.get(b),
                "busy": bool(st.get("busy", False)) and not x.get("ended"),
                "last_message_s": silence.get(b),
                "slices": x.get("slices", 0),
                "busy_slices": x.get("busy_slices", 0),
                "ended": bool(x.get("ended")),
                "fragments_read_out": x.get("fragments_read_out", 0),
                "fragments_sent": x.get("fragments_sent", 0),
            }
    for b, proc in holder.items():
        rows.setdefault(b, {"board": b, "process": proc})
    for r in rows.values():
        h = beats.get(holder.get(r["board"], r["process"]))
        r["node_status"] = None if h is None else h["status"]
        r.update({k: None if h is None else h[k] for k in _BEAT_KEYS})
    return [rows[b] for b in sorted(rows)]


def _page_html() -> bytes:
    return resources.files(__package__).joinpath("status_page.html").read_bytes()


class StatusPage:
    """A running status page; :meth:`close` stops it. Made by :func:`serve_status_page`.

    Attributes
    ----------
    url
        ``http://HOST:PORT/`` of the page (the port the system chose for port 0).
    model
        The :class:`StatusModel` (its ``status`` is what ``/api/status`` serves).
    """

    def __init__(self, monitor_endpoint: str | None, host: str, port: int) -> None:
        self.model = StatusModel()
        self._lock = threading.Lock()
        self._json = json.dumps(self.model.status).encode()
        self._template = _page_html()
        self._stop = threading.Event()
        self._endpoints: list[str] = []  # to connect, by the receiving thread (it owns the socket)
        server = _Server6 if ":" in host else _Server
        self._http = server((host, port), _handler(self))
        if monitor_endpoint is not None:
            self.subscribe(monitor_endpoint)
        bound = self._http.server_address
        self.host = bound[0].decode() if isinstance(bound[0], bytes) else str(bound[0])
        self.port = int(bound[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/"
        self._threads = [
            threading.Thread(target=self._receive, name="pokerdaq-status-sub", daemon=True),
            threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, name="pokerdaq-status-http", daemon=True
            ),
        ]
        for t in self._threads:
            t.start()

    # ---- the monitoring stream -------------------------------------------------------------
    def subscribe(self, monitor_endpoint: str) -> None:
        """Follow ``monitor_endpoint`` from now on, instead of the one before (e.g. each new run's
        run control); the page's history starts again with the next run number."""
        with self._lock:
            self._endpoints.append(monitor_endpoint)

    def _receive(self) -> None:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, _RECEIVE_HWM)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, MONITOR_TOPIC)
        try:
            self._serve_sub(sub, [])
        finally:
            sub.close(0)
            ctx.term()

    def _serve_sub(self, sub: zmq.Socket, connected: list[str]) -> None:
        while not self._stop.is_set():
            with self._lock:
                todo, self._endpoints = self._endpoints[-1:], []
            for ep in todo:
                for old in connected:
                    try:
                        sub.disconnect(old)
                    except zmq.ZMQError:
                        pass  # already gone
                sub.connect(ep)
                connected[:] = [ep]
            if not sub.poll(200):
                continue
            last = None
            while True:  # everything queued, in order (the rate history needs each snapshot)
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) != 2:
                    self._take(b"")  # counted by the model as a bad message
                    continue
                if last is not None:
                    self._take(last)
                last = frames[1]
            if last is not None:
                self._take(last)

    def _take(self, body: bytes) -> None:
        try:
            snap = json.loads(body)
        except ValueError:
            snap = None
        with self._lock:
            self.model.update(snap)
            self._json = json.dumps(self.model.status).encode()

    # ---- what the server answers --------------------------------------------------------
    def status_json(self) -> bytes:
        """The ``/api/status`` body now."""
        with self._lock:
            return self._json

    def page(self) -> bytes:
        """The page, with the current status inline (drawn at once, then refreshed every second)."""
        data = self.status_json().replace(b"</", b"<\\/")
        return self._template.replace(b"/*STATUS*/null", data, 1)

    def wait_for(self, cond, timeout_s: float) -> bool:
        """Wait until ``cond(status)`` holds (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if cond(self.model.status):
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop serving and unsubscribe (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()
        for t in self._threads:
            t.join(5.0)

    def __enter__(self) -> StatusPage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


def _handler(page: StatusPage) -> type[http.server.BaseHTTPRequestHandler]:
    slots = threading.BoundedSemaphore(MAX_REQUESTS)

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "pokerdaq-status"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not slots.acquire(blocking=False):
                self._send(503, b"busy\n", "text/plain; charset=utf-8")
                return
            try:
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, page.page(), "text/html; charset=utf-8")
                elif path == "/api/status":
                    self._send(200, page.status_json(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")
            finally:
                slots.release()

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", _CSP)  # the browser fetches nothing from elsewhere
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no line per request on the run's console

    return Handler


def serve_status_page(monitor_endpoint: str | None, host: str = "127.0.0.1", port: int = 0) -> StatusPage:
    """Serve the live status page of the run(s) published on ``monitor_endpoint``.

    Parameters
    ----------
    monitor_endpoint
        Run control's monitoring PUB (``DaqRun.endpoints['monitor']``, printed by ``pokerdaq run``);
        None: none yet, give it later with :meth:`StatusPage.subscribe` (so that the address is
        bound, and a mistake in it reported, before any DAQ process starts).
    host
        Address to listen on: loopback unless told otherwise (the page has no authentication).
    port
        TCP port; 0 lets the system choose (see :attr:`StatusPage.url`).

    Returns
    -------
    StatusPage
        Serving in background threads until :meth:`StatusPage.close`: ``GET /`` the page,
        ``GET /api/status`` the same numbers as JSON (:class:`StatusModel`).

    Raises
    ------
    OSError
        The address cannot be bound (in use, not an address of this host).
    """
    return StatusPage(monitor_endpoint, host, port)
