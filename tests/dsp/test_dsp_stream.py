"""Stream mode: pulses do not depend on where the stream is cut (docs/firmware-spec.md 1.1)."""

from __future__ import annotations

import numpy as np
from dsp_helpers import assert_records_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pokerdaq.dsp import PulseParams, PulseStream, find_pulses
from pokerdaq.dsp._reference import find_pulses_reference


def _stream_samples(rng: np.random.Generator, n_ch: int, n: int, ped: int, thr: int) -> np.ndarray:
    """Noise around the pedestal with pulses of random height and length, some at T exactly."""
    x = ped + rng.integers(-2, 3, (n_ch, n))
    for ch in range(n_ch):
        for start in np.flatnonzero(rng.random(n) < 0.04):
            length = int(rng.integers(1, 40))
            height = int(rng.choice([thr, thr + 1, 3 * thr, int(rng.integers(0, 17000))]))
            shape = height * np.exp(-np.arange(length) / max(1.0, length / 4))
            end = min(n, start + length)
            x[ch, start:end] += shape[: end - start].astype(np.int64)
    return np.clip(x, 0, 16383).astype(np.uint16)


def _run_stream(stream: PulseStream, samples: np.ndarray, cuts: list[int]) -> np.ndarray:
    pieces = []
    edges = [0, *sorted(set(c for c in cuts if 0 < c < samples.shape[1])), samples.shape[1]]
    for a, b in zip(edges[:-1], edges[1:]):
        pieces.append(stream.process(samples[:, a:b]))
    pieces.append(stream.finish())
    out = np.concatenate(pieces)
    return out[np.lexsort((out["crossing"], out["channel"]))]


@st.composite
def streams(draw):
    n_ch = draw(st.integers(1, 3))
    nsb = draw(st.sampled_from([0, 2, 63]) | st.integers(0, 63))
    nsa = draw(st.sampled_from([1, 6, 511]) | st.integers(1, 80))
    n = draw(st.integers(nsb + nsa, 1024))
    params = PulseParams.uniform(
        n_ch,
        thr=draw(st.sampled_from([5, 20, 200])),
        nsb=nsb,
        nsa=nsa,
        nsat=draw(st.integers(1, min(15, nsa))),
        nped_log2=draw(st.integers(0, 5)),
        ped_mode=1,
        ped_cfg=draw(st.sampled_from([0, 3, 400])),
        max_pulses=0,
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    samples = _stream_samples(rng, n_ch, n, int(params.ped_cfg[0]), int(params.thr[0]))
    cuts = draw(st.lists(st.integers(0, n), max_size=12))
    return params, samples, cuts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_stream_equals_window_over_the_concatenated_stream(case):
    params, samples, cuts = case
    want = find_pulses(samples, params)
    got = _run_stream(PulseStream(params), samples, cuts)
    assert_records_equal(got, want, f"cuts {sorted(cuts)}")


def test_stream_sample_by_sample_and_whole():
    params = PulseParams.uniform(3, thr=20, nsb=3, nsa=9, nsat=2, ped_mode=1, ped_cfg=400, max_pulses=0)
    samples = _stream_samples(np.random.default_rng(11), 3, 700, 400, 20)
    want = find_pulses_reference(samples, params, channel_ids=np.array([5, 6, 7]))
    assert len(want) > 30
    for chunk in (1, 2, 7, 64, 700):
        got = _run_stream(PulseStream(params, channel_ids=np.array([5, 6, 7])), samples, list(range(chunk, 700, chunk)))
        assert_records_equal(got, want, f"chunk {chunk}")


def test_long_stream_with_wrapping_pulse_index_and_history_bound():
    """3000 samples (beyond a window), more than 256 pulses a channel, NSA 511 and NSB 63."""
    rng = np.random.default_rng(3)
    n = 3000
    fast = PulseParams.uniform(1, thr=10, nsb=63, nsa=4, nsat=1, ped_mode=1, ped_cfg=100, max_pulses=0)
    x = np.full((1, n), 100, dtype=np.uint16)
    x[0, 5::9] = 300  # a pulse every 9 samples: 333 pulses
    want = find_pulses_reference(x, fast)
    assert len(want) == 333 and want["pulse_index"][256] == 0
    got = _run_stream(PulseStream(fast), x, list(rng.integers(0, n, 40)))
    assert_records_equal(got, want, "fast pulses")

    slow = PulseParams.uniform(2, thr=10, nsb=63, nsa=511, nsat=15, ped_mode=1, ped_cfg=100, max_pulses=0)
    x = _stream_samples(rng, 2, n, 100, 10)
    x[:, 1000:1600] = 5000  # a long pulse: its decision waits 511 samples
    want = find_pulses_reference(x, slow)
    for cuts in ([1500, 1510, 1511, 1512, 2999], list(rng.integers(0, n, 60))):
        assert_records_equal(_run_stream(PulseStream(slow), x, cuts), want, str(cuts))


def test_pulses_are_returned_once_final():
    """A pulse comes out of process() as soon as c + NSA samples have been seen (1.12)."""
    params = PulseParams.uniform(1, thr=10, nsb=1, nsa=5, nsat=2, ped_mode=1, ped_cfg=100, max_pulses=0)
    stream = PulseStream(params)
    x = np.full((1, 20), 100, dtype=np.uint16)
    x[0, 8:11] = [150, 200, 120]  # c = 8: final once sample 12 is seen
    assert len(stream.process(x[:, :12])) == 0
    out = stream.process(x[:, 12:13])
    assert out["crossing"].tolist() == [8]
    assert len(stream.process(x[:, 13:])) == 0 and len(stream.finish()) == 0
    assert stream.samples_seen == 20
