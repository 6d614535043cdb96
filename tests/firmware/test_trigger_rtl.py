"""trigger_top RTL (Verilator + cocotb) against pokerdaq.trigger, bit for bit.

Each test builds segments (register set + primitive stream cut into slices), runs
``TriggerModel`` on the same slices for the expected trigger records, streams them through
the verilated trigger_top with the package bench ``pokerdaq.hil._tb_trigger`` (shared with
``pokerdaq hil --dut rtl``), and compares every trigger record field
(event number, timestamp, T_REF, trigger word, conditions, masks, six sums) and every
scaler with the model (``_trigger_campaign.compare``), the live-time counters of spec 2.12
after every advance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from _mutants import TRIGGER_MUTANTS
from _sim import build_trigger
from _trigger_campaign import (
    Segment,
    compare,
    decision_latency,
    make_segment,
    records_from,
    save_campaign,
    with_params,
)

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams
from pokerdaq.trigger import ConditionBits, TriggerBits, TriggerRegisters
from pokerdaq.trigger._chain import stream_pulses, unprescaled_config
from pokerdaq.trigger._registers import P_DEAD, P_N_BOARDS

log = logging.getLogger(__name__)

MUTANT_NAMES = {k: m.name for k, m in TRIGGER_MUTANTS.items()}
LIVETIME_MUTANTS = (6, 7)  # act on the live-time counters only: the trigger records stay right


@pytest.fixture(scope="session")
def trigger_rtl():
    return build_trigger()


@pytest.fixture(scope="session")
def cfg():
    return load_config()


def run_segments(rtl, segments: list[Segment], tmp_path: Path):
    stim, out = tmp_path / "trigger_stimulus.npz", tmp_path / "trigger_records.npz"
    save_campaign(segments, stim)
    rtl.run(stim, out, tmp_path / "sim")
    result = np.load(out)
    report = compare(segments, result)
    report.latency = decision_latency(segments, result)
    log.info("trigger scoreboard: %s", report.summary(limit=10))
    log.info("decision latency: %s", report.latency.summary())
    for k, seg in enumerate(segments):
        ticks, dead, busy, live = (int(v) for v in seg.livetime[-1])
        log.info(
            "segment %d: %d primitives, %d slices, %d triggers, %d RTL clocks; %d ticks: %d dead, "
            "%d busy, %d both, %d live; %d advance ends inside dead time",
            k,
            len(seg.records),
            len(seg.ends),
            len(seg.expected),
            int(result[f"clocks{k}"]),
            ticks,
            dead,
            busy,
            dead + busy - (ticks - live),
            live,
            seg.straddles,
        )
    return result, report


# ---------------------------------------------------------------- stimuli


def chain_segment(cfg, seed: int, n_samples: int, rng, **kw) -> Segment:
    """Primitives from the real chain: emulator -> PulseStream -> all channels."""
    pulses, n_particles = stream_pulses(cfg, np.arange(len(cfg.channel_map)), seed, n_samples)
    assert n_particles > 0
    return make_segment(TriggerRegisters.from_config(cfg, seed), pulses, rng, **kw)


def unit_gain_registers(cfg, seed: int, **values) -> TriggerRegisters:
    """Registers with E = NET (GAIN = 1, F = 0, no LUT), so energies hit thresholds exactly."""
    import dataclasses

    regs = TriggerRegisters.from_config(cfg, seed)
    regs = dataclasses.replace(regs, ch_gain=np.ones_like(regs.ch_gain), ch_lut=np.full_like(regs.ch_lut, -1))
    return with_params(regs, frac=0, **values)


CORNER_REGS = dict(
    beam_k=2,
    beam_thr=100,
    beam_w=40,
    srd_k=2,
    srd_emin=50,
    srd_emax=200,
    srd_lo=-100,
    srd_hi=300,
    veto_thr=80,
    veto_lo=-64,
    veto_hi=200,
    calo_lo=-50,
    calo_hi=250,
    hcal_lo=-30,
    hcal_hi=400,
    ecal_cut=5000,
    prs_min=300,
    calib_min=8000,
    mip_lo=1000,
    mip_hi=3000,
    hcal_thr=500,
    lat=12,
    dead=20,
    guard=700,
    rnd_mode=2,
    rnd_param=97,
    prescale=1,
)


def corner_segment(
    cfg,
    rng,
    n_particles: int,
    *,
    seed: int = 5,
    busy_fraction: float = 0.15,
    busy_intervals: bool = False,
    max_busy_ticks: int = 300,
    max_slice_ticks=60,
    idle_fraction: float = 0.0,
    late_fraction: float = 0.0,
    **values,
) -> Segment:
    """Random particles whose energies and times sit on the register edges.

    Energies are drawn from each threshold and threshold +-1, zero, negative nets and
    saturating values; times from the window edges LO-1, LO, HI-1, HI around the opener,
    counters at t0 + W_BEAM - 1, t0 + W_BEAM, t0 + W_BEAM + 1; particles come close enough
    for overlapping windows, pile-up guard and dead-time edges. A fraction ``idle_fraction``
    of the particles follows a long idle stretch (10,000-200,000 ticks without primitives).
    Slicing and busy: ``make_segment``.
    """
    p = dict(CORNER_REGS)
    p.update(values)
    prescale = p.pop("prescale")
    regs = unit_gain_registers(cfg, seed, **p)
    from pokerdaq.trigger import _registers as r

    for k in range(5):
        regs.params[r.P_PRESCALE + k] = prescale[k] if isinstance(prescale, (list, tuple)) else prescale
    cmap = cfg.channel_map
    groups = {name: cmap.channels_of(name) for name in ("beam_counters", "srd", "preshower", "ecal", "veto", "hcal")}

    def edge_energy(*thr):
        t = int(rng.choice(thr))
        return int(rng.choice([t - 1, t, t + 1, 0, -5, rng.integers(1, 2 * t + 2)]))

    def edge_dt(lo, hi):
        return int(rng.choice([lo - 1, lo, hi - 1, hi, rng.integers(lo, hi)]))

    chans, times, nets = [], [], []

    def hit(c, t, e):
        chans.append(int(c))
        times.append(int(t))
        nets.append(int(e))

    t = 5000
    for _ in range(n_particles):
        t += int(rng.choice([rng.integers(1, 80), rng.integers(40, 800), rng.integers(600, 4000)]))
        if rng.random() < idle_fraction:
            t += 64 * int(rng.integers(10_000, 200_000))
        w = p["beam_w"]
        offsets = [
            0,
            int(rng.choice([0, w - 1, w, w + 1, rng.integers(0, w)])),
            int(rng.choice([w - 1, w, w + 1, 2 * w])),
        ]
        for c, off in zip(groups["beam_counters"], offsets):
            if rng.random() < 0.9:
                hit(c, t + off, edge_energy(p["beam_thr"]))
        for c in rng.choice(groups["srd"], size=rng.integers(0, 4), replace=False):
            hit(c, t + edge_dt(p["srd_lo"], p["srd_hi"]), edge_energy(p["srd_emin"], p["srd_emax"]))
        for c in rng.choice(groups["veto"], size=rng.integers(0, 2), replace=False):
            hit(c, t + edge_dt(p["veto_lo"], p["veto_hi"]), edge_energy(p["veto_thr"]))
        kind = rng.integers(0, 4)
        target = [p["ecal_cut"], p["calib_min"], p["mip_lo"], p["mip_hi"]][kind]
        # "exact" particles: every pre-shower and ECAL hit in time, E_CALO == target + delta
        exact = rng.random() < 0.5
        prs_e = [edge_energy(p["prs_min"]) for _ in range(int(rng.integers(0, 3)))]
        for c, e in zip(rng.choice(groups["preshower"], size=len(prs_e), replace=False), prs_e):
            hit(c, t + (5 if exact else edge_dt(p["calo_lo"], p["calo_hi"])), e)
        delta = int(rng.choice([-1, 0, 0, 1])) if exact else int(rng.integers(-2, 3))
        ecal_total = max(target + delta - (sum(max(e, 0) for e in prs_e) if exact else 0), 0)
        n_cells = int(rng.integers(1, 6))
        split = rng.multinomial(ecal_total, np.ones(n_cells) / n_cells)
        for c, e in zip(rng.choice(groups["ecal"], size=n_cells, replace=False), split):
            in_time = exact or rng.random() >= 0.3
            hit(c, t + 5 if in_time else t + edge_dt(p["calo_lo"], p["calo_hi"]), int(e))
        for c in rng.choice(groups["hcal"], size=rng.integers(0, 3), replace=False):
            hit(c, t + edge_dt(p["hcal_lo"], p["hcal_hi"]), edge_energy(p["hcal_thr"]))
        if rng.random() < 0.03:  # saturation: channel energies at 2^22-1, sums at 2^24-1
            for c in rng.choice(groups["ecal"], size=6, replace=False):
                hit(c, t + 3, int(rng.integers((1 << 22) - 2, 1 << 24)))
            for c in groups["srd"][:2]:
                hit(c, t + 3, (1 << 24) - 1)
        if rng.random() < 0.3:  # noise anywhere
            hit(rng.integers(0, len(cmap)), t + int(rng.integers(-500, 500)), int(rng.integers(-50, 9000)))
    times_arr = np.maximum(np.asarray(times), 0)
    rec = records_from(np.asarray(chans), times_arr, np.asarray(nets))
    return make_segment(
        regs,
        rec,
        rng,
        max_slice_ticks=max_slice_ticks,
        busy_fraction=busy_fraction,
        busy_intervals=busy_intervals,
        max_busy_ticks=max_busy_ticks,
        late_fraction=late_fraction,
    )


# ---------------------------------------------------------------- tests


def assert_bit_exact(report, min_decisions: int) -> None:
    assert report.decisions >= min_decisions, report.summary()
    assert report.ok, report.summary()


def test_chain_and_corner_decisions_bit_exact(trigger_rtl, cfg, tmp_path):
    """Real chain (emulator -> PulseStream) with the default and an unprescaled register set,
    a 1 MHz beam (pile-up), and corner-case primitives with prescalers, dead time and busy;
    the live-time counters after every advance (busy intervals, DEAD = 0, long idle
    stretches, dead time across advance ends) and late primitives."""
    rng = np.random.default_rng(11)
    fast = cfg.replace(beam={"rate_hz": 1.0e6})
    segments = [
        chain_segment(unprescaled_config(cfg), 21, 400_000, rng),
        chain_segment(cfg.replace(trigger={"random_rate_hz": 2.0e5}), 22, 300_000, rng, busy_fraction=0.2),
        chain_segment(unprescaled_config(fast), 23, 100_000, rng),
        corner_segment(cfg, rng, 500, prescale=1, dead=0, busy_fraction=0.0),
        corner_segment(cfg, rng, 500, prescale=[2, 3, 1, 4, 5], dead=25, seed=6),
        corner_segment(
            cfg, rng, 300, prescale=[1, 2, 3, 1, 2], dead=7, rnd_mode=1, rnd_param=int(0.02 * 2**32), seed=7
        ),
        # periodic random trigger every 5 ticks: fires at ticks 4, 9 (< LATENCY = 12: no candidate), 14 ...
        corner_segment(cfg, rng, 15, prescale=1, dead=0, rnd_param=5, seed=12),
        *livetime_segments(cfg, rng),
    ]
    result, report = run_segments(trigger_rtl, segments, tmp_path)
    assert_bit_exact(report, 600)
    # spec 2.10: every advance within its clock bound (every record too: it leaves in its advance)
    assert report.latency.records == report.decisions and not report.latency.violations, report.latency.summary()
    assert report.livetime_snapshots >= 5_000, report.summary()
    assert report.late_records > 0, report.summary()
    assert_livetime_exercised(segments)
    rnd = segments[6].expected  # the periodic random trigger every 5 ticks
    rnd = rnd[(rnd["conditions"] & ConditionBits.RANDOM) != 0]
    assert int(rnd["timestamp"].min()) == 14 and int(rnd["ref_time"].min()) == (14 - 12) * 64
    # coverage: every condition bit and every trigger type occurs in the compared records,
    # losses to dead time and busy are counted, prescalers wrapped
    cond = np.concatenate([s.expected["conditions"] for s in segments])
    word = np.concatenate([s.expected["trigger_word"] for s in segments])
    for bit, name in enumerate(ConditionBits.NAMES):
        assert (cond >> bit & 1).any(), f"condition {name} never set"
    for bit, name in enumerate(TriggerBits.NAMES):
        assert (word >> bit & 1).any(), f"type {name} never accepted"
    assert sum(s.counters["lost_dead"].sum() for s in segments) > 0
    assert sum(s.counters["lost_busy"].sum() for s in segments) > 0
    assert (segments[4].counters["raw"] > segments[4].counters["prescaled"]).any()
    sums = np.concatenate([s.expected["e_calo"] for s in segments])
    assert (sums == (1 << 24) - 1).any(), "no saturated sum"


def worst_rate_segment(cfg, rng, n_ticks: int, start: int = 200, seed: int = 15) -> Segment:
    """The worst-case primitive rate of the configuration: every channel pulses as often as its
    pulse finder can report (one pulse per max(NSA, 2) samples: a new candidate needs
    c' >= c + NSA and x[c' - 1] <= T, spec 1.4), for ``n_ticks`` ticks from tick ``start``,
    unprescaled, no dead time, a 2 MHz Poisson random trigger; cut into slices of 1-8 ticks."""
    spacing = np.maximum(PulseParams.from_config(cfg).nsa, 2)
    chans, times, nets = [], [], []
    for ch, sp in enumerate(spacing):
        ticks = np.arange(start + int(rng.integers(0, sp)), start + n_ticks, int(sp))
        chans.append(np.full(len(ticks), ch))
        times.append(ticks * 64 + rng.integers(0, 64, len(ticks)))
        nets.append(rng.integers(-50, 20_000, len(ticks)))
    rec = records_from(np.concatenate(chans), np.concatenate(times), np.concatenate(nets))
    regs = TriggerRegisters.from_config(unprescaled_config(cfg).replace(trigger={"random_rate_hz": 2.0e6}), seed)
    return make_segment(regs, rec, rng, max_slice_ticks=8)


def test_decision_latency_at_the_worst_case_primitive_rate(trigger_rtl, cfg, tmp_path):
    """Spec 2.10 (firmware latency): at the most primitives per tick the configuration allows
    (130 channels, one pulse per NSA samples: 6.8 per tick) trigger_top stays bit-exact and
    within its clock bound per advance, and needs many clocks per stream tick: it keeps the
    model's decisions and ISSUE times in stream time, not LATENCY in real time at one clock per
    tick. The measured clocks per tick are in the log (and in the spec)."""
    seg = worst_rate_segment(cfg, np.random.default_rng(15), n_ticks=250)
    rate = len(seg.records) / 250
    assert rate > 6.5, rate
    _, report = run_segments(trigger_rtl, [seg], tmp_path)
    assert_bit_exact(report, 30)
    lat = report.latency
    assert lat.records == report.decisions and not lat.violations, lat.summary()
    per_tick = lat.clocks / lat.ticks
    log.info(
        "worst-case rate %.2f primitives/tick: %.1f clocks/tick, %.1f clocks/primitive, largest decision "
        "latency %d clocks",
        rate,
        per_tick,
        lat.clocks / lat.primitives,
        lat.max_latency,
    )
    assert per_tick > 1.0  # not real time at one clock per tick (spec 2.10): the bound is in clocks


def test_latency_check_sees_an_advance_over_its_bound():
    """The latency check can fail: an advance that takes one clock more than its bound."""
    from _trigger_campaign import advance_bound

    regs = TriggerRegisters.from_config(load_config())
    rec = records_from(np.array([0, 1]), np.array([6400, 6410]), np.array([100, 100]))
    seg = Segment(regs=regs, records=rec, ends=[150], busy=[0], cuts=[2])
    bound = advance_bound(2, 1, 150, 2, int(regs.params[P_N_BOARDS]), True)
    result = {
        "columns": np.array(["segment", "clock"]),
        "rows": np.array([[0, 100 + bound]]),
        "advances0": np.array([[100, 100 + bound, 2, 1]]),
    }
    assert not decision_latency([seg], result).violations
    result["advances0"] = np.array([[100, 101 + bound, 2, 1]])
    assert decision_latency([seg], result).violations


def livetime_segments(cfg, rng) -> list[Segment]:
    """Segments for the live-time counters: busy as [start, stop) intervals (the bench cuts its
    advances at their edges) with DEAD = 0, and long idle stretches cut into slices of 1-4,
    1-60 and 1-20,000 ticks, with a periodic random trigger and a dead time of 300 ticks that
    spans many advances, busy intervals of up to 5,000 ticks. The first also sends late
    primitives (held back past their slice's end: err_late against the model's late_records)."""
    return [
        corner_segment(
            cfg, rng, 300, prescale=1, dead=0, seed=13, busy_fraction=0.3, busy_intervals=True, late_fraction=0.1
        ),
        corner_segment(
            cfg,
            rng,
            120,
            prescale=[1, 1, 1, 2, 1],
            dead=300,
            seed=14,
            rnd_param=997,
            idle_fraction=0.1,
            max_slice_ticks=(4, 60, 20_000),
            busy_fraction=0.3,
            busy_intervals=True,
            max_busy_ticks=5_000,
        ),
    ]


def assert_livetime_exercised(segments: list[Segment]) -> None:
    """Dead time reaching past advance ends, busy and dead ticks overlapping, DEAD = 0 with
    accepted triggers, busy levels changing between advances."""
    lt = np.array([s.livetime[-1] for s in segments])
    ticks, dead, busy, live = lt.T
    assert (dead > 0).any() and (busy > 0).any()
    assert (dead + busy - (ticks - live) > 0).any(), "busy and dead ticks never overlap"
    assert sum(s.straddles for s in segments) > 0, "no dead time across an advance end"
    assert any(int(s.regs.params[P_DEAD]) == 0 and len(s.expected) and s.livetime[-1][2] > 0 for s in segments)
    assert sum(int(np.count_nonzero(np.diff(np.asarray(s.busy, int)))) for s in segments) > 100


def check_mutants(cfg, tmp_path, mutants) -> None:
    rng = np.random.default_rng(44)
    segments = [
        corner_segment(cfg, rng, 200, prescale=1, dead=0, seed=8, busy_fraction=0.0),
        corner_segment(cfg, rng, 200, prescale=1, dead=25, seed=9, busy_fraction=0.0),
        corner_segment(cfg, rng, 150, prescale=1, dead=40, seed=10, busy_fraction=0.3, busy_intervals=True),
    ]
    missed = []
    for mutant in mutants:
        rtl = build_trigger(mutant=mutant)
        sub = tmp_path / f"m{mutant}"
        sub.mkdir()
        _, report = run_segments(rtl, segments, sub)
        log.info("MUTANT=%d (%s): %s", mutant, MUTANT_NAMES[mutant], report.summary(limit=2))
        if report.ok:
            missed.append(f"MUTANT={mutant} ({MUTANT_NAMES[mutant]})")
        if mutant in LIVETIME_MUTANTS:  # caught by the live-time counters alone
            assert not report.mismatches and not report.counter_mismatches, report.summary(limit=5)
            assert report.livetime_mismatches, f"MUTANT={mutant} not detected"
    assert not missed, f"not detected: {missed}"


def test_scoreboard_catches_mutants(cfg, tmp_path):
    """The bench is itself tested: a deliberately wrong cut, coincidence window and live-time
    count must give mismatches (the other mutants run in the long regression: one build each)."""
    check_mutants(cfg, tmp_path, (1, 2, 6))


@pytest.mark.firmware_long
def test_scoreboard_catches_every_mutant(cfg, tmp_path):
    check_mutants(cfg, tmp_path, tuple(MUTANT_NAMES))


@pytest.mark.firmware_long
def test_long_trigger_regression_bit_exact(trigger_rtl, cfg, tmp_path):
    """Several thousand decisions: longer chain streams and corner campaigns, live-time campaigns."""
    rng = np.random.default_rng(77)
    segments = [
        chain_segment(unprescaled_config(cfg), 31, 2_000_000, rng),
        chain_segment(unprescaled_config(cfg.replace(beam={"rate_hz": 1.0e6})), 32, 600_000, rng),
        chain_segment(cfg.replace(trigger={"random_rate_hz": 2.0e5}), 33, 1_000_000, rng, busy_fraction=0.2),
        corner_segment(cfg, rng, 3000, prescale=1, dead=0, busy_fraction=0.0, seed=9),
        corner_segment(cfg, rng, 3000, prescale=[2, 3, 1, 4, 5], dead=25, seed=10),
        # real chain, default dead time (250 ticks), busy as intervals of up to 2,000 ticks
        chain_segment(
            cfg.replace(trigger={"random_rate_hz": 2.0e5}),
            34,
            400_000,
            rng,
            busy_fraction=0.2,
            busy_intervals=True,
            max_busy_ticks=2_000,
        ),
        *livetime_segments(cfg, rng),
    ]
    _, report = run_segments(trigger_rtl, segments, tmp_path)
    assert_bit_exact(report, 5000)
    assert_livetime_exercised(segments)
