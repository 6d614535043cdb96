"""Pulse templates and per-channel parameter tables for the waveform kernels.

Templates are sampled on a fine grid (``FINE_PER_SAMPLE`` points per ADC sample), in units of ADC counts
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

FINE_PER_SAMPLE = 32
"""Fine grid points per ADC sample (0.125 ns at 250 MS/s). A whole number per sample lets the
kernels step through a template with an integer stride."""
SPAN_DECAYS = 8.0
"""A pulse is followed for SPAN_DECAYS times the sum of its time constants (tail < 1e-3)."""

# columns of Tables.chan_f
(
    C_LY,
    C_NCELLS,
    C_GAIN,
    C_GAIN_SPREAD,
    C_XT,
    C_AP,
    C_AP_TAU,
    C_DARK_MU,
    C_PED,
    C_NOISE,
    C_CNOISE,
    C_PER_PE_MAX,
    C_DARK_BASELINE,
) = range(13)
N_CF = 13

DARK_RENDER_MIN_ADC = 0.25
"""Dark counts whose single-cell pulse peaks below this many ADC counts (the calorimeter
SiPMs, 0.03 ADC) are not rendered one by one: their mean adds to the baseline. Their
fluctuation (~0.01 ADC) is far below the electronics noise; rendering them cost a third of
the emulation time."""

PER_PE_MAX = {"beam_counters": 200.0, "srd": 400.0, "preshower": 1.0, "ecal": 1.0, "veto": 200.0, "hcal": 1.0}
"""Below this mean photoelectron count a deposit is rendered photoelectron by photoelectron
(emission time, crosstalk, afterpulse and gain of each cell); above it with the averaged
template and a fluctuated amplitude. Counters, VETO MIPs and the SRD (Lu-176 decays give up to
~360 pe) keep their photon-level time structure; in the calorimeters, where thousands of
channels x events carry a few pe of shower halo, the template is used from 1 pe on (speed; the
count, crosstalk, afterpulse and gain fluctuations stay exact, only photon timing is averaged)."""
# columns of Tables.chan_i
I_SUB, I_BOARD = range(2)
# template kinds
T_MAIN, T_AP, T_CELL = range(3)

DARK_BLOCK_SAMPLES = 32
"""Dark counts are drawn per (channel, block of this many samples)."""


def span_ns(sub: SubsystemConfig) -> float:
    """How long after a deposit its pulse is followed, in ns."""
    s, p, e = sub.scintillator, sub.sipm, sub.electronics
    return SPAN_DECAYS * (max(s.decay_ns) + s.rise_ns + p.pulse_rise_ns + p.pulse_decay_ns + e.shaping_ns)


def _exp_bins(n: int, tau: float, dt: float) -> np.ndarray:
    """Probability of an exponential delay (mean tau) in each fine bin centred on i*dt."""
    edges = np.clip((np.arange(n + 1) - 0.5) * dt, 0.0, None)
    if tau <= 0.0:
        w = np.zeros(n)
        w[0] = 1.0
        return w
    return -np.diff(np.exp(-edges / tau))


def cell_pulse(sub: SubsystemConfig, n: int, dt: float) -> np.ndarray:
    """Single-cell pulse (peak 1 before shaping) after shaping, on the fine grid."""
    p = sub.sipm
    t = np.arange(n) * dt
    shape = np.exp(-t / p.pulse_decay_ns) - np.exp(-t / p.pulse_rise_ns)
    tr, td = p.pulse_rise_ns, p.pulse_decay_ns
    t_peak = math.log(td / tr) * tr * td / (td - tr)
    shape /= math.exp(-t_peak / td) - math.exp(-t_peak / tr)
    tau_s = sub.electronics.shaping_ns
    if tau_s > 0.0:
        shape = fftconvolve(shape, _exp_bins(n, tau_s, dt))[:n]
    return shape


def scintillation_bins(sub: SubsystemConfig, n: int, dt: float) -> np.ndarray:
    """Probability of the photon emission delay in each fine bin: sum over decay components of
    Exp(rise) + Exp(decay_k), weighted by the fractions."""
    s = sub.scintillator
    w = np.zeros(n)
    rise = _exp_bins(n, s.rise_ns, dt)
    for tau, frac in zip(s.decay_ns, s.fractions):
        w += frac * fftconvolve(rise, _exp_bins(n, tau, dt))[:n]
    return w


@dataclass(frozen=True)
class Tables:
    """Everything the kernels need, as flat numpy arrays."""

    chan_f: np.ndarray  # (n_channels, N_CF) float64
    chan_i: np.ndarray  # (n_channels, 2) int64
    templates: np.ndarray  # (n_subsystems, 3, n_fine) float64
    span_fine: np.ndarray  # (n_subsystems, 3) int64: fine points used of each template
    span_ns: np.ndarray  # (n_subsystems,) float64
    scint_tau: np.ndarray  # (n_subsystems, 4)
    scint_cum: np.ndarray  # (n_subsystems, 4) cumulative fractions
    scint_rise: np.ndarray  # (n_subsystems,)
    lookback_ns: float
    cell_area_samples: np.ndarray  # (n_subsystems,) area of `cell` in sample units


def build_tables(cfg: Config) -> Tables:
    """Per-channel parameters and per-subsystem templates from the configuration."""
    spans = np.array([span_ns(cfg.subsystem(s)) for s in SUBSYSTEMS])
    sample_ns = cfg.digitizer.sample_ns
    dt = sample_ns / FINE_PER_SAMPLE
    span_fine = np.ceil(spans / dt).astype(np.int64)
    n_fine = int(span_fine.max()) + 1
    nsub = len(SUBSYSTEMS)
    templates = np.zeros((nsub, 3, n_fine))
    scint_tau = np.ones((nsub, 4))
    scint_cum = np.ones((nsub, 4))
    scint_rise = np.zeros(nsub)
    area = np.zeros(nsub)
    cell_span_fine = np.zeros(nsub, np.int64)
    for i, name in enumerate(SUBSYSTEMS):
        sub = cfg.subsystem(name)
        if len(sub.scintillator.decay_ns) > 4:
            raise ValueError(
                f"detector.{name}.scintillator.decay_ns: at most 4 components, got {sub.scintillator.decay_ns}"
            )
        cell = cell_pulse(sub, n_fine, dt)
        main = fftconvolve(scintillation_bins(sub, n_fine, dt), cell)[:n_fine]
        ap = fftconvolve(main, _exp_bins(n_fine, sub.sipm.afterpulse_tau_ns, dt))[:n_fine]
        m = int(span_fine[i])
        # the cell pulse alone is over after SPAN_DECAYS x its own time constants: rendering
        # it no further saves work for every photoelectron and dark count
        p_, e_ = sub.sipm, sub.electronics
        m_cell = min(m, int(math.ceil(SPAN_DECAYS * (p_.pulse_rise_ns + p_.pulse_decay_ns + e_.shaping_ns) / dt)))
        cell_span_fine[i] = m_cell
        for j, tmpl, mm in ((T_MAIN, main, m), (T_AP, ap, m), (T_CELL, cell, m_cell)):
            templates[i, j, :mm] = tmpl[:mm]
        k = len(sub.scintillator.decay_ns)
        scint_tau[i, :k] = sub.scintillator.decay_ns
        scint_cum[i, :k] = np.cumsum(sub.scintillator.fractions)
        scint_cum[i, k - 1 :] = 1.0
        scint_rise[i] = sub.scintillator.rise_ns
        area[i] = cell[:m_cell].sum() / FINE_PER_SAMPLE
    cmap = cfg.channel_map
    n = len(cmap)
    chan_f = np.zeros((n, N_CF))
    chan_i = np.zeros((n, 2), np.int64)
    for c in range(n):
        name = cmap.table["subsystem"][c].decode()
        sub = cfg.subsystem(name)
        p, e = sub.sipm, sub.electronics
        chan_f[c] = (
            sub.scintillator.light_yield_pe_per_mev,
            p.n_cells,
            p.gain_adc_per_pe,
            p.gain_spread,
            p.crosstalk_prob,
            p.afterpulse_prob,
            p.afterpulse_tau_ns,
            p.dark_rate_hz * DARK_BLOCK_SAMPLES * sample_ns * 1e-9,
            e.pedestal_adc,
            e.noise_adc,
            e.correlated_noise_adc,
            PER_PE_MAX[name],
            0.0,
        )
        i = SUBSYSTEMS.index(name)
        if p.gain_adc_per_pe * templates[i, T_CELL].max() < DARK_RENDER_MIN_ADC:
            cells_per_dark_count = (1.0 + p.afterpulse_prob) / (1.0 - p.crosstalk_prob)
            chan_f[c, C_DARK_BASELINE] = (
                p.dark_rate_hz * sample_ns * 1e-9 * cells_per_dark_count * p.gain_adc_per_pe * area[i]
            )
            chan_f[c, C_DARK_MU] = 0.0
        chan_i[c] = (i, cmap.table["board"][c])
    return Tables(
        chan_f,
        chan_i,
        templates,
        np.stack([span_fine, span_fine, cell_span_fine], axis=1),
        spans,
        scint_tau,
        scint_cum,
        scint_rise,
        float(spans.max()),
        area,
    )


def noise_banks(
    seed: int, sample_ns: float, correlated_ns: float, size: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance white and correlated (AR(1), time constant ``correlated_ns``) noise banks.

    The kernels read them at hashed offsets: generating noise then costs one load per sample.
    Each bank is circular, with its first ``pad`` values repeated at the end.
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
    # exactly zero mean and unit variance: a finite bank read at random offsets must not
    # shift the pedestal or the noise RMS
    white = (white - white.mean()) / white.std()
    corr = (corr - corr.mean()) / corr.std()
    return (
        np.concatenate([white, white[:pad]]).astype(np.float32),
        np.concatenate([corr, corr[:pad]]).astype(np.float32),
    )


def _ar1(drive: np.ndarray, phi: float, x0: float) -> np.ndarray:
    from scipy.signal import lfilter

    y, _ = lfilter([1.0], [1.0, -phi], drive, zi=[phi * x0])
    return y
