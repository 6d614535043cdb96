"""Replay of minimum-bias files: exact reproduction, predicted changes, parallel and Dask runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from _replay_helpers import N_EVENTS, assert_png_drawn

from pokerdaq.config import loads_config
from pokerdaq.dsp import PulseParams
from pokerdaq.dsp._reference import find_pulses_reference
from pokerdaq.io import RunFile
from pokerdaq.replay import ReplaySummary, WindowSetup, replay_file, replay_files, replay_windows
from pokerdaq.trigger import ConditionBits, TriggerBits
from pokerdaq.trigger._registers import _lsb

PHYSICS_RAW = TriggerBits.PHYSICS << TriggerBits.RAW_SHIFT


def _with(cfg, **sections):
    return cfg.replace(**sections)


def test_own_configuration_reproduces_every_stored_word_and_pulse(minbias_files):
    r = replay_file(minbias_files["a"])
    with RunFile(minbias_files["a"]) as f:
        stored_words = f.events["trigger_word"]
        assert len(f) == N_EVENTS
        assert len(f.pulses) > 10 * N_EVENTS
    assert r.has_stored_words
    assert np.array_equal(r.old_word, stored_words)
    assert r.word_mismatches == 0 and r.pulse_mismatched_events == 0, (r.word_mismatch_list, r.pulse_mismatches)
    assert r.stored_pulses == r.replayed_pulses > 10 * N_EVENTS
    # the file has every trigger type that fires on beam particles
    assert np.count_nonzero(stored_words & TriggerBits.PHYSICS) > 10


def test_tampered_pulse_and_word_are_reported(minbias_files, tmp_path):
    """The reproduction check fails on one changed pulse field and one changed trigger word."""
    path = tmp_path / "tampered.h5"
    shutil.copy(minbias_files["a"], path)
    with h5py.File(path, "r+") as h5:
        pulses = h5["pulses"][:]
        row = len(pulses) // 2
        target_event = int(pulses["event_number"][row])
        pulses["integral"][row] += 1
        h5["pulses"][row] = pulses[row]
        ev = h5["events"][:]
        ev["trigger_word"][7] ^= TriggerBits.CALIBRATION
        h5["events"][7] = ev[7]
        word_event = int(ev["event_number"][7])
    r = replay_file(path)
    assert not r.reproduced
    assert r.pulse_mismatched_events == 1
    assert r.pulse_mismatches[0]["event_number"] == target_event
    assert r.pulse_mismatches[0]["field"] == "integral"
    assert r.pulse_mismatches[0]["stored"] == r.pulse_mismatches[0]["replayed"] + 1
    assert r.word_mismatches == 1 and r.word_mismatch_list[0]["event_number"] == word_event


def test_untriggered_recording_replays(minbias_files):
    """Stored words 0 (minimum bias without trigger): same decisions as the triggered copy."""
    r0 = replay_file(minbias_files["untriggered"])
    r1 = replay_file(minbias_files["a"])
    assert not r0.has_stored_words and r0.reproduced
    assert np.array_equal(r0.old_word, r1.old_word)
    assert np.count_nonzero(r0.old_word) > 0


def test_lower_ecal_cut_changes_exactly_the_predicted_events(minbias_files, signal_config):
    """ECAL cut 50 -> 39 GeV: physics triggers with E_CALO in [39, 50) GeV are lost, nothing else."""
    new_cfg = _with(signal_config, trigger={"ecal_cut_gev": 39.0})
    old = replay_file(minbias_files["a"])
    new = replay_file(minbias_files["a"], new_cfg)
    # prediction from the file-configuration sums (which reproduce the stored words)
    e_calo = old.old_triggers["e_calo"].astype(np.int64)
    had_physics = (old.old_word & PHYSICS_RAW) != 0
    predicted = np.flatnonzero(had_physics & (e_calo >= _lsb(39_000.0)))
    changed = np.flatnonzero(new.old_word != new.new_word)
    assert len(predicted) >= 5 and np.count_nonzero(had_physics) > len(predicted)
    assert np.array_equal(changed, predicted)
    assert np.all(new.new_word[changed] == new.old_word[changed] & ~np.uint32(PHYSICS_RAW | TriggerBits.PHYSICS))
    # ECAL_LOW itself changes for more events (without the other physics conditions)
    flips = (new.old_triggers["conditions"] ^ new.new_triggers["conditions"]) & ConditionBits.ECAL_LOW
    assert np.count_nonzero(flips) >= len(predicted)
    assert new.new_pulses == new.replayed_pulses  # the pulse finder is unchanged


def test_beam_prescale_change_follows_the_counter(minbias_files, signal_config):
    """Beam prescale 1000 -> 3: every third raw beam trigger in file order is accepted."""
    new = replay_file(minbias_files["a"], _with(signal_config, trigger={"prescale": {"beam": 3}}))
    beam_raw = TriggerBits.BEAM << TriggerBits.RAW_SHIFT
    count, expected = 0, []
    for word in new.old_word:
        accepted = False
        if word & beam_raw:
            count += 1
            accepted = count % 3 == 0
        expected.append(accepted)
    expected = np.array(expected)
    assert np.array_equal((new.new_word & TriggerBits.BEAM) != 0, expected)
    assert expected.sum() > 50
    changed = np.flatnonzero(new.old_word != new.new_word)
    old_accepted = (new.old_word & TriggerBits.BEAM) != 0
    assert np.array_equal(changed, np.flatnonzero(expected != old_accepted))


def test_new_pulse_threshold_matches_the_naive_reference(minbias_files, signal_config):
    cfg = _with(
        signal_config,
        detector={"srd": {"pulse_finder": {"threshold_adc": 200}}, "ecal": {"pulse_finder": {"threshold_adc": 60}}},
    )
    setup = WindowSetup.from_config(cfg)
    with RunFile(minbias_files["a"]) as f:
        samples = f.samples[:6]
    pulses, offsets, _ = replay_windows(samples, setup)
    for e in range(6):
        ref = find_pulses_reference(samples[e], PulseParams.from_config(cfg))
        assert np.array_equal(pulses[offsets[e] : offsets[e + 1]], ref)
    new = replay_file(minbias_files["a"], cfg)
    assert new.new_pulses < new.replayed_pulses


def test_process_pool_equals_sequential(minbias_files, signal_config):
    cfg = _with(signal_config, trigger={"ecal_cut_gev": 39.0})
    files = [minbias_files["a"], minbias_files["b"]]
    seq = replay_files(files, cfg, jobs=1)
    par = replay_files(files, cfg, jobs=2)
    for s, p in zip(seq, par):
        assert s.path == p.path
        for name in ("old_word", "new_word", "old_triggers", "new_triggers"):
            assert np.array_equal(getattr(s, name), getattr(p, name)), name
    assert ReplaySummary(seq).as_dict() == ReplaySummary(par).as_dict()


def test_dask_cluster_equals_local(minbias_files, signal_config):
    from distributed import LocalCluster

    cfg = _with(signal_config, trigger={"ecal_cut_gev": 39.0})
    files = [minbias_files["a"], minbias_files["b"]]
    local = ReplaySummary(replay_files(files, cfg)).as_dict()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        remote = ReplaySummary(replay_files(files, cfg, dask_scheduler=cluster.scheduler_address)).as_dict()
    assert remote == local
    assert local["n_changed"] > 0


def test_config_for_another_detector_is_refused(minbias_files, signal_config):
    cfg = _with(signal_config, digitizer={"window_samples": 128})
    with pytest.raises(ValueError, match="window"):
        replay_file(minbias_files["a"], cfg)


def test_cli_report_and_plots(minbias_files, signal_config, tmp_path):
    text = RunFile(minbias_files["a"]).attrs["config_toml"]
    new_cfg = loads_config(text).replace(trigger={"ecal_cut_gev": 39.0})
    from pokerdaq.io._writer import config_text

    cfg_path = tmp_path / "new.toml"
    cfg_path.write_text(config_text(new_cfg))
    report, plots = tmp_path / "report.json", tmp_path / "plots"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pokerdaq.cli",
            "replay",
            str(minbias_files["a"]),
            str(minbias_files["b"]),
            "--config",
            str(cfg_path),
            "--output",
            str(report),
            "--plots",
            str(plots),
            "--jobs",
            "2",
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["n_events"] == 2 * N_EVENTS
    assert data["reproduction"]["reproduced"]
    per = data["per_trigger_type"]["physics"]
    assert per["new_raw"] < per["old_raw"]
    assert data["n_changed"] == per["old_raw"] - per["new_raw"]
    assert all("physics" in c["lost"] for c in data["changed_events"])
    sig = data["efficiency_by_truth_class"]["signal"]
    assert sig["n_events"] > 20 and sig["old"]["physics"]["raw_efficiency"] > 0.8
    for name in ("turn_on_ecal.png", "turn_on_srd.png", "turn_on_physics.png"):
        assert_png_drawn(plots / name)


def test_replay_of_a_pokerdaq_simulate_file(tmp_path, signal_config):
    """`pokerdaq simulate` writes one window per particle, no pulses, a constant marker word."""
    from pokerdaq.io._writer import config_text

    cfg_path = tmp_path / "signal.toml"
    cfg_path.write_text(config_text(signal_config))
    path = tmp_path / "sim.h5"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pokerdaq.cli",
            "simulate",
            "--config",
            str(cfg_path),
            "--events",
            "150",
            "--seed",
            "11",
            "--output",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    r = replay_file(path)
    assert r.producer == "simulate" and not r.has_stored_words and not r.pulses_stored
    assert r.reproduced and r.stored_pulses == 0 and r.replayed_pulses > 10 * 150
    # same samples as the minimum-bias recorder with the same seed: same decisions
    ref = replay_file(path, None)
    from pokerdaq.replay import record_minimum_bias

    mb = record_minimum_bias(signal_config, 150, tmp_path / "mb.h5", seed=11)
    with RunFile(mb) as a, RunFile(path) as b:
        assert np.array_equal(a.samples[:], b.samples[:])
        assert np.array_equal(a.events["trigger_word"], ref.old_word)


def test_cli_dask_scheduler_equals_local_report(minbias_files, tmp_path):
    """`--dask-scheduler tcp://...`: the CLI in another process uses a cluster served by this one."""
    from distributed import LocalCluster

    files = [str(minbias_files["a"]), str(minbias_files["b"])]
    local, remote = tmp_path / "local.json", tmp_path / "dask.json"
    base = [sys.executable, "-m", "pokerdaq.cli", "replay", *files, "--output"]
    proc = subprocess.run(base + [str(local)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        proc = subprocess.run(
            base + [str(remote), "--dask-scheduler", cluster.scheduler_address],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(remote.read_text()) == json.loads(local.read_text())
