"""The activity-driven ("sparse") physics front end against the full-stream one.

Same seed and configuration: slice by slice the same primitives (in the same order), the same
pulse records (every PULSE field), and the same readout windows; while it emulates only a
small part of the stream.
"""

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.daq._physics import PhysicsFrontEnd
from pokerdaq.daq._sparse import SparsePhysicsFrontEnd, noise_ceiling
from pokerdaq.dsp import PulseParams, PulseStream
from pokerdaq.sim._templates import T_CELL, build_tables
from pokerdaq.trigger._chain import stream_config

SEED = 7


def _compare(cfg, board: int, n_slices: int, seed: int = SEED):
    """Run both front ends over n_slices; return (pulses found, sparse front end, full samples)."""
    full = PhysicsFrontEnd(cfg, board, seed)
    sparse = SparsePhysicsFrontEnd(cfg, board, seed)
    chans = cfg.channel_map.channels_on_board(board)
    # the full path's pulse records: PhysicsFrontEnd keeps only the primitive fields
    finder = PulseStream(PulseParams.from_config(stream_config(cfg), chans), channel_ids=chans)
    samples, n_pulses = [], 0
    for k in range(n_slices):
        ref = full.process_slice(k)
        got = sparse.process_slice(k)
        assert got.samples is None  # windows come from read_window
        np.testing.assert_array_equal(got.primitives, ref.primitives, err_msg=f"board {board} slice {k}")
        records = finder.process(ref.samples)
        np.testing.assert_array_equal(sparse.last_pulses, records, err_msg=f"board {board} slice {k}")
        samples.append(ref.samples)
        n_pulses += len(records)
    return n_pulses, sparse, np.concatenate(samples, axis=1)


def _check_windows(cfg, sparse, samples, pulse_times):
    n, pre = cfg.digitizer.window_samples, cfg.digitizer.pretrigger_samples
    rng = np.random.default_rng(3)
    firsts = [t - pre for t in pulse_times] + list(rng.integers(0, samples.shape[1] - n, 40))
    firsts = [int(f) for f in firsts if 0 <= f <= samples.shape[1] - n]
    assert len(firsts) >= 40
    for f in firsts:
        np.testing.assert_array_equal(sparse.read_window(f, n), samples[:, f : f + n], err_msg=f"window at {f}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("board", [0, 5])  # beam counters + SRD (Lu-176 too); the central ECAL crystal
def test_sparse_equals_full_stream(board):
    cfg = load_config()
    n_slices = 64  # 4.2 ms of beam, ~420 particles
    n_pulses, sparse, samples = _compare(cfg, board, n_slices)
    assert n_pulses > 300
    # the emulator's samples at the pulses' times and elsewhere
    finder = PulseStream(PulseParams.from_config(stream_config(cfg), sparse.channels), channel_ids=sparse.channels)
    times = finder.process(samples)["coarse_time"][::7]
    _check_windows(cfg, sparse, samples, times)
    # ... while rendering a small part of the stream
    stream_samples = n_slices * cfg.daq.slice_ticks
    assert sparse.samples_emulated < 0.12 * stream_samples, sparse.samples_emulated / stream_samples
    assert sparse.ranges_emulated > 300


@pytest.mark.timeout(300)
def test_sparse_equals_full_stream_under_heavy_pileup():
    """20x the beam rate, many hadrons and muons, 30x the Lu-176 rate: active ranges merge
    across slices and a range often outlives the slice it starts in."""
    cfg = load_config().replace(
        beam={"rate_hz": 2e6, "hadron_fraction": 0.2, "muon_fraction": 0.2},
        detector={"lyso_background_hz": 1e6},
        daq={"slice_ticks": 4096},
    )
    for board in (0, 9):
        n_pulses, sparse, samples = _compare(cfg, board, 48, seed=11)
        assert n_pulses > 100
        _check_windows(cfg, sparse, samples, [])
        assert sparse.samples_emulated < samples.shape[1]


def test_sparse_emulates_nothing_without_hits():
    """Boards with no hit in a stretch (HCAL between rare hadrons) render nothing, yet report the same (no) pulses."""
    cfg = load_config().replace(beam={"hadron_fraction": 0.0, "muon_fraction": 0.0})
    n_pulses, sparse, _ = _compare(cfg, 11, 24)
    assert n_pulses == 0 and sparse.samples_emulated == 0


def test_noise_stays_below_threshold_in_the_default_config():
    """The assumption of the sparse front end, checked exactly for the default configuration and
    seed: the largest noise-only sample of every channel stays below its threshold, with room for
    several coincident dark-count cells."""
    cfg = stream_config(load_config())
    chans = np.arange(len(cfg.channel_map))
    ceiling, threshold, sigma = noise_ceiling(cfg, chans, cfg.run.seed)
    pedestal = PulseParams.from_config(cfg).ped_cfg
    assert (ceiling < threshold).all()
    # margin in units of the noise RMS: 7.8 sigma for the SRD (the smallest: 8 ADC over 1 ADC noise),
    # 9.7 HCAL, 19.6 ECAL, 29 counters; the exact guarantee is the ceiling check above
    margin_sigma = (threshold - pedestal) / sigma
    assert margin_sigma.min() > 7.5
    # dark counts: coincident single cells needed to bridge the rest: 7.4 for the SRD (9 MHz dark
    # rate: 7 cells within ~10 ns happen ~1e-3 times per second per channel), 15.4 counters/VETO, 25 HCAL
    tables = build_tables(cfg)
    cell_peak = tables.chan_f[:, 2] * tables.templates[tables.chan_i[:, 0], T_CELL].max(axis=1)
    assert ((threshold - ceiling) / cell_peak).min() > 7


def test_noisy_setup_is_refused():
    cfg = load_config().replace(detector={"ecal": {"electronics": {"noise_adc": 6.0}}})
    with pytest.raises(ValueError, match="physics-stream"):
        SparsePhysicsFrontEnd(cfg, 5, SEED)


def test_front_end_is_chosen_by_the_configuration():
    from pokerdaq.config import ConfigError
    from pokerdaq.daq._factory import make_front_end

    cfg = load_config()
    assert isinstance(make_front_end(cfg, 10, SEED), SparsePhysicsFrontEnd)  # the default "physics"
    stream = make_front_end(cfg.replace(daq={"front_end": "physics-stream"}), 10, SEED)
    assert type(stream) is PhysicsFrontEnd
    with pytest.raises(ConfigError, match="front_end"):
        cfg.replace(daq={"front_end": "sparse"})


def test_group_of_boards_equals_each_board_alone():
    """The boards of one process emulated together (SparseGroup, the default in a run): per
    board the same primitives and pulse records, slice by slice and in stretches, as alone;
    readout windows of a decision rendered and searched in one call equal one by one."""
    from pokerdaq.daq._sparse import SparseGroup

    cfg = load_config()
    boards = (0, 5, 11)
    group = SparseGroup(cfg, boards, SEED)
    together = {b: SparsePhysicsFrontEnd(cfg, b, SEED, warm_up=False, group=group) for b in boards}
    alone = {b: SparsePhysicsFrontEnd(cfg, b, SEED, warm_up=False) for b in boards}
    steps = [(k, k) for k in range(12)] + [(12, 15), (16, 16)]
    for first, last in steps:
        for b in boards:
            got = together[b].process_stretch(first, last) if last > first else together[b].process_slice(first)
            want = alone[b].process_stretch(first, last) if last > first else alone[b].process_slice(first)
            np.testing.assert_array_equal(got.primitives, want.primitives, err_msg=f"board {b} slices {first}-{last}")
            np.testing.assert_array_equal(together[b].last_pulses, alone[b].last_pulses)
    assert sum(len(fe.last_pulses) for fe in alone.values()) > 0
    n = cfg.digitizer.window_samples
    firsts = np.array([100, 5_000, 5_010, 70_000])
    fe = together[5]
    windows = fe.read_windows(firsts, n)
    records, offsets = fe.find_pulses_batch(windows)
    for k, f in enumerate(firsts):
        one = fe.read_window(int(f), n)
        np.testing.assert_array_equal(windows[k], one)
        np.testing.assert_array_equal(records[offsets[k] : offsets[k + 1]], fe.find_pulses(one, int(f)))
