"""Turn-on curves of a replay against truth energies (PNG, matplotlib)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._plotting import efficiency, save, subplots
from ..config import Config
from ..trigger import ConditionBits, TriggerBits
from ._replay import ReplaySummary


def _mark_cuts(ax, cuts: list[tuple[float, str]]) -> None:
    """Vertical lines at the configured cuts (file config solid, new config dashed)."""
    for k, (x, label) in enumerate(cuts):
        ax.axvline(x, color="black" if k == 0 else "tab:red", ls="-" if k == 0 else "--", lw=1.2, label=label)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _cuts(configs: list[tuple[str, Config]], value) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for label, cfg in configs:
        x, text = value(cfg)
        if not out or x != out[0][0]:  # a second line only where the new cut differs
            out.append((x, f"{label}: {text}"))
    return out


def _turn_on(ax, x: np.ndarray, masks: dict[str, np.ndarray], edges: np.ndarray) -> None:
    import hist

    axis = hist.axis.Variable(edges, name="x")
    total: hist.Hist = hist.Hist(axis)
    total.fill(x)
    styles = [dict(fmt="o", ms=7, mfc="none", color="tab:blue"), dict(fmt="s", ms=3, color="tab:red")]
    for k, (label, mask) in enumerate(masks.items()):
        passed: hist.Hist = hist.Hist(axis)
        passed.fill(x[mask])
        eff, lo, hi = efficiency(passed.values(), total.values())
        centres = axis.centers
        ok = np.isfinite(eff)
        ax.errorbar(
            centres[ok],
            eff[ok],
            yerr=[eff[ok] - lo[ok], hi[ok] - eff[ok]],
            xerr=(axis.widths[ok] / 2),
            capsize=0,
            label=label,
            **styles[k % 2],
        )
    ax.set_ylim(-0.05, 1.08)
    ax.set_ylabel("efficiency (fraction of events)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_turn_on(
    summary: ReplaySummary,
    folder: str | os.PathLike[str],
    new_label: str = "new config",
    *,
    file_config: Config | None = None,
    new_config: Config | None = None,
) -> list[Path]:
    """Turn-on curves against ECAL and SRD truth energy, old and new configuration.

    Needs truth in the files (emulated runs); returns the PNG paths written (none without truth).
    With ``file_config`` (and ``new_config``) each plot marks the configured cut.
    """
    truth = summary.truth
    if truth is None or len(truth) == 0:
        return []
    configs = [(name, c) for name, c in (("file config", file_config), (new_label, new_config)) if c is not None]
    old_t, new_t = summary.concat("old_triggers"), summary.concat("new_triggers")
    old_w, new_w = summary.concat("old_word"), summary.concat("new_word")
    n = len(truth)
    paths = []

    # ECAL: the E_CALO < cut condition and the calibration condition vs deposited calorimeter energy
    e_calo = truth["e_ecal_gev"].astype(float) + truth["e_preshower_gev"].astype(float)
    top = max(1.0, float(np.max(e_calo)) * 1.05)
    edges = np.linspace(0.0, top, 31)
    fig, axes = subplots(1, 2, figsize=(11, 4.5))
    for ax, bit, name in (
        (axes[0], ConditionBits.ECAL_LOW, "ECAL_LOW (E_CALO < cut)"),
        (axes[1], ConditionBits.ECAL_CALIB, "ECAL_CALIB (E_CALO >= calib. min.)"),
    ):
        _turn_on(
            ax,
            e_calo,
            {"file config": (old_t["conditions"] & bit) != 0, new_label: (new_t["conditions"] & bit) != 0},
            edges,
        )
        ax.set_xlabel("truth energy in pre-shower + ECAL, E_CALO [GeV]")
        ax.set_title(f"{name}, {n} events")
        if bit == ConditionBits.ECAL_LOW:
            _mark_cuts(
                ax,
                _cuts(
                    configs,
                    lambda c: (
                        c.trigger.ecal_cut_at(c.beam.energy_gev),
                        f"cut {c.trigger.ecal_cut_at(c.beam.energy_gev):g} GeV",
                    ),
                ),
            )
        else:
            _mark_cuts(
                ax,
                _cuts(
                    configs,
                    lambda c: (
                        c.trigger.calibration_min_beam_fraction * c.beam.energy_gev,
                        f"min. {c.trigger.calibration_min_beam_fraction * c.beam.energy_gev:g} GeV",
                    ),
                ),
            )
    paths.append(save(fig, folder, "turn_on_ecal.png"))

    # SRD condition vs truth SR energy (log scale: the spectrum spans decades)
    e_srd = truth["e_srd_mev"].astype(float)
    positive = e_srd[e_srd > 0]
    fig, ax = subplots(figsize=(7, 4.5))
    if len(positive):
        lo = max(1e-3, float(np.min(positive)))
        edges = np.geomspace(lo, max(lo * 10, float(np.max(positive)) * 1.05), 31)
        sel = e_srd > 0
        _turn_on(
            ax,
            e_srd[sel],
            {
                "SRD condition, file config": ((old_t["conditions"] & ConditionBits.SRD) != 0)[sel],
                new_label: ((new_t["conditions"] & ConditionBits.SRD) != 0)[sel],
            },
            edges,
        )
        ax.set_xscale("log")
        _mark_cuts(
            ax,
            _cuts(
                configs,
                lambda c: (
                    c.trigger.srd_emin_at(c.beam.energy_gev),
                    f"threshold {c.trigger.srd_emin_at(c.beam.energy_gev):g} MeV "
                    f"per channel, >= {c.trigger.srd_min_channels} channel(s)",
                ),
            ),
        )
    ax.set_xlabel("truth synchrotron-radiation energy in the SRD, E_SRD [MeV]")
    ax.set_title(f"SRD tag vs truth energy ({int((e_srd > 0).sum())} events with E_SRD > 0)")
    paths.append(save(fig, folder, "turn_on_srd.png"))

    # physics trigger (raw) vs missing energy proxy: beam energy - E_CALO
    e_miss = truth["energy_gev"].astype(float) - e_calo
    edges = np.linspace(min(0.0, float(e_miss.min())), max(1.0, float(e_miss.max()) * 1.05), 31)
    fig, ax = subplots(figsize=(7, 4.5))
    raw = TriggerBits.PHYSICS << TriggerBits.RAW_SHIFT
    _turn_on(ax, e_miss, {"physics (raw), file config": (old_w & raw) != 0, new_label: (new_w & raw) != 0}, edges)
    _mark_cuts(
        ax,
        _cuts(
            configs,
            lambda c: (
                c.beam.energy_gev - c.trigger.ecal_cut_at(c.beam.energy_gev),
                f"E_beam - ECAL cut = {c.beam.energy_gev - c.trigger.ecal_cut_at(c.beam.energy_gev):g} GeV",
            ),
        ),
    )
    ax.set_xlabel("truth missing energy E_beam - E_CALO [GeV]")
    ax.set_title(f"Physics trigger vs truth missing energy ({n} events)")
    paths.append(save(fig, folder, "turn_on_physics.png"))
    return paths
