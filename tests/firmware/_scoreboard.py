"""Scoreboard: every RTL pulse record against the Python reference, field by field.

Records are matched per (window, channel) in pulse order. A mismatch names the window,
channel, pulse, field, the RTL and the reference values and the crossing sample, so it can
be replayed with the reference alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from _golden import Registers, find_pulses_golden
from _stimuli import REG_NAMES, Campaign

COMPARED_FIELDS = ("pulse_index", "crossing", "coarse_time", "fine_time", "time", "peak",
                   "integral", "integral_net", "pedestal", "n_over", "quality")
# spec 1.10: firmware pulse_index is u4, the low bits of PULSE_INDEX (it wraps)
FIELD_MODULUS = {"pulse_index": 16}


@dataclass
class Report:
    channel_windows: int = 0
    pulses_reference: int = 0
    pulses_rtl: int = 0
    mismatched_windows: int = 0
    mismatches: list = field(default_factory=list)
    mismatched_channels: set = field(default_factory=set)

    def summary(self, limit: int = 20) -> str:
        lines = [f"{self.channel_windows} channel-windows, {self.pulses_reference} reference "
                 f"pulses, {self.pulses_rtl} RTL pulses, {self.mismatched_windows} windows differ"]
        lines += [str(m) for m in self.mismatches[:limit]]
        return "\n".join(lines)


def reference_records(campaign: Campaign, ch: int, regs_row, samples_1d, index0: int) -> list[dict]:
    regs = Registers(**{k: int(v) for k, v in zip(REG_NAMES, regs_row)})
    return find_pulses_golden([int(v) for v in samples_1d], regs, index0)


def compare(campaign: Campaign, rows: np.ndarray, columns, max_listed: int = 200) -> Report:
    """Compare the RTL rows (tb output) with the reference over the whole campaign."""
    col = {name: i for i, name in enumerate(columns)}
    rtl = defaultdict(list)
    for r in rows:
        rtl[(int(r[col["window"]]), int(r[col["channel"]]))].append(r)
    rep = Report(pulses_rtl=len(rows))
    seen = set()
    for w, b, _n, index0, win in campaign.windows():
        for ch in range(campaign.nch):
            rep.channel_windows += 1
            ref = reference_records(campaign, ch, campaign.regs[b, ch], win[:, ch], index0)
            got = rtl.get((w, ch), [])
            seen.add((w, ch))
            rep.pulses_reference += len(ref)
            bad = False
            if len(ref) != len(got):
                bad = True
                rep.mismatches.append(dict(
                    window=w, channel=ch, field="n_pulses", rtl=len(got), reference=len(ref),
                    rtl_crossings=[int(g[col["crossing"]]) - index0 for g in got],
                    reference_crossings=[p["crossing"] - index0 for p in ref]))
            for k, (p, g) in enumerate(zip(ref, got)):
                for name in COMPARED_FIELDS:
                    mod = FIELD_MODULUS.get(name)
                    want = p[name] % mod if mod else p[name]
                    have = int(g[col[name]])
                    if want != have:
                        bad = True
                        rep.mismatches.append(dict(
                            window=w, channel=ch, pulse=k, field=name, rtl=have,
                            reference=want, sample=p["crossing"] - index0))
            if bad:
                rep.mismatched_windows += 1
                rep.mismatched_channels.add(ch)
    for key in rtl:
        if key not in seen:
            rep.mismatched_windows += 1
            rep.mismatches.append(dict(window=key[0], channel=key[1], field="unexpected records",
                                       rtl=len(rtl[key]), reference=0))
    del rep.mismatches[max_listed:]
    return rep
