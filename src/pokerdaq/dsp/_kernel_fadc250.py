"""numba kernel of the fADC250 v3 pulse finder (docs/firmware-spec.md 1.13). No validation.

Window mode only: v3 is a windowed algorithm (a peak search to the window end, a walk back to
its start, the timing pedestal in its first 4 samples). One row per window and channel; each
row writes at most 3 records into its own 3 slots of a scratch array, so rows run in parallel
without a counting pass.
"""

from __future__ import annotations

import numba
import numpy as np

from ._records import QualityBits

FADC250_SLOTS = 3
"""Records per row in the scratch: v3 reports at most 3 pulses."""

WORD_MAX = 0x1FFF
"""Largest 13-bit sample word (12-bit code and the out-of-range bit)."""

_OVERFLOW_WORD = 0x1FFF
_UNDERFLOW_WORD = 0x1000
_CODE = 0xFFF
_PEDESTAL_BAD = QualityBits.PEDESTAL_BAD
_TIMING_PEDESTAL_BAD = QualityBits.TIMING_PEDESTAL_BAD
_NSA_BEYOND_WINDOW = QualityBits.NSA_BEYOND_WINDOW
_OVERFLOW = QualityBits.OVERFLOW
_UNDERFLOW = QualityBits.UNDERFLOW
_PEAK_BEYOND_NSA = QualityBits.PEAK_BEYOND_NSA
_PEAK_NOT_FOUND = QualityBits.PEAK_NOT_FOUND
_TIME_BAD = QualityBits.TIME_BAD


@numba.njit(nogil=True, cache=True)
def _fadc250_row(w, thr, nsb, nsa, nsat, nped_log2, maxped, out, pos, channel):
    """The pulses of one window of 13-bit words ``w`` into ``out[pos:pos+3]``; returns their
    number."""
    n_samples = w.shape[0]
    nped = np.int64(1) << nped_log2
    # 1.13.2 pedestal, VMIN, timing pedestal
    ped_sum = np.int64(0)
    vmin_sum = np.int64(0)
    quality0 = 0
    for n in range(nped):
        v = np.int64(w[n])
        x = v & _CODE
        ped_sum += x
        if n < 4:
            vmin_sum += x
        if x > maxped or v == _OVERFLOW_WORD or v == _UNDERFLOW_WORD:
            quality0 |= _PEDESTAL_BAD
    vmin = vmin_sum >> nped_log2
    no_time = False
    for n in range(4):
        v = np.int64(w[n])
        x = v & _CODE
        if x > thr:
            no_time = True
        if x > maxped or x > thr or v == _OVERFLOW_WORD or v == _UNDERFLOW_WORD:
            quality0 |= _TIMING_PEDESTAL_BAD
    # 1.13.3 crossings
    last_scan = n_samples - nsat
    count = 0
    i = np.int64(0)
    while i < last_scan and count < FADC250_SLOTS:
        if (np.int64(w[i]) & _CODE) <= thr:
            i += 1
            continue
        ok = i + nsat - 1 <= last_scan
        j = i + 1
        while ok and j < i + nsat:
            if (np.int64(w[j]) & _CODE) <= thr:
                ok = False
            j += 1
        if not ok:
            i += 1
            continue
        c = i
        quality = quality0
        # 1.13.4 integral, out-of-range words, samples over threshold
        lo = max(c - nsb, np.int64(0))
        hi = c + nsa
        if hi > n_samples:
            hi = np.int64(n_samples)
            quality |= _NSA_BEYOND_WINDOW
        total = np.int64(0)
        n_over = 0
        for n in range(lo, hi):
            v = np.int64(w[n])
            x = v & _CODE
            total += x
            if v == _OVERFLOW_WORD:
                quality |= _OVERFLOW
            if v == _UNDERFLOW_WORD:
                quality |= _UNDERFLOW
            if n >= c and x > thr:
                n_over += 1
        net = total - ((ped_sum * (hi - lo)) >> nped_log2)
        # 1.13.5 peak: the first fall in [c+1, N-1)
        fall = c + 1
        while fall < n_samples - 1 and ((np.int64(w[fall]) & _CODE) >= (np.int64(w[fall - 1]) & _CODE)):
            fall += 1
        coarse = c
        fine = np.int64(0)
        if fall >= n_samples - 1:
            vpeak = np.int64(0)
            quality |= _PEAK_BEYOND_NSA | _PEAK_NOT_FOUND
        else:
            p = fall - 1
            vpeak = np.int64(w[p]) & _CODE
            if fall > c + nsa + 1:
                quality |= _PEAK_BEYOND_NSA
            # 1.13.6 time: walk back from the peak to sample 1
            if not no_time:
                vmid = (vmin + vpeak) >> 1
                found = False
                for k in range(p, 0, -1):
                    a = np.int64(w[k - 1]) & _CODE
                    b = np.int64(w[k]) & _CODE
                    if a <= vmid and vmid < b:
                        coarse = k - 1
                        fine = ((vmid - a) << 6) // (b - a)
                        found = True
                        break
                if not found:
                    quality |= _TIME_BAD
        rec = out[pos + count]
        rec["channel"] = channel
        rec["pulse_index"] = count
        rec["coarse_time"] = coarse
        rec["fine_time"] = fine
        rec["time"] = coarse * 64 + fine
        rec["crossing"] = c
        rec["peak"] = vpeak
        rec["integral"] = total
        rec["integral_net"] = net
        rec["pedestal"] = ped_sum
        rec["n_over"] = n_over
        rec["quality"] = quality
        count += 1
        # re-arm: from min(c + NSA, N) on, wait for a sample below THR; resume after it
        m = hi
        while m < n_samples and (np.int64(w[m]) & _CODE) >= thr:
            m += 1
        i = m + 1
    return count


@numba.njit(parallel=True, nogil=True, cache=True)
def _fadc250_window(
    flat, n_rows, n_samples, n_ch, thr, nsb, nsa, nsat, nped_log2, maxped, channel_ids, counts, scratch
):
    """Rows of ``flat`` (row r: channel r % n_ch) into ``scratch[3 r : 3 r + 3]``."""
    for r in numba.prange(n_rows):
        ch = r % n_ch
        counts[r] = _fadc250_row(
            flat[r * n_samples : (r + 1) * n_samples],
            thr[ch],
            nsb[ch],
            nsa[ch],
            nsat[ch],
            nped_log2[ch],
            maxped[ch],
            scratch,
            r * FADC250_SLOTS,
            channel_ids[ch],
        )
