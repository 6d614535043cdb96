"""Faithful replay of a DAQ run: ``pokerdaq run`` (real processes over ZeroMQ, rotated files),
then ``pokerdaq replay --check`` over the run's recorded trigger inputs (docs/replay-inspect.md,
"Replaying a DAQ run")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import pokerdaq
from pokerdaq.config import Overlay
from pokerdaq.io import RunFile, run_paths
from pokerdaq.replay import ReplaySummary, replay_files
from pokerdaq.trigger import TriggerBits

SRC = str(Path(pokerdaq.__file__).resolve().parents[1])
N_EVENTS = 120
ROTATE = 40
RAW = np.uint32(0xFF00)


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
    """A short physics run: 2 ms spills every 20 ms (many /scalers rows; the boards fast-forward
    through the beam-off time in stretches of slices), a new file every 40 events."""
    d = tmp_path_factory.mktemp("daqrun")
    out = _cli(
        "run",
        "--events",
        str(N_EVENTS),
        "--seed",
        "5",
        "--output",
        str(d / "run.h5"),
        "--set",
        "beam.spill_period_s=0.02",
        "--set",
        "beam.spill_length_s=0.002",
        "--set",
        f"daq.rotate_events={ROTATE}",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    paths = run_paths(d / "run.h5")
    assert sum(len(RunFile(p)) for p in paths) == N_EVENTS
    return paths


def _replay_check(paths, tmp_path) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    out = _cli("replay", *map(str, paths), "--check", "--output", str(report))
    assert out.returncode in (0, 3), out.stdout + out.stderr
    return out.returncode, json.loads(report.read_text())


@pytest.mark.timeout(900)
def test_run_replays_bit_for_bit_with_its_own_configuration(daq_run, tmp_path):
    assert len([p for p in daq_run if len(RunFile(p))]) >= 3  # rotated: the check spans files
    rc, report = _replay_check(daq_run, tmp_path)
    files = report["reproduction"]["files"]
    assert rc == 0, files
    with_events = [f for f in files if f["n_events"]]
    assert sum(f["n_events"] for f in with_events) == N_EVENTS
    for f in with_events:
        assert f["decided_in_stream_mode"] and f["trigger_word_mismatches"] == 0
        assert f["stored_pulses"] > 0 and f["pulse_mismatched_events"] == 0
    (run,) = report["runs"]
    assert run["problem"] is None and run["state_mismatches"] == 0
    steps = np.concatenate([RunFile(p).trigger_inputs[0] for p in daq_run])
    assert len(steps) == run["decision_steps"] and np.any(steps["last_slice"] > steps["first_slice"])  # stretches
    assert run["primitives"] > 0 and run["trigger_input_bytes_per_event"] > 0
    # the online counters come back: the stored words, and the per-spill scaler totals
    scalers = np.concatenate([RunFile(p).scalers for p in daq_run])
    assert run["old"]["attempts"] >= run["old_accepted_triggers"] >= N_EVENTS
    assert int(scalers["triggers_accepted"].sum()) == N_EVENTS
    assert int(scalers["beam_counts"].sum()) == run["old"]["raw"]["beam"]
    # every event's word holds its accepted types among its raw ones (bits 8-15)
    words = np.concatenate([RunFile(p).events["trigger_word"] for p in daq_run])
    assert np.all((words & ~(words >> 8)) & 0xFF == 0) and np.any(words & 0xFF)


def _mutate_one_primitive(paths, dest: Path) -> int:
    """Copy the run; in the first file, raise the largest ECAL primitive of an event with the
    physics bit (missing energy: little ECAL energy) to saturation. Returns that event's number."""
    copies = []
    for p in paths:
        shutil.copy(p, dest / p.name)
        copies.append(dest / p.name)
    physics = np.uint32(1 << TriggerBits.NAMES.index("physics"))
    with RunFile(copies[0]) as f:
        events = f.events
        _, prims, _ = f.trigger_inputs
        ecal = f.config.channel_map.table["subsystem"] == b"ecal"
    hits = np.flatnonzero(events["trigger_word"] & physics)
    assert len(hits), "no physics trigger in the first file"
    ev = events[hits[0]]
    ticks = prims["time"] // 64
    near = np.flatnonzero(
        (ticks >= int(ev["timestamp"]) - 4) & (ticks <= int(ev["timestamp"]) + 40) & ecal[prims["channel"]]
    )
    k = int(near[np.argmax(prims["integral_net"][near])])
    with h5py.File(copies[0], "r+") as h5:
        row = h5["trigger_inputs/primitives"][k]
        row["integral_net"] = np.iinfo(np.int32).max
        h5["trigger_inputs/primitives"][k] = row
    return int(ev["event_number"])


@pytest.mark.timeout(900)
def test_one_changed_primitive_gives_mismatches(daq_run, tmp_path):
    event = _mutate_one_primitive(daq_run, tmp_path)
    rc, report = _replay_check(run_paths(tmp_path / "run.h5"), tmp_path)
    assert rc == 3
    first = report["reproduction"]["files"][0]
    assert first["trigger_word_mismatches"] >= 1
    assert event in [m["event_number"] for m in first["first_trigger_word_mismatches"]]
    assert all(f["pulse_mismatched_events"] == 0 for f in report["reproduction"]["files"])


def test_new_prescaler_is_counted_over_the_run_not_reapplied_to_events(daq_run):
    results = replay_files(daq_run, Overlay.from_sets(["trigger.prescale.beam=100"]))
    summary = ReplaySummary(results)
    (run,) = summary.run_reports
    old, new = run["old"], run["new"]
    # raw decisions do not depend on a prescaler: the same raw counts, the new factor over all of them,
    # in trigger order across the rotated files (not restarted per file)
    assert new["raw"] == old["raw"]
    assert new["prescaled"]["beam"] == old["raw"]["beam"] // 100 > 0
    for name in TriggerBits.NAMES:
        assert new["prescaled"][name] == new["accepted"][name] + new["lost_dead"][name] + new["lost_busy"][name]
    report = summary.as_dict()
    assert report["per_trigger_type"]["beam"]["new_accepted"] == new["accepted"]["beam"]
    for f in results:
        if f.n_events:
            # per event: the raw types that would fire (here those stored), no accepted bits
            assert f.stream
            np.testing.assert_array_equal(f.new_word, f.stored_word & RAW)
    assert report["n_changed"] == 0


def test_new_dead_time_loses_more_raw_decisions(daq_run):
    results = replay_files(daq_run, Overlay.from_sets(["trigger.dead_time_ns=200000.0"]))
    (run,) = ReplaySummary(results).run_reports
    old, new = run["old"], run["new"]
    assert new["raw"] == old["raw"]
    assert new["lost_dead_triggers"] > old["lost_dead_triggers"]
    assert new["triggers"] < old["triggers"]
    assert new["attempts"] == new["triggers"] + new["lost_dead_triggers"] + new["lost_busy_triggers"]


def test_new_threshold_reports_raw_types_per_event(daq_run):
    # a tighter missing-energy cut: some stored physics triggers would not fire any more
    results = replay_files(daq_run, Overlay.from_sets(["trigger.ecal_cut_beam_fraction=0.1"]))
    summary = ReplaySummary(results)
    physics = np.uint32(1 << (8 + TriggerBits.NAMES.index("physics")))
    stored = np.concatenate([f.stored_word for f in results])
    new = np.concatenate([f.new_word for f in results])
    assert not np.any(new & 0xFF)  # raw types only: nothing re-accepted
    lost = (stored & physics) != 0
    assert lost.any() and np.count_nonzero(new & physics) < np.count_nonzero(lost)
    assert not np.any((new & physics) & ~(stored & physics))  # a tighter cut gains no physics event
    report = summary.as_dict()
    assert report["n_changed"] > 0
    assert all("raw_physics" in e["lost"] for e in report["changed_events"] if e["lost"])
    (run,) = summary.run_reports
    assert run["new"]["raw"]["physics"] < run["old"]["raw"]["physics"]
