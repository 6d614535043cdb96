"""``pokerdaq trigger``: rates per trigger type, live time and efficiencies of the trigger model.

Without ``--input`` the emulator streams ``--events`` beam particles through the stream-mode
pulse finder and the trigger (pokerdaq.trigger._chain). With ``--input FILE.h5`` (a file of
``pokerdaq simulate``: one readout window per particle) the stored samples are pulse-found
again with the file's configuration (or ``--config``) and triggered in window mode; the rates
are then the per-particle fractions times the beam rate (no dead time: windows are not a
stream).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..config import Config, ConfigError, Overlay, config_from_args, overlay_from_args
from ._dtypes import ConditionBits, TriggerBits
from ._registers import P_PRESCALE, TriggerRegisters


def particle_efficiencies(cfg: Config, conditions: np.ndarray, types: np.ndarray, truth: np.ndarray) -> dict[str, dict]:
    """Efficiencies per particle class from per-particle raw conditions and types (0: no candidate)."""
    from ..sim import Species

    sp, sig = truth["species"], truth["is_signal"]
    e_calo = truth["e_preshower_gev"] + truth["e_ecal_gev"]
    cut = cfg.trigger.ecal_cut_at(cfg.beam.energy_gev)
    em = ((sp == Species.POSITRON) | (sp == Species.ELECTRON)) & ~sig
    other = (sp == Species.HADRON) | (sp == Species.MUON)
    rows = {
        "beam coincidence (all particles)": ((conditions & ConditionBits.BEAM) != 0, np.ones(len(truth), bool)),
        "SRD tag (e+/e-)": ((conditions & ConditionBits.SRD) != 0, em),
        "SRD false tag (hadrons, muons)": ((conditions & ConditionBits.SRD) != 0, other),
        f"physics (signal, E_ECAL < {cut:g} GeV)": ((types & TriggerBits.PHYSICS) != 0, sig & (e_calo < cut)),
        "physics (ordinary e+/e-)": ((types & TriggerBits.PHYSICS) != 0, em),
        "calibration (ordinary e+/e-)": ((types & TriggerBits.CALIBRATION) != 0, em),
        "muon (muons)": ((types & TriggerBits.MUON) != 0, sp == Species.MUON),
    }
    out = {}
    for name, (passed, sel) in rows.items():
        n = int(sel.sum())
        k = int(passed[sel].sum())
        p = k / n if n else float("nan")
        err = float(np.sqrt(max(p * (1 - p), 1.0 / n) / n)) if n else float("nan")
        out[name] = {"passed": k, "n": n, "efficiency": p, "error": err}
    return out


def _stream_report(cfg: Config, n_events: int, seed: int) -> dict:
    from ._chain import match_to_particles, run_stream_chain

    res = run_stream_chain(cfg, n_events, seed)
    cnt = res.counters
    seconds_beam = cnt.ticks * cfg.digitizer.sample_ns * 1e-9
    match = match_to_particles(res.raw, res.truth)
    cond = np.where(match >= 0, res.raw["conditions"][match], 0)
    types = np.where(match >= 0, res.raw["trigger_word"][match] & 0xFF, 0)
    regs = TriggerRegisters.from_config(cfg, seed)
    rates = {}
    for k, name in enumerate(TriggerBits.NAMES):
        rates[name] = {
            "prescale": int(regs.params[P_PRESCALE + k]),
            "raw_hz": cnt.raw[k] / seconds_beam,
            "accepted_hz": cnt.accepted[k] / seconds_beam,
            "raw": int(cnt.raw[k]),
            "accepted": int(cnt.accepted[k]),
            "lost_dead": int(cnt.lost_dead[k]),
            "lost_busy": int(cnt.lost_busy[k]),
        }
    return {
        "mode": "stream",
        "particles": int(len(res.truth)),
        "samples": res.samples,
        "beam_seconds": seconds_beam,
        "beam_rate_hz": cfg.beam.rate_hz,
        "triggers": int(cnt.triggers),
        "trigger_rate_hz": cnt.triggers / seconds_beam,
        "live_fraction": cnt.live_fraction,
        "unmatched_particles": int((match < 0).sum()),
        "rates": rates,
        "counters": cnt.as_dict(),
        "efficiencies": particle_efficiencies(cfg, cond, types, res.truth),
        "wall_seconds": res.seconds,
    }


def _iter_input(path: str, batch: int = 1024):
    """(config, iterator of (samples, truth or None)) of a run file.

    Reads the documented run-file layout (``pokerdaq.io.RunFile``) and the plain layout that
    ``pokerdaq simulate`` writes (attribute ``layout_version`` naming ``pokerdaq-sim``:
    ``/samples``, ``/truth``).
    """
    import h5py

    from ..config import loads_config

    with h5py.File(path, "r") as f:
        layout = str(f.attrs.get("layout_version", ""))
        plain = "pokerdaq-sim" in layout
        if plain:
            cfg = loads_config(str(f.attrs["config_toml"]), f"{path}:config_toml")
    if plain:

        def plain_batches():
            with h5py.File(path, "r") as f:
                n = f["samples"].shape[0]
                for start in range(0, n, batch):
                    truth = f["truth"][start : start + batch] if "truth" in f else None
                    yield np.asarray(f["samples"][start : start + batch]), truth

        return cfg, plain_batches(), None

    from .. import io as pio

    run_file = pio.RunFile(path)

    def batches():
        with run_file:
            for start in range(0, len(run_file), batch):
                b = run_file.read(start, start + batch)
                yield np.asarray(b.samples), None if b.truth is None else np.asarray(b.truth)

    return run_file.config, batches(), run_file.channels


def _file_report(overlay: Overlay, path: str, seed: int | None) -> dict:
    from ..dsp import PulseParams, find_pulses_batch
    from ._model import trigger_windows

    try:
        file_cfg, batches, channels = _iter_input(path)
    except (OSError, ValueError) as err:  # not HDF5, or not a run file
        raise ConfigError("--input", path, f"a pokerdaq run file ({err})") from None
    cfg = file_cfg.overlaid(overlay)
    # an imported file holds the recorded subset of the channel map: pulses keep their
    # channel numbers, the sums see the absent channels as silent
    try:
        params = PulseParams.from_config(cfg, channels)
    except ValueError as err:
        raise ConfigError("--input", path, f"channels of the configuration's channel map ({err})") from None
    regs = TriggerRegisters.from_config(cfg, seed)
    outs, truths = [], []
    for samples, truth in batches:
        rec, offsets = find_pulses_batch(samples, params, channels)
        window = np.repeat(np.arange(len(samples)), np.diff(offsets))
        outs.append(trigger_windows(rec, window, len(samples), regs, default_ref=cfg.digitizer.pretrigger_samples * 64))
        if truth is not None:
            truths.append(truth)
    out: np.ndarray = np.concatenate(outs) if outs else np.zeros(0)
    n = len(out)
    rates = {}
    for k, name in enumerate(TriggerBits.NAMES):
        frac = float(np.mean((out["trigger_word"] >> k) & 1)) if len(out) else 0.0
        pre = int(regs.params[P_PRESCALE + k])
        rates[name] = {
            "prescale": pre,
            "raw_fraction": frac,
            "raw_hz": frac * cfg.beam.rate_hz,
            "accepted_hz": frac * cfg.beam.rate_hz / pre if pre else 0.0,
        }
    report = {
        "mode": "file",
        "input": str(path),
        "particles": int(n),
        "beam_rate_hz": cfg.beam.rate_hz,
        "rates": rates,
        "live_fraction": None,
    }
    if truths and len(out):
        truth = np.concatenate(truths)
        report["efficiencies"] = particle_efficiencies(cfg, out["conditions"], out["trigger_word"] & 0xFF, truth)
    return report


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"pokerdaq trigger: {report['particles']} beam particles" + (
        f", {report['beam_seconds'] * 1e3:.3f} ms of beam" if report["mode"] == "stream" else f" from {report['input']}"
    )
    t = Table(title=title)
    for col in ("type", "prescale", "raw rate [Hz]", "accepted rate [Hz]", "lost (dead)", "lost (busy)"):
        t.add_column(col, justify="right" if col != "type" else "left")
    for name, r in report["rates"].items():
        t.add_row(
            name,
            str(r["prescale"]),
            f"{r['raw_hz']:.4g}",
            f"{r['accepted_hz']:.4g}",
            str(r.get("lost_dead", "-")),
            str(r.get("lost_busy", "-")),
        )
    console.print(t)
    if report.get("live_fraction") is not None:
        console.print(
            f"live fraction {report['live_fraction']:.5f}; accepted trigger rate "
            f"{report['trigger_rate_hz']:.4g} Hz at a beam rate of {report['beam_rate_hz']:.4g} Hz"
        )
    if "efficiencies" in report:
        e = Table(title="efficiencies (raw decisions, before prescale and dead time)")
        for col in ("selection", "passed / n", "efficiency"):
            e.add_column(col, justify="left" if col == "selection" else "right")
        for name, r in report["efficiencies"].items():
            e.add_row(
                name, f"{r['passed']} / {r['n']}", f"{r['efficiency']:.4f} +- {r['error']:.4f}" if r["n"] else "-"
            )
        console.print(e)


def run(args: argparse.Namespace) -> int:
    """Run the trigger on emulated beam (or a simulate file), print and optionally write JSON.

    Raises
    ------
    ConfigError
        For a bad configuration or argument (the CLI prints it and exits with status 2).
    """
    if args.input is not None and args.events is not None:
        raise ConfigError("--events", args.events, "either --events or --input, not both")
    # --config / --set / --seed: on the embedded default, or with --input on the file's own configuration
    overlay = overlay_from_args(args)
    cfg = config_from_args(args) if args.input is None else None
    if args.json:
        from .._usage import check_new_output

        check_new_output(args.json, getattr(args, "overwrite", False), "--json")
    t0 = time.perf_counter()
    if args.input is not None:
        from .._usage import check_config_fits, open_run_file

        with open_run_file(args.input, "--input") as f:  # missing, damaged, not a run file: status 2
            check_config_fits(f.config.overlaid(overlay), f)
        report = _file_report(overlay, args.input, args.seed)
    else:
        n = 1000 if args.events is None else args.events
        if n < 1:
            raise ConfigError("--events", n, "an integer >= 1")
        if cfg is None:  # args.input is None: config_from_args made it above
            raise RuntimeError("trigger: no configuration")
        seed = cfg.run.seed if args.seed is None else args.seed
        report = _stream_report(cfg, n, seed)
    report["elapsed_s"] = time.perf_counter() - t0
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    return 0
