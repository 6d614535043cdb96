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
from pokerdaq.trigger import TriggerBits, TriggerModel, TriggerRegisters
from pokerdaq.trigger._registers import (
    N_PARAMS, P_BEAM_W, P_CALO_HI, P_CALO_LO, P_HCAL_HI, P_HCAL_LO, P_LAT, P_N_BOARDS,
    P_SPAN_HI, P_SPAN_LO, P_SRD_HI, P_SRD_LO, P_VETO_HI, P_VETO_LO,
)

RECORD_FIELDS = ("event_number", "timestamp", "ref_time", "trigger_word", "conditions",
                 "beam_mask", "srd_mask", "veto_mask", "e_preshower", "e_ecal", "e_calo",
                 "e_hcal", "e_srd", "e_veto")
COUNTER_ROWS = ("raw", "prescaled", "accepted", "lost_dead", "lost_busy")
ADDR_SEED, ADDR_LUT_K, ADDR_LUT_SHIFT, ADDR_GAIN, ADDR_INFO, ADDR_LUT = 0x23, 0x24, 0x28, 0x100, 0x200, 0x1000


def register_writes(regs: TriggerRegisters) -> np.ndarray:
    """(address, data) pairs that load ``regs`` into trigger_top's register bank."""
    n_ch = regs.n_channels
    if n_ch > 256:
        raise ValueError(f"n_channels = {n_ch}: trigger_top has 256 channel-table entries")
    if regs[P_N_BOARDS] > 16 or (regs.ch_board >= 16).any():
        raise ValueError(f"N_BOARDS = {regs[P_N_BOARDS]}: trigger_top sums at most 16 boards")
    luts = np.asarray(regs.luts)
    if len(luts) > 4 or (luts.size and luts.shape[1] > 1025):
        raise ValueError(f"luts shape {luts.shape}: trigger_top holds 4 LUTs of up to 1025 entries")
    w = [(i, int(regs.params[i]) & 0xFFFFFFFF) for i in range(N_PARAMS)]
    w.append((ADDR_SEED, int(regs.random_seed)))
    w.append((ADDR_LUT_K, luts.shape[1] - 1 if luts.size else 0))
    w += [(ADDR_LUT_SHIFT + j, int(s)) for j, s in enumerate(regs.lut_shift)]
    for ch in range(n_ch):
        w.append((ADDR_GAIN + ch, int(regs.ch_gain[ch])))
        # BIT (u4) is defined for beam-counter, SRD and VETO channels only; software numbers
        # the other subsystems' channels too, so only the low 4 bits are loaded
        w.append((ADDR_INFO + ch, (int(regs.ch_lut[ch]) & 0xFF) | int(regs.ch_role[ch]) << 8
                  | (int(regs.ch_bit[ch]) & 0xF) << 12 | int(regs.ch_board[ch]) << 16))
    for j, lut in enumerate(luts):
        w += [(ADDR_LUT + (j << 11) + i, int(v)) for i, v in enumerate(lut)]
    return np.array(w, dtype=np.int64)


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
class Segment:
    regs: TriggerRegisters
    records: np.ndarray                       # PULSE_DTYPE, sorted by (time, channel)
    ends: list = field(default_factory=list)  # end tick of each slice
    busy: list = field(default_factory=list)  # busy level of each slice
    cuts: list = field(default_factory=list)  # records[cuts[k-1]:cuts[k]] go in slice k
    expected: np.ndarray | None = None        # TRIGGER_DTYPE of the model
    counters: dict | None = None


def make_segment(regs: TriggerRegisters, records: np.ndarray, rng: np.random.Generator, *,
                 max_slice_ticks: int = 400, busy_fraction: float = 0.0) -> Segment:
    """Sort the records, cut the stream at random ticks, run the model on the same slices."""
    records = records[np.lexsort((records["channel"], records["time"]))]
    last = int(records["time"][-1]) // 64 + 1 if len(records) else 1
    ends = []
    t = 0
    while t < last:
        t += int(rng.integers(1, max_slice_ticks + 1))
        ends.append(t)
    busy = [bool(rng.random() < busy_fraction) for _ in ends]
    seg = Segment(regs=regs, records=records, ends=ends, busy=busy)
    seg.cuts = [int(np.searchsorted(records["time"], e * 64)) for e in ends]
    model = TriggerModel(regs)
    out, lo = [], 0
    for end, b, hi in zip(ends, busy, seg.cuts):
        out.append(model.process(records[lo:hi], end, busy=b))
        lo = hi
    drain = model.tick
    out.append(model.finish())
    seg.ends.append(model.tick)       # the drain slice: no records, not busy
    seg.busy.append(False)
    seg.cuts.append(len(records))
    assert drain < model.tick
    seg.expected = np.concatenate(out)
    c = model.counters
    assert c.late_records == 0
    seg.counters = {row: getattr(c, row).copy() for row in COUNTER_ROWS}
    seg.counters.update(attempts=c.attempts, lost_dead_triggers=c.lost_dead_triggers,
                        lost_busy_triggers=c.lost_busy_triggers)
    return seg


def save_campaign(segments: list[Segment], path: Path) -> None:
    arrays = {"n_segments": len(segments)}
    for k, s in enumerate(segments):
        arrays[f"writes{k}"] = register_writes(s.regs)
        arrays[f"channel{k}"] = s.records["channel"].astype(np.int64)
        arrays[f"time{k}"] = s.records["time"].astype(np.int64)
        arrays[f"net{k}"] = s.records["integral_net"].astype(np.int64)
        arrays[f"ends{k}"] = np.asarray(s.ends, np.int64)
        arrays[f"busy{k}"] = np.asarray(s.busy, np.int64)
        arrays[f"cuts{k}"] = np.asarray(s.cuts, np.int64)
    np.savez(path, **arrays)


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
    decisions: int = 0          # trigger records compared
    mismatches: list = field(default_factory=list)
    counter_mismatches: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.counter_mismatches and not any(self.errors.values())

    def summary(self, limit: int = 20) -> str:
        lines = [f"{self.decisions} trigger records compared, {len(self.mismatches)} field "
                 f"mismatches, {len(self.counter_mismatches)} counter mismatches, errors {self.errors}"]
        lines += [str(m) for m in self.mismatches[:limit]]
        lines += [str(m) for m in self.counter_mismatches[:limit]]
        return "\n".join(lines)


def compare(segments: list[Segment], result) -> TriggerReport:
    """Every RTL trigger record and scaler against the model, field by field."""
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
                rep.mismatches.append({"segment": k, "decision": i, "field": "presence",
                                       "rtl": i < len(rtl), "model": i < len(exp),
                                       "model_row": exp[i].tolist() if i < len(exp) else None})
                continue
            for name in RECORD_FIELDS:
                a, b = int(rtl[i, cols.index(name)]), int(exp[name][i])
                if a != b:
                    rep.mismatches.append({"segment": k, "decision": i, "field": name, "rtl": a,
                                           "model": b, "ref_time": int(exp["ref_time"][i]),
                                           "timestamp": int(exp["timestamp"][i])})
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
        for j, name in enumerate(("err_overflow", "err_order", "err_late")):
            rep.errors[name] = rep.errors.get(name, 0) + int(result[f"errors{k}"][j])
    return rep


__all__ = ["Segment", "TriggerReport", "compare", "make_segment", "records_from", "register_writes",
           "save_campaign", "with_params"]
