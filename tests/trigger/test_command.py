"""``pokerdaq trigger``: the stream chain report and the re-trigger of an HDF5 run file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pokerdaq.cli import main
from pokerdaq.config import load_config
from pokerdaq.io import EVENT_DTYPE, RunFileWriter
from pokerdaq.sim import emulate_windows
from pokerdaq.trigger import TriggerBits


@pytest.mark.slow
def test_trigger_command_streams_and_writes_json(tmp_path, capsys):
    out = tmp_path / "trigger.json"
    assert main(["trigger", "--events", "150", "--seed", "5", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "physics" in text and "live fraction" in text
    report = json.loads(out.read_text())
    assert report["mode"] == "stream" and report["particles"] >= 150
    assert report["unmatched_particles"] == 0
    assert report["efficiencies"]["beam coincidence (all particles)"]["efficiency"] > 0.98
    assert report["rates"]["beam"]["raw"] == report["particles"]
    assert set(report["rates"]) == set(TriggerBits.NAMES)
    counters = report["counters"]
    accepted = list(counters["accepted"].values())
    assert max(accepted) <= counters["triggers"] <= sum(accepted)  # a trigger carries >= 1 type
    for name in TriggerBits.NAMES:
        assert counters["prescaled"][name] == (
            counters["accepted"][name] + counters["lost_dead"][name] + counters["lost_busy"][name]
        )
    assert 0.9 < report["live_fraction"] <= 1.0
    # the beam rate is recovered from the stream (Poisson, ~150 particles: 25 % bound)
    assert abs(report["rates"]["beam"]["raw_hz"] / report["beam_rate_hz"] - 1) < 0.25


@pytest.mark.slow
def test_trigger_command_re_triggers_a_run_file(tmp_path, capsys):
    cfg = load_config().replace(beam={"signal_fraction": 0.3})
    samples, truth = emulate_windows(cfg, 300, seed=9)
    headers = np.zeros(len(samples), EVENT_DTYPE)
    headers["event_number"] = np.arange(len(samples))
    path = tmp_path / "sim.h5"
    with RunFileWriter(path, cfg, producer="simulate") as writer:
        writer.write_events(headers, samples, None, truth)
    out = tmp_path / "t.json"
    assert main(["trigger", "--input", str(path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "file" and report["particles"] == 300
    eff = report["efficiencies"]
    signal = next(v for k, v in eff.items() if k.startswith("physics (signal"))
    assert signal["n"] > 50 and signal["efficiency"] > 0.9
    assert eff["physics (ordinary e+/e-)"]["efficiency"] < 0.02
    assert report["rates"]["beam"]["raw_fraction"] > 0.98


@pytest.mark.slow
def test_trigger_command_reads_a_simulate_file(tmp_path, capsys):
    path = tmp_path / "simulated.h5"
    assert main(["simulate", "--events", "400", "--seed", "4", "--output", str(path)]) == 0
    out = tmp_path / "t.json"
    assert main(["trigger", "--input", str(path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["particles"] == 400
    eff = report["efficiencies"]
    assert eff["beam coincidence (all particles)"]["efficiency"] > 0.98
    assert eff["SRD tag (e+/e-)"]["efficiency"] > 0.94  # ~390 e+; 0.99 with 1500 in test_physics
    assert eff["calibration (ordinary e+/e-)"]["efficiency"] > 0.95


def test_trigger_command_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["trigger", "--events", "5", "--input", "x.h5"])
    assert main(["trigger", "--input", str(tmp_path / "missing.h5")]) == 2
    assert "--input" in capsys.readouterr().err
    assert main(["trigger", "--events", "0"]) == 2
    assert "'--events' = 0" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(load_config().text.replace("beam_window_ns = 12.0", "beam_window_ns = -1.0"))
    assert main(["trigger", "--config", str(bad), "--events", "10"]) == 2
    assert "trigger.beam_window_ns" in capsys.readouterr().err
