"""numba kernels: deposits -> photoelectrons -> SiPM cells -> shaped pulses -> 14-bit samples.

No validation here (see _emulator.py). Every random number comes from a counter-based stream
keyed by the hit (or by channel and sample block for dark counts and noise), so the value of
a sample does not depend on which window, chunk, channel selection or thread computes it.
Contributions to a sample are always added in the same order (hits in time order, then dark
counts by block, then noise), so results are identical bit for bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._rng import approx_normal, exponential, key_state, mix64, normal, normal_pair, poisson, uniform
from ._templates import (
    C_AP,
    C_AP_TAU,
    C_CNOISE,
    C_DARK_BASELINE,
    C_DARK_MU,
    C_GAIN,
    C_GAIN_SPREAD,
    C_LY,
    C_NCELLS,
    C_NOISE,
    C_PED,
    C_PER_PE_MAX,
    C_XT,
    DARK_BLOCK_SAMPLES,
    FINE_PER_SAMPLE,
    I_SUB,
    T_AP,
    T_CELL,
    T_MAIN,
)

NOISE_BLOCK_BITS = 12
_DARK_SALT = np.uint64(0xD1B54A32D192ED03)
_WHITE_SALT = np.uint64(0x8CB92BA72F3D8DD7)
_CORR_SALT = np.uint64(0x52DCE729DA3ED2B5)


@numba.njit(cache=True)
def _add_pulse(buf, r, s0, n, t0, t_end, amp, templates, sub, kind, span_fine, sample_ns):
    """buf[r, s - s0] += amp * templates[sub, kind, fine index of s*T - t0] for the samples s
    with t0 <= s*T < t_end.

    The fine index of the first sample after t0 is rounded once, then steps by exactly
    FINE_PER_SAMPLE: the same for every sample whichever chunk [s0, s0 + n) is rendered.
    Arrays are passed whole with indices: array views as arguments cost reference counting.
    """
    x = t0 / sample_ns
    k_ref = int(math.ceil(x))
    idx_ref = int((k_ref - x) * FINE_PER_SAMPLE + 0.5)
    k_end = min(
        int(math.ceil(t_end / sample_ns)), k_ref + (span_fine - idx_ref + FINE_PER_SAMPLE - 1) // FINE_PER_SAMPLE
    )
    lo = max(k_ref, s0)
    hi = min(k_end, s0 + n)
    idx = idx_ref + FINE_PER_SAMPLE * (lo - k_ref)
    for s in range(lo, hi):
        if idx < span_fine:
            buf[r, s - s0] += amp * templates[sub, kind, idx]
        idx += FINE_PER_SAMPLE


@numba.njit(cache=True)
def _add_pulse2(buf, r, s0, n, t0, t_end, amp, amp_ap, templates, sub, span_fine, sample_ns):
    """_add_pulse of the prompt and afterpulse templates (same timing) in one pass."""
    x = t0 / sample_ns
    k_ref = int(math.ceil(x))
    idx_ref = int((k_ref - x) * FINE_PER_SAMPLE + 0.5)
    k_end = min(
        int(math.ceil(t_end / sample_ns)), k_ref + (span_fine - idx_ref + FINE_PER_SAMPLE - 1) // FINE_PER_SAMPLE
    )
    lo = max(k_ref, s0)
    hi = min(k_end, s0 + n)
    idx = idx_ref + FINE_PER_SAMPLE * (lo - k_ref)
    for s in range(lo, hi):
        if idx < span_fine:
            buf[r, s - s0] += amp * templates[sub, T_MAIN, idx] + amp_ap * templates[sub, T_AP, idx]
        idx += FINE_PER_SAMPLE


@numba.njit(cache=True)
def _cell_group(buf, r, s0, n, t, t_end, state, chan_f, c, templates, sub, span_fine, sample_ns):
    """One fired cell at time t with its optical crosstalk cells and their afterpulses."""
    gain, gspread = chan_f[c, C_GAIN], chan_f[c, C_GAIN_SPREAD]
    xt, ap, ap_tau = chan_f[c, C_XT], chan_f[c, C_AP], chan_f[c, C_AP_TAU]
    cells = 1
    state, u = uniform(state)
    while u < xt:
        cells += 1
        state, u = uniform(state)
    for _ in range(cells):
        state, z = approx_normal(state)
        _add_pulse(buf, r, s0, n, t, t_end, gain * (1.0 + gspread * z), templates, sub, T_CELL, span_fine, sample_ns)
        state, u = uniform(state)
        if u < ap:
            state, d = exponential(state, ap_tau)
            state, z = approx_normal(state)
            _add_pulse(
                buf, r, s0, n, t + d, t_end, gain * (1.0 + gspread * z), templates, sub, T_CELL, span_fine, sample_ns
            )
    return state


@numba.njit(cache=True)
def _render_hit(
    buf,
    r,
    s0,
    n,
    t,
    e_mev,
    key,
    chan_f,
    c,
    sub,
    seed_key,
    templates,
    span_fine,
    span_ns,
    scint_tau,
    scint_cum,
    scint_rise,
    sample_ns,
):
    """Add one energy deposit of channel c to buf[r] (samples s0 .. s0+n-1)."""
    state = key_state(seed_key, key, 0)
    mu = e_mev * chan_f[c, C_LY]
    state, npe = poisson(state, mu)
    if npe == 0:
        return
    # saturation: occupancy of n_cells by npe photoelectrons (mean and variance of the
    # number of occupied cells), Gaussian approximation
    nc = chan_f[c, C_NCELLS]
    x = npe / nc
    ex = math.exp(-x)
    mean = -nc * math.expm1(-x)
    var = max(nc * ex * (1.0 - (1.0 + x) * ex), 0.0)
    state, z, z_xt = normal_pair(state)
    nf = int(math.floor(mean + math.sqrt(var) * z + 0.5))
    nf = min(max(nf, 0), npe)
    span_f = span_fine[sub, T_MAIN]
    t_end = t + span_ns[sub]
    if mu >= chan_f[c, C_PER_PE_MAX]:
        xt, ap, gain, gs = chan_f[c, C_XT], chan_f[c, C_AP], chan_f[c, C_GAIN], chan_f[c, C_GAIN_SPREAD]
        nxt = max(math.floor(nf * xt / (1.0 - xt) + math.sqrt(nf * xt) / (1.0 - xt) * z_xt + 0.5), 0.0)
        ntot = nf + nxt
        state, z, z1 = normal_pair(state)
        nap = max(math.floor(ntot * ap + math.sqrt(ntot * ap * (1.0 - ap)) * z + 0.5), 0.0)
        state, z2 = normal(state)
        amp = gain * (ntot + math.sqrt(ntot) * gs * z1)
        amp_ap = gain * (nap + math.sqrt(nap) * gs * z2)
        _add_pulse2(buf, r, s0, n, t, t_end, amp, amp_ap, templates, sub, span_f, sample_ns)
        return
    rise = scint_rise[sub]
    for _ in range(nf):
        d = 0.0
        if rise > 0.0:
            state, d = exponential(state, rise)
        state, u = uniform(state)
        k = 0
        while k < 3 and u >= scint_cum[sub, k]:
            k += 1
        state, d2 = exponential(state, scint_tau[sub, k])
        state = _cell_group(
            buf, r, s0, n, t + d + d2, t_end, state, chan_f, c, templates, sub, span_fine[sub, T_CELL], sample_ns
        )


@numba.njit(cache=True)
def _finish_channel(
    buf,
    r,
    out,
    orow,
    c,
    s0,
    n,
    chan_f,
    chan_i,
    seed_key,
    templates,
    span_fine,
    span_ns,
    white,
    corr,
    sample_ns,
    adc_max,
):
    """Dark counts, noise, pedestal and 14-bit quantisation of channel c: buf[r] -> out[orow]."""
    mu = chan_f[c, C_DARK_MU]
    if mu > 0.0:
        sub = chan_i[c, I_SUB]
        span_f = span_fine[sub, T_CELL]
        cell_span = span_ns[sub]
        block_ns = DARK_BLOCK_SAMPLES * sample_ns
        exp_mu = math.exp(-mu)
        b_lo = max(int(math.floor((s0 * sample_ns - cell_span) / block_ns)), 0)
        b_hi = int(math.floor((s0 + n) * sample_ns / block_ns))
        for b in range(b_lo, b_hi + 1):
            # Poisson by multiplication with exp(-mu) precomputed: mu is ~0.3 per block
            state = key_state(seed_key ^ _DARK_SALT, c, b)
            state, prod = uniform(state)
            nd = 0
            while prod > exp_mu:
                nd += 1
                state, u = uniform(state)
                prod *= u
            for _ in range(nd):
                state, u = uniform(state)
                t = (b + u) * block_ns
                state = _cell_group(
                    buf, r, s0, n, t, t + cell_span, state, chan_f, c, templates, sub, span_f, sample_ns
                )
    # the banks are padded with their first block_len values: no wrap-around inside a block
    bank_len = len(white) - (1 << NOISE_BLOCK_BITS)
    block_len = 1 << NOISE_BLOCK_BITS
    sw, sc = chan_f[c, C_NOISE], chan_f[c, C_CNOISE]
    ped = chan_f[c, C_PED] + chan_f[c, C_DARK_BASELINE]
    i = 0
    while i < n:
        # one noise block at a time: two hashed bank offsets, then a branch-free loop
        s = s0 + i
        blk = s >> NOISE_BLOCK_BITS
        within = s - (blk << NOISE_BLOCK_BITS)
        m = min(n - i, block_len - within)
        off_w = int(mix64(key_state(seed_key ^ _WHITE_SALT, c, blk)) % np.uint64(bank_len)) + within
        off_c = int(mix64(key_state(seed_key ^ _CORR_SALT, c, blk)) % np.uint64(bank_len)) + within
        # local 1D views: lets LLVM vectorise the loop (4x faster than 2D indexing)
        rr = buf[r, i : i + m]
        o = out[orow, i : i + m]
        w = white[off_w : off_w + m]
        k = corr[off_c : off_c + m]
        for j in range(m):
            v = ped + rr[j] + sw * w[j] + sc * k[j] + 0.5
            o[j] = np.uint16(min(max(v, 0.0), adc_max))  # floor(v + 0.5) clipped to [0, adc_max]
        i += m


@numba.njit(cache=True, parallel=True)
def render_windows(
    starts,
    n,
    sel,
    row_of,
    hit_t,
    hit_ch,
    hit_e,
    hit_key,
    chan_f,
    chan_i,
    seed_key,
    templates,
    span_fine,
    span_ns,
    scint_tau,
    scint_cum,
    scint_rise,
    lookback_ns,
    white,
    corr,
    sample_ns,
    adc_max,
    out,
):
    """Render windows [starts[e], starts[e] + n) of the channels ``sel`` into out[e, row, :]."""
    n_ev = len(starts)
    n_chunks = min(n_ev, 64)
    for chunk in numba.prange(n_chunks):
        # one buffer per chunk of events, cleared per event (no allocation per event)
        buf = np.empty((len(sel), n))
        for e in range(chunk * n_ev // n_chunks, (chunk + 1) * n_ev // n_chunks):
            s0 = starts[e]
            buf[:, :] = 0.0
            lo = np.searchsorted(hit_t, s0 * sample_ns - lookback_ns)
            hi = np.searchsorted(hit_t, (s0 + n) * sample_ns)
            for h in range(lo, hi):
                c = hit_ch[h]
                r = row_of[c]
                if r < 0:
                    continue
                _render_hit(
                    buf,
                    r,
                    s0,
                    n,
                    hit_t[h],
                    hit_e[h],
                    hit_key[h],
                    chan_f,
                    c,
                    chan_i[c, I_SUB],
                    seed_key,
                    templates,
                    span_fine,
                    span_ns,
                    scint_tau,
                    scint_cum,
                    scint_rise,
                    sample_ns,
                )
            out_e = out[e]
            for r in range(len(sel)):
                _finish_channel(
                    buf,
                    r,
                    out_e,
                    r,
                    sel[r],
                    s0,
                    n,
                    chan_f,
                    chan_i,
                    seed_key,
                    templates,
                    span_fine,
                    span_ns,
                    white,
                    corr,
                    sample_ns,
                    adc_max,
                )


@numba.njit(cache=True, parallel=True)
def render_span(
    s0,
    n,
    sel,
    hit_t,
    hit_ch,
    hit_e,
    hit_key,
    chan_f,
    chan_i,
    seed_key,
    templates,
    span_fine,
    span_ns,
    scint_tau,
    scint_cum,
    scint_rise,
    lookback_ns,
    white,
    corr,
    sample_ns,
    adc_max,
    out,
):
    """Render samples [s0, s0 + n) of the channels ``sel`` into out[row, :] (threads over channels)."""
    lo = np.searchsorted(hit_t, s0 * sample_ns - lookback_ns)
    hi = np.searchsorted(hit_t, (s0 + n) * sample_ns)
    for r in numba.prange(len(sel)):
        c = sel[r]
        buf = np.zeros((1, n))
        for h in range(lo, hi):
            if hit_ch[h] != c:
                continue
            _render_hit(
                buf,
                0,
                s0,
                n,
                hit_t[h],
                hit_e[h],
                hit_key[h],
                chan_f,
                c,
                chan_i[c, I_SUB],
                seed_key,
                templates,
                span_fine,
                span_ns,
                scint_tau,
                scint_cum,
                scint_rise,
                sample_ns,
            )
        _finish_channel(
            buf,
            0,
            out,
            r,
            c,
            s0,
            n,
            chan_f,
            chan_i,
            seed_key,
            templates,
            span_fine,
            span_ns,
            white,
            corr,
            sample_ns,
            adc_max,
        )


@numba.njit(cache=True, parallel=True)
def render_spans_bucketed(
    span_lo,
    span_hi,
    starts,
    lengths,
    offsets,
    sel,
    seg,
    hit_t,
    hit_ch,
    hit_e,
    hit_key,
    chan_f,
    chan_i,
    seed_key,
    templates,
    span_fine,
    span_ns,
    scint_tau,
    scint_cum,
    scint_rise,
    lookback_ns,
    white,
    corr,
    sample_ns,
    adc_max,
    out,
):
    """:func:`tests/sim/_render_reference.render_spans` with the hits bucketed by channel, and spans chosen per row: bit for
    bit the same samples.

    Row ``r`` (channel ``sel[r]``) renders the spans ``span_lo[r] <= j < span_hi[r]`` into
    ``out[r, offsets[j]:offsets[j] + lengths[j]]`` (the rest of the row is left as it is): the
    boards of one front-end process, each with its own active ranges, in one call. The hits
    of ``sel[r]`` are ``hit_*[seg[r]:seg[r + 1]]``, in time order (a stable sort of the
    time-ordered hits by row), so each channel looks only at its own hits, where
    ``render_spans`` (the test reference) tests every hit of every channel in a span's time range (two thirds
    of its time on a 12-channel board); the hits it renders, and their order, are the same.
    """
    for r in numba.prange(len(sel)):
        c = sel[r]
        a = seg[r]
        t_c = hit_t[a : seg[r + 1]]
        longest = 0
        for j in range(span_lo[r], span_hi[r]):
            longest = max(longest, lengths[j])
        buf = np.empty((1, longest))
        for j in range(span_lo[r], span_hi[r]):
            s0 = starts[j]
            n = lengths[j]
            buf[0, :n] = 0.0
            lo = a + np.searchsorted(t_c, s0 * sample_ns - lookback_ns)
            hi = a + np.searchsorted(t_c, (s0 + n) * sample_ns)
            for h in range(lo, hi):
                _render_hit(
                    buf,
                    0,
                    s0,
                    n,
                    hit_t[h],
                    hit_e[h],
                    hit_key[h],
                    chan_f,
                    c,
                    chan_i[c, I_SUB],
                    seed_key,
                    templates,
                    span_fine,
                    span_ns,
                    scint_tau,
                    scint_cum,
                    scint_rise,
                    sample_ns,
                )
            o = offsets[j]
            _finish_channel(
                buf,
                0,
                out[:, o : o + n],
                r,
                c,
                s0,
                n,
                chan_f,
                chan_i,
                seed_key,
                templates,
                span_fine,
                span_ns,
                white,
                corr,
                sample_ns,
                adc_max,
            )
