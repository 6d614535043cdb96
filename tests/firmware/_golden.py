"""Naive golden model of docs/firmware-spec.md Part 1, written clause by clause.

Temporary: replaced by ``pokerdaq.dsp._reference.find_pulses_reference`` once that lands.
Plain Python integers only; clarity over speed.
"""

from __future__ import annotations

from dataclasses import dataclass

PEDESTAL_BAD = 1 << 0
NSA_BEYOND_WINDOW = 1 << 1
NSB_BEFORE_WINDOW = 1 << 2
OVERFLOW = 1 << 3
UNDERFLOW = 1 << 4
PEAK_BEYOND_NSA = 1 << 5
PEAK_NOT_FOUND = 1 << 6
TIME_BAD = 1 << 7
PILEUP = 1 << 8
MORE_PULSES = 1 << 9

RAIL = 16383


@dataclass(frozen=True)
class Registers:
    """Pulse-finder registers of one channel (docs/firmware-spec.md 1.2)."""

    thr: int
    nsb: int
    nsa: int
    nsat: int
    nped_log2: int
    maxped: int
    max_pulses: int
    ped_mode: int
    ped_cfg: int


def find_pulses_golden(x: list[int], r: Registers, index0: int = 0) -> list[dict]:
    """Pulse records of one window ``x`` (all samples), spec clauses 1.3-1.9."""
    n_samples = len(x)
    nped = 1 << r.nped_log2
    # 1.3 pedestal
    if r.ped_mode == 0:
        ped_sum = sum(x[:nped])
        search_start = nped
        ped_bad = any(v > r.maxped for v in x[:nped])
    else:
        ped_sum = r.ped_cfg << r.nped_log2
        search_start = 0
        ped_bad = False
    p_sample = ped_sum >> r.nped_log2
    t_abs = p_sample + r.thr

    pulses: list[dict] = []
    n = search_start + 1
    while n < n_samples:
        # 1.4 candidate and confirmation
        if not (x[n - 1] <= t_abs < x[n]):
            n += 1
            continue
        c = n
        if c + r.nsat > n_samples or not all(v > t_abs for v in x[c:c + r.nsat]):
            n += 1
            continue
        quality = PEDESTAL_BAD if ped_bad else 0
        end = min(c + r.nsa, n_samples)
        for m in range(c + 1, end):
            if x[m - 1] <= t_abs < x[m]:
                quality |= PILEUP
        # 1.5 peak
        p = None
        for i in range(c + 1, end):
            if x[i] < x[i - 1]:
                p = i - 1
                break
        if p is None:
            quality |= PEAK_BEYOND_NSA if c + r.nsa <= n_samples else PEAK_NOT_FOUND
            seg = x[c:end]
            p = c + seg.index(max(seg))
        vpeak = x[p]
        # 1.6 integral
        lo = c - r.nsb
        if lo < 0:
            lo = 0
            quality |= NSB_BEFORE_WINDOW
        hi = c + r.nsa
        if hi > n_samples:
            hi = n_samples
            quality |= NSA_BEYOND_WINDOW
        integral = sum(x[lo:hi])
        integral_net = integral - ((ped_sum * (hi - lo)) >> r.nped_log2)
        if any(v == RAIL for v in x[lo:hi]):
            quality |= OVERFLOW
        if any(v == 0 for v in x[lo:hi]):
            quality |= UNDERFLOW
        # 1.7 time
        vmid = (p_sample + vpeak) >> 1
        coarse, fine = c, 0
        for k in range(p, lo, -1):
            if x[k - 1] <= vmid < x[k]:
                coarse = k - 1
                fine = ((vmid - x[k - 1]) << 6) // (x[k] - x[k - 1])
                break
        else:
            quality |= TIME_BAD
        # 1.8 samples over threshold
        n_over = 0
        for m in range(c, end):
            if x[m] > t_abs:
                n_over += 1
            else:
                break
        pulses.append(dict(
            pulse_index=len(pulses), coarse_time=coarse + index0, fine_time=fine,
            time=(coarse + index0) * 64 + fine, crossing=c + index0, peak=vpeak,
            integral=integral, integral_net=integral_net, pedestal=ped_sum,
            n_over=n_over, quality=quality,
        ))
        n = c + r.nsa
    # 1.9 maximum number of pulses
    if r.max_pulses and len(pulses) > r.max_pulses:
        pulses = pulses[:r.max_pulses]
        pulses[-1]["quality"] |= MORE_PULSES
    return pulses
