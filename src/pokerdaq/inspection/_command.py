"""``pokerdaq inspect``: metadata, counters and inspection plots of a run file."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .._usage import UsageError, open_run_file
from ..config import config_from_args
from ..trigger import TriggerBits
from ._summary import file_counters

_SHOWN_ATTRS = (
    "run_number",
    "file_index",
    "producer",
    "start_time_utc",
    "stop_time_utc",
    "n_events",
    "n_pulses",
    "n_scalers",
    "first_event_number",
    "last_event_number",
    "closed_cleanly",
    "recovered",
    "n_channels",
    "window_samples",
    "sampling_rate_hz",
    "adc_bits",
    "compression",
    "package_version",
)


def _stored_or_found_pulses(f, cfg, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The file's pulses and pulses per event; a file without stored pulses (a minimum-bias
    ``pokerdaq simulate`` recording) gets them from its raw samples with the file's registers."""
    events = f.events
    if len(f.pulses) or not len(events):
        return np.asarray(f.pulses), np.asarray(events["n_pulses"])
    from ..dsp import PulseParams, find_pulses_batch

    channels = f.channels  # an imported file may hold a subset of the channel map
    params = PulseParams.from_config(cfg, channels)
    found, counts = [], []
    for start in range(0, len(f), batch):
        rec, offsets = find_pulses_batch(np.asarray(f.read(start, start + batch).samples), params, channels)
        found.append(rec)
        counts.append(np.diff(offsets))
    return np.concatenate(found), np.concatenate(counts)


def resolution_lines(res: dict) -> list[str]:
    """The printed ECAL-resolution lines: each figure beside the one it is compared with."""
    from ._plots import format_pm

    lines = []
    t = res["total"]
    head = "ECAL resolution, total (E_CALO / E " + ("particle, truth" if "readout" in res else "beam") + ")"
    if "sigma_over_e" in t:
        lines.append(
            f"{head}: sigma/E = {format_pm(t['sigma_over_e'], t['sigma_over_e_error'])} % "
            f"(Gaussian core of {t['n_events']} e+/e- events); {t['compared_with']}"
        )
    else:
        lines.append(f"{head}: no fit ({t.get('fit_error')})")
    r = res.get("readout")
    if r is not None:
        head = "ECAL resolution, readout only (E_CALO / E deposited, truth)"
        if "sigma_over_e" in r:
            lines.append(
                f"{head}: sigma/E = {format_pm(r['sigma_over_e'], r['sigma_over_e_error'])} % "
                f"({r['n_events']} events); photo-statistics alone at {r['reference_energy_gev']:.1f} GeV: "
                f"{100 * r['expected_sigma_over_e']:.3f} %"
            )
        else:
            lines.append(f"{head}: no fit ({r.get('fit_error')})")
    return lines


def run(args: argparse.Namespace) -> int:
    console = Console()
    path = Path(args.file)
    with open_run_file(path, "FILE") as f:
        if args.event is not None and not 0 <= args.event < len(f):
            raise UsageError(f"--event {args.event}: expected 0..{len(f) - 1} ({path} holds {len(f)} events)")
        cfg = config_from_args(args, base=f.config)  # --config / --set overlay the file's own
        meta = Table(title=f"{path.name}: run metadata")
        meta.add_column("attribute")
        meta.add_column("value")
        for key in _SHOWN_ATTRS:
            if key in f.attrs:
                meta.add_row(key, str(f.attrs[key]))
        meta.add_row("beam", f"{cfg.beam.species} {cfg.beam.energy_gev:g} GeV")
        if f.truth is None:
            meta.add_row("truth", "no")
        else:  # DAQ runs: a window may hold no beam particle (species -1, docs/hdf5-layout.md)
            with_particle = int((np.asarray(f.truth["species"]) >= 0).sum())
            meta.add_row("truth", f"yes: {with_particle} of {len(f.truth)} events hold a beam particle")
        console.print(meta)

        events, scalers = f.events, f.scalers
        counters = file_counters(events, scalers, int(f.attrs.get("n_pulses", 0)))
        tab = Table(title="Counters")
        tab.add_column("counter")
        tab.add_column("value", justify="right")
        tab.add_row("events", str(counters["events"]))
        tab.add_row("pulses", str(counters["pulses"]))
        tab.add_row("events with trigger word 0", str(counters["events_without_trigger_word"]))
        for flag, n in counters["flags"].items():
            tab.add_row(f"flag {flag}", str(n))
        if "time_span_s" in counters:
            tab.add_row("time span (s)", f"{counters['time_span_s']:.6g}")
        for key, val in counters.get("scalers", {}).items():
            label = f"scalers: {key}" + (" (no dead time)" if key == "not_busy_fraction" else "")
            tab.add_row(label, "-" if val is None else (f"{val:.4f}" if isinstance(val, float) else str(val)))
        console.print(tab)
        trig = Table(title="Trigger types (trigger_word bits)")
        for col in ("type", "accepted (bits 0-7)", "raw (bits 8-15)"):
            trig.add_column(col, justify="right" if col != "type" else "left")
        for name in TriggerBits.NAMES:
            trig.add_row(name, str(counters["trigger_accepted"][name]), str(counters["trigger_raw"][name]))
        console.print(trig)

        n = len(f)
        if args.plots and n:
            from ._energies import event_energies
            from ._plots import (
                plot_ecal_hcal_plane,
                plot_ecal_resolution,
                plot_srd_spectra,
                plot_trigger_rates,
                plot_waveforms,
                signal_region,
            )

            index = args.event
            if index is None:
                physics = np.flatnonzero(events["trigger_word"] & TriggerBits.PHYSICS)
                index = int(physics[0]) if len(physics) else 0
            ev = f[index]
            pulses, n_pulses = _stored_or_found_pulses(f, cfg)
            ev_pulses = pulses[int(n_pulses[:index].sum()) : int(n_pulses[: index + 1].sum())]
            written = [
                plot_waveforms(
                    ev.samples,
                    ev_pulses,
                    cfg,
                    args.plots,
                    channels=f.channels,
                    title=f"{path.name} event index {index} (event number {ev.event_number}, "
                    f"trigger word 0x{int(ev.header['trigger_word']):04x})",
                )
            ]
            energies = event_energies(pulses, n_pulses, cfg)
            truth = f.truth
            plane, inside = plot_ecal_hcal_plane(energies, cfg, args.plots)
            written.append(plane)
            written.append(plot_srd_spectra(energies, truth, args.plots))
            res_path, res = plot_ecal_resolution(energies, truth, cfg, args.plots)
            written.append(res_path)
            written.append(
                plot_trigger_rates(
                    events, args.plots, sample_ns=cfg.digitizer.sample_ns, producer=str(f.attrs.get("producer", ""))
                )
            )
            ecal_cut, hcal_cut = signal_region(cfg)
            console.print(
                f"events in the NA64 signal region (E_ECAL < {ecal_cut:g} GeV, the trigger's ECAL cut "
                f"at {cfg.beam.energy_gev:g} GeV; E_HCAL < {hcal_cut:g} GeV, {cfg.beam.species}): "
                f"{inside} of {int(energies.has_beam.sum())} with a beam coincidence",
                soft_wrap=True,
            )
            for line in resolution_lines(res):
                console.print(line, soft_wrap=True)
            for p in written:
                console.print(f"wrote {p}", soft_wrap=True)
    return 0
