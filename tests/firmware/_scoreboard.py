"""Scoreboard of the firmware tests: every RTL pulse record against the Python reference.

The reference is ``pokerdaq.dsp._reference.find_pulses_reference`` (the naive reading of
docs/firmware-spec.md Part 1); the comparison itself is the one pulse-record scoreboard of the
package, ``pokerdaq.hil._harness.compare`` (also that of ``pokerdaq hil``): records matched per
(window, channel) in pulse order, every field, a mismatch naming window, channel, pulse,
fields, both records and the samples around the crossing. On the same windows the numba model
(``pokerdaq.dsp.find_pulses`` for windows, ``PulseStream`` fed in uneven chunks for streams)
must give the same records as the reference too, so a disagreement between any two of RTL,
reference and numba model is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from _stimuli import REG_NAMES, Campaign

from pokerdaq.dsp import PULSE_DTYPE, PulseParams, PulseStream, find_pulses
from pokerdaq.dsp._reference import find_pulses_reference
from pokerdaq.hil._harness import HilReport
from pokerdaq.hil._harness import compare as compare_records

RTL_PULSE_INDEX_BITS = 4  # spec 1.10: firmware pulse_index is u4, the low bits of PULSE_INDEX
MAX_WINDOW = 1024  # window mode (find_pulses); longer campaign windows are streams
# RTL record fields with absolute sample indices (in_index0 + window-relative index) and their scale
ABSOLUTE_FIELDS = {"crossing": 1, "coarse_time": 1, "time": 64}


@dataclass
class Report:
    channel_windows: int = 0
    pulses_reference: int = 0
    pulses_rtl: int = 0
    mismatched_windows: int = 0  # (window, channel) pairs where RTL and reference differ
    model_mismatches: int = 0  # numba model against the reference
    field_mismatches: dict = field(default_factory=dict)
    mismatches: list = field(default_factory=list)
    quality_counts: np.ndarray = field(default_factory=lambda: np.zeros(10, dtype=np.int64))

    def summary(self, limit: int = 20) -> str:
        lines = [
            f"{self.channel_windows} channel-windows, {self.pulses_reference} reference "
            f"pulses, {self.pulses_rtl} RTL pulses, {self.mismatched_windows} windows differ "
            f"(RTL vs reference; per field {self.field_mismatches}), {self.model_mismatches} (numba vs "
            f"reference); pulses per "
            f"quality bit 0..9: {self.quality_counts.tolist()}"
        ]
        lines += [str(m) for m in self.mismatches[:limit]]
        return "\n".join(lines)


def batch_params(campaign: Campaign, b: int) -> PulseParams:
    regs = campaign.regs[b]
    # a 10th column, when present, is the algorithm register (spec 1.13)
    extra = {"algorithm": regs[:, len(REG_NAMES)]} if regs.shape[1] > len(REG_NAMES) else {}
    return PulseParams(**{name: regs[:, k] for k, name in enumerate(REG_NAMES)}, **extra)


def _numba_records(x: np.ndarray, params: PulseParams, seed: int) -> np.ndarray:
    if x.shape[1] <= MAX_WINDOW:
        return find_pulses(x, params)
    stream = PulseStream(params)  # stream mode, cut at seeded random places
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, x.shape[1], size=8))
    parts = [stream.process(np.ascontiguousarray(c)) for c in np.split(x, cuts, axis=1)]
    parts.append(stream.finish())
    out = np.concatenate(parts)
    return out[np.lexsort((out["crossing"], out["channel"]))]


def rtl_records(rows: np.ndarray, columns, index0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(PULSE_DTYPE records with window-relative indices, campaign window of each) of the bench's rows."""
    col = {name: i for i, name in enumerate(columns)}
    win = rows[:, col["window"]].astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    out = np.zeros(len(rows), PULSE_DTYPE)
    out["channel"] = rows[:, col["channel"]] if len(rows) else 0
    for name in PULSE_DTYPE.names or ():
        if name in col and name != "channel":
            values = rows[:, col[name]].astype(np.int64)
            if name in ABSOLUTE_FIELDS:
                values = values - index0[win].astype(np.int64) * ABSOLUTE_FIELDS[name]
            out[name] = values
    return out, win


def compare(campaign: Campaign, rows: np.ndarray, columns, max_listed: int = 200) -> Report:
    """Compare the RTL rows (tb output) with the reference over the whole campaign."""
    rep = Report(pulses_rtl=len(rows))
    refs, ref_wins, samples = [], [], []
    params_of: dict[int, PulseParams] = {}
    for w, b, _n, _index0, win in campaign.windows():
        if b not in params_of:
            params_of = {b: batch_params(campaign, b)}
        x = np.ascontiguousarray(win.T)
        ref = find_pulses_reference(x, params_of[b])
        model = _numba_records(x, params_of[b], seed=w)
        if not np.array_equal(ref, model):
            rep.model_mismatches += 1
            rep.mismatches.append(
                dict(window=w, field="numba model vs reference", model=len(model), reference=len(ref))
            )
        if not campaign.last_sent[w]:
            # abandoned window: pulses still open at its end are dropped by the firmware
            nsa = campaign.regs[b, :, REG_NAMES.index("nsa")]
            ref = ref[ref["crossing"] + nsa[ref["channel"]] <= win.shape[0]]
        rep.channel_windows += campaign.nch
        rep.pulses_reference += len(ref)
        rep.quality_counts += ((ref["quality"][:, None].astype(np.int64) >> np.arange(10)) & 1).sum(0)
        refs.append(ref)
        ref_wins.append(np.full(len(ref), w, np.int64))
        samples.append(x)
    dut, dut_win = rtl_records(rows, columns, campaign.index0)
    hil = HilReport(dut="rtl", reference="naive", n_windows=len(samples), n_channels=campaign.nch, window_samples=0)
    compare_records(
        np.concatenate(refs),
        np.concatenate(ref_wins),
        dut,
        dut_win,
        samples,
        np.arange(len(samples)),
        hil,
        pulse_index_bits=RTL_PULSE_INDEX_BITS,
        max_listed=max_listed,
    )
    rep.mismatched_windows = hil.mismatched_channel_windows
    rep.field_mismatches = hil.field_mismatches
    rep.mismatches += hil.mismatches
    del rep.mismatches[max_listed:]
    return rep
