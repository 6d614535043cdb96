"""The event assembler and the builder's decoder, one rule at a time (issue 11, defects 1-5).

Real fragment bytes through the builder's real decoder (``RunFragmentDecoder``) and into
``EventAssembler`` as ``EventBuilderNode`` drives them, time given explicitly. One test per
defect and per flag cause; the interleavings of all of them are in test_assembler_stateful.py.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from pokerdaq.daq._assembler import EventAssembler
from pokerdaq.daq._wire import (
    HEADER_SIZE,
    FragmentError,
    FragmentFlags,
    Reason,
    RunFragmentDecoder,
    decode_fragment,
    encode_fragment,
)
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io._records import EventFlags as F

RUN, WINDOW, ADC_MAX = 5, 8, (1 << 14) - 1
BOARDS = {0: [0, 1], 1: [2], 2: [3, 4]}
ALL = 0b111
DECODER = RunFragmentDecoder(RUN, BOARDS, WINDOW, adc_max=ADC_MAX)


class FastPathOnly(RunFragmentDecoder):
    """Whatever this accepts, the fast path accepted."""

    def reference(self, buf):
        raise AssertionError("the fast path refused a valid fragment")


def frag(ev, board, ts=None, flags=0, sample=7, channel_flags=0, coarse=2, fine=10, recrc=True) -> bytes:
    chans = np.array(BOARDS[board], np.uint16)
    samples = np.full((len(chans), WINDOW), 7, np.uint16)
    samples[-1, -1] = sample
    pulses = np.zeros(1, PULSE_DTYPE)
    pulses["channel"], pulses["coarse_time"], pulses["fine_time"] = chans[0], coarse, fine
    buf = bytearray(
        encode_fragment(
            run_number=RUN,
            board_id=board,
            event_number=ev,
            timestamp=100 + 10 * ev if ts is None else ts,
            trigger_word=1,
            flags=flags,
            channels=chans,
            samples=samples,
            pulses=pulses,
        )
    )
    if channel_flags:
        struct.pack_into("<H", buf, HEADER_SIZE + 2, channel_flags)
        if recrc:
            struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def reason(buf) -> Reason | None:
    try:
        DECODER.decode(buf)
    except FragmentError as err:
        return err.reason
    return None


# ---- defect 1 and 5: content the decoder must refuse ----------------------------------------
@pytest.mark.parametrize("sample", [ADC_MAX + 1, 0xFFFF])
def test_defect1_sample_above_adc_max_is_rejected_bad_sample(sample):
    buf = frag(0, 2, sample=sample)
    assert reason(buf) is Reason.BAD_SAMPLE
    with pytest.raises(FragmentError) as info:
        decode_fragment(buf, RUN, ADC_MAX)
    assert info.value.reason is Reason.BAD_SAMPLE
    # at adc_max exactly: valid, and by the fast path
    assert FastPathOnly(RUN, BOARDS, WINDOW, adc_max=ADC_MAX).decode(frag(0, 2, sample=ADC_MAX)).board_id == 2


def test_defect5_channel_flags_not_zero_are_rejected():
    assert reason(frag(0, 0, channel_flags=1)) is Reason.BAD_CHANNEL_FLAGS
    assert reason(frag(0, 0, channel_flags=0x100)) is Reason.BAD_CHANNEL_FLAGS


@pytest.mark.parametrize("coarse, fine", [(-1, 0), (WINDOW, 0), (2**40, 0), (0, 64), (3, 255)])
def test_defect5_pulse_times_outside_the_window_are_rejected(coarse, fine):
    assert reason(frag(0, 1, coarse=coarse, fine=fine)) is Reason.BAD_PULSE_TIME
    ok = FastPathOnly(RUN, BOARDS, WINDOW, adc_max=ADC_MAX)
    assert ok.decode(frag(0, 1, coarse=WINDOW - 1, fine=63)).n_pulses == 1


def test_undefined_fragment_flag_bits_are_rejected():
    assert reason(frag(0, 1, flags=4)) is Reason.BAD_FLAGS
    assert reason(frag(0, 1, flags=1 << 31)) is Reason.BAD_FLAGS
    assert reason(frag(0, 1, flags=3)) is None


def test_bad_crc_with_an_intact_header_names_its_event_and_board():
    buf = bytearray(frag(7, 2))
    buf[HEADER_SIZE + 5] ^= 1
    with pytest.raises(FragmentError) as info:
        DECODER.decode(bytes(buf))
    assert (info.value.reason, info.value.event_number, info.value.board_id) == (Reason.BAD_CRC, 7, 2)
    buf[14] ^= 1  # n_channels: the header no longer fits the message, nothing is attributed
    with pytest.raises(FragmentError) as info:
        DECODER.decode(bytes(buf))
    assert info.value.event_number is None


# ---- the assembler ------------------------------------------------------------------------------
class Run:
    """An assembler whose built events are (event number, flags, missing boards, boards present)."""

    def __init__(self, limit=8, timeout=1.0, **kw):
        self.asm = EventAssembler(BOARDS, limit, timeout, 10.0, self._build, **kw)
        self.now = 0.0

    @staticmethod
    def _build(ev_no, record, fragments, flags, missing, t_first):
        return ev_no, flags, missing, sorted(fragments)

    def record(self, ev, ts=None, dead=0):
        self.asm.record(ev, 100 + 10 * ev if ts is None else ts, 1, dead, self.now)

    def send(self, buf):
        try:
            self.asm.take(DECODER.decode(buf), self.now)
        except FragmentError as err:
            self.asm.rejected[err.reason] += 1
            if err.event_number is not None:
                self.asm.bad_crc(err.board_id, err.event_number)

    def drain(self, dt=0.0):
        self.now += dt
        self.asm.expire(self.now)
        self.asm.emit()
        out = list(self.asm.out)
        self.asm.out.clear()
        self.asm.sent(len(out))
        return out

    def rejected(self):
        return {r.value: n for r, n in self.asm.rejected.items() if n}


def test_defect2_orphans_never_evict_an_issued_event_nor_make_its_fragments_late():
    r = Run(limit=4)
    r.record(0)
    r.send(frag(0, 0))
    r.send(frag(0, 1))
    for k in range(300):  # a peer's valid-looking fragments without trigger records
        r.send(frag(5000 + k, k % 3))
    # beyond the credit (sent + limit - 1 = 3): no board keeping to it sends them, none is held
    assert r.asm.credit == 3 and r.asm.n_orphans == 0 and r.asm.in_flight == 1 and not r.asm.parked
    assert r.rejected() == {"beyond_credit": 300}
    r.send(frag(0, 2))  # the real event's last board
    assert r.drain() == [(0, 0, 0, [0, 1, 2])]
    r.asm.end_of_run(1, r.now)
    assert r.drain(2.0) == [] and r.asm.done
    assert r.rejected() == {"beyond_credit": 300}
    assert r.asm.counters["events_evicted_incomplete"] == 0


def test_the_default_orphan_store_holds_every_fragment_a_board_may_send_before_its_record():
    """Between the last record and the credit lie limit - 1 numbers: all their fragments fit."""
    r = Run(limit=6)
    assert r.asm.orphan_limit == 5 * len(BOARDS)
    for ev in range(5):  # every board's fragment of events 0-4 before any record
        for b in BOARDS:
            r.send(frag(ev, b))
    assert r.asm.n_orphans == 15 and not r.rejected()
    for ev in range(5):
        r.record(ev)
    assert [e[0] for e in r.drain()] == [0, 1, 2, 3, 4] and not r.rejected() and r.asm.n_orphans == 0


def test_a_full_orphan_store_sheds_the_highest_numbers_first():
    """A store smaller than the credit window (set explicitly): the highest numbers are shed,
    an issued event is never pushed out and its fragments are never late."""
    r = Run(limit=8, orphan_limit=4)
    r.record(0)
    r.send(frag(0, 0))
    r.send(frag(0, 1))
    for ev in (6, 5, 4, 3, 2, 1):  # arriving highest first: each lower one pushes out a higher
        for b in BOARDS:
            r.send(frag(ev, b))
    # a full store drops every fragment of its highest number: event 1 is what is left
    assert r.asm.n_orphans == 3 and sorted(r.asm.orphans) == [1]
    assert r.rejected() == {"orphan_shed": 15}
    r.send(frag(0, 2))
    assert r.drain() == [(0, 0, 0, [0, 1, 2])]
    r.record(1)
    assert r.drain() == [(1, 0, 0, [0, 1, 2])]


def test_defect2_a_fragment_before_its_record_is_kept():
    r = Run()
    for b in BOARDS:
        r.send(frag(0, b))  # the fragments overtake the record
    assert r.asm.n_orphans == 3 and r.drain() == []
    r.record(0)
    assert r.drain() == [(0, 0, 0, [0, 1, 2])] and r.asm.n_orphans == 0 and not r.rejected()


def test_defect3_a_gap_in_the_records_is_flagged_and_does_not_stop_the_drain():
    r = Run()
    for ev in (0, 1, 2, 4, 5):
        r.record(ev)
        for b in BOARDS:
            r.send(frag(ev, b))
    r.send(frag(3, 0))  # a fragment of the skipped number: an orphan, at once
    r.asm.end_of_run(5, r.now)  # "events issued" = 5 (a count) or 6 (next number): both end after 5
    out = r.drain()
    assert [(e[0], F(e[1])) for e in out] == [(0, F(0)), (1, F(0)), (2, F(0)), (4, F.SEQUENCE_GAP), (5, F(0))]
    assert r.asm.done and r.rejected() == {"orphan": 1}
    assert r.asm.counters["sequence_gaps"] == 1 and r.asm.counters["event_numbers_skipped"] == 1


def test_defect3_a_gap_before_the_first_record_and_at_the_end():
    r = Run()
    r.record(2)
    for b in BOARDS:
        r.send(frag(2, b))
    r.asm.end_of_run(6, r.now)
    assert [(e[0], F(e[1])) for e in r.drain()] == [(2, F.SEQUENCE_GAP)]
    assert r.asm.done and r.asm.counters["event_numbers_skipped"] == 2 + 3


def _one_event(frags=None, ts=None, fts=None) -> tuple:
    """Event 1 after a clean event 0; ``frags``: board -> what it sends (else one valid fragment
    with timestamp ``fts``); ``ts``: the record's timestamp. Returns (flags, missing_boards)."""
    frags = frags or {}
    r = Run()
    r.record(0)
    for b in BOARDS:
        r.send(frag(0, b))
    r.record(1, ts=ts)
    for b in BOARDS:
        for buf in frags.get(b, [frag(1, b, ts=fts)]):
            r.send(buf)
    out = r.drain(2.0)  # past the time-out: incomplete events are built too
    assert [e[0] for e in out] == [0, 1] and out[0][1:3] == (0, 0)
    return F(out[1][1]), out[1][2]


def _corrupt(buf: bytes) -> bytes:
    bad = bytearray(buf)
    bad[HEADER_SIZE + 6] ^= 1
    return bytes(bad)


def test_defect4_each_flag_is_set_exactly_by_its_cause():
    assert _one_event() == (F(0), 0)
    # a board's fragment missing at the time-out
    assert _one_event({2: []}) == (F.INCOMPLETE, 0b100)
    # its only fragment failed the CRC: missing, and why
    assert _one_event({2: [_corrupt(frag(1, 2))]}) == (F.INCOMPLETE | F.CHECKSUM_ERROR, 0b100)
    # a CRC failure then the good retransmission: nothing missing, no flag
    assert _one_event({2: [_corrupt(frag(1, 2)), frag(1, 2)]}) == (F(0), 0)
    # a CRC failure of another board while this one is missing: only INCOMPLETE for board 1
    assert _one_event({1: [], 2: [_corrupt(frag(1, 2)), frag(1, 2)]}) == (F.INCOMPLETE, 0b010)
    # mismatch: rejected, so also missing
    assert _one_event({0: [frag(1, 0, ts=999)]}) == (F.MISMATCH | F.INCOMPLETE, 0b001)
    assert _one_event({0: [frag(1, 0, ts=999), frag(1, 0)]}) == (F.MISMATCH, 0)
    # duplicate: the first kept
    assert _one_event({0: [frag(1, 0), frag(1, 0)]}) == (F.DUPLICATE, 0)
    # the boards' own flags
    assert _one_event({1: [frag(1, 1, flags=FragmentFlags.WINDOW_CLIPPED)]}) == (F.TRUNCATED, 0)
    assert _one_event({1: [frag(1, 1, flags=FragmentFlags.BOARD_BUSY)]}) == (F.BOARD_BUSY, 0)
    assert _one_event({0: [frag(1, 0, flags=3)]}) == (F.BOARD_BUSY | F.TRUNCATED, 0)
    # a fragment rejected by the decoder (a sample above adc_max) is missing, never written
    assert _one_event({1: [frag(1, 1, sample=0xFFFF)]}) == (F.INCOMPLETE, 0b010)
    # the timestamp goes backwards: equal is not backwards
    assert _one_event(ts=100, fts=100) == (F(0), 0)
    assert _one_event(ts=99, fts=99) == (F.TIMESTAMP_ERROR, 0)


def test_defect4_a_crc_failure_is_attributed_only_to_a_live_event():
    r = Run()
    r.record(0)
    for b in BOARDS:
        r.send(frag(0, b))
    r.drain()
    r.send(_corrupt(frag(0, 1)))  # event 0 is written: counted only
    r.send(_corrupt(frag(9, 1)))  # no record: counted only
    r.record(1)
    r.send(frag(1, 0))
    r.send(frag(1, 2))
    assert [(e[0], F(e[1])) for e in r.drain(2.0)] == [(1, F.INCOMPLETE)]
    assert r.rejected() == {"bad_crc": 2}


def test_a_crc_failure_before_the_record_flags_the_event_when_its_board_stays_missing():
    r = Run()
    r.send(_corrupt(frag(0, 1)))  # before any record: kept for event 0
    r.send(_corrupt(frag(2, 2)))  # event 2: the records will skip it, the mark goes with it
    r.send(frag(3, 2))  # event 3: a good fragment of board 2 is held (orphan store)...
    r.send(_corrupt(frag(3, 2)))  # ...so its CRC failure marks nothing
    assert r.asm.crc_early == {0: 0b010, 2: 0b100}
    r.record(0)
    r.record(3)  # skips 1 and 2
    assert r.asm.crc_early == {}
    for b in (0, 2):
        r.send(frag(0, b))
    r.send(frag(3, 0))
    out = [(e[0], F(e[1]), e[2]) for e in r.drain(2.0)]
    assert out == [(0, F.INCOMPLETE | F.CHECKSUM_ERROR, 0b010), (3, F.INCOMPLETE | F.SEQUENCE_GAP, 0b010)]
    assert r.rejected() == {"bad_crc": 3}


def test_dead_boards_are_not_waited_for_and_are_missing():
    r = Run()
    r.record(0, dead=0b010)
    r.send(frag(0, 0))
    r.send(frag(0, 2))
    assert r.drain() == [(0, F.INCOMPLETE, 0b010, [0, 2])]


def test_parked_fragments_are_never_left_behind():
    """At the in-flight limit a fragment of a further event is parked; when its event is built
    (here by the time-out) the parked fragment goes in, it is not rejected as late."""
    r = Run(limit=2)
    for ev in range(3):
        r.record(ev)
    r.send(frag(0, 0))  # event 0 (the floor) in flight
    r.send(frag(1, 0))  # event 1: the last place is kept for the floor, so parked
    assert len(r.asm.parked) == 1
    r.asm.end_of_run(3, r.now)
    out = r.drain(2.0)  # everything times out: event 1 is built with its parked fragment
    assert [(e[0], e[3]) for e in out] == [(0, [0]), (1, [0]), (2, [])]
    assert not r.rejected() and not r.asm.parked


def test_eviction_builds_the_oldest_issued_event_never_an_orphan():
    """The node's last resort (parking full, limit reached, nothing for the writer): the oldest
    issued event holding data is built INCOMPLETE; fragments without a record are never a
    candidate (here beyond the credit: rejected at once, they take no place at all)."""
    r = Run(limit=3, park_limit=2)
    for ev in range(6):
        r.record(ev)
    for k in range(5):
        r.send(frag(100 + k, 0))  # no record, beyond the credit (2): rejected, not in flight
    for ev in (0, 1):
        r.send(frag(ev, 0))  # events 0, 1 in flight (the limit minus the floor's place)
    r.send(frag(3, 0))
    r.send(frag(4, 0))  # parked: the parking is full
    assert r.asm.in_flight == 2 and len(r.asm.parked) == 2 and r.asm.n_orphans == 0
    assert r.asm.evict_oldest()
    assert r.drain() == [(0, F.INCOMPLETE, 0b110, [0])]
    assert r.asm.counters["events_evicted_incomplete"] == 1 and r.rejected() == {"beyond_credit": 5}


def test_a_parked_fragment_is_not_overtaken_by_a_later_one_of_its_board():
    """The first fragment of a board is kept even when it waited in the parking and a second one
    came when its event had become the next to write (and so was admitted at once)."""
    asm = EventAssembler(BOARDS, 2, 1.0, 10.0, lambda ev, rec, frags, *_: {b: bytes(f.buf) for b, f in frags.items()})
    for ev in range(2):
        asm.record(ev, 100 + 10 * ev, 1, 0, 0.0)
    first, second = frag(1, 1, sample=1), frag(1, 1, sample=2)
    asm.take(DECODER.decode(frag(0, 0)), 0.0)
    asm.take(DECODER.decode(first), 0.0)  # event 1 is not the floor and the limit is 2: parked
    assert len(asm.parked) == 1
    for b in (1, 2):
        asm.take(DECODER.decode(frag(0, b)), 0.0)
    asm.emit()  # event 0 out: event 1 is the floor now
    asm.take(DECODER.decode(second), 0.0)  # admitted at once, after the parked one
    for b in (0, 2):
        asm.take(DECODER.decode(frag(1, b)), 0.0)
    asm.emit()
    assert asm.out[1][1] == first and asm.rejected == {Reason.DUPLICATE: 1}
