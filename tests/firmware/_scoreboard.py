"""Scoreboard: every RTL pulse record against the Python reference, field by field.

The reference is ``pokerdaq.dsp._reference.find_pulses_reference`` (the naive reading of
docs/firmware-spec.md Part 1). On the same windows the numba model (``pokerdaq.dsp.
find_pulses`` for windows, ``PulseStream`` fed in uneven chunks for streams) must give the
same records as the reference too, so a disagreement between any two of RTL, reference and
numba model is reported. Records are matched per (window, channel) in pulse order; a
mismatch names the window, channel, pulse, field, both values and the crossing sample, so it
can be replayed with the reference alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from _stimuli import REG_NAMES, Campaign

from pokerdaq.dsp import PulseParams, PulseStream, find_pulses
from pokerdaq.dsp._reference import find_pulses_reference

COMPARED_FIELDS = ("pulse_index", "crossing", "coarse_time", "fine_time", "time", "peak",
                   "integral", "integral_net", "pedestal", "n_over", "quality")
# spec 1.10: firmware pulse_index is u4, the low bits of PULSE_INDEX (it wraps)
FIELD_MODULUS = {"pulse_index": 16}
MAX_WINDOW = 1024   # window mode (find_pulses); longer campaign windows are streams


@dataclass
class Report:
    channel_windows: int = 0
    pulses_reference: int = 0
    pulses_rtl: int = 0
    mismatched_windows: int = 0
    model_mismatches: int = 0        # numba model against the reference
    mismatches: list = field(default_factory=list)
    quality_counts: np.ndarray = field(default_factory=lambda: np.zeros(10, dtype=np.int64))

    def summary(self, limit: int = 20) -> str:
        lines = [f"{self.channel_windows} channel-windows, {self.pulses_reference} reference "
                 f"pulses, {self.pulses_rtl} RTL pulses, {self.mismatched_windows} windows differ "
                 f"(RTL vs reference), {self.model_mismatches} (numba vs reference); pulses per "
                 f"quality bit 0..9: {self.quality_counts.tolist()}"]
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
    stream = PulseStream(params)                  # stream mode, cut at seeded random places
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, x.shape[1], size=8))
    parts = [stream.process(np.ascontiguousarray(c)) for c in np.split(x, cuts, axis=1)]
    parts.append(stream.finish())
    out = np.concatenate(parts)
    return out[np.lexsort((out["crossing"], out["channel"]))]


def compare(campaign: Campaign, rows: np.ndarray, columns, max_listed: int = 200) -> Report:
    """Compare the RTL rows (tb output) with the reference over the whole campaign."""
    col = {name: i for i, name in enumerate(columns)}
    rtl = defaultdict(list)
    for r in rows:
        rtl[(int(r[col["window"]]), int(r[col["channel"]]))].append(r)
    rep = Report(pulses_rtl=len(rows))
    seen = set()
    params_of = {}
    for w, b, _n, index0, win in campaign.windows():
        if b not in params_of:
            params_of = {b: batch_params(campaign, b)}
        x = np.ascontiguousarray(win.T)
        ref_all = find_pulses_reference(x, params_of[b])
        model_all = _numba_records(x, params_of[b], seed=w)
        if not np.array_equal(ref_all, model_all):
            rep.model_mismatches += 1
            rep.mismatches.append(dict(window=w, field="numba model vs reference",
                                       model=len(model_all), reference=len(ref_all)))
        for ch in range(campaign.nch):
            rep.channel_windows += 1
            ref = ref_all[ref_all["channel"] == ch]
            if not campaign.last_sent[w]:
                # abandoned window: pulses still open at its end are dropped by the firmware
                nsa = int(campaign.regs[b, ch, REG_NAMES.index("nsa")])
                ref = ref[ref["crossing"] + nsa <= win.shape[0]]
            got = rtl.get((w, ch), [])
            seen.add((w, ch))
            rep.pulses_reference += len(ref)
            for q in ref["quality"]:
                rep.quality_counts += (int(q) >> np.arange(10)) & 1
            bad = False
            if len(ref) != len(got):
                bad = True
                rep.mismatches.append(dict(
                    window=w, channel=ch, field="n_pulses", rtl=len(got), reference=len(ref),
                    rtl_crossings=[int(g[col["crossing"]]) - index0 for g in got],
                    reference_crossings=[int(c) for c in ref["crossing"]]))
            for k, (p, g) in enumerate(zip(ref, got)):
                for name in COMPARED_FIELDS:
                    want = int(p[name])
                    if name in ("crossing", "coarse_time"):
                        want += index0                # RTL indices are absolute (in_index0)
                    elif name == "time":
                        want += index0 * 64
                    mod = FIELD_MODULUS.get(name)
                    if mod:
                        want %= mod
                    have = int(g[col[name]])
                    if want != have:
                        bad = True
                        rep.mismatches.append(dict(
                            window=w, channel=ch, pulse=k, field=name, rtl=have,
                            reference=want, sample=int(p["crossing"])))
            if bad:
                rep.mismatched_windows += 1
    for key in rtl:
        if key not in seen:
            rep.mismatched_windows += 1
            rep.mismatches.append(dict(window=key[0], channel=key[1], field="unexpected records",
                                       rtl=len(rtl[key]), reference=0))
    del rep.mismatches[max_listed:]
    return rep
