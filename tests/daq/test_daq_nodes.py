"""Nodes started on their own (``pokerdaq node``) join the service over tcp on other loopback addresses.

The service's node ROUTER is bound on 127.0.0.2, the event builder runs as its own process
bound on 127.0.0.3, both front-end groups as their own processes; the writer and the trigger
processor are the service's children on 127.0.0.1. A node that does not come is named; the run
across the addresses writes the same events as the same run with every process local.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from test_daq_service import OVERLAY, Service

from pokerdaq.config import load_config
from pokerdaq.daq._client import ClientError, request
from pokerdaq.daq._curve import load_keys, make_keys, secure_client
from pokerdaq.daq._runcontrol import DaqRun
from pokerdaq.io import RunFile
from pokerdaq.io._records import EventFlags

REMOTE = (
    OVERLAY.replace("builder_timeout_s = 1.0\n", "").replace("board_timeout_s = 1.5\n", "")
    + """
transport = "tcp"
control_endpoint = "tcp://127.0.0.2:*"
remote_nodes = ["fe0", "fe1", "builder"]
start_timeout_s = 8.0
# flow control off the data: no board raises busy and nothing times out, so the two runs must
# agree event for event whatever the load (busy loses triggers by timing, by design)
board_queue_events = 4096
busy_fraction = 1.0
builder_timeout_s = 30.0
board_timeout_s = 30.0
# CURVE on every socket, loopback too (as between hosts)
curve = true
curve_keys = "{keys}"
"""
)
SEED, N = 11, 200


def _node(cfg_path, control: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pokerdaq.cli", "node", *args, "--control", control, "--config", str(cfg_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read(path):
    with RunFile(path) as f:
        b = f.read(0, len(f))
        ev = f.events.copy()
        # BOARD_BUSY is the readout queue's fill when the event was read out: flow-control
        # timing, not data (as in test_daq_fastforward); every other flag and byte must agree
        ev["flags"] &= ~np.uint32(EventFlags.BOARD_BUSY)
        return {
            "events": ev,
            "samples": b.samples,
            "pulses": b.pulses,
            "offsets": b.pulse_offsets,
            "truth": b.truth,
            "scalers": f.scalers,
        }


@pytest.mark.timeout(300)
def test_nodes_on_other_addresses_join_and_write_the_same_run(tmp_path):
    out = tmp_path / "out"
    make_keys(tmp_path / "keys")
    make_keys(tmp_path / "stranger")  # a client pair nobody authorized
    good = load_keys(tmp_path / "keys")
    stranger = dataclasses.replace(
        good, public=load_keys(tmp_path / "stranger").public, secret=load_keys(tmp_path / "stranger").secret
    )
    svc = Service(tmp_path, out, REMOTE.replace("{keys}", str(tmp_path / "keys")))
    cfg_path = tmp_path / "service.toml"
    nodes: list[subprocess.Popen] = []
    try:
        svc.proc.stdout.readline()
        control = svc.call("status")["node_control"]
        assert control.startswith("tcp://127.0.0.2:")
        nodes.append(_node(cfg_path, control, "frontend", "--boards", "0-5"))
        nodes.append(_node(cfg_path, control, "builder", "--host", "127.0.0.3"))
        # fe1 is not started: the join times out naming it
        st = svc.call("wait", timeout=120)
        assert st["state"] == "error" and st["cause"].endswith("waiting for nodes to join: fe1"), st["cause"]
        # a node that joins under a name with other boards (another configuration) is refused
        wrong = _node(cfg_path, control, "frontend", "--boards", "4-7", "--set", "daq.boards_per_process=4")
        wrong.communicate(timeout=60)
        assert wrong.returncode == 0
        st = svc.call("status")
        assert st["refused_nodes"] == [
            "fe1: joined as board with boards [4, 5, 6, 7], expected board with boards [6, 7, 8, 9, 10, 11]"
        ]
        nodes.append(_node(cfg_path, control, "frontend", "--boards", "6-11"))
        r = svc.call("reset")
        assert r["state"] == "configured" and r["restarted"] == ["fe1"], r
        st = svc.call("status")
        assert {n: v["host"] for n, v in st["nodes"].items() if not v["local"]}["builder"] == "127.0.0.3"
        # a client and a node with a key that is not authorized: refused, logged, counted
        with pytest.raises(ClientError, match="no answer"):
            request(st["control"], "status", 3.0, stranger)
        with zmq.Context() as ctx:
            intruder = ctx.socket(zmq.DEALER)
            intruder.setsockopt(zmq.IDENTITY, b"fe0")
            secure_client(intruder, stranger)
            intruder.connect(control)
            intruder.send(b'{"notice": "ready", "kind": "board", "boards": [0, 1, 2, 3, 4, 5]}')
            deadline = time.monotonic() + 60
            while (refused := svc.call("status")["curve_refused"]) != {"service": 1, "run_control": 1}:
                assert time.monotonic() < deadline, refused
            intruder.close(0)
        svc.call("start", events=N, seed=SEED)
        st = svc.call("wait")
        assert st["last_run"]["state"] == "stopped" and st["last_run"]["events_written"] == N, st
        [remote_file] = st["last_run"]["files"]
        run_number = st["last_run"]["run_number"]
        svc.close()
        for p in nodes:  # the nodes leave with the service
            p.wait(60)
    finally:
        svc.close()
        for p in nodes:
            if p.poll() is None:
                p.kill()
            p.communicate()
    # the same run with every process on this host, over ipc
    cfg = load_config(cfg_path).replace(daq={"transport": "ipc", "control_endpoint": "", "remote_nodes": []})
    with DaqRun(cfg, tmp_path / "local", seed=SEED, max_events=N, run_number=run_number) as run:
        run.configure()
        run.start()
        assert run.wait(120) == "stopped", run.errors
        [local_file] = run.summary()["files"]
    a, b = _read(remote_file), _read(local_file)
    for key in a:
        x, y = a[key], b[key]
        if x is None or y is None:  # the synthetic source has no truth
            assert x is None and y is None, key
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, key
        for name in x.dtype.names or [None]:
            np.testing.assert_array_equal(x[name] if name else x, y[name] if name else y, err_msg=f"{key}.{name}")
    assert len(a["events"]) == N and (a["events"]["flags"] & EventFlags.INCOMPLETE == 0).all()
