"""The event builder process against a foreign ZeroMQ peer: malformed, duplicate, late, mismatched, huge."""

import struct
import zlib

import numpy as np
import pytest
import zmq
from _daqhelpers import daq_run, fast_config, poll_until, status

from pokerdaq.daq._wire import DECISION_DTYPE, TRIGGER_MAGIC, FragmentFlags, SliceFlags, encode_fragment, encode_slice
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io import RunFile
from pokerdaq.io._records import EventFlags
from pokerdaq.io._records import EventFlags as F

N_EVENTS = 10


def _records(cfg):
    rec = np.zeros(N_EVENTS, DECISION_DTYPE)
    rec["event_number"] = np.arange(N_EVENTS)
    rec["timestamp"] = 1000 + 100 * np.arange(N_EVENTS)
    rec["trigger_word"] = 1
    return rec


def _good_fragments(cfg, rec):
    """(event, board) -> (bytes, samples) of valid fragments with seeded samples and one pulse each."""
    cmap = cfg.channel_map
    rng = np.random.default_rng(3)
    out = {}
    for r in rec:
        for b in range(cmap.n_boards):
            chans = cmap.channels_on_board(b)
            samples = rng.integers(0, 16384, (len(chans), cfg.digitizer.window_samples), dtype=np.uint16)
            pulses = np.zeros(1, PULSE_DTYPE)
            pulses["channel"] = chans[0]
            pulses["integral"] = int(r["event_number"]) * 100 + b
            buf = encode_fragment(
                run_number=cfg.run.run_number,
                board_id=b,
                event_number=int(r["event_number"]),
                timestamp=int(r["timestamp"]),
                trigger_word=int(r["trigger_word"]),
                flags=0,
                channels=chans,
                samples=samples,
                pulses=pulses,
            )
            out[int(r["event_number"]), b] = (buf, samples)
    return out


def _recrc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def _variant(cfg, rec, event, board, **over):
    cmap = cfg.channel_map
    chans = cmap.channels_on_board(board)
    args = dict(
        run_number=cfg.run.run_number,
        board_id=board,
        event_number=event,
        timestamp=int(rec["timestamp"][event]),
        trigger_word=1,
        flags=0,
        channels=chans,
        samples=np.full((len(chans), cfg.digitizer.window_samples), 7, np.uint16),
        pulses=np.zeros(0, PULSE_DTYPE),
    )
    args.update(over)
    return encode_fragment(**args)


@pytest.mark.timeout(90)
def test_builder_rejects_and_counts_everything_a_foreign_peer_sends(tmp_path):
    cfg = fast_config(max_message_bytes=16 << 20)
    rec = _records(cfg)
    good = _good_fragments(cfg, rec)
    n_boards = cfg.channel_map.n_boards
    ctx = zmq.Context()
    socks = []

    def push(endpoint):
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 5000)
        s.setsockopt(zmq.SNDTIMEO, 5000)
        s.connect(endpoint)
        socks.append(s)
        return s

    try:
        with daq_run(cfg, tmp_path, only=("builder", "writer")) as run:
            # a 100 MB junk message on its own connection: ZMQ_MAXMSGSIZE refuses it, the peer is dropped
            huge = push(run.endpoints["fragments"])
            huge.send(b"\xab" * (100 << 20))
            poll_until(
                run,
                lambda: status(run, "builder").get("fragment_peer_disconnects", 0) >= 1,
                30,
                "the oversized message to be refused",
            )
            tp = push(run.endpoints["trigger_records"])
            tp.send_multipart(
                encode_slice(
                    TRIGGER_MAGIC,
                    board_id=0xFFFF,
                    run_number=cfg.run.run_number,
                    flags=int(SliceFlags.RECORDS),
                    slice_index=0,
                    records=rec,
                )
            )
            peer = push(run.endpoints["fragments"])
            g0 = bytearray(good[0, 0][0])
            junk = []
            bad = bytearray(g0)
            bad[0] ^= 0xFF
            junk.append(bytes(bad))  # BAD_MAGIC
            bad = bytearray(g0)
            bad[200] ^= 0x01
            junk.append(bytes(bad))  # BAD_CRC
            junk.append(bytes(g0[:300]))  # TRUNCATED
            bad = bytearray(g0)
            struct.pack_into("<I", bad, 48, 12)
            junk.append(bytes(bad))  # LENGTH_MISMATCH
            bad = bytearray(g0)
            struct.pack_into("<H", bad, 14, 65)
            junk.append(bytes(bad))  # BAD_COUNT
            bad = bytearray(g0)
            struct.pack_into("<I", bad, 8, 999)
            junk.append(_recrc(bad))  # WRONG_RUN
            junk.append(_variant(cfg, rec, 1, 0, board_id=99))  # BAD_BOARD
            junk.append(_variant(cfg, rec, 1, 0, channels=cfg.channel_map.channels_on_board(1)[:7]))  # BAD_CHANNELS
            junk.append(b"")  # TRUNCATED
            for j in junk:
                peer.send(j)
            peer.send_multipart([g0[:56], g0[56:]])  # BAD_FRAMES
            # events out of order; a mismatched fragment before the real one; a duplicate
            for ev in [5, 3, 0, 1, 2, 4, 6, 7, 8, 9]:
                for b in range(n_boards):
                    if (ev, b) == (7, 1):
                        peer.send(_variant(cfg, rec, 7, 1, timestamp=12345))  # MISMATCH
                    peer.send(good[ev, b][0])
                    if (ev, b) == (9, 0):
                        peer.send(good[9, 0][0])  # DUPLICATE
            peer.send(good[0, 5][0])  # LATE
            peer.send(_variant(cfg, rec, 1, 2, event_number=50))  # ORPHAN
            expected_messages = len(junk) + 1 + N_EVENTS * n_boards + 4
            poll_until(
                run,
                lambda: status(run, "builder").get("fragment_messages", 0) >= expected_messages,
                30,
                "every message to reach the builder",
            )
            tp.send_multipart(
                encode_slice(
                    TRIGGER_MAGIC,
                    board_id=0xFFFF,
                    run_number=cfg.run.run_number,
                    flags=int(SliceFlags.END_OF_RUN | SliceFlags.RECORDS),
                    slice_index=N_EVENTS,
                    records=np.zeros(0, DECISION_DTYPE),
                )
            )
            run.stop()
            assert run.wait(30) == "stopped", run.errors
            s = run.summary()
            builder = run.stats["builder"]
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()

    assert s["fragments_rejected"] == {
        "bad_magic": 1,
        "bad_crc": 1,
        "truncated": 2,
        "length_mismatch": 1,
        "bad_count": 1,
        "wrong_run": 1,
        "bad_board": 1,
        "bad_channels": 1,
        "bad_frames": 1,
        "mismatch": 1,
        "duplicate": 1,
        "late": 1,
        "orphan": 1,
    }
    assert s["fragment_peer_disconnects"] >= 1
    assert builder["fragments_accepted"] == N_EVENTS * n_boards
    assert s["events_built"] == s["events_written"] == N_EVENTS and s["events_incomplete"] == 0
    with RunFile(s["files"][0]) as f:
        assert f.closed_cleanly and len(f) == N_EVENTS
        ev = f.events
        np.testing.assert_array_equal(ev["event_number"], np.arange(N_EVENTS))
        np.testing.assert_array_equal(ev["timestamp"], rec["timestamp"])
        assert (ev["missing_boards"] == 0).all()
        expected_flags = np.zeros(N_EVENTS, np.uint32)
        expected_flags[7] = EventFlags.MISMATCH
        expected_flags[9] = EventFlags.DUPLICATE
        np.testing.assert_array_equal(ev["flags"], expected_flags)
        cmap = cfg.channel_map
        off = f.pulse_offsets
        pulses = f.pulses
        for i in range(N_EVENTS):
            smp = f.samples[i]
            for b in range(n_boards):  # nothing from a rejected fragment reached the file
                np.testing.assert_array_equal(smp[cmap.channels_on_board(b)], good[i, b][1])
            assert sorted(pulses[off[i] : off[i + 1]]["integral"].tolist()) == [i * 100 + b for b in range(n_boards)]


# ---- issue 11: what a foreign peer could do to a run (defects 1-5), over real processes -------------
class _Peer:
    """A foreign trigger processor and board peer of a builder + writer run."""

    def __init__(self, run, cfg):
        self.cfg, self.run = cfg, run
        self.ctx = zmq.Context()
        self.tp = self._push(run.endpoints["trigger_records"])
        self.frag = self._push(run.endpoints["fragments"])
        self.sent = 0

    def _push(self, endpoint):
        s = self.ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 5000)
        s.setsockopt(zmq.SNDTIMEO, 5000)
        s.connect(endpoint)
        return s

    def records(self, rec, wait=True):
        self.tp.send_multipart(
            encode_slice(
                TRIGGER_MAGIC,
                board_id=0xFFFF,
                run_number=self.cfg.run.run_number,
                flags=int(SliceFlags.RECORDS),
                slice_index=0,
                records=rec,
            )
        )
        if wait:  # the fragments below must not overtake their records (two sockets)
            poll_until(
                self.run,
                lambda: status(self.run, "builder").get("held_events", 0) >= len(rec),
                30,
                "the trigger records to reach the builder",
            )

    def send(self, buf):
        self.frag.send(buf)
        self.sent += 1

    def end(self, issued):
        poll_until(
            self.run,
            lambda: status(self.run, "builder").get("fragment_messages", 0) >= self.sent,
            30,
            "every fragment to reach the builder",
        )
        self.tp.send_multipart(
            encode_slice(
                TRIGGER_MAGIC,
                board_id=0xFFFF,
                run_number=self.cfg.run.run_number,
                flags=int(SliceFlags.END_OF_RUN | SliceFlags.RECORDS),
                slice_index=issued,
                records=np.zeros(0, DECISION_DTYPE),
            )
        )
        self.run.stop()
        state = self.run.wait(30)
        return state

    def close(self):
        for s in (self.tp, self.frag):
            s.close(0)
        self.ctx.term()


def _assert_samples(f, cfg, good, numbers, missing=()):
    cmap = cfg.channel_map
    for i, ev in enumerate(numbers):
        smp = f.samples[i]
        for b in range(cmap.n_boards):  # nothing from a rejected fragment reached the file
            expect = 0 if (ev, b) in missing else good[ev, b][1]
            np.testing.assert_array_equal(smp[cmap.channels_on_board(b)], expect, err_msg=f"event {ev} board {b}")


@pytest.mark.timeout(90)
def test_defects_1_5_bad_content_is_rejected_and_the_run_is_written(tmp_path):
    """A sample above adc_max (correct CRC), channel_flags != 0, a pulse outside the window, an
    undefined flag bit: each rejected with its reason, before the valid fragment of that board;
    the run stops normally with every event whole (before: the writer died on the sample)."""
    cfg = fast_config()
    rec = _records(cfg)
    good = _good_fragments(cfg, rec)
    n_boards = cfg.channel_map.n_boards
    pulse = np.zeros(1, PULSE_DTYPE)
    pulse["channel"] = cfg.channel_map.channels_on_board(2)[0]
    pulse["coarse_time"] = cfg.digitizer.window_samples  # one past the window
    high = good[4, 3][1].copy()
    high[0, 0] = 0xFFFF  # one sample, CRC correct
    bad = {
        (4, 3): _variant(cfg, rec, 4, 3, samples=high),
        (5, 2): _variant(cfg, rec, 5, 2, pulses=pulse),
        (6, 1): _variant(cfg, rec, 6, 1, flags=1 << 7),
    }  # an undefined flag bit
    cf = bytearray(good[7, 0][0])
    struct.pack_into("<H", cf, 56 + 2, 4)  # channel_flags = 4
    bad[7, 0] = _recrc(cf)
    with daq_run(cfg, tmp_path, only=("builder", "writer")) as run:
        peer = _Peer(run, cfg)
        try:
            peer.records(rec)
            for ev in range(N_EVENTS):
                for b in range(n_boards):
                    if (ev, b) in bad:
                        peer.send(bad[ev, b])
                    peer.send(good[ev, b][0])
            assert peer.end(N_EVENTS) == "stopped", run.errors
        finally:
            peer.close()
        s = run.summary()
    assert s["fragments_rejected"] == {"bad_sample": 1, "bad_pulse_time": 1, "bad_flags": 1, "bad_channel_flags": 1}
    assert s["events_written"] == N_EVENTS and s["events_incomplete"] == 0
    with RunFile(s["files"][0]) as f:
        assert f.closed_cleanly and len(f) == N_EVENTS and (f.events["flags"] == 0).all()
        _assert_samples(f, cfg, good, range(N_EVENTS))


@pytest.mark.timeout(90)
def test_defect2_orphans_do_not_evict_a_real_event(tmp_path):
    """300 valid-looking fragments without trigger records while event 0 waits for its last board:
    event 0 is written complete and its last fragment is not late (before: written INCOMPLETE
    early, its fragment rejected late). Their numbers lie beyond the credit (no board keeping to
    it reads them out): rejected at once, none takes a place."""
    cfg = fast_config(max_events_in_flight=64)
    rec = _records(cfg)
    good = _good_fragments(cfg, rec)
    n_boards = cfg.channel_map.n_boards
    with daq_run(cfg, tmp_path, only=("builder", "writer")) as run:
        peer = _Peer(run, cfg)
        try:
            peer.records(rec)
            for b in range(n_boards - 1):
                peer.send(good[0, b][0])
            for k in range(300):
                peer.send(_variant(cfg, rec, 1, k % n_boards, event_number=10_000 + k))
            for ev in range(N_EVENTS):
                for b in range(n_boards):
                    if ev or b == n_boards - 1:
                        peer.send(good[ev, b][0])
            assert peer.end(N_EVENTS) == "stopped", run.errors
        finally:
            peer.close()
        s = run.summary()
        builder = run.stats["builder"]
    assert s["fragments_rejected"] == {"beyond_credit": 300}
    assert s["events_incomplete"] == 0 and s["events_evicted_incomplete"] == 0 and builder["max_orphans_held"] == 0
    with RunFile(s["files"][0]) as f:
        assert len(f) == N_EVENTS and (f.events["flags"] == 0).all() and (f.events["missing_boards"] == 0).all()
        _assert_samples(f, cfg, good, range(N_EVENTS))


@pytest.mark.timeout(90)
def test_defects_3_4_gap_and_every_flag_reach_the_file(tmp_path):
    """Trigger records 0-4, 6, 7 (5 skipped), event 4 with a timestamp below event 3's; board 0
    of event 1 WINDOW_CLIPPED, board 1 of event 2 BOARD_BUSY, board 2 of event 3 only a fragment
    failing its CRC. The drain finishes (before: "drain did not finish in time") and /events
    holds exactly the flags their causes give."""
    cfg = fast_config()
    rec = _records(cfg)
    rec["timestamp"][4] = rec["timestamp"][3] - 1
    rec = rec[[0, 1, 2, 3, 4, 6, 7]]
    numbers = rec["event_number"].tolist()
    good = _good_fragments(cfg, rec)
    n_boards = cfg.channel_map.n_boards
    # (rows 1 and 2 of rec are events 1 and 2, as _variant reads them)
    special = {
        (1, 0): _variant(cfg, rec, 1, 0, flags=int(FragmentFlags.WINDOW_CLIPPED), samples=good[1, 0][1]),
        (2, 1): _variant(cfg, rec, 2, 1, flags=int(FragmentFlags.BOARD_BUSY), samples=good[2, 1][1]),
    }
    crc_bad = bytearray(good[3, 2][0])
    crc_bad[300] ^= 1
    special[3, 2] = bytes(crc_bad)
    with daq_run(cfg, tmp_path, only=("builder", "writer")) as run:
        peer = _Peer(run, cfg)
        try:
            peer.records(rec)
            for ev in numbers:
                for b in range(n_boards):
                    peer.send(special.get((ev, b), good[ev, b][0]))
            assert peer.end(len(numbers)) == "stopped", run.errors  # "issued": a count, 7
        finally:
            peer.close()
        s = run.summary()
    assert s["fragments_rejected"] == {"bad_crc": 1}
    with RunFile(s["files"][0]) as f:
        ev = f.events
        assert f.closed_cleanly and ev["event_number"].tolist() == numbers
        expected = {
            1: F.TRUNCATED,
            2: F.BOARD_BUSY,
            3: F.INCOMPLETE | F.CHECKSUM_ERROR,
            4: F.TIMESTAMP_ERROR,
            6: F.SEQUENCE_GAP,
        }
        assert [F(int(x)) for x in ev["flags"]] == [expected.get(n, F(0)) for n in numbers]
        assert ev["missing_boards"].tolist() == [1 << 2 if n == 3 else 0 for n in numbers]
        _assert_samples(f, cfg, good, numbers, missing={(3, 2)})
