"""Pulse templates and per-channel parameter tables for the waveform kernels.

Templates are sampled on a fine grid (``FINE_PER_NS`` points per ns), in units of ADC counts
per fired cell divided by the gain (the single-cell pulse before shaping has peak 1):

- ``cell``: single-cell pulse (difference of exponentials) convolved with the shaping
  (a unit-area single-pole low-pass of time constant ``shaping_ns``);
- ``main``: scintillation time profile (x) ``cell``;
- ``afterpulse``: ``main`` (x) the exponential afterpulse delay distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from ..config import SUBSYSTEMS, Config, SubsystemConfig

FINE_PER_NS = 8
SPAN_DECAYS = 8.0
"""A pulse is followed for SPAN_DECAYS times the sum of its time constants (tail < 1e-3)."""

# columns of Tables.chan_f
C_LY, C_NCELLS, C_GAIN, C_GAIN_SPREAD, C_XT, C_AP, C_AP_TAU, C_DARK_MU, C_PED, C_NOISE, C_CNOISE = range(11)
N_CF = 11
# columns of Tables.chan_i
I_SUB, I_BOARD = range(2)
# template kinds
T_MAIN, T_AP, T_CELL = range(3)

DARK_BLOCK_SAMPLES = 256
"""Dark counts are drawn per (channel, block of this many samples)."""


def span_ns(sub: SubsystemConfig) -> float:
    """How long after a deposit its pulse is followed, in ns."""
    s, p, e = sub.scintillator, sub.sipm, sub.electronics
    return SPAN_DECAYS * (max(s.decay_ns) + s.rise_ns + p.pulse_rise_ns + p.pulse_decay_ns + e.shaping_ns)


def _exp_bins(n: int, tau: float) -> np.ndarray:
    """Probability of an exponential delay (mean tau) in each fine bin centred on i*dt."""
    dt = 1.0 / FINE_PER_NS
    edges = np.clip((np.arange(n + 1) - 0.5) * dt, 0.0, None)
    if tau <= 0.0:
        w = np.zeros(n)
        w[0] = 1.0
        return w
    return -np.diff(np.exp(-edges / tau))


def cell_pulse(sub: SubsystemConfig, n: int) -> np.ndarray:
    """Single-cell pulse (peak 1 before shaping) after shaping, on the fine grid."""
    p = sub.sipm
    t = np.arange(n) / FINE_PER_NS
    shape = np.exp(-t / p.pulse_decay_ns) - np.exp(-t / p.pulse_rise_ns)
    tr, td = p.pulse_rise_ns, p.pulse_decay_ns
    t_peak = math.log(td / tr) * tr * td / (td - tr)
    shape /= math.exp(-t_peak / td) - math.exp(-t_peak / tr)
    tau_s = sub.electronics.shaping_ns
    if tau_s > 0.0:
        shape = fftconvolve(shape, _exp_bins(n, tau_s))[:n]
    return shape


def scintillation_bins(sub: SubsystemConfig, n: int) -> np.ndarray:
    """Probability of the photon emission delay in each fine bin: sum over decay components of
    Exp(rise) + Exp(decay_k), weighted by the fractions."""
    s = sub.scintillator
    w = np.zeros(n)
    rise = _exp_bins(n, s.rise_ns)
    for tau, frac in zip(s.decay_ns, s.fractions):
        w += frac * fftconvolve(rise, _exp_bins(n, tau))[:n]
    return w


@dataclass(frozen=True)
class Tables:
    """Everything the kernels need, as flat numpy arrays."""

    chan_f: np.ndarray        # (n_channels, N_CF) float64
    chan_i: np.ndarray        # (n_channels, 2) int64
    templates: np.ndarray     # (n_subsystems, 3, n_fine) float64
    span_fine: np.ndarray     # (n_subsystems,) int64
    span_ns: np.ndarray       # (n_subsystems,) float64
    scint_tau: np.ndarray     # (n_subsystems, 4)
    scint_cum: np.ndarray     # (n_subsystems, 4) cumulative fractions
    scint_rise: np.ndarray    # (n_subsystems,)
    lookback_ns: float
    cell_area_samples: np.ndarray  # (n_subsystems,) area of `cell` in sample units


def build_tables(cfg: Config) -> Tables:
    """Per-channel parameters and per-subsystem templates from the configuration."""
    spans = np.array([span_ns(cfg.subsystem(s)) for s in SUBSYSTEMS])
    n_fine = int(math.ceil(spans.max() * FINE_PER_NS)) + 1
    nsub = len(SUBSYSTEMS)
    templates = np.zeros((nsub, 3, n_fine))
    scint_tau = np.ones((nsub, 4))
    scint_cum = np.ones((nsub, 4))
    scint_rise = np.zeros(nsub)
    area = np.zeros(nsub)
    sample_ns = cfg.digitizer.sample_ns
    for i, name in enumerate(SUBSYSTEMS):
        sub = cfg.subsystem(name)
        if len(sub.scintillator.decay_ns) > 4:
            raise ValueError(f"detector.{name}.scintillator.decay_ns: at most 4 components, got "
                             f"{sub.scintillator.decay_ns}")
        cell = cell_pulse(sub, n_fine)
        main = fftconvolve(scintillation_bins(sub, n_fine), cell)[:n_fine]
        ap = fftconvolve(main, _exp_bins(n_fine, sub.sipm.afterpulse_tau_ns))[:n_fine]
        m = int(math.ceil(spans[i] * FINE_PER_NS))
        for j, tmpl in enumerate((main, ap, cell)):
            templates[i, j, :m] = tmpl[:m]
        k = len(sub.scintillator.decay_ns)
        scint_tau[i, :k] = sub.scintillator.decay_ns
        scint_cum[i, :k] = np.cumsum(sub.scintillator.fractions)
        scint_cum[i, k - 1:] = 1.0
        scint_rise[i] = sub.scintillator.rise_ns
        area[i] = cell[:m].sum() / FINE_PER_NS / sample_ns
    cmap = cfg.channel_map
    n = len(cmap)
    chan_f = np.zeros((n, N_CF))
    chan_i = np.zeros((n, 2), np.int64)
    for c in range(n):
        name = cmap.table["subsystem"][c].decode()
        sub = cfg.subsystem(name)
        p, e = sub.sipm, sub.electronics
        chan_f[c] = (sub.scintillator.light_yield_pe_per_mev, p.n_cells, p.gain_adc_per_pe, p.gain_spread,
                     p.crosstalk_prob, p.afterpulse_prob, p.afterpulse_tau_ns,
                     p.dark_rate_hz * DARK_BLOCK_SAMPLES * sample_ns * 1e-9,
                     e.pedestal_adc, e.noise_adc, e.correlated_noise_adc)
        chan_i[c] = (SUBSYSTEMS.index(name), cmap.table["board"][c])
    return Tables(chan_f, chan_i, templates, np.ceil(spans * FINE_PER_NS).astype(np.int64), spans,
                  scint_tau, scint_cum, scint_rise, float(spans.max()), area)


def noise_banks(seed: int, sample_ns: float, correlated_ns: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance white and correlated (AR(1), time constant ``correlated_ns``) noise banks.

    The kernels read them at hashed offsets: generating noise then costs one load per sample.
    """
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(seed, spawn_key=(3,))))
    white = rng.standard_normal(size)
    phi = math.exp(-sample_ns / correlated_ns)
    drive = rng.standard_normal(size) * math.sqrt(1.0 - phi * phi)
    corr = np.empty(size)
    x = rng.standard_normal()
    for _ in range(2):  # second pass starts from the end of the first: circular, stationary
        corr = _ar1(drive, phi, x)
        x = corr[-1]
    return white, corr


def _ar1(drive: np.ndarray, phi: float, x0: float) -> np.ndarray:
    from scipy.signal import lfilter
    y, _ = lfilter([1.0], [1.0, -phi], drive, zi=[phi * x0])
    return y
