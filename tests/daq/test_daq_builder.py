"""The event builder process against a foreign ZeroMQ peer: malformed, duplicate, late, mismatched, huge."""

import struct
import zlib

import numpy as np
import pytest
import zmq

from pokerdaq.daq._wire import TRIGGER_DTYPE, TRIGGER_MAGIC, SliceFlags, encode_fragment, encode_slice
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io import RunFile
from pokerdaq.io._records import EventFlags

from _daqhelpers import daq_run, fast_config, poll_until, status

N_EVENTS = 10


def _records(cfg):
    rec = np.zeros(N_EVENTS, TRIGGER_DTYPE)
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
            buf = encode_fragment(run_number=cfg.run.run_number, board_id=b, event_number=int(r["event_number"]),
                                  timestamp=int(r["timestamp"]), trigger_word=int(r["trigger_word"]), flags=0,
                                  channels=chans, samples=samples, pulses=pulses)
            out[int(r["event_number"]), b] = (buf, samples)
    return out


def _recrc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def _variant(cfg, rec, event, board, **over):
    cmap = cfg.channel_map
    chans = cmap.channels_on_board(board)
    args = dict(run_number=cfg.run.run_number, board_id=board, event_number=event,
                timestamp=int(rec["timestamp"][event]), trigger_word=1, flags=0, channels=chans,
                samples=np.full((len(chans), cfg.digitizer.window_samples), 7, np.uint16),
                pulses=np.zeros(0, PULSE_DTYPE))
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
            poll_until(run, lambda: status(run, "builder").get("fragment_peer_disconnects", 0) >= 1, 30,
                       "the oversized message to be refused")
            tp = push(run.endpoints["trigger_records"])
            tp.send_multipart(encode_slice(TRIGGER_MAGIC, board_id=0xFFFF, run_number=cfg.run.run_number,
                                           flags=int(SliceFlags.RECORDS), slice_index=0, records=rec))
            peer = push(run.endpoints["fragments"])
            g0 = bytearray(good[0, 0][0])
            junk = []
            bad = bytearray(g0); bad[0] ^= 0xFF; junk.append(bytes(bad))                          # BAD_MAGIC
            bad = bytearray(g0); bad[200] ^= 0x01; junk.append(bytes(bad))                        # BAD_CRC
            junk.append(bytes(g0[:300]))                                                          # TRUNCATED
            bad = bytearray(g0); struct.pack_into("<I", bad, 48, 12); junk.append(bytes(bad))     # LENGTH_MISMATCH
            bad = bytearray(g0); struct.pack_into("<H", bad, 14, 65); junk.append(bytes(bad))     # BAD_COUNT
            bad = bytearray(g0); struct.pack_into("<I", bad, 8, 999); junk.append(_recrc(bad))   # WRONG_RUN
            junk.append(_variant(cfg, rec, 1, 0, board_id=99))                                      # BAD_BOARD
            junk.append(_variant(cfg, rec, 1, 0, channels=cfg.channel_map.channels_on_board(1)[:7]))  # BAD_CHANNELS
            junk.append(b"")                                                                      # TRUNCATED
            for j in junk:
                peer.send(j)
            peer.send_multipart([g0[:56], g0[56:]])                                               # BAD_FRAMES
            # events out of order; a mismatched fragment before the real one; a duplicate
            for ev in [5, 3, 0, 1, 2, 4, 6, 7, 8, 9]:
                for b in range(n_boards):
                    if (ev, b) == (7, 1):
                        peer.send(_variant(cfg, rec, 7, 1, timestamp=12345))                     # MISMATCH
                    peer.send(good[ev, b][0])
                    if (ev, b) == (9, 0):
                        peer.send(good[9, 0][0])                                                  # DUPLICATE
            peer.send(good[0, 5][0])                                                              # LATE
            peer.send(_variant(cfg, rec, 1, 2, event_number=50))                                  # ORPHAN
            expected_messages = len(junk) + 1 + N_EVENTS * n_boards + 4
            poll_until(run, lambda: status(run, "builder").get("fragment_messages", 0) >= expected_messages, 30,
                       "every message to reach the builder")
            tp.send_multipart(encode_slice(TRIGGER_MAGIC, board_id=0xFFFF, run_number=cfg.run.run_number,
                                           flags=int(SliceFlags.END_OF_RUN | SliceFlags.RECORDS),
                                           slice_index=N_EVENTS, records=np.zeros(0, TRIGGER_DTYPE)))
            run.stop()
            assert run.wait(30) == "stopped", run.errors
            s = run.summary()
            builder = run.stats["builder"]
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()

    assert s["fragments_rejected"] == {"bad_magic": 1, "bad_crc": 1, "truncated": 2, "length_mismatch": 1,
                                       "bad_count": 1, "wrong_run": 1, "bad_board": 1, "bad_channels": 1,
                                       "bad_frames": 1, "mismatch": 1, "duplicate": 1, "late": 1, "orphan": 1}
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
            for b in range(n_boards):       # nothing from a rejected fragment reached the file
                np.testing.assert_array_equal(smp[cmap.channels_on_board(b)], good[i, b][1])
            assert sorted(pulses[off[i]:off[i + 1]]["integral"].tolist()) == [i * 100 + b for b in range(n_boards)]
