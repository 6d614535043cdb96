"""Replay of a trigger-less streaming recording: the stream pulse finder and the stream trigger over its L0 hits.

``pokerdaq replay STREAM.h5 [--config F] [--set ...]`` (docs/replay-inspect.md, "Replaying a
streaming recording"):

1. the pulses: per channel, the stream pulse finder (:class:`pokerdaq.dsp.PulseStream`, the
   configuration's registers in stream form) over the channel's hits concatenated in time,
   times made absolute (the hits hold every sample a pulse uses: :mod:`pokerdaq.daq._streaming`);
2. the primitives grouped as the trigger processor got them online: a pulse is reported in the
   slice ``(crossing + NSA - 1) // slice_ticks``, by the board message that covered that slice
   (``/stream/board_messages``), in the decision step that started at that message's first
   slice (``/trigger_inputs/steps``), boards in order, within a board by slice, input, crossing;
3. the decisions: :func:`pokerdaq.replay._decisions.stream_decisions` over those steps.

With the recording's own configuration the primitives equal the stored online primitives
(``/trigger_inputs/primitives``) step by step and the decisions equal ``/stream/decisions``
(timestamp and trigger word). A configuration may raise thresholds (down to the L0
thresholds), NSB up to ``pad_before - 1`` and NSA up to ``pad_after - 1``; a lower one is
refused: the hits do not hold what it would need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._usage import UsageError
from ..config import Config
from ..trigger import TriggerBits

N_TYPES = len(TriggerBits.NAMES)


def check_stream_config(cfg: Config, rec: Any, source: str) -> None:
    """Refuse (UsageError, one line) a configuration the recorded hits cannot replay.

    ``rec`` is a :class:`pokerdaq.io.StreamFile`; ``source`` names where the configuration came from.
    """
    from ..dsp import PulseParams
    from ..trigger._chain import stream_config

    if len(cfg.channel_map) != len(rec.channel_table):
        raise UsageError(
            f"{source}: {len(cfg.channel_map)} channels, the recording {rec.path} has {len(rec.channel_table)}"
        )
    params = PulseParams.from_config(stream_config(cfg))
    table = cfg.channel_map.table
    abs_thr = params.ped_cfg.astype(np.int64) + params.thr.astype(np.int64)
    checks = (
        (
            "threshold_adc",
            abs_thr < rec.l0_threshold,
            lambda c: int(params.thr[c]),
            lambda c: (
                f"{int(rec.l0_threshold[c] - params.ped_cfg[c])} or more (the recording's L0 threshold, ADC "
                f"{int(rec.l0_threshold[c])})"
            ),
        ),
        (
            "nsb",
            params.nsb.astype(np.int64) + 1 > rec.pad_before,
            lambda c: int(params.nsb[c]),
            lambda c: f"at most {rec.pad_before - 1} (the hits' padding before)",
        ),
        (
            "nsa",
            params.nsa.astype(np.int64) + 1 > rec.pad_after,
            lambda c: int(params.nsa[c]),
            lambda c: f"at most {rec.pad_after - 1} (the hits' padding after)",
        ),
        ("algorithm", params.fadc250 != 0, lambda c: "fadc250", lambda c: '"poker" (stream mode)'),
    )
    for key, bad, value, expected in checks:
        where = np.flatnonzero(bad)
        if where.size:
            c = int(where[0])
            sub = table["subsystem"][c].decode()
            raise UsageError(
                f"{source}: detector.{sub}.pulse_finder.{key} = {value(c)} (channel "
                f"{table['name'][c].decode()}): expected {expected(c)} to replay {rec.path}"
            )


def stream_pulses(cfg: Config, hits: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The stream pulse finder over each channel's hits concatenated: PULSE_DTYPE, absolute times.

    Ordered by channel, then crossing. ``hits['sample_offset']`` index ``samples``.
    """
    from ..dsp import PULSE_DTYPE, PulseParams, PulseStream
    from ..trigger._chain import stream_config

    scfg = stream_config(cfg)
    out = []
    order = np.lexsort((hits["first_tick"], hits["channel"]))
    hits = hits[order]
    bounds: list[int] = (
        np.flatnonzero(np.r_[True, hits["channel"][1:] != hits["channel"][:-1]]).tolist() if len(hits) else []
    )
    ends = bounds[1:] + [len(hits)]
    for a, b in zip(bounds, ends):
        h = hits[a:b]
        ch = int(h["channel"][0])
        n = h["n_samples"].astype(np.int64)
        local0 = np.zeros(len(h), np.int64)
        np.cumsum(n[:-1], out=local0[1:])
        idx = np.repeat(h["sample_offset"].astype(np.int64) - local0, n) + np.arange(int(n.sum()))
        row = samples[idx][None, :].astype(np.uint16)
        finder = PulseStream(PulseParams.from_config(scfg, np.array([ch])), channel_ids=np.array([ch]))
        p = np.concatenate([finder.process(row), finder.finish()])
        if not len(p):
            continue
        j = np.searchsorted(local0, p["crossing"], side="right") - 1
        shift = h["first_tick"].astype(np.int64)[j] - local0[j]
        p["coarse_time"] += shift
        p["crossing"] += shift
        p["time"] += shift * 64
        out.append(p)
    return np.concatenate(out) if out else np.zeros(0, PULSE_DTYPE)


def group_primitives(
    cfg: Config, pulses: np.ndarray, board_messages: np.ndarray, steps: np.ndarray, slice_ticks: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The primitives of each decision step, in the trigger processor's order.

    Returns
    -------
    primitives : np.ndarray
        TRIGGER_PRIMITIVE_DTYPE, step after step.
    counts : np.ndarray
        int64 (steps,): primitives per step.
    unassigned : int
        Pulses reported in a slice no recorded board message or decision step covers (after the
        last decision, or of a board that was dead).
    """
    from ..dsp import PulseParams
    from ..io import TRIGGER_PRIMITIVE_DTYPE
    from ..trigger._chain import stream_config

    table = cfg.channel_map.table
    nsa = PulseParams.from_config(stream_config(cfg)).nsa.astype(np.int64)
    ch = pulses["channel"].astype(np.int64)
    board = table["board"][ch].astype(np.int64)
    rank = np.zeros(len(table), np.int64)  # a channel's row on its board (the board's channel order)
    for b in range(cfg.channel_map.n_boards):
        on = cfg.channel_map.channels_on_board(b)
        rank[on] = np.arange(len(on))
    row_in_board = rank[ch]
    report = (pulses["crossing"].astype(np.int64) + nsa[ch] - 1) // int(slice_ticks)
    msg_first = np.full(len(pulses), -1, np.int64)
    for b in np.unique(board).tolist():
        m = board_messages[board_messages["board"] == b]
        m = m[np.argsort(m["first_slice"])]
        sel = np.flatnonzero(board == b)
        k = np.searchsorted(m["first_slice"].astype(np.int64), report[sel], side="right") - 1
        ok = (k >= 0) & (report[sel] <= m["last_slice"].astype(np.int64)[np.maximum(k, 0)])
        msg_first[sel[ok]] = m["first_slice"].astype(np.int64)[k[ok]]
    first = steps["first_slice"].astype(np.int64)
    s = np.searchsorted(first, msg_first, side="left")
    ok = (msg_first >= 0) & (s < len(first))
    ok[ok] = first[s[ok]] == msg_first[ok]
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((pulses["crossing"][idx], row_in_board[idx], report[idx], board[idx], s[idx]))]
    prims = np.zeros(len(order), TRIGGER_PRIMITIVE_DTYPE)
    for name in ("time", "integral_net", "channel", "peak", "quality"):
        prims[name] = pulses[name][order]
    prims["board"] = board[order]
    counts = np.bincount(s[order], minlength=len(steps)).astype(np.int64)
    return prims, counts, int(len(pulses) - len(idx))


@dataclass
class StreamReplay:
    """What :func:`replay_stream` found."""

    path: str
    hits: int
    hit_samples: int
    beam_time_s: float
    pulses: int
    steps: int
    primitives: int
    unassigned_pulses: int
    stored_primitives: int
    primitive_step_mismatches: int
    stored_decisions: int
    decisions: int
    decision_mismatches: int
    state_mismatches: int
    counters: dict[str, Any]
    own_config: bool
    checksum_failures: int
    first_mismatch: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return (
            self.own_config
            and not self.problems
            and self.primitive_step_mismatches == 0
            and self.decision_mismatches == 0
            and self.state_mismatches == 0
            and self.checksum_failures == 0
        )

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["reproduced"] = self.reproduced
        return d


def replay_stream(path: str, config: Config | None = None) -> StreamReplay:
    """Pulses, primitives and decisions of a streaming recording, with its own or another configuration.

    Parameters
    ----------
    path
        The recording (``pokerdaq run --streaming``).
    config
        The configuration to replay with (checked with :func:`check_stream_config` by the caller);
        None: the recording's own.
    """
    from ..io import StreamFile
    from ..trigger import TriggerRegisters
    from ._decisions import stream_decisions

    rec = StreamFile(path)
    own = config is None or config.text == rec.config.text
    cfg = rec.config if config is None else config
    problems = []
    bad_blocks = rec.check()
    if bad_blocks:
        problems.append(f"{bad_blocks} blocks fail their CRC-32")
    pulses = stream_pulses(cfg, rec.hits, rec.samples)
    steps, stored = rec.trigger_steps, rec.trigger_primitives
    # a recovered file may hold fewer primitives than its steps need: keep the steps that are whole
    need = np.cumsum(steps["n_primitives"].astype(np.int64))
    steps = steps[: int(np.searchsorted(need, len(stored), side="right"))]
    stored = stored[: int(need[len(steps) - 1]) if len(steps) else 0]
    # the hits cover the slices up to the last block: later steps cannot be replayed
    covered = int(rec.blocks["last_slice"].max()) if len(rec.blocks) else -1
    whole = int(np.searchsorted(steps["last_slice"].astype(np.int64), covered, side="right"))
    decisions = rec.decisions
    if whole < len(steps):
        # the online decisions of the replayed steps: those accepted before the first step left out
        decisions = decisions[decisions["event_number"] < steps["events_before"][whole]]
        problems.append(f"{len(steps) - whole} decision steps after the last recorded slice {covered}")
        steps = steps[:whole]
        stored = stored[: int(need[whole - 1]) if whole else 0]
    prims, counts, unassigned = group_primitives(cfg, pulses, rec.board_messages, steps, rec.slice_ticks)
    ticks = rec.slice_ticks
    seed = rec.trigger_seed if rec.trigger_seed is not None else rec.config.run.seed
    regs = TriggerRegisters.from_config(cfg, seed)
    replayed = steps.copy()
    replayed["n_primitives"] = counts
    dec = stream_decisions(regs, replayed, prims, ticks, check_state=own)
    # compare with the online trigger: primitives step by step, then the decisions
    step_mismatches, first = 0, None
    if own:
        a = np.concatenate([[0], np.cumsum(steps["n_primitives"].astype(np.int64))])
        b = np.concatenate([[0], np.cumsum(counts)])
        for i in range(len(steps)):
            x, y = stored[a[i] : a[i + 1]], prims[b[i] : b[i + 1]]
            if len(x) != len(y) or x.tobytes() != y.tobytes():
                step_mismatches += 1
                if first is None:
                    first = {
                        "step": i,
                        "first_slice": int(steps["first_slice"][i]),
                        "stored": len(x),
                        "replayed": len(y),
                    }
    n = min(len(decisions), len(dec.words))
    wrong = 0
    if own:
        wrong = int(
            np.sum((decisions["timestamp"][:n] != dec.ref_tick[:n]) | (decisions["trigger_word"][:n] != dec.words[:n]))
        )
        # stored decisions the replay does not make (the replay may make more: the online trigger
        # stops issuing at --events, and the last steps' triggers can be cut by the end of run)
        wrong += len(decisions) - n
    return StreamReplay(
        path=str(path),
        hits=len(rec.hits),
        hit_samples=len(rec.samples),
        beam_time_s=(covered + 1) * ticks / float(rec.config.digitizer.sampling_rate_hz),
        pulses=len(pulses),
        steps=len(steps),
        primitives=len(prims),
        unassigned_pulses=unassigned,
        stored_primitives=len(stored),
        primitive_step_mismatches=step_mismatches,
        stored_decisions=len(decisions),
        decisions=len(dec.words),
        decision_mismatches=wrong,
        state_mismatches=dec.state_mismatches,
        counters=dec.counters.as_dict(),
        own_config=own,
        checksum_failures=bad_blocks,
        first_mismatch=first or dec.first_state_mismatch,
        problems=problems,
    )


def run_stream_command(args: Any, console: Any) -> int:
    """``pokerdaq replay STREAM.h5 [--config F] [--set ...] [--check] [--output R.json]``."""
    import json
    from pathlib import Path

    from rich.table import Table

    from .._usage import check_new_output
    from ..config import ConfigError, overlay_from_args
    from ..io import StreamFile

    if len(args.files) != 1:
        raise UsageError(
            f"FILE: {len(args.files)} files given with the streaming recording {args.files[0]}; "
            "expected one streaming recording"
        )
    path = args.files[0]
    if args.output:
        check_new_output(args.output, args.overwrite)
    try:
        rec = StreamFile(path)
    except (OSError, KeyError, ValueError) as err:
        raise UsageError(f"FILE {path}: damaged streaming recording ({str(err).splitlines()[0]})") from None
    overlay = overlay_from_args(args)
    cfg = None
    if overlay:
        source = " ".join(([f"--config {args.config}"] if args.config else []) + [f"--set {s}" for s in args.set])
        try:
            cfg = rec.config.overlaid(overlay)
        except ConfigError as err:
            raise UsageError(f"{source}: {err}") from None
        check_stream_config(cfg, rec, source)
        if cfg.text == rec.config.text:
            cfg = None
    r = replay_stream(path, cfg)
    t = Table(
        title=f"Streaming recording {Path(path).name}: {r.hits} L0 hits ({r.hit_samples} samples) over "
        f"{r.beam_time_s * 1e3:.2f} ms of beam time; {r.pulses} pulses, {r.steps} decision steps"
    )
    for col in ("trigger type", "raw", "prescaled", "accepted", "lost dead time", "lost busy"):
        t.add_column(col, justify="right" if col != "trigger type" else "left")
    for name in TriggerBits.NAMES:
        t.add_row(name, *(str(r.counters[k][name]) for k in ("raw", "prescaled", "accepted", "lost_dead", "lost_busy")))
    console.print(t)
    if r.own_config:
        console.print(
            f"own configuration: primitives {r.primitives} replayed / {r.stored_primitives} online, "
            f"{r.steps - r.primitive_step_mismatches} of {r.steps} steps identical; decisions "
            f"{r.decisions} replayed / {r.stored_decisions} online, {r.decision_mismatches} differ; "
            f"{r.state_mismatches} dead-time/prescaler state mismatches"
        )
    else:
        console.print(f"new configuration: {r.decisions} accepted triggers ({r.stored_decisions} online)")
    for p in r.problems:
        console.print(f"[yellow]{p}[/yellow]")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(r.as_dict(), indent=1, default=int))
        console.print(f"wrote {args.output}")
    if args.check and not r.reproduced:
        console.print(
            "[yellow]the recording's own configuration does not reproduce the online primitives and decisions[/yellow]"
            if r.own_config
            else "[yellow]--check compares with the recording's own configuration[/yellow]"
        )
        return 3
    return 0
