"""Energy deposits per channel for each beam particle (vectorised numpy, one block at a time).

The model is parametrised, not a shower simulation; every parameter is in the ``[response]``
table of the configuration and docs/simulation.md describes the assumptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from ..config import SUBSYSTEMS, Config
from ._truth import Species


@dataclass(frozen=True)
class Layout:
    """Channel numbers of each subsystem as (modules, rows, cols) arrays, and sizes."""

    n_channels: int
    channels: dict[str, np.ndarray]

    @classmethod
    def from_config(cls, cfg: Config) -> Layout:
        cmap = cfg.channel_map
        chans = {}
        for name in SUBSYSTEMS:
            sub = cfg.subsystem(name)
            chans[name] = cmap.channels_of(name).reshape(sub.modules, sub.rows, sub.cols)
        return cls(len(cmap), chans)


def _two_exp_cdf(u: np.ndarray, core_fraction: float, core_mm: float, halo_mm: float) -> np.ndarray:
    """CDF of the 1D lateral profile: a mixture of two symmetric exponentials."""

    def lap(u, lam):
        e = 0.5 * np.exp(-np.abs(u) / lam)
        return np.where(u < 0, e, 1.0 - e)

    return core_fraction * lap(u, core_mm) + (1.0 - core_fraction) * lap(u, halo_mm)


def _cell_fractions(x, y, rows, cols, cell_mm, core_fraction, core_mm, halo_mm):
    """Fraction of a shower centred at (x, y) in each cell of a rows x cols grid, (n, rows, cols).

    The lateral profile is taken separable in x and y (a product of 1D two-exponential
    profiles): exact integrals over square cells at the price of a slightly square shower.
    """

    def one_axis(pos, n):
        edges = (np.arange(n + 1) - n / 2.0) * cell_mm
        cdf = _two_exp_cdf(edges[None, :] - pos[:, None], core_fraction, core_mm, halo_mm)
        return np.diff(cdf, axis=1)

    fx = one_axis(x, cols)
    fy = one_axis(y, rows)
    return fy[:, :, None] * fx[:, None, :]


def _cell_index(pos, n, cell_mm):
    return np.clip(np.floor(pos / cell_mm + n / 2.0).astype(np.int64), 0, n - 1)


def _moyal(rng, mpv, width, size):
    """Landau-like (Moyal) deposits: mpv * (1 + width * (-ln z^2)), z standard normal."""
    z2 = np.maximum(rng.standard_normal(size) ** 2, 1e-12)
    return np.maximum(mpv * (1.0 + width * (-np.log(z2))), 0.0)


def photostatistics_term(cfg: Config) -> float:
    """Stochastic term (at 1 GeV) from photoelectron statistics incl. the SiPM excess noise."""
    ecal = cfg.detector.ecal
    xt = ecal.sipm.crosstalk_prob
    enf = (1.0 + xt) * (1.0 + ecal.sipm.gain_spread**2)
    return math.sqrt(enf / (ecal.scintillator.light_yield_pe_per_mev * 1e3))


def intrinsic_stochastic_term(cfg: Config) -> float:
    """Shower (sampling-free, leakage, ...) fluctuation put into the deposits, so that with
    the photostatistics the total is ``response.ecal_stochastic``. Zero when photostatistics
    alone already exceed the target."""
    a = cfg.response.ecal_stochastic
    p = photostatistics_term(cfg)
    return math.sqrt(max(a * a - p * p, 0.0))


def beam_deposits(
    cfg: Config,
    layout: Layout,
    rng: np.random.Generator,
    species: np.ndarray,
    energy_gev: np.ndarray,
    e_miss_gev: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deposits in MeV, shape (n, n_channels), and the impact point (x_mm, y_mm)."""
    r = cfg.response
    det = cfg.detector
    n = len(species)
    dep = np.zeros((n, layout.n_channels))
    ch = layout.channels
    x = rng.normal(0.0, r.beam_spot_mm, n) if r.beam_spot_mm > 0 else np.zeros(n)
    y = rng.normal(0.0, r.beam_spot_mm, n) if r.beam_spot_mm > 0 else np.zeros(n)
    e_mev = energy_gev * 1e3
    is_em = (species == Species.POSITRON) | (species == Species.ELECTRON)
    is_had = species == Species.HADRON
    is_mu = species == Species.MUON

    # beam counters: every charged particle is a MIP in each counter
    cnt = ch["beam_counters"].ravel()
    dep[:, cnt] = _moyal(rng, r.counter_mip_mev, r.mip_width, (n, len(cnt)))

    # SRD: synchrotron radiation of e+/e- in the bending magnet, mean ~ E^4
    srd = ch["srd"].ravel()
    k = r.srd_spectrum_shape
    mean_sr = r.srd_mean_mev_at_100gev * (energy_gev / 100.0) ** 4
    e_sr = rng.gamma(k, 1.0, n) * mean_sr / k
    share = rng.dirichlet(np.full(len(srd), 2.0), n)
    dep[:, srd] = np.where(is_em, e_sr, 0.0)[:, None] * share

    # EM shower (e+/e-, signal events with E - E_miss) in pre-shower + ECAL
    a_int = intrinsic_stochastic_term(cfg)
    e_vis = np.maximum(e_mev - e_miss_gev * 1e3, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt(np.where(e_vis > 0, a_int**2 / (e_vis / 1e3), 0.0) + r.ecal_constant**2)
    e_shower = np.where(is_em, np.maximum(e_vis * (1.0 + rel * rng.standard_normal(n)), 0.0), 0.0)
    # longitudinal: Gamma profile (PDG), shower start shifted by an exponential (first brem)
    b = 0.5
    tmax = np.log(np.maximum(e_vis, 2 * r.critical_energy_mev) / r.critical_energy_mev) - 0.5
    a_shape = b * np.maximum(tmax, 0.1) + 1.0
    shift = rng.exponential(1.0, n)
    f_ps = gammainc(a_shape, b * np.maximum(r.preshower_x0 - shift, 0.0))
    prs, ecal = ch["preshower"][0], ch["ecal"][0]
    ps, ec = det.preshower, det.ecal
    lat = (r.lateral_core_fraction, r.lateral_core_mm, r.lateral_halo_mm)
    f_ec = _cell_fractions(x, y, ec.rows, ec.cols, ec.cell_size_mm, *lat)
    f_pr = _cell_fractions(x, y, ps.rows, ps.cols, ps.cell_size_mm, *lat)
    dep[:, ecal.ravel()] = ((e_shower * (1.0 - f_ps))[:, None, None] * f_ec).reshape(n, -1)
    dep[:, prs.ravel()] = ((e_shower * f_ps)[:, None, None] * f_pr).reshape(n, -1)

    # muons and non-interacting hadrons: MIP in the crystal and pre-shower cell they cross
    interacts = is_had & (rng.random(n) < r.hadron_ecal_interaction_prob)
    mip_like = is_mu | (is_had & ~interacts)
    iy, ix = _cell_index(y, ec.rows, ec.cell_size_mm), _cell_index(x, ec.cols, ec.cell_size_mm)
    py, px = _cell_index(y, ps.rows, ps.cell_size_mm), _cell_index(x, ps.cols, ps.cell_size_mm)
    idx = np.flatnonzero(mip_like)
    dep[idx, ecal[iy[idx], ix[idx]]] += _moyal(rng, r.ecal_mip_mev, r.mip_width, len(idx))
    dep[idx, prs[py[idx], px[idx]]] += _moyal(rng, r.preshower_mip_mev, r.mip_width, len(idx))

    # interacting hadrons: a broad partial shower in the ECAL, the rest in the HCAL
    idx = np.flatnonzero(interacts)
    f_ecal = rng.uniform(0.05, 0.5, len(idx))
    broad = (0.0, r.lateral_halo_mm, r.hcal_lateral_mm / 2)
    f_h = _cell_fractions(x[idx], y[idx], ec.rows, ec.cols, ec.cell_size_mm, *broad)
    dep[idx[:, None], ecal.ravel()[None, :]] += ((e_mev[idx] * f_ecal)[:, None, None] * f_h).reshape(
        len(idx), ec.rows * ec.cols
    )
    dep[idx, prs[py[idx], px[idx]]] += _moyal(rng, r.preshower_mip_mev, r.mip_width, len(idx))
    e_hcal = np.zeros(n)
    e_hcal[idx] = e_mev[idx] * (1.0 - f_ecal)
    e_hcal[is_had & ~interacts] = e_mev[is_had & ~interacts] - r.ecal_mip_mev
    had = np.flatnonzero(is_had)
    hc = det.hcal
    if len(had):
        e_h = e_hcal[had]
        sig = r.hcal_stochastic * np.sqrt(np.maximum(e_h, 1.0) / 1e3) * 1e3
        e_h = np.maximum(e_h + sig * rng.standard_normal(len(had)), 0.0)
        w = np.exp(-np.arange(hc.modules) / r.hcal_longitudinal_modules)
        f_mod = rng.dirichlet(20.0 * w / w.sum(), len(had))
        f_lat = _cell_fractions(x[had], y[had], hc.rows, hc.cols, hc.cell_size_mm, 0.0, 1.0, r.hcal_lateral_mm)
        f_all = f_mod[:, :, None, None] * f_lat[:, None, :, :]
        dep[had[:, None], ch["hcal"].ravel()[None, :]] += (e_h[:, None, None, None] * f_all).reshape(
            len(had), hc.n_channels
        )
    # muons: a MIP in the HCAL cell they cross, in every module
    idx = np.flatnonzero(is_mu)
    hy, hx = _cell_index(y[idx], hc.rows, hc.cell_size_mm), _cell_index(x[idx], hc.cols, hc.cell_size_mm)
    for m in range(hc.modules):
        dep[idx, ch["hcal"][m, hy, hx]] += _moyal(rng, r.hcal_mip_mev, r.mip_width, len(idx))

    # VETO: every counter is a layer crossed by muons and hadrons that leave the ECAL;
    # interacting hadrons add charged secondaries (Poisson multiplicity)
    veto = ch["veto"].ravel()
    mult = np.where(is_mu | is_had, 1.0, 0.0) + np.where(interacts, rng.poisson(2.0, n), 0)
    dep[:, veto] = mult[:, None] * _moyal(rng, r.veto_mip_mev, r.mip_width, (n, len(veto)))
    return dep, x, y


# Lu-176: beta- (endpoint 596 keV, allowed shape) followed by the 307, 202 and 88 keV gamma
# cascade; the probability that each gamma is absorbed in its ~30 mm LYSO module is assumed.
_LU176_Q_KEV = 596.0
_LU176_GAMMAS_KEV = np.array([307.0, 202.0, 88.0])
_LU176_GAMMA_ABSORBED = np.array([0.55, 0.70, 0.95])
_ME_KEV = 511.0


def _beta_cdf_table(n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, _LU176_Q_KEV, n)
    w = t + _ME_KEV
    p = np.sqrt(np.maximum(w * w - _ME_KEV * _ME_KEV, 0.0))
    pdf = p * w * (_LU176_Q_KEV - t) ** 2  # allowed shape, Fermi function neglected
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(t))])
    return t, cdf / cdf[-1]


_BETA_T, _BETA_CDF = _beta_cdf_table()


def lu176_deposits_mev(rng: np.random.Generator, n: int) -> np.ndarray:
    """Energy deposited by n Lu-176 decays in a LYSO module, in MeV (0 to ~1.19 MeV)."""
    beta = np.interp(rng.random(n), _BETA_CDF, _BETA_T)
    gam = (rng.random((n, 3)) < _LU176_GAMMA_ABSORBED) @ _LU176_GAMMAS_KEV
    return (beta + gam) / 1e3
