"""Front-end board process: one or more boards, each running its :class:`FrontEndLogic`.

Per board: a DEALER (identity ``board<N>``) to the trigger processor carries primitives out
and trigger decisions in; the process shares one PUSH to the event builder for fragments and
one SUB (``ZMQ_CONFLATE``: only the latest) to the builder's credit.

Flow control, in the order a slow consumer is felt:

0. a trigger is read out only when its event number is below the builder's credit (events
   sent to the writer + ``max_events_in_flight`` - 1, never decreasing): no board process runs
   ahead of the others by more than the builder can hold, so the fragments of the oldest event
   never wait behind fragments the builder cannot take. A board waiting for credit is busy
   (as 2) and stalled (as 3);
1. the fragment PUSH blocks at its high-water mark: fragments wait in the process's
   bounded queue (``daq.board_queue_events``);
2. above ``busy_fraction`` of that queue the board flags every primitive message BUSY:
   the trigger processor then accepts no trigger (and counts the busy time);
3. triggers already decided when busy rose go into the rest of the queue; when it is full
   the board stops reading out (its decisions wait), so it stops producing slices and the
   trigger processor, waiting for its slices, stops the run's clock. Nothing is dropped.
   While stalled the board sends heartbeats, so the trigger processor does not take it
   for dead.

A board never has more than ``daq.max_slices_ahead`` primitive messages awaiting their
trigger decision, which bounds its ring buffer of samples to that many slices plus three.

Fast-forward (``daq.fast_forward``, docs/daq.md): a front end with ``stretch_end`` /
``process_stretch`` (:class:`~pokerdaq.daq._interfaces.StretchFrontEnd`, the activity-driven
physics front end) may cover a stretch of beam-off slices with one message (all their
primitives; never while busy). Such a front end renders readout windows on demand, so the
board keeps no ring buffer for it; a stretch counts as one message against the limit above.
"""

from __future__ import annotations

import collections
import struct
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import zmq

from ._factory import make_front_end
from ._interfaces import FrontEndLogic, OnDemandFrontEnd, StretchFrontEnd
from ._node import Node, NodeError
from ._wire import (
    DECISION_DTYPE,
    FRAGMENT_HEADER_DTYPE,
    PRIMITIVE_DTYPE,
    PRIMITIVE_MAGIC,
    TRIGGER_MAGIC,
    FragmentFlags,
    MessageError,
    SliceFlags,
    decode_slice,
    encode_fragment,
    encode_slice,
)

_BOARD_ID = struct.Struct("<H")  # FRAGMENT_HEADER_DTYPE['board_id'] ...
_BOARD_ID_OFFSET = int(FRAGMENT_HEADER_DTYPE.fields["board_id"][1])  # type: ignore[index]  # ... its offset (a struct dtype has fields)
_CREDIT = struct.Struct("<QQ")  # the builder's credit message (pokerdaq.daq._builder.CREDIT_STRUCT)


@dataclass
class _Board:
    logic: FrontEndLogic
    dealer: zmq.Socket | None = None
    ring: dict[int, np.ndarray | None] = field(default_factory=dict)  # None: rendered on demand
    next_slice: int = 0
    last_decided: int = -1
    # [slice, flags, triggers, next index, windows and pulses of the triggers rendered together (or None)]
    decisions: collections.deque = field(default_factory=collections.deque)
    outbox: list | None = None  # a primitive message the DEALER could not take yet
    in_flight: collections.deque = field(default_factory=collections.deque)  # last slice of each undecided message
    on_demand: bool = False  # the front end renders readout windows itself (no ring buffer)
    stretches: int = 0
    ended: bool = False
    busy_slices: int = 0
    primitives_sent: int = 0
    fragments: int = 0  # fragments read out (sent = these minus the board's in the queue)


class BoardGroupNode(Node):
    """A front-end process for the boards in ``params['boards']``."""

    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        self.run_number = int(params["run_number"])
        seed = int(params["seed"])
        from pokerdaq.sim._beam import use_block_store

        # one beam time line per run, not per process ("": generate our own); set for every run,
        # as a node host keeps the module state from one run to the next
        use_block_store(params.get("block_store") or None)
        if cfg.daq.front_end == "physics":
            from ._sparse import use_one_thread

            use_one_thread()  # one board process per core: numba's kernels on this thread
        group = [int(b) for b in params["boards"]]  # their front ends emulate together (one pass per step)
        self.boards = {b: _Board(make_front_end(cfg, b, seed, group)) for b in group}
        self.pending: collections.deque = collections.deque()
        self.queue_limit = cfg.daq.board_queue_events
        self.fast_forward = cfg.daq.fast_forward
        self.busy_mark = max(1, int(cfg.daq.busy_fraction * cfg.daq.board_queue_events))
        self.window = cfg.digitizer.window_samples
        self.pre = cfg.digitizer.pretrigger_samples
        self.st = cfg.daq.slice_ticks
        self.counters: collections.Counter[str] = collections.Counter()
        self.max_pending = 0
        self.push: zmq.Socket | None = None
        self._last_progress = time.monotonic()
        self._last_heartbeat = 0.0
        self._turn = 0
        self.stalled = False
        self.credit_sub: zmq.Socket | None = None
        self.credit = cfg.daq.max_events_in_flight - 1  # the builder's credit before its first message
        self.credit_blocked = False
        # CPU seconds (this thread) by stage of the data path, for the benchmarks (bench/bench_daq.py)
        self.stage_cpu: collections.defaultdict[str, float] = collections.defaultdict(float)

    def connect(self, endpoints: dict[str, str]) -> None:
        for b, board in self.boards.items():
            d = self.socket(zmq.DEALER)
            d.setsockopt(zmq.IDENTITY, f"board{b}".encode())
            d.connect(endpoints["triggers"])
            board.dealer = d
        self.push = push = self.socket(zmq.PUSH)
        push.connect(endpoints["fragments"])
        if "credits" in endpoints:
            sub = self.socket(zmq.SUB)
            sub.setsockopt(zmq.CONFLATE, 1)  # before connect: only the newest credit is kept
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(endpoints["credits"])
            self.credit_sub = sub

    def sockets(self):
        socks = [(b.dealer, zmq.POLLIN) for b in self.boards.values()]
        if self.credit_sub is not None:
            socks.append((self.credit_sub, zmq.POLLIN))
        if self.pending:
            socks.append((self.push, zmq.POLLOUT))
        return socks

    # ---- the work --------------------------------------------------------------------
    def step(self, ready: dict) -> bool:
        more = False
        self.stalled = False
        self._receive_decisions(ready)
        if self.credit_sub in ready:
            self._receive_credit()
        more |= self._apply_decisions()
        self._flush()
        if self.credit_blocked:
            self.stalled = True  # waiting for the builder's credit: heartbeats (and busy, in _produce)
            self.counters["credit_waits"] += 1
        for board in self.boards.values():
            more |= self._produce(board)
        if self.stalled:
            self.counters["stalled_steps"] += 1
            self._heartbeat()
        if all(b.ended and not b.decisions for b in self.boards.values()):
            if not self.pending:
                self.notify_drained()
                return False
            if time.monotonic() - self._last_progress > self.stall_timeout:
                raise NodeError(f"{len(self.pending)} fragments could not be sent for {self.stall_timeout} s")
        return more

    def _receive_decisions(self, ready: dict) -> None:
        # only the DEALERs the poll found readable: a receive that raises zmq.Again costs as much
        # as one that gets a message, on every board and step otherwise
        for b, board in self.boards.items():
            if board.dealer not in ready:
                continue
            while True:
                try:
                    frames = self.need(board.dealer, "triggers").recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    head, triggers = decode_slice(frames, TRIGGER_MAGIC, DECISION_DTYPE)
                except MessageError as err:
                    raise NodeError(f"board {b}: bad trigger message from the trigger processor: {err}") from None
                # a decision covers slices [slice_index, last_slice]: what matters here is its end
                board.decisions.append([int(head["last_slice"]), int(head["flags"]), triggers, 0, None])

    def _receive_credit(self) -> None:
        if self.credit_sub is None:
            return
        while True:
            try:
                msg = self.credit_sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(msg) != _CREDIT.size:
                self.counters["bad_credit_messages"] += 1
                continue
            run, credit = _CREDIT.unpack(msg)
            if run != self.run_number:
                self.counters["bad_credit_messages"] += 1
                continue
            self.credit = max(self.credit, credit)  # never decreases (an old message changes nothing)

    def _apply_decisions(self) -> bool:
        """Read out the decided triggers, one trigger of every board in turn.

        The boards of this process get the same triggers; taking them in lock-step sends the
        fragments in event order across boards, so no board runs ahead of the others by a
        whole queue (which would leave the builder holding many partial events).
        """
        progressed = False
        self.credit_blocked = False
        boards = list(self.boards.values())
        idle = 0
        while idle < len(boards):  # until a whole round makes no progress
            if len(self.pending) >= self.queue_limit:
                self.stalled = True  # backpressure: wait for the builder
                return progressed
            # the round resumes where the last one stopped, so boards never overtake each other
            board = boards[self._turn]
            self._turn = (self._turn + 1) % len(boards)
            if self._apply_one(board):
                progressed = True
                idle = 0
            else:
                idle += 1
        return progressed

    def _apply_one(self, board: _Board) -> bool:
        """Read out the next trigger of this board (or retire an empty or end decision)."""
        while board.decisions:
            entry = board.decisions[0]
            k, flags, triggers, done, batch = entry
            if flags & SliceFlags.END_OF_RUN:
                board.ended = True
                board.decisions.popleft()
                board.ring.clear()
                return True
            if k + 1 >= board.next_slice:  # the window may reach into slice k + 1: wait for it
                return False
            if done < len(triggers):
                if int(triggers[done]["event_number"]) >= self.credit:
                    self.credit_blocked = True  # the builder cannot hold this event yet
                    return False
                if batch is None:
                    batch = entry[4] = self._render_batch(board, triggers)
                self._read_out(board, triggers[done], None if batch is None else batch(done))
                entry[3] = done + 1
                if done + 1 < len(triggers):
                    return True
            board.decisions.popleft()
            board.last_decided = k
            while board.in_flight and board.in_flight[0] <= k:
                board.in_flight.popleft()
            # triggers of decision k lie in slice k - 1 or k (TriggerLogic contract), their
            # windows reach back by the pre-trigger samples: keep slices k - 2 onwards
            for old in [s for s in board.ring if s < k - 2]:
                del board.ring[old]
            if done < len(triggers):
                return True
        return False

    def _render_batch(self, board: _Board, triggers: np.ndarray):
        """Windows and pulses of a decision's triggers, each rendered and searched in one call for
        all of them (a front end with ``read_windows`` / ``find_pulses_batch``, rendering on demand);
        None: one by one. Returns ``get(i) -> (window, pulses)`` (None for a clipped window)."""
        logic = board.logic
        if (
            not board.on_demand
            or not len(triggers)
            or not hasattr(logic, "read_windows")
            or not hasattr(logic, "find_pulses_batch")
        ):
            return None
        c0 = time.thread_time()
        firsts = triggers["timestamp"].astype(np.int64) - self.pre
        ok = np.flatnonzero(firsts >= 0)  # a window clipped at the run start: one by one
        if not len(ok):
            return None
        windows = logic.read_windows(firsts[ok], self.window)
        c1 = time.thread_time()
        records, offsets = logic.find_pulses_batch(windows)
        self.stage_cpu["readout_window"] += c1 - c0
        self.stage_cpu["readout_pulses"] += time.thread_time() - c1
        where = {int(i): j for j, i in enumerate(ok.tolist())}

        def get(i: int):
            j = where.get(i)
            return None if j is None else (windows[j], records[offsets[j] : offsets[j + 1]])

        return get

    def _read_out(self, board: _Board, trig: np.void, rendered=None) -> None:
        ts = int(trig["timestamp"])
        first = ts - self.pre
        flags = FragmentFlags.NONE
        c0 = time.thread_time()
        if rendered is not None:  # rendered with the other triggers of its decision (_render_batch)
            window, pulses = rendered
        else:
            if first < 0:
                flags |= FragmentFlags.WINDOW_CLIPPED
            window = self._window(board, first, ts)
            c1 = time.thread_time()
            pulses = board.logic.find_pulses(window, first)
            self.stage_cpu["readout_window"] += c1 - c0
            c0 = time.thread_time()
            self.stage_cpu["readout_pulses"] += c0 - c1
        if len(self.pending) >= self.busy_mark:
            flags |= FragmentFlags.BOARD_BUSY
        frag = encode_fragment(
            run_number=self.run_number,
            board_id=board.logic.board,
            event_number=int(trig["event_number"]),
            timestamp=ts,
            trigger_word=int(trig["trigger_word"]),
            flags=int(flags),
            channels=board.logic.channels,
            samples=window,
            pulses=pulses,
        )
        self.stage_cpu["readout_encode"] += time.thread_time() - c0
        self.pending.append(frag)
        self.max_pending = max(self.max_pending, len(self.pending))
        self.counters["fragments_made"] += 1
        board.fragments += 1

    def _window(self, board: _Board, first: int, ts: int) -> np.ndarray:
        """The readout window from tick ``first``: cut from the ring buffer or rendered on demand."""
        window = np.zeros((len(board.logic.channels), self.window), dtype=np.uint16)
        t = max(first, 0)
        while t < first + self.window:
            s = t // self.st
            if board.on_demand:  # the front end renders its windows on demand (SliceOutput)
                end = min((s + 1) * self.st, first + self.window)
                window[:, t - first : end - first] = cast(OnDemandFrontEnd, board.logic).read_window(t, end - t)
                t = end
                continue
            if s not in board.ring:
                raise NodeError(f"board {board.logic.board}: slice {s} for trigger at {ts} is no longer buffered")
            end = min((s + 1) * self.st, first + self.window)
            chunk = board.ring[s]
            if chunk is None:  # the front end renders its windows on demand (SliceOutput)
                window[:, t - first : end - first] = cast(OnDemandFrontEnd, board.logic).read_window(t, end - t)
            else:
                window[:, t - first : end - first] = chunk[:, t - s * self.st : end - s * self.st]
            t = end
        return window

    def _heartbeat(self) -> None:
        """Tell the trigger processor that a stalled board is alive (not more than 4 per time-out)."""
        now = time.monotonic()
        if now - self._last_heartbeat < self.cfg.daq.board_timeout_s / 4:
            return
        self._last_heartbeat = now
        for b, board in self.boards.items():
            if board.ended:
                continue
            msg = encode_slice(
                PRIMITIVE_MAGIC,
                board_id=b,
                run_number=self.run_number,
                flags=int(SliceFlags.HEARTBEAT | SliceFlags.BUSY),
                slice_index=0,
                records=np.zeros(0, PRIMITIVE_DTYPE),
            )
            try:
                self.need(board.dealer, "triggers").send_multipart(msg, zmq.NOBLOCK)
                self.counters["heartbeats"] += 1
            except zmq.Again:
                pass

    def _flush(self) -> None:
        while self.pending:
            try:
                self.need(self.push, "fragments").send(self.pending[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.pending.popleft()
            self.counters["fragments_sent"] += 1
            self._last_progress = time.monotonic()
        self._last_heartbeat = 0.0
        self._turn = 0
        self.stalled = False

    def _produce(self, board: _Board) -> bool:
        if board.ended:
            return False
        if board.outbox is not None:
            try:
                self.need(board.dealer, "triggers").send_multipart(board.outbox, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            board.outbox = None
        # at most max_slices_ahead messages (a stretch counts as one) await their decision
        if len(board.in_flight) >= self.cfg.daq.max_slices_ahead:
            return False
        k = board.next_slice
        busy = len(self.pending) >= self.busy_mark or self.credit_blocked
        last = k
        stretch = board.logic if self.fast_forward and not busy and isinstance(board.logic, StretchFrontEnd) else None
        if stretch is not None:
            last = stretch.stretch_end(k, self.cfg.daq.fast_forward_slices)
        c0 = time.thread_time()
        if stretch is not None and last > k:  # a busy board sends slice by slice: busy is a per-slice state
            out = stretch.process_stretch(k, last)
            board.stretches += 1
        else:
            out = board.logic.process_slice(k)
        self.stage_cpu["slices"] += time.thread_time() - c0
        board.on_demand = out.samples is None
        if not board.on_demand:
            board.ring[k] = out.samples
        board.busy_slices += busy
        prims = np.asarray(out.primitives, dtype=PRIMITIVE_DTYPE)
        msg = encode_slice(
            PRIMITIVE_MAGIC,
            board_id=board.logic.board,
            run_number=self.run_number,
            flags=int(SliceFlags.BUSY if busy else SliceFlags.NONE),
            slice_index=k,
            last_slice=last,
            records=prims,
        )
        board.next_slice = last + 1
        board.in_flight.append(last)
        board.primitives_sent += len(prims)
        try:
            self.need(board.dealer, "triggers").send_multipart(msg, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            board.outbox = msg
        return True

    def _stage_cpu(self) -> dict[str, float]:
        """CPU seconds by stage: this node's, and those its front ends report (``stage_cpu``)."""
        out: dict[str, float] = dict(self.stage_cpu)
        for board in self.boards.values():
            for k, v in getattr(board.logic, "stage_cpu", {}).items():
                out[f"slices_{k}"] = out.get(f"slices_{k}", 0.0) + v
        return out

    def stats(self) -> dict[str, Any]:
        queued: collections.Counter[int] = collections.Counter(
            _BOARD_ID.unpack_from(f, _BOARD_ID_OFFSET)[0]
            for f in self.pending  # at most board_queue_events
            if len(f) >= _BOARD_ID_OFFSET + _BOARD_ID.size
        )
        return {
            **dict(self.counters),
            "busy": len(self.pending) >= self.busy_mark or self.credit_blocked,  # what its next slice would say
            "stage_cpu_s": self._stage_cpu(),
            "pending": len(self.pending),
            "credit": self.credit,
            "max_pending": self.max_pending,
            "queue_limit": self.queue_limit,
            "boards": {
                str(b): {
                    "slices": x.next_slice,
                    "busy_slices": x.busy_slices,
                    "primitives": x.primitives_sent,
                    "stretches": x.stretches,
                    "ended": x.ended,
                    "fragments_read_out": x.fragments,
                    "fragments_sent": x.fragments - queued[b],
                }
                for b, x in self.boards.items()
            },
        }

    def close(self) -> None:
        for board in self.boards.values():
            if board.dealer is not None:
                board.dealer.close(0)
        for s in (self.push, self.credit_sub):
            if s is not None:
                s.close(0)
