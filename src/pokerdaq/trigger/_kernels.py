"""numba kernels of the trigger (no validation here: see _model.py). Spec: firmware-spec Part 2."""

from __future__ import annotations

import numba
import numpy as np

from ._dtypes import CHANNEL_ENERGY_BITS, N_TYPES, SUM_BITS
from ._registers import (
    P_BEAM_K,
    P_BEAM_THR,
    P_BEAM_W,
    P_CALIB_MIN,
    P_CALO_HI,
    P_CALO_LO,
    P_DEAD,
    P_ECAL_CUT,
    P_GUARD,
    P_HCAL_HI,
    P_HCAL_LO,
    P_HCAL_THR,
    P_LAT,
    P_MIP_HI,
    P_MIP_LO,
    P_N_BOARDS,
    P_PRESCALE,
    P_PRS_MIN,
    P_SPAN_HI,
    P_SPAN_LO,
    P_SRD_EMAX,
    P_SRD_EMIN,
    P_SRD_HI,
    P_SRD_K,
    P_SRD_LO,
    P_VETO_HI,
    P_VETO_LO,
    P_VETO_THR,
    RND_PERIODIC,
    RND_POISSON,
)

E_MAX = (1 << CHANNEL_ENERGY_BITS) - 1
S_MAX = (1 << SUM_BITS) - 1
U32 = 0xFFFFFFFF

# condition bits (ConditionBits)
C_BEAM, C_SRD, C_VETO, C_ECAL_LOW, C_PRS, C_CALIB, C_MIP, C_HCAL, C_RANDOM, C_PILEUP = (1 << k for k in range(10))
# type bits (TriggerBits)
T_PHYSICS, T_BEAM, T_RANDOM, T_CALIB, T_MUON = (1 << k for k in range(5))

# columns of the candidate output matrix
(
    O_EVENT,
    O_TIMESTAMP,
    O_REF,
    O_WORD,
    O_COND,
    O_BMASK,
    O_SMASK,
    O_VMASK,
    O_EPRS,
    O_EECAL,
    O_ECALO,
    O_EHCAL,
    O_ESRD,
    O_EVETO,
) = range(14)
N_OUT = 14

# state vector of the streaming model
S_DEAD_UNTIL, S_EVENT, S_RND, S_PERIOD_COUNT, S_LAST_BEAM, S_ATTEMPTS, S_LOST_DEAD, S_LOST_BUSY = range(8)
S_PRESCALE = 8
N_STATE = S_PRESCALE + N_TYPES

# counter rows
K_RAW, K_PRESCALED, K_ACCEPTED, K_LOST_DEAD, K_LOST_BUSY = range(5)
N_COUNTER_ROWS = 5


@numba.njit(cache=True)
def _popcount(x):
    n = 0
    while x:
        x &= x - 1
        n += 1
    return n


@numba.njit(cache=True)
def _lut_apply(e, lut, shift):
    k = len(lut) - 1
    idx = e >> shift
    if idx >= k:
        r = lut[k]
    else:
        r = lut[idx] + (((lut[idx + 1] - lut[idx]) * (e - (idx << shift))) >> shift)
    return min(r, E_MAX)


@numba.njit(cache=True)
def _channel_energies(channel, integral_net, ch_gain, ch_lut, luts, lut_shift, frac_bits):
    n = len(channel)
    out = np.empty(n, np.int64)
    for i in range(n):
        c = channel[i]
        net = np.int64(integral_net[i])
        if net <= 0:
            out[i] = 0
            continue
        e = min((net * ch_gain[c]) >> frac_bits, E_MAX)
        lut = ch_lut[c]
        if lut >= 0:
            e = _lut_apply(e, luts[lut], lut_shift[lut])
        out[i] = e
    return out


@numba.njit(cache=True)
def _evaluate(times, chans, energies, lo, hi, t_ref, ch_role, ch_bit, ch_board, p, acc, res):
    """Conditions and sums of the records [lo, hi) around t_ref; fills res[O_COND..O_EVETO]."""
    bmask = 0
    smask = 0
    vmask = 0
    esrd = 0
    eveto = 0
    for i in range(lo, hi):
        dt = times[i] - t_ref
        c = chans[i]
        r = ch_role[c]
        e = energies[i]
        if r == 0:
            if dt >= 0 and dt < p[P_BEAM_W] and e >= p[P_BEAM_THR]:
                bmask |= 1 << ch_bit[c]
        elif r == 1:
            if dt >= p[P_SRD_LO] and dt < p[P_SRD_HI]:
                esrd = min(esrd + e, S_MAX)
                if e >= p[P_SRD_EMIN] and e <= p[P_SRD_EMAX]:
                    smask |= 1 << ch_bit[c]
        elif r == 2 or r == 3:
            if dt >= p[P_CALO_LO] and dt < p[P_CALO_HI]:
                b = ch_board[c]
                acc[b, r - 2] = min(acc[b, r - 2] + e, S_MAX)
        elif r == 5:
            if dt >= p[P_HCAL_LO] and dt < p[P_HCAL_HI]:
                b = ch_board[c]
                acc[b, 2] = min(acc[b, 2] + e, S_MAX)
        else:
            if dt >= p[P_VETO_LO] and dt < p[P_VETO_HI]:
                eveto = min(eveto + e, S_MAX)
                if e >= p[P_VETO_THR]:
                    vmask |= 1 << ch_bit[c]
    eprs = 0
    eecal = 0
    ehcal = 0
    for b in range(p[P_N_BOARDS]):
        eprs = min(eprs + acc[b, 0], S_MAX)
        eecal = min(eecal + acc[b, 1], S_MAX)
        ehcal = min(ehcal + acc[b, 2], S_MAX)
        acc[b, 0] = 0
        acc[b, 1] = 0
        acc[b, 2] = 0
    ecalo = min(eprs + eecal, S_MAX)
    cond = 0
    if _popcount(bmask) >= p[P_BEAM_K]:
        cond |= C_BEAM
    if _popcount(smask) >= p[P_SRD_K]:
        cond |= C_SRD
    if vmask != 0:
        cond |= C_VETO
    if ecalo < p[P_ECAL_CUT]:
        cond |= C_ECAL_LOW
    if eprs >= p[P_PRS_MIN]:
        cond |= C_PRS
    if ecalo >= p[P_CALIB_MIN]:
        cond |= C_CALIB
    if ecalo >= p[P_MIP_LO] and ecalo < p[P_MIP_HI]:
        cond |= C_MIP
    if ehcal >= p[P_HCAL_THR]:
        cond |= C_HCAL
    res[O_COND] = cond
    res[O_BMASK] = bmask
    res[O_SMASK] = smask
    res[O_VMASK] = vmask
    res[O_EPRS] = eprs
    res[O_EECAL] = eecal
    res[O_ECALO] = ecalo
    res[O_EHCAL] = ehcal
    res[O_ESRD] = esrd
    res[O_EVETO] = eveto


@numba.njit(cache=True)
def _raw_types(cond):
    if cond & C_RANDOM:
        return T_RANDOM
    t = 0
    if cond & C_BEAM:
        t |= T_BEAM
        if (cond & C_SRD) and (cond & C_ECAL_LOW) and (cond & C_PRS) and not (cond & (C_VETO | C_PILEUP)):
            t |= T_PHYSICS
        if cond & C_CALIB:
            t |= T_CALIB
        if (cond & C_MIP) and ((cond & C_HCAL) or (cond & C_VETO)):
            t |= T_MUON
    return t


@numba.njit(cache=True)
def _beam_candidates(times, chans, energies, ch_role, ch_bit, p, next_min, issue_limit):
    """Reference times of beam coincidences with issue tick < issue_limit; returns (t_refs, next_min)."""
    n = len(times)
    out = np.empty(n, np.int64)
    n_out = 0
    w = p[P_BEAM_W]
    thr = p[P_BEAM_THR]
    i = np.searchsorted(times, next_min)
    while i < n:
        c = chans[i]
        if ch_role[c] != 0 or energies[i] < thr:
            i += 1
            continue
        t0 = times[i]
        if (t0 >> 6) + p[P_LAT] >= issue_limit:
            break
        mask = 0
        j = i
        while j < n and times[j] < t0 + w:
            cj = chans[j]
            if ch_role[cj] == 0 and energies[j] >= thr:
                mask |= 1 << ch_bit[cj]
            j += 1
        if _popcount(mask) >= p[P_BEAM_K]:
            out[n_out] = t0
            n_out += 1
            next_min = t0 + w
            i = j
        else:
            next_min = t0 + 1
            i += 1
    return out[:n_out], next_min


@numba.njit(cache=True)
def _xorshift32(x):
    x ^= (x << 13) & U32
    x ^= x >> 17
    x ^= (x << 5) & U32
    return x


@numba.njit(cache=True)
def _xorshift_until(x, thr, n_max):
    """Step the generator up to n_max times; returns (steps taken, state) at the first x < thr."""
    for k in range(n_max):
        x ^= (x << 13) & U32
        x ^= x >> 17
        x ^= (x << 5) & U32
        if x < thr:
            return k + 1, x
    return n_max + 1, x


@numba.njit(cache=True)
def _random_ticks(tick0, tick1, mode, param, state):
    """Ticks in [tick0, tick1) at which the random generator fires; advances state."""
    cap = 16
    out = np.empty(cap, np.int64)
    n = 0
    if mode == RND_POISSON:
        x = state[S_RND]
        t = tick0
        while t < tick1:
            steps, x = _xorshift_until(x, param, tick1 - t)
            if steps > tick1 - t:  # no fire before tick1: all remaining ticks stepped
                break
            t += steps - 1  # the tick of this fire
            if n == cap:
                cap *= 2
                grown = np.empty(cap, np.int64)
                grown[:n] = out[:n]
                out = grown
            out[n] = t
            n += 1
            t += 1
        state[S_RND] = x
    elif mode == RND_PERIODIC:
        count = state[S_PERIOD_COUNT]  # ticks since the last fire, before tick0
        t = tick0 + (param - 1 - count)
        while t < tick1:
            if n == cap:
                cap *= 2
                grown = np.empty(cap, np.int64)
                grown[:n] = out[:n]
                out = grown
            out[n] = t
            n += 1
            t += param
        last = t - param  # last fire tick (or before tick0)
        state[S_PERIOD_COUNT] = (tick1 - 1 - last) if n > 0 else count + (tick1 - tick0)
    return out[:n]


@numba.njit(cache=True)
def _is_busy(tick, busy_start, busy_end):
    k = np.searchsorted(busy_start, tick, side="right") - 1
    return k >= 0 and tick < busy_end[k]


@numba.njit(cache=True)
def _process_candidates(
    beam_t,
    rnd_ticks,
    times,
    chans,
    energies,
    ch_role,
    ch_bit,
    ch_board,
    p,
    acc,
    state,
    counters,
    busy_start,
    busy_end,
    out,
):
    """Evaluate candidates in issue-tick order (beam first at equal ticks); returns rows written."""
    nb = len(beam_t)
    nr = len(rnd_ticks)
    ib = 0
    ir = 0
    n_out = 0
    res = np.zeros(N_OUT, np.int64)
    while ib < nb or ir < nr:
        take_beam = False
        if ib < nb:
            issue_b = (beam_t[ib] >> 6) + p[P_LAT]
            take_beam = ir >= nr or issue_b <= rnd_ticks[ir]
        if take_beam:
            t_ref = beam_t[ib]
            issue = issue_b
            ib += 1
        else:
            issue = rnd_ticks[ir]
            ir += 1
            if issue < p[P_LAT]:  # no stream LATENCY ticks back yet: no candidate (spec 2.8)
                continue
            # the random trigger looks at the stream LATENCY ticks back, like a beam trigger:
            # its windows are complete at the issue tick (spec 2.8)
            t_ref = (issue - p[P_LAT]) << 6
        lo = np.searchsorted(times, t_ref + p[P_SPAN_LO])
        hi = np.searchsorted(times, t_ref + p[P_SPAN_HI])
        _evaluate(times, chans, energies, lo, hi, t_ref, ch_role, ch_bit, ch_board, p, acc, res)
        cond = res[O_COND]
        if not take_beam:
            cond |= C_RANDOM
        else:
            if t_ref - state[S_LAST_BEAM] < p[P_GUARD]:
                cond |= C_PILEUP
            state[S_LAST_BEAM] = t_ref
        raw = _raw_types(cond)
        pmask = 0
        for k in range(N_TYPES):
            if (raw >> k) & 1:
                counters[K_RAW, k] += 1
                factor = p[P_PRESCALE + k]
                if factor > 0:
                    state[S_PRESCALE + k] += 1
                    if state[S_PRESCALE + k] >= factor:
                        state[S_PRESCALE + k] = 0
                        pmask |= 1 << k
        if pmask == 0:
            continue
        for k in range(N_TYPES):
            if (pmask >> k) & 1:
                counters[K_PRESCALED, k] += 1
        state[S_ATTEMPTS] += 1
        if issue < state[S_DEAD_UNTIL]:
            row = K_LOST_DEAD
            state[S_LOST_DEAD] += 1
        elif _is_busy(issue, busy_start, busy_end):
            row = K_LOST_BUSY
            state[S_LOST_BUSY] += 1
        else:
            row = K_ACCEPTED
        for k in range(N_TYPES):
            if (pmask >> k) & 1:
                counters[row, k] += 1
        if row != K_ACCEPTED:
            continue
        state[S_DEAD_UNTIL] = issue + p[P_DEAD]
        for col in range(N_OUT):
            out[n_out, col] = res[col]
        out[n_out, O_EVENT] = state[S_EVENT]
        out[n_out, O_TIMESTAMP] = issue
        out[n_out, O_REF] = t_ref
        out[n_out, O_WORD] = pmask | (raw << 8)
        out[n_out, O_COND] = cond
        state[S_EVENT] += 1
        n_out += 1
    return n_out


@numba.njit(cache=True)
def _union_length(starts, ends, lo, hi):
    """Length of the union of [starts[i], ends[i]) clipped to [lo, hi); starts sorted."""
    total = 0
    cur_s = lo
    cur_e = lo
    for i in range(len(starts)):
        s = max(starts[i], lo)
        e = min(ends[i], hi)
        if e <= s:
            continue
        if s > cur_e:
            total += cur_e - cur_s
            cur_s = s
            cur_e = e
        elif e > cur_e:
            cur_e = e
    total += cur_e - cur_s
    return total


@numba.njit(cache=True)
def _windows(times, chans, energies, starts, ends, default_ref, ch_role, ch_bit, ch_board, p, out):
    """Window mode: one row per window [starts[w], ends[w]) of records sorted by time."""
    acc = np.zeros((p[P_N_BOARDS], 3), np.int64)
    res = np.zeros(N_OUT, np.int64)
    for w in range(len(starts)):
        a = starts[w]
        b = ends[w]
        wt = times[a:b]
        cands, _ = _beam_candidates(
            wt, chans[a:b], energies[a:b], ch_role, ch_bit, p, np.int64(-(1 << 62)), np.int64(1 << 62)
        )
        t_ref = cands[0] if len(cands) > 0 else default_ref
        lo = a + np.searchsorted(wt, t_ref + p[P_SPAN_LO])
        hi = a + np.searchsorted(wt, t_ref + p[P_SPAN_HI])
        _evaluate(times, chans, energies, lo, hi, t_ref, ch_role, ch_bit, ch_board, p, acc, res)
        cond = res[O_COND]
        raw = _raw_types(cond)
        for col in range(N_OUT):
            out[w, col] = res[col]
        out[w, O_EVENT] = w
        out[w, O_TIMESTAMP] = (t_ref >> 6) + p[P_LAT]
        out[w, O_REF] = t_ref
        out[w, O_WORD] = raw | (raw << 8)
        out[w, O_COND] = cond


@numba.njit(cache=True)
def _board_sums(times, chans, energies, t_ref, ch_role, ch_board, p, out):
    """Board partial sums PART[b][g] (spec 2.4) of all records around t_ref; out zeroed by the caller."""
    for i in range(len(times)):
        dt = times[i] - t_ref
        c = chans[i]
        r = ch_role[c]
        if r == 2 or r == 3:
            if dt >= p[P_CALO_LO] and dt < p[P_CALO_HI]:
                out[ch_board[c], r - 2] = min(out[ch_board[c], r - 2] + energies[i], S_MAX)
        elif r == 5:
            if dt >= p[P_HCAL_LO] and dt < p[P_HCAL_HI]:
                out[ch_board[c], 2] = min(out[ch_board[c], 2] + energies[i], S_MAX)
