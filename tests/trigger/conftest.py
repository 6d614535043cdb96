"""Shared fixtures: the default configuration and a synthetic pulse-record generator.

The generator writes PULSE_DTYPE records directly (no waveform emulation): each particle gives
beam-counter, SRD, calorimeter and VETO pulses with chosen energies and times, plus LYSO-like
and dark-count noise pulses, so that trigger logic can be checked against the naive reference
on many corner cases quickly. Physics validation with the emulator lives in test_physics.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp import PULSE_DTYPE
from pokerdaq.trigger import TriggerRegisters


@pytest.fixture(scope="session")
def cfg():
    return load_config()


@pytest.fixture(scope="session")
def regs(cfg):
    return TriggerRegisters.from_config(cfg, seed=7)


_REGS: dict = {}


def records_from_hits(cfg, hits) -> np.ndarray:
    """hits: iterable of (time_fine, channel, energy_mev) -> PULSE_DTYPE with integral_net from the calibration."""
    cached = _REGS.get(id(cfg))
    if cached is None:  # keep cfg alive with its registers so that its id is never reused
        cached = _REGS[id(cfg)] = (cfg, TriggerRegisters.from_config(cfg))
    regs = cached[1]
    roles = cfg.channel_map.table["subsystem"]
    hits = list(hits)
    rec = np.zeros(len(hits), dtype=PULSE_DTYPE)
    for i, (t, ch, e_mev) in enumerate(hits):
        sub = roles[ch].decode()
        rec[i]["channel"] = ch
        rec[i]["time"] = t
        rec[i]["coarse_time"] = t >> 6
        rec[i]["fine_time"] = t & 63
        rec[i]["integral_net"] = int(round(e_mev * regs.adc_per_mev[sub]))
    return rec


def synthetic_particles(
    cfg, rng, n, *, t_start=2000 * 64, mean_gap_fine=40_000, jitter_fine=200, noise_per_particle=3.0
):
    """Hits of n beam particles of mixed kinds with random energies (MeV), plus noise hits."""
    cmap = cfg.channel_map
    bc, srd, prs = cmap.channels_of("beam_counters"), cmap.channels_of("srd"), cmap.channels_of("preshower")
    ecal, veto, hcal = cmap.channels_of("ecal"), cmap.channels_of("veto"), cmap.channels_of("hcal")
    hits = []
    t = t_start
    for _ in range(n):
        t += int(rng.exponential(mean_gap_fine)) + 1
        kind = rng.integers(0, 5)
        for c in bc:
            if rng.random() < 0.93:  # some counters missing: 2-of-3 cases occur
                hits.append((t + int(rng.integers(-jitter_fine, jitter_fine)), int(c), float(rng.uniform(0.1, 2.0))))
        if kind in (0, 1):  # e+: SR photons
            for c in rng.choice(srd, size=rng.integers(0, len(srd) + 1), replace=False):
                hits.append((t + int(rng.integers(-900, 2800)), int(c), float(rng.exponential(3.0))))
        e_tot = {
            0: rng.uniform(0, 100e3),
            1: rng.uniform(20e3, 100e3),
            2: rng.uniform(0, 600),
            3: rng.uniform(0, 3e3),
            4: 0.0,
        }[int(kind)]
        for c, e in zip(rng.choice(prs, size=3, replace=False), rng.dirichlet(np.ones(3)) * 0.05 * e_tot):
            hits.append((t + int(rng.normal(150, 300)), int(c), float(e)))
        for c, e in zip(rng.choice(ecal, size=6, replace=False), rng.dirichlet(np.ones(6)) * 0.95 * e_tot):
            hits.append((t + int(rng.normal(150, 300)), int(c), float(e)))
        if kind in (2, 3):
            for c in rng.choice(veto, size=rng.integers(0, 3), replace=False):
                hits.append((t + int(rng.integers(-700, 2200)), int(c), float(rng.uniform(0, 20))))
            for c in rng.choice(hcal, size=4, replace=False):
                hits.append((t + int(rng.integers(-700, 2700)), int(c), float(rng.uniform(0, 800))))
        for _ in range(rng.poisson(noise_per_particle)):
            c = int(rng.integers(0, len(cmap)))
            hits.append((t + int(rng.integers(-20_000, 20_000)), c, float(rng.exponential(2.0))))
    return [h for h in hits if h[0] >= 0], t
