"""Event builder: fragments of every board + the trigger record -> one event, in event-number order.

Sockets: two PULLs bound here, ``fragments`` (from the boards, and from anyone else who
connects: nothing on it is trusted; ``ZMQ_MAXMSGSIZE`` refuses oversized messages) and
``trigger_records`` (from the trigger processor); a PUB bound here, ``credits`` (to the
boards); a PUSH connected to the writer.

Rules (artdaq / DUNE lessons, docs/wire-format.md):

* a fragment is decoded and checked (:func:`decode_fragment`) and checked against the run's
  channel map (board id, channel list, window length), both by :class:`RunFragmentDecoder`
  (a fast path for valid fragments, the documented decoder for the rest); a bad one is counted
  by :class:`Reason` and dropped. An accepted fragment stays the received message until its
  event is assembled (one numpy gather of every board's samples per event);
* an event is complete when the trigger record and a fragment from every board not marked
  dead have arrived. An event older than ``daq.builder_timeout_s`` is written flagged
  INCOMPLETE with the missing boards in ``missing_boards``;
* a fragment disagreeing with the trigger record (timestamp, trigger word) is counted as
  MISMATCH and dropped, and the event is flagged MISMATCH; a second fragment of a board is a
  DUPLICATE; a fragment of an event already written is LATE; fragments without a trigger
  record after the time-out are ORPHAN. None of these ever enters an event;
* events leave in event-number order (the writer requires it); at most
  ``daq.max_events_in_flight`` events hold data here (built events waiting for the writer
  included). A fragment of a further event is parked (at most 2 per board); the last place
  is kept for the next event to write, so the queue behind it can always drain. With the
  parking full the builder stops reading (backpressure to the boards); only if, in addition,
  nothing waits for the writer is the oldest event written early as INCOMPLETE (counted
  ``events_evicted_incomplete``). Boards that keep to the credit never get there;
* credit (event-window flow control): the builder publishes on ``credits`` the first event
  number a board may not read out yet, ``events sent to the writer + max_events_in_flight - 1``.
  It never decreases (an event leaves the count of events in flight only when sent), so a
  board acting on an old credit is still within it; fragments of events below it always fit
  in the in-flight limit and are never parked, so the builder never stops reading the shared
  PULL socket. Without it, one board process could fill the parking with fragments of events
  far ahead while the fragments of the oldest event, from another process, wait behind them in
  the same socket: the builder stopped reading and wrote that event INCOMPLETE (seen with
  large ``slice_ticks``, where one decision carries many triggers).
"""

from __future__ import annotations

import collections
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
import zmq.utils.monitor

from ._node import Node
from ._wire import (
    HEADER_SIZE,
    PULSE_SIZE,
    TRIGGER_DTYPE,
    TRIGGER_MAGIC,
    CheckedFragment,
    FragmentError,
    MessageError,
    Reason,
    RunFragmentDecoder,
    SliceFlags,
    decode_slice,
)

CREDIT_STRUCT = struct.Struct("<QQ")
"""A credit message: run number, first event number the boards may not read out yet (u64 LE)."""
CREDIT_REPEAT_S = 0.05
"""The credit is sent again this often even when unchanged (a subscriber joining late gets it)."""
OUT_QUEUE_EVENTS = 8
"""Built events waiting for the writer socket before the builder stops reading fragments."""
FRAGMENTS_PER_STEP = 512
"""Fragment messages read per main-loop step (the step's fixed costs are shared by these)."""
_NOBLOCK, _NOBLOCK_MORE, _SNDMORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE), int(zmq.SNDMORE)


@dataclass
class _Event:
    created: float                      # first fragment or trigger record, whichever came first
    first_fragment: float | None = None  # the stale-event clock starts here
    record: tuple[int, int, int, int] | None = None   # event number, timestamp, trigger word, dead boards
    fragments: dict[int, CheckedFragment] = field(default_factory=dict)
    mask: int = 0                        # bit b: a fragment of board b is held
    flags: int = 0
    ready: bool = False
    message: list | None = None


def _event_header_struct(event_dtype: np.dtype) -> struct.Struct:
    """A ``struct`` packing of ``EVENT_DTYPE`` (bit-identical to the numpy row; ~10x faster per event)."""
    names = ("event_number", "timestamp", "trigger_word", "flags", "missing_boards", "n_pulses")
    codes = {"<u8": "Q", "<u4": "I"}
    if event_dtype.names != names or any(event_dtype[n].str not in codes for n in names):
        raise TypeError(f"EVENT_DTYPE fields {event_dtype.descr}: the builder packs {names} (<u8/<u4) in this order")
    packer = struct.Struct("<" + "".join(codes[event_dtype[n].str] for n in names))
    if packer.size != event_dtype.itemsize:
        raise TypeError(f"EVENT_DTYPE of {event_dtype.itemsize} bytes is not packed ({packer.size} expected)")
    return packer


class EventBuilderNode(Node):
    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        from pokerdaq.io._records import EVENT_DTYPE, EventFlags
        self.EVENT_DTYPE, self.EventFlags = EVENT_DTYPE, EventFlags
        self.run_number = int(params["run_number"])
        cmap = cfg.channel_map
        self.n_channels = len(cmap)
        self.board_channels = {b: cmap.channels_on_board(b) for b in range(cmap.n_boards)}
        self.decoder = RunFragmentDecoder(self.run_number, self.board_channels, cfg.digitizer.window_samples)
        self._event_struct = _event_header_struct(EVENT_DTYPE)
        # the writer's samples (n_channels, window) in channel-map order: the rows of the present
        # boards' channel blocks (in board order) go to these channel rows
        self._block_words = self.decoder.block_size // 2
        self._rows_of_mask: dict[int, np.ndarray | bool] = {}   # boards present -> channel rows (True: all, in order)
        self._flag_incomplete, self._flag_mismatch = int(EventFlags.INCOMPLETE), int(EventFlags.MISMATCH)
        self.all_boards_mask = sum(1 << b for b in self.board_channels)
        self.window = cfg.digitizer.window_samples
        self.timeout = cfg.daq.builder_timeout_s
        self.limit = cfg.daq.max_events_in_flight
        self.record_cap = 4 * self.limit
        self.events: dict[int, _Event] = {}
        self.floor = 0                      # every event number below it has been sent on
        self.data_events: set[int] = set()  # events holding fragment data or a built event (in flight)
        self.out: collections.deque = collections.deque()
        self.parked: collections.deque = collections.deque()   # fragments of new events at the limit
        self.park_limit = 2 * len(self.board_channels)
        self.max_parked = 0
        self.total: int | None = None       # events issued, known from the end-of-run record
        self.end_time: float | None = None
        self.scalers_queued = 0             # spill scaler rows and trigger inputs in self.out (not events)
        self._next_expire = 0.0
        self.rejected = collections.Counter()
        self.counters = collections.Counter()
        self.max_in_flight = 0
        self.frag_sock = self.rec_sock = self.push = self.monitor = self.credit_pub = None
        self.credit = self.limit - 1        # boards may read out events below this (events_sent + limit - 1)
        self._credit_sent_at = 0.0
        self._credit_published = -1
        import hist
        self.h_latency = hist.Hist(hist.axis.Regular(50, 0.0, 500.0, name="build_latency_ms"))
        self.h_size = hist.Hist(hist.axis.Regular(50, 0.0, 64.0, name="event_fragments_kB"))
        self._fills: list[tuple[float, float, int]] = []
        self.h_pulses = hist.Hist(hist.axis.Regular(40, 0.0, 40.0, name="pulses_per_event"))

    # ---- sockets ---------------------------------------------------------------------
    def bind(self) -> dict[str, str]:
        eps = self.params["endpoints"]
        self.frag_sock = self.socket(zmq.PULL)
        self.frag_sock.setsockopt(zmq.MAXMSGSIZE, self.cfg.daq.max_message_bytes)
        self.monitor = self.frag_sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED)
        self.rec_sock = self.socket(zmq.PULL)
        bound = {"fragments": self.bind_socket(self.frag_sock, eps["fragments"]),
                 "trigger_records": self.bind_socket(self.rec_sock, eps["trigger_records"])}
        if "credits" in eps:
            self.credit_pub = self.socket(zmq.PUB)
            bound["credits"] = self.bind_socket(self.credit_pub, eps["credits"])
        return bound

    def connect(self, endpoints: dict[str, str]) -> None:
        self.push = self.socket(zmq.PUSH, hwm=max(2, self.cfg.daq.hwm // 4))
        self.push.connect(endpoints["records"])

    @property
    def in_flight(self) -> int:
        return len(self.data_events) + len(self.out) - self.scalers_queued   # events only

    @property
    def n_records_only(self) -> int:
        return len(self.events) - len(self.data_events)

    def _may_read_fragments(self) -> bool:
        # fragments of events beyond the in-flight limit are parked (bounded): read while there is room
        return len(self.parked) < self.park_limit

    def sockets(self):
        socks = [(self.monitor, zmq.POLLIN)]
        if self.n_records_only < self.record_cap:
            socks.append((self.rec_sock, zmq.POLLIN))
        if self._may_read_fragments():
            socks.append((self.frag_sock, zmq.POLLIN))
        if self.out:
            socks.append((self.push, zmq.POLLOUT))
        return socks

    # ---- the work --------------------------------------------------------------------
    def step(self, ready: dict) -> bool:
        more = False
        self._watch_connections()
        for _ in range(256):
            if self.n_records_only >= self.record_cap:
                break
            try:
                frames = self.rec_sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_records(frames)
            more = True
        if self.parked and self.in_flight < self.limit:
            parked, self.parked = self.parked, collections.deque()
            for frag in parked:      # admitted now, or parked again
                self._take(frag)
            more = True
        more |= self._read_fragments()
        self._expire()
        self._emit()
        more |= self._send()
        self._publish_credit()
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.total is not None and self.floor >= self.total and not self.out and self.state == "running":
            self._finish()
        return more

    def _read_fragments(self) -> bool:
        """Receive and take in up to FRAGMENTS_PER_STEP fragment messages; True if any came."""
        # zero-copy receive: the zmq.Frame tells whether more frames follow (a socket option
        # query costs as much as the receive) and its buffer is checked and kept as it is;
        # a 100 MB message never gets here (ZMQ_MAXMSGSIZE). A held frame keeps libzmq's
        # receive buffer it lies in alive (ZMQ_IN_BATCH_SIZE, 8 kB): memory stays bounded by
        # the in-flight and parking limits, up to ~5x the fragments' own bytes
        recv, decode, take, parked, park_limit = (self.frag_sock.recv, self.decoder.decode, self._take, self.parked,
                                                  self.park_limit)
        n = 0
        while n < FRAGMENTS_PER_STEP:
            if len(parked) >= park_limit:
                if self.in_flight >= self.limit - 1 and not self.out:
                    # at the limit, nothing waits for the writer, and fragments of new events keep
                    # coming: the oldest event cannot complete from what we hold; write it now
                    self._evict_oldest()
                break
            try:
                msg = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            if msg.more:   # a multipart message: rejected whole
                while recv(copy=False).more:
                    pass
                self._reject(Reason.BAD_FRAMES)
                continue
            try:
                frag = decode(msg)
            except FragmentError as err:
                self._reject(err.reason)
                continue
            take(frag)
        self.counters["fragment_messages"] += n
        return n > 0

    def _watch_connections(self) -> None:
        while True:
            try:
                msg = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = zmq.utils.monitor.parse_monitor_message(msg)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.counters["fragment_peer_disconnects"] += 1
            elif event == zmq.EVENT_ACCEPTED:
                self.counters["fragment_peer_connections"] += 1

    def _reject(self, reason: Reason, n: int = 1) -> None:
        if n:
            self.rejected[reason.value] += n

    def _take(self, frag: CheckedFragment) -> None:
        """Put a checked fragment into its event (or park it at the limit, or reject it)."""
        ev_no = frag.event_number
        if ev_no < self.floor or (self.total is not None and ev_no >= self.total):
            self._reject(Reason.LATE if ev_no < self.floor else Reason.ORPHAN)
            return
        ev = self.events.get(ev_no)
        if ev is not None:
            if ev.ready:
                self._reject(Reason.LATE)
                return
            if frag.board_id in ev.fragments:
                self._reject(Reason.DUPLICATE)
                ev.flags |= self.EventFlags.DUPLICATE
                return
            rec = ev.record   # _matches, inlined
            if rec is not None and (rec[1] != frag.timestamp or rec[2] != frag.trigger_word):
                self._reject(Reason.MISMATCH)
                ev.flags |= self.EventFlags.MISMATCH
                return
        if ev_no not in self.data_events:
            if self.in_flight >= self.limit - (ev_no != self.floor):
                # a new event at the in-flight limit: park the fragment (bounded) until room frees.
                # The last place is kept for the next event to write (the floor): it always gets
                # in, so the events queued behind it can always leave.
                self.parked.append(frag)
                self.max_parked = max(self.max_parked, len(self.parked))
                return
            self.data_events.add(ev_no)
        if ev is None:
            ev = self.events[ev_no] = _Event(time.monotonic())
        if ev.first_fragment is None:
            ev.first_fragment = time.monotonic()
        ev.fragments[frag.board_id] = frag
        ev.mask |= 1 << frag.board_id
        if ev.record is not None:   # _check_complete, inlined (once per fragment)
            expected = self._expected_mask(ev)
            if ev.mask & expected == expected:
                self._finalize(ev_no, ev)

    @staticmethod
    def _matches(record: tuple, frag: CheckedFragment) -> bool:
        return record[1] == frag.timestamp and record[2] == frag.trigger_word

    def _on_records(self, frames) -> None:
        if (len(frames) == 2 and frames[0] == b"SCALERS") or (len(frames) == 3 and frames[0] == b"TRIGIN"):
            # a spill's scaler row: on to the writer, which completes it from the spill's events;
            # the trigger inputs of a decision: on to the writer, stored as they are
            self.out.append(frames)
            self.scalers_queued += 1
            self.counters["scaler_rows" if frames[0] == b"SCALERS" else "trigger_input_messages"] += 1
            return
        try:
            head, records = decode_slice(frames, TRIGGER_MAGIC, TRIGGER_DTYPE)
        except MessageError:
            self.counters["bad_trigger_record_messages"] += 1
            return
        if int(head["run_number"]) != self.run_number:
            self.counters["bad_trigger_record_messages"] += 1
            return
        if int(head["flags"]) & SliceFlags.END_OF_RUN:
            self.total = int(head["slice_index"])
            self.end_time = time.monotonic()
            return
        for rec in zip(records["event_number"].tolist(), records["timestamp"].tolist(),
                       records["trigger_word"].tolist(), records["dead_boards"].tolist()):
            ev_no = rec[0]   # (event number, timestamp, trigger word, dead boards) as Python ints
            if ev_no < self.floor:
                self.counters["bad_trigger_records"] += 1
                continue
            ev = self.events.get(ev_no)
            if ev is None:
                ev = self.events[ev_no] = _Event(time.monotonic())
            if ev.record is not None:
                self.counters["bad_trigger_records"] += 1
                continue
            ev.record = rec
            for b, frag in list(ev.fragments.items()):
                if not self._matches(rec, frag):
                    del ev.fragments[b]
                    ev.mask &= ~(1 << b)
                    self._reject(Reason.MISMATCH)
                    ev.flags |= self.EventFlags.MISMATCH
            if not ev.fragments:
                self.data_events.discard(ev_no)
            self._check_complete(ev_no, ev)

    def _expected_mask(self, ev: _Event) -> int:
        return self.all_boards_mask & ~ev.record[3]

    def _check_complete(self, ev_no: int, ev: _Event) -> None:
        if ev.record is None or ev.ready:
            return
        expected = self._expected_mask(ev)
        if ev.mask & expected == expected:
            self._finalize(ev_no, ev)

    def _finalize(self, ev_no: int, ev: _Event) -> None:
        """Turn an event into its writer message (complete, or flagged INCOMPLETE)."""
        missing = self.all_boards_mask & ~ev.mask
        flags = int(ev.flags)
        if missing:
            flags |= self._flag_incomplete
        fragments = ev.fragments
        blocks, pulses = [], []   # views of each fragment's channel blocks and pulse records, board order
        n_pulses = 0
        for b in sorted(fragments):
            frag = fragments[b]
            view, start, n_p = memoryview(frag.buf), frag.pulses_start, frag.n_pulses
            blocks.append(view[HEADER_SIZE:start])
            if n_p:
                n_pulses += n_p
                pulses.append(view[start:start + n_p * PULSE_SIZE])
        samples = self._assemble_samples(ev.mask, blocks)
        pulse_bytes = b"".join(pulses)
        header = self._event_struct.pack(ev_no, ev.record[1], ev.record[2], flags, missing, n_pulses)
        self.counters["fragments_accepted"] += len(blocks)   # the ones that made it into an event
        self.data_events.add(ev_no)
        ev.fragments = {}
        ev.ready = True
        ev.message = [b"EV", header, samples, pulse_bytes]
        self.counters["events_built"] += 1
        if missing:
            self.counters["events_incomplete"] += 1
        if flags & self._flag_mismatch:
            self.counters["events_mismatch"] += 1
        # histogram fills are batched (a hist.fill call costs ~30 us): see _fill_histograms
        self._fills.append(((time.monotonic() - (ev.first_fragment or ev.created)) * 1e3,
                            (2 + len(header) + len(samples) + len(pulse_bytes)) / 1024.0, n_pulses))
        if len(self._fills) >= 1024:
            self._fill_histograms()

    def _assemble_samples(self, mask: int, blocks: list[memoryview]) -> bytes:
        """The event's samples, (n_channels, window) u16 in channel-map order, zeros for missing boards.

        One gather for the whole event: the present boards' channel blocks (``blocks``, in board
        order) joined, viewed as rows of ``2 + window`` u16 (channel, channel flags, samples), and
        the sample columns put in their channel rows.
        """
        rows = np.frombuffer(b"".join(blocks), dtype="<u2").reshape(-1, self._block_words)[:, 2:]
        plan = self._rows_of_mask.get(mask)
        if plan is None:
            chans = np.concatenate([self.board_channels[b] for b in sorted(self.board_channels) if mask >> b & 1]
                                   or [np.zeros(0, np.int64)])
            plan = True if np.array_equal(chans, np.arange(self.n_channels)) else chans
            if len(self._rows_of_mask) < 64:   # bounded: the all-boards mask and a few others
                self._rows_of_mask[mask] = plan
        if plan is True:   # every channel, already in channel-map order
            return rows.astype(np.uint16, copy=False).tobytes()
        samples = np.zeros((self.n_channels, self.window), dtype=np.uint16)
        samples[plan] = rows
        return samples.tobytes()

    def _expire(self) -> None:
        """Time out stale events (checked every few tens of ms).

        The clock of an event starts at its first fragment (artdaq): its trigger record
        arrives long before the fragments when the boards are backpressured. An event with
        a record but no fragment at all is stale when a later event's first fragment is
        older than the time-out (the boards have moved past it), when the end of run is
        older than the time-out, or after stall_timeout_s.
        """
        now = time.monotonic()
        if now < self._next_expire:
            return
        self._next_expire = now + min(0.05, self.timeout / 4)
        later_first = None   # earliest first-fragment time among higher event numbers
        for ev_no in sorted(self.events, reverse=True):
            ev = self.events[ev_no]
            if ev.first_fragment is not None:
                stale = now - ev.first_fragment > self.timeout
            else:
                stale = ((later_first is not None and now - later_first > self.timeout)
                         or (self.end_time is not None and now - self.end_time > self.timeout)
                         or now - ev.created > self.stall_timeout)
            if ev.first_fragment is not None:
                later_first = ev.first_fragment if later_first is None else min(later_first, ev.first_fragment)
            if ev.ready or not stale:
                continue
            if ev.record is None:
                self._drop_orphan(ev_no, ev)
            else:
                self.counters["events_timed_out"] += 1
                self._finalize(ev_no, ev)

    def _drop_orphan(self, ev_no: int, ev: _Event) -> None:
        self._reject(Reason.ORPHAN, len(ev.fragments))
        del self.events[ev_no]
        self.data_events.discard(ev_no)

    def _evict_oldest(self) -> bool:
        """At the in-flight limit with nothing waiting for the writer: finalise the oldest event now."""
        for ev_no in sorted(self.data_events):
            ev = self.events[ev_no]
            if ev.ready:
                continue
            if ev.record is None:
                self._drop_orphan(ev_no, ev)
            else:
                self.counters["events_evicted_incomplete"] += 1
                self._finalize(ev_no, ev)
            self._emit()
            return True
        return False

    def _emit(self) -> None:
        while True:
            ev = self.events.get(self.floor)
            if ev is None or not ev.ready:
                return
            self.out.append(ev.message)
            self.data_events.discard(self.floor)
            del self.events[self.floor]
            self.floor += 1

    def _send(self) -> bool:
        n = 0
        sent = False
        send, out = self.push.send, self.out
        while out:
            frames = out[0]
            try:
                # the frames one by one with plain int flags: about half the cost of
                # send_multipart (every frame is < 64 kB: copying beats zero-copy [facts]).
                # Once the first frame is queued ZeroMQ takes the rest of the message whole.
                send(frames[0], _NOBLOCK_MORE)
            except zmq.Again:
                break
            for frame in frames[1:-1]:
                send(frame, _SNDMORE)
            send(frames[-1])
            if out.popleft()[0] in (b"SCALERS", b"TRIGIN"):
                self.scalers_queued -= 1
            else:
                n += 1
            sent = True
        if n:
            self.counters["events_sent"] += n
            self.credit += n
        return sent

    def _publish_credit(self) -> None:
        """Send the credit when it grew, and every CREDIT_REPEAT_S (lossy PUB: the latest value counts)."""
        if self.credit_pub is None:
            return
        now = time.monotonic()
        if self.credit == self._credit_published and now - self._credit_sent_at < CREDIT_REPEAT_S:
            return
        try:
            self.credit_pub.send(CREDIT_STRUCT.pack(self.run_number, self.credit), _NOBLOCK)
        except zmq.Again:
            return
        self._credit_published, self._credit_sent_at = self.credit, now

    def _finish(self) -> None:
        # what is still held belongs to no issued event: orphans, counted and dropped
        for ev_no in list(self.events):
            self._drop_orphan(ev_no, self.events[ev_no])
        self._reject(Reason.ORPHAN, len(self.parked))
        self.parked.clear()
        info = {"events_issued": self.total, "stats": self.stats()}
        self.send_with_deadline(self.push, [b"END", json.dumps(info).encode()], "end of run to the writer")
        self.notify_drained()

    def _fill_histograms(self) -> None:
        if self._fills:
            lat, size, npl = np.array(self._fills).T
            self.h_latency.fill(lat)
            self.h_size.fill(size)
            self.h_pulses.fill(npl)
            self._fills = []

    def stats(self) -> dict[str, Any]:
        self._fill_histograms()
        return {
            **dict(self.counters),
            "rejected": dict(self.rejected),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "in_flight_limit": self.limit,
            "parked": len(self.parked),
            "credit": self.credit,
            "max_parked": self.max_parked,
            "park_limit": self.park_limit,
            "held_events": len(self.events),
            "next_event": self.floor,
            "events_issued": self.total,
            "histograms": {h.axes[0].name: {"edges": h.axes[0].edges.tolist(), "counts": h.values().astype(int).tolist()}
                           for h in (self.h_latency, self.h_size, self.h_pulses)},
        }

    def close(self) -> None:
        for s in (self.frag_sock, self.rec_sock, self.push, self.credit_pub):
            if s is not None:
                if s is self.frag_sock:
                    s.disable_monitor()
                s.close(0)
        if self.monitor is not None:
            self.monitor.close(0)
