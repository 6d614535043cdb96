"""Fast-forward over the beam-off time (``daq.fast_forward``): same data, far fewer slice messages.

Real processes, real sockets, real files: a physics run with short spills and long gaps is
taken with fast-forward on and off and the files compared field by field; a foreign stretch
message is rejected and counted by a running trigger processor; a board killed inside a
stretch is still detected. Front-end and trigger-logic level checks compare a stretch with
the same slices one by one.
"""

import os
import signal

import numpy as np
import pytest
import zmq
from _daqhelpers import FAST, daq_run, poll_until, status

from pokerdaq.config import load_config
from pokerdaq.daq._sparse import SparsePhysicsFrontEnd
from pokerdaq.daq._wire import (
    MAX_STRETCH_SLICES,
    PRIMITIVE_DTYPE,
    PRIMITIVE_MAGIC,
    MessageError,
    StretchError,
    decode_slice,
    encode_slice,
)
from pokerdaq.io import EventFlags, RunFile

SEED = 11
# 50,000 ticks on, then 0.1 s (25 M ticks, ~1526 slices) off: almost all of the run is beam-off
GAPS = {"spill_length_s": 2e-4, "spill_period_s": 0.1}
SPILL_TICKS = 25_000_000


def gap_config(**daq):
    timeouts = {k: v for k, v in FAST.items() if k not in ("front_end", "trigger_logic")}
    # a board queue that holds every fragment of the run: busy (flow control, which depends on how
    # fast the builder drains, i.e. on the machine's load) never stops a trigger nor counts busy ticks
    return load_config().replace(
        daq={
            **timeouts,
            "builder_timeout_s": 60.0,
            "board_timeout_s": 60.0,
            "boards_per_process": 6,
            "fast_forward_slices": 512,
            "board_queue_events": 4096,
            **daq,
        },
        beam=GAPS,
    )


def run_file(cfg, path, n_events):
    with daq_run(cfg, path, seed=SEED, max_events=n_events) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
        tp = status(run, "trigger")
    assert s["errors"] == [] and s["events_written"] == n_events
    return s, tp


def read_all(path, n):
    with RunFile(path) as f:
        b = f.read(0, n)
        return {
            "events": f.events,
            "samples": b.samples,
            "pulses": b.pulses,
            "offsets": b.pulse_offsets,
            "truth": b.truth,
            "scalers": f.scalers,
        }


@pytest.mark.timeout(420)
def test_fast_forward_gives_the_same_file_with_far_fewer_decisions(tmp_path):
    n = 90
    s_on, tp_on = run_file(gap_config(fast_forward=True), tmp_path / "on", n)
    s_off, tp_off = run_file(gap_config(fast_forward=False), tmp_path / "off", n)
    on, off = read_all(s_on["files"][0], n), read_all(s_off["files"][0], n)
    # the run crossed several beam-off gaps
    assert len(on["scalers"]) >= 3 and (on["events"]["flags"] & EventFlags.INCOMPLETE == 0).all()
    # BOARD_BUSY says a board's readout queue was above its busy mark when it read the event out:
    # flow-control state, not physics. A stretch decides many slices' triggers at once, so the
    # queue fills further than slice by slice; every other flag and every byte must agree
    busy = np.uint32(EventFlags.BOARD_BUSY)
    for run in (on, off):
        run["events"] = run["events"].copy()
        run["events"]["flags"] &= ~busy
    for key in ("events", "samples", "pulses", "offsets", "truth", "scalers"):
        a, b = on[key], off[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if a.dtype.names:
            for name in a.dtype.names:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"{key}.{name}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
    # the trigger counted the same (the run ended inside a stretch: it was decided again up to
    # the slice of the last event, as slice by slice)
    for key in ("beam_counts", "triggers_raw", "busy_ticks", "spills", "slices_decided"):
        assert s_on[key] == s_off[key], key
    for name, t in s_off["trigger_types"].items():
        for field in ("accepted", "candidates", "lost_dead_time", "lost_busy", "trimmed"):
            assert s_on["trigger_types"][name][field] == t[field], (name, field)
    # the same time was decided, in far fewer steps
    assert tp_on["slices_decided"] == tp_off["slices_decided"] and tp_on["decided_ticks"] == tp_off["decided_ticks"]
    assert tp_off["decisions"] == tp_off["slices_decided"] and "stretch_decisions" not in tp_off
    assert tp_on["stretch_decisions"] > 0
    assert tp_on["stretches_shortened_at_max_events"] == 1  # the 90th event came inside a stretch
    assert tp_on["decisions"] * 10 < tp_off["decisions"], (tp_on["decisions"], tp_off["decisions"])
    assert tp_on.get("bad_primitive_messages", 0) == 0


def raw_stretch(board, run_number, first, last):
    """A primitive message with any ``last_slice`` (``encode_slice`` refuses bad ones)."""
    head, body = encode_slice(
        PRIMITIVE_MAGIC,
        board_id=board,
        run_number=run_number,
        flags=0,
        slice_index=first,
        records=np.zeros(0, PRIMITIVE_DTYPE),
    )
    h = np.frombuffer(head, dtype=np.uint8).copy()
    h[32:40] = np.frombuffer(np.uint64(last).tobytes(), np.uint8)
    return [h.tobytes(), body]


def test_stretch_field_is_checked_by_the_decoder():
    good = encode_slice(
        PRIMITIVE_MAGIC,
        board_id=3,
        run_number=1,
        flags=0,
        slice_index=10,
        last_slice=10 + 4095,
        records=np.zeros(0, PRIMITIVE_DTYPE),
    )
    head, _ = decode_slice(good, PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)
    assert (int(head["slice_index"]), int(head["last_slice"])) == (10, 4105) and len(good[0]) == 40
    ok = decode_slice(raw_stretch(3, 1, 10, 10 + MAX_STRETCH_SLICES - 1), PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)[0]
    assert int(ok["last_slice"]) == 10 + MAX_STRETCH_SLICES - 1
    for last in (9, 0, 10 + MAX_STRETCH_SLICES, 2**64 - 1):
        with pytest.raises(StretchError, match="last_slice"):
            decode_slice(raw_stretch(3, 1, 10, last), PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)
    with pytest.raises(ValueError, match="last_slice"):
        encode_slice(
            PRIMITIVE_MAGIC,
            board_id=3,
            run_number=1,
            flags=0,
            slice_index=10,
            last_slice=9,
            records=np.zeros(0, PRIMITIVE_DTYPE),
        )
    v1 = np.frombuffer(good[0], np.uint8).copy()
    v1[4:6] = (1, 0)  # a version-1 header (32 bytes) is refused
    with pytest.raises(MessageError):
        decode_slice([v1[:32].tobytes(), b""], PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)


@pytest.mark.timeout(180)
def test_trigger_processor_rejects_and_counts_bad_stretches(tmp_path):
    from pokerdaq.daq._wire import DECISION_DTYPE, TRIGGER_MAGIC

    cfg = gap_config(board_timeout_s=60.0, builder_timeout_s=1.0)
    rn = cfg.run.run_number
    n_boards = cfg.channel_map.n_boards
    ctx = zmq.Context()
    dealers = []
    try:
        with daq_run(cfg, tmp_path, seed=SEED, only=("trigger", "builder", "writer")) as run:
            for b in range(n_boards):  # play the boards
                d = ctx.socket(zmq.DEALER)
                d.setsockopt(zmq.IDENTITY, f"board{b}".encode())
                d.setsockopt(zmq.LINGER, 0)
                d.connect(run.endpoints["triggers"])
                dealers.append(d)

            def stretch(b, first, last):
                dealers[b].send_multipart(
                    encode_slice(
                        PRIMITIVE_MAGIC,
                        board_id=b,
                        run_number=rn,
                        flags=0,
                        slice_index=first,
                        last_slice=last,
                        records=np.zeros(0, PRIMITIVE_DTYPE),
                    )
                )

            def decision(b):
                assert dealers[b].poll(30_000), "no decision"
                head, trig = decode_slice(dealers[b].recv_multipart(), TRIGGER_MAGIC, DECISION_DTYPE)
                return int(head["slice_index"]), int(head["last_slice"])

            for b in range(n_boards):
                stretch(b, 0, 99)
            assert decision(0) == (0, 99)  # the whole stretch in one decision
            dealers[0].send_multipart(raw_stretch(0, rn, 100, 99))  # ends before it starts
            dealers[0].send_multipart(raw_stretch(0, rn, 100, 100 + MAX_STRETCH_SLICES))  # beyond the maximum
            stretch(0, 200, 300)  # leaves a gap
            stretch(5, 50, 120)  # overlaps what was sent
            poll_until(
                run,
                lambda: status(run, "trigger").get("bad_primitive_messages", 0) >= 4,
                30,
                "the bad messages to be counted",
            )
            # none of them was taken: the stretches that follow on are decided as usual
            for b in range(n_boards):
                stretch(b, 100, 150 if b != 7 else 130)
            assert decision(0) == (100, 130)
            stretch(7, 131, 150)
            assert [decision(3) for _ in range(3)] == [(0, 99), (100, 130), (131, 150)]
            poll_until(run, lambda: status(run, "trigger").get("slices_decided", 0) == 151, 30, "slice 150 decided")
            tp = status(run, "trigger")
            run.stop()
            run.wait(30)
    finally:
        for d in dealers:
            d.close(0)
        ctx.term()
    assert tp["bad_primitive_messages"] == 4 and tp["bad_stretch_messages"] == 4
    assert tp["decisions"] == 3 and tp["stretch_decisions"] == 3 and tp["slices_decided"] == 151
    assert tp["dead_boards"] == {}


@pytest.mark.timeout(300)
def test_board_killed_inside_a_stretch_is_detected(tmp_path):
    cfg = gap_config(board_timeout_s=3.0, builder_timeout_s=2.0)
    n = 400
    killed_mask = sum(1 << b for b in range(6, 12))
    with daq_run(cfg, tmp_path, seed=SEED, max_events=n) as run:
        poll_until(run, lambda: status(run, "trigger").get("stretch_decisions", 0) >= 3, 120, "three stretches")
        os.kill(run.pid("fe1"), signal.SIGKILL)
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
    assert s["died"] == {"fe1": -signal.SIGKILL}
    assert sorted(int(b) for b in s["dead_boards"]) == list(range(6, 12)), s["dead_boards"]
    assert s["events_issued"] == s["events_written"] == n
    with RunFile(s["files"][0]) as f:
        ev = f.events
        missing = ev["missing_boards"].astype(np.int64)
        incomplete = (ev["flags"] & EventFlags.INCOMPLETE) != 0
        assert ((missing != 0) == incomplete).all() and (missing & ~killed_mask == 0).all()
        first_bad = int(np.argmax(incomplete))
        assert incomplete.any() and not incomplete[:first_bad].any()
        assert (missing[first_bad + 20 :] == killed_mask).all()  # once dead, no event waits for them
        assert s["events_incomplete"] == int(incomplete.sum())


def test_fast_forward_config_is_validated():
    from pokerdaq.config import ConfigError, default_config_text, loads_config

    text = default_config_text()
    assert load_config().daq.fast_forward is True
    assert loads_config(text.replace("fast_forward = true ", "fast_forward = false", 1)).daq.fast_forward is False
    with pytest.raises(ConfigError) as info:
        loads_config(text.replace("fast_forward_slices = 256 ", "fast_forward_slices = 20000", 1))
    assert info.value.key == "daq.fast_forward_slices" and info.value.value == 20000


def test_stretch_primitives_equal_slice_by_slice():
    # the front-end side of fast-forward, without processes: every primitive in the same slice
    # group and order, across a spill (0.2 ms on every 20 ms: ~305 slices of 16384 ticks per
    # spill; the 700 slices below cover 3 spills)
    cfg = load_config().replace(beam={"spill_length_s": 2e-4, "spill_period_s": 0.02}, daq={"slice_ticks": 16384})
    n = 700
    for board in (0, 5):  # board 0: beam counters + SRD (Lu-176 pulses off-spill); 5: ECAL
        ref = SparsePhysicsFrontEnd(cfg, board, SEED)
        ff = SparsePhysicsFrontEnd(cfg, board, SEED, warm_up=False)
        want = [ref.process_slice(k).primitives for k in range(n)]
        k, stretches = 0, []
        while k < n:
            last = min(ff.stretch_end(k, 128), n - 1)
            got = ff.process_stretch(k, last).primitives if last > k else ff.process_slice(k).primitives
            assert got.tobytes() == np.concatenate(want[k : last + 1]).tobytes(), (board, k, last)
            stretches.append((k, last))
            k = last + 1
        long = [(a, b) for a, b in stretches if b > a]
        assert len(long) >= 6 and sum(b - a + 1 for a, b in long) > n // 2
        # never on or next to a slice with beam-on time; ends aligned on 128, or 2 slices
        # before the next spill, or at the end of this test
        slice_ns = cfg.daq.slice_ticks * cfg.digitizer.sample_ns
        on = sorted(
            {s for m in range(3) for s in range(int(m * 20e6 // slice_ns), int((m * 20e6 + 2e5) // slice_ns) + 1)}
        )
        for a, b in long:
            assert not any(a - 1 <= s <= b + 1 for s in on), (a, b, on)
            next_on = min([s for s in on if s > b], default=None)
            assert b % 128 == 127 or b == n - 1 or b == next_on - 2, (a, b)
    assert sum(len(p) for p in want) > 0
