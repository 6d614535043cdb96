"""Trigger words of ``pokerdaq hil --dut rtl``: window mode on the stream trigger RTL.

The construction (``pokerdaq.hil._rtl_windows``: windows laid on one time line, window-mode
registers, records mapped back by T_REF) is checked first on the numba stream model
``TriggerModel``, which the trigger RTL equals bit for bit (tests/firmware/test_trigger_rtl.py),
against ``trigger_windows`` on corner windows; then the RTL DUT itself on windows with and
without a beam coincidence, and with a deliberately wrong trigger RTL or register.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, find_pulses_batch
from pokerdaq.hil import run_hil
from pokerdaq.hil._rtl import RtlDut
from pokerdaq.hil._rtl_windows import (
    WindowTimeline,
    records_per_window,
    timeline_segment,
    window_mode_registers,
    window_timeline,
)
from pokerdaq.sim import emulate_windows
from pokerdaq.trigger import TRIGGER_DTYPE, ConditionBits, TriggerBits, TriggerModel, TriggerRegisters, trigger_windows
from pokerdaq.trigger._registers import P_BEAM_W, P_ECAL_CUT, P_N_BOARDS


def _mutants():
    """tests/firmware/_mutants.py (the mutation table of the firmware tests), loaded by path."""
    path = Path(__file__).resolve().parents[1] / "firmware" / "_mutants.py"
    spec = importlib.util.spec_from_file_location("pokerdaq_test_mutants", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def _no_beam(cfg, samples: np.ndarray, windows) -> np.ndarray:
    """Copies of the windows with the beam counters flat at their pedestal: no beam coincidence."""
    out = samples.copy()
    beam = cfg.channel_map.channels_of("beam_counters")
    for w in windows:
        out[w, beam, :] = np.median(samples[w, beam, :8], axis=-1, keepdims=True).astype(np.uint16)
    return out


def _corner_pulses(cfg, n_windows: int, seed: int):
    """Emulated windows, a third without beam counters, plus pulses at the window edges and a
    beam coincidence late in some windows (a second candidate, or the first where the beam
    counters are flat)."""
    samples, _ = emulate_windows(cfg, n_windows, seed)
    samples = _no_beam(cfg, samples, range(0, n_windows, 3))
    params = PulseParams.from_config(cfg)
    pulses, offsets = find_pulses_batch(samples, params)
    window = np.repeat(np.arange(n_windows, dtype=np.int64), np.diff(offsets))
    n = samples.shape[2]
    extra, extra_win = [], []
    rng = np.random.default_rng(seed)
    beam = cfg.channel_map.channels_of("beam_counters")
    hcal = cfg.channel_map.channels_of("hcal")
    for w in range(1, n_windows - 1, 4):
        # an HCAL pulse at the first sample of the next window, any channel at the last
        # sample, and a late coincidence of two beam counters 10 fine units apart
        for k, t in enumerate((0, n * 64 - 1, n * 64 - 30, n * 64 - 30 + 10)):
            rec = np.zeros(1, pulses.dtype)
            rec["channel"] = (hcal[w % len(hcal)], rng.integers(0, len(cfg.channel_map)), beam[2 % len(beam)], beam[0])[
                k
            ]
            rec["time"] = t
            rec["integral_net"] = int(rng.integers(500, 20000))
            extra.append(rec)
            extra_win.append(w + 1 if k == 0 else w)
    pulses = np.concatenate([pulses, *extra])
    window = np.concatenate([window, np.asarray(extra_win, np.int64)])
    return pulses, window, n


def _stream_model_windows(pulses, window, n_windows, n, regs, default_ref):
    """The construction run through the numba stream model instead of the RTL."""
    timeline = window_timeline(n_windows, n, default_ref, regs)
    records, late = _model_on_timeline(pulses, window, timeline, regs)
    assert late == 0
    return records_per_window(records, timeline)


@pytest.mark.parametrize("default_ref", [16 * 64, 0, -10 * 64, 200 * 64])
def test_time_line_construction_reproduces_window_mode(cfg, default_ref):
    """Stream model on the time line == trigger_windows, every field, every window."""
    n_windows = 60
    pulses, window, n = _corner_pulses(cfg, n_windows, seed=31)
    regs = TriggerRegisters.from_config(cfg)
    got, got_win, counts = _stream_model_windows(pulses, window, n_windows, n, regs, default_ref)
    ref = trigger_windows(pulses, window, n_windows, regs, default_ref=default_ref)
    np.testing.assert_array_equal(got_win, np.arange(n_windows))
    for name in TRIGGER_DTYPE.names:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    # the corners are reached: windows without a beam coincidence (evaluated at default_ref,
    # no raw type), windows with a second beam candidate (dropped), raw types with a prescaler
    # != 1 and a dead time in the configuration (both neutralised by the window-mode registers)
    no_beam = (ref["conditions"] & ConditionBits.BEAM) == 0
    assert no_beam.sum() >= n_windows // 4 and (ref["ref_time"][no_beam] == default_ref).all()
    assert (ref["trigger_word"][no_beam] == 0).all()
    assert counts["beam_dropped"] > 0 and counts["random"] == n_windows and counts["unmapped"] == 0
    raw = ref["trigger_word"] >> TriggerBits.RAW_SHIFT
    assert (raw & TriggerBits.CALIBRATION).any() and (raw & TriggerBits.BEAM).any()
    assert regs.describe()["prescale_beam"] > 1 and regs.describe()["dead"] > 0


def test_time_line_keeps_windows_apart_for_wide_registers(cfg):
    """A long coincidence window and pile-up guard: the stride grows, results stay window mode."""
    base = TriggerRegisters.from_config(cfg)
    p = base.params.copy()
    p[P_BEAM_W] = 64 * 90  # longer than the window: a coincidence could reach the next slot
    from pokerdaq.trigger._registers import P_GUARD, P_SPAN_HI

    p[P_SPAN_HI] = max(p[P_SPAN_HI], p[P_BEAM_W])
    p[P_GUARD] = 64 * 500
    regs = dataclasses.replace(base, params=p)
    pulses, window, n = _corner_pulses(cfg, 30, seed=32)
    got, _, _ = _stream_model_windows(pulses, window, 30, n, regs, 1024)
    ref = trigger_windows(pulses, window, 30, regs, default_ref=1024)
    assert window_timeline(30, n, 1024, regs).stride >= 500 + n
    for name in TRIGGER_DTYPE.names:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def _model_on_timeline(pulses, window, timeline, regs):
    """Trigger records of the numba stream model on the time line, and its count of late records."""
    segment = timeline_segment(pulses, window, timeline, window_mode_registers(regs, timeline))
    model = TriggerModel(segment.regs)
    out, lo = [], 0
    for end, hi in zip(segment.ends, segment.cuts):
        out.append(model.process(segment.records[lo:hi], end))
        lo = hi
    return np.concatenate(out), model.counters.late_records


def _window_records(pulses, window, timeline, regs):
    """One record per window from the stream model on the time line (no check of late records)."""
    return records_per_window(_model_on_timeline(pulses, window, timeline, regs)[0], timeline)[0]


def test_a_stride_below_the_bounds_breaks_window_mode(cfg):
    """Negative control: the stride bounds are needed. Below the pile-up-guard bound a late
    coincidence of one window marks the next window's candidate PILEUP; below the window-span
    bound a decision sums the next window's primitives."""
    from pokerdaq.trigger._registers import P_LAT

    base = TriggerRegisters.from_config(cfg)
    p = base.params.copy()
    p[P_LAT] = 20  # low latency, so that the span and guard bounds set the stride
    regs = dataclasses.replace(base, params=p)
    n_windows = 24
    pulses, window, n = _corner_pulses(cfg, n_windows, seed=33)
    ref = trigger_windows(pulses, window, n_windows, regs, default_ref=0)
    good = window_timeline(n_windows, n, 0, regs)
    assert good.stride == 117  # (64 x 64 - 1 + 3360 guard) / 64, rounded up
    got = _window_records(pulses, window, good, regs)
    assert all((got[f] == ref[f]).all() for f in TRIGGER_DTYPE.names)
    short_guard = WindowTimeline(n_windows, n, 0, 80, 80 - 1 - 20)  # above the span bound (74)
    got = _window_records(pulses, window, short_guard, regs)
    pileup = (got["conditions"] & ConditionBits.PILEUP) != 0
    assert pileup.any() and not (ref["conditions"] & ConditionBits.PILEUP).any()
    # window 9: no beam counters but the late coincidence (T_REF = 64 x 64 - 30), window 10 an
    # HCAL pulse at its first sample: with 66 ticks per window it falls in 9's HCAL window
    assert ref["ref_time"][9] == n * 64 - 30 and ref["e_hcal"][9] == 0
    short_span = WindowTimeline(n_windows, n, 0, 66, 66 - 1 - 20)  # above the latency and end bounds
    got = _window_records(pulses, window, short_span, regs)
    assert got["e_hcal"][9] > 0


def test_settings_the_rtl_cannot_reproduce_are_refused(cfg):
    regs = TriggerRegisters.from_config(cfg)
    with pytest.raises(ValueError, match="default_ref = 100: .*multiple of 64"):
        window_timeline(4, 64, 100, regs)
    dut = RtlDut()
    with pytest.raises(ValueError, match="default_ref = 1000"):
        dut.configure_trigger(regs, 1000)
    p = regs.params.copy()
    p[P_N_BOARDS] = 17
    with pytest.raises(ValueError, match="N_BOARDS = 17"):
        dut.configure_trigger(dataclasses.replace(regs, params=p), 1024)
    with pytest.raises(ValueError, match="trigger register 'ecal_cutt'"):
        RtlDut(trigger_offsets={"ecal_cutt": 1})
    from pokerdaq.hil._command import make_dut

    with pytest.raises(ValueError, match="only for --dut rtl"):
        make_dut("model", rtl_trigger_offsets={"ecal_cut": 1})


def test_rtl_trigger_words_with_and_without_beam_and_a_wrong_ecal_cut(cfg):
    """RTL pulses -> trigger_top: window mode exactly, also for windows without a beam
    coincidence; an ECAL cut raised by 70 GeV in the RTL only is reported on the first window."""
    samples, truth = emulate_windows(cfg, 12, 41)
    samples = _no_beam(cfg, samples, (2, 5, 6))
    params = PulseParams.from_config(cfg)
    regs = TriggerRegisters.from_config(cfg)
    dref = cfg.digitizer.pretrigger_samples * 64
    rep = run_hil(RtlDut(), samples, params, trigger=regs, default_ref=dref)
    assert rep.passed, (rep.first_mismatch, rep.first_trigger_mismatch, rep.fault)
    assert rep.trigger_windows_compared == 12 and rep.pulses_dut == rep.pulses_reference > 100
    # windows 2, 5, 6 (at least) have no beam coincidence: evaluated at default_ref through the
    # RTL's periodic random candidate, one per window
    assert rep.triggers_reference["beam"] <= 9 and rep.triggers_dut == rep.triggers_reference
    assert rep.dut_stats["rtl_random_records"] == 12 and rep.dut_stats["rtl_records_unmapped"] == 0

    delta = 70 * 16000  # 70 GeV in LSB: the cut moves above most showers of the 100 GeV beam
    wrong = run_hil(
        RtlDut(trigger_offsets={"ecal_cut": delta}),
        samples,
        params,
        trigger=regs,
        default_ref=dref,
        event_numbers=truth["event"].astype(np.int64),
    )
    assert not wrong.passed and wrong.fault is None and wrong.mismatched_channel_windows == 0
    # the windows whose E_CALO lies between the true and the raised cut, and only those
    pulses, offsets = find_pulses_batch(samples, params)
    ref = trigger_windows(pulses, np.repeat(np.arange(12), np.diff(offsets)), 12, regs, default_ref=dref)
    e_calo = ref["e_calo"].astype(np.int64)
    moved = np.flatnonzero((e_calo >= regs[P_ECAL_CUT]) & (e_calo < regs[P_ECAL_CUT] + delta))
    assert len(moved) >= 6
    assert wrong.trigger_mismatched_windows == wrong.trigger_field_mismatches["conditions"] == len(moved)
    m = wrong.first_trigger_mismatch
    assert m["window"] == moved[0] and m["event_number"] == int(truth["event"][moved[0]])
    assert "conditions" in m["fields"]
    ecal_low = ConditionBits.ECAL_LOW
    assert m["values"]["conditions"]["dut"] & ecal_low and not m["values"]["conditions"]["reference"] & ecal_low


def test_a_wrong_trigger_rtl_makes_the_cli_fail_naming_event_and_field(tmp_path):
    """``pokerdaq hil --dut rtl`` on a firmware folder (``POKERDAQ_FIRMWARE_DIR``) whose
    trigger_top is mutant 5 of tests/firmware/_mutants.py (the pre-shower left out of E_CALO):
    exit status 1, the report names the first diverging event and its fields."""
    firmware = tmp_path / "firmware"
    _mutants().trigger_tree(5, firmware, with_pulse_finder=True)
    report = tmp_path / "mutant.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pokerdaq.cli",
            "hil",
            "--dut",
            "rtl",
            "--generate",
            "8",
            "--seed",
            "3",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "POKERDAQ_FIRMWARE_DIR": str(firmware)},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["fault"] is None and data["mismatched_channel_windows"] == 0  # the pulses are right
    assert data["trigger_windows_compared"] == 8 and data["trigger_mismatched_windows"] > 0
    m = data["first_trigger_mismatch"]
    ref, dut = m["values"]["e_calo"]["reference"], m["values"]["e_calo"]["dut"]
    # the mutant's E_CALO is the reference E_CALO less the window's pre-shower sum
    assert dut == ref - m["reference"]["e_preshower"] and m["reference"]["e_preshower"] > 0
    first = min(w["window"] for w in data["trigger_mismatches"])
    assert m["window"] == first and m["event_number"] >= 0 and "e_calo" in m["fields"]
    assert data["trigger_field_mismatches"]["e_calo"] == data["trigger_mismatched_windows"]
    assert f"first trigger mismatch: window {first} (event {m['event_number']})" in proc.stdout
    assert "e_calo: reference" in proc.stdout and "FAIL" in proc.stdout
