"""The event-building rules without sockets: fragments + trigger records -> events, in order.

:class:`EventAssembler` is driven by :class:`pokerdaq.daq._builder.EventBuilderNode` (which owns
the ZeroMQ sockets, the decoder and the clock) and by the stateful tests, which pass the time
explicitly as ``now``. The rules are those of docs/daq.md "Event building" and
docs/hdf5-layout.md ``EventFlags``:

* **issued events.** A trigger record makes an event number *issued*. Records arrive in
  event-number order (one trigger processor, one socket); a record whose number is not above the
  last one is counted (``bad_trigger_records``) and ignored. Numbers skipped between two records
  are never issued: the event after the skip is flagged SEQUENCE_GAP and the output order jumps
  over the skipped numbers (so a gap never stops the drain).
* **assembly.** An issued event is complete when a fragment of every board not marked dead in
  its record is held; it is then built (``build``) and leaves in event-number order. A fragment
  whose timestamp or trigger word disagrees with the record is rejected (``mismatch``) and the
  event flagged MISMATCH; a second fragment of a board is rejected (``duplicate``) and the event
  flagged DUPLICATE (the first is kept); a fragment of an event already built or written is
  ``late``.
* **orphans.** A fragment whose event number has no record yet is held in the orphan store (its
  record usually follows within a step), at most ``orphan_limit`` fragments; it never counts
  against the in-flight limit, so orphans can never push an issued event out. When the store is
  full, the fragments of the highest event number held (the incoming one included) are shed
  (``orphan_shed``). Orphans leave the store when their record arrives, or are rejected as
  ``orphan``: their number fell into a skip of the records, lies at or beyond the end of run,
  or they are older than the time-out. A fragment without a record whose number is at or above
  the credit is rejected at once (``beyond_credit``): a board that keeps to the credit never
  reads such an event out, so only a faulty or foreign peer sends it. Real early fragments
  therefore lie between the last record and the credit, ``limit - 1`` numbers: with the default
  ``orphan_limit`` of ``(limit - 1) x boards`` every one of them fits, and the store can be
  filled (and shed) only by fragments that claim a real board's slot in that window.
* **in-flight limit.** At most ``limit`` issued events hold fragments or wait, built, for the
  writer (``in_flight``). A fragment of a further issued event is parked (``park_limit``, the
  node stops reading when the parking is full); the last place is kept for the next event to
  write, so the queue behind it can always drain. With the parking full, the in-flight limit
  reached and nothing waiting for the writer, the node asks :meth:`evict_oldest`: the oldest
  issued event is built early (INCOMPLETE, ``events_evicted_incomplete``).
* **time-out.** An issued event whose first fragment is older than ``timeout_s`` is built
  INCOMPLETE; one with no fragment at all when a later event's first fragment, or the end of
  run, is older than ``timeout_s``, or after ``stall_timeout_s`` (docs/daq.md).
* **flags** (set exactly when): INCOMPLETE - a board's fragment is missing (``missing_boards``);
  CHECKSUM_ERROR - a missing board's fragment for this event failed its CRC (header intact; also
  when it came before the event's record);
  MISMATCH, DUPLICATE - above; SEQUENCE_GAP - above; TIMESTAMP_ERROR - the record's timestamp is
  below the previous record's; TRUNCATED / BOARD_BUSY - a fragment in the event carries
  WINDOW_CLIPPED / BOARD_BUSY.
* **credit.** ``credit`` = events sent to the writer + ``limit`` - 1, never decreasing.

Every issued event is built exactly once and leaves through :attr:`out`; every fragment given
to :meth:`take` is either in a built event, held (event, orphan store, parking), or counted in
:attr:`rejected` by reason.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any, cast

from pokerdaq.io import EventFlags

from ._wire import CheckedFragment, FragmentFlags, Reason

_INCOMPLETE, _MISMATCH, _DUPLICATE = int(EventFlags.INCOMPLETE), int(EventFlags.MISMATCH), int(EventFlags.DUPLICATE)
_GAP, _TS_ERROR, _CRC_ERROR = (
    int(EventFlags.SEQUENCE_GAP),
    int(EventFlags.TIMESTAMP_ERROR),
    int(EventFlags.CHECKSUM_ERROR),
)
FRAGMENT_TO_EVENT_FLAGS = {
    int(FragmentFlags.WINDOW_CLIPPED): int(EventFlags.TRUNCATED),
    int(FragmentFlags.BOARD_BUSY): int(EventFlags.BOARD_BUSY),
}
"""Fragment flag bit -> the event flag it sets (docs/hdf5-layout.md)."""
_FFLAGS = tuple(sum(e for f, e in FRAGMENT_TO_EVENT_FLAGS.items() if k & f) for k in range(4))
_LATE, _DUP, _MIS, _ORPHAN, _SHED = Reason.LATE, Reason.DUPLICATE, Reason.MISMATCH, Reason.ORPHAN, Reason.ORPHAN_SHED
_BEYOND = Reason.BEYOND_CREDIT


class _Event:
    """One event number's state: its record (issued) or only fragments (orphan store)."""

    __slots__ = (
        "crc_bad",
        "created",
        "expected",
        "fflags",
        "first_fragment",
        "flags",
        "fragments",
        "mask",
        "message",
        "ready",
        "record",
    )

    def __init__(
        self, created: float, record: tuple[int, int, int, int] | None = None, expected: int = 0, flags: int = 0
    ) -> None:
        self.created = created  # record or first fragment, whichever came first
        self.first_fragment: float | None = None  # the stale-event clock starts here
        self.record = record  # (event number, timestamp, trigger word, dead boards)
        self.expected = expected  # boards whose fragment completes the event
        self.fragments: dict[int, CheckedFragment] = {}
        self.mask = 0  # bit b: a fragment of board b is held
        self.flags = flags  # EventFlags found so far
        self.fflags = 0  # OR of the held fragments' flags
        self.crc_bad = 0  # bit b: a fragment of board b failed its CRC
        self.ready = False
        self.message: Any = None


class EventAssembler:
    """Event building for one run, socket-free (rules: module docstring, docs/daq.md).

    Parameters
    ----------
    boards
        The run's board ids (bit ``b`` of ``missing_boards`` is board ``b``).
    limit
        ``daq.max_events_in_flight``: issued events holding data or waiting for the writer.
    timeout_s, stall_timeout_s
        ``daq.builder_timeout_s`` and ``daq.stall_timeout_s``.
    build
        ``build(event_number, record, fragments, flags, missing_boards, t_first)`` -> the
        message of a built event (appended to :attr:`out`); ``fragments`` maps board -> fragment.
    park_limit, orphan_limit
        Most fragments parked beyond the in-flight limit (default 2 per board; the node stops
        reading at it) and held without a trigger record (default 32 per board).
    """

    def __init__(
        self,
        boards: Iterable[int],
        limit: int,
        timeout_s: float,
        stall_timeout_s: float,
        build: Callable[..., Any],
        park_limit: int | None = None,
        orphan_limit: int | None = None,
    ) -> None:
        self.boards = sorted(int(b) for b in boards)
        self.all_boards_mask = sum(1 << b for b in self.boards)
        self.limit = int(limit)
        self.timeout = float(timeout_s)
        self.stall_timeout = float(stall_timeout_s)
        self.build = build
        self.park_limit = 2 * len(self.boards) if park_limit is None else int(park_limit)
        self.orphan_limit = (
            max(1, self.limit - 1) * max(1, len(self.boards)) if orphan_limit is None else int(orphan_limit)
        )
        self.record_cap = 4 * self.limit  # events holding only a record (the node stops reading)
        self.events: dict[int, _Event] = {}  # issued events, not yet written
        self.orphans: dict[int, _Event] = {}  # event numbers without a record: their fragments
        self.n_orphans = 0  # fragments in self.orphans
        self.crc_early: dict[int, int] = {}  # event number without a record -> boards whose CRC failed
        self.data_events: set[int] = set()  # issued events holding fragments, or built
        self.parked: collections.deque = collections.deque()
        self.out: collections.deque = collections.deque()  # built events (and whatever the node adds)
        self.unsent = 0  # built events in self.out
        self.floor = 0  # every event number below it has left
        self.skips: dict[int, int] = {}  # first skipped number -> next issued number
        self.last_record = -1
        self.last_timestamp = -1
        self.total: int | None = None  # from the end of run: no number at or above it is issued
        self.end_time: float | None = None
        self.credit = self.limit - 1
        self.rejected: collections.Counter = collections.Counter()
        self.counters: collections.Counter = collections.Counter()
        self.max_in_flight = self.max_parked = self.max_orphans = 0

    # ---- state --------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Issued events holding fragments or built and not yet sent."""
        return len(self.data_events) + self.unsent

    @property
    def n_records_only(self) -> int:
        return len(self.events) - len(self.data_events)  # data_events is a subset of events

    @property
    def done(self) -> bool:
        """The end of run is known and every issued event has been built and sent."""
        return self.total is not None and self.floor >= self.total and self.unsent == 0

    # ---- input ----------------------------------------------------------------------------
    def take(self, frag: CheckedFragment, now: float) -> None:
        """Put a checked fragment into its event (or the orphan store, or the parking, or reject it)."""
        ev_no = frag.event_number
        if ev_no < self.floor:
            self.rejected[_LATE] += 1
            return
        ev = self.events.get(ev_no)
        if ev is None:
            self._orphan(frag, ev_no, now)
            return
        if ev.ready:
            self.rejected[_LATE] += 1
            return
        board = frag.board_id
        if board in ev.fragments or (self.parked and ev_no not in self.data_events and self._is_parked(ev_no, board)):
            self.rejected[_DUP] += 1
            ev.flags |= _DUPLICATE
            return
        rec = cast(tuple[int, int, int, int], ev.record)  # issued: it has its record
        if rec[1] != frag.timestamp or rec[2] != frag.trigger_word:
            self.rejected[_MIS] += 1
            ev.flags |= _MISMATCH
            return
        if ev_no not in self.data_events:
            if len(self.data_events) + self.unsent >= self.limit - (ev_no != self.floor):
                # a new event at the in-flight limit: park the fragment (bounded) until room frees;
                # the last place is kept for the next event to write (the floor), so the events
                # queued behind it can always leave
                self.parked.append(frag)
                self.max_parked = max(self.max_parked, len(self.parked))
                return
            self.data_events.add(ev_no)
            ev.first_fragment = now
            if self.parked:  # fragments of this event parked before this one go in first
                self._pull_parked(ev_no, ev)
        ev.fragments[board] = frag
        ev.mask |= 1 << board
        ev.fflags |= frag.flags
        if ev.mask & ev.expected == ev.expected:
            self._finalize(ev_no, ev)

    def _orphan(self, frag: CheckedFragment, ev_no: int, now: float) -> None:
        """A fragment of an event number without a record: held in the orphan store, or rejected."""
        if ev_no <= self.last_record or (self.total is not None and ev_no >= self.total):
            self.rejected[_ORPHAN] += 1  # a skipped number, or beyond the end of run: never issued
            return
        if ev_no >= self.credit:
            self.rejected[_BEYOND] += 1  # no board keeping to the credit reads this event out yet
            return
        held = self.orphans.get(ev_no)
        if held is not None and frag.board_id in held.fragments:
            self.rejected[_DUP] += 1
            held.flags |= _DUPLICATE
            return
        if self.n_orphans >= self.orphan_limit:
            top = max(self.orphans)
            if ev_no >= top:
                self.rejected[_SHED] += 1
                return
            self._drop_orphans(top, _SHED)  # the highest number is the least likely to be issued soon
            held = self.orphans.get(ev_no)
        if held is None:
            held = self.orphans[ev_no] = _Event(now)
            held.first_fragment = now
        if not isinstance(frag.buf, bytes):
            # a copy of its bytes, not the received frame: a held frame pins its 8 kB libzmq
            # receive buffer, and the store is sized for a whole credit window of fragments
            frag = frag._replace(buf=bytes(frag.buf))
        held.fragments[frag.board_id] = frag
        self.n_orphans += 1
        self.max_orphans = max(self.max_orphans, self.n_orphans)

    def _drop_orphans(self, ev_no: int, reason: Reason) -> None:
        held = self.orphans.pop(ev_no)
        self.n_orphans -= len(held.fragments)
        self.rejected[reason] += len(held.fragments)

    def bad_crc(self, board: int, ev_no: int) -> None:
        """A fragment whose header is intact (lengths consistent) failed its CRC.

        Attributed to the event its header names when that event is issued, not yet built, and
        holds no fragment of the board, or when it has no record yet but may still get one (a
        number above the last record and below the credit) and the orphan store holds no
        fragment of the board for it: if the board is still missing when the event is built,
        the event gets CHECKSUM_ERROR. (The rejection itself is counted by the caller.)
        """
        if board not in self.boards:
            return
        ev = self.events.get(ev_no)
        if ev is not None:
            if not ev.ready and board not in ev.fragments:
                ev.crc_bad |= 1 << board
        elif self._may_be_issued(ev_no):
            # its record has not come yet: kept (one mask per number of the credit window) until
            # it comes, unless a fragment of the board is held for it in the orphan store
            held = self.orphans.get(ev_no)
            if held is None or board not in held.fragments:
                self.crc_early[ev_no] = self.crc_early.get(ev_no, 0) | 1 << board

    def _may_be_issued(self, ev_no: int) -> bool:
        """A number without a record that a later record can still issue (within the credit)."""
        return self.last_record < ev_no < self.credit and (self.total is None or ev_no < self.total)

    def record(self, ev_no: int, timestamp: int, trigger_word: int, dead_boards: int, now: float) -> None:
        """A trigger record: the event is issued."""
        if ev_no <= self.last_record or ev_no < self.floor or (self.total is not None and ev_no >= self.total):
            self.counters["bad_trigger_records"] += 1
            return
        flags = 0
        if ev_no > self.last_record + 1:
            # numbers skipped: never issued (records come in order). Their orphans are rejected,
            # the output order jumps over them, the event after them is flagged
            first = self.last_record + 1
            self.skips[first] = ev_no
            flags |= _GAP
            self.counters["sequence_gaps"] += 1
            self.counters["event_numbers_skipped"] += ev_no - first
            for n in [n for n in self.orphans if n < ev_no]:
                self._drop_orphans(n, _ORPHAN)
        if timestamp < self.last_timestamp:
            flags |= _TS_ERROR
        self.last_record, self.last_timestamp = ev_no, timestamp
        ev = self.events[ev_no] = _Event(
            now, (ev_no, timestamp, trigger_word, dead_boards), self.all_boards_mask & ~dead_boards, flags
        )
        if self.crc_early:
            ev.crc_bad = self.crc_early.pop(ev_no, 0)
            for n in [n for n in self.crc_early if n < ev_no]:  # numbers the records skipped
                del self.crc_early[n]
        held = self.orphans.pop(ev_no, None)
        if held is not None:
            self.n_orphans -= len(held.fragments)
            ev.created, ev.flags = held.created, ev.flags | held.flags
            ev.expected, expected = -1, ev.expected  # not complete before every held fragment is in
            for frag in held.fragments.values():
                self.take(frag, held.created)  # an orphan's first fragment created it
            ev.expected = expected
        if not ev.ready and ev.mask & ev.expected == ev.expected:  # every board dead
            self._finalize(ev_no, ev)

    def end_of_run(self, total: int, now: float) -> None:
        """The trigger processor's end of run: no event number at or above ``total`` is issued."""
        total = max(int(total), self.last_record + 1)
        self.total, self.end_time = total, now
        if total > self.last_record + 1:  # numbers skipped at the end: no event follows to flag
            self.skips[self.last_record + 1] = total
            self.counters["event_numbers_skipped"] += total - self.last_record - 1
        for n in [n for n in self.orphans if n >= total or n <= self.last_record]:
            self._drop_orphans(n, _ORPHAN)
        for n in [n for n in self.crc_early if n >= total]:
            del self.crc_early[n]
        self.emit()

    # ---- progress ---------------------------------------------------------------------------
    def unpark(self, now: float) -> bool:
        """Take the parked fragments again when the in-flight count fell below the limit."""
        if not self.parked or self.in_flight >= self.limit:
            return False
        for frag in list(self.parked):
            if not any(p is frag for p in self.parked):
                continue  # pulled into its event when an earlier fragment of it was admitted
            # the others stay in the parking while this one is taken: admitting its event pulls
            # the event's other parked fragments in before it can complete (none is left to
            # arrive "late" after the event was built without it)
            self.parked = collections.deque(p for p in self.parked if p is not frag)
            self.take(frag, now)  # admitted now, or parked again
        return True

    def expire(self, now: float) -> None:
        """Build stale events INCOMPLETE and reject stale orphans (rules: module docstring)."""
        later_first = None  # earliest first-fragment time among higher issued event numbers
        for ev_no in sorted(self.events, reverse=True):
            ev = self.events[ev_no]
            if ev.first_fragment is not None:
                stale = now - ev.first_fragment > self.timeout
                later_first = ev.first_fragment if later_first is None else min(later_first, ev.first_fragment)
            else:
                stale = (
                    (later_first is not None and now - later_first > self.timeout)
                    or (self.end_time is not None and now - self.end_time > self.timeout)
                    or now - ev.created > self.stall_timeout
                )
            if stale and not ev.ready:
                self.counters["events_timed_out"] += 1
                self._finalize_early(ev_no, ev)
        for n in [n for n, held in self.orphans.items() if now - held.created > self.timeout]:
            self._drop_orphans(n, _ORPHAN)
        self.emit()

    def evict_oldest(self) -> bool:
        """Build the oldest issued event that holds data now, INCOMPLETE (the node's last resort)."""
        for ev_no in sorted(self.data_events):
            ev = self.events.get(ev_no)
            if ev is None or ev.ready:
                continue
            self.counters["events_evicted_incomplete"] += 1
            self._finalize_early(ev_no, ev)
            self.emit()
            return True
        return False

    def emit(self) -> int:
        """Move the built events at the floor to :attr:`out`, in event-number order; how many."""
        n = 0
        events, data_events, out = self.events, self.data_events, self.out
        while True:
            floor = self.floor
            ev = events.get(floor)
            if ev is None:
                nxt = self.skips.pop(floor, None)
                if nxt is None:
                    break
                self.floor = nxt
                continue
            if not ev.ready:
                break
            out.append(ev.message)
            ev.message = None
            data_events.discard(floor)
            del events[floor]
            self.floor = floor + 1
            n += 1
        self.unsent += n
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return n

    def sent(self, n: int) -> None:
        """``n`` built events left for the writer: room in flight, credit grows."""
        if n:
            self.unsent -= n
            self.credit += n
            self.counters["events_sent"] += n

    def finish(self) -> None:
        """End of the drain: what is still held belongs to no issued event (orphans)."""
        for n in list(self.orphans):
            self._drop_orphans(n, _ORPHAN)
        self.rejected[_ORPHAN] += len(self.parked)
        self.parked.clear()

    # ---- building -----------------------------------------------------------------------------
    def _is_parked(self, ev_no: int, board: int) -> bool:
        return any(f.event_number == ev_no and f.board_id == board for f in self.parked)

    def _pull_parked(self, ev_no: int, ev: _Event) -> bool:
        """Move the parked fragments of an event into it, in arrival order; True if there were any.

        Called when the event gets its place in flight and when it is built, so a parked
        fragment of an event is never overtaken by a later one nor left behind (lost as late).
        """
        keep: collections.deque = collections.deque()
        found = False
        for frag in self.parked:
            if frag.event_number != ev_no:
                keep.append(frag)
                continue
            found = True
            if frag.board_id in ev.fragments:  # cannot happen (checked when parked); counted if it did
                self.rejected[_DUP] += 1
                ev.flags |= _DUPLICATE
            else:
                ev.fragments[frag.board_id] = frag
                ev.mask |= 1 << frag.board_id
                ev.fflags |= frag.flags
        if found:
            self.parked = keep
        return found

    def _finalize_early(self, ev_no: int, ev: _Event) -> None:
        """Build an event before it is complete (time-out, eviction)."""
        self.data_events.add(ev_no)
        self._finalize(ev_no, ev)

    def _finalize(self, ev_no: int, ev: _Event) -> None:
        if self.parked:  # its parked fragments go in first (never lost)
            self._pull_parked(ev_no, ev)
        missing = self.all_boards_mask & ~ev.mask
        flags = ev.flags | _FFLAGS[ev.fflags & 3]
        counters = self.counters
        if missing:
            flags |= _INCOMPLETE
            counters["events_incomplete"] += 1
            if ev.crc_bad & missing:
                flags |= _CRC_ERROR
        if flags & _MISMATCH:
            counters["events_mismatch"] += 1
        ev.message = self.build(ev_no, ev.record, ev.fragments, flags, missing, ev.first_fragment or ev.created)
        counters["fragments_accepted"] += len(ev.fragments)  # the ones that made it into an event
        counters["events_built"] += 1
        self.data_events.add(ev_no)
        ev.fragments = {}
        ev.ready = True

    def stats(self) -> dict[str, Any]:
        """Counters and bounds (the node adds its own)."""
        return {
            **dict(self.counters),
            "rejected": {r.value: n for r, n in self.rejected.items() if n},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "in_flight_limit": self.limit,
            "parked": len(self.parked),
            "max_parked": self.max_parked,
            "park_limit": self.park_limit,
            "orphans_held": self.n_orphans,
            "max_orphans_held": self.max_orphans,
            "orphan_limit": self.orphan_limit,
            "credit": self.credit,
            "held_events": len(self.events),
            "next_event": self.floor,
            "events_issued": self.total,
        }
