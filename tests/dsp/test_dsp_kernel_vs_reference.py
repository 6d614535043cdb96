"""The numba kernel equals the naive reference, field by field, on random windows and registers.

Waveforms are built to hit the corners of the spec: samples equal to T and T +- 1, the rails
0 and 16383, pulses at the window start and end, NSB + NSA == N, max_pulses reached, measured
and configured pedestal, pedestal samples above MAXPED.
"""

from __future__ import annotations

import numpy as np
from dsp_helpers import assert_records_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pokerdaq.dsp import PulseParams, QualityBits, find_pulses, find_pulses_batch
from pokerdaq.dsp._reference import find_pulses_reference

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def channel_registers(draw, n_samples: int) -> dict[str, int]:
    nsb = draw(
        st.sampled_from([0, 1, 2, 3, 63]).filter(lambda v: v < n_samples) | st.integers(0, min(63, n_samples - 1))
    )
    nsa_max = min(511, n_samples - nsb)
    nsa = draw(st.sampled_from(sorted({1, min(2, nsa_max), nsa_max, max(1, nsa_max // 2)})) | st.integers(1, nsa_max))
    nsat = draw(st.integers(1, min(15, nsa)))
    ped_mode = draw(st.integers(0, 1)) if n_samples > 1 else 1
    max_log2 = 5
    if ped_mode == 0:
        while (1 << max_log2) >= n_samples:
            max_log2 -= 1
    nped_log2 = draw(st.integers(0, max_log2))
    return dict(
        thr=draw(st.sampled_from([1, 5, 20, 100, 16383]) | st.integers(1, 16383)),
        nsb=nsb,
        nsa=nsa,
        nsat=nsat,
        nped_log2=nped_log2,
        maxped=draw(st.sampled_from([16383, 0]) | st.integers(0, 16383)),
        max_pulses=draw(st.sampled_from([0, 1, 2, 3]) | st.integers(0, 15)),
        ped_mode=ped_mode,
        ped_cfg=draw(st.integers(0, 16383)),
    )


def _channel_samples(rng: np.random.Generator, style: int, n: int, regs: dict[str, int]) -> np.ndarray:
    base = int(rng.integers(0, 16384)) if rng.random() < 0.2 else int(rng.integers(0, 1000))
    if regs["ped_mode"] == 1:
        base = regs["ped_cfg"]
    t = base + regs["thr"]  # about T
    if style == 0:  # a palette of values around T and the rails
        palette = np.array([0, 16383, base, base + 1, t - 1, t, t + 1, t + 2, t + 50, int(rng.integers(0, 16384))])
        x = palette[rng.integers(0, len(palette), n)]
    elif style == 1:  # noise plus pulses of random shape, some at the window edges
        x = base + rng.normal(0, 2, n)
        for _ in range(int(rng.integers(0, 6))):
            start = int(rng.choice([0, n - 1, n - 2, int(rng.integers(0, n))]))
            amp = float(rng.choice([regs["thr"] * 0.9, regs["thr"] * 1.2, regs["thr"] * 3, rng.uniform(0, 20000)]))
            width = int(rng.integers(1, 20))
            tt = np.arange(n) - start
            decay = np.exp(-np.clip(tt, 0, None) / max(width / 3, 0.3))
            rise = np.clip((tt + 1) / 2.0, 0, 1)
            x = x + amp * rise * decay
    elif style == 2:  # uniform random codes: many crossings, pile-up, max_pulses
        x = rng.integers(0, 16384, n)
    elif style == 3:  # a random walk: plateaus and slow crossings
        x = t + np.cumsum(rng.integers(-3, 4, n))
    else:  # runs of 1..20 equal samples around T: long runs above and below T
        levels = np.array([t - 5, t - 1, t, t + 1, t + 5, 16383, 0])
        lengths = rng.integers(1, 21, n)
        x = np.repeat(levels[rng.integers(0, len(levels), n)], lengths)[:n]
    return np.clip(np.rint(x), 0, 16383).astype(np.int64)


@st.composite
def windows(draw):
    n_samples = draw(st.sampled_from([1, 2, 3, 8, 12, 33, 64]) | st.integers(1, 200))
    n_ch = draw(st.integers(1, 4))
    regs = [draw(channel_registers(n_samples)) for _ in range(n_ch)]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rows = []
    for r in regs:
        style = draw(st.integers(0, 4))
        x = _channel_samples(rng, style, n_samples, r)
        if r["ped_mode"] == 0 and draw(st.booleans()):
            # a calm pedestal, so that T sits where the palette put it
            nped = 1 << r["nped_log2"]
            x[:nped] = np.clip(int(x[nped:].min(initial=400)) - 1, 0, 16383)
        rows.append(x)
    params = PulseParams(**{k: np.array([r[k] for r in regs]) for k in regs[0]})
    return np.array(rows, dtype=np.uint16), params


@SETTINGS
@given(windows())
def test_kernel_equals_reference(case):
    samples, params = case
    got = find_pulses(samples, params)
    want = find_pulses_reference(samples, params)
    assert_records_equal(got, want, f"registers {params}")


@SETTINGS
@given(windows(), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_batch_equals_reference_per_event(case, n_events, seed):
    samples, params = case
    rng = np.random.default_rng(seed)
    events = np.stack([samples] + [rng.permutation(samples, axis=1) for _ in range(n_events - 1)])
    ids = np.arange(samples.shape[0]) * 7 + 3
    records, offsets = find_pulses_batch(events, params, channel_ids=ids)
    assert offsets[0] == 0 and offsets[-1] == len(records)
    for e in range(n_events):
        assert_records_equal(
            records[offsets[e] : offsets[e + 1]],
            find_pulses_reference(events[e], params, channel_ids=ids),
            f"event {e}",
        )


def test_generator_reaches_the_corners():
    """The strategies above do produce the cases they claim to (guards against a weak search)."""
    seen = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(8, 64))
        regs = dict(
            thr=20,
            nsb=2,
            nsa=6,
            nsat=2,
            nped_log2=2,
            maxped=450,
            max_pulses=int(rng.integers(1, 3)),
            ped_mode=int(rng.integers(0, 2)),
            ped_cfg=400,
        )
        x = _channel_samples(rng, int(rng.integers(0, 5)), n, regs)
        params = PulseParams.uniform(1, **regs)
        for rec in find_pulses_reference(x[None, :].astype(np.uint16), params):
            seen |= int(rec["quality"])
    for bit in (
        "PEDESTAL_BAD",
        "NSA_BEYOND_WINDOW",
        "NSB_BEFORE_WINDOW",
        "OVERFLOW",
        "UNDERFLOW",
        "PEAK_BEYOND_NSA",
        "PEAK_NOT_FOUND",
        "TIME_BAD",
        "PILEUP",
        "MORE_PULSES",
    ):
        assert seen & getattr(QualityBits, bit), bit


def test_rows_with_more_pulses_than_the_screen_keeps():
    """The screen keeps the first ROW_CROSSINGS crossings of a row; rows with more pulses are
    scanned again. A block of rows measures one record per row into its scratch part, and
    the rows after it fills up are measured afterwards. All paths, and MORE_PULSES after
    either, equal the reference (40 events: blocks of several rows that fill up midway)."""
    from pokerdaq.dsp._kernel import ROW_CROSSINGS

    n = 96
    rng = np.random.default_rng(7)
    rows = []
    for n_pulses in range(ROW_CROSSINGS - 1, ROW_CROSSINGS + 4):
        x = 400 + rng.integers(-2, 3, n)
        for c in np.linspace(10, n - 8, n_pulses).astype(int):
            x[c : c + 4] += np.array([60, 200, 120, 40])
        rows.append(x)
    samples = np.array(rows, dtype=np.uint16)
    for max_pulses in (0, ROW_CROSSINGS, ROW_CROSSINGS + 1, 15):
        params = PulseParams.uniform(
            len(rows), thr=20, nsb=2, nsa=6, nsat=2, nped_log2=3, max_pulses=max_pulses, ped_mode=0
        )
        want = find_pulses_reference(samples, params)
        per_row = np.bincount(want["channel"], minlength=len(rows))
        assert per_row.min() <= ROW_CROSSINGS
        if max_pulses == ROW_CROSSINGS:  # kept crossings all reported, a further one found
            assert (want["quality"] & QualityBits.MORE_PULSES).any()
        else:
            assert per_row.max() > ROW_CROSSINGS
        assert_records_equal(find_pulses(samples, params), want, f"max_pulses {max_pulses}")
        events = np.stack([samples if e % 2 else np.zeros_like(samples) + 400 for e in range(40)])
        batch, offsets = find_pulses_batch(events, params)
        assert offsets[-1] == len(batch) == 20 * len(want)
        for e in range(40):
            assert_records_equal(
                batch[offsets[e] : offsets[e + 1]],
                want if e % 2 else want[:0],
                f"batch event {e}, max_pulses {max_pulses}",
            )
