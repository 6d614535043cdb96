"""Naive reference of the pulse finder, written straight from docs/firmware-spec.md Part 1.

Slow and plain on purpose: Python integers, one spec section per step, no shared code with
the numba kernel (``_kernel.py``). The tests and the firmware testbench compare against it.
Window mode only; stream mode is window mode over the concatenated stream (spec 1.1).
Channels with ``algorithm = 1`` follow the fADC250 v3 rules of spec 1.13
(:func:`_fadc250_pulses_of_channel`).
"""

from __future__ import annotations

import numpy as np

from ._params import PulseParams
from ._records import PULSE_DTYPE, QualityBits

RAIL_LOW = 0


def _pulses_of_channel(
    x: list[int],
    thr: int,
    nsb: int,
    nsa: int,
    nsat: int,
    nped_log2: int,
    maxped: int,
    max_pulses: int,
    ped_mode: int,
    ped_cfg: int,
    *,
    rail_high: int,
) -> list[dict]:
    N = len(x)
    nped = 1 << nped_log2

    # 1.3 Pedestal
    pedestal_bad = False
    if ped_mode == 0:
        PED_SUM = sum(x[0:nped])
        SEARCH_START = nped
        pedestal_bad = any(v > maxped for v in x[0:nped])
    else:
        PED_SUM = ped_cfg << nped_log2
        SEARCH_START = 0
    P = PED_SUM >> nped_log2
    T = P + thr

    def above(n: int) -> bool:
        return x[n] > T

    def is_candidate(n: int) -> bool:
        # 1.4: x[n-1] <= T < x[n]; a sample equal to T is not above threshold
        return x[n - 1] <= T and x[n] > T

    # 1.4 Threshold crossing and confirmation: the list of pulse crossings, in time order
    crossings: list[int] = []
    c = SEARCH_START + 1
    while c < N:
        if c - 1 >= SEARCH_START and is_candidate(c):
            if c + nsat <= N and all(above(j) for j in range(c, c + nsat)):
                crossings.append(c)
                c = c + nsa  # no new candidate while the pulse is open
                continue
        c = c + 1  # unconfirmed: the search goes on from the next sample

    # 1.9 Maximum number of pulses
    more_pulses = False
    if max_pulses > 0 and len(crossings) > max_pulses:
        crossings = crossings[:max_pulses]
        more_pulses = True

    pulses = []
    for index, c in enumerate(crossings):
        q = 0
        if pedestal_bad:
            q |= QualityBits.PEDESTAL_BAD
        open_end = min(c + nsa, N)

        # 1.4 Pile-up: a candidate condition at c < n < c + NSA
        if any(is_candidate(n) for n in range(c + 1, open_end)):
            q |= QualityBits.PILEUP

        # 1.5 Peak
        p = None
        i = c + 1
        while i < open_end:
            if x[i] < x[i - 1]:
                p = i - 1
                break
            i += 1
        if p is None:
            if c + nsa <= N:
                q |= QualityBits.PEAK_BEYOND_NSA
                seg = x[c : c + nsa]
            else:
                q |= QualityBits.PEAK_NOT_FOUND
                seg = x[c:N]
            p = c + seg.index(max(seg))
        VPEAK = x[p]

        # 1.6 Integral
        lo = c - nsb
        if lo < 0:
            lo = 0
            q |= QualityBits.NSB_BEFORE_WINDOW
        hi = c + nsa
        if hi > N:
            hi = N
            q |= QualityBits.NSA_BEYOND_WINDOW
        INTEGRAL = sum(x[lo:hi])
        n_int = hi - lo
        INTEGRAL_NET = INTEGRAL - ((PED_SUM * n_int) >> nped_log2)
        if rail_high in x[lo:hi]:  # the upper rail, 2^adc_bits - 1
            q |= QualityBits.OVERFLOW
        if RAIL_LOW in x[lo:hi]:
            q |= QualityBits.UNDERFLOW

        # 1.7 Time
        VMID = (P + VPEAK) >> 1
        COARSE, FINE = c, 0
        for k in range(p, lo, -1):  # k = p, p-1, ..., lo+1
            if x[k - 1] <= VMID < x[k]:
                COARSE = k - 1
                FINE = ((VMID - x[k - 1]) << 6) // (x[k] - x[k - 1])
                break
        else:
            q |= QualityBits.TIME_BAD

        # 1.8 Samples over threshold
        N_OVER = 0
        while c + N_OVER < open_end and above(c + N_OVER):
            N_OVER += 1

        if more_pulses and index == len(crossings) - 1:
            q |= QualityBits.MORE_PULSES

        pulses.append(
            dict(
                pulse_index=index,
                coarse_time=COARSE,
                fine_time=FINE,
                time=COARSE * 64 + FINE,
                crossing=c,
                peak=VPEAK,
                integral=INTEGRAL,
                integral_net=INTEGRAL_NET,
                pedestal=PED_SUM,
                n_over=N_OVER,
                quality=q,
            )
        )
    return pulses


def _fadc250_pulses_of_channel(
    w: list[int], thr: int, nsb: int, nsa: int, nsat: int, nped_log2: int, maxped: int
) -> list[dict]:
    """Spec 1.13: the fADC250 v3 rules on one window of 13-bit words ``w``."""
    N = len(w)
    nped = 1 << nped_log2
    x = [v & 0xFFF for v in w]  # 1.13.1 the 12-bit code
    ovf = [v == 0x1FFF for v in w]
    unf = [v == 0x1000 for v in w]

    # 1.13.2 pedestal, VMIN, the timing pedestal
    PED_SUM = sum(x[0:nped])
    pedestal_bad = any(x[n] > maxped or ovf[n] or unf[n] for n in range(nped))
    VMIN = sum(x[0 : min(nped, 4)]) >> nped_log2
    timing_ped_bad = any(x[n] > maxped or x[n] > thr or ovf[n] or unf[n] for n in range(4))
    no_time = any(x[n] > thr for n in range(4))

    # 1.13.3 crossings
    S = N - nsat
    crossings: list[int] = []
    i = 0
    while i < S and len(crossings) < 3:
        if x[i] <= thr:
            i += 1
            continue
        if not (i + nsat - 1 <= S and all(x[j] > thr for j in range(i, i + nsat))):
            i += 1
            continue
        crossings.append(i)
        m = min(i + nsa, N)
        while m < N and x[m] >= thr:  # re-armed by a sample below THR
            m += 1
        i = m + 1

    pulses = []
    for index, c in enumerate(crossings):
        q = QualityBits.PEDESTAL_BAD if pedestal_bad else 0
        if timing_ped_bad:
            q |= QualityBits.TIMING_PEDESTAL_BAD
        # 1.13.4 integral, out-of-range words, samples over threshold
        lo = max(c - nsb, 0)
        hi = min(c + nsa, N)
        if c + nsa > N:
            q |= QualityBits.NSA_BEYOND_WINDOW
        INTEGRAL = sum(x[lo:hi])
        INTEGRAL_NET = INTEGRAL - ((PED_SUM * (hi - lo)) >> nped_log2)
        if any(ovf[lo:hi]):
            q |= QualityBits.OVERFLOW
        if any(unf[lo:hi]):
            q |= QualityBits.UNDERFLOW
        N_OVER = sum(1 for n in range(c, hi) if x[n] > thr)
        # 1.13.5 peak
        fall = None
        for i in range(c + 1, N - 1):
            if x[i] < x[i - 1]:
                fall = i
                break
        COARSE, FINE = c, 0
        if fall is None:
            VPEAK = 0
            q |= QualityBits.PEAK_BEYOND_NSA | QualityBits.PEAK_NOT_FOUND
        else:
            p = fall - 1
            VPEAK = x[p]
            if fall > c + nsa + 1:
                q |= QualityBits.PEAK_BEYOND_NSA
            # 1.13.6 time
            if not no_time:
                VMID = (VMIN + VPEAK) >> 1
                for k in range(p, 0, -1):  # k = p, p-1, ..., 1
                    if x[k - 1] <= VMID < x[k]:
                        COARSE = k - 1
                        FINE = ((VMID - x[k - 1]) << 6) // (x[k] - x[k - 1])
                        break
                else:
                    q |= QualityBits.TIME_BAD
        pulses.append(
            dict(
                pulse_index=index,
                coarse_time=COARSE,
                fine_time=FINE,
                time=COARSE * 64 + FINE,
                crossing=c,
                peak=VPEAK,
                integral=INTEGRAL,
                integral_net=INTEGRAL_NET,
                pedestal=PED_SUM,
                n_over=N_OVER,
                quality=q,
            )
        )
    return pulses


def find_pulses_reference(
    samples: np.ndarray, params: PulseParams, channel_ids: np.ndarray | None = None
) -> np.ndarray:
    """Window-mode pulses of ``samples`` (channels, N), as PULSE_DTYPE records (1.10).

    No input validation beyond what Python itself enforces: give it what ``find_pulses``
    accepts.
    """
    rows = []
    for ch in range(samples.shape[0]):
        x = [int(v) for v in samples[ch]]
        regs = [
            int(getattr(params, name)[ch])
            for name in ("thr", "nsb", "nsa", "nsat", "nped_log2", "maxped", "max_pulses", "ped_mode", "ped_cfg")
        ]
        channel = ch if channel_ids is None else int(channel_ids[ch])
        if params.algorithm is not None and int(params.algorithm[ch]) == 1:
            thr, nsb, nsa, nsat, nped_log2, maxped = regs[:6]
            found = _fadc250_pulses_of_channel(x, thr, nsb, nsa, nsat, nped_log2, maxped)
        else:
            found = _pulses_of_channel(x, *regs, rail_high=int(params.adc_max))
        for pulse in found:
            rows.append(
                (
                    channel,
                    pulse["pulse_index"] & 0xFF,
                    pulse["coarse_time"],
                    pulse["fine_time"],
                    pulse["time"],
                    pulse["crossing"],
                    pulse["peak"],
                    pulse["integral"],
                    pulse["integral_net"],
                    pulse["pedestal"],
                    pulse["n_over"],
                    pulse["quality"],
                )
            )
    return np.array(rows, dtype=PULSE_DTYPE)
