"""The run-control service with real processes: a session of runs, a node stopped (SIGSTOP), reset.

``pokerdaq daq serve`` runs as its own process; the clients are ``pokerdaq daq ...`` (the
CLI's main) and raw ZeroMQ sockets. Deadlines everywhere, no sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import zmq
from _daqhelpers import browser, dom_value, fast_config

from pokerdaq.cli import main
from pokerdaq.daq._client import find_control, find_keys, request
from pokerdaq.daq._monitor import read_monitor
from pokerdaq.daq._registry import RunRegistry
from pokerdaq.daq._runcontrol import DaqRun
from pokerdaq.io import RunFile

OVERLAY = """
[daq]
front_end = "synthetic"
trigger_logic = "synthetic"
boards_per_process = 6
builder_timeout_s = 1.0
board_timeout_s = 1.5
stall_timeout_s = 10.0
command_timeout_s = 30.0
monitor_interval_s = 0.2
"""


class Service:
    """``pokerdaq daq serve`` as a child process; always ended."""

    def __init__(self, tmp_path: Path, out: Path, overlay: str = OVERLAY, http: bool = False) -> None:
        cfg = tmp_path / "service.toml"
        cfg.write_text(overlay)
        self.out = out
        self.http = http
        self.page: str | None = None
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pokerdaq.cli",
                "daq",
                "serve",
                "--config",
                str(cfg),
                "--output",
                str(out),
                *(["--http", "127.0.0.1:0"] if http else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_configured(self, timeout_s: float = 120.0) -> dict:
        # the first line comes once the endpoint file is written (or '' when serve ended)
        first = self.proc.stdout.readline()
        assert "control tcp://127.0.0.1:" in first, first + self.proc.communicate()[0]
        if self.http:
            line = self.proc.stdout.readline()
            assert "status page http://127.0.0.1:" in line, line
            self.page = line.split("status page ")[1].split()[0]
        return self.call("wait", timeout=timeout_s)

    def page_status(self) -> dict:
        assert self.page is not None
        with urllib.request.urlopen(self.page + "api/status", timeout=30) as r:
            return json.loads(r.read())

    def call(self, cmd: str, **fields) -> dict:
        return request(find_control(self.out, None), cmd, 60.0, find_keys(self.out, None), **fields)

    def close(self) -> str:
        if self.proc.poll() is None:
            try:
                self.call("shutdown")
            except Exception:
                self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.timeout(300)
def test_service_session_runs_errors_reset_and_restart(tmp_path, capsys):
    out = tmp_path / "out"
    svc = Service(tmp_path, out, http=True)
    try:
        st = svc.wait_configured()
        assert st["state"] == "configured" and st["run_number"] is None
        pids = {n: v["pid"] for n, v in st["nodes"].items()}
        assert set(pids) == {"writer", "builder", "trigger", "fe0", "fe1"}
        # between runs the monitoring stream carries the service's state and the nodes' health
        [snap] = read_monitor(st["monitor"], 1, 30)
        assert snap["state"] == "configured" and set(snap["heartbeats"]) == set(pids)
        # three runs, each way of ending one
        o = ["--output", str(out)]
        assert "run 1 running" in _cli(capsys, "daq", "start", *o, "--events", "200")
        assert "last run 1: stopped, 200 events written" in _cli(capsys, "daq", "wait", *o)
        assert "run 2 running" in _cli(capsys, "daq", "start", *o)
        # a start while running, and requests outside the protocol: refused, counted, nothing happens
        assert main(["daq", "start", *o]) == 2
        assert "start in state 'running'" in capsys.readouterr().err
        endpoint = find_control(out, None)
        with zmq.Context() as ctx:
            req = ctx.socket(zmq.REQ)
            req.connect(endpoint)
            req.send(b'{"cmd": "start", "output": "/etc/passwd"}')
            assert "unknown field 'output'" in json.loads(req.recv())["error"]
            req.send(b"not json")
            assert not json.loads(req.recv())["ok"]
            raw = ctx.socket(zmq.DEALER)  # not a REQ envelope
            raw.connect(endpoint)
            raw.send(b'{"cmd": "shutdown"}')
            assert raw.poll(30_000) and not json.loads(raw.recv_multipart()[-1])["ok"]
            req.close(0)
            raw.close(0)
        st = svc.call("status")
        assert st["state"] == "running" and st["run_number"] == 2 and st["rejected_requests"] == 4
        deadline = time.monotonic() + 60
        while svc.call("status")["run"]["events_written"] == 0:
            assert time.monotonic() < deadline
        # the service's status page follows its runs (one monitoring stream for all of them)
        deadline = time.monotonic() + 60
        while (page := svc.page_status())["run_number"] != 2 or page["state"] != "running":
            assert time.monotonic() < deadline, page
        assert "last run 2: stopped" in _cli(capsys, "daq", "stop", *o)
        _cli(capsys, "daq", "start", *o, "--duration", "1")
        st = svc.call("wait")
        assert st["state"] == "configured" and st["last_run"]["state"] == "stopped"
        assert {n: v["pid"] for n, v in st["nodes"].items()} == pids  # the same processes, run after run

        # a board process stopped mid-run: the run goes to error naming it
        svc.call("start")
        t0 = time.monotonic()
        os.kill(pids["fe1"], signal.SIGSTOP)
        deadline = t0 + 60
        while (st := svc.call("status"))["state"] != "error":
            assert time.monotonic() < deadline, st
        detected_s = time.monotonic() - t0
        assert "fe1 silent: no heartbeat for" in st["cause"] and st["run_number"] == 4, st["cause"]
        with capsys.disabled():
            print(f"\nSIGSTOP of fe1 -> state error after {detected_s:.2f} s (client's view); cause: {st['cause']}")
        assert main(["daq", "start", *o]) == 2  # error: reset first
        assert "reset first" in capsys.readouterr().err
        # reset restarts fe1 only; the healthy processes stay
        r = svc.call("reset")
        assert r["state"] == "configured" and r["restarted"] == ["fe1"]
        st = svc.call("status")
        new = {n: v["pid"] for n, v in st["nodes"].items()}
        assert new["fe1"] != pids["fe1"] and {n: p for n, p in new.items() if n != "fe1"} == {
            n: p for n, p in pids.items() if n != "fe1"
        }
        svc.call("start", events=150)
        st = svc.call("wait")
        assert st["last_run"]["state"] == "stopped" and st["last_run"]["events_written"] == 150
        assert "shut down" in svc.close()
        assert not (out / "daq-service.json").exists()

        # a new service in the folder goes on with the run numbers
        svc = Service(tmp_path, out)
        svc.wait_configured()
        assert svc.call("start", events=50)["run_number"] == 6
        assert svc.call("wait")["last_run"]["events_written"] == 50
        svc.close()
    finally:
        log = svc.close()
    with RunRegistry(out) as reg:
        rows = reg.rows()
    assert [(r["run_number"], r["end_state"]) for r in rows] == [
        (1, "stopped"),
        (2, "stopped"),
        (3, "stopped"),
        (4, "error"),
        (5, "stopped"),
        (6, "stopped"),
    ], log
    assert "fe1 silent" in rows[3]["cause"]
    assert len({r["config_hash"] for r in rows}) == 1
    for r in rows:
        if r["end_state"] == "stopped":
            [path] = r["files"]
            with RunFile(path) as f:
                assert f.closed_cleanly and len(f) == r["events_written"] > 0
                assert int(f.attrs["run_number"]) == r["run_number"]
    assert (rows[0]["events_written"], rows[4]["events_written"], rows[5]["events_written"]) == (200, 150, 50)
    listing = _cli(capsys, "daq", "runs", "--output", str(out))
    assert "fe1 silent" in listing and "run_000006.h5" in listing


@pytest.mark.timeout(180)
def test_silent_board_can_be_flagged_and_the_run_goes_on(tmp_path):
    # daq.on_silent_board = "continue": the stopped process's boards are taken for dead by the
    # trigger processor and its events are INCOMPLETE; the run ends normally
    cfg = fast_config(
        boards_per_process=6,
        heartbeat_timeout_s=1.5,
        on_silent_board="continue",
        board_timeout_s=1.5,
        builder_timeout_s=1.0,
    )
    n = 300
    with DaqRun(cfg, tmp_path, seed=3, max_events=n) as run:
        run.configure()
        run.start()
        deadline = time.monotonic() + 60
        while run.stats.get("builder", {}).get("events_built", 0) < 50:
            assert time.monotonic() < deadline and run.state == "running", run.errors
            run.poll(0.05)
        t0 = time.monotonic()
        os.kill(run.pid("fe1"), signal.SIGSTOP)
        assert run.wait(120) == "stopped", run.errors
        s = run.summary()
        detected = run.silent_detected["fe1"] - t0
    print(f"\nSIGSTOP of fe1 -> named silent after {detected:.2f} s; silent {s['silent']}")
    assert set(s["silent"]) == {"fe1"} and s["silent"]["fe1"] >= cfg.daq.heartbeat_timeout_s
    assert any("fe1 silent" in e and "going on" in e for e in s["errors"])
    assert sorted(int(b) for b in s["dead_boards"]) == list(range(6, 12))
    assert s["events_written"] == s["events_issued"] == n and s["events_incomplete"] > 0


@pytest.mark.timeout(150)
def test_status_page_between_runs_shows_the_service_and_a_stopped_node_silent(tmp_path):
    # `daq serve --http`, no run taken: the page shows the service's state and every node's
    # heartbeat; a front-end stopped (SIGSTOP) is shown silent, on its boards too, and the
    # service's error with its cause
    svc = Service(tmp_path, tmp_path / "out", http=True)
    stopped = None
    try:
        st = svc.wait_configured()
        pids = {n: v["pid"] for n, v in st["nodes"].items()}
        deadline = time.monotonic() + 60
        while not (
            (page := svc.page_status()).get("between_runs")
            and page["state"] == "configured"
            and set(page["heartbeats"]) == set(pids)
            and all(h["alive"] for h in page["heartbeats"].values())
        ):
            assert time.monotonic() < deadline, page
        assert page["run_number"] is None and page["last_run_number"] is None and page["cause"] is None
        assert {n: h["pid"] for n, h in page["heartbeats"].items()} == pids
        assert all(h["heartbeats"] > 0 and h["last_heartbeat_s"] is not None for h in page["heartbeats"].values())
        per = 6  # OVERLAY: daq.boards_per_process
        assert [r["board"] for r in page["boards"]] == list(range(12))
        assert all(r["process"] == f"fe{r['board'] // per}" and r["node_status"] == "alive" for r in page["boards"])

        t0 = time.monotonic()
        os.kill(pids["fe0"], signal.SIGSTOP)
        stopped = pids["fe0"]
        deadline = t0 + 30
        while (page := svc.page_status())["heartbeats"]["fe0"]["alive"]:
            assert time.monotonic() < deadline, page
        shown_s = time.monotonic() - t0
        fe0 = page["heartbeats"]["fe0"]
        assert fe0["status"] == "silent" and fe0["last_heartbeat_s"] > 1.5  # daq.heartbeat_timeout_s (poker.toml)
        assert all(h["alive"] for n, h in page["heartbeats"].items() if n != "fe0")
        assert {(r["board"] < per, r["node_status"]) for r in page["boards"]} == {(True, "silent"), (False, "alive")}
        deadline = time.monotonic() + 30
        while (page := svc.page_status())["state"] != "error":
            assert time.monotonic() < deadline, page
        assert "fe0 silent: no heartbeat for" in page["cause"] and page["run_number"] is None
        print(f"\nSIGSTOP of fe0 -> /api/status shows it silent after {shown_s:.2f} s")
        # the page as a browser draws it: the service's state and cause, the silent node in red, no run
        dom = browser(svc.page, tmp_path / "profile", "--dump-dom")
        assert dom_value(dom, "state") == "error" and "fe0 silent" in dom_value(dom, "cause")
        assert re.search(r'<body class="between"', dom)
        beats = dict(re.findall(r'<tr data-process="([a-z0-9]+)" data-heartbeat="([a-z]*)">', dom))
        assert beats == {**{n: "alive" for n in pids}, "fe0": "silent"}
        assert re.search(r'<tr data-process="fe0"[^>]*>.*?<td class="l silent" data-value="silent">silent</td>', dom)
        boards = dict(re.findall(r'<tr data-board="(\d+)" data-node="([a-z]*)">', dom))
        assert boards == {str(b): "silent" if b < per else "alive" for b in range(12)}
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)  # so that the shutdown ends it as usual
        svc.close()
