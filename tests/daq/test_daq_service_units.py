"""The service's socket-free parts: state machine (hypothesis stateful), request checks, run registry."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pokerdaq.daq._protocol import SERVICE_COMMANDS, ProtocolError, check_open, parse_request
from pokerdaq.daq._registry import RunRegistry
from pokerdaq.daq._states import SERVICE_STATES, ServiceStateMachine, TransitionError

# ---- state machine ---------------------------------------------------------------------------
# what each event may do, written from the module docstring of _states (not from its table)
_EVENT_FROM = {
    "joined": {"idle"},
    "started": {"configured"},
    "stopping": {"running", "draining"},
    "ended": {"running", "draining"},
    "reset": {"error", "configured"},
}
_EVENT_TO = {"joined": "configured", "started": "running", "stopping": "draining", "ended": "configured"}


class ServiceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sm = ServiceStateMachine()
        self.last_number = -1

    def _event(self, name: str, *args: object) -> None:
        before = self.sm.state
        ok = before in _EVENT_FROM[name]
        try:
            getattr(self.sm, name)(*args)
        except TransitionError:
            assert not ok, f"{name} refused in {before}"
            assert self.sm.state == before  # a refused event changes nothing
            return
        assert ok, f"{name} taken in {before}"
        if name == "reset":
            assert self.sm.state == ("idle" if before == "error" else "configured")
        else:
            assert self.sm.state == _EVENT_TO[name]

    @rule()
    def joined(self) -> None:
        self._event("joined")

    @rule()
    def started(self) -> None:
        if self.sm.state == "configured":
            self.last_number += 1
        self._event("started", self.last_number)

    @rule()
    def stopping(self) -> None:
        self._event("stopping")

    @rule()
    def ended(self) -> None:
        self._event("ended")

    @rule()
    def reset(self) -> None:
        self._event("reset")

    @rule(cause=st.sampled_from(["fe1 silent", "writer died"]))
    def failed(self, cause: str) -> None:
        before, old_cause = self.sm.state, self.sm.cause
        self.sm.failed(cause)
        if before == "shutdown":
            assert self.sm.state == "shutdown"
        else:
            assert self.sm.state == "error"
            assert self.sm.cause == (old_cause if before == "error" else cause)  # the first cause is kept

    @rule()
    def shutdown(self) -> None:
        self.sm.shutdown()

    @rule(cmd=st.sampled_from(SERVICE_COMMANDS))
    def client_command(self, cmd: str) -> None:
        st_ = self.sm.state
        try:
            self.sm.check(cmd)
            taken = True
        except TransitionError as err:
            taken = False
            assert cmd in str(err) and st_ in str(err)
        if cmd == "status":
            assert taken
        if cmd == "start":
            assert taken == (st_ in ("idle", "configured"))
        if cmd == "stop":
            assert taken == (st_ in ("running", "draining"))
        if cmd == "reset":
            assert taken == (st_ in ("error", "configured"))
        if st_ == "shutdown":
            assert taken == (cmd == "status")

    @invariant()
    def consistent(self) -> None:
        assert self.sm.state in SERVICE_STATES
        assert (self.sm.cause is not None) == (self.sm.state == "error") or self.sm.state == "shutdown"
        assert self.sm.runs_started == self.last_number + 1


TestServiceMachine = ServiceMachine.TestCase
TestServiceMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ---- requests ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, why",
    [
        (b"\xff\xfe", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"cmd": "format_disk"}', "unknown command 'format_disk'"),
        (b'{"events": 5}', "unknown command None"),
        (b'{"cmd": "start", "output": "/etc"}', "start: unknown field 'output'"),
        (b'{"cmd": "start", "events": "100"}', "start: events = '100', expected an integer >= 1"),
        (b'{"cmd": "start", "events": true}', "events = True"),
        (b'{"cmd": "start", "events": 0}', "events = 0"),
        (b'{"cmd": "start", "duration": -1}', "duration = -1"),
        (b'{"cmd": "start", "events": 5, "duration": 1}', "not both"),
        (b'{"cmd": "stop", "now": 1}', "stop: unknown field 'now'"),
        (b'{"cmd": "wait", "timeout": 1e400}', "timeout = inf"),
    ],
)
def test_requests_outside_the_protocol_are_refused(body, why):
    with pytest.raises(ProtocolError) as info:
        parse_request(body)
    assert why in str(info.value)


def test_documented_requests_pass():
    assert parse_request(b'{"cmd": "start", "events": 100, "seed": 3}') == ("start", {"events": 100, "seed": 3})
    assert parse_request(b'{"cmd": "start", "duration": 2.5, "events": null}') == ("start", {"duration": 2.5})
    assert parse_request(json.dumps({"cmd": "status"}).encode()) == ("status", {})


def test_open_keeps_the_writer_inside_its_folder(tmp_path):
    good = {
        "config": "",
        "run_number": 1,
        "seed": 2,
        "endpoints": {"records": "ipc:///tmp/x"},
        "output": str(tmp_path / "r.h5"),
        "overwrite": False,
        "block_store": "",
    }
    assert check_open("writer", good, str(tmp_path)) == good
    # the shared beam blocks: only a folder in run control's private temporary folder
    private = tmp_path / "pokerdaq-ipc-1-test"
    private.mkdir()
    (private / "lock").touch()
    blocks = str(private / "blocks-1")
    assert check_open("writer", {**good, "block_store": blocks}, str(tmp_path))["block_store"] == blocks
    (tmp_path / "pokerdaq-ipc-2-nolock").mkdir()
    for bad in (
        "/etc",
        str(tmp_path),
        str(private / "blocks-1" / "blocks-2"),
        str(private / ".." / "blocks-1"),
        str(private / "other"),
        str(tmp_path / "pokerdaq-ipc-2-nolock" / "blocks-1"),
        "blocks-1",
    ):
        with pytest.raises(ProtocolError, match="block_store"):
            check_open("writer", {**good, "block_store": bad}, str(tmp_path))
    for output in ("/etc/passwd.h5", str(tmp_path / ".." / "escape.h5")):
        with pytest.raises(ProtocolError, match="outside the node's folder"):
            check_open("writer", {**good, "output": output}, str(tmp_path))
    with pytest.raises(ProtocolError, match="expected a .h5 file name"):
        check_open("writer", {**good, "output": str(tmp_path / "x.txt")}, str(tmp_path))
    with pytest.raises(ProtocolError, match="unknown field 'output'"):
        check_open("board", {**{k: v for k, v in good.items() if k != "overwrite"}, "boards": [0]}, str(tmp_path))
    with pytest.raises(ProtocolError, match="endpoints"):
        check_open("builder", {"config": "", "run_number": 1, "seed": 2, "endpoints": {"records": "file:///etc"}}, None)


# ---- registry ---------------------------------------------------------------------------------
def test_registry_numbers_increase_across_restarts(tmp_path):
    with RunRegistry(tmp_path) as reg:
        assert reg.begin("a = 1", 7, first=5) == 5
        reg.finish(5, "stopped", None, {"files": [tmp_path / "run_000005.h5"], "events_written": 10})
        assert reg.begin("a = 1", 7, first=5) == 6  # left 'running': a service that died
    (tmp_path / "run_000041.h5").touch()  # a run file of another run: never reused
    with RunRegistry(tmp_path) as reg:
        assert reg.mark_lost() == [6]
        assert reg.begin("a = 2", 8, first=0) == 42
        rows = reg.rows()
    assert [(r["run_number"], r["end_state"]) for r in rows] == [(5, "stopped"), (6, "lost"), (42, "running")]
    assert rows[0]["files"] == [str(tmp_path / "run_000005.h5")] and rows[0]["events_written"] == 10
    assert rows[0]["config_hash"] == rows[1]["config_hash"] != rows[2]["config_hash"]
    # the database is plain SQLite: any tool reads it
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (3,)


# ---- command-line mistakes: one line, exit status 2, no process started ------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["daq", "start", "--output", "{tmp}"], "no service runs there (daq-service.json missing)"),
        (["daq", "status"], "give --output DIR (the service's folder) or --control ENDPOINT"),
        (["daq", "start", "--output", "{tmp}", "--events", "0"], "--events 0: expected an integer >= 1"),
        (["daq", "runs", "--output", "{tmp}"], "no run registry (runs.sqlite) there"),
        (
            ["daq", "serve", "--output", "{tmp}", "--set", 'daq.remote_nodes=["fe9"]', "--set", 'daq.transport="tcp"'],
            "daq.remote_nodes: ['fe9'] are not nodes of this configuration",
        ),
        (["daq", "serve", "--output", "{tmp}", "--set", 'daq.remote_nodes=["fe0"]'], 'daq.transport = "tcp"'),
        (["daq", "serve", "--output", "{tmp}", "--set", "daq.curve=true"], "daq.curve_keys: empty"),
        (["node", "frontend", "--boards", "0-2", "--control", "tcp://127.0.0.1:5555"], "not a front-end group"),
        (["node", "frontend", "--boards", "0-x", "--control", "tcp://127.0.0.1:5555"], "expected board numbers"),
        (["node", "writer", "--control", "tcp://127.0.0.1:5555"], "a writer node needs the folder"),
        (["node", "builder", "--control", "tcp://127.0.0.1:*"], "give run control's port"),
    ],
)
def test_cli_mistakes_are_one_line(tmp_path, capsys, argv, message):
    from pokerdaq.cli import main

    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_keys_are_made_once(tmp_path, capsys):
    from pokerdaq.cli import main
    from pokerdaq.daq._curve import load_keys

    assert main(["keys", "--output", str(tmp_path / "k")]) == 0
    keys = load_keys(tmp_path / "k")
    assert keys.server_secret is not None and (tmp_path / "k" / "authorized" / "client.key").is_file()
    assert main(["keys", "--output", str(tmp_path / "k")]) == 2
    assert "never replaced" in capsys.readouterr().err
    assert load_keys(tmp_path / "k") == keys
