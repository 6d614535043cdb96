"""Random access into the sample stream: any range, any set of ranges, equal bit for bit to
sequential reads; where hits put signal; bad ranges refused with the argument named."""

import numpy as np
import pytest

from pokerdaq.sim import SampleStream
from pokerdaq.sim._beam import BLOCK_SAMPLES


@pytest.fixture(scope="module")
def busy(cfg):
    return cfg.replace(
        beam={"rate_hz": 2e6, "hadron_fraction": 0.2, "muon_fraction": 0.2}, detector={"lyso_background_hz": 2e6}
    )


@pytest.fixture(scope="module")
def reference(busy):
    """2 x 10^5 samples of board 0 from t = 0, and around the first block boundary, read sequentially."""
    chans = busy.channel_map.channels_on_board(0)
    stream = SampleStream(busy, seed=81, channels=chans)
    head = stream.read(200_000)[0]
    stream.read(BLOCK_SAMPLES - 100_000 - stream.position)
    edge = stream.read(200_000)[0]  # samples BLOCK_SAMPLES - 100000 .. + 100000
    return chans, head, edge


def test_read_at_equals_the_stream(busy, reference):
    chans, head, edge = reference
    stream = SampleStream(busy, seed=81, channels=chans)
    rng = np.random.default_rng(5)
    for start in [0, 1, 199_936, *rng.integers(0, 200_000 - 64, 40)]:
        n = int(min(64 + rng.integers(0, 300), 200_000 - start))
        np.testing.assert_array_equal(stream.read_at(int(start), n), head[:, start : start + n], err_msg=str(start))
    base = BLOCK_SAMPLES - 100_000
    for start in (base, BLOCK_SAMPLES - 40, BLOCK_SAMPLES, BLOCK_SAMPLES + 5):  # across the block boundary
        np.testing.assert_array_equal(stream.read_at(start, 100), edge[:, start - base : start - base + 100])
    assert stream.position == 0  # random access does not move the stream


def test_read_spans_equal_the_stream(busy, reference):
    chans, head, edge = reference
    stream = SampleStream(busy, seed=81, channels=chans)
    starts = np.array([0, 10, 500, 501, 90_000, 150_000])
    stops = np.array([5, 500, 501, 2_000, 90_064, 199_999])
    got = stream.read_spans(starts, stops)
    want = np.concatenate([head[:, a:b] for a, b in zip(starts, stops)], axis=1)
    np.testing.assert_array_equal(got, want)
    base = BLOCK_SAMPLES - 100_000
    starts = np.array([BLOCK_SAMPLES - 300, BLOCK_SAMPLES + 7])
    stops = np.array([BLOCK_SAMPLES + 2, BLOCK_SAMPLES + 900])
    want = np.concatenate([edge[:, a - base : b - base] for a, b in zip(starts, stops)], axis=1)
    np.testing.assert_array_equal(stream.read_spans(starts, stops), want)


def test_samples_outside_hit_extents_are_noise_only(busy, reference):
    """Outside the hit extents the stream equals a stream with no beam and no Lu-176 decays."""
    chans, head, _ = reference
    stream = SampleStream(busy, seed=81, channels=chans)
    first, end = stream.hit_extents(0, 200_000)
    assert len(first) > 1000 and (np.diff(first) >= 0).all() and (end > first).all()
    covered = np.zeros(200_000, bool)
    for a, b in zip(first, end):
        covered[max(a, 0) : b] = True
    assert 0.05 < covered.mean() < 0.95
    quiet = busy.replace(beam={"rate_hz": 1e-3}, detector={"lyso_background_hz": 0.0})
    noise = SampleStream(quiet, seed=81, channels=chans).read(200_000)[0]
    np.testing.assert_array_equal(head[:, ~covered], noise[:, ~covered])
    assert not np.array_equal(head[:, covered], noise[:, covered])
    # and the extents are tight: the samples of a hit differ from noise only inside it
    assert (head[:, covered] != noise[:, covered]).any(axis=0).mean() > 0.3


def test_bad_ranges_are_refused(busy):
    stream = SampleStream(busy, seed=81, channels=[0, 1])
    with pytest.raises(ValueError, match="start = -1"):
        stream.read_at(-1, 10)
    with pytest.raises(ValueError, match="n_samples = 0"):
        stream.read_at(5, 0)
    with pytest.raises(ValueError, match=r"stops\[1\] = 20"):
        stream.read_spans([0, 20], [10, 20])
    with pytest.raises(ValueError, match=r"starts\[1\] = 5"):
        stream.read_spans([0, 5], [10, 20])
    with pytest.raises(ValueError, match="stop = 3"):
        stream.hit_extents(3, 3)


def test_bucketed_render_equals_the_scan_of_every_hit(busy):
    """render_spans_bucketed (each channel its own hits) against render_spans (every hit of the
    span's time range tested), the kernel it replaced: the same samples bit for bit."""
    from _render_reference import render_spans

    from pokerdaq.sim._emulator import _Engine, bucket_hits
    from pokerdaq.sim._waveform import render_spans_bucketed

    eng = _Engine.create(busy, 81)
    sel = np.concatenate([busy.channel_map.channels_on_board(b) for b in (0, 5)]).astype(np.int64)
    starts = np.array([0, 700, 5_000, BLOCK_SAMPLES - 300], np.int64)
    lengths = np.array([600, 64, 3_000, 900], np.int64)
    offsets = np.zeros(len(starts), np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    hits = eng.timeline.hits(-1, 1)
    want = np.empty((len(sel), int(lengths.sum())), np.uint16)
    render_spans(starts, lengths, offsets, sel, *hits, *eng._common(), want)
    got = np.empty_like(want)
    render_spans_bucketed(
        np.zeros(len(sel), np.int64),
        np.full(len(sel), len(starts), np.int64),
        starts,
        lengths,
        offsets,
        sel,
        *bucket_hits(hits, sel, len(busy.channel_map)),
        *eng._common(),
        got,
    )
    np.testing.assert_array_equal(got, want)


def test_read_windows_and_row_spans_equal_read_at(busy, reference):
    """Many (overlapping) windows in one call, and ranges chosen per group of rows in one call."""
    chans, head, _ = reference
    stream = SampleStream(busy, seed=81, channels=chans)
    starts = np.array([3, 40, 41, 1_000, 150_000])
    got = stream.read_windows(starts, 64)
    assert got.shape == (len(starts), len(chans), 64)
    for k, s in enumerate(starts):
        np.testing.assert_array_equal(got[k], head[:, s : s + 64], err_msg=str(s))
    rows_a, rows_b = np.arange(0, 3), np.arange(3, len(chans))
    a = (np.array([10, 900]), np.array([200, 1_000]))
    b = (np.array([5_000]), np.array([5_050]))
    out = stream.read_row_spans([(rows_a, *a), (rows_b, *b)])
    np.testing.assert_array_equal(out[rows_a, :290], np.concatenate([head[rows_a, 10:200], head[rows_a, 900:1_000]], 1))
    np.testing.assert_array_equal(out[rows_b, :50], head[rows_b, 5_000:5_050])
    assert not out[rows_b, 50:].any()  # zeros after a group's ranges
