"""Event builder: fragments of every board + the trigger record -> one event, in event-number order.

Sockets: two PULLs bound here, ``fragments`` (from the boards, and from anyone else who
connects: nothing on it is trusted; ``ZMQ_MAXMSGSIZE`` refuses oversized messages) and
``trigger_records`` (from the trigger processor); a PUB bound here, ``credits`` (to the
boards); a PUSH connected to the writer.

The node receives, checks and sends; the event-building rules (assembly by event number,
order, in-flight limit and parking, orphans, eviction, time-outs, flags, credit) are
:class:`pokerdaq.daq._assembler.EventAssembler`'s, which the node drives with the clock:

* a fragment is decoded and checked (:func:`decode_fragment`) and checked against the run's
  channel map (board id, channel list, window length, samples within ``digitizer.adc_max``),
  both by :class:`RunFragmentDecoder` (a fast path for valid fragments, the documented decoder
  for the rest); a bad one is counted by :class:`Reason` and dropped (one with an intact header
  but a failed CRC is also reported to the assembler: CHECKSUM_ERROR). An accepted fragment stays
  the received message until its event is assembled (one numpy gather of every board's samples
  per event);
* with the parking full the node stops reading fragments (backpressure to the boards); only if,
  in addition, the in-flight limit is reached and nothing waits for the writer does it ask the
  assembler to build the oldest event early (INCOMPLETE, ``events_evicted_incomplete``). Boards
  that keep to the credit never get there;
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

import json
import struct
import time
from typing import Any

import numpy as np
import zmq
import zmq.utils.monitor

from ._assembler import EventAssembler
from ._node import Node
from ._wire import (
    DECISION_DTYPE,
    HEADER_SIZE,
    PULSE_SIZE,
    TRIGGER_MAGIC,
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
FRAGMENTS_PER_STEP = 512
"""Fragment messages read per main-loop step (the step's fixed costs are shared by these)."""
_NOBLOCK, _NOBLOCK_MORE, _SNDMORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE), int(zmq.SNDMORE)


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
        from pokerdaq.io import EVENT_DTYPE

        self.EVENT_DTYPE = EVENT_DTYPE
        self.run_number = int(params["run_number"])
        cmap = cfg.channel_map
        self.n_channels = len(cmap)
        self.board_channels = {b: cmap.channels_on_board(b) for b in range(cmap.n_boards)}
        self.decoder = RunFragmentDecoder(
            self.run_number, self.board_channels, cfg.digitizer.window_samples, adc_max=cfg.digitizer.adc_max
        )
        self._event_struct = _event_header_struct(EVENT_DTYPE)
        # the writer's samples (n_channels, window) in channel-map order: the rows of the present
        # boards' channel blocks (in board order) go to these channel rows
        self._block_words = self.decoder.block_size // 2
        self._rows_of_mask: dict[int, np.ndarray | bool] = {}  # boards present -> channel rows (True: all, in order)
        self.window = cfg.digitizer.window_samples
        self.timeout = cfg.daq.builder_timeout_s
        self.limit = cfg.daq.max_events_in_flight
        self.assembler = asm = EventAssembler(
            self.board_channels, self.limit, self.timeout, self.stall_timeout, self._build
        )
        self.rejected, self.counters = asm.rejected, asm.counters  # one set of counters
        self.scalers_queued = 0  # spill scaler rows and trigger inputs in the out queue (not events)
        self._next_expire = 0.0
        self.frag_sock: zmq.Socket | None = None
        self.rec_sock: zmq.Socket | None = None
        self.push: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.credit_pub: zmq.Socket | None = None
        self._credit_sent_at = 0.0
        self._credit_published = -1
        import hist

        self.h_latency: hist.Hist = hist.Hist(hist.axis.Regular(50, 0.0, 500.0, name="build_latency_ms"))
        self.h_size: hist.Hist = hist.Hist(hist.axis.Regular(50, 0.0, 64.0, name="event_fragments_kB"))
        self._fills: list[tuple[float, float, int]] = []
        self.h_pulses: hist.Hist = hist.Hist(hist.axis.Regular(40, 0.0, 40.0, name="pulses_per_event"))
        # CPU seconds (this thread) by stage, for the benchmarks (bench/bench_daq.py)
        self.stage_cpu: dict[str, float] = {"fragments": 0.0, "emit_and_send": 0.0}

    # ---- sockets ---------------------------------------------------------------------
    def bind(self) -> dict[str, str]:
        eps = self.params["endpoints"]
        self.frag_sock = frag = self.socket(zmq.PULL)
        frag.setsockopt(zmq.MAXMSGSIZE, self.cfg.daq.max_message_bytes)
        self.monitor = frag.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED)
        self.rec_sock = rec = self.socket(zmq.PULL)
        bound = {
            "fragments": self.bind_socket(frag, eps["fragments"]),
            "trigger_records": self.bind_socket(rec, eps["trigger_records"]),
        }
        if "credits" in eps:
            self.credit_pub = pub = self.socket(zmq.PUB)
            bound["credits"] = self.bind_socket(pub, eps["credits"])
        return bound

    def connect(self, endpoints: dict[str, str]) -> None:
        self.push = push = self.socket(zmq.PUSH, hwm=max(2, self.cfg.daq.hwm // 4))
        push.connect(endpoints["records"])

    @property
    def in_flight(self) -> int:
        return self.assembler.in_flight

    def _may_read_fragments(self) -> bool:
        # fragments of events beyond the in-flight limit are parked (bounded): read while there is room
        return len(self.assembler.parked) < self.assembler.park_limit

    def sockets(self):
        socks = [(self.monitor, zmq.POLLIN)]
        if self.assembler.n_records_only < self.assembler.record_cap:
            socks.append((self.rec_sock, zmq.POLLIN))
        if self._may_read_fragments():
            socks.append((self.frag_sock, zmq.POLLIN))
        if self.assembler.out:
            socks.append((self.push, zmq.POLLOUT))
        return socks

    # ---- the work --------------------------------------------------------------------
    def step(self, ready: dict) -> bool:
        asm = self.assembler
        more = False
        if self.monitor in ready:  # skipped when not ready: a receive that raises costs as much as one that gets
            self._watch_connections()
        for _ in range(256 if self.rec_sock in ready else 0):
            if asm.n_records_only >= asm.record_cap:
                break
            try:
                frames = self.need(self.rec_sock, "trigger_records").recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_records(frames)
            more = True
        now = time.monotonic()
        more |= asm.unpark(now)
        c0 = time.thread_time()
        if self.frag_sock in ready or not self._may_read_fragments():
            more |= self._read_fragments(now)
        c1 = time.thread_time()
        if now >= self._next_expire:  # time-outs checked every few tens of ms
            self._next_expire = now + min(0.05, self.timeout / 4)
            asm.expire(now)
        asm.emit()
        more |= self._send()
        stage = self.stage_cpu
        stage["fragments"] += c1 - c0
        stage["emit_and_send"] += time.thread_time() - c1
        self._publish_credit()
        if asm.done and not asm.out and self.state == "running":
            self._finish()
        return more

    def _read_fragments(self, now: float) -> bool:
        """Receive and take in up to FRAGMENTS_PER_STEP fragment messages; True if any came."""
        # zero-copy receive: the zmq.Frame tells whether more frames follow (a socket option
        # query costs as much as the receive) and its buffer is checked and kept as it is;
        # a 100 MB message never gets here (ZMQ_MAXMSGSIZE). A held frame keeps libzmq's
        # receive buffer it lies in alive (ZMQ_IN_BATCH_SIZE, 8 kB): memory stays bounded by
        # the in-flight, parking and orphan limits, up to ~5x the fragments' own bytes
        asm = self.assembler
        recv, decode, take, parked, park_limit, rejected = (
            self.need(self.frag_sock, "fragments").recv,
            self.decoder.decode,
            asm.take,
            asm.parked,
            asm.park_limit,
            asm.rejected,
        )
        n = 0
        while n < FRAGMENTS_PER_STEP:
            if len(parked) >= park_limit:
                if asm.in_flight >= self.limit - 1 and not asm.out:
                    # at the limit, nothing waits for the writer, and fragments of new events keep
                    # coming: the oldest event cannot complete from what we hold; build it now
                    asm.evict_oldest()
                break
            try:
                msg = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            if msg.more:  # a multipart message: rejected whole
                while recv(copy=False).more:
                    pass
                rejected[Reason.BAD_FRAMES] += 1
                continue
            try:
                frag = decode(msg)
            except FragmentError as err:
                rejected[err.reason] += 1
                if err.event_number is not None and err.board_id is not None:  # BAD_CRC, header intact
                    asm.bad_crc(err.board_id, err.event_number)
                continue
            take(frag, now)  # (never replaces asm.parked: only unpark and early builds do)
        self.counters["fragment_messages"] += n
        return n > 0

    def _watch_connections(self) -> None:
        while True:
            try:
                msg = self.need(self.monitor, "fragments monitor").recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = zmq.utils.monitor.parse_monitor_message(msg)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.counters["fragment_peer_disconnects"] += 1
            elif event == zmq.EVENT_ACCEPTED:
                self.counters["fragment_peer_connections"] += 1

    def _on_records(self, frames) -> None:
        asm = self.assembler
        if (len(frames) == 2 and frames[0] == b"SCALERS") or (len(frames) in (3, 4) and frames[0] == b"TRIGIN"):
            # a spill's scaler row: on to the writer, which completes it from the spill's events;
            # the trigger inputs of a decision: on to the writer, stored as they are
            asm.out.append(frames)
            self.scalers_queued += 1
            self.counters["scaler_rows" if frames[0] == b"SCALERS" else "trigger_input_messages"] += 1
            return
        try:
            head, records = decode_slice(frames, TRIGGER_MAGIC, DECISION_DTYPE)
        except MessageError:
            self.counters["bad_trigger_record_messages"] += 1
            return
        if int(head["run_number"]) != self.run_number:
            self.counters["bad_trigger_record_messages"] += 1
            return
        now = time.monotonic()
        if int(head["flags"]) & SliceFlags.END_OF_RUN:
            asm.end_of_run(int(head["slice_index"]), now)
            return
        record = asm.record
        for ev_no, ts, tw, dead in zip(
            records["event_number"].tolist(),
            records["timestamp"].tolist(),
            records["trigger_word"].tolist(),
            records["dead_boards"].tolist(),
        ):
            record(ev_no, ts, tw, dead, now)

    def _build(self, ev_no: int, record: tuple, fragments: dict, flags: int, missing: int, t_first: float) -> list:
        """The writer message of a built event: header, samples (one gather), pulses."""
        blocks, pulses = [], []  # views of each fragment's channel blocks and pulse records, board order
        n_pulses = 0
        mask = 0
        for b in sorted(fragments):
            frag = fragments[b]
            mask |= 1 << b
            view, start, n_p = memoryview(frag.buf), frag.pulses_start, frag.n_pulses
            blocks.append(view[HEADER_SIZE:start])
            if n_p:
                n_pulses += n_p
                pulses.append(view[start : start + n_p * PULSE_SIZE])
        samples = self._assemble_samples(mask, blocks)
        pulse_bytes = b"".join(pulses)
        header = self._event_struct.pack(ev_no, record[1], record[2], flags, missing, n_pulses)
        # histogram fills are batched (a hist.fill call costs ~30 us): see _fill_histograms
        self._fills.append(
            ((time.monotonic() - t_first) * 1e3, (2 + len(header) + len(samples) + len(pulse_bytes)) / 1024.0, n_pulses)
        )
        if len(self._fills) >= 1024:
            self._fill_histograms()
        return [b"EV", header, samples, pulse_bytes]

    def _assemble_samples(self, mask: int, blocks: list[memoryview]) -> bytes:
        """The event's samples, (n_channels, window) u16 in channel-map order, zeros for missing boards.

        One gather for the whole event: the present boards' channel blocks (``blocks``, in board
        order) joined, viewed as rows of ``2 + window`` u16 (channel, channel flags, samples), and
        the sample columns put in their channel rows.
        """
        rows = np.frombuffer(b"".join(blocks), dtype="<u2").reshape(-1, self._block_words)[:, 2:]
        plan = self._rows_of_mask.get(mask)
        if plan is None:
            chans = np.concatenate(
                [self.board_channels[b] for b in sorted(self.board_channels) if mask >> b & 1]
                or [np.zeros(0, np.int64)]
            )
            plan = True if np.array_equal(chans, np.arange(self.n_channels)) else chans
            if len(self._rows_of_mask) < 64:  # bounded: the all-boards mask and a few others
                self._rows_of_mask[mask] = plan
        if plan is True:  # every channel, already in channel-map order
            return rows.astype(np.uint16, copy=False).tobytes()
        samples = np.zeros((self.n_channels, self.window), dtype=np.uint16)
        samples[plan] = rows
        return samples.tobytes()

    def _send(self) -> bool:
        n = 0
        sent = False
        send, out = self.need(self.push, "records").send, self.assembler.out
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
        self.assembler.sent(n)
        return sent

    @property
    def credit(self) -> int:
        return self.assembler.credit

    def _publish_credit(self) -> None:
        """Send the credit when it grew, and every CREDIT_REPEAT_S (lossy PUB: the latest value counts)."""
        if self.credit_pub is None:
            return
        now = time.monotonic()
        credit = self.assembler.credit
        if credit == self._credit_published and now - self._credit_sent_at < CREDIT_REPEAT_S:
            return
        try:
            self.credit_pub.send(CREDIT_STRUCT.pack(self.run_number, credit), _NOBLOCK)
        except zmq.Again:
            return
        self._credit_published, self._credit_sent_at = credit, now

    def _finish(self) -> None:
        self.assembler.finish()
        info = {"events_issued": self.assembler.total, "stats": self.stats()}
        self.send_with_deadline(
            self.need(self.push, "records"), [b"END", json.dumps(info).encode()], "end of run to the writer"
        )
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
            **self.assembler.stats(),
            "stage_cpu_s": dict(self.stage_cpu),
            "histograms": {
                h.axes[0].name: {"edges": h.axes[0].edges.tolist(), "counts": h.values().astype(int).tolist()}
                for h in (self.h_latency, self.h_size, self.h_pulses)
            },
        }

    def close(self) -> None:
        for s in (self.frag_sock, self.rec_sock, self.push, self.credit_pub):
            if s is not None:
                if s is self.frag_sock:
                    s.disable_monitor()
                s.close(0)
        if self.monitor is not None:
            self.monitor.close(0)
