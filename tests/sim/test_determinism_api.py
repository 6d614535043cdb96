"""Same seed -> same samples; stream chunking and channel selection do not change samples;
bad arguments are refused with the argument and its value named."""

import numpy as np
import pytest

from pokerdaq.sim import TRUTH_DTYPE, SampleStream, emulate_channel, emulate_windows, iter_windows


@pytest.fixture(scope="module")
def busy(cfg):
    # a high rate and many hadrons/muons/signal so that every code path runs in a short stream
    return cfg.replace(
        beam={"rate_hz": 2e6, "hadron_fraction": 0.2, "muon_fraction": 0.2, "signal_fraction": 0.1},
        detector={"lyso_background_hz": 2e6},
    )


def test_windows_same_seed_same_samples(busy):
    a, ta = emulate_windows(busy, 300, seed=70)
    b, tb = emulate_windows(busy, 300, seed=70)
    c, _ = emulate_windows(busy, 300, seed=71)
    assert ta.dtype == TRUTH_DTYPE
    assert np.array_equal(a, b) and np.array_equal(ta, tb)
    assert not np.array_equal(a, c)
    assert np.array_equal(ta["event"], np.arange(300))
    assert (ta["n_pileup"] > 0).mean() > 0.3  # 2 MHz: pile-up is common


def test_batches_do_not_change_windows(busy):
    a, ta = emulate_windows(busy, 250, seed=72)
    parts = list(iter_windows(busy, 250, seed=72, batch_events=37))
    assert [len(p[1]) for p in parts][:2] == [37, 37]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), a)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), ta)


def test_stream_chunk_size_independent(busy):
    n = 700
    ref, truth = SampleStream(busy, seed=73).read(n)
    assert ref.shape == (len(busy.channel_map), n) and ref.dtype == np.uint16
    assert len(truth) > 0  # particles arrive in these 2.8 us at 2 MHz
    for sizes in ([1], [3, 7, 11], [256, 1, 129], [699, 1]):
        stream = SampleStream(busy, seed=73)
        chunks, truths, done, i = [], [], 0, 0
        while done < n:
            k = min(sizes[i % len(sizes)], n - done)
            s, t = stream.read(k)
            chunks.append(s)
            truths.append(t)
            done += k
            i += 1
        assert np.array_equal(np.concatenate(chunks, axis=1), ref), sizes
        assert np.array_equal(np.concatenate(truths), truth), sizes
        assert stream.position == n


def test_stream_same_seed_and_truth_times(busy):
    a, ta = SampleStream(busy, seed=74).read(5000)
    b, tb = SampleStream(busy, seed=74).read(5000)
    assert np.array_equal(a, b) and np.array_equal(ta, tb)
    assert (np.diff(ta["t_ns"]) >= 0).all()
    assert np.array_equal(ta["t_sample"], np.floor(ta["t_ns"] / busy.digitizer.sample_ns).astype(np.int64))


def test_board_streams_are_rows_of_the_full_stream(busy):
    full, _ = SampleStream(busy, seed=75).read(2000)
    cmap = busy.channel_map
    for board in range(cmap.n_boards):
        chans = cmap.channels_on_board(board)
        part, _ = SampleStream(busy, seed=75, channels=chans).read(2000)
        assert np.array_equal(part, full[chans]), board


def test_windows_are_cuts_of_the_stream(busy):
    w, truth = emulate_windows(busy, 40, seed=76)
    end = int(truth["t_sample"].max()) + busy.digitizer.window_samples
    stream, stream_truth = SampleStream(busy, seed=76).read(end)
    starts = truth["t_sample"] - busy.digitizer.pretrigger_samples
    for i, s0 in enumerate(starts):
        assert np.array_equal(w[i], stream[:, s0 : s0 + busy.digitizer.window_samples])
    assert np.array_equal(stream_truth["event"][:40], truth["event"])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda c: emulate_windows(c, -1), r"n_events = -1"),
        (lambda c: emulate_windows({"beam": {}}, 3), r"cfg = dict"),
        (lambda c: emulate_windows(c, 2.5), r"n_events = 2\.5"),
        (lambda c: emulate_windows(c, 5, seed=-3), r"seed = -3"),
        (lambda c: emulate_windows(c, 5, channels=[0, 130]), r"channels = \[0, 130\].*130"),
        (lambda c: emulate_windows(c, 5, channels=[]), r"channels = \[\]"),
        (lambda c: emulate_windows(c, 5, channels=[1, 1]), r"distinct"),
        (lambda c: list(iter_windows(c, 5, batch_events=0)), r"batch_events = 0"),
        (lambda c: SampleStream(c, channels=[-1]), r"channels = \[-1\]"),
        (lambda c: SampleStream(c).read(0), r"n_samples = 0"),
        (lambda c: emulate_channel(c, 999, [1.0]), r"channel 999"),
        (lambda c: emulate_channel(c, 0, [1.0, -2.0]), r"deposits_mev"),
        (lambda c: emulate_channel(c, 0, [1.0], t0_ns=float("nan")), r"t0_ns = nan"),
    ],
)
def test_bad_arguments(cfg, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(cfg)
