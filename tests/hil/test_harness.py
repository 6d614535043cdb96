"""The harness against the numba model and the RTL, and its mismatch report."""

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
    proc = subprocess.run([sys.executable, "-m", "pokerdaq.cli", "hil", "--dut", "model", "--generate", "30",
                           "--reference", "naive", "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["windows_sent"] == 30
    assert data["pulses_reference"] == data["pulses_dut"] > 300


def test_a_wrong_dut_gets_a_precise_mismatch_report():
    """A DUT with one wrong register (ECAL threshold + 7 ADC counts): first divergence named."""
    cfg, samples, events = _windows()
    params = PulseParams.from_config(cfg)
    ecal = cfg.channel_map.channels_of("ecal")
    wrong = ModelDut()
    wrong.configure = lambda p: ModelDut.configure(wrong, p.replace(thr=np.where(np.isin(np.arange(p.n_channels), ecal),
                                                                                 p.thr + 7, p.thr)))
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
    assert m["context"]["samples"] == [int(v) for v in samples[m["window"], m["channel"], lo:lo + len(m["context"]["samples"])]]
    assert lo <= m["sample"] < lo + len(m["context"]["samples"])
    # every channel outside the ECAL agrees
    assert all(x["channel"] in set(ecal.tolist()) for x in rep.mismatches)


def test_rtl_dut_passes_on_a_stored_run(tmp_path):
    cfg = load_config()
    path = record_minimum_bias(cfg, 16, tmp_path / "stim.h5", seed=8)
    report = tmp_path / "rtl.json"
    proc = subprocess.run([sys.executable, "-m", "pokerdaq.cli", "hil", "--dut", "rtl", "--stimulus", str(path),
                           "--report", str(report)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["passed"] and data["windows_sent"] == 16 and data["n_channels"] == 130
    assert data["pulses_dut"] == data["pulses_reference"] > 200
