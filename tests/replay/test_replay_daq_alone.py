"""A later file of a rotated DAQ run checked alone: ``pokerdaq run`` (real processes over
ZeroMQ) stores in each file the trigger model's state before the step that decided its first
event (``/trigger_inputs/state``, docs/hdf5-layout.md "Trigger state"), and ``pokerdaq replay
FILE --check`` of any one file starts the model there and reproduces every decision it holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

import pokerdaq
from pokerdaq.io import RunFile, run_paths
from pokerdaq.replay import ReplaySummary, replay_files

SRC = str(Path(pokerdaq.__file__).resolve().parents[1])
N_EVENTS = 120
ROTATE = 30


def _cli(*args, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def daq_run(tmp_path_factory):
    """A short physics run, a new file every 30 events, random triggers at 20 kHz (the
    generator's state matters), 4 us dead time (decisions lost to it carry over), the state sent
    with every 2nd step (a file's stored steps then start at the last state before its first event)."""
    d = tmp_path_factory.mktemp("daqalone")
    out = _cli(
        "run",
        "--events",
        str(N_EVENTS),
        "--seed",
        "7",
        "--output",
        str(d / "run.h5"),
        "--set",
        "beam.spill_period_s=0.02",
        "--set",
        "beam.spill_length_s=0.002",
        "--set",
        "trigger.random_rate_hz=20000.0",
        "--set",
        "trigger.dead_time_ns=4000.0",
        "--set",
        "daq.trigger_state_every_steps=2",
        "--set",
        f"daq.rotate_events={ROTATE}",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    paths = run_paths(d / "run.h5")
    assert [len(RunFile(p)) for p in paths][:4] == [ROTATE] * 4
    return paths


@pytest.mark.timeout(900)
def test_later_file_alone_reproduces_every_decision(daq_run, tmp_path):
    # through the CLI: file 2 of the run, alone
    report_path = tmp_path / "report.json"
    out = _cli("replay", str(daq_run[1]), "--check", "--output", str(report_path))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(report_path.read_text())
    (f,) = report["reproduction"]["files"]
    assert f["n_events"] == ROTATE and f["decided_in_stream_mode"]
    assert f["trigger_word_mismatches"] == 0 and f["pulse_mismatched_events"] == 0
    (run,) = report["runs"]
    assert run["problem"] is None and run["state_mismatches"] == 0 and run["started_from_stored_state"]
    assert run["first_decided_event"] <= ROTATE and run["trigger_state_bytes"] > 0
    # every file alone (2, 3, 4 ...), and the last one ends with the whole run's counters
    whole = ReplaySummary(replay_files(daq_run)).as_dict()["runs"][0]
    assert whole["problem"] is None and whole["state_mismatches"] == 0
    for k, p in enumerate(daq_run[1:], start=1):
        with RunFile(p) as rf:
            state = rf.trigger_state
            events = rf.events
        assert state is not None, p
        alone = ReplaySummary(replay_files([p])).as_dict()
        (r,) = alone["runs"]
        (fr,) = alone["reproduction"]["files"]
        assert r["problem"] is None and r["state_mismatches"] == 0 and r["started_from_stored_state"], (k, r)
        assert fr["trigger_word_mismatches"] == 0 and alone["reproduction"]["reproduced"], (k, fr)
        assert r["first_decided_event"] <= int(events["event_number"][0]) if len(events) else True
    assert r["old"] == whole["old"]  # the last file alone: random generator, dead time, counters all carried
    # with a state every 2nd step, some file starts from a state before steps stored in an earlier file
    assert any(len(RunFile(p).trigger_state[3]) for p in daq_run[1:])


@pytest.mark.timeout(900)
def test_corrupted_state_is_refused_in_one_line(daq_run, tmp_path):
    bad = tmp_path / daq_run[2].name
    shutil.copy(daq_run[2], bad)
    with h5py.File(bad, "r+") as h5:
        ds = h5["trigger_inputs/state"]
        words = ds[:]
        words[len(words) // 2] ^= 1
        ds[:] = words
    out = _cli("replay", str(bad), "--check")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "trigger_inputs/state" in lines[0] and "corrupted" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_file_without_state_still_needs_file_0(daq_run, tmp_path):
    # a file written before /trigger_inputs/state existed: alone it is not decided, with the run it is
    copies = []
    for p in daq_run:
        shutil.copy(p, tmp_path / p.name)
        copies.append(tmp_path / p.name)
    with h5py.File(copies[1], "r+") as h5:
        for name in ("state", "state_steps", "state_primitives"):
            del h5[f"trigger_inputs/{name}"]
    with RunFile(copies[1]) as f:
        assert f.trigger_state is None
    alone = ReplaySummary(replay_files([copies[1]])).as_dict()
    assert "stores no trigger state" in alone["runs"][0]["problem"] and not alone["reproduction"]["reproduced"]
    assert ReplaySummary(replay_files(copies)).as_dict()["reproduction"]["reproduced"]
