"""pokerdaq inspect: tables, energies measured from stored pulses, and the five plots."""

from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
from _inspect_helpers import N_EVENTS, assert_png_drawn

from pokerdaq.config import load_config
from pokerdaq.inspection import (
    event_energies,
    file_counters,
    format_pm,
    plot_ecal_resolution,
    signal_region,
    signal_region_hcal_gev,
)
from pokerdaq.io import EventFlags, RunFile
from pokerdaq.sim import Species, photostatistics_term
from pokerdaq.trigger import TriggerBits

PLOTS = ("waveforms.png", "ecal_vs_hcal.png", "srd_spectra.png", "ecal_resolution.png", "trigger_rates.png")


def test_cli_prints_tables_and_draws_every_plot(demo_run, tmp_path):
    out = tmp_path / "plots"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "inspect", str(demo_run), "--plots", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", **_env()},
    )
    assert proc.returncode == 0, proc.stderr
    with RunFile(demo_run) as f:
        n_phys = int(np.count_nonzero(f.events["trigger_word"] & TriggerBits.PHYSICS))
        n_pulses = len(f.pulses)
    text = proc.stdout
    assert "run_number" in text and "minimum-bias" in text
    assert "│ events " in text and str(N_EVENTS) in text
    assert str(n_pulses) in text
    line = next(ln for ln in text.splitlines() if ln.startswith("│ physics"))
    assert line.split("│")[2].strip() == str(n_phys)
    assert "events in the NA64 signal region (E_ECAL < 50 GeV" in text
    assert "ECAL resolution, total (E_CALO / E particle, truth): sigma/E" in text
    assert "ECAL resolution, readout only" in text
    for name in PLOTS:
        assert_png_drawn(out / name)


def _env():
    import os

    return dict(os.environ)


def test_event_out_of_range_is_refused(demo_run):
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "inspect", str(demo_run), "--event", "100000", "--plots", "unused"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("pokerdaq inspect: --event 100000") and f"0..{N_EVENTS - 1}" in proc.stderr
    assert not proc.stdout, "refused before any table is printed"


def test_measured_energies_follow_truth_and_fill_the_signal_region(demo_run):
    with RunFile(demo_run) as f:
        cfg, truth = f.config, f.truth
        e = event_energies(f.pulses, f.events["n_pulses"], cfg)
    deposited = truth["e_ecal_gev"].astype(float) + truth["e_preshower_gev"].astype(float)
    clean = (truth["species"] == Species.POSITRON) & (truth["n_pileup"] == 0) & (deposited > 10)
    ratio = e.e_calo_gev[clean] / deposited[clean]
    assert clean.sum() > 200
    assert abs(np.median(ratio) - 1.0) < 0.05
    hcal_cut = signal_region_hcal_gev(cfg.beam.species)
    inside = (e.e_calo_gev < 50.0) & (e.e_hcal_gev < hcal_cut) & e.has_beam
    signal = truth["is_signal"].astype(bool)
    assert signal.sum() >= 15
    # A' events (61 GeV missing of 100) fall in the region; ordinary showers do not
    assert inside[signal].mean() > 0.9
    assert inside[~signal & (truth["species"] == Species.POSITRON)].mean() < 0.03


def test_resolution_fit_states_number_and_statistics(demo_run, tmp_path):
    with RunFile(demo_run) as f:
        cfg, truth = f.config, f.truth
        e = event_energies(f.pulses, f.events["n_pulses"], cfg)
    path, res = plot_ecal_resolution(e, truth, cfg, tmp_path)
    assert_png_drawn(path)
    readout, total = res["readout"], res["total"]
    # readout only (measured / deposited): photo-statistics and noise, compared with photo-statistics
    assert readout["n_events"] > 200
    assert 0.001 < readout["sigma_over_e"] < 0.05
    assert readout["sigma_over_e_error"] < 0.3 * readout["sigma_over_e"]
    assert abs(readout["mean"] - 1.0) < 0.05
    expected = photostatistics_term(cfg) / np.sqrt(readout["reference_energy_gev"])
    assert readout["expected_sigma_over_e"] == expected
    assert expected < readout["sigma_over_e"] < 3 * expected
    # total (measured / particle energy): every calorimeter term, compared with the requirement
    assert total["n_events"] == readout["n_events"]
    req = np.hypot(0.025 / np.sqrt(total["reference_energy_gev"]), 0.005)
    assert abs(total["requirement_sigma_over_e"] - req) < 1e-12 and total["compared_sigma_over_e"] == req
    # the emulator smears deposits to the required total: measured within 4 sigma of it
    assert abs(total["sigma_over_e"] - req) < 4 * total["sigma_over_e_error"] + 0.1 * readout["sigma_over_e"]
    assert total["sigma_over_e"] > readout["sigma_over_e"]


def test_resolution_without_truth_adds_the_beam_spread(demo_run, tmp_path):
    with RunFile(demo_run) as f:
        cfg = f.config
        e = event_energies(f.pulses, f.events["n_pulses"], cfg)
    _, res = plot_ecal_resolution(e, None, cfg, tmp_path)
    assert "readout" not in res
    t = res["total"]
    req = np.hypot(0.025 / np.sqrt(t["reference_energy_gev"]), 0.005)
    assert t["compared_sigma_over_e"] == np.hypot(req, cfg.beam.energy_spread)
    assert "beam spread" in t["compared_with"]


def test_signal_region_follows_the_beam_energy(demo_run):
    cfg = load_config()
    assert signal_region(cfg) == (50.0, 3.0)
    assert signal_region(cfg.replace(beam={"energy_gev": 40.0, "signal_fraction": 0.0}))[0] == 20.0
    assert signal_region(cfg.replace(beam={"species": "e-"}, trigger={"ecal_cut_gev": 30.0})) == (30.0, 1.0)


def test_pm_format_gives_two_significant_digits_of_the_error():
    assert format_pm(0.001861, 0.0000731) == "0.1861 +- 0.0073"
    assert format_pm(0.0115, 0.0005) == "1.150 +- 0.050"
    assert format_pm(0.05, 0.012) == "5.0 +- 1.2"


def test_counters_count_flags_and_bits(demo_run, tmp_path):
    path = tmp_path / "flagged.h5"
    shutil.copy(demo_run, path)
    with h5py.File(path, "r+") as h5:
        ev = h5["events"][:]
        ev["flags"][[3, 5, 8]] |= int(EventFlags.INCOMPLETE)
        ev["trigger_word"][0] = TriggerBits.MUON | (TriggerBits.MUON << TriggerBits.RAW_SHIFT)
        h5["events"][:] = ev
    with RunFile(path) as f:
        c = file_counters(f.events, f.scalers, len(f.pulses))
        muon_raw = int(np.count_nonzero(f.events["trigger_word"] & (TriggerBits.MUON << TriggerBits.RAW_SHIFT)))
    assert c["flags"]["INCOMPLETE"] == 3
    assert c["flags"]["SIMULATED"] == N_EVENTS
    assert c["trigger_accepted"]["muon"] >= 1
    assert c["trigger_raw"]["muon"] == muon_raw


def test_file_without_truth_with_scalers(tmp_path):
    """A DAQ-like file: no truth, trigger words from the trigger, two spills of scalers."""
    from pokerdaq.config import load_config
    from pokerdaq.dsp import PulseParams, find_pulses_batch
    from pokerdaq.io import EVENT_DTYPE, SCALER_DTYPE, RunFileWriter
    from pokerdaq.sim import emulate_windows

    cfg = load_config()
    samples, truth = emulate_windows(cfg, 120, 4)
    pulses, offsets = find_pulses_batch(samples, PulseParams.from_config(cfg))
    headers = np.zeros(120, EVENT_DTYPE)
    headers["event_number"] = np.arange(120)
    headers["timestamp"] = truth["t_sample"]
    headers["trigger_word"] = np.where(np.arange(120) % 3 == 0, TriggerBits.BEAM, TriggerBits.CALIBRATION)
    headers["n_pulses"] = np.diff(offsets)
    scalers = np.zeros(2, SCALER_DTYPE)
    scalers["spill"] = [0, 1]
    scalers["start_timestamp"] = [0, 1000]
    scalers["stop_timestamp"] = [1000, 2000]
    scalers["busy_ticks"] = [100, 300]
    scalers["beam_counts"] = [70, 50]
    path = tmp_path / "daq_like.h5"
    with RunFileWriter(path, cfg, producer="run") as w:
        w.write_events(headers, samples, pulses)
        w.write_scalers(scalers)
    out = tmp_path / "plots"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "inspect", str(path), "--plots", str(out), "--event", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", **_env()},
    )
    assert proc.returncode == 0, proc.stderr
    assert "scalers: beam_counts" in proc.stdout and "120" in proc.stdout
    live = next(ln for ln in proc.stdout.splitlines() if "not_busy_fraction (no dead time)" in ln)
    assert "0.8000" in live  # 1 - 400 busy ticks / 2000
    assert "live_fraction" not in proc.stdout  # one live time (the run summary's); this one says what it is
    assert "truth" in proc.stdout and "│ no" in proc.stdout
    assert "Warning" not in proc.stderr
    for name in PLOTS:
        assert_png_drawn(out / name)


def test_simulate_file_without_pulses_gets_them_from_its_samples(tmp_path):
    """A minimum-bias `pokerdaq simulate` file stores no pulses: inspect finds them in the raw
    samples, so the energy plots and the resolution fit use real energies, not zeros."""
    path = tmp_path / "mb.h5"
    env = {"COLUMNS": "200", **_env()}
    sim = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "simulate", "--events", "300", "--seed", "5", "--output", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert sim.returncode == 0, sim.stderr
    out = tmp_path / "plots"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "inspect", str(path), "--plots", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ECAL resolution, readout only"))
    sigma_percent = float(line.split("=")[1].split("+-")[0])
    assert 0.05 < sigma_percent < 3.0, line  # a fit to real energies, not to an all-zero sample
    for name in PLOTS:
        assert_png_drawn(out / name)


def test_plots_leave_the_users_matplotlib_backend_alone(demo_run, tmp_path):
    """A notebook keeps its backend: the library draws on bare Figures, without pyplot."""
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
from pokerdaq.io import RunFile
from pokerdaq.inspection import plot_trigger_rates
with RunFile({str(demo_run)!r}) as f:
    plot_trigger_rates(f.events, {str(tmp_path)!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_png_drawn(tmp_path / "trigger_rates.png")
