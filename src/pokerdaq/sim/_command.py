"""``pokerdaq simulate``: emulate N beam particles, one readout window each, into an HDF5 file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .._usage import check_new_output
from ..config import Config, ConfigError, config_from_args
from ..io import EventFlags
from ._emulator import iter_windows
from ._truth import Species

BATCH_EVENTS = 2048


def run(args: argparse.Namespace) -> int:
    """Run the ``simulate`` subcommand; returns the process exit status."""
    cfg = config_from_args(args)  # --seed S is run.seed = S, checked by the schema
    seed = cfg.run.seed
    if args.events < 1:
        raise ConfigError("--events", args.events, "an integer >= 1")
    out = check_new_output(args.output, getattr(args, "overwrite", False))
    return simulate(cfg, args.events, seed, out, overwrite=getattr(args, "overwrite", False))


def simulate(cfg: Config, n_events: int, seed: int, out: Path, *, overwrite: bool = False) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ..io import EVENT_DTYPE, RunFileWriter

    console = Console()
    # an existing file is replaced only with --overwrite, as by every command that writes
    writer = RunFileWriter(out, cfg, producer="simulate", overwrite=overwrite)
    species = np.zeros(max(Species) + 1, np.int64)  # particle codes 0.. (NONE is not simulated)
    n_signal = 0
    e_cal_sum = 0.0
    n_em = 0
    raw_bytes = 0
    t_start = time.perf_counter()
    try:
        with Progress(
            TextColumn("simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("events", total=n_events, rate="")
            done = 0
            for samples, truth in iter_windows(cfg, n_events, seed, batch_events=BATCH_EVENTS):
                writer.write_events(_headers(truth, EVENT_DTYPE), samples, pulses=None, truth=truth)
                raw_bytes += samples.nbytes + truth.nbytes
                done += len(truth)
                species += np.bincount(truth["species"], minlength=len(species))
                n_signal += int(truth["is_signal"].sum())
                em = (truth["species"] >= 0) & (truth["species"] <= Species.ELECTRON) & ~truth["is_signal"]
                e_cal_sum += float((truth["e_ecal_gev"][em] + truth["e_preshower_gev"][em]).sum())
                n_em += int(em.sum())
                rate = done / max(time.perf_counter() - t_start, 1e-9)
                progress.update(task, completed=done, rate=f"{rate:,.0f} ev/s")
    finally:
        # also on an error or Ctrl-C: what was written stays a valid (shorter) run file
        writer.close()
    elapsed = time.perf_counter() - t_start
    table = Table(title=f"pokerdaq simulate -> {out}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("events", f"{n_events:,}")
    for sp in (s for s in Species if s >= 0):
        table.add_row(f"  {sp.name.lower()}", f"{int(species[sp]):,}")
    table.add_row("  of which A' signal", f"{n_signal:,}")
    table.add_row("mean ECAL+PRS energy, e+/e- (GeV)", f"{e_cal_sum / max(n_em, 1):.2f}")
    table.add_row("beam energy (GeV) / seed", f"{cfg.beam.energy_gev:g} / {seed}")
    size = sum(p.stat().st_size for p in writer.closed_files)
    table.add_row("samples + truth (MB): in memory / file", f"{raw_bytes / 1e6:.1f} / {size / 1e6:.1f}")
    table.add_row("rate (events/s)", f"{n_events / elapsed:,.0f}")
    console.print(table)
    return 0


def _headers(truth: np.ndarray, dtype: np.dtype) -> np.ndarray:
    h = np.zeros(len(truth), dtype)
    h["event_number"] = truth["event"]
    h["timestamp"] = truth["t_sample"]  # 250 MHz ticks of the triggering particle
    # one window per beam particle, no trigger decision: a minimum-bias recording
    h["trigger_word"] = 0
    h["flags"] = EventFlags.SIMULATED
    return h
