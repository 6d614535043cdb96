"""The span renderer before the hits were bucketed by channel: the reference that
:func:`pokerdaq.sim._waveform.render_spans_bucketed` must equal bit for bit (test_random_access.py).

Every hit of every channel in a span's time range is tested against each row; the production
kernel scans only each channel's own hits.
"""

import numba
import numpy as np

from pokerdaq.sim._templates import I_SUB
from pokerdaq.sim._waveform import _finish_channel, _render_hit


@numba.njit(cache=True, parallel=True)
def render_spans(
    starts,
    lengths,
    offsets,
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
    """Render the spans [starts[j], starts[j] + lengths[j]) of the channels ``sel`` into
    out[row, offsets[j]:offsets[j] + lengths[j]] (threads over channels).

    Each span is rendered exactly as :func:`render_span` renders it (same hits in the same
    order, same buffer arithmetic): the samples equal those of the stream bit for bit.
    """
    n_spans = len(starts)
    longest = 0
    for j in range(n_spans):
        longest = max(longest, lengths[j])
    for r in numba.prange(len(sel)):
        c = sel[r]
        buf = np.empty((1, longest))
        for j in range(n_spans):
            s0 = starts[j]
            n = lengths[j]
            buf[0, :n] = 0.0
            lo = np.searchsorted(hit_t, s0 * sample_ns - lookback_ns)
            hi = np.searchsorted(hit_t, (s0 + n) * sample_ns)
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
