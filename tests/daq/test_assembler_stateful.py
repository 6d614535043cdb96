"""The event assembler against a naive oracle, over arbitrary interleavings (hypothesis stateful).

Real fragment bytes (``encode_fragment``) go through the builder's real decoder
(``RunFragmentDecoder``, with ``adc_max``) and, when accepted, into ``EventAssembler`` exactly
as ``EventBuilderNode`` drives them: trigger records (with gaps, backwards timestamps, repeats,
dead boards), fragments (valid, duplicate, late, orphan, mismatched, clipped, busy, corrupt
CRC, samples above adc_max, channel flags, pulse times out of the window), board deaths, time
advancing (time-outs), a slow writer, the end of run, evictions, and a drain at the end.

The oracle is written from docs/daq.md and docs/hdf5-layout.md alone: per event number the
first valid fragment of each board that arrives while the event is live (issued or held as an
orphan, not yet built), the flags its history gives, and the orphan store's rule. Invariants:

* every issued event is built exactly once and leaves in event-number order; at the drain
  every issued event has left (none is lost: the assembler has no way to lose one);
* no valid fragment of a live event is discarded: a built event holds exactly the oracle's
  fragments (checked at the moment it is built);
* its flags and ``missing_boards`` equal the oracle's;
* every fragment is in a built event, held, or counted rejected, by the oracle's reason;
* memory stays within bounds: issued events holding fragments <= the in-flight limit, orphans
  <= the orphan limit, parked + orphans <= their two limits, records-only events <= their cap.

Run size: ``MAX_EXAMPLES`` examples of up to ``STEPS`` rules each: measured 58 examples, 4,567 rules
(``rules_run``), 1,252 fragments, 245 events built (flags of every cause among them), 4-6 s on
the shared 2-core machine at load 10. The parking is reached (up to 4 parked), the node's
eviction rarely: test_assembler.py::test_eviction_builds_the_oldest_issued_event_never_an_orphan.
"""

from __future__ import annotations

import collections

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pokerdaq.daq._assembler import EventAssembler
from pokerdaq.daq._wire import (
    HEADER_SIZE,
    FragmentError,
    Reason,
    RunFragmentDecoder,
    encode_fragment,
)
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io._records import EventFlags as F

RUN, WINDOW, ADC_MAX = 3, 8, (1 << 14) - 1
BOARDS = {0: [0, 1], 1: [2], 2: [3, 4]}
ALL = sum(1 << b for b in BOARDS)
LIMIT, PARK, ORPHANS, TIMEOUT, STALL = 4, 3, 3, 1.0, 5.0
MAX_EXAMPLES, STEPS = 50, 100
DECODER = RunFragmentDecoder(RUN, BOARDS, WINDOW, adc_max=ADC_MAX)


def ts_of(ev: int) -> int:
    """The timestamp a well-behaved board gives event ``ev`` (records use it unless told otherwise)."""
    return 1000 + 10 * ev


def fragment_bytes(ev, board, ts, tw, flags, fid, bad=None) -> bytes:
    """A fragment whose first two samples carry its id; ``bad`` makes it fail one decoder check."""
    chans = np.array(BOARDS[board], np.uint16)
    samples = np.zeros((len(chans), WINDOW), np.uint16)
    samples[0, 0], samples[0, 1] = fid & 0x3FFF, fid >> 14
    pulses = np.zeros(1, PULSE_DTYPE)
    pulses["channel"], pulses["coarse_time"], pulses["fine_time"] = chans[0], 3, 17
    if bad == "sample":
        samples[-1, -1] = 0xFFFF
    if bad == "pulse_time":
        pulses["coarse_time"] = WINDOW
    buf = bytearray(
        encode_fragment(
            run_number=RUN,
            board_id=board,
            event_number=ev,
            timestamp=ts,
            trigger_word=tw,
            flags=flags,
            channels=chans,
            samples=samples,
            pulses=pulses,
        )
    )
    if bad == "crc":
        buf[HEADER_SIZE + 7] ^= 0x10  # a sample bit: header intact, CRC wrong
    if bad == "channel_flags":
        import struct
        import zlib

        struct.pack_into("<H", buf, HEADER_SIZE + 2, 1)
        struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def fid_of(frag) -> int:
    s = np.frombuffer(frag.buf, "<u2", 2, HEADER_SIZE + 4)
    return int(s[0]) | int(s[1]) << 14


FFLAGS = {1: int(F.TRUNCATED), 2: int(F.BOARD_BUSY)}


class OEvent:
    def __init__(self, now, record=None):
        self.record = record  # (timestamp, trigger word, dead) or None (orphan)
        self.created = now
        self.slots: dict[int, tuple[int, int]] = {}  # board -> (fid, fragment flags), first valid arrival
        self.flags = 0
        self.crc = 0
        self.first = None  # first valid arrival


class AssemblerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = 0.0
        self.asm = EventAssembler(BOARDS, LIMIT, TIMEOUT, STALL, self._build, park_limit=PARK, orphan_limit=ORPHANS)
        self.next_ev = 0  # the trigger's next number
        self.next_fid = 1
        self.dead = 0
        # oracle
        self.issued: dict[int, OEvent] = {}
        self.orphans: dict[int, OEvent] = {}
        self.built: dict[int, tuple] = {}
        self.written: list[int] = []
        self.last_record, self.last_ts = -1, -1
        self.total = None
        self.skipped: set[int] = set()
        self.expected_rejects = collections.Counter()
        self.fragments_in = 0
        self.sent_total = 0  # events the writer took (the credit is this + LIMIT - 1)
        self.crc_early: dict[int, int] = {}  # number without a record -> boards whose CRC failed
        self.early_ok = False  # an incomplete build is allowed now (time-out, eviction, drain)

    # ---- the oracle ----------------------------------------------------------------------
    def floor(self) -> int:
        """The first number not yet passed on to the writer's queue (nor skipped by the records)."""
        emitted = set(self.written).union(self.asm.out)
        f = 0
        while f in emitted or f in self.skipped:
            f += 1
        return f

    def _build(self, ev_no, record, fragments, flags, missing, t_first):
        assert ev_no not in self.built, f"event {ev_no} built twice"
        o = self.issued[ev_no]
        got = {b: fid_of(f) for b, f in fragments.items()}
        assert got == {b: fid for b, (fid, _) in o.slots.items()}, (ev_no, got, o.slots)
        mask = sum(1 << b for b in got)
        exp_missing = ALL & ~mask
        exp = o.flags
        for _, ff in o.slots.values():
            exp |= FFLAGS.get(ff & 1, 0) | FFLAGS.get(ff & 2, 0)
        if exp_missing:
            exp |= F.INCOMPLETE
            if o.crc & exp_missing:
                exp |= F.CHECKSUM_ERROR
        assert (flags, missing) == (int(exp), exp_missing), (ev_no, F(flags), F(int(exp)))
        expected_boards = ALL & ~o.record[2]
        assert self.early_ok or mask & expected_boards == expected_boards, f"event {ev_no} built early"
        self.built[ev_no] = (flags, missing, got)
        return ev_no

    def _o_fragment(self, ev, b, ts, tw, ff, fid):
        """The oracle's verdict on a valid fragment: None (kept) or the Reason."""
        floor = self.floor()
        if ev < floor or ev in self.built:
            return Reason.LATE
        o = self.issued.get(ev)
        if o is not None:
            if b in o.slots:
                o.flags |= F.DUPLICATE
                return Reason.DUPLICATE
            if (ts, tw) != o.record[:2]:
                o.flags |= F.MISMATCH
                return Reason.MISMATCH
            o.slots[b] = (fid, ff)
            return None
        if ev <= self.last_record or (self.total is not None and ev >= self.total):
            return Reason.ORPHAN
        if ev >= self.sent_total + LIMIT - 1:  # the credit: no board keeping to it sends this
            return Reason.BEYOND_CREDIT
        h = self.orphans.get(ev)
        if h is not None and b in h.slots:
            h.flags |= F.DUPLICATE
            return Reason.DUPLICATE
        if sum(len(x.slots) for x in self.orphans.values()) >= ORPHANS:
            top = max(self.orphans)
            if ev >= top:
                return Reason.ORPHAN_SHED
            self.expected_rejects[Reason.ORPHAN_SHED] += len(self.orphans.pop(top).slots)
            h = self.orphans.get(ev)
        if h is None:
            h = self.orphans[ev] = OEvent(self.now)
        h.slots[b] = (fid, ff, ts, tw)
        return None

    # ---- rules ---------------------------------------------------------------------------
    # the node reads records while few events hold only a record; live events kept near the in-flight
    # limit so that most runs both complete events and reach the limit
    @precondition(
        lambda self: (
            self.total is None and self.asm.n_records_only < self.asm.record_cap and len(self._live()) <= LIMIT + 3
        )
    )
    @rule(
        skip=st.sampled_from([0] * 8 + [1, 2]),
        back=st.sampled_from([False] * 9 + [True]),
        repeat=st.sampled_from([False] * 15 + [True]),
    )
    def trigger_record(self, skip, back, repeat):
        if repeat and self.last_record >= 0:  # a repeated number: counted, ignored
            before = self.asm.counters["bad_trigger_records"]
            self.asm.record(self.last_record, ts_of(self.last_record), 1, 0, self.now)
            assert self.asm.counters["bad_trigger_records"] == before + 1
            return
        ev = self.next_ev + skip
        ts = self.last_ts - 5 if back and self.last_ts > 5 else ts_of(ev)
        flags = 0
        if ev > self.last_record + 1:
            flags |= F.SEQUENCE_GAP
            self.skipped.update(range(self.last_record + 1, ev))
            for n in [n for n in self.orphans if n < ev]:
                self.expected_rejects[Reason.ORPHAN] += len(self.orphans.pop(n).slots)
        if ts < self.last_ts:
            flags |= F.TIMESTAMP_ERROR
        self.last_record, self.last_ts, self.next_ev = ev, ts, ev + 1
        o = self.issued[ev] = OEvent(self.now, (ts, 1, self.dead))
        o.flags = int(flags)
        o.crc = self.crc_early.pop(ev, 0)
        self.crc_early = {n: m for n, m in self.crc_early.items() if n > ev}
        held = self.orphans.pop(ev, None)
        if held is not None:
            o.flags |= held.flags
            for b, (fid, ff, fts, ftw) in held.slots.items():
                if (fts, ftw) != (ts, 1):
                    o.flags |= F.MISMATCH
                    self.expected_rejects[Reason.MISMATCH] += 1
                else:
                    o.slots[b] = (fid, ff)
        self.asm.record(ev, ts, 1, self.dead, self.now)

    def _send(self, ev, b, ts, tw, ff, bad=None):
        fid = self.next_fid
        self.next_fid += 1
        buf = fragment_bytes(ev, b, ts, tw, ff, fid, bad)
        self.asm.unpark(self.now)  # the node's step: parked fragments first
        try:
            frag = DECODER.decode(buf)
        except FragmentError as err:
            expected = {
                "crc": Reason.BAD_CRC,
                "sample": Reason.BAD_SAMPLE,
                "pulse_time": Reason.BAD_PULSE_TIME,
                "channel_flags": Reason.BAD_CHANNEL_FLAGS,
            }[bad]
            assert err.reason is expected
            if err.event_number is not None:
                assert (err.event_number, err.board_id) == (ev, b)
                o = self.issued.get(ev)
                if o is not None and ev not in self.built and ev >= self.floor() and b not in o.slots:
                    o.crc |= 1 << b
                elif (
                    o is None
                    and self.last_record < ev < self.sent_total + LIMIT - 1
                    and (self.total is None or ev < self.total)
                    and (ev not in self.orphans or b not in self.orphans[ev].slots)
                ):
                    self.crc_early[ev] = self.crc_early.get(ev, 0) | 1 << b  # before its record
                self.asm.bad_crc(err.board_id, err.event_number)
            return
        assert bad is None, f"the decoder accepted a fragment with bad {bad}"
        self.fragments_in += 1
        verdict = self._o_fragment(ev, b, ts, tw, ff, fid)
        if verdict is not None:
            self.expected_rejects[verdict] += 1
        self.asm.take(frag, self.now)

    def _live(self):
        return sorted(n for n in self.issued if n not in self.built)

    @precondition(lambda self: len(self.asm.parked) < PARK)  # the node reads while the parking has room
    @rule(
        where=st.sampled_from(["live"] * 6 + ["ahead"] * 2 + ["old", "orphan"]),
        pick=st.integers(0, 1 << 16),
        kind=st.sampled_from(
            ["valid"] * 10 + ["mismatch", "clipped", "busy", "crc", "sample", "pulse_time", "channel_flags"]
        ),
    )
    def fragment(self, where, pick, kind):
        live = self._live()
        if where == "live" and kind == "valid" and live and pick % 4:
            # an event's boards one after the other (the common case: the event completes)
            ev = live[pick % len(live)]
            for b in [b for b in sorted(BOARDS) if b not in self.issued[ev].slots][: 1 + pick % 3]:
                if len(self.asm.parked) < PARK:
                    self._send(ev, b, self.issued[ev].record[0], 1, 0)
            return
        self._one_fragment(where, pick, kind)

    def _one_fragment(self, where, pick, kind):
        live = self._live()
        if where == "live" and live:
            # a live event, mostly one of its boards still missing
            ev = live[pick % len(live)]
            missing = [b for b in sorted(BOARDS) if b not in self.issued[ev].slots]
            b = missing[pick // 7 % len(missing)] if missing and pick % 5 else pick // 3 % len(BOARDS)
        elif where in ("live", "ahead"):
            ev, b = self.next_ev + pick % 3, pick // 3 % len(BOARDS)  # before its record
        elif where == "old":
            ev, b = max(0, self.next_ev - 1 - pick % 8), pick // 8 % len(BOARDS)  # late, duplicate, skipped
        else:
            ev, b = 1000 + pick % 50, pick // 50 % len(BOARDS)  # never issued
        o = self.issued.get(ev)
        ts = o.record[0] if o is not None else ts_of(ev)
        if kind == "mismatch":
            ts += 1
        ff = {"clipped": 1, "busy": 2}.get(kind, 0)
        bad = kind if kind in ("crc", "sample", "pulse_time", "channel_flags") else None
        self._send(ev, b, ts, 1, ff, bad)

    @rule(dt=st.sampled_from([0.05] * 4 + [0.2, 0.4, 0.7, 1.2]))
    def time_passes(self, dt):
        self.now += dt
        for n in [n for n, h in self.orphans.items() if self.now - h.created > TIMEOUT]:
            self.expected_rejects[Reason.ORPHAN] += len(self.orphans.pop(n).slots)
        self.early_ok = True
        self.asm.expire(self.now)
        self.early_ok = False

    @rule(n=st.sampled_from([1, 2, 5]))
    def writer_takes(self, n):
        k = 0
        while self.asm.out and k < n:
            self.written.append(self.asm.out.popleft())
            k += 1
        self.asm.sent(k)
        self.sent_total += k

    @precondition(lambda self: self.dead != ALL)
    @rule(b=st.sampled_from(sorted(BOARDS)), really=st.sampled_from([False] * 4 + [True]))
    def board_dies(self, b, really):
        if really:  # the trigger processor marks it dead: later records say so
            self.dead |= 1 << b

    @precondition(lambda self: len(self.asm.parked) >= PARK and self.asm.in_flight >= LIMIT - 1 and not self.asm.out)
    @rule()
    def evict(self):
        self.early_ok = True
        self.asm.evict_oldest()
        self.early_ok = False

    @precondition(lambda self: self.total is None and len(self.issued) >= 8)  # (the drain ends every run)
    @rule(extra=st.sampled_from([0, 0, 0, 2]), really=st.sampled_from([False] * 3 + [True]))
    def end_of_run(self, extra, really=True):
        if not really:
            return
        self.total = self.next_ev + extra
        self.skipped.update(range(self.last_record + 1, self.total))
        for n in [n for n in self.orphans if n >= self.total]:
            self.expected_rejects[Reason.ORPHAN] += len(self.orphans.pop(n).slots)
        self.crc_early = {n: m for n, m in self.crc_early.items() if n < self.total}
        self.asm.end_of_run(self.total, self.now)

    # ---- after every rule ---------------------------------------------------------------------
    rules_run = 0  # rules run over all examples (the figure in the module docstring)

    def _after(self):
        self.asm.emit()  # the node emits once per step
        AssemblerMachine.rules_run += 1

    @invariant()
    def order_and_bounds(self):
        self._after()
        out = self.written + list(self.asm.out)
        assert out == sorted(out) and len(out) == len(set(out)), out
        assert set(out) <= set(self.built)
        assert self.asm.floor == self.floor()
        asm = self.asm
        holding = sum(1 for e in asm.events.values() if e.fragments and not e.ready)
        assert holding <= LIMIT
        assert asm.n_orphans == sum(len(h.fragments) for h in asm.orphans.values()) <= ORPHANS
        assert len(asm.parked) + asm.n_orphans <= PARK + ORPHANS
        assert asm.n_records_only <= asm.record_cap
        assert len(asm.crc_early) < LIMIT and all(asm.last_record < n < asm.credit for n in asm.crc_early)
        # rejections: the oracle's, except for the verdicts still pending in the parking
        for r, n in asm.rejected.items():
            assert n <= self.expected_rejects[r], (r, n, self.expected_rejects[r])
        pending = sum(self.expected_rejects.values()) - sum(asm.rejected.values())
        assert 0 <= pending <= len(asm.parked)

    def teardown(self):
        # the drain: end of run, time passes, the writer takes everything
        if self.total is None:
            self.end_of_run(0)
        for _ in range(4):
            self.time_passes(2.5)
            self.writer_takes(10**6)
            self._after()
        self.time_passes(STALL + 1)
        self.writer_takes(10**6)
        self._after()
        assert self.asm.done, (self.asm.floor, self.total)
        assert self.written == sorted(self.issued) == sorted(self.built)
        self.asm.finish()
        assert not self.asm.parked and not self.asm.orphans
        rejected = {r: n for r, n in self.asm.rejected.items() if n}
        assert rejected == {r: n for r, n in self.expected_rejects.items() if n}
        kept = sum(len(b[2]) for b in self.built.values())
        assert self.fragments_in == kept + sum(rejected.values())
        assert self.asm.counters["fragments_accepted"] == kept


AssemblerMachine.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_assembler_against_the_oracle = AssemblerMachine.TestCase
