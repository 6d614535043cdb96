"""The harness against the numba model and the RTL, and its mismatch report (RTL trigger: test_rtl_trigger.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams
from pokerdaq.hil import ModelDut, run_hil
from pokerdaq.replay import record_minimum_bias
from pokerdaq.sim import emulate_windows


def _windows(n=24, seed=5):
    cfg = load_config()
    samples, truth = emulate_windows(cfg, n, seed)
    return cfg, samples, truth["event"].astype(np.int64)


def test_model_dut_passes_against_the_naive_reference(tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pokerdaq.cli",
            "hil",
            "--dut",
            "model",
            "--generate",
            "30",
            "--reference",
            "naive",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["windows_sent"] == 30
    assert data["pulses_reference"] == data["pulses_dut"] > 300
    # the model's own trigger words against trigger_windows on the naive reference pulses
    assert data["triggers_compared"] and data["trigger_windows_compared"] == 30
    assert data["trigger_mismatched_windows"] == 0 and data["triggers_dut"] == data["triggers_reference"]
    assert data["triggers_reference"]["beam"] > 0


def test_a_wrong_dut_gets_a_precise_mismatch_report():
    """A DUT with one wrong register (ECAL threshold + 7 ADC counts): first divergence named."""
    cfg, samples, events = _windows()
    params = PulseParams.from_config(cfg)
    ecal = cfg.channel_map.channels_of("ecal")
    wrong = ModelDut()
    wrong.configure = lambda p: ModelDut.configure(
        wrong, p.replace(thr=np.where(np.isin(np.arange(p.n_channels), ecal), p.thr + 7, p.thr))
    )
    rep = run_hil(wrong, samples, params, event_numbers=events + 1000)
    assert not rep.passed and rep.fault is None
    assert rep.mismatched_channel_windows > 0
    m = rep.first_mismatch
    assert m["channel"] in set(ecal.tolist())
    assert m["event_number"] == m["window"] + 1000
    # the first listed divergence is the earliest (window, channel) in order
    keys = [(x["window"], x["channel"]) for x in rep.mismatches]
    assert keys == sorted(keys) and keys[0] == (m["window"], m["channel"])
    lo = m["context"]["first_sample"]
    assert m["context"]["samples"] == [
        int(v) for v in samples[m["window"], m["channel"], lo : lo + len(m["context"]["samples"])]
    ]
    assert lo <= m["sample"] < lo + len(m["context"]["samples"])
    # every channel outside the ECAL agrees
    assert all(x["channel"] in set(ecal.tolist()) for x in rep.mismatches)


def test_rtl_dut_passes_on_a_stored_run(tmp_path):
    cfg = load_config()
    path = record_minimum_bias(cfg, 16, tmp_path / "stim.h5", seed=8)
    report = tmp_path / "rtl.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "hil", "--dut", "rtl", "--stimulus", str(path), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["passed"] and data["windows_sent"] == 16 and data["n_channels"] == 130
    assert data["pulses_dut"] == data["pulses_reference"] > 200
    # trigger words too: trigger_top on the RTL's own pulses, one record per window
    assert data["triggers_compared"] and data["trigger_windows_compared"] == 16
    assert data["trigger_mismatched_windows"] == 0 and data["triggers_dut"] == data["triggers_reference"]
    assert (
        data["dut_stats"]["rtl_random_records"] == 16 and data["dut_stats"]["trigger_primitives"] == data["pulses_dut"]
    )


def test_trigger_words_of_a_wrong_dut_are_reported_per_window():
    """A model DUT whose trigger ECAL calibration threshold is raised, and one that drops a record."""
    from pokerdaq.trigger import TriggerRegisters
    from pokerdaq.trigger._registers import P_CALIB_MIN

    cfg, samples, events = _windows(n=16)
    params = PulseParams.from_config(cfg)
    regs = TriggerRegisters.from_config(cfg)
    ref = ModelDut()
    rep = run_hil(ref, samples, params, trigger=regs, default_ref=cfg.digitizer.pretrigger_samples * 64)
    assert rep.passed and rep.trigger_windows_compared == 16 and rep.triggers_reference["calibration"] > 0

    wrong = ModelDut()

    def configure_trigger(r, default_ref):
        p = r.params.copy()
        p[P_CALIB_MIN] = 2**24 - 1  # no window reaches it: CALIBRATION never fires
        ModelDut.configure_trigger(wrong, TriggerRegisters(**{**r.__dict__, "params": p}), default_ref)

    wrong.configure_trigger = configure_trigger
    rep = run_hil(
        wrong,
        samples,
        params,
        trigger=regs,
        event_numbers=events + 500,
        default_ref=cfg.digitizer.pretrigger_samples * 64,
    )
    assert not rep.passed and rep.fault is None and rep.mismatched_channel_windows == 0
    assert rep.triggers_dut["calibration"] == 0 < rep.triggers_reference["calibration"]
    assert rep.trigger_mismatched_windows == rep.triggers_reference["calibration"]
    m = rep.first_trigger_mismatch
    assert set(m["fields"]) == {"trigger_word", "conditions"} and m["event_number"] == m["window"] + 500
    assert m["values"]["conditions"]["reference"] & (1 << 5) and not m["values"]["conditions"]["dut"] & (1 << 5)

    dropping = ModelDut()

    def process(first_window, block):
        pulses, window, (trig, trig_win) = ModelDut.process(dropping, first_window, block)
        return pulses, window, (trig[1:], trig_win[1:])  # the first window of every batch unanswered

    dropping.process = process
    rep = run_hil(dropping, samples, params, trigger=regs)
    assert rep.trigger_field_mismatches == {"n_triggers": 1} and rep.first_trigger_mismatch["window"] == 0
