"""numba kernels of the pulse finder (docs/firmware-spec.md Part 1). No validation here.

One scan function, :func:`_scan_row`, walks one channel's samples and finds its pulses, and
:func:`_write_pulse` measures one pulse.

Window mode, :func:`_window_find`: per row the pedestal, T and a vectorised row maximum; only
rows with a sample above T are scanned (windows of at most 64 samples with a u64 above-T
mask, :func:`_count_short_row`), and their pulses measured at once, while the row is in the
cache, into per-block scratch records that :func:`_window_gather` copies to the output.
Rows after a block's scratch filled up are measured by :func:`_window_measure`.

Stream mode, :func:`_stream_pass`: a counting pass (``write = False``) that sizes the output
and notes every crossing, then a filling pass that measures the pulses at those crossings.

Positions inside the kernels are local indices into the row handed in; ``base`` is the
absolute sample number of local index 0 (0 in window mode).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from ._records import QualityBits

_PEDESTAL_BAD = QualityBits.PEDESTAL_BAD
_NSA_BEYOND_WINDOW = QualityBits.NSA_BEYOND_WINDOW
_NSB_BEFORE_WINDOW = QualityBits.NSB_BEFORE_WINDOW
_OVERFLOW = QualityBits.OVERFLOW
_UNDERFLOW = QualityBits.UNDERFLOW
_PEAK_BEYOND_NSA = QualityBits.PEAK_BEYOND_NSA
_PEAK_NOT_FOUND = QualityBits.PEAK_NOT_FOUND
_TIME_BAD = QualityBits.TIME_BAD
_PILEUP = QualityBits.PILEUP
_MORE_PULSES = QualityBits.MORE_PULSES

_SKIP = 64
"""Samples tested at once while skipping runs below or above T (a vectorised u16 maximum or
minimum over a view of 64; on a quiet stream 8 was 2x slower, 32 about 8 % slower)."""

STREAM_HISTORY = 576
"""Samples a stream keeps per channel between chunks: NSB (63) + NSA (511) + 1 for x[c-1],
rounded up. An undecided pulse starts at most NSA - 1 samples before the chunk end."""


@numba.njit(nogil=True, cache=True)
def _write_pulse(
    x,
    c,
    lo_limit,
    end,
    thr_abs,
    ped,
    ped_sum,
    nped_log2,
    nsb,
    nsa,
    quality,
    out,
    k,
    channel,
    base,
    index,
    above,
    have_above,
    adc_max,
):
    """Measure the confirmed pulse with crossing ``c`` and write it to ``out[k]``.

    ``have_above``: ``above`` is the u64 mask of :func:`_count_short_row` (bit n: x[n] > T)
    of a window of at most 64 samples, which gives the run above T and the pile-up without
    walking the samples."""
    open_end = min(c + nsa, end)
    pileup = False
    if have_above:
        one = np.uint64(1)
        # 1.8 the run of ones from bit c on (x[c] > T by definition; bits >= N are 0, and
        # c >= 1, so the shifted complement has a set bit)
        n_over = min(np.int64(trailing_zeros(~(above >> np.uint64(c)))), open_end - c)
        # 1.4 pile-up: a rising edge of the mask at n in (c, open_end)
        n_bits = open_end - c - 1
        if n_bits > 0:
            edges = above & ~(above << one)
            pileup = (edges >> np.uint64(c + 1)) & ((one << np.uint64(n_bits)) - one) != 0
    else:
        # two short loops over the open range (c, c + NSA) rather than one branchy walk:
        # 1.8 the run of samples above T from the crossing on (x[c] > T by definition)
        n = c + 1
        while n < open_end and x[n] > thr_abs:
            n += 1
        n_over = n - c
        # 1.4 pile-up: a further candidate crossing x[n-1] <= T < x[n]; after the run above
        # T, branch-free (vectorised)
        for i in range(n + 1, open_end):
            pileup |= (x[i - 1] <= thr_abs) & (x[i] > thr_abs)
    if pileup:
        quality |= _PILEUP
    # 1.5 peak: the sample before the first falling one
    p = c + 1
    while p < open_end and x[p] >= x[p - 1]:
        p += 1
    if p < open_end:
        p -= 1
    else:
        quality |= _PEAK_BEYOND_NSA if c + nsa <= end else _PEAK_NOT_FOUND
        p = c
        for i in range(c + 1, open_end):
            if x[i] > x[p]:
                p = i
    vpeak = np.int64(x[p])
    # 1.6 integral over [c - NSB, c + NSA), clipped to the samples that exist
    lo = c - nsb
    if lo < lo_limit:
        lo = lo_limit
        quality |= _NSB_BEFORE_WINDOW
    hi = c + nsa
    if hi > end:
        hi = end
        quality |= _NSA_BEYOND_WINDOW
    # u32 sum (at most 574 samples of 65535) and the range, vectorised
    acc = np.uint32(0)
    low = np.uint16(0xFFFF)
    high = np.uint16(0)
    for i in range(lo, hi):
        v = x[i]
        acc += v
        low = min(low, v)
        high = max(high, v)
    if np.int64(high) == adc_max:  # the digitizer's upper rail, (1 << adc_bits) - 1
        quality |= _OVERFLOW
    if low == 0:
        quality |= _UNDERFLOW
    total = np.int64(acc)
    net = total - ((ped_sum * (hi - lo)) >> nped_log2)
    # 1.7 time: walk back from the peak to the pair straddling VMID
    vmid = (ped + vpeak) >> 1
    coarse = c
    fine = 0
    found = False
    for kk in range(p, lo, -1):
        a = np.int64(x[kk - 1])
        b = np.int64(x[kk])
        if a <= vmid and vmid < b:
            coarse = kk - 1
            fine = ((vmid - a) << 6) // (b - a)
            found = True
            break
    if not found:
        quality |= _TIME_BAD
    rec = out[k]
    rec["channel"] = channel
    rec["pulse_index"] = index & 0xFF
    rec["coarse_time"] = base + coarse
    rec["fine_time"] = fine
    rec["time"] = (base + coarse) * 64 + fine
    rec["crossing"] = base + c
    rec["peak"] = vpeak
    rec["integral"] = total
    rec["integral_net"] = net
    rec["pedestal"] = ped_sum
    rec["n_over"] = min(n_over, 65535)
    rec["quality"] = quality


@numba.njit(nogil=True, cache=True)
def _scan_row(
    x,
    lo_limit,
    start,
    end,
    final,
    thr_abs,
    ped,
    ped_sum,
    nped_log2,
    nsb,
    nsa,
    nsat,
    max_pulses,
    quality,
    write,
    out,
    pos,
    channel,
    base,
    index0,
    crossings,
    adc_max,
):
    """Find the pulses of one row, candidates tested at ``start .. end-1`` (1.4, 1.9).

    ``final``: the row ends at ``end`` (window mode, or the end of a stream); otherwise a
    candidate or pulse that needs samples beyond ``end`` stops the scan and is retried
    with the next chunk. ``write``: measure the pulses into ``out[pos:]``; otherwise only
    count them, and note the crossings of the first ``len(crossings)`` in ``crossings``.
    Returns (pulses, local position where the search resumes, a pulse beyond MAX_PULSES).
    """
    count = 0
    n = start
    while n < end:
        if x[n] <= thr_abs:
            # a sample at or below T is no candidate: skip the run of them, _SKIP samples at
            # a time (a fixed-length maximum, vectorised), then one by one
            n += 1
            while n + _SKIP <= end:
                w = x[n : n + _SKIP]  # a view indexed from 0: no wraparound, vectorised
                m = w[0]
                for i in range(_SKIP):
                    m = max(m, w[i])
                if m > thr_abs:
                    break
                n += _SKIP
            while n < end and x[n] <= thr_abs:
                n += 1
            continue
        if x[n - 1] > thr_abs:
            # above T on both sides, no candidate: skip to the next sample at or below T,
            # _SKIP samples at a time (a fixed-length minimum), then one by one
            n += 1
            while n + _SKIP <= end:
                w = x[n : n + _SKIP]
                m = w[0]
                for i in range(_SKIP):
                    m = min(m, w[i])
                if m <= thr_abs:
                    break
                n += _SKIP
            while n < end and x[n] > thr_abs:
                n += 1
            continue
        c = n
        if c + nsat > end:
            if final:
                return count, end, False  # unconfirmable, and so is every later candidate
            return count, c, False
        m = c + 1
        confirmed = True
        while m < c + nsat:
            if x[m] <= thr_abs:
                confirmed = False
                break
            m += 1
        if not confirmed:
            n = m + 1  # x[m] <= T: no candidate in (c, m], the next test is at m + 1
            continue
        if not final and c + nsa > end:
            return count, c, False
        if max_pulses > 0 and count == max_pulses:
            if write:
                prev = out[pos + count - 1]
                prev["quality"] = prev["quality"] | _MORE_PULSES
            return count, end, True
        if write:
            _write_pulse(
                x,
                c,
                lo_limit,
                end,
                thr_abs,
                ped,
                ped_sum,
                nped_log2,
                nsb,
                nsa,
                quality,
                out,
                pos + count,
                channel,
                base,
                index0 + count,
                np.uint64(0),
                False,
                adc_max,
            )
        elif count < crossings.shape[0]:
            crossings[count] = c
        count += 1
        n = c + nsa
    return count, n, False


ROW_CROSSINGS = 4
"""Crossings the screen keeps per row, so that a row's pulses are measured without a second
scan (rows with more pulses are scanned again)."""


@numba.njit(nogil=True, cache=True)
def _count_short_row(x, start, thr_abs, nsa, nsat, max_pulses, crossings):
    """:func:`_scan_row` counting a whole window of at most 64 samples, without branches
    per sample: bit n of a u64 mask says x[n] > T, candidates (1.4) are the rising edges of
    that mask from ``start`` on, confirmed where NSAT bits in a row are set (bits past the
    window are 0: a candidate too close to the end is not confirmed); the pulses are then
    taken in order, each hiding the candidates of its open range.
    Returns (pulses, a pulse beyond MAX_PULSES, the mask)."""
    one = np.uint64(1)
    above = np.uint64(0)
    for i in range(x.shape[0]):
        above |= np.uint64(x[i] > thr_abs) << np.uint64(i)
    confirmed = above & ~(above << one) & ~((one << np.uint64(start)) - one)
    for j in range(1, nsat):
        confirmed &= above >> np.uint64(j)
    count = 0
    while confirmed != 0:
        if max_pulses > 0 and count == max_pulses:
            return count, True, above
        c = np.int64(trailing_zeros(confirmed))
        if count < crossings.shape[0]:
            crossings[count] = c
        count += 1
        resume = c + nsa
        if resume >= 64:
            break
        confirmed &= ~((one << np.uint64(resume)) - one)
    return count, False, above


@numba.njit(nogil=True, cache=True)
def _measure_row(
    x,
    ch,
    thr,
    nsb,
    nsa,
    nsat,
    nped_log2,
    maxped,
    max_pulses,
    ped_mode,
    ped_cfg,
    found,
    beyond,
    crossings,
    out,
    pos,
    channel_ids,
    above,
    have_above,
    adc_max,
):
    """Write the ``found`` pulses of window row ``x`` (channel ``ch``) to ``out[pos:]``, at
    the ``crossings`` the screen noted, or by a second scan when there were more."""
    log2 = nped_log2[ch]
    quality = 0
    if ped_mode[ch] == 0:
        ped_sum = np.int64(0)
        head_max = np.uint16(0)
        for i in range(np.int64(1) << log2):
            v = x[i]
            ped_sum += v
            head_max = max(head_max, v)
        if head_max > maxped[ch]:
            quality = _PEDESTAL_BAD
        start = (np.int64(1) << log2) + 1
    else:
        ped_sum = ped_cfg[ch] << log2
        start = np.int64(1)
    ped = ped_sum >> log2
    thr_abs = ped + thr[ch]
    n_samples = x.shape[0]
    if found > crossings.shape[0]:
        _scan_row(
            x,
            0,
            start,
            n_samples,
            True,
            thr_abs,
            ped,
            ped_sum,
            log2,
            nsb[ch],
            nsa[ch],
            nsat[ch],
            max_pulses[ch],
            quality,
            True,
            out,
            pos,
            channel_ids[ch],
            np.int64(0),
            np.int64(0),
            crossings,
            adc_max,
        )
        return
    for k in range(found):
        _write_pulse(
            x,
            np.int64(crossings[k]),
            0,
            n_samples,
            thr_abs,
            ped,
            ped_sum,
            log2,
            nsb[ch],
            nsa[ch],
            quality,
            out,
            pos + k,
            channel_ids[ch],
            np.int64(0),
            np.int64(k),
            above,
            have_above,
            adc_max,
        )
    if beyond:
        last = out[pos + found - 1]
        last["quality"] = last["quality"] | _MORE_PULSES


@numba.njit(parallel=True, nogil=True, cache=True)
def _window_find(
    flat,
    n_rows,
    n_samples,
    n_ch,
    block,
    thr,
    nsb,
    nsa,
    nsat,
    nped_log2,
    maxped,
    max_pulses,
    ped_mode,
    ped_cfg,
    channel_ids,
    counts,
    more,
    crossings,
    block_max,
    scratch,
    block_filled,
    block_stop,
    adc_max,
):
    """Window mode over the rows of ``flat`` (rows of ``n_samples``; row r: the registers of
    channel r % n_ch), in blocks of ``block`` consecutive rows per thread task.

    Per row: the pedestal and T (1.3), the largest sample (a vectorised u16 maximum), and only
    when that is above T a scan (1.4, 1.9) giving ``counts[r]``, ``more[r]`` (a pulse beyond
    MAX_PULSES) and the first crossings ``crossings[r]``; the row's pulses are measured at
    once, while the row is in the cache, into block b's part of ``scratch`` (``block``
    records from ``b * block`` on). ``block_filled[b]``: records written there; when they
    would not fit, ``block_stop[b]`` is the first row not measured (otherwise the block's
    end), and the caller measures the rest with :func:`_window_measure`. ``block_max[b]``:
    the largest sample of the block, which the caller checks against ``adc_max``.
    """
    n_blocks = (n_rows + block - 1) // block
    for b in numba.prange(n_blocks):
        first = b * block
        last = min(first + block, n_rows)
        ch = first % n_ch
        bmax = np.uint16(0)
        filled = 0
        stop = last
        for r in range(first, last):
            # unsigned indices into flat: no negative-index wraparound in the loops below,
            # which vectorise (cheaper than a view per row)
            o = np.uint64(r * n_samples)
            log2 = nped_log2[ch]
            if ped_mode[ch] == 0:
                acc = np.uint32(0)  # u32: the sum of 32 u14 samples fits, and vectorises
                for i in range(np.uint64(1) << np.uint64(log2)):
                    acc += flat[o + i]
                ped_sum = np.int64(acc)
                start = (np.int64(1) << log2) + 1
            else:
                ped_sum = ped_cfg[ch] << log2
                start = np.int64(1)
            ped = ped_sum >> log2
            thr_abs = ped + thr[ch]
            m = np.uint16(0)
            for i in range(np.uint64(n_samples)):  # whole row, u16 lanes: vectorised
                m = max(m, flat[o + i])
            bmax = max(bmax, m)
            found = 0
            if np.int64(m) > thr_abs:
                x = flat[r * n_samples : (r + 1) * n_samples]
                row_crossings = crossings[r]
                if n_samples <= 64:
                    found, beyond, above = _count_short_row(
                        x, start, thr_abs, nsa[ch], nsat[ch], max_pulses[ch], row_crossings
                    )
                    have_above = True
                else:
                    found, _, beyond = _scan_row(
                        x,
                        0,
                        start,
                        n_samples,
                        True,
                        thr_abs,
                        ped,
                        ped_sum,
                        log2,
                        nsb[ch],
                        nsa[ch],
                        nsat[ch],
                        max_pulses[ch],
                        0,
                        False,
                        scratch,
                        0,
                        0,
                        np.int64(0),
                        np.int64(0),
                        row_crossings,
                        adc_max,
                    )
                    above = np.uint64(0)
                    have_above = False
                if found > 0 and stop == last:
                    if filled + found <= block:
                        _measure_row(
                            x,
                            ch,
                            thr,
                            nsb,
                            nsa,
                            nsat,
                            nped_log2,
                            maxped,
                            max_pulses,
                            ped_mode,
                            ped_cfg,
                            found,
                            beyond,
                            row_crossings,
                            scratch,
                            first + filled,
                            channel_ids,
                            above,
                            have_above,
                            adc_max,
                        )
                        filled += found
                    else:
                        stop = r
                more[r] = beyond  # read only where counts[r] > 0
            counts[r] = found
            ch += 1
            if ch == n_ch:
                ch = 0
        block_max[b] = bmax
        block_filled[b] = filled
        block_stop[b] = stop


@numba.njit(parallel=True, nogil=True, cache=True)
def _window_gather(scratch_bytes, block_bytes, block_filled_bytes, offsets_bytes, out_bytes):
    """Copy each block's measured records (bytes ``[b * block_bytes, + filled)`` of the
    scratch) to ``out_bytes[offsets_bytes[b]:]``."""
    for b in numba.prange(block_filled_bytes.shape[0]):
        src = b * block_bytes
        dst = offsets_bytes[b]
        n = block_filled_bytes[b]
        out_bytes[dst : dst + n] = scratch_bytes[src : src + n]  # a slice copy: memcpy speed


@numba.njit(parallel=True, nogil=True, cache=True)
def _window_measure(
    flat,
    n_samples,
    n_ch,
    rows,
    offsets,
    thr,
    nsb,
    nsa,
    nsat,
    nped_log2,
    maxped,
    max_pulses,
    ped_mode,
    ped_cfg,
    counts,
    more,
    crossings,
    out,
    channel_ids,
    adc_max,
):
    """Measure the pulses of ``rows`` (rows with pulses that the screen did not measure)
    into ``out[offsets[j]:]``."""
    for j in numba.prange(rows.shape[0]):
        r = np.int64(rows[j])
        _measure_row(
            flat[r * n_samples : (r + 1) * n_samples],
            r % n_ch,
            thr,
            nsb,
            nsa,
            nsat,
            nped_log2,
            maxped,
            max_pulses,
            ped_mode,
            ped_cfg,
            counts[r],
            more[r],
            crossings[r],
            out,
            offsets[j],
            channel_ids,
            np.uint64(0),
            False,
            adc_max,
        )


@numba.njit(parallel=True, nogil=True, cache=True)
def _stream_pass(
    x,
    base,
    lo_limit,
    end,
    final,
    thr,
    nsb,
    nsa,
    nsat,
    nped_log2,
    ped_cfg,
    next_n,
    n_pulses,
    write,
    counts,
    resume,
    offsets,
    out,
    channel_ids,
    crossings,
    adc_max,
):
    """Stream mode (configured pedestal, unlimited pulses) over one row per channel.

    ``x[ch, :end]`` holds the samples ``base .. base+end-1`` of channel ch (history, then the
    new chunk); ``next_n[ch]`` is the absolute position of the next candidate test.
    Counting pass (``write`` False): ``counts[ch]`` pulses, their local crossings in
    ``crossings[ch]`` (room for all of them), ``resume[ch]``. Filling pass: the pulses are
    measured at those crossings into ``out[offsets[ch]:]``, without a second scan.
    """
    n_ch = x.shape[0]
    for ch in numba.prange(n_ch):
        if write and counts[ch] == 0:
            continue
        log2 = np.int64(nped_log2[ch])
        ped_sum = np.int64(ped_cfg[ch]) << log2
        ped = ped_sum >> log2
        thr_abs = ped + thr[ch]
        if write:
            for k in range(counts[ch]):
                _write_pulse(
                    x[ch],
                    np.int64(crossings[ch, k]),
                    lo_limit,
                    end,
                    thr_abs,
                    ped,
                    ped_sum,
                    log2,
                    nsb[ch],
                    nsa[ch],
                    0,
                    out,
                    offsets[ch] + k,
                    channel_ids[ch],
                    base,
                    n_pulses[ch] + k,
                    np.uint64(0),
                    False,
                    adc_max,
                )
            continue
        found, stop, _ = _scan_row(
            x[ch],
            lo_limit,
            next_n[ch] - base,
            end,
            final,
            thr_abs,
            ped,
            ped_sum,
            log2,
            nsb[ch],
            nsa[ch],
            nsat[ch],
            np.int64(0),
            0,
            False,
            out,
            0,
            channel_ids[ch],
            base,
            n_pulses[ch],
            crossings[ch],
            adc_max,
        )
        counts[ch] = found
        resume[ch] = base + stop
