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

from ._rng import exponential, key_state, mix64, normal, poisson, uniform
from ._templates import (
    C_AP, C_AP_TAU, C_CNOISE, C_DARK_MU, C_GAIN, C_GAIN_SPREAD, C_LY, C_NCELLS, C_NOISE, C_PED, C_XT,
    DARK_BLOCK_SAMPLES, FINE_PER_NS, I_SUB, T_AP, T_CELL, T_MAIN,
)

PE_TEMPLATE_MIN = 50.0
"""Mean photoelectron count from which a deposit is rendered with the averaged template
(fluctuated amplitude) instead of photoelectron by photoelectron."""

NOISE_BLOCK_BITS = 12
_DARK_SALT = np.uint64(0xD1B54A32D192ED03)
_WHITE_SALT = np.uint64(0x8CB92BA72F3D8DD7)
_CORR_SALT = np.uint64(0x52DCE729DA3ED2B5)


@numba.njit(cache=True)
def _add_pulse(row, s0, n, t0, t_end, amp, tmpl, span_fine, sample_ns):
    """row[s - s0] += amp * tmpl[(s*T - t0) on the fine grid] for samples s with t0 <= s*T < t_end."""
    first = max(int(math.ceil(t0 / sample_ns)), s0)
    last = min(int(math.floor(t_end / sample_ns)) + 1, s0 + n)
    for s in range(first, last):
        ts = s * sample_ns
        if ts < t0 or ts >= t_end:
            continue
        idx = int((ts - t0) * FINE_PER_NS + 0.5)
        if idx < span_fine:
            row[s - s0] += amp * tmpl[idx]


@numba.njit(cache=True)
def _cell_group(row, s0, n, t, t_end, state, cf, tmpl_cell, span_fine, sample_ns):
    """One fired cell at time t with its optical crosstalk cells and their afterpulses."""
    gain, gspread, xt, ap, ap_tau = cf[C_GAIN], cf[C_GAIN_SPREAD], cf[C_XT], cf[C_AP], cf[C_AP_TAU]
    cells = 1
    state, u = uniform(state)
    while u < xt:
        cells += 1
        state, u = uniform(state)
    for _ in range(cells):
        state, z = normal(state)
        _add_pulse(row, s0, n, t, t_end, gain * (1.0 + gspread * z), tmpl_cell, span_fine, sample_ns)
        state, u = uniform(state)
        if u < ap:
            state, d = exponential(state, ap_tau)
            state, z = normal(state)
            _add_pulse(row, s0, n, t + d, t_end, gain * (1.0 + gspread * z), tmpl_cell, span_fine, sample_ns)
    return state


@numba.njit(cache=True)
def _render_hit(row, s0, n, t, e_mev, key, cf, sub, seed_key, templates, span_fine, span_ns,
                scint_tau, scint_cum, scint_rise, sample_ns):
    """Add one energy deposit of one channel to ``row`` (samples s0 .. s0+n-1)."""
    state = key_state(seed_key, key, 0)
    mu = e_mev * cf[C_LY]
    state, npe = poisson(state, mu)
    if npe == 0:
        return
    # saturation: occupancy of n_cells by npe photoelectrons (mean and variance of the
    # number of occupied cells), Gaussian approximation
    nc = cf[C_NCELLS]
    x = npe / nc
    ex = math.exp(-x)
    mean = -nc * math.expm1(-x)
    var = max(nc * ex * (1.0 - (1.0 + x) * ex), 0.0)
    state, z = normal(state)
    nf = int(math.floor(mean + math.sqrt(var) * z + 0.5))
    nf = min(max(nf, 0), npe)
    span_f = span_fine[sub]
    t_end = t + span_ns[sub]
    if mu >= PE_TEMPLATE_MIN:
        xt, ap, gain, gs = cf[C_XT], cf[C_AP], cf[C_GAIN], cf[C_GAIN_SPREAD]
        state, z = normal(state)
        nxt = max(math.floor(nf * xt / (1.0 - xt) + math.sqrt(nf * xt) / (1.0 - xt) * z + 0.5), 0.0)
        ntot = nf + nxt
        state, z = normal(state)
        nap = max(math.floor(ntot * ap + math.sqrt(ntot * ap * (1.0 - ap)) * z + 0.5), 0.0)
        state, z1 = normal(state)
        state, z2 = normal(state)
        amp = gain * (ntot + math.sqrt(ntot) * gs * z1)
        _add_pulse(row, s0, n, t, t_end, amp, templates[sub, T_MAIN], span_f, sample_ns)
        if nap > 0.0:
            amp_ap = gain * (nap + math.sqrt(nap) * gs * z2)
            _add_pulse(row, s0, n, t, t_end, amp_ap, templates[sub, T_AP], span_f, sample_ns)
        return
    rise = scint_rise[sub]
    tmpl_cell = templates[sub, T_CELL]
    for _ in range(nf):
        d = 0.0
        if rise > 0.0:
            state, d = exponential(state, rise)
        state, u = uniform(state)
        k = 0
        while k < 3 and u >= scint_cum[sub, k]:
            k += 1
        state, d2 = exponential(state, scint_tau[sub, k])
        state = _cell_group(row, s0, n, t + d + d2, t_end, state, cf, tmpl_cell, span_f, sample_ns)


@numba.njit(cache=True)
def _finish_channel(row, out, c, s0, n, cf, ci, seed_key, templates, span_fine, span_ns,
                    white, corr, sample_ns, adc_max):
    """Dark counts, noise, pedestal and 14-bit quantisation of one channel."""
    sub = ci[I_SUB]
    span_f = span_fine[sub]
    cell_span = span_ns[sub]
    tmpl_cell = templates[sub, T_CELL]
    block_ns = DARK_BLOCK_SAMPLES * sample_ns
    mu = cf[C_DARK_MU]
    if mu > 0.0:
        b_lo = max(int(math.floor((s0 * sample_ns - cell_span) / block_ns)), 0)
        b_hi = int(math.floor((s0 + n) * sample_ns / block_ns))
        for b in range(b_lo, b_hi + 1):
            state = key_state(seed_key ^ _DARK_SALT, c, b)
            state, nd = poisson(state, mu)
            for _ in range(nd):
                state, u = uniform(state)
                t = (b + u) * block_ns
                state = _cell_group(row, s0, n, t, t + cell_span, state, cf, tmpl_cell, span_f, sample_ns)
    bank_mask = np.uint64(len(white) - 1)
    block_mask = (1 << NOISE_BLOCK_BITS) - 1
    sw, sc, ped = cf[C_NOISE], cf[C_CNOISE], cf[C_PED]
    blk = -1
    off_w = np.uint64(0)
    off_c = np.uint64(0)
    for i in range(n):
        s = s0 + i
        if (s >> NOISE_BLOCK_BITS) != blk:
            blk = s >> NOISE_BLOCK_BITS
            off_w = mix64(key_state(seed_key ^ _WHITE_SALT, c, blk))
            off_c = mix64(key_state(seed_key ^ _CORR_SALT, c, blk))
        within = np.uint64(s & block_mask)
        v = ped + row[i] + sw * white[(off_w + within) & bank_mask] + sc * corr[(off_c + within) & bank_mask]
        q = math.floor(v + 0.5)
        if q < 0.0:
            q = 0.0
        elif q > adc_max:
            q = adc_max
        out[i] = np.uint16(q)


@numba.njit(cache=True, parallel=True)
def render_windows(starts, n, sel, row_of, hit_t, hit_ch, hit_e, hit_key, chan_f, chan_i, seed_key,
                   templates, span_fine, span_ns, scint_tau, scint_cum, scint_rise, lookback_ns,
                   white, corr, sample_ns, adc_max, out):
    """Render windows [starts[e], starts[e] + n) of the channels ``sel`` into out[e, row, :]."""
    for e in numba.prange(len(starts)):
        s0 = starts[e]
        buf = np.zeros((len(sel), n))
        lo = np.searchsorted(hit_t, s0 * sample_ns - lookback_ns)
        hi = np.searchsorted(hit_t, (s0 + n) * sample_ns)
        for h in range(lo, hi):
            c = hit_ch[h]
            r = row_of[c]
            if r < 0:
                continue
            _render_hit(buf[r], s0, n, hit_t[h], hit_e[h], hit_key[h], chan_f[c], chan_i[c, I_SUB], seed_key,
                        templates, span_fine, span_ns, scint_tau, scint_cum, scint_rise, sample_ns)
        for r in range(len(sel)):
            c = sel[r]
            _finish_channel(buf[r], out[e, r], c, s0, n, chan_f[c], chan_i[c], seed_key, templates,
                            span_fine, span_ns, white, corr, sample_ns, adc_max)


@numba.njit(cache=True, parallel=True)
def render_span(s0, n, sel, hit_t, hit_ch, hit_e, hit_key, chan_f, chan_i, seed_key,
                templates, span_fine, span_ns, scint_tau, scint_cum, scint_rise, lookback_ns,
                white, corr, sample_ns, adc_max, out):
    """Render samples [s0, s0 + n) of the channels ``sel`` into out[row, :] (threads over channels)."""
    lo = np.searchsorted(hit_t, s0 * sample_ns - lookback_ns)
    hi = np.searchsorted(hit_t, (s0 + n) * sample_ns)
    for r in numba.prange(len(sel)):
        c = sel[r]
        buf = np.zeros(n)
        for h in range(lo, hi):
            if hit_ch[h] != c:
                continue
            _render_hit(buf, s0, n, hit_t[h], hit_e[h], hit_key[h], chan_f[c], chan_i[c, I_SUB], seed_key,
                        templates, span_fine, span_ns, scint_tau, scint_cum, scint_rise, sample_ns)
        _finish_channel(buf, out[r], c, s0, n, chan_f[c], chan_i[c], seed_key, templates,
                        span_fine, span_ns, white, corr, sample_ns, adc_max)
