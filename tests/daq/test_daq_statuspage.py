"""The live status page: the writer's display tap (spectra, latest event), the page's model, and
`pokerdaq run --http` rendered by a real headless browser (Debian's chromium) while a real run
goes on, its JSON equal to the run summary and the run file at the end."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zmq
from _daqhelpers import browser as _browser
from _daqhelpers import chromium as _chromium
from _daqhelpers import dom_value as _value
from _daqhelpers import synthetic_config_file

import pokerdaq
from pokerdaq.config import load_config
from pokerdaq.daq import StatusModel
from pokerdaq.daq._display import DISPLAY_TOPIC, DisplayPublisher, EventDisplay
from pokerdaq.dsp import PULSE_DTYPE
from pokerdaq.inspection import event_energies
from pokerdaq.io import EVENT_DTYPE, RunFile

SRC = str(Path(pokerdaq.__file__).resolve().parents[1])
ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"  # git-ignored: the screenshot is kept here


# ---- the display tap, socket-free ---------------------------------------------------------------
def _batch(cfg, rng, n):
    n_ch, window = len(cfg.channel_map), cfg.digitizer.window_samples
    headers = np.zeros(n, EVENT_DTYPE)
    headers["event_number"] = np.arange(n) + int(rng.integers(0, 1000))
    headers["n_pulses"] = rng.integers(0, 12, n)
    pulses = np.zeros(int(headers["n_pulses"].sum()), PULSE_DTYPE)
    pulses["channel"] = rng.integers(0, n_ch, len(pulses))
    pulses["time"] = rng.integers(0, window * 64, len(pulses))
    pulses["coarse_time"] = pulses["time"] // 64
    pulses["integral_net"] = rng.integers(-50, 60000, len(pulses))
    pulses["peak"] = rng.integers(0, 4000, len(pulses))
    samples = rng.integers(0, 4096, (n, n_ch, window)).astype(np.uint16)
    return headers, samples, pulses


def test_event_display_spectra_equal_a_naive_per_event_histogram_and_keep_the_latest_event():
    cfg = load_config()
    rng = np.random.default_rng(5)
    disp = EventDisplay(cfg, run_number=7)
    e_ecal, e_srd = [], []
    for n in (1, 40, 0, 17):
        headers, samples, pulses = _batch(cfg, rng, n)
        disp.observe(headers, samples, pulses)
        off = np.concatenate([[0], np.cumsum(headers["n_pulses"].astype(np.int64))])
        for i in range(n):  # the naive reference: one event at a time
            e = event_energies(pulses[off[i] : off[i + 1]], headers["n_pulses"][i : i + 1], cfg)
            e_ecal.append(float(e.e_calo_gev[0]))
            e_srd.append(float(e.e_srd_mev[0]))
        if n:
            last = (headers[-1], samples[-1], pulses[off[-2] :])
    msg = json.loads(disp.message(time.monotonic()))
    assert msg["run_number"] == 7 and msg["events"] == 58
    for key, values, top in (("ecal", e_ecal, 1.25 * cfg.beam.energy_gev), ("srd", e_srd, cfg.trigger.srd_emax_mev)):
        h = msg["spectra"][key]
        edges = np.linspace(0.0, top, 101)
        v = np.asarray(values)
        assert np.allclose(h["edges"], edges)
        inside = v[(v >= 0) & (v < top)]
        assert h["counts"] == np.histogram(inside, edges)[0].tolist()
        assert h["underflow"] == int((v < 0).sum()) and h["overflow"] == int((v >= top).sum())
        assert h["entries"] == 58
    assert sum(msg["spectra"]["ecal"]["counts"]) > 0
    ev = msg["latest_event"]
    header, samples, pulses = last
    assert ev["event_number"] == int(header["event_number"]) and ev["n_pulses"] == int(header["n_pulses"])
    assert ev["samples"] == samples.tolist()
    assert ev["pulses"]["channel"] == pulses["channel"].tolist() and ev["pulses"]["peak"] == pulses["peak"].tolist()
    assert len(ev["channels"]) == len(ev["subsystems"]) == len(cfg.channel_map)
    # rate limit: nothing new, nothing due; something new, due only after display_interval_s
    now = time.monotonic()
    assert not disp.due(now)
    disp.observe(*_batch(cfg, rng, 2))
    assert not disp.due(now) and disp.due(now + cfg.daq.display_interval_s) and disp.due(now, final=True)


def test_display_publisher_drops_and_counts_what_a_stalled_subscriber_does_not_take(tmp_path):
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, DISPLAY_TOPIC)
    sub.bind(f"ipc://{tmp_path}/display")
    pub = DisplayPublisher(ctx, f"ipc://{tmp_path}/display", hwm=2)
    try:
        # a bound SUB sends its subscription once its own thread handles the new connection
        # (libzmq runs socket commands in the calling thread): touch it until the XPUB has it
        deadline = time.monotonic() + 30
        while not pub.sock.poll(50):
            sub.getsockopt(zmq.EVENTS)
            assert time.monotonic() < deadline, "no subscription reached the publisher"
        body = b"x" * 200_000
        n = 200  # 40 MB: far beyond every queue and kernel buffer between the two
        t0 = time.monotonic()
        for _ in range(n):
            pub.publish(body)
        assert time.monotonic() - t0 < 30  # never blocked (each try returns at once; bound for a loaded host)
        assert pub.sent + pub.dropped == n and pub.dropped > 0
        got = 0
        while sub.poll(200):
            sub.recv_multipart()
            got += 1
        assert 0 < got <= pub.sent
    finally:
        pub.close()
        sub.close(0)
        ctx.term()


# ---- the page's model, socket-free ---------------------------------------------------------------
def _snap(seq, run, elapsed, accepted, state="running"):
    return {
        "seq": seq,
        "run_number": run,
        "state": state,
        "elapsed_s": elapsed,
        "events_written": accepted,
        "nodes": {
            "trigger": {
                "trigger_types": {"physics": {"bit": 0, "accepted": accepted}},
                "live_boards": [0],
                "board_silence_s": {"0": 0.25},
            },
            "fe0": {"busy": True, "boards": {"0": {"slices": 3, "fragments_read_out": 5, "fragments_sent": 4}}},
            "builder": {"in_flight": 3, "rejected": {"bad_crc": 2}},
        },
        "heartbeats": {"fe0": _beat("board", [0], last=0.1, gap=0.3, loop=0.01)},
    }


def _beat(kind, boards, last=0.1, gap=0.3, loop=0.01, alive=True, ready=True, silent=False):
    """One node as ``NodePool.health`` publishes it."""
    return {
        "kind": kind,
        "pid": 100 + len(boards),
        "ready": ready,
        "alive": alive,
        "silent": silent,
        "boards": boards,
        "last_heartbeat_s": last,
        "heartbeats": 7,
        "max_heartbeat_gap_s": gap,
        "loop_age_s": loop,
        "local": True,
        "host": None,
    }


def _naive_node_status(h):
    # the page's rule, written out: an ended process first, then silence, then not yet joined
    if not h["alive"]:
        return "exited"
    if h["silent"]:
        return "silent"
    if not h["ready"]:
        return "joining"
    return "alive"


def test_status_model_rates_lost_snapshots_and_a_new_run():
    m = StatusModel()
    assert m.status["state"] == "waiting"
    m.update(_snap(0, 1, 0.0, 0))
    m.update(_snap(1, 1, 1.0, 100))
    m.update(_snap(4, 1, 3.0, 500))  # two snapshots lost on the way
    m.update("not a snapshot")
    s = m.status
    assert s["rate_history"]["elapsed_s"] == [0.0, 1.0, 3.0]
    assert s["rate_history"]["rate_hz"]["physics"] == [0.0, 100.0, 200.0]
    assert s["trigger_types"]["physics"]["rate_hz"] == 200.0
    assert s["page"] == {"snapshots_received": 3, "snapshots_lost": 2, "bad_messages": 1}
    assert s["boards"] == [
        {
            "board": 0,
            "process": "fe0",
            "alive": True,
            "dead_reason": None,
            "busy": True,
            "last_message_s": 0.25,
            "slices": 3,
            "busy_slices": 0,
            "ended": False,
            "fragments_read_out": 5,
            "fragments_sent": 4,
            "node_status": "alive",
            "last_heartbeat_s": 0.1,
            "max_heartbeat_gap_s": 0.3,
            "loop_age_s": 0.01,
        }
    ]
    assert s["between_runs"] is False and s["heartbeats"]["fe0"]["alive"] is True
    assert s["fragments_rejected"] == {"bad_crc": 2} and s["builder"]["in_flight"] == 3
    m.update(_snap(0, 2, 0.5, 10))  # the next run: its own history, no false loss
    assert m.status["run_number"] == 2 and m.status["rate_history"]["elapsed_s"] == [0.5]
    assert m.status["page"]["snapshots_lost"] == 2


def test_status_model_between_runs_shows_the_service_and_every_node_heartbeat():
    per = 6
    health = {
        "writer": _beat("writer", [], alive=False),
        "builder": _beat("builder", [], ready=False, last=None),
        "trigger": _beat("trigger", list(range(12))),
        "fe0": _beat("board", list(range(0, per)), last=0.2, gap=0.26, loop=0.02),
        "fe1": _beat("board", list(range(per, 2 * per)), last=2.4, gap=2.4, loop=0.0, silent=True),
    }
    m = StatusModel()
    m.update(_snap(0, 3, 5.0, 50))  # the last run
    m.update(
        {
            "time": 1.0,
            "state": "error",
            "run_number": 3,
            "elapsed_s": 0.0,
            "events_written": 50,
            "nodes": {},
            "heartbeats": health,
            "cause": "fe1 silent: no heartbeat for 2.4 s",
            "between_runs": True,
        }
    )
    s = m.status
    # no run's numbers between runs; the service's state and cause
    assert s["state"] == "error" and s["run_number"] is None and s["last_run_number"] == 3
    assert s["cause"] == "fe1 silent: no heartbeat for 2.4 s" and s["between_runs"] is True
    assert "events_written" not in s and "trigger_types" not in s
    for name, h in health.items():
        got = s["heartbeats"][name]
        assert got["status"] == _naive_node_status(h) and got["alive"] == (_naive_node_status(h) == "alive")
        assert (got["last_heartbeat_s"], got["max_heartbeat_gap_s"], got["loop_age_s"]) == (
            h["last_heartbeat_s"],
            h["max_heartbeat_gap_s"],
            h["loop_age_s"],
        )
    assert [s["heartbeats"][n]["status"] for n in ("writer", "builder", "trigger", "fe0", "fe1")] == [
        "exited",
        "joining",
        "alive",
        "alive",
        "silent",
    ]
    # every board through the front-end that holds it (fe<k>: boards k*per ... k*per + per - 1); the
    # trigger processor, which sees every board, holds none
    assert [r["board"] for r in s["boards"]] == list(range(12))
    for r in s["boards"]:
        holder = f"fe{r['board'] // per}"
        assert r == {
            "board": r["board"],
            "process": holder,
            "node_status": _naive_node_status(health[holder]),
            **{k: health[holder][k] for k in ("last_heartbeat_s", "max_heartbeat_gap_s", "loop_age_s")},
        }
    # the next run: its numbers again, the rate history starts again
    m.update(_snap(0, 4, 0.1, 1))
    assert m.status["run_number"] == 4 and m.status["between_runs"] is False
    assert m.status["rate_history"]["elapsed_s"] == [0.1] and m.status["page"]["snapshots_lost"] == 0


# ---- the CLI: routine mistakes ---------------------------------------------------------------------
def test_run_http_mistakes_are_usage_errors_before_any_process_starts(tmp_path, capsys):
    from pokerdaq.cli import main

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for args, needle in (
            (["--http", "host:port"], "--http 'host:port': expected HOST:PORT"),
            (["--http", "127.0.0.1:70000"], "port 70000 out of range"),
            (["--http-linger", "5"], "--http-linger 5.0: needs --http"),
            (["--http", f"127.0.0.1:{busy.getsockname()[1]}"], "cannot listen on 127.0.0.1"),
        ):
            assert main(["run", "--events", "5", "--output", str(tmp_path), *args]) == 2
            err = capsys.readouterr().err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("pokerdaq run: ") and needle in lines[0], err
        assert not list(tmp_path.iterdir())  # nothing started, nothing written
    finally:
        busy.close()


# ---- the page in a real browser, on a real run --------------------------------------------------------
def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


class _Lines:
    """The run's stdout, read by a thread (a pipe read never blocks the test)."""

    def __init__(self, proc):
        self.q: queue.Queue = queue.Queue()
        self.text = ""
        self.proc = proc
        self.thread = threading.Thread(target=lambda: [self.q.put(ln) for ln in proc.stdout], daemon=True)
        self.thread.start()

    def close(self) -> None:
        """After the process ended: the reader has seen the end of the pipe; close it."""
        self.thread.join(10)
        self.proc.stdout.close()

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text)
            if m:
                return m
            try:
                self.text += self.q.get(timeout=0.2)
            except queue.Empty:
                pass
        pytest.fail(f"{pattern!r} not printed in {timeout_s} s: {self.text[-3000:]}")


def _summary_row(text: str, what: str) -> str:
    m = re.search(rf"│\s*{re.escape(what)}\s*│\s*(.*?)\s*│", text)
    assert m, f"summary row {what!r} missing"
    return m.group(1)


def _wait(proc, cond, timeout_s: float, what: str):
    """``cond()`` once it is true; between tries wait on the run's process itself (no sleep), so a
    run that ends early fails at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        try:
            code = proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"pokerdaq run ended (status {code}) while waiting for {what}")
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


@pytest.mark.timeout(240)
def test_status_page_in_a_browser_shows_the_live_run_and_ends_equal_to_the_summary(tmp_path):
    _chromium()
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    out = tmp_path / "out"
    # no --events: the run goes on until the test has looked at it, then SIGINT stops it (the drain).
    # The test-only slow disk (daq.writer_delay_s) holds the run back by flow control (boards BUSY,
    # shown on the page), so that it does not take every core from the browser: 33 s instead of 76
    # at load 27
    cmd = [
        sys.executable,
        "-m",
        "pokerdaq.cli",
        "run",
        "--config",
        str(synthetic_config_file(tmp_path)),
        "--output",
        str(out),
        "--seed",
        "3",
        "--set",
        "daq.monitor_interval_s=0.5",
        "--set",
        "daq.display_interval_s=0.5",
        "--set",
        "daq.writer_delay_s=0.5",
        "--http",
        "127.0.0.1:0",
        "--http-linger",
        "120",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    lines = _Lines(proc)
    try:
        url = lines.wait_for(r"status page (http://127\.0\.0\.1:\d+/) ", 180).group(1)
        api = url + "api/status"
        first = _wait(
            proc,
            lambda: (
                lambda s: s if s["state"] == "running" and s["events_written"] > 0 and s["latest_event"] else None
            )(_get(api)),
            120,
            "a running run with events",
        )

        # ---- live: the rendered page (after its script ran and fetched again) shows the run's numbers
        dom = _browser(url, tmp_path / "profile1", "--dump-dom")
        after = _get(api)
        assert after["state"] == "running", "the run ended before the page was looked at"
        assert _value(dom, "state") == "running"
        assert int(_value(dom, "run-number")) == first["run_number"]
        assert int(_value(dom, "renders")) >= 2  # drawn from the inline status, then from a fetch
        written = int(_value(dom, "events-written"))
        assert first["events_written"] <= written <= after["events_written"]
        assert first["events_issued"] <= int(_value(dom, "events-issued")) <= after["events_issued"]
        latest = int(_value(dom, "latest-event-number"))
        assert first["latest_event"]["event_number"] <= latest <= after["latest_event"]["event_number"]
        boards = re.findall(r'<tr data-board="(\d+)" data-node="([a-z]*)">(.*?)</tr>', dom)
        assert [int(b) for b, _, _ in boards] == list(range(12)) and all(">alive<" in row for _, _, row in boards)
        assert {node for _, node, _ in boards} == {"alive"}  # the heartbeat of the front-end holding it
        beats = dict(re.findall(r'<tr data-process="([a-z0-9]+)" data-heartbeat="([a-z]*)">', dom))
        assert beats == {n: "alive" for n in after["heartbeats"]} and set(beats) >= {"writer", "builder", "trigger"}
        assert "between" not in re.search(r"<body[^>]*>", dom).group(0)  # a run: its numbers shown
        assert set(re.findall(r'<tr data-type="([^"]+)">', dom)) == set(after["trigger_types"])
        for svg in ("rates-chart", "ecal-spectrum", "srd-spectrum"):
            assert re.search(rf'<svg id="{svg}".*?<path d="M[^"]+"', dom, re.S), f"nothing drawn in #{svg}"
        subsystems = sorted(set(after["latest_event"]["subsystems"]))
        assert sorted(re.findall(r'<svg[^>]*id="wf-([a-z_]+)"', dom)) == subsystems
        assert int(_value(dom, "ecal-entries")) > 0
        ARTEFACTS.mkdir(exist_ok=True)
        shot = ARTEFACTS / "status_page.png"
        _browser(url, tmp_path / "profile2", f"--screenshot={shot}")
        print(f"status page screenshot: {shot}")
        import matplotlib.image

        img = matplotlib.image.imread(shot)
        assert img.shape[:2] == (1500, 1400) and len(np.unique(img.reshape(-1, img.shape[2]), axis=0)) > 50

        # ---- the end: SIGINT drains the run; the final JSON equals the summary and the file
        os.kill(proc.pid, signal.SIGINT)
        lines.wait_for(r"the final numbers, for", 120)
        text = lines.text
        final = _get(api)
        assert final["state"] == "stopped" and f"run {final['run_number']}: stopped" in text
        for key, row in (
            ("events_issued", "events issued by the trigger"),
            ("events_built", "events built"),
            ("events_incomplete", "  of which INCOMPLETE"),
            ("events_written", "events written (in the files)"),
        ):
            assert final[key] == int(_summary_row(text, row)), key
        assert sum(final["fragments_rejected"].values()) == int(_summary_row(text, "fragments rejected"))
        for name, t in final["trigger_types"].items():
            row = _summary_row(text, f"trigger {name} (bit {t['bit']})")
            assert (
                row.startswith(f"{t['accepted']} accepted,")
                and f"lost: {t['lost_dead_time']} dead time, {t['lost_busy']} busy" in row
            ), (name, row)
        live = _summary_row(text, "live time (trigger neither dead nor busy)")
        assert live.startswith(f"{100 * final['live_fraction']:.2f} %")
        assert final["builder"]["in_flight"] == 0
        path = Path(_summary_row(text, "output file"))
        with RunFile(path) as f:
            assert len(f) == final["events_written"] > written
            last = f[len(f) - 1]
            ev = final["latest_event"]
            assert ev["event_number"] == int(last.event_number)
            assert np.array_equal(np.asarray(ev["samples"]), np.asarray(last.samples))
        for key in ("ecal", "srd"):
            assert final["spectra"][key]["entries"] == final["events_written"]
        assert final["display"]["received"] >= 1 and final["page"]["snapshots_received"] >= 2
        dom = _browser(url, tmp_path / "profile3", "--dump-dom")
        assert _value(dom, "state") == "stopped"
        assert int(_value(dom, "events-written")) == final["events_written"]
        os.kill(proc.pid, signal.SIGINT)  # ends the linger
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        lines.close()


# ---- the HTTP server on a real monitoring PUB (no browser) -----------------------------------------
def test_server_serves_the_published_snapshots_and_nothing_else(tmp_path):
    from pokerdaq.daq import serve_status_page
    from pokerdaq.daq._runcontrol import MONITOR_TOPIC

    ctx = zmq.Context()
    pubs = []
    for name in ("a", "b"):
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(f"ipc://{tmp_path}/{name}")
        pubs.append(pub)
    page = serve_status_page(None, "127.0.0.1", 0)
    try:
        assert _get(page.url + "api/status")["state"] == "waiting"
        page.subscribe(f"ipc://{tmp_path}/a")

        def publish_until(pub, snap, cond):
            deadline = time.monotonic() + 30
            while not page.wait_for(cond, 0.1):  # a PUB drops until the SUB is connected: send again
                pub.send_multipart([MONITOR_TOPIC, json.dumps(snap).encode()])
                assert time.monotonic() < deadline, "the page never got the snapshot"

        snap = _snap(0, 5, 1.5, 42)
        snap["nodes"]["writer"] = {"events_rejected": {"event_order": 1}}
        snap["nodes"]["trigger"]["dead_boards"] = {"0": "</script><b>silent"}  # must not break the page
        publish_until(pubs[0], snap, lambda s: s["run_number"] == 5)
        got = _get(page.url + "api/status")
        assert got == json.loads(json.dumps(page.model.status))
        assert got["events_rejected"] == {"event_order": 1} and got["boards"][0]["alive"] is False
        with urllib.request.urlopen(page.url, timeout=10) as r:
            html = r.read().decode()
            csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "</script><b>" not in html and "<\\/script><b>silent" in html
        assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from elsewhere
        for path in ("/nothing", "/api/status/../../etc/passwd", "/api"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(page.url.rstrip("/") + path, timeout=10)
            assert err.value.code == 404
            err.value.close()
        # the next run control: the page follows it, and only it
        page.subscribe(f"ipc://{tmp_path}/b")
        publish_until(pubs[1], _snap(0, 6, 0.2, 1), lambda s: s["run_number"] == 6)
        pubs[0].send_multipart([MONITOR_TOPIC, json.dumps(_snap(9, 5, 9.0, 99)).encode()])
        assert not page.wait_for(lambda s: s["run_number"] == 5, 1.0)
    finally:
        page.close()
        for pub in pubs:
            pub.close(0)
        ctx.term()
