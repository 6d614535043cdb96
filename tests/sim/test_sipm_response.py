"""Collected charge: linear below saturation, N_cells (1 - exp(-N_pe / N_cells)) above it."""

import math

import numpy as np
import pytest

from pokerdaq.sim import build_tables, emulate_channel

ECAL = 3  # index of "ecal" in SUBSYSTEMS


def charge_in_cells(cfg, waveforms, subsystem="ecal"):
    """Pedestal-subtracted sum of a window, in units of one fired cell's pulse area."""
    from pokerdaq.config import SUBSYSTEMS

    sub = cfg.subsystem(subsystem)
    area = build_tables(cfg).cell_area_samples[SUBSYSTEMS.index(subsystem)]
    q = (waveforms.astype(np.float64) - sub.electronics.pedestal_adc).sum(axis=1)
    return q / (sub.sipm.gain_adc_per_pe * area)


@pytest.mark.parametrize(
    "subsystem, channel, energies",
    [
        # ECAL: 0.3 pe mean (photoelectron by photoelectron, < 1 pe) to 2500 pe (template)
        ("ecal", "ECAL_r4c4", ((0.06, 200000), (1.2, 30000), (3.0, 12000), (20.0, 4000), (100.0, 2000), (500.0, 1000))),
        # beam counter: 10 to 200 pe one by one (MIPs), 250 to 1000 pe with the template
        ("beam_counters", "S1", ((0.2, 20000), (1.0, 8000), (3.9, 4000), (5.0, 4000), (20.0, 2000))),
    ],
)
def test_mean_charge_linear_in_energy_across_both_rendering_modes(cfg, quiet, subsystem, channel, energies):
    # no saturation (10^9 cells), no dark counts or afterpulses, crosstalk 2 %
    c = quiet(
        cfg,
        subsystem,
        sipm__n_cells=10**9,
        sipm__gain_adc_per_pe=2.0,
        sipm__dark_rate_hz=0.0,
        sipm__afterpulse_prob=0.0,
        sipm__crosstalk_prob=0.02,
    )
    ch = c.channel_map.index(channel)
    ly = c.subsystem(subsystem).scintillator.light_yield_pe_per_mev
    expected_per_mev = ly / (1.0 - 0.02)  # fired cells + geometric optical crosstalk
    # the pedestal integral of empty windows (noise-bank and quantisation offsets, ~0.02 cells)
    # is subtracted, as a calibration would
    offset = charge_in_cells(c, emulate_channel(c, ch, np.zeros(50000), seed=11, n_samples=96), subsystem).mean()
    for e_mev, n in energies:
        q = charge_in_cells(c, emulate_channel(c, ch, np.full(n, e_mev), seed=11, n_samples=96), subsystem) - offset
        ratio = q.mean() / (e_mev * expected_per_mev)
        # the window holds 99.9 % of the pulse (8 decay times of the slow component)
        assert ratio == pytest.approx(1.0, abs=0.01), (e_mev, ratio)


@pytest.mark.parametrize("mean_pe", [500.0, 2000.0, 6000.0, 20000.0])
def test_saturation_follows_cell_occupancy(cfg, quiet, mean_pe):
    n_cells = 2000
    c = quiet(
        cfg,
        "ecal",
        sipm__n_cells=n_cells,
        sipm__gain_adc_per_pe=1.0,
        sipm__dark_rate_hz=0.0,
        sipm__afterpulse_prob=0.0,
        sipm__crosstalk_prob=0.0,
        sipm__gain_spread=0.0,
    )
    ch = c.channel_map.index("ECAL_r0c0")
    ly = c.detector.ecal.scintillator.light_yield_pe_per_mev
    q = charge_in_cells(c, emulate_channel(c, ch, np.full(400, mean_pe / ly), seed=12, n_samples=128))
    expected = n_cells * (1.0 - math.exp(-mean_pe / n_cells))
    assert q.mean() == pytest.approx(expected, rel=0.02)
    if mean_pe >= 6000:  # deep saturation: far below the photoelectron count
        assert q.mean() < 0.4 * mean_pe
