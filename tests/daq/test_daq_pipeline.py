"""A whole run over real processes and sockets: every event written is what the source produced."""

import numpy as np
import pytest
from _daqhelpers import check_event_samples, daq_run, fast_config, offline_candidates

from pokerdaq.daq._synthetic import PEDESTAL, SyntheticFrontEnd, simple_pulses
from pokerdaq.io import RunFile
from pokerdaq.io._records import EventFlags

SEED = 11


@pytest.mark.timeout(240)
def test_every_event_matches_the_source(tmp_path):
    # time-outs far above any scheduling delay of a loaded machine: no event is late here, so an
    # INCOMPLETE event would be a fault, not the load (builder_timeout_s = 1 s gave 212 of 600 at load 14)
    cfg = fast_config(builder_timeout_s=30.0, board_timeout_s=30.0)
    n = 600
    with daq_run(cfg, tmp_path, seed=SEED, max_events=n) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
        assert run.monitor_messages >= 1
    assert s["errors"] == []
    assert s["events_issued"] == s["events_built"] == s["events_written"] == n
    assert s["events_incomplete"] == 0 and s["fragments_rejected"] == {}
    # nothing lost uncounted: every trigger condition is accepted, or counted lost (dead time, busy),
    # or beyond --events
    for t in s["trigger_types"].values():
        assert t["candidates"] == t["accepted"] + t["trimmed"] + t["lost_dead_time"] + t["lost_busy"], t
    [path] = s["files"]
    assert not path.endswith(".part")
    with RunFile(path) as f:
        assert f.closed_cleanly and len(f) == n
        ev = f.events
        np.testing.assert_array_equal(ev["event_number"], np.arange(n))
        # BOARD_BUSY (a board's readout queue above its busy mark at readout: flow control, no
        # data lost) may be set on a loaded machine; no other flag may
        assert (ev["flags"] & ~np.uint32(EventFlags.BOARD_BUSY) == 0).all() and (ev["missing_boards"] == 0).all()
        assert (np.diff(ev["timestamp"].astype(np.int64)) > 0).all()
        # the trigger record: each event is a trigger condition the source really produced
        n_slices = int(ev["timestamp"][-1]) // cfg.daq.slice_ticks + 1
        cands = offline_candidates(cfg, SEED, n_slices)
        for h in ev:
            assert cands.get(int(h["timestamp"])) == int(h["trigger_word"]), h
        # the samples and pulses: each window is the source's, cut at the trigger time
        cmap = cfg.channel_map
        fes = [SyntheticFrontEnd(cfg, b, SEED) for b in range(cmap.n_boards)]
        batch = f.read(0, n)
        off = f.pulse_offsets
        for i in range(n):
            check_event_samples(cfg, SEED, batch.headers[i], batch.samples[i])
            expect = np.concatenate(
                [
                    simple_pulses(
                        batch.samples[i][cmap.channels_on_board(b)], cmap.channels_on_board(b), fes[b]._threshold
                    )
                    for b in range(cmap.n_boards)
                ]
            )
            got = batch.pulses[off[i] : off[i + 1]]
            assert (got["event_number"] == i).all()
            np.testing.assert_array_equal(got["channel"], expect["channel"])
            np.testing.assert_array_equal(got["integral"], expect["integral"])
        # every multiplicity event has pulses above threshold on at least `multiplicity` boards
        mult_events = np.flatnonzero(ev["trigger_word"] & 1)
        assert len(mult_events) > n // 2
        for i in mult_events[:50]:
            hit_boards = {int(cmap.table["board"][c]) for c in batch.pulses[off[i] : off[i + 1]]["channel"]}
            assert len(hit_boards) >= cfg.daq.synthetic.multiplicity
        assert f.verify().size == 0
        # the run's scalers: one row, the trigger's and the builder's counts
        [sc] = f.scalers
        assert sc["triggers_accepted"] == sc["events_built"] == n and sc["events_incomplete"] == 0
        assert sc["triggers_raw"] == sum(t["candidates"] for t in s["trigger_types"].values())
        assert sc["busy_ticks"] == s["busy_ticks"] and sc["stop_timestamp"] > ev["timestamp"][-1]
        assert sc["trigger_bits"][0] == int((ev["trigger_word"] & 1).sum())
        assert PEDESTAL - 10 < np.median(batch.samples) < PEDESTAL + 10
        assert EventFlags.INCOMPLETE not in EventFlags(int(np.bitwise_or.reduce(ev["flags"])))
