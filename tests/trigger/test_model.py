"""The numba trigger model against the naive reference (tests/trigger/_reference.py).

Synthetic pulse records (conftest.synthetic_particles) exercise every condition; the model
must agree with the reference field by field, whatever the slicing of the stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.config import ConfigError
from pokerdaq.dsp import PULSE_DTYPE
from pokerdaq.trigger import (
    TRIGGER_DTYPE,
    ConditionBits,
    TriggerBits,
    TriggerModel,
    TriggerRegisters,
    board_partial_sums,
    primitive_energies,
    sipm_saturation_lut,
    trigger_windows,
)
from pokerdaq.trigger import _registers as R

from . import _reference as ref
from .conftest import records_from_hits, synthetic_particles

FIELDS = [n for n in TRIGGER_DTYPE.names]


def _replace_trigger(cfg, **kw):
    return cfg.replace(trigger=kw)


def test_channel_energy_fixed_point_and_lut(cfg):
    c = cfg.replace(trigger={"saturation_correction": ["ecal"]})
    regs = TriggerRegisters.from_config(c)
    rng = np.random.default_rng(1)
    rec = np.zeros(4000, dtype=PULSE_DTYPE)
    rec["channel"] = rng.integers(0, regs.n_channels, len(rec))
    rec["integral_net"] = rng.integers(-2000, 2**24, len(rec))
    rec["integral_net"][:5] = [0, -1, 1, 2**24 - 1, -(2**24)]
    got = primitive_energies(rec, regs)
    want = [ref.energy(int(r["integral_net"]), int(r["channel"]), regs) for r in rec]
    assert got.tolist() == want
    assert (got >= 0).all() and got.max() <= 2**22 - 1
    assert got[0] == 0 and got[1] == 0 and got[4] == 0


def test_saturation_lut_inverts_sipm_response(cfg):
    lut, shift = sipm_saturation_lut(cfg, "ecal", 64)
    sub = cfg.detector.ecal
    n, k = sub.sipm.n_cells, sub.scintillator.light_yield_pe_per_mev / 16  # pe per LSB
    true = np.array([1e3, 2e4, 3e5, 1.0e6, 1.6e6])  # LSB, up to 100 GeV
    measured = n * (1 - np.exp(-k * true / n)) / k
    idx = measured.astype(np.int64) >> shift
    frac = measured.astype(np.int64) - (idx << shift)
    corrected = lut[idx] + ((lut[idx + 1] - lut[idx]) * frac >> shift)
    assert np.allclose(corrected, true, rtol=0.01), (corrected, true)
    assert (np.diff(lut) >= 0).all() and lut[0] == 0 and lut[-1] == 2**22 - 1


def test_window_mode_matches_reference(cfg, regs):
    rng = np.random.default_rng(11)
    records, windows = [], []
    n_windows = 400
    for w in range(n_windows):
        hits, _ = synthetic_particles(cfg, rng, 1, t_start=16 * 64, mean_gap_fine=1, noise_per_particle=1.0)
        hits = [h for h in hits if h[0] < 64 * 64]
        records.append(records_from_hits(cfg, hits))
        windows.append(np.full(len(hits), w))
    rec, win = np.concatenate(records), np.concatenate(windows)
    out = trigger_windows(rec, win, n_windows, regs, default_ref=16 * 64)
    assert out.dtype == TRIGGER_DTYPE and len(out) == n_windows
    seen_types = 0
    for w in range(n_windows):
        hl = ref.hits(records[w], regs)
        cands = ref.beam_candidates(hl, regs)
        t_ref = cands[0] if cands else 16 * 64
        cond, sums = ref.evaluate(hl, t_ref, regs)
        raw = ref.type_word(ref.raw_types(cond))
        assert out["ref_time"][w] == t_ref
        assert out["conditions"][w] == ref.cond_word(cond), w
        assert out["trigger_word"][w] == raw | raw << 8
        for name, value in sums.items():
            assert out[name][w] == value, (w, name)
        seen_types |= raw
    # the sample must exercise physics, beam, calibration and muon decisions
    assert seen_types == (TriggerBits.PHYSICS | TriggerBits.BEAM | TriggerBits.CALIBRATION | TriggerBits.MUON)


def test_board_partial_sums_match_reference_and_global_sums(cfg, regs):
    rng = np.random.default_rng(4)
    hits, _ = synthetic_particles(cfg, rng, 1, t_start=16 * 64, mean_gap_fine=1, noise_per_particle=20.0)
    hits += [(16 * 64 + 100, int(c), 2e5) for c in cfg.channel_map.channels_of("ecal")[:12]]  # saturate u24
    rec = records_from_hits(cfg, hits)
    out = trigger_windows(rec, np.zeros(len(rec), int), 1, regs, default_ref=16 * 64)
    t_ref = int(out["ref_time"][0])
    parts = board_partial_sums(rec, t_ref, regs)
    ref.evaluate(ref.hits(rec, regs), t_ref, regs)
    want = np.zeros_like(parts)
    for (board, role), value in ref.evaluate.boards.items():
        want[board, role - R.ROLE_PRS if role != R.ROLE_HCAL else 2] = value
    assert np.array_equal(parts, want)
    assert parts.max() == 2**24 - 1  # the saturated board
    assert out["e_ecal"][0] == min(int(parts[:, 1].sum()), 2**24 - 1) == 2**24 - 1
    assert out["e_preshower"][0] == parts[:, 0].sum() and out["e_hcal"][0] == parts[:, 2].sum()


def _stream_setup(cfg, seed, n, **trigger):
    c = cfg.replace(trigger=trigger) if trigger else cfg
    rng = np.random.default_rng(seed)
    hits, t_end = synthetic_particles(c, rng, n)
    rec = records_from_hits(c, hits)
    rec = rec[rng.permutation(len(rec))]  # any order within a slice
    n_ticks = (t_end >> 6) + 2000
    return c, rec, n_ticks


def _run_model(c, rec, n_ticks, cuts, seed=3, busy=None):
    model = TriggerModel(c, seed=seed)
    outs = []
    times = rec["time"]
    prev = 0
    for cut in list(cuts) + [n_ticks]:
        sel = (times >= prev * 64) & (times < cut * 64)
        outs.append(model.process(rec[sel], cut, busy=None if busy is None else _clip(busy, prev, cut)))
        prev = cut
    return np.concatenate(outs), model


def _clip(busy, a, b):
    out = [(max(s, a), min(e, b)) for s, e in busy if min(e, b) > max(s, a)]
    return np.array(out, dtype=np.int64).reshape(-1, 2)


@pytest.mark.parametrize("n_slices", [1, 7, 200])
def test_stream_matches_reference_for_any_slicing(cfg, n_slices):
    c, rec, n_ticks = _stream_setup(
        cfg, 5, 600, random_rate_hz=20e3, dead_time_ns=2000.0, prescale={"beam": 3, "calibration": 2, "muon": 1}
    )
    rng = np.random.default_rng(n_slices)
    cuts = np.sort(rng.choice(np.arange(1, n_ticks), size=n_slices - 1, replace=False))
    busy = [(n_ticks // 3, n_ticks // 3 + 20_000), (n_ticks // 2, n_ticks // 2 + 5_000)]
    out, model = _run_model(c, rec, n_ticks, cuts, busy=busy)
    regs = TriggerRegisters.from_config(c, seed=3)
    rows, counters, live = ref.run_stream(rec, regs, n_ticks, busy=busy)
    assert len(out) == len(rows) > 50
    for i, row in enumerate(rows):
        for name, value in row.items():
            assert out[name][i] == value, (i, name, out[i], row)
    got = model.counters
    for key, per_type in counters.items():
        assert getattr(got, key).tolist() == [per_type[n] for n in ref.TYPES], key
    assert got.live_ticks == live
    for key, value in ref.run_stream.attempts.items():
        assert getattr(got, key) == value, key
    assert got.attempts == got.triggers + got.lost_dead_triggers + got.lost_busy_triggers
    assert got.ticks == n_ticks
    assert (got.prescaled == got.accepted + got.lost_dead + got.lost_busy).all()
    assert got.lost_dead.sum() > 0 and got.lost_busy.sum() > 0
    assert set(np.unique(out["trigger_word"] & 0xFF)) > {TriggerBits.RANDOM}
    assert (out["conditions"] & ConditionBits.PILEUP).any()


@pytest.mark.parametrize("n_slices", [1, 300])
def test_random_candidates_see_complete_windows(cfg, n_slices):
    """Random candidates evaluate the stream LATENCY ticks back (T_REF = (ISSUE - LATENCY) * 64,
    spec 2.8): their sums do not depend on where the stream is cut, and equal the reference."""
    c, rec, n_ticks = _stream_setup(cfg, 8, 300, random_rate_hz=5e6, random_mode="periodic", dead_time_ns=0.0)
    rng = np.random.default_rng(n_slices)
    cuts = np.sort(rng.choice(np.arange(1, n_ticks), size=n_slices - 1, replace=False))
    out, _ = _run_model(c, rec, n_ticks, cuts)
    rows, _, _ = ref.run_stream(rec, TriggerRegisters.from_config(c, seed=3), n_ticks)
    assert len(out) == len(rows)
    for i, row in enumerate(rows):
        for name, value in row.items():
            assert out[name][i] == value, (i, name, out[i], row)
    rnd = out[(out["conditions"] & ConditionBits.RANDOM) != 0]
    lat = TriggerRegisters.from_config(c)[R.P_LAT]
    assert (rnd["ref_time"] == (rnd["timestamp"].astype(np.int64) - lat) * 64).all()
    assert (rnd["e_calo"] > 0).sum() > 10  # random windows that contain showers


def test_prescalers_accept_exactly_one_in_n(cfg):
    factors = {"physics": 1, "beam": 7, "random": 1, "calibration": 3, "muon": 5}
    c, rec, n_ticks = _stream_setup(cfg, 9, 1500, dead_time_ns=0.0, random_rate_hz=0.0, prescale=factors)
    out, model = _run_model(c, rec, n_ticks, [n_ticks // 2])
    # the same stream with every prescaler at 1: one row per candidate, in the same order
    every = cfg.replace(trigger={"dead_time_ns": 0.0, "random_rate_hz": 0.0, "prescale": {name: 1 for name in factors}})
    all_rows, _ = _run_model(every, rec, n_ticks, [n_ticks // 3])
    cnt = model.counters
    for k, name in enumerate(TriggerBits.NAMES):
        raw, acc = int(cnt.raw[k]), int(cnt.accepted[k])
        assert acc == raw // factors[name], (name, raw, acc)
        # the accepted ones are exactly the N-th, 2N-th ... raw occurrences
        fired_times = all_rows["ref_time"][(all_rows["trigger_word"] >> k) & 1 == 1]
        assert len(fired_times) == raw
        taken_times = out["ref_time"][(out["trigger_word"] >> k) & 1 == 1]
        assert taken_times.tolist() == fired_times[factors[name] - 1 :: factors[name]].tolist(), name
    print("\nprescaler raw/accepted:", dict(zip(TriggerBits.NAMES, zip(cnt.raw.tolist(), cnt.accepted.tolist()))))
    assert cnt.raw[1] > 300 and cnt.raw[3] > 10 and cnt.raw[4] > 20  # beam, calibration, muon


def test_live_fraction_non_paralysable_poisson(cfg):
    """Live fraction and accepted rate against 1/(1 + R tau), Poisson random triggers."""
    rate, tau_ns = 200e3, 1000.0
    c = cfg.replace(trigger={"random_rate_hz": rate, "dead_time_ns": tau_ns, "random_mode": "poisson"})
    model = TriggerModel(c, seed=12345)
    n_ticks = 50_000_000  # 0.2 s: about 40 000 raw triggers
    empty = np.zeros(0, dtype=PULSE_DTYPE)
    for k in range(1, 11):
        model.process(empty, k * n_ticks // 10)
    cnt = model.counters
    expected = 1.0 / (1.0 + rate * tau_ns * 1e-9)
    raw_rate = cnt.raw[2] / (n_ticks * 4e-9)
    live = cnt.live_fraction
    accepted_ratio = cnt.accepted[2] / cnt.raw[2]
    print(
        f"\nlive fraction {live:.4f}, accepted/raw {accepted_ratio:.4f}, 1/(1+R tau) = {expected:.4f}; "
        f"raw rate {raw_rate:.0f} Hz from {cnt.raw[2]} triggers"
    )
    assert abs(raw_rate / rate - 1) < 0.02
    assert abs(live / expected - 1) < 0.01
    assert abs(accepted_ratio / expected - 1) < 0.01
    assert cnt.lost_dead[2] == cnt.raw[2] - cnt.accepted[2]
    assert cnt.dead_ticks + cnt.live_ticks == cnt.ticks


def test_poisson_random_trigger_spacings_are_exponential(cfg):
    """xorshift32 stepped once per tick: geometric spacings, no correlation between neighbours."""
    c = cfg.replace(trigger={"random_rate_hz": 1e6, "random_mode": "poisson", "dead_time_ns": 0.0})
    model = TriggerModel(c, seed=5)
    out = model.process(np.zeros(0, dtype=PULSE_DTYPE), 20_000_000)
    gaps = np.diff(out["timestamp"].astype(np.int64)).astype(float)
    mean = 1.0 / (1e6 * 4e-9)  # 250 ticks
    assert len(gaps) > 70_000
    assert abs(gaps.mean() / mean - 1) < 0.01
    assert abs(gaps.std() / gaps.mean() - 1) < 0.02  # exponential: std = mean
    assert abs(np.corrcoef(gaps[:-1], gaps[1:])[0, 1]) < 0.02
    assert abs(np.mean(gaps < mean * np.log(2)) - 0.5) < 0.01  # median of the exponential


def test_periodic_random_trigger_spacing(cfg):
    c = cfg.replace(trigger={"random_rate_hz": 1e6, "random_mode": "periodic", "dead_time_ns": 0.0})
    model = TriggerModel(c)
    empty = np.zeros(0, dtype=PULSE_DTYPE)
    out = np.concatenate([model.process(empty, t) for t in (1, 250, 999, 1000, 5003)])
    assert out["timestamp"].tolist() == list(range(249, 5003, 250))
    assert (out["conditions"] & ConditionBits.RANDOM).all()


def test_busy_blocks_and_is_counted(cfg):
    c = cfg.replace(trigger={"random_rate_hz": 1e6, "random_mode": "periodic", "dead_time_ns": 0.0})
    model = TriggerModel(c)
    empty = np.zeros(0, dtype=PULSE_DTYPE)
    model.set_busy(True)
    assert len(model.process(empty, 10_000)) == 0
    model.set_busy(False)
    out = model.process(empty, 20_000)
    cnt = model.counters
    assert len(out) == 40 and cnt.lost_busy[2] == 40
    assert cnt.busy_ticks == 10_000 and cnt.live_ticks == 10_000


def test_late_records_are_counted_and_dropped(cfg):
    model = TriggerModel(cfg)
    model.process(np.zeros(0, dtype=PULSE_DTYPE), 1000)
    late = records_from_hits(cfg, [(10 * 64, 0, 1.0), (2000 * 64, 0, 1.0)])
    model.process(late, 1500)
    assert model.counters.late_records == 1


def test_same_seed_same_triggers(cfg):
    c, rec, n_ticks = _stream_setup(cfg, 21, 300, random_rate_hz=50e3)
    a, _ = _run_model(c, rec, n_ticks, [n_ticks // 3], seed=99)
    b, _ = _run_model(c, rec, n_ticks, [n_ticks // 5, n_ticks // 2], seed=99)
    d, _ = _run_model(c, rec, n_ticks, [n_ticks // 3], seed=100)
    assert np.array_equal(a, b)
    assert not np.array_equal(a["timestamp"], d["timestamp"])


@pytest.mark.parametrize("delta", [-1, 0])
def test_threshold_comparisons_at_the_boundary(cfg, regs, delta):
    """Energies exactly at a threshold: >= fires, < does not (spec 2.6)."""
    cmap = cfg.channel_map
    thr = int(regs.params[R.P_SRD_EMIN]) + delta
    bc = cmap.channels_of("beam_counters")
    srd0 = int(cmap.channels_of("srd")[0])
    gain = int(regs.ch_gain[srd0])
    # smallest integral giving energy == thr
    net = next(n for n in range(max(1, (thr << 16) // gain - 2), (thr << 16) // gain + 3) if (n * gain) >> 16 >= thr)
    rec = records_from_hits(cfg, [(1024, int(c), 1.0) for c in bc])
    extra = np.zeros(1, dtype=PULSE_DTYPE)
    extra["channel"], extra["time"], extra["integral_net"] = srd0, 1024, net
    rec = np.concatenate([rec, extra])
    assert primitive_energies(extra, regs)[0] == thr
    out = trigger_windows(rec, np.zeros(len(rec), int), 1, regs)
    assert bool(out["conditions"][0] & ConditionBits.SRD) == (delta == 0)


def test_config_errors_name_the_key(cfg):
    with pytest.raises(ConfigError) as info:
        TriggerRegisters.from_config(cfg.replace(trigger={"latency_ns": 20.0}))
    assert info.value.key == "trigger.latency_ns"
    with pytest.raises(ConfigError) as info:
        cfg.replace(trigger={"adc_per_mev": {"ecall": 1.0}})
    assert info.value.key == "trigger.adc_per_mev.ecall"
    with pytest.raises(ConfigError) as info:
        cfg.replace(trigger={"srd_window_ns": [10.0, -5.0]})
    assert info.value.key == "trigger.srd_window_ns"
    with pytest.raises(ConfigError) as info:
        cfg.replace(trigger={"prescale": {"beam": -1}})
    assert info.value.key == "trigger.prescale.beam"
    with pytest.raises(ConfigError) as info:
        TriggerRegisters.from_config(cfg.replace(trigger={"beam_min_counters": 4}))
    assert info.value.key == "trigger.beam_min_counters"


def test_bad_inputs_raise_clear_errors(cfg):
    model = TriggerModel(cfg)
    bad = np.zeros(1, dtype=PULSE_DTYPE)
    bad["channel"] = 500
    with pytest.raises(ValueError, match=r"records\['channel'\] = 500"):
        model.process(bad, 10)
    with pytest.raises(ValueError, match="missing field"):
        model.process(np.zeros(1, dtype=[("channel", "u2")]), 10)
    model.process(np.zeros(0, dtype=PULSE_DTYPE), 100)
    with pytest.raises(ValueError, match="end_sample = 50"):
        model.process(np.zeros(0, dtype=PULSE_DTYPE), 50)
    with pytest.raises(ValueError, match="busy"):
        model.process(np.zeros(0, dtype=PULSE_DTYPE), 200, busy=np.array([1, 2]))


def test_finish_drains_open_candidates(cfg):
    rec = records_from_hits(cfg, [(5000 * 64 + 10, int(c), 1.0) for c in cfg.channel_map.channels_of("beam_counters")])
    c = cfg.replace(trigger={"prescale": {"beam": 1}, "random_rate_hz": 0.0})
    model = TriggerModel(c)
    assert len(model.process(rec, 5001)) == 0  # decision needs the latency
    out = model.finish()
    assert len(out) == 1 and out["trigger_word"][0] & TriggerBits.BEAM
    assert out["timestamp"][0] == 5000 + int(model.registers.params[R.P_LAT])


def test_live_time_kernel_sees_one_array_layout(cfg):
    """Dead time carried over a slice end or not, the live-time kernel gets C-contiguous arrays.

    A second array layout is a second numba compilation at the first slice that needs it, in
    the middle of a DAQ run (seconds with a cold cache: boards were taken for dead).
    """
    from pokerdaq.trigger import _kernels

    c = cfg.replace(trigger={"random_rate_hz": 2e6, "dead_time_ns": 1000.0, "random_mode": "poisson"})
    model = TriggerModel(c, seed=3)
    empty = np.zeros(0, dtype=PULSE_DTYPE)
    # slices of 2000 ticks: several triggers each (~8 accepted), some slices ending inside a dead time
    for k in range(1, 100):
        model.process(empty, k * 2000)
    assert model.counters.accepted[2] > 300 and model.counters.dead_ticks > 0
    layouts = {arg.layout for sig in _kernels._union_length.signatures for arg in sig if hasattr(arg, "layout")}
    assert layouts == {"C"}, _kernels._union_length.signatures
