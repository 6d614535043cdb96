"""Trigger test campaigns: register loads, primitive slices and the expected model output.

A campaign is a list of *segments*; each segment resets the RTL, loads one register set
(``TriggerRegisters`` -> register-bank writes, the map of firmware_models/README.md) and
streams its primitives in time order, cut into slices ``[records, end_tick, busy]`` exactly
as ``TriggerModel.process(records, end_sample, busy)`` is called for the expected output.
The last slice of a segment drains it as ``TriggerModel.finish`` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pokerdaq.dsp import PULSE_DTYPE
from pokerdaq.hil._trigger_stimulus import TriggerSegment, register_writes, save_trigger_stimulus
from pokerdaq.trigger import TriggerBits, TriggerModel, TriggerRegisters
from pokerdaq.trigger._registers import (
    P_BEAM_W,
    P_CALO_HI,
    P_CALO_LO,
    P_DEAD,
    P_HCAL_HI,
    P_HCAL_LO,
    P_LAT,
    P_SPAN_HI,
    P_SPAN_LO,
    P_SRD_HI,
    P_SRD_LO,
    P_VETO_HI,
    P_VETO_LO,
)

RECORD_FIELDS = (
    "event_number",
    "timestamp",
    "ref_time",
    "trigger_word",
    "conditions",
    "beam_mask",
    "srd_mask",
    "veto_mask",
    "e_preshower",
    "e_ecal",
    "e_calo",
    "e_hcal",
    "e_srd",
    "e_veto",
)
COUNTER_ROWS = ("raw", "prescaled", "accepted", "lost_dead", "lost_busy")
LIVETIME_FIELDS = ("ticks", "dead_ticks", "busy_ticks", "live_ticks")  # spec 2.12, bench LIVETIME_PORTS


def with_params(regs: TriggerRegisters, **values) -> TriggerRegisters:
    """A copy of ``regs`` with registers changed (``lat=12`` sets P_LAT) and SPAN re-derived."""
    from pokerdaq.trigger import _registers as r

    p = regs.params.copy()
    for name, v in values.items():
        p[getattr(r, "P_" + name.upper())] = v
    p[P_SPAN_LO] = min(0, p[P_SRD_LO], p[P_VETO_LO], p[P_CALO_LO], p[P_HCAL_LO])
    p[P_SPAN_HI] = max(p[P_BEAM_W], p[P_SRD_HI], p[P_VETO_HI], p[P_CALO_HI], p[P_HCAL_HI])
    if p[P_LAT] < (p[P_SPAN_HI] + 63) // 64 + 1:
        raise ValueError(f"LATENCY = {p[P_LAT]} below the bound for SPAN_HI = {p[P_SPAN_HI]}")
    return dataclasses.replace(regs, params=p)


@dataclass
class Segment(TriggerSegment):
    """A bench segment (records sorted by (time, channel)) with the model's expected output."""

    expected: np.ndarray | None = None  # TRIGGER_DTYPE of the model
    counters: dict | None = None
    # the model's live-time counters (LIVETIME_FIELDS) after each of its process/finish calls,
    # and the bench slice (advance) that ends at the same tick as each of those calls
    livetime: np.ndarray | None = None
    livetime_slices: np.ndarray | None = None
    straddles: int = 0  # advance ends inside an accepted trigger's dead time
    late_records: int = 0  # the model's late_records (RTL: err_late)


def _busy_intervals(rng: np.random.Generator, end: int, fraction: float, max_len: int) -> np.ndarray:
    """Disjoint [start, stop) busy intervals below ``end``, about ``fraction`` of the ticks."""
    mean_len = (max_len + 1) / 2
    mean_gap = mean_len * (1 - fraction) / fraction
    out, t = [], 0
    while True:
        start = t + int(rng.integers(1, int(2 * mean_gap) + 2))
        if start >= end:
            break
        stop = min(start + int(rng.integers(1, max_len + 1)), end)
        out.append((start, stop))
        t = stop
    return np.array(out, np.int64).reshape(-1, 2)


def make_segment(
    regs: TriggerRegisters,
    records: np.ndarray,
    rng: np.random.Generator,
    *,
    max_slice_ticks: int | tuple = 400,
    busy_fraction: float = 0.0,
    busy_intervals: bool = False,
    max_busy_ticks: int = 300,
    late_fraction: float = 0.0,
) -> Segment:
    """Sort the records, cut the stream at random ticks, run the model on the same slices.

    Each slice is 1..m ticks long, m drawn per slice from ``max_slice_ticks`` (an int or a
    tuple of maxima, e.g. short slices mixed with long idle stretches). Busy: with
    ``busy_intervals`` False, one level per slice, busy with probability ``busy_fraction``
    (the model gets the same bool); with ``busy_intervals`` True, disjoint ``[start, stop)``
    tick intervals of 1..``max_busy_ticks`` covering about ``busy_fraction`` of the stream,
    passed to the model as intervals of its slices, while the bench cuts its advances at
    every interval edge (trigger_top takes one busy level per advance). The model's
    live-time counters are taken after every call, for the comparison at the same ticks.
    With probability ``late_fraction`` a slice holds back its last 1-3 primitives, which go
    with the next slice: late records (spec 2.13), dropped and counted by the model
    (``late_records``) and by the RTL (``err_late``) alike.
    """
    records = records[np.lexsort((records["channel"], records["time"]))]
    last = int(records["time"][-1]) // 64 + 1 if len(records) else 1
    maxima = np.atleast_1d(max_slice_ticks)
    model_ends = []
    t = 0
    while t < last:
        t += int(rng.integers(1, int(rng.choice(maxima)) + 1))
        model_ends.append(t)
    if busy_intervals:
        iv = (
            _busy_intervals(rng, model_ends[-1], busy_fraction, max_busy_ticks)
            if busy_fraction > 0
            else np.zeros((0, 2), np.int64)
        )
        edges = iv.ravel()
        ends = [int(e) for e in np.union1d(model_ends, edges[(edges > 0) & (edges < model_ends[-1])])]
        starts = np.array([0] + ends[:-1])
        k = np.searchsorted(iv[:, 0], starts, side="right") - 1
        busy = [bool(j >= 0 and s < iv[j, 1]) for j, s in zip(k, starts)]
        model_busy = [iv[(iv[:, 1] > a) & (iv[:, 0] < b)] for a, b in zip([0] + model_ends[:-1], model_ends)]
    else:
        ends = list(model_ends)
        busy = [bool(rng.random() < busy_fraction) for _ in ends]
        model_busy = busy
    times = records["time"]
    model_cuts, prev = [], 0
    for end in model_ends:
        cut = int(np.searchsorted(times, end * 64))
        if late_fraction and rng.random() < late_fraction:  # no draw otherwise: same slices as without
            cut = max(prev, cut - int(rng.integers(1, 4)))
        model_cuts.append(cut)
        prev = cut
    model_cuts[-1] = len(records)
    # the bench's advances refine the model's slices: a slice's records go, in time order,
    # with the first advance that needs them, and never beyond the slice's own cut
    model_of = np.searchsorted(model_ends, ends)  # model slice of each advance
    model_lo = np.array([0] + model_cuts[:-1])
    cuts = np.searchsorted(times, np.asarray(ends) * 64)
    cuts = np.minimum(np.maximum(cuts, model_lo[model_of]), np.asarray(model_cuts)[model_of])
    seg = Segment(regs=regs, records=records, ends=ends, busy=busy)
    seg.cuts = [int(c) for c in cuts]
    model = TriggerModel(regs)
    out, lo, livetime = [], 0, []

    def snapshot() -> None:
        c = model.counters
        livetime.append([getattr(c, name) for name in LIVETIME_FIELDS])

    for end, b, hi in zip(model_ends, model_busy, model_cuts):
        out.append(model.process(records[lo:hi], end, busy=b))
        snapshot()
        lo = hi
    drain = model.tick
    out.append(model.finish())
    snapshot()
    seg.ends.append(model.tick)  # the drain slice: no records, not busy
    seg.busy.append(False)
    seg.cuts.append(len(records))
    assert drain < model.tick
    seg.expected = np.concatenate(out)
    c = model.counters
    seg.late_records = c.late_records
    seg.counters = {row: getattr(c, row).copy() for row in COUNTER_ROWS}
    seg.counters.update(
        attempts=c.attempts, lost_dead_triggers=c.lost_dead_triggers, lost_busy_triggers=c.lost_busy_triggers
    )
    seg.livetime = np.array(livetime, np.int64)
    seg.livetime_slices = np.searchsorted(seg.ends, model_ends + [model.tick])
    assert (np.asarray(seg.ends)[seg.livetime_slices] == model_ends + [model.tick]).all()
    # dead intervals are disjoint (non-paralysable): only the last accepted ISSUE below an
    # advance end can reach past it
    issue = seg.expected["timestamp"].astype(np.int64)
    adv = np.asarray(seg.ends, np.int64)
    last = np.searchsorted(issue, adv, side="left") - 1
    seg.straddles = (
        int(((last >= 0) & (adv < issue[np.maximum(last, 0)] + int(regs.params[P_DEAD]))).sum()) if len(issue) else 0
    )
    return seg


def save_campaign(segments: list[Segment], path: Path) -> None:
    save_trigger_stimulus(segments, path)


def records_from(channel, time, net) -> np.ndarray:
    rec = np.zeros(len(channel), dtype=PULSE_DTYPE)
    rec["channel"] = channel
    rec["time"] = time
    rec["coarse_time"] = np.asarray(time) >> 6
    rec["fine_time"] = np.asarray(time) & 63
    rec["integral_net"] = net
    return rec


@dataclass
class TriggerReport:
    decisions: int = 0  # trigger records compared
    mismatches: list = field(default_factory=list)
    counter_mismatches: list = field(default_factory=list)
    livetime_snapshots: int = 0  # advances at which the four live-time counters were compared
    livetime_mismatches: list = field(default_factory=list)
    late_records: int = 0  # late primitives counted by the RTL (err_late), equal to the model's
    errors: dict = field(default_factory=dict)
    latency: LatencyReport | None = None  # decision_latency (run_segments sets it)

    @property
    def ok(self) -> bool:
        return (
            not self.mismatches
            and not self.counter_mismatches
            and not self.livetime_mismatches
            and not any(self.errors.values())
        )

    def summary(self, limit: int = 20) -> str:
        lines = [
            f"{self.decisions} trigger records compared, {len(self.mismatches)} field "
            f"mismatches, {len(self.counter_mismatches)} counter mismatches, "
            f"{self.livetime_snapshots} live-time snapshots compared, {len(self.livetime_mismatches)} "
            f"live-time mismatches, {self.late_records} late records, errors {self.errors}"
        ]
        lines += [str(m) for m in self.mismatches[:limit]]
        lines += [str(m) for m in self.counter_mismatches[:limit]]
        lines += [str(m) for m in self.livetime_mismatches[:limit]]
        return "\n".join(lines)


def compare(segments: list[Segment], result) -> TriggerReport:
    """Every RTL trigger record and scaler against the model, field by field.

    Trigger records and the per-type / per-candidate scalers at the end of each segment; the
    live-time counters (``ticks``, ``dead_ticks``, ``busy_ticks``, ``live_ticks``) after every
    advance that ends where a model call ended (every advance, unless busy intervals cut the
    bench's advances finer than the model's slices).
    """
    rep = TriggerReport()
    cols = [str(c) for c in result["columns"]]
    rows = result["rows"]
    for k, seg in enumerate(segments):
        rtl = rows[rows[:, cols.index("segment")] == k]
        exp = seg.expected
        n = max(len(rtl), len(exp))
        rep.decisions += min(len(rtl), len(exp))
        for i in range(n):
            if i >= len(rtl) or i >= len(exp):
                rep.mismatches.append(
                    {
                        "segment": k,
                        "decision": i,
                        "field": "presence",
                        "rtl": i < len(rtl),
                        "model": i < len(exp),
                        "model_row": exp[i].tolist() if i < len(exp) else None,
                    }
                )
                continue
            for name in RECORD_FIELDS:
                a, b = int(rtl[i, cols.index(name)]), int(exp[name][i])
                if a != b:
                    rep.mismatches.append(
                        {
                            "segment": k,
                            "decision": i,
                            "field": name,
                            "rtl": a,
                            "model": b,
                            "ref_time": int(exp["ref_time"][i]),
                            "timestamp": int(exp["timestamp"][i]),
                        }
                    )
        cnt = result[f"counters{k}"]
        for r, row in enumerate(COUNTER_ROWS):
            for t, tname in enumerate(TriggerBits.NAMES):
                a, b = int(cnt[r, t]), int(seg.counters[row][t])
                if a != b:
                    rep.counter_mismatches.append({"segment": k, "counter": f"{row}.{tname}", "rtl": a, "model": b})
        for j, name in enumerate(("attempts", "lost_dead_triggers", "lost_busy_triggers")):
            a, b = int(result[f"scalers{k}"][j]), int(seg.counters[name])
            if a != b:
                rep.counter_mismatches.append({"segment": k, "counter": name, "rtl": a, "model": b})
        rtl_lt = result[f"livetime{k}"]
        if len(rtl_lt) != len(seg.ends):
            rep.livetime_mismatches.append(
                {"segment": k, "counter": "advances", "rtl": len(rtl_lt), "model": len(seg.ends)}
            )
        else:
            for j, adv in enumerate(seg.livetime_slices):
                rep.livetime_snapshots += 1
                for f, name in enumerate(LIVETIME_FIELDS):
                    a, b = int(rtl_lt[adv, f]), int(seg.livetime[j, f])
                    if a != b:
                        rep.livetime_mismatches.append(
                            {
                                "segment": k,
                                "advance": int(adv),
                                "tick": int(seg.ends[adv]),
                                "counter": name,
                                "rtl": a,
                                "model": b,
                            }
                        )
        # err_late is the model's late_records; overflow and out-of-order drops must not occur
        late = int(result[f"errors{k}"][2])
        rep.late_records += late
        if late != seg.late_records:
            rep.counter_mismatches.append(
                {"segment": k, "counter": "late_records (err_late)", "rtl": late, "model": seg.late_records}
            )
        for j, name in enumerate(("err_overflow", "err_order")):
            rep.errors[name] = rep.errors.get(name, 0) + int(result[f"errors{k}"][j])
    return rep


@dataclass
class LatencyReport:
    """Decision latency of trigger_top, in processing clocks (docs/firmware-spec.md 2.10)."""

    records: int = 0
    advances: int = 0
    max_latency: int = 0  # clocks from an advance's acceptance to a record it emits
    max_advance: int = 0  # clocks an advance takes (acceptance to idle)
    max_bound_use: float = 0.0  # largest measured / bound over the advances
    clocks: int = 0  # all advances' processing clocks
    ticks: int = 0  # stream ticks they covered
    primitives: int = 0
    violations: list = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.records} records, {self.advances} advances: largest decision latency {self.max_latency} "
            f"clocks, largest advance {self.max_advance} clocks (at most {self.max_bound_use:.1%} of its "
            f"bound); {self.clocks} clocks for {self.ticks} ticks and {self.primitives} primitives "
            f"({self.clocks / max(self.ticks, 1):.3f} clocks/tick, "
            f"{self.clocks / max(self.primitives, 1):.2f} clocks/primitive); "
            f"{len(self.violations)} over the bound {self.violations[:3]}"
        )


def advance_bound(fill: int, candidates: int, ticks: int, w_beam_entries: int, n_boards: int, random_on: bool) -> int:
    """Clocks trigger_top may take for one advance (docs/firmware-spec.md 2.10, README "Latency").

    ``fill`` entries in the buffer, ``candidates`` decided, ``ticks`` of stream advanced,
    ``w_beam_entries`` the most entries in one beam window: 1 to accept; SEEK steps over
    every entry (E) and starts at most E coincidence scans of at most ``w + 1`` clocks each
    plus one transition per beam candidate; the random generator (on) takes at most one clock
    per tick stepped (Poisson steps, periodic jumps of >= 1 tick, fires before LATENCY
    included) plus at most 2 clocks per visit (2 C + 1 visits); each candidate scans at most
    E entries, N_BOARDS boards and 4 clocks more; the discard at most E + 1.
    """
    e, c = fill, candidates
    return 5 + e * (w_beam_entries + 4) + c * (e + n_boards + 9) + (ticks if random_on else 0)


def decision_latency(segments: list[Segment], result, rep: LatencyReport | None = None) -> LatencyReport:
    """Measured decision latency of every record and advance against :func:`advance_bound`."""
    from pokerdaq.trigger._registers import P_BEAM_W, P_N_BOARDS, P_RND_MODE, RND_OFF

    rep = rep or LatencyReport()
    cols = [str(c) for c in result["columns"]]
    rows = result["rows"]
    for k, seg in enumerate(segments):
        adv = result[f"advances{k}"]  # accepted, done, fill, candidates
        times = np.sort(seg.records["time"].astype(np.int64))
        w_beam = int(seg.regs.params[P_BEAM_W])
        w = int((np.searchsorted(times, times + w_beam) - np.arange(len(times))).max()) if len(times) else 0
        n_boards = int(seg.regs.params[P_N_BOARDS])
        random_on = int(seg.regs.params[P_RND_MODE]) != RND_OFF
        ends = np.asarray(seg.ends, np.int64)
        steps = np.diff(np.concatenate([[0], ends]))
        bounds = np.array(
            [advance_bound(int(f), int(c), int(t), w, n_boards, random_on) for (_, _, f, c), t in zip(adv, steps)],
            np.int64,
        )
        took = adv[:, 1] - adv[:, 0]
        rec_clock = rows[rows[:, cols.index("segment")] == k][:, cols.index("clock")]
        a = np.searchsorted(adv[:, 0], rec_clock, side="right") - 1  # the advance that emitted it
        lat = rec_clock - adv[a, 0]
        if (lat > took[a]).any():
            rep.violations.append({"segment": k, "problem": "a record after its advance ended"})
        for j in np.flatnonzero(took > bounds):
            rep.violations.append({"segment": k, "advance": int(j), "clocks": int(took[j]), "bound": int(bounds[j])})
        rep.records += len(lat)
        rep.advances += len(adv)
        rep.max_latency = max(rep.max_latency, int(lat.max()) if len(lat) else 0)
        rep.max_advance = max(rep.max_advance, int(took.max()) if len(took) else 0)
        rep.max_bound_use = max(rep.max_bound_use, float((took / bounds).max()) if len(took) else 0.0)
        rep.clocks += int(took.sum())
        rep.ticks += int(ends[-1]) if len(ends) else 0
        rep.primitives += len(times)
    return rep


__all__ = [
    "LatencyReport",
    "Segment",
    "TriggerReport",
    "advance_bound",
    "compare",
    "decision_latency",
    "make_segment",
    "records_from",
    "register_writes",
    "save_campaign",
    "with_params",
]
