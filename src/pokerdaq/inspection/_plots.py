"""Inspection plots of a run file (PNG, matplotlib Agg, histograms with ``hist``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._plotting import pyplot, save
from ..config import SUBSYSTEMS, Config
from ..trigger import TriggerBits
from ._energies import EventEnergies

SIGNAL_ECAL_GEV = 50.0  # NA64 invisible-mode signal region: E_ECAL < 50 GeV [facts]
SIGNAL_HCAL_GEV = {"e-": 1.0, "e+": 3.0}  # and E_HCAL < 1 GeV (e-) / 3 GeV (e+) [facts]
MAX_LINES = 8


def _legend(ax, **kwargs) -> None:
    """A legend only when something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def signal_region_hcal_gev(species: str) -> float:
    """HCAL limit of the NA64 signal region for the beam species ('e-' or 'e+')."""
    if species not in SIGNAL_HCAL_GEV:
        raise ValueError(f"species = {species!r}: expected 'e-' or 'e+'")
    return SIGNAL_HCAL_GEV[species]


def plot_waveforms(samples: np.ndarray, pulses: np.ndarray, cfg: Config, folder, *, title: str = "",
                   name: str = "waveforms.png", channels: np.ndarray | None = None) -> Path:
    """Samples of one event, one panel per subsystem, found pulses marked at their time and peak.

    Parameters
    ----------
    samples
        (channels, window_samples) uint16 of the event.
    pulses
        The event's pulse records (``channel``, ``time``, ``peak``).
    channels
        Channel number of each row of ``samples`` (a recorded subset); default every channel
        of ``cfg.channel_map`` in order. A subsystem without recorded channels gets an empty
        panel saying so.
    """
    plt = pyplot()
    cmap = cfg.channel_map
    names = [n.decode() for n in cmap.table["name"]]
    rows_of = np.arange(len(cmap)) if channels is None else np.asarray(channels, dtype=np.int64)
    dt = cfg.digitizer.sample_ns
    t = np.arange(samples.shape[1]) * dt
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), sharex=True)
    for ax, sub in zip(axes.flat, SUBSYSTEMS):
        rows = np.flatnonzero(np.isin(rows_of, cmap.channels_of(sub)))
        if not len(rows):
            ax.set_title(f"{sub} (not recorded)", fontsize=10)
            continue
        x = samples[rows].astype(np.int64)
        amplitude = x.max(axis=1) - np.median(x, axis=1)
        order = rows[np.argsort(-amplitude, kind="stable")][:MAX_LINES]
        for row in order:
            ch = int(rows_of[row])
            ax.step(t, samples[row], where="post", lw=1, label=names[ch])
            mine = pulses[pulses["channel"] == ch]
            if len(mine):
                ax.plot(mine["time"].astype(float) / 64.0 * dt, mine["peak"], "kv", ms=5)
        extra = len(rows) - len(order)
        ax.set_title(f"{sub} ({len(rows)} channels" + (f", {len(order)} largest shown)" if extra > 0 else ")"),
                     fontsize=10)
        ax.set_ylabel("ADC counts")
        _legend(ax, fontsize=6, ncol=2, loc="upper right")
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("time in the readout window [ns]")
    fig.suptitle(title + " (triangles: pulses found, at their time and peak)")
    return save(fig, folder, name)


def plot_ecal_hcal_plane(energies: EventEnergies, species: str, folder, *, beam_gev: float,
                         name: str = "ecal_vs_hcal.png") -> tuple[Path, int]:
    """The NA64 plane: HCAL versus ECAL energy of events with a beam coincidence, signal region drawn.

    Returns the PNG path and the number of events inside the signal region.
    """
    import hist
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    plt = pyplot()
    sel = energies.has_beam
    x, y = energies.e_calo_gev[sel], energies.e_hcal_gev[sel]
    hcal_cut = signal_region_hcal_gev(species)
    top_x = max(1.2 * beam_gev, float(x.max(initial=0)) * 1.05)
    top_y = max(2.0 * hcal_cut, float(y.max(initial=0)) * 1.05)
    h = hist.Hist(hist.axis.Regular(60, 0.0, top_x, name="ecal"), hist.axis.Regular(60, 0.0, top_y, name="hcal"))
    h.fill(x, y)
    inside = int(np.count_nonzero((x < SIGNAL_ECAL_GEV) & (y < hcal_cut)))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    counts = h.values().T
    mesh = ax.pcolormesh(h.axes[0].edges, h.axes[1].edges, np.where(counts > 0, counts, np.nan),
                         norm=LogNorm(vmin=1, vmax=max(1, counts.max())), cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="events per bin")
    ax.add_patch(Rectangle((0, 0), SIGNAL_ECAL_GEV, hcal_cut, fill=False, ec="red", lw=2,
                           label=f"signal region E_ECAL < {SIGNAL_ECAL_GEV:g} GeV, "
                                 f"E_HCAL < {hcal_cut:g} GeV ({species}): {inside} events"))
    ax.set_xlabel("E_ECAL (pre-shower + ECAL, in-time trigger sum) [GeV]")
    ax.set_ylabel("E_HCAL (in-time trigger sum) [GeV]")
    ax.set_title(f"ECAL vs HCAL energy, {int(sel.sum())} events with a beam coincidence")
    ax.legend(fontsize=8, loc="upper right")
    return save(fig, folder, name), inside


def plot_srd_spectra(energies: EventEnergies, truth: np.ndarray | None, folder, *,
                     name: str = "srd_spectra.png") -> Path:
    """SRD energy (in-time sum of the SRD channels) per event, by truth species when known."""
    import hist

    plt = pyplot()
    e = energies.e_srd_mev
    top = max(1.0, float(np.percentile(e, 99.5)) * 1.2 if len(e) else 1.0)
    axis = hist.axis.Regular(60, 0.0, top, name="e_srd")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {"all events": np.ones(len(e), bool)}
    if truth is not None:
        from ..sim import Species

        groups = {(s.name.lower() + "s" if s >= 0 else "no particle"): truth["species"] == int(s) for s in Species}
    for label, mask in groups.items():
        if not mask.any():
            continue
        h = hist.Hist(axis)
        h.fill(e[mask])
        ax.stairs(h.values(), axis.edges, label=f"{label} ({int(mask.sum())}, mean {e[mask].mean():.2f} MeV)")
    ax.set_yscale("log")
    ax.set_xlabel("SRD energy, in-time sum over the SRD channels [MeV]")
    ax.set_ylabel(f"events / {axis.widths[0]:.2g} MeV")
    ax.set_title("SRD spectra (synchrotron-radiation tag)")
    _legend(ax, fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, folder, name)


def _gauss(x, a, mu, sigma):
    return a * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def fit_core(values: np.ndarray, n_bins: int = 60) -> tuple[float, float, float, float, float, object]:
    """Gaussian fit (least squares, Poisson errors) of the core (+-2.5 MAD-sigma around the median).

    Returns amplitude, mean, sigma, the errors of mean and sigma, and the ``hist`` histogram fitted.
    """
    import hist
    from scipy.optimize import curve_fit

    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * 1.4826 or 1e-3
    lo, hi = med - 4 * mad, med + 4 * mad
    h = hist.Hist(hist.axis.Regular(n_bins, lo, hi, name="x"))
    h.fill(values)
    c, x = h.values(), h.axes[0].centers
    core = np.abs(x - med) < 2.5 * mad
    p, cov = curve_fit(_gauss, x[core], c[core], p0=[c.max(), med, mad],
                       sigma=np.sqrt(np.maximum(c[core], 1.0)), absolute_sigma=True)
    err = np.sqrt(np.diag(cov))
    return float(p[0]), float(p[1]), abs(float(p[2])), float(err[1]), float(err[2]), h


def plot_ecal_resolution(energies: EventEnergies, truth: np.ndarray | None, cfg: Config, folder, *,
                         name: str = "ecal_resolution.png") -> tuple[Path, dict]:
    """ECAL energy resolution: measured E_CALO over truth deposit (or over the beam energy).

    With truth: non-signal positrons/electrons; x = E_CALO(trigger sum) / E_deposited(truth).
    Without: events with a beam coincidence and E_CALO > 0.5 E_beam; x = E_CALO / E_beam.
    The fitted sigma is compared with the PKR-CAL requirement 2.5 %/sqrt(E) (+) 0.5 % [slides].
    """
    plt = pyplot()
    beam = cfg.beam.energy_gev
    if truth is not None:
        e_true = truth["e_ecal_gev"].astype(float) + truth["e_preshower_gev"].astype(float)
        sel = (truth["species"] <= 1) & ~truth["is_signal"].astype(bool) & (e_true > 0.5 * beam)
        if "n_pileup" in truth.dtype.names:
            sel &= truth["n_pileup"] == 0
        x = energies.e_calo_gev[sel] / e_true[sel]
        xlabel = "E_CALO measured (trigger sum) / E deposited (truth)"
        ref_e = float(np.mean(e_true[sel])) if sel.any() else beam
    else:
        sel = energies.has_beam & (energies.e_calo_gev > 0.5 * beam)
        x = energies.e_calo_gev[sel] / beam
        xlabel = "E_CALO measured (trigger sum) / E_beam"
        ref_e = beam
    result: dict = {"n_events": int(len(x))}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    requirement = float(np.hypot(0.025 / np.sqrt(ref_e), 0.005))
    result["requirement_sigma_over_e"] = requirement
    result["reference_energy_gev"] = ref_e
    fit = None
    if len(x) >= 20:
        try:
            fit = fit_core(x)
        except RuntimeError as err:  # curve_fit did not converge: say so on the plot
            result["fit_error"] = str(err)
    if fit is not None:
        amp, mu, sigma, emu, esig, h = fit
        result.update(mean=mu, sigma=sigma, sigma_over_e=sigma / mu, sigma_over_e_error=esig / mu,
                      mean_error=emu)
        axis = h.axes[0]
        ax.stairs(h.values(), axis.edges, label=f"{len(x)} events")
        xx = np.linspace(axis.edges[0], axis.edges[-1], 300)
        ax.plot(xx, _gauss(xx, amp, mu, sigma), "r-",
                label=f"Gaussian core: mean {mu:.4f}, sigma/E = {100 * sigma / mu:.2f} "
                      f"+- {100 * esig / mu:.2f} %")
        ax.plot([], [], " ", label=f"PKR-CAL requirement 2.5%/sqrt(E) (+) 0.5% at {ref_e:.0f} GeV: "
                                   f"{100 * requirement:.2f} %")
        ax.set_ylabel(f"events / {axis.widths[0]:.2g}")
    else:
        why = result.get("fit_error", f"only {len(x)} events selected")
        ax.text(0.5, 0.5, f"{why}: no fit", transform=ax.transAxes, ha="center", wrap=True)
        ax.set_ylabel("events")
    ax.set_xlabel(xlabel)
    ax.set_title("ECAL (pre-shower + PKR-CAL) energy resolution")
    _legend(ax, fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, folder, name), result


def plot_trigger_rates(events: np.ndarray, folder, *, sample_ns: float = 4.0,
                       name: str = "trigger_rates.png") -> Path:
    """Rate of each trigger type against time in the run (accepted types; raw types as dashed)."""
    import hist

    plt = pyplot()
    ts = events["timestamp"].astype(np.float64) * sample_ns * 1e-9
    words = events["trigger_word"].astype(np.uint32)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if len(ts):
        t0, t1 = float(ts.min()), float(ts.max())
        span = max(t1 - t0, 1e-6)
        axis = hist.axis.Regular(min(50, max(5, len(ts) // 20)), t0, t0 + span * 1.0001, name="t")
        width = axis.widths[0]
        for k, tname in enumerate(TriggerBits.NAMES):
            for shift, style, label in ((0, "-", "accepted"), (TriggerBits.RAW_SHIFT, "--", "raw")):
                mask = (words >> np.uint32(k + shift)) & np.uint32(1) != 0
                if not mask.any():
                    continue
                h = hist.Hist(axis)
                h.fill(ts[mask])
                ax.stairs(h.values() / width, axis.edges, ls=style, label=f"{tname} {label} ({int(mask.sum())})")
        ax.set_yscale("log")
    ax.set_xlabel("time in the run [s]")
    ax.set_ylabel("rate [Hz]")
    ax.set_title("Trigger rates per type (solid: after prescale, dashed: raw)")
    _legend(ax, fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save(fig, folder, name)
