"""Emulator truth and per-spill scalers in the files of `pokerdaq run` (real processes, real files).

The truth of every event is checked against a naive reference computed here from the run's
beam time line, and against the data (ECAL energy, SRD tag, empty windows); the /scalers rows
against the file's events and the run summary.
"""

import json

import numpy as np
import pytest
import zmq
from _daqhelpers import FAST, daq_run, fast_config, poll_until, status
from test_daq_builder import N_EVENTS as N
from test_daq_builder import _good_fragments, _records

from pokerdaq.config import load_config
from pokerdaq.daq._wire import DECISION_DTYPE, TRIGGER_MAGIC, SliceFlags, encode_slice
from pokerdaq.io import EventFlags, RunFile
from pokerdaq.sim import NO_PARTICLE_EVENT, TRUTH_DTYPE, Species, build_tables, window_truth
from pokerdaq.sim._beam import BLOCK_SAMPLES, BeamTimeline
from pokerdaq.trigger import ConditionBits, TriggerBits, primitive_energies, trigger_windows
from pokerdaq.trigger._chain import stream_config

SEED = 7
N_EVENTS = 48
SHORT_SPILLS = {"spill_length_s": 2e-4, "spill_period_s": 5e-4}  # 50,000 ticks on, 125,000-tick spills
SPILL_TICKS = 125_000
ON_TICKS = 50_000
BEAM_BITS = TriggerBits.BEAM << TriggerBits.RAW_SHIFT  # the raw BEAM type: a beam coincidence


def reference_truth(cfg, seed, timestamps):
    """Naive truth of each event, straight from the beam time line (docs/hdf5-layout.md rule)."""
    scfg = stream_config(cfg)
    tl = BeamTimeline(scfg, seed)
    lookback = build_tables(scfg).lookback_ns
    pre, n = cfg.digitizer.pretrigger_samples, cfg.digitizer.window_samples
    sample_ns = cfg.digitizer.sample_ns
    last_block = (int(max(timestamps)) + n) // BLOCK_SAMPLES
    particles = np.concatenate([tl.block(k).truth for k in range(last_block + 1)])  # every particle so far
    rows = np.zeros(len(timestamps), TRUTH_DTYPE)
    for i, t in enumerate(int(x) for x in timestamps):
        start = t - pre
        in_window = [p for p in particles if start <= p["t_sample"] < start + n]
        reaching = [p for p in particles if start * sample_ns - lookback <= p["t_ns"] < (start + n) * sample_ns]
        if in_window:
            arrived = [p for p in in_window if p["t_sample"] <= t]
            rows[i] = arrived[-1] if arrived else in_window[0]
            rows[i]["n_pileup"] = len(reaching) - 1
        else:
            rows[i]["event"] = 2**64 - 1
            rows[i]["species"] = -1
            rows[i]["t_sample"] = t
            rows[i]["t_ns"] = t * sample_ns
            rows[i]["n_pileup"] = len(reaching)
    return rows


def physics_config(**beam):
    cfg = load_config()
    timeouts = {k: v for k, v in FAST.items() if k not in ("front_end", "trigger_logic")}
    # generous time-outs: this test checks the data, not the fault handling (test_daq_faults.py)
    return cfg.replace(
        daq={**timeouts, "builder_timeout_s": 60.0, "board_timeout_s": 60.0, "boards_per_process": 6}, beam=beam
    )


def check_scalers(f, summary, spill_ticks):
    """/scalers rows tile [0, run end), agree with the events of the file and with the run summary."""
    sc = f.scalers
    ev = f.events
    start, stop = sc["start_timestamp"].astype(np.int64), sc["stop_timestamp"].astype(np.int64)
    assert len(sc) == summary["spills"] >= 1
    np.testing.assert_array_equal(sc["spill"], np.arange(len(sc)))
    assert start[0] == 0 and (start[1:] == stop[:-1]).all(), "rows must tile the run without gaps"
    np.testing.assert_array_equal(stop[:-1] - start[:-1], spill_ticks)  # every row but the last: a whole spill
    assert 0 < stop[-1] - start[-1] <= spill_ticks and stop[-1] == summary["decided_ticks"]
    ts = ev["timestamp"].astype(np.int64)
    assert ts.max() < stop[-1]
    for r in range(len(sc)):
        here = (ts >= start[r]) & (ts < stop[r])
        assert sc["events_built"][r] == sc["triggers_accepted"][r] == here.sum(), f"spill {r}"
        assert sc["events_incomplete"][r] == (ev["flags"][here] & EventFlags.INCOMPLETE != 0).sum()
        assert sc["events_dropped"][r] == 0
        bits = [int(((ev["trigger_word"][here] >> b) & 1).sum()) for b in range(32)]
        np.testing.assert_array_equal(sc["trigger_bits"][r], bits, err_msg=f"spill {r}")
        assert sc["busy_ticks"][r] <= stop[r] - start[r]
        assert sc["triggers_raw"][r] >= sc["triggers_accepted"][r]
    # the rows add up to the run totals of the summary
    assert sc["triggers_accepted"].sum() == summary["events_issued"] == summary["events_written"]
    assert sc["events_built"].sum() == summary["events_built"]
    assert sc["events_incomplete"].sum() == summary["events_incomplete"]
    assert sc["busy_ticks"].sum() == summary["busy_ticks"]
    assert sc["beam_counts"].sum() == summary["beam_counts"] and sc["triggers_raw"].sum() == summary["triggers_raw"]
    accepted = [t["accepted"] for t in summary["trigger_types"].values()]
    np.testing.assert_array_equal(sc["trigger_bits"].sum(axis=0)[: len(accepted)], accepted)
    return sc


@pytest.mark.timeout(300)
def test_physics_run_truth_of_every_event_and_spill_scalers(tmp_path):
    cfg = physics_config(**SHORT_SPILLS)
    assert cfg.daq.front_end == "physics"
    with daq_run(cfg, tmp_path, seed=SEED, max_events=N_EVENTS) as run:
        assert run.wait(250) == "stopped", run.errors
        s = run.summary()
    assert s["errors"] == [] and s["events_written"] == N_EVENTS
    with RunFile(s["files"][0]) as f:
        batch = f.read(0, N_EVENTS)
        ev, truth = batch.headers, batch.truth
        assert truth is not None and truth.dtype == TRUTH_DTYPE and f[3].truth == truth[3]
        # every event: simulated, complete or flagged
        assert (ev["flags"] & EventFlags.SIMULATED != 0).all()
        assert ((ev["missing_boards"] == 0) | (ev["flags"] & EventFlags.INCOMPLETE != 0)).all()
        # the truth row of every event equals the naive reference, field by field
        want = reference_truth(cfg, SEED, ev["timestamp"])
        for name in TRUTH_DTYPE.names:
            np.testing.assert_array_equal(truth[name], want[name], err_msg=name)
        matched = truth["species"] != Species.NONE
        assert s["truth_rows"] == N_EVENTS and s["truth_matched"] == matched.sum()
        assert (truth["event"][~matched] == NO_PARTICLE_EVENT).all()
        # the rule picks the triggering particle: a beam coincidence's reference time follows its
        # particle's arrival by about one tick
        beam = (ev["trigger_word"] & BEAM_BITS) != 0
        assert beam.sum() >= N_EVENTS // 2 and matched[beam].all()
        delay = ev["timestamp"][beam].astype(np.int64) - truth["t_sample"][beam]
        assert ((delay >= 0) & (delay <= 2)).all(), delay
        # events without a beam coincidence exist (random triggers) and hold no particle here
        assert (~matched).any() and not beam[~matched].any()

        # the physics agrees with the data
        cmap = np.asarray(cfg.channel_map.table)
        p, off = batch.pulses, batch.pulse_offsets
        window = np.repeat(np.arange(N_EVENTS), np.diff(off))
        sub = cmap["subsystem"][p["channel"]]
        e_gev = primitive_energies(p, cfg) / 16e3  # calibrated (saturation-corrected) channel energies
        ecal = np.bincount(window[sub == b"ecal"], weights=e_gev[sub == b"ecal"], minlength=N_EVENTS)
        big = truth["e_ecal_gev"] > 5.0
        alone = big & (truth["n_pileup"] == 0)
        assert alone.sum() >= N_EVENTS // 2
        ratio = ecal[alone] / truth["e_ecal_gev"][alone]
        # measured 0.9875 +- 0.0062 (895 events of `pokerdaq demo`, min 0.968, max 0.999)
        assert (np.abs(ratio - 1.0) < 0.05).all(), ratio
        # a piled-up particle can only add energy to the window
        assert (ecal[big & ~alone] / truth["e_ecal_gev"][big & ~alone] > 0.95).all()
        srd_tag = trigger_windows(p, window, N_EVENTS, cfg)["conditions"] & ConditionBits.SRD != 0
        positron_sr = (truth["species"] == Species.POSITRON) & (truth["e_srd_mev"] > 3.0)
        assert positron_sr.sum() >= N_EVENTS // 2 and srd_tag[positron_sr].all()
        empty = ~matched & (truth["n_pileup"] == 0)
        assert empty.any()
        for i in np.flatnonzero(empty):  # no particle: nothing in counters, pre-shower, ECAL, HCAL
            assert not np.isin(sub[off[i] : off[i + 1]], [b"beam_counters", b"preshower", b"ecal", b"hcal"]).any()

        # per-spill scalers
        sc = check_scalers(f, s, SPILL_TICKS)
        assert len(sc) >= 20
        # beam coincidences: the beam particles of each spill (two within the 12 ns coincidence count once)
        tl = BeamTimeline(stream_config(cfg), SEED)
        particles = np.concatenate(
            [tl.block(k).truth["t_sample"] for k in range(int(sc["stop_timestamp"][-1]) // BLOCK_SAMPLES + 1)]
        )
        for r in sc:
            n = ((particles >= int(r["start_timestamp"])) & (particles < int(r["stop_timestamp"]))).sum()
            assert 0 <= n - int(r["beam_counts"]) <= 2 and n > 0, (r["spill"], n, r["beam_counts"])
        # beam-type triggers only in the on-time (plus the coincidence delay), random ones anywhere
        in_spill = ev["timestamp"].astype(np.int64) % SPILL_TICKS
        assert (in_spill[beam] < ON_TICKS + 4).all()


@pytest.mark.timeout(240)
def test_synthetic_run_spills_tile_the_run(tmp_path):
    # random triggers every 30,011 ticks: they fall at every phase of the 125,000-tick spills
    cfg = fast_config(synthetic={"random_period_ticks": 30011}).replace(beam=SHORT_SPILLS)
    n_events = 400
    with daq_run(cfg, tmp_path, seed=3, max_events=n_events) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
    assert s["errors"] == [] and s["events_written"] == n_events
    with RunFile(s["files"][0]) as f:
        assert f.truth is None  # no emulator: no truth
        assert not (f.events["flags"] & EventFlags.SIMULATED).any()
        sc = check_scalers(f, s, SPILL_TICKS)
        assert len(sc) >= 5 and sc["triggers_accepted"].max() > 20
        ev = f.events
        phase = ev["timestamp"].astype(np.int64) % SPILL_TICKS
        mult = (ev["trigger_word"] & 1) != 0  # the synthetic beam coincidence
        assert (phase[mult] < ON_TICKS + 2).all() and (phase[~mult] >= ON_TICKS).any()
        assert (sc["beam_counts"] >= sc["trigger_bits"][:, 0]).all()


def test_window_truth_matches_the_reference_across_blocks_and_gaps():
    cfg = load_config().replace(beam={"spill_length_s": 2e-3, "spill_period_s": 5e-3})
    rng = np.random.default_rng(11)
    tl = BeamTimeline(stream_config(cfg), SEED)
    # trigger ticks near particles (before, at and after them), at random, and across a block edge
    arrivals = np.concatenate([tl.block(k).truth["t_sample"] for k in range(3)])
    near = rng.choice(arrivals, 60) + rng.integers(-60, 30, 60)  # mostly inside their windows
    ts = np.sort(np.concatenate([near, rng.integers(16, 3 * BLOCK_SAMPLES, 60), [BLOCK_SAMPLES + 3]]))
    ts = ts[ts >= cfg.digitizer.pretrigger_samples]
    got = window_truth(
        tl,
        ts,
        ts - cfg.digitizer.pretrigger_samples,
        cfg.digitizer.window_samples,
        build_tables(stream_config(cfg)).lookback_ns,
    )
    want = reference_truth(cfg, SEED, ts)
    for name in TRUTH_DTYPE.names:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert (got["species"] == Species.NONE).sum() > 10 and (got["species"] != Species.NONE).sum() > 30
    assert got["n_pileup"].max() >= 1
    with pytest.raises(ValueError, match="ref_ticks"):
        window_truth(tl, ts, ts + 1, 64, 100.0)  # the reference tick outside its window
    with pytest.raises(ValueError, match="n_samples"):
        window_truth(tl, ts, ts, 0, 100.0)


@pytest.mark.timeout(240)
def test_full_stream_front_end_writes_the_same_truth(tmp_path):
    cfg = physics_config()
    cfg = cfg.replace(daq={"front_end": "physics-stream"})
    n = 4
    with daq_run(cfg, tmp_path, seed=SEED, max_events=n) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
    assert s["errors"] == [] and s["events_written"] == n and s["spills"] == 1
    with RunFile(s["files"][0]) as f:
        ev, truth = f.events, f.truth
        assert (ev["flags"] & EventFlags.SIMULATED != 0).all()
        want = reference_truth(cfg, SEED, ev["timestamp"])
        for name in TRUTH_DTYPE.names:
            np.testing.assert_array_equal(truth[name], want[name], err_msg=name)
        assert (truth["species"] != Species.NONE).any()


def test_trigger_cuts_at_spill_ends_change_no_decision_and_count_up_to_the_cut():
    from pokerdaq.daq._physics import PhysicsTrigger
    from pokerdaq.daq._wire import PRIMITIVE_DTYPE

    cfg = load_config()
    st = cfg.daq.slice_ticks
    counters = cfg.channel_map.channels_of("beam_counters")
    rng = np.random.default_rng(5)
    # arrival ticks, never two within the 12 ns (3-tick) coincidence window
    particles = 100 + np.cumsum(rng.integers(4, 900, 400))
    prims = np.zeros(len(particles) * len(counters), PRIMITIVE_DTYPE)
    prims["time"] = np.repeat(particles, len(counters)) * 64 + 40
    prims["channel"] = np.tile(counters, len(particles))
    prims["integral_net"] = 1000  # ~2 MeV: above the beam-counter threshold
    prims["peak"] = 300
    whole, cut = PhysicsTrigger(cfg, SEED), PhysicsTrigger(cfg, SEED)
    ends = [3 * st - 17, 5 * st + 1000, 5 * st + 5000, 9 * st]
    got_whole, got_cut, counts = [], [], []
    for k in range(14):
        mine = prims[(prims["time"] >> 6) // st == k]
        here = [e for e in ends if cut.decided_until(k - 1) < e <= cut.decided_until(k)]
        a = whole.process_slice(k, mine, False)
        b = cut.process_slice(k, mine, False, cuts=here)
        assert len(b.cut_counts) == len(here)
        got_whole.append(a.timestamps)
        got_cut.append(b.timestamps)
        counts += list(zip(here, b.cut_counts))
    # the same decisions, whatever the cuts
    np.testing.assert_array_equal(np.concatenate(got_whole), np.concatenate(got_cut))
    assert [e for e, _ in counts] == ends
    # at each cut: every beam coincidence with reference tick below it, and no other
    for end, c in counts:
        assert c.beam_coincidences == int((particles < end).sum())
    assert whole.scaler_counts() == cut.scaler_counts()
    assert whole.scaler_counts().beam_coincidences == len(particles)


@pytest.mark.timeout(90)
def test_writer_holds_a_spill_row_until_its_events_and_counts_malformed_rows(tmp_path):
    cfg = fast_config()
    rec = _records(cfg)
    frags = _good_fragments(cfg, rec)
    row = {
        "spill": 0,
        "start_timestamp": 0,
        "stop_timestamp": 5000,
        "beam_counts": 7,
        "triggers_raw": N + 2,
        "triggers_accepted": N,
        "busy_ticks": 3,
        "trigger_bits": [N] + [0] * 31,
        "first_event": 0,
        "end_event": N,
        "final": True,
    }
    ctx = zmq.Context()
    tp, peer = ctx.socket(zmq.PUSH), ctx.socket(zmq.PUSH)
    try:
        with daq_run(cfg, tmp_path, only=("builder", "writer")) as run:
            for s in (tp, peer):
                s.setsockopt(zmq.LINGER, 5000)
            tp.connect(run.endpoints["trigger_records"])
            peer.connect(run.endpoints["fragments"])
            head = dict(board_id=0xFFFF, run_number=cfg.run.run_number)
            tp.send_multipart(
                encode_slice(TRIGGER_MAGIC, **head, flags=int(SliceFlags.RECORDS), slice_index=0, records=rec)
            )
            tp.send_multipart([b"SCALERS", b"{not json"])  # malformed: counted
            tp.send_multipart([b"SCALERS", json.dumps({**row, "spill": "zero"}).encode()])  # wrong type
            tp.send_multipart([b"SCALERS", json.dumps(row).encode()])  # before any fragment
            poll_until(run, lambda: status(run, "builder").get("scaler_rows", 0) >= 3, 30, "the rows to pass")
            for _key, (buf, _) in sorted(frags.items()):
                peer.send(buf)
            tp.send_multipart(
                encode_slice(
                    TRIGGER_MAGIC,
                    **head,
                    flags=int(SliceFlags.END_OF_RUN | SliceFlags.RECORDS),
                    slice_index=N,
                    records=np.zeros(0, DECISION_DTYPE),
                )
            )
            run.stop()
            assert run.wait(30) == "stopped", run.errors
            writer = run.stats["writer"]
    finally:
        tp.close(0)
        peer.close(0)
        ctx.term()
    assert writer["bad_scaler_messages"] == 2 and writer["scaler_rows"] == 1
    with RunFile(writer["files"][0]) as f:
        [got] = f.scalers
        assert len(f) == N
        # the row came before its events, and was written after them, with them counted
        assert got["events_built"] == N and got["events_incomplete"] == 0 and got["events_dropped"] == 0
        assert (got["beam_counts"], got["triggers_raw"], got["busy_ticks"], got["trigger_bits"][0]) == (7, N + 2, 3, N)
