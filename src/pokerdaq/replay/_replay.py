"""Replay of stored raw samples: per file (:func:`replay_file`), many files in parallel
(:func:`replay_files`: processes or a Dask cluster), and the summary of the runs.

Pulses are found again in every stored window, file by file. Trigger words: files of
``pokerdaq simulate`` and minimum-bias recordings are decided in window mode, per file; files of
``pokerdaq run`` carry the online trigger's inputs (``/trigger_inputs``) and are decided again in
stream mode over all the files of their run together, in trigger order (:func:`replay_files`):
with the run's own configuration every stored word must come back, raw and accepted bits; with
a new one each event gets the raw types that would fire, and prescaling and dead time are
counted over the run's raw decisions, never re-applied to the events that were accepted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, Overlay, loads_config
from ..trigger import TriggerBits
from ._decisions import (
    RAW_SHIFT,
    TYPE_MASK,
    Prescaler,
    WindowSetup,
    decision_words,
    match_tolerance,
    raw_registers,
    raw_types_at,
    replay_windows,
    stream_decisions,
    trigger_pulses,
)
from ._state import start_from_state

COMPARED_PULSE_FIELDS = (
    "channel",
    "pulse_index",
    "coarse_time",
    "fine_time",
    "time",
    "crossing",
    "peak",
    "integral",
    "integral_net",
    "pedestal",
    "n_over",
    "quality",
)
TRUTH_FIELDS = ("species", "is_signal", "energy_gev", "e_ecal_gev", "e_preshower_gev", "e_srd_mev", "e_hcal_gev")
SPECIES_NAMES = ("positron", "electron", "hadron", "muon")  # pokerdaq.sim.Species codes 0..3
UNTRIGGERED_PRODUCERS = ("simulate",)
"""Producers whose trigger words mark beam particles, not trigger decisions (minimum bias)."""
DAQ_PRODUCER = "pokerdaq run"
"""Producer of the files decided online in stream mode, with ``/trigger_inputs``."""
MAX_LISTED = 20
BATCH_EVENTS = 1024


@dataclass
class FileReplay:
    """What replaying one file gave: per-event arrays and the reproduction check.

    ``old_*``: the file's own configuration; ``new_*``: the configuration replayed (equal to
    the old one when none was given). Words: prescaled types in bits 0-7, raw in bits 8-15.
    """

    path: str
    producer: str
    n_events: int
    event_number: np.ndarray
    stored_word: np.ndarray
    old_word: np.ndarray
    new_word: np.ndarray
    old_triggers: np.ndarray
    new_triggers: np.ndarray
    truth: np.ndarray | None
    stored_pulses: int = 0
    replayed_pulses: int = 0
    new_pulses: int = 0
    pulse_mismatched_events: int = 0
    pulse_mismatches: list[dict] = field(default_factory=list)
    word_mismatches: int = 0
    word_mismatch_list: list[dict] = field(default_factory=list)
    pulses_stored: bool = True
    run_number: int = 0
    file_index: int = 0
    stored_timestamp: np.ndarray | None = None
    config_toml: str = ""
    trigger_inputs: tuple | None = None
    """``(steps, primitives, seed)`` of ``/trigger_inputs``, or None (the file has none)."""
    trigger_state: tuple | None = None
    """:attr:`pokerdaq.io.RunFile.trigger_state`: what lets a later file of a run be decided alone."""
    stream: bool = False
    """The trigger words were decided again in stream mode over the run's trigger inputs:
    ``new_word`` then holds raw types only (bits 8-15); see :attr:`run_report`."""
    run_report: dict | None = None
    trigger_state_mismatches: int = 0
    """Decision steps whose recorded dead time / prescaler state the replay did not meet (first file of a run)."""

    @property
    def has_stored_words(self) -> bool:
        """False for an untriggered (minimum-bias) recording: every stored word is 0, or the
        producer (``pokerdaq simulate``) records one window per particle without a decision."""
        return self.producer not in UNTRIGGERED_PRODUCERS and bool(np.any(self.stored_word != 0))

    @property
    def reproduced(self) -> bool:
        """The file's configuration gives back every stored pulse and (if stored) trigger word."""
        return self.pulse_mismatched_events == 0 and self.word_mismatches == 0 and self.trigger_state_mismatches == 0


def _compare_pulses(
    stored: np.ndarray,
    stored_counts: np.ndarray,
    replayed: np.ndarray,
    replay_counts: np.ndarray,
    event_numbers: np.ndarray,
) -> tuple[np.ndarray, list[dict]]:
    """Events (indices into the batch) whose stored and replayed pulses differ, and details."""
    bad = stored_counts != replay_counts
    details: list[dict] = []
    for k in np.flatnonzero(bad)[:MAX_LISTED]:
        details.append(
            {
                "event_number": int(event_numbers[k]),
                "field": "n_pulses",
                "stored": int(stored_counts[k]),
                "replayed": int(replay_counts[k]),
            }
        )
    same = ~bad
    rows_s = np.repeat(same, stored_counts)
    rows_r = np.repeat(same, replay_counts)
    s, r = stored[rows_s], replayed[rows_r]
    row_event = np.repeat(np.flatnonzero(same), stored_counts[same])
    row_bad = np.zeros(len(s), dtype=bool)
    for name in COMPARED_PULSE_FIELDS:
        diff = s[name].astype(np.int64) != r[name].astype(np.int64)
        for i in np.flatnonzero(diff & ~row_bad)[: max(0, MAX_LISTED - len(details))]:
            details.append(
                {
                    "event_number": int(event_numbers[row_event[i]]),
                    "field": name,
                    "channel": int(s["channel"][i]),
                    "stored": int(s[name][i]),
                    "replayed": int(r[name][i]),
                }
            )
        row_bad |= diff
    bad[np.unique(row_event[row_bad])] = True
    return np.flatnonzero(bad), details


def replay_file(
    path: str | os.PathLike[str],
    config: Config | Overlay | None = None,
    *,
    batch_events: int = BATCH_EVENTS,
    decide_run: bool = True,
) -> FileReplay:
    """Re-run pulse finding and trigger on the stored windows of one run file.

    Parameters
    ----------
    path
        A run file (docs/hdf5-layout.md) with raw samples.
    config
        The configuration to replay with; default the file's own (stored ``config_toml``);
        an :class:`~pokerdaq.config.Overlay` is applied on top of the file's own.
        It must describe the same channels and window length as the file.
    batch_events
        Events read and processed at a time (bounds the memory).
    decide_run
        For a file of ``pokerdaq run`` (with ``/trigger_inputs``): decide its trigger words
        again in stream mode (:func:`decide_runs`) on this file alone: file 0 of a run, or a
        later file from the trigger state stored in it (``/trigger_inputs/state``);
        :func:`replay_files` passes False and decides every run of its files.

    Returns
    -------
    FileReplay

    Raises
    ------
    ValueError
        When the configuration does not match the file's channels or window.
    """
    from ..io import RunFile

    if isinstance(batch_events, bool) or not isinstance(batch_events, int) or batch_events < 1:
        raise ValueError(f"batch_events = {batch_events!r}: expected an integer >= 1")
    with RunFile(path) as f:
        old_cfg = f.config
        if isinstance(config, Overlay):
            config = old_cfg.overlaid(config)
        new_cfg = old_cfg if config is None else config
        channels = file_channels(f, old_cfg, new_cfg)
        old_setup = WindowSetup.from_config(old_cfg, channels)
        new_setup = old_setup if config is None else WindowSetup.from_config(new_cfg, channels)
        old_pre, new_pre = Prescaler(old_setup.prescale), Prescaler(new_setup.prescale)
        n = len(f)
        events = f.events
        truth = f.truth
        out = FileReplay(
            path=str(path),
            producer=str(f.attrs.get("producer", "")),
            n_events=n,
            event_number=events["event_number"].copy(),
            stored_word=events["trigger_word"].copy(),
            old_word=np.zeros(n, np.uint32),
            new_word=np.zeros(n, np.uint32),
            old_triggers=None,  # type: ignore[arg-type]
            new_triggers=None,  # type: ignore[arg-type]
            truth=None if truth is None else np.asarray(truth[list(TRUTH_FIELDS)]).copy(),
            run_number=int(f.attrs.get("run_number", 0)),
            file_index=int(f.attrs.get("file_index", 0)),
            stored_timestamp=events["timestamp"].copy(),
            config_toml=str(f.attrs.get("config_toml", "")),
        )
        # the online decisions of a DAQ run: in the run's files, possibly none in this one
        inputs = f.trigger_inputs
        if inputs is not None and (len(inputs[0]) or out.producer == DAQ_PRODUCER):
            out.trigger_inputs = inputs
            out.trigger_state = f.trigger_state
        # a file written without pulses (pokerdaq simulate) has nothing to compare them with
        out.pulses_stored = bool(int(f.attrs.get("n_pulses", 0)) > 0 or np.any(events["n_pulses"]))
        old_parts, new_parts = [], []
        same_pulse_finder = all(
            np.array_equal(a, b)
            for a, b in zip(old_setup.pulse_params.registers_int64, new_setup.pulse_params.registers_int64)
        )
        for a in range(0, n, batch_events):
            batch = f.read(a, min(n, a + batch_events))
            pulses, offsets, trig = replay_windows(batch.samples, old_setup)
            old_parts.append(trig)
            out.old_word[a : a + len(batch)] = decision_words(trig, old_pre)
            if new_setup is old_setup:
                new_parts.append(trig)
                out.new_pulses += len(pulses)
            elif same_pulse_finder:
                # only trigger settings changed: the pulses are the same, trigger them anew
                new_parts.append(trigger_pulses(pulses, offsets, new_setup))
                out.new_pulses += len(pulses)
            else:
                new_pulses, _, new_trig = replay_windows(batch.samples, new_setup)
                new_parts.append(new_trig)
                out.new_pulses += len(new_pulses)
            out.stored_pulses += len(batch.pulses)
            out.replayed_pulses += len(pulses)
            if out.pulses_stored:
                stored_counts = batch.headers["n_pulses"].astype(np.int64)
                bad, details = _compare_pulses(
                    batch.pulses, stored_counts, pulses, np.diff(offsets), batch.headers["event_number"]
                )
                out.pulse_mismatched_events += len(bad)
                out.pulse_mismatches.extend(details[: MAX_LISTED - len(out.pulse_mismatches)])
        out.old_triggers = np.concatenate(old_parts) if old_parts else np.zeros(0, dtype=old_parts_dtype())
        out.new_triggers = np.concatenate(new_parts) if new_parts else np.zeros(0, dtype=old_parts_dtype())
        # with the new configuration the prescalers run separately: redo the words in order
        if new_setup is old_setup:
            out.new_word = out.old_word.copy()
        else:
            out.new_word = decision_words(out.new_triggers, new_pre)
        # a file with trigger inputs: its words are decided over the whole run (replay_files)
        if out.has_stored_words and out.trigger_inputs is None:
            wrong = np.flatnonzero(out.stored_word != out.old_word)
            out.word_mismatches = len(wrong)
            out.word_mismatch_list = [
                {
                    "event_number": int(out.event_number[i]),
                    "stored": int(out.stored_word[i]),
                    "replayed": int(out.old_word[i]),
                }
                for i in wrong[:MAX_LISTED]
            ]
    if decide_run and out.trigger_inputs is not None:
        decide_runs([out], config)
    return out


def file_channels(f: Any, *configs: Config) -> np.ndarray | None:
    """Channel numbers of a run file's samples, checked against the configurations to apply.

    Returns None when the file holds every channel of the map (an emulated run), else the
    recorded subset (``pokerdaq import``). Each configuration must name the file's channels
    with the same numbers and read windows of the file's length.

    Raises
    ------
    ValueError
        Naming the file, the channel or the window length that does not match.
    """
    table = np.asarray(f.channel_map.table)
    n_s = int(f.attrs["window_samples"])
    for cfg in configs:
        full = cfg.channel_map.table
        if cfg.digitizer.window_samples != n_s:
            raise ValueError(
                f"{f.path}: windows of {n_s} samples, but the configuration's "
                f"digitizer.window_samples = {cfg.digitizer.window_samples} (expected equal)"
            )
        chans = table["channel"].astype(np.int64)
        bad = np.flatnonzero((chans >= len(full)) | (full["name"][np.minimum(chans, len(full) - 1)] != table["name"]))
        if len(bad):
            k = int(bad[0])
            raise ValueError(
                f"{f.path}: /channel_map row {k}, channel {int(chans[k])} named "
                f"{table['name'][k].decode()!r} is not that channel of the configuration's "
                f"channel map of {len(full)} channels"
            )
    if len(table) == len(configs[0].channel_map) and np.array_equal(table["channel"], np.arange(len(table))):
        return None
    return table["channel"].astype(np.int64)


def old_parts_dtype():
    from ..trigger import TRIGGER_DTYPE

    return TRIGGER_DTYPE


def _replay_worker(path: str, config_text: str | Overlay | None) -> FileReplay:
    if isinstance(config_text, Overlay):  # applied to each file's own configuration
        return replay_file(path, config_text, decide_run=False)
    cfg = None if config_text is None else loads_config(config_text, "replay config")
    return replay_file(path, cfg, decide_run=False)


def replay_files(
    paths: Sequence[str | os.PathLike[str]],
    config: Config | Overlay | None = None,
    *,
    jobs: int = 1,
    dask_scheduler: str | None = None,
) -> list[FileReplay]:
    """:func:`replay_file` on several files, in parallel.

    Parameters
    ----------
    paths
        Run files; results come back in this order.
    config
        Configuration to replay with (default: each file's own; an
        :class:`~pokerdaq.config.Overlay` is applied on top of each file's own).
    jobs
        Worker processes (``concurrent.futures.ProcessPoolExecutor``); 1 runs in this process.
    dask_scheduler
        Address of a Dask scheduler (``tcp://host:port``): the files are replayed as tasks on
        that cluster instead (needs the optional extra ``pokerdaq[dask]``).

    Returns
    -------
    list of FileReplay
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs = {jobs!r}: expected an integer >= 1")
    files = [str(Path(p)) for p in paths]
    if not files:
        raise ValueError("paths: expected at least one run file")
    text = config if config is None or isinstance(config, Overlay) else _config_text(config)
    if dask_scheduler is not None:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - depends on the installation
            raise RuntimeError("--dask-scheduler needs dask.distributed: pip install 'pokerdaq[dask]'") from None
        # a worker runs in its own folder, on its own machine maybe: send absolute paths
        remote = [str(Path(p).resolve()) for p in files]
        with Client(dask_scheduler, timeout="30s") as client:
            futures = client.map(_replay_worker, remote, [text] * len(files), pure=False)
            results = client.gather(futures)
        for r, name in zip(results, files):
            r.path = name  # reported as the caller named it, as by a local replay
    elif jobs == 1 or len(files) == 1:
        results = [_replay_worker(p, text) for p in files]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: numba's threading layer and h5py handles are not fork-safe
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(files)), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            results = list(pool.map(_replay_worker, files, [text] * len(files)))
    decide_runs(results, config)
    return results


def decide_runs(results: Sequence[FileReplay], config: Config | Overlay | None = None) -> list[dict]:
    """Decide the trigger words of the DAQ-run files among ``results`` again, run by run.

    The files of one run (same run number and configuration) are put in ``file_index`` order,
    their ``/trigger_inputs`` concatenated and fed through the stream-mode trigger (from the
    start of the run, or, when the first file given is a later one, from the trigger state
    stored in it: :func:`pokerdaq.replay._state.start_from_state`)
    (:func:`~pokerdaq.replay._decisions.stream_decisions`). Each file's ``old_word``,
    ``word_mismatches`` and (with ``config``) ``new_word`` are set; the run's report (counts
    per trigger type over the raw decisions, bytes of trigger inputs per event, state checks)
    goes to each file's ``run_report``.

    Parameters
    ----------
    results
        :class:`FileReplay` of :func:`replay_file`; those without trigger inputs are left as they are.
    config
        The new configuration (an :class:`~pokerdaq.config.Overlay` on top of the run's own), or None.

    Returns
    -------
    list of dict
        One report per run.
    """
    from ..trigger import TriggerRegisters

    runs: dict[tuple[int, str], list[FileReplay]] = {}
    for f in results:
        if f.trigger_inputs is not None:
            runs.setdefault((f.run_number, f.config_toml), []).append(f)
    reports = []
    for (run_number, toml), files in runs.items():
        files.sort(key=lambda f: f.file_index)
        old_cfg = loads_config(toml, f"{files[0].path}: config_toml")
        inputs = [f.trigger_inputs for f in files if f.trigger_inputs is not None]  # all of them (see above)
        steps = np.concatenate([t[0] for t in inputs])
        prims = np.concatenate([t[1] for t in inputs])
        seed = inputs[0][2]
        seed = old_cfg.run.seed if seed is None else seed
        slice_ticks = int(old_cfg.daq.slice_ticks)
        indices = [f.file_index for f in files]
        problem = None
        start = None  # a later file first: the model starts from its stored state (_state.py)
        stored = files[0].trigger_state
        if indices != list(range(indices[0], indices[0] + len(files))):
            problem = f"files {indices} of run {run_number} given: the trigger needs consecutive files"
        elif indices[0] != 0 and stored is None:
            problem = (
                f"files {indices} of run {run_number} given: {files[0].path} stores no trigger state "
                "(written before it existed), so the trigger needs every file from file 0 on"
            )
        elif indices[0] != 0 and config is not None:
            problem = (
                f"files {indices} of run {run_number} given: a new configuration is decided from the "
                "start of the run, so it needs every file from file 0 on"
            )
        elif indices[0] != 0 and stored is not None:
            start = start_from_state(
                TriggerRegisters.from_config(old_cfg, seed),
                stored,
                steps,
                prims,
                f"{files[0].path}: /trigger_inputs/state",
            )
            steps, prims = start[1], start[2]
        first_slice = int(stored[0]) if start is not None and stored is not None else 0
        if (
            problem is None
            and len(steps)
            and (
                int(steps["first_slice"][0]) != first_slice
                or np.any(steps["first_slice"][1:] != steps["last_slice"][:-1] + 1)
            )
        ):
            problem = f"run {run_number}: the recorded decision steps do not cover the run without a gap"
        if old_cfg.daq.trigger_logic != "physics":
            problem = (
                f"run {run_number}: daq.trigger_logic = {old_cfg.daq.trigger_logic!r}; replay decides "
                "runs of the physics trigger logic only"
            )
            steps, prims = steps[:0], prims[:0]
        old_regs = TriggerRegisters.from_config(old_cfg, seed)
        old = stream_decisions(old_regs, steps, prims, slice_ticks, model=None if start is None else start[0])
        n_events = sum(f.n_events for f in files)
        report: dict[str, Any] = {
            "run_number": run_number,
            "files": [f.path for f in files],
            "problem": problem,
            "n_events": n_events,
            "decision_steps": len(steps),
            "primitives": len(prims),
            "trigger_input_bytes": int(steps.nbytes + prims.nbytes),
            "trigger_input_bytes_per_event": (steps.nbytes + prims.nbytes) / n_events if n_events else None,
            "state_mismatches": old.state_mismatches,
            "first_state_mismatch": old.first_state_mismatch,
            "old": old.counters.as_dict(),
            "old_accepted_triggers": len(old.words),
            "started_from_stored_state": start is not None,
            "first_decided_event": old.first_event,
            "trigger_state_bytes": _state_bytes(stored) if start is not None and stored is not None else 0,
        }
        new_raw = None
        if config is not None:
            new_cfg = old_cfg.overlaid(config) if isinstance(config, Overlay) else config
            new_regs = TriggerRegisters.from_config(new_cfg, seed)
            raw = stream_decisions(raw_registers(new_regs), steps, prims, slice_ticks, check_state=False, busy=False)
            full = stream_decisions(new_regs, steps, prims, slice_ticks, check_state=False)
            report.update(
                {
                    "new": full.counters.as_dict(),
                    "new_raw_decisions": len(raw.words),
                    "new_accepted_triggers": len(full.words),
                }
            )
            new_raw = (raw, match_tolerance(new_regs))
        else:
            report.update({"new": report["old"], "new_raw_decisions": None, "new_accepted_triggers": len(old.words)})
        n_old = len(old.words)
        for f in files:
            if f.stored_timestamp is None:  # replay_file sets it for every file
                raise RuntimeError(f"{f.path}: no stored timestamps")
            f.stream = True
            f.run_report = report
            en = f.event_number.astype(np.int64) - old.first_event
            have = (en >= 0) & (en < n_old)
            idx = np.where(have, en, 0)
            f.old_word = np.where(have, old.words[idx] if n_old else 0, 0).astype(np.uint32)
            ts = np.where(have, old.ref_tick[idx] if n_old else 0, 0).astype(np.uint64)
            wrong = np.flatnonzero(~have | (f.old_word != f.stored_word) | (ts != f.stored_timestamp))
            if problem is not None:
                wrong = np.arange(f.n_events)
            f.word_mismatches = len(wrong)
            f.trigger_state_mismatches = old.state_mismatches if f is files[0] else 0
            f.word_mismatch_list = [
                {
                    "event_number": int(f.event_number[i]),
                    "stored": int(f.stored_word[i]),
                    "replayed": int(f.old_word[i]),
                    "stored_timestamp": int(f.stored_timestamp[i]),
                    "replayed_timestamp": int(ts[i]),
                }
                for i in wrong[:MAX_LISTED]
            ]
            if new_raw is None:
                f.new_word = f.old_word.copy()
            else:
                raw, tol = new_raw
                # raw types only: prescalers and dead time are counted over the run (run_report)
                f.new_word = raw_types_at(raw, f.stored_timestamp, tol) << np.uint32(RAW_SHIFT)
        reports.append(report)
    return reports


def _state_bytes(state: tuple) -> int:
    """Bytes of a file's stored trigger state: the state words and the steps and primitives with it."""
    return int(state[2].nbytes + state[3].nbytes + state[4].nbytes)


def _config_text(cfg: Config) -> str:
    from ..io._writer import config_text

    return config_text(cfg)


# ---------------------------------------------------------------------------- summary


def _types(words: np.ndarray, raw: bool) -> np.ndarray:
    w = words.astype(np.uint32)
    return (w >> np.uint32(RAW_SHIFT)) & np.uint32(TYPE_MASK) if raw else w & np.uint32(TYPE_MASK)


def _count_types(words: np.ndarray, raw: bool) -> dict[str, int]:
    t = _types(words, raw)
    return {name: int(np.count_nonzero((t >> np.uint32(k)) & np.uint32(1))) for k, name in enumerate(TriggerBits.NAMES)}


def _truth_classes(truth: np.ndarray) -> dict[str, np.ndarray]:
    classes = {name: truth["species"] == code for code, name in enumerate(SPECIES_NAMES)}
    # DAQ runs: events whose readout window holds no beam particle (pokerdaq.sim.Species.NONE)
    classes["no_particle"] = truth["species"] == -1
    classes["signal"] = truth["is_signal"].astype(bool)
    classes["background"] = ~truth["is_signal"].astype(bool) & (truth["species"] >= 0)  # a particle, not A'
    return classes


@dataclass
class ReplaySummary:
    """Aggregate of several :class:`FileReplay` (a run of one or many files)."""

    files: list[FileReplay]

    def concat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(f, name) for f in self.files])

    @property
    def truth(self) -> np.ndarray | None:
        if any(f.truth is None for f in self.files):
            return None
        return np.concatenate([f.truth for f in self.files])

    @property
    def reproduced(self) -> bool:
        return all(f.reproduced for f in self.files)

    def changed_events(self) -> list[dict[str, Any]]:
        """Events whose trigger word differs between the file's and the new configuration."""
        out = []
        for f in self.files:
            # stream-decided files: new_word holds raw types only (prescaling is counted per run)
            mask = np.uint32(TYPE_MASK << RAW_SHIFT) if f.stream else np.uint32(0xFFFFFFFF)
            for i in np.flatnonzero((f.old_word & mask) != (f.new_word & mask)):
                old, new = int(f.old_word[i] & mask), int(f.new_word[i] & mask)
                out.append(
                    {
                        "file": Path(f.path).name,
                        "index": int(i),
                        "event_number": int(f.event_number[i]),
                        "old_word": old,
                        "new_word": new,
                        "gained": _names(new & ~old),
                        "lost": _names(old & ~new),
                    }
                )
        return out

    @property
    def run_reports(self) -> list[dict]:
        """The run-level reports of the stream-decided (DAQ-run) files, one per run."""
        out: list[dict] = []
        for f in self.files:
            if f.run_report is not None and not any(r is f.run_report for r in out):
                out.append(f.run_report)
        return out

    def as_dict(self, config_source: str | None = None, max_changed: int = 10000) -> dict[str, Any]:
        """JSON-ready report.

        ``per_trigger_type``: counts over the stored events; for DAQ-run files ``new_accepted``
        is the count of accepted triggers over the run's raw decisions with the new
        configuration (``runs``), not a count of stored events.
        """
        old, new = self.concat("old_word"), self.concat("new_word")
        changed = self.changed_events()
        per_type = {}
        old_raw, new_raw = _count_types(old, True), _count_types(new, True)
        window = [f for f in self.files if not f.stream]
        new_acc = _count_types(
            np.concatenate([f.new_word for f in window]) if window else np.zeros(0, np.uint32), False
        )
        for r in self.run_reports:
            for name in TriggerBits.NAMES:
                new_acc[name] += r["new"]["accepted"][name]
        old_acc = _count_types(old, False)
        for name in TriggerBits.NAMES:
            per_type[name] = {
                "old_raw": old_raw[name],
                "old_accepted": old_acc[name],
                "new_raw": new_raw[name],
                "new_accepted": new_acc[name],
            }
        report: dict[str, Any] = {
            "config": config_source or "(each file's own configuration)",
            "n_files": len(self.files),
            "n_events": int(len(old)),
            "accepted_any": {
                "old": int(np.count_nonzero(old & TYPE_MASK)),
                "new": int(
                    sum(np.count_nonzero(f.new_word & TYPE_MASK) for f in window)
                    + sum(r["new_accepted_triggers"] for r in self.run_reports)
                ),
            },
            "per_trigger_type": per_type,
            "word_bits": "bits 0-7: types after prescale, bits 8-15: raw types; "
            + ", ".join(f"bit {k}: {n}" for k, n in enumerate(TriggerBits.NAMES)),
            "reproduction": {
                "reproduced": self.reproduced,
                "files": [
                    {
                        "file": f.path,
                        "producer": f.producer,
                        "n_events": f.n_events,
                        "stored_trigger_words": f.has_stored_words,
                        "stored_pulses_present": f.pulses_stored,
                        "trigger_word_mismatches": f.word_mismatches,
                        "decided_in_stream_mode": f.stream,
                        "trigger_state_mismatches": f.trigger_state_mismatches,
                        "first_trigger_word_mismatches": f.word_mismatch_list,
                        "stored_pulses": f.stored_pulses,
                        "replayed_pulses": f.replayed_pulses,
                        "pulse_mismatched_events": f.pulse_mismatched_events,
                        "first_pulse_mismatches": f.pulse_mismatches,
                        "new_config_pulses": f.new_pulses,
                    }
                    for f in self.files
                ],
            },
            "runs": self.run_reports,
            "n_changed": len(changed),
            "changed_events": changed[:max_changed],
        }
        truth = self.truth
        if truth is not None:
            eff: dict[str, Any] = {}
            for cls, mask in _truth_classes(truth).items():
                n = int(mask.sum())
                row: dict[str, Any] = {"n_events": n}
                for label, words in (("old", old), ("new", new)):
                    raw = _count_types(words[mask], True)
                    acc = _count_types(words[mask], False)
                    row[label] = {
                        name: {"raw": raw[name], "accepted": acc[name], "raw_efficiency": raw[name] / n if n else None}
                        for name in TriggerBits.NAMES
                    }
                eff[cls] = row
            report["efficiency_by_truth_class"] = eff
        return report


def _names(bits: int) -> list[str]:
    out = []
    for k, name in enumerate(TriggerBits.NAMES):
        if bits >> k & 1:
            out.append(name)
        if bits >> (k + RAW_SHIFT) & 1:
            out.append(f"raw_{name}")
    return out
