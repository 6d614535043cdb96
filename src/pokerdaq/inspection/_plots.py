"""Inspection plots of a run file (PNG, matplotlib, histograms with ``hist``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._plotting import save, subplots
from ..config import SUBSYSTEMS, Config
from ..trigger import TriggerBits
from ._energies import EventEnergies

SIGNAL_HCAL_GEV = {"e-": 1.0, "e+": 3.0}  # NA64 offline signal region: E_HCAL < 1 GeV (e-) / 3 GeV (e+) [facts]
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


def signal_region(cfg: Config) -> tuple[float, float]:
    """The NA64 invisible-mode signal region of a run, ``(E_ECAL max, E_HCAL max)`` in GeV.

    E_ECAL < the physics trigger's ECAL cut at the run's beam energy (``trigger.ecal_cut_gev``,
    else ``trigger.ecal_cut_beam_fraction`` x ``beam.energy_gev``: 50 GeV at 100 GeV) and
    E_HCAL < 1 GeV (e-) / 3 GeV (e+).
    """
    return cfg.trigger.ecal_cut_at(cfg.beam.energy_gev), signal_region_hcal_gev(cfg.beam.species)


def plot_waveforms(
    samples: np.ndarray,
    pulses: np.ndarray,
    cfg: Config,
    folder,
    *,
    title: str = "",
    name: str = "waveforms.png",
    channels: np.ndarray | None = None,
) -> Path:
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
    cmap = cfg.channel_map
    names = [n.decode() for n in cmap.table["name"]]
    rows_of = np.arange(len(cmap)) if channels is None else np.asarray(channels, dtype=np.int64)
    dt = cfg.digitizer.sample_ns
    t = np.arange(samples.shape[1]) * dt
    fig, axes = subplots(2, 3, figsize=(14, 7.5), sharex=True)
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
        ax.set_title(
            f"{sub} ({len(rows)} channels" + (f", {len(order)} largest shown)" if extra > 0 else ")"), fontsize=10
        )
        ax.set_ylabel("ADC counts")
        _legend(ax, fontsize=6, ncol=2, loc="upper right")
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("time in the readout window [ns]")
    fig.suptitle(title + " (triangles: pulses found, at their time and peak)")
    return save(fig, folder, name)


def plot_ecal_hcal_plane(
    energies: EventEnergies, cfg: Config, folder, *, name: str = "ecal_vs_hcal.png"
) -> tuple[Path, int]:
    """The NA64 plane: HCAL versus ECAL energy of events with a beam coincidence, with the
    signal region of :func:`signal_region` drawn.

    Returns the PNG path and the number of events inside the signal region.
    """
    import hist
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    sel = energies.has_beam
    x, y = energies.e_calo_gev[sel], energies.e_hcal_gev[sel]
    ecal_cut, hcal_cut = signal_region(cfg)
    beam_gev, species = cfg.beam.energy_gev, cfg.beam.species
    top_x = max(1.2 * beam_gev, float(x.max(initial=0)) * 1.05)
    top_y = max(2.0 * hcal_cut, float(y.max(initial=0)) * 1.05)
    h: hist.Hist = hist.Hist(
        hist.axis.Regular(60, 0.0, top_x, name="ecal"), hist.axis.Regular(60, 0.0, top_y, name="hcal")
    )
    h.fill(x, y)
    inside = int(np.count_nonzero((x < ecal_cut) & (y < hcal_cut)))
    fig, ax = subplots(figsize=(7, 5.5))
    counts = h.values().T
    mesh = ax.pcolormesh(
        h.axes[0].edges,
        h.axes[1].edges,
        np.where(counts > 0, counts, np.nan),
        norm=LogNorm(vmin=1, vmax=max(1, counts.max())),
        cmap="viridis",
    )
    fig.colorbar(mesh, ax=ax, label="events per bin")
    ax.add_patch(Rectangle((0, 0), ecal_cut, hcal_cut, fill=False, ec="red", lw=2))
    ax.set_xlabel("E_ECAL (pre-shower + ECAL, in-time trigger sum) [GeV]")
    ax.set_ylabel("E_HCAL (in-time trigger sum) [GeV]")
    # the region's description in the title: a legend would cover the sparse corners of the plane
    ax.set_title(
        f"ECAL vs HCAL energy, {int(sel.sum())} events with a beam coincidence\n"
        f"red box: signal region, E_ECAL < {ecal_cut:g} GeV (trigger ECAL cut at {beam_gev:g} GeV)\n"
        f"and E_HCAL < {hcal_cut:g} GeV ({species}): {inside} events",
        fontsize=9,
    )
    return save(fig, folder, name), inside


def plot_srd_spectra(
    energies: EventEnergies, truth: np.ndarray | None, folder, *, name: str = "srd_spectra.png"
) -> Path:
    """SRD energy (in-time sum of the SRD channels) per event, by truth species when known."""
    import hist

    e = energies.e_srd_mev
    top = max(1.0, float(np.percentile(e, 99.5)) * 1.2 if len(e) else 1.0)
    axis = hist.axis.Regular(60, 0.0, top, name="e_srd")
    fig, ax = subplots(figsize=(7, 4.5))
    groups = {"all events": np.ones(len(e), bool)}
    if truth is not None:
        from ..sim import Species

        groups = {(s.name.lower() + "s" if s >= 0 else "no particle"): truth["species"] == int(s) for s in Species}
    for label, mask in groups.items():
        if not mask.any():
            continue
        h: hist.Hist = hist.Hist(axis)
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
    h: hist.Hist = hist.Hist(hist.axis.Regular(n_bins, lo, hi, name="x"))
    h.fill(values)
    c, x = h.values(), h.axes[0].centers
    core = np.abs(x - med) < 2.5 * mad
    p, cov = curve_fit(
        _gauss, x[core], c[core], p0=[c.max(), med, mad], sigma=np.sqrt(np.maximum(c[core], 1.0)), absolute_sigma=True
    )
    err = np.sqrt(np.diag(cov))
    return float(p[0]), float(p[1]), abs(float(p[2])), float(err[1]), float(err[2]), h


def format_pm(value: float, error: float, scale: float = 100.0) -> str:
    """``value +- error`` (times ``scale``) with the error to two significant digits."""
    v, e = value * scale, error * scale
    digits = 2 if not (e > 0 and np.isfinite(e)) else max(0, 1 - int(np.floor(np.log10(e))))
    return f"{v:.{digits}f} +- {e:.{digits}f}"


def _resolution(x: np.ndarray) -> dict:
    """Gaussian-core fit of a ratio sample: mean, sigma/E and their errors (or why there is none)."""
    out: dict = {"n_events": int(len(x))}
    if len(x) < 20:
        out["fit_error"] = f"only {len(x)} events selected"
        return out
    try:
        amp, mu, sigma, emu, esig, h = fit_core(x)
    except RuntimeError as err:  # curve_fit did not converge: said on the plot and in the result
        out["fit_error"] = str(err)
        return out
    out.update(
        mean=mu,
        mean_error=emu,
        sigma=sigma,
        sigma_over_e=sigma / mu,
        sigma_over_e_error=esig / mu,
        _fit=(amp, mu, sigma, h),
    )
    return out


def _draw_resolution(ax, res: dict, xlabel: str, reference: str) -> None:
    fit = res.pop("_fit", None)
    if fit is None:
        ax.text(0.5, 0.5, f"{res.get('fit_error')}: no fit", transform=ax.transAxes, ha="center", wrap=True)
        ax.set_ylabel("events")
    else:
        amp, mu, sigma, h = fit
        axis = h.axes[0]
        ax.stairs(h.values(), axis.edges, label=f"{res['n_events']} events")
        xx = np.linspace(axis.edges[0], axis.edges[-1], 300)
        ax.plot(
            xx,
            _gauss(xx, amp, mu, sigma),
            "r-",
            label=f"Gaussian core: mean {mu:.4f}, sigma/E = "
            f"{format_pm(res['sigma_over_e'], res['sigma_over_e_error'])} %",
        )
        ax.set_ylabel(f"events / {axis.widths[0]:.2g}")
    ax.plot([], [], " ", label=reference)
    ax.set_xlabel(xlabel)
    _legend(ax, fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)


def plot_ecal_resolution(
    energies: EventEnergies, truth: np.ndarray | None, cfg: Config, folder, *, name: str = "ecal_resolution.png"
) -> tuple[Path, dict]:
    """ECAL energy resolution, each figure compared with what it measures.

    ``total``: E_CALO (trigger sum) / the particle's energy (truth) of ordinary e+/e- (not A',
    no pile-up, deposit > E_beam/2). Every calorimeter term is in it (shower and containment
    fluctuations, photo-statistics, noise, calibration), so it is compared with the PKR-CAL
    requirement 2.5 %/sqrt(E) (+) 0.5 % [slides] at the measured mean energy. Without truth:
    E_CALO / nominal E_beam of events with a beam coincidence and E_CALO > E_beam/2, compared
    with the requirement (+) the beam's momentum spread ``beam.energy_spread``.

    ``readout`` (with truth only): E_CALO / E deposited (truth) of the same events: only what
    the readout adds (SiPM photo-statistics with their excess noise, electronics noise,
    digitisation), compared with the photo-statistics term ``pokerdaq.sim.photostatistics_term``
    at the deposited energy.

    Returns the PNG path and ``{"total": {...}, "readout": {...}}`` (``readout`` with truth):
    ``n_events``, ``mean``, ``sigma_over_e`` and its error from a Gaussian fit to the core,
    ``reference_energy_gev`` and the figure it is compared with (``compared_sigma_over_e``,
    described in ``compared_with``; ``expected_sigma_over_e`` for the readout), or ``fit_error``.
    """
    from ..sim import photostatistics_term

    beam = cfg.beam.energy_gev
    result: dict = {}
    if truth is not None:
        e_true = truth["e_ecal_gev"].astype(float) + truth["e_preshower_gev"].astype(float)
        sel = (
            (truth["species"] >= 0) & (truth["species"] <= 1) & ~truth["is_signal"].astype(bool) & (e_true > 0.5 * beam)
        )
        if "n_pileup" in (truth.dtype.names or ()):
            sel &= truth["n_pileup"] == 0
    else:
        sel = energies.has_beam & (energies.e_calo_gev > 0.5 * beam)
    e_meas = energies.e_calo_gev[sel]
    e_ref = float(np.mean(e_meas)) if len(e_meas) else beam
    requirement = float(np.hypot(0.025 / np.sqrt(e_ref), 0.005))
    if truth is not None:  # each particle's own energy: the beam's momentum spread is not in it
        total = _resolution(e_meas / truth["energy_gev"][sel].astype(float))
        total["compared_sigma_over_e"] = requirement
        reference = f"PKR-CAL requirement 2.5%/sqrt(E) (+) 0.5% at {e_ref:.0f} GeV: {100 * requirement:.2f} %"
        xlabel = "E_CALO measured (trigger sum) / E of the particle (truth)"
    else:  # nominal beam energy: the momentum spread of the beam adds in quadrature
        spread = cfg.beam.energy_spread
        total = _resolution(e_meas / beam)
        total["compared_sigma_over_e"] = float(np.hypot(requirement, spread))
        reference = (
            f"requirement at {e_ref:.0f} GeV {100 * requirement:.2f} % (+) beam spread "
            f"{100 * spread:.2g} %: {100 * total['compared_sigma_over_e']:.2f} %"
        )
        xlabel = "E_CALO measured (trigger sum) / nominal E_beam"
    total["reference_energy_gev"] = e_ref
    total["requirement_sigma_over_e"] = requirement
    total["compared_with"] = reference
    result["total"] = total
    panels = [(total, xlabel, reference, "total: every term")]
    if truth is not None:
        readout = _resolution(e_meas / e_true[sel])
        e_dep = float(np.mean(e_true[sel])) if sel.any() else beam
        readout["reference_energy_gev"] = e_dep
        readout["expected_sigma_over_e"] = float(photostatistics_term(cfg) / np.sqrt(e_dep))
        result["readout"] = readout
        panels.append(
            (
                readout,
                "E_CALO measured (trigger sum) / E deposited (truth)",
                f"photo-statistics alone at {e_dep:.0f} GeV: {100 * readout['expected_sigma_over_e']:.3f} %",
                "readout only: deposited energy known",
            )
        )
    fig, axes = subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (res, xlabel, reference, title) in zip(axes[0], panels):
        _draw_resolution(ax, res, xlabel, reference)
        ax.set_title(f"ECAL (pre-shower + PKR-CAL) resolution, {title}", fontsize=10)
    return save(fig, folder, name), result


def plot_trigger_rates(
    events: np.ndarray, folder, *, sample_ns: float = 4.0, producer: str = "", name: str = "trigger_rates.png"
) -> Path:
    """Rate of each trigger type against time in the run: one panel per type that fired
    (accepted solid, raw dashed), so that no series hides another.

    A file without trigger decisions (every trigger word 0: a minimum-bias ``pokerdaq
    simulate`` recording) gets the rate of recorded windows instead, and says why.
    """
    import hist

    ts = events["timestamp"].astype(np.float64) * sample_ns * 1e-9
    words = events["trigger_word"].astype(np.uint32)
    fired = [
        (k, tname)
        for k, tname in enumerate(TriggerBits.NAMES)
        if np.any((words >> np.uint32(k)) & np.uint32(1 | 1 << TriggerBits.RAW_SHIFT))
    ]
    n_panels = max(1, len(fired))
    ncols = min(n_panels, 2)
    nrows = -(-n_panels // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(6 * ncols, 2.6 * nrows + 0.8), squeeze=False, sharex=True)
    axes = axes.ravel()
    if len(ts):
        t0, t1 = float(ts.min()), float(ts.max())
        span = max(t1 - t0, 1e-6)
        axis = hist.axis.Regular(min(50, max(5, len(ts) // 20)), t0, t0 + span * 1.0001, name="t")
        width = axis.widths[0]

        def rate(mask: np.ndarray) -> np.ndarray:
            h: hist.Hist = hist.Hist(axis)
            h.fill(ts[mask])
            return h.values() / width

        for ax, (k, tname) in zip(axes, fired):
            acc = (words >> np.uint32(k)) & np.uint32(1) != 0
            raw = (words >> np.uint32(k + TriggerBits.RAW_SHIFT)) & np.uint32(1) != 0
            ax.stairs(rate(raw), axis.edges, ls="--", color="tab:gray", lw=1.2)
            ax.stairs(rate(acc), axis.edges, color="tab:blue", lw=1.6)
            ax.set_title(f"{tname}: {int(acc.sum())} accepted (solid), {int(raw.sum())} raw (dashed)", fontsize=9)
        if not fired:
            ax = axes[0]
            ax.stairs(rate(np.ones(len(ts), bool)), axis.edges, color="tab:blue", lw=1.6)
            who = f" ({producer})" if producer else ""
            ax.set_title(f"no trigger decisions in this file{who}: rate of recorded windows", fontsize=9)
            ax.text(
                0.5,
                0.12,
                "trigger_word is 0 in every event: a minimum-bias recording, one window\n"
                "per beam particle; `pokerdaq trigger --input FILE` or `pokerdaq replay FILE`\n"
                "decides the trigger on its samples",
                transform=ax.transAxes,
                ha="center",
                fontsize=8,
                bbox=dict(fc="white", ec="0.7"),
            )
    else:
        axes[0].text(0.5, 0.5, "no events in this file", transform=axes[0].transAxes, ha="center")
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[:n_panels]:
        ax.set_ylabel("rate [Hz]")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[max(0, n_panels - ncols) : n_panels]:  # the lowest panel of each column
        ax.set_xlabel("time in the run (trigger timestamp) [s]")
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle("Trigger rates per type (accepted: after prescale and dead time; raw: before)", fontsize=10)
    return save(fig, folder, name)
