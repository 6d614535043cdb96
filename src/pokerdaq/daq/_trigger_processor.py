"""Trigger processor: aligns the boards' time slices, runs the :class:`TriggerLogic`, distributes triggers.

Sockets: a ROUTER (bound, ``triggers`` endpoint) talks to every board's DEALER, primitives
in and decisions out; ``ROUTER_MANDATORY`` makes a decision that cannot be delivered an
error instead of a silent drop. A PUSH (connected to the builder's ``trigger_records``)
carries the trigger record of every accepted trigger, so the builder knows which events
exist and what their timestamp and trigger word must be.

Slice ``k`` is decided when every live board has sent slice ``k``, alone or inside a
*stretch* (one message for slices ``[k, j]``, docs/wire-format.md 2.1): the trigger processor
then decides, in one step of the trigger logic and one decision message, every slice up to the
end of the shortest stretch that holds ``k`` (``[k, min_b j_b]``); a board that sends single
slices makes that ``[k, k]``, so boards that fast-forward and boards that do not mix in a run.
A stretch's primitives go to the logic in the step that decides its first slice. A board
that sends nothing for ``daq.board_timeout_s`` while the trigger processor waits for it (for
a slice it has not yet sent or promised in a stretch) is marked dead:
the run goes on without it, and every later trigger record carries it in ``dead_boards``,
so the builder flags those events INCOMPLETE at once instead of waiting for its time-out.

Per-spill scalers: spill ``m`` owns the event timestamps ``[m P, (m + 1) P)``, ``P`` =
``round(beam.spill_period_s x sampling rate)`` ticks (its on-time and the following
off-time, so the spills tile the run). When the decided time (``TriggerLogic.decided_until``)
passes a spill end, the logic reads its scalers at that tick and a ``SCALERS`` message (one
JSON row: spill, start/stop, beam counts, raw and accepted triggers, busy ticks, trigger bits,
the event numbers ``[first_event, end_event)`` of the spill) goes to the builder, which
forwards it to the writer; the writer adds the spill's built / incomplete / dropped events
and writes the ``/scalers`` row. At the end of the run a last row covers the spill in
progress up to the decided time (``final``: true).

Trigger inputs (``daq.trigger_logic = "physics"`` only): for every decision the trigger
processor sends the builder a ``TRIGIN`` message (one ``TRIGGER_STEP_DTYPE`` row: the slices
decided, busy, the number of primitives, the dead time, prescaler counts and accepted
triggers before it; then those primitives; then the trigger model's whole state before the
step, ``pokerdaq.trigger.model_state``), which the builder forwards and the writer
appends to ``/trigger_inputs`` of the file open at the time (docs/hdf5-layout.md): the run's
files together hold every primitive the trigger logic was given, so ``pokerdaq replay
--check`` decides again exactly as online; the state lets the writer make each file of a
rotated run checkable alone (``/trigger_inputs/state``).
"""

from __future__ import annotations

import collections
import copy
import json
import time
from typing import Any

import numpy as np
import zmq

from pokerdaq.io import TRIGGER_STEP_DTYPE

from ._factory import make_trigger_logic
from ._interfaces import ScalerCounts, StretchTriggerLogic, TriggerOutput
from ._node import Node
from ._wire import (
    DECISION_DTYPE,
    PRIMITIVE_DTYPE,
    PRIMITIVE_MAGIC,
    TRIGGER_MAGIC,
    MessageError,
    SliceFlags,
    StretchError,
    decode_slice,
    encode_slice,
)

TP_ID = 0xFFFF


def _add_bit_counts(counts: list[int], words: np.ndarray) -> list[int]:
    """``counts`` plus, for each of the 32 bits, the number of trigger words with that bit set."""
    per_bit = ((words.astype(np.uint32)[:, None] >> np.arange(32, dtype=np.uint32)) & 1).sum(axis=0)
    return [c + int(n) for c, n in zip(counts, per_bit)]


class TriggerProcessorNode(Node):
    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        self.run_number = int(params["run_number"])
        self.max_events = params.get("max_events")
        self.logic = make_trigger_logic(cfg, int(params["seed"]))
        # the trigger inputs are for replay, which decides runs of the physics logic only
        self.record_inputs = cfg.daq.trigger_logic == "physics"
        self.state_steps = -1  # decision steps sent; the model's state goes with every N-th (_model_state)
        self.all_boards = [int(b) for b in params["boards"]]
        self.live = set(self.all_boards)
        self.dead: dict[int, str] = {}
        self.heard: set[int] = set()
        self.last_seen = {b: time.monotonic() for b in self.all_boards}
        # per board, the primitive messages not yet wholly decided, in slice order:
        # [first slice, last slice, primitives, busy]; ``covered``: the last slice received
        self.messages: dict[int, collections.deque] = {b: collections.deque() for b in self.all_boards}
        self.covered = {b: -1 for b in self.all_boards}
        self.next_slice = 0
        self.slice_wait_start = time.monotonic()
        self.next_event = 0
        self.stop_requested = False
        self.ended = False
        self.counters: collections.Counter[str] = collections.Counter()
        self.accepted_bits = [0] * 32
        self.busy_ticks = 0
        self.dead_ticks = 0
        self.router: zmq.Socket | None = None
        self.push: zmq.Socket | None = None
        # per-spill scalers (module docstring)
        self.spill_ticks = max(1, int(round(cfg.beam.spill_period_s * cfg.digitizer.sampling_rate_hz)))
        self.decided = 0  # every candidate with timestamp below this is decided
        self.spill = 0
        self.spill_base = ScalerCounts()  # running totals at the start of the spill
        self.spill_first_event = 0
        self.spill_bits = [0] * 32
        self.spill_rows = 0
        # CPU seconds (this thread) by stage, for the benchmarks (bench/bench_daq.py)
        self.stage_cpu: collections.defaultdict[str, float] = collections.defaultdict(float)

    def bind(self) -> dict[str, str]:
        self.router = self.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        return {"triggers": self.bind_socket(self.router, self.params["endpoints"]["triggers"])}

    def connect(self, endpoints: dict[str, str]) -> None:
        self.push = self.socket(zmq.PUSH)
        self.push.connect(endpoints["trigger_records"])

    def on_start(self) -> None:
        now = time.monotonic()
        self.last_seen = {b: now for b in self.all_boards}
        self.slice_wait_start = now

    def on_stop(self) -> None:
        self.stop_requested = True

    def sockets(self):
        return [(self.router, zmq.POLLIN)]

    @property
    def dead_mask(self) -> int:
        return sum(1 << b for b in self.dead)

    # ---- the work --------------------------------------------------------------------
    def step(self, ready: dict) -> bool:
        if self.ended:
            self._receive()  # keep the boards' last messages from piling up
            return False
        c0 = time.thread_time()
        if self.router in ready:  # a receive that raises zmq.Again costs as much as one that gets
            self._receive()
        c1 = time.thread_time()
        self.stage_cpu["receive"] += c1 - c0
        decided = False
        while not self.ended and self._slice_complete(self.next_slice):
            self._decide(self.next_slice)
            decided = True
        if decided:
            self.stage_cpu["decide"] += time.thread_time() - c1
        if not decided:
            self._check_dead()
        if not self.ended and (self.stop_requested or not self.live):
            self._end()
        return decided

    def _receive(self) -> None:
        for _ in range(1000):
            try:
                frames = self.need(self.router, "triggers").recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ident, body = frames[0], frames[1:]
            try:
                head, prims = decode_slice(body, PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)
            except StretchError:
                self.counters["bad_primitive_messages"] += 1
                self.counters["bad_stretch_messages"] += 1
                continue
            except MessageError:
                self.counters["bad_primitive_messages"] += 1
                continue
            b = int(head["board_id"])
            if ident != f"board{b}".encode() or b not in self.last_seen or int(head["run_number"]) != self.run_number:
                self.counters["bad_primitive_messages"] += 1
                continue
            if b in self.dead:
                self.counters["messages_from_dead_boards"] += 1
                continue
            self.last_seen[b] = time.monotonic()
            self.heard.add(b)
            if int(head["flags"]) & SliceFlags.HEARTBEAT:
                self.counters["heartbeats"] += 1
                continue
            k, last = int(head["slice_index"]), int(head["last_slice"])
            if k != self.covered[b] + 1:  # a board's slices come in order, each once
                self.counters["bad_primitive_messages"] += 1
                if last > k:
                    self.counters["bad_stretch_messages"] += 1
                continue
            self.messages[b].append([k, last, prims, bool(int(head["flags"]) & SliceFlags.BUSY)])
            self.covered[b] = last
            if last > k:
                self.counters["stretch_messages"] += 1

    def _slice_complete(self, k: int) -> bool:
        """Every live board has sent slice ``k`` (alone or in a stretch)."""
        return bool(self.live) and all(self.covered[b] >= k for b in self.live)

    def _check_dead(self) -> None:
        now = time.monotonic()
        for b in sorted(self.live):
            if self.covered[b] >= self.next_slice:  # it has sent (or promised in a stretch) this slice
                continue
            # before its first message a board may still be starting (imports, JIT): allow stall_timeout_s
            limit = self.cfg.daq.board_timeout_s if b in self.heard else self.cfg.daq.stall_timeout_s
            # silence counts from when we started waiting for this slice: a board that was
            # ahead of us (waiting for our decisions) was not silent
            if now - max(self.last_seen[b], self.slice_wait_start) > limit:
                self._mark_dead(b, f"silent for more than {limit} s")

    def _mark_dead(self, b: int, why: str) -> None:
        self.live.discard(b)
        self.dead[b] = why
        self.counters["boards_marked_dead"] += 1

    def _decide(self, k: int) -> None:
        """Decide slices ``k`` to ``last``: as far as every live board's message that holds ``k`` reaches.

        A message's primitives go to the trigger logic in the step that decides its first slice
        (a board's stretch may reach beyond ``last``: the logic takes pulses ahead of its
        clock, as it does within a slice).
        """
        heads = {}
        for b in sorted(self.live):
            queue = self.messages[b]
            while queue[0][1] < k:
                queue.popleft()
            heads[b] = queue[0]
        last = min(m[1] for m in heads.values())
        parts = [m[2] for m in heads.values() if m[0] == k]
        busy = any(m[3] for m in heads.values())
        for b, m in heads.items():
            if m[1] <= last:
                self.messages[b].popleft()
        decided = self.logic.decided_until(last)
        ends = list(range((self.spill + 1) * self.spill_ticks, decided + 1, self.spill_ticks))
        prims = np.concatenate(parts) if parts else np.zeros(0, PRIMITIVE_DTYPE)
        step = self._step_row(k, busy, prims)
        state = self._model_state()
        # a run stopped at max_events ends with the slice whose decision holds its last event;
        # inside a stretch that slice is known only afterwards: keep the logic's state to go back
        before = copy.deepcopy(self.logic) if self.max_events is not None and last > k else None
        c0 = time.thread_time()
        out = self._logic_step(k, last, prims, busy, ends)
        self.stage_cpu["decide_logic"] += time.thread_time() - c0
        if before is not None and self.next_event + len(out.timestamps) >= int(self.max_events):
            # decide again up to that slice only: the logic (scalers, counters) then stands where
            # slice-by-slice decisions would have left it
            ts_last = int(out.timestamps[int(self.max_events) - self.next_event - 1])
            last = next(s for s in range(k, last + 1) if self.logic.decided_until(s) > ts_last)
            self.logic = before
            decided = self.logic.decided_until(last)
            ends = [e for e in ends if e <= decided]
            out = self._logic_step(k, last, prims, busy, ends)
            self.counters["stretches_shortened_at_max_events"] += 1
        counts_at = dict(zip(ends, out.cut_counts))
        n = len(out.timestamps)
        if self.max_events is not None:
            n = min(n, int(self.max_events) - self.next_event)
            self.counters["trimmed_at_max_events"] += len(out.timestamps) - n
        trig = np.zeros(n, dtype=DECISION_DTYPE)
        trig["event_number"] = np.arange(self.next_event, self.next_event + n, dtype=np.uint64)
        trig["timestamp"] = out.timestamps[:n]
        trig["trigger_word"] = out.trigger_words[:n]
        trig["dead_boards"] = self.dead_mask
        first_event = self.next_event
        self.next_event += n
        self.accepted_bits = _add_bit_counts(self.accepted_bits, trig["trigger_word"])
        # the spills that ended in this slice: their triggers, then their scaler rows
        ts = trig["timestamp"]
        done = 0
        rows = []  # (row, events of the slice before it)
        for end in ends:
            counts = counts_at[end]
            upto = int(np.searchsorted(ts, np.uint64(end), side="left"))
            self.spill_bits = _add_bit_counts(self.spill_bits, trig["trigger_word"][done:upto])
            done = upto
            rows.append((self._spill_row(end, counts, first_event + upto), upto))
        self.spill_bits = _add_bit_counts(self.spill_bits, trig["trigger_word"][done:])
        self.decided = decided
        self.busy_ticks += out.busy_ticks
        self.dead_ticks += out.dead_ticks
        self.counters["slices"] += last - k + 1
        self.counters["decisions"] += 1
        if last > k:
            self.counters["stretch_decisions"] += 1
            self.counters["stretch_slices"] += last - k + 1
        self.counters["busy_slices"] += busy * (last - k + 1)
        msg = encode_slice(
            TRIGGER_MAGIC,
            board_id=TP_ID,
            run_number=self.run_number,
            flags=0,
            slice_index=k,
            last_slice=last,
            records=trig,
        )
        self._to_boards(msg)
        # to the builder: each spill's row after its records and before those of later spills, so
        # that the writer has the row before any event of a later spill (docs/hdf5-layout.md)
        sent = 0
        for row, upto in [*rows, (None, n)]:
            if upto > sent:
                rec = encode_slice(
                    TRIGGER_MAGIC,
                    board_id=TP_ID,
                    run_number=self.run_number,
                    flags=int(SliceFlags.RECORDS),
                    slice_index=k,
                    last_slice=last,
                    records=trig[sent:upto],
                )
                self.send_with_deadline(
                    self.need(self.push, "trigger_records"), rec, "trigger records to the event builder"
                )
                sent = upto
            if row is not None:
                self._send_scalers(row)
        step["last_slice"] = last
        if self.record_inputs:
            self.send_with_deadline(
                self.need(self.push, "trigger_records"),
                [b"TRIGIN", step.tobytes(), prims.tobytes(), *state],
                "trigger inputs to the event builder",
            )
        self.next_slice = last + 1
        self.slice_wait_start = time.monotonic()
        if self.max_events is not None and self.next_event >= int(self.max_events):
            self._end()

    def _model_state(self) -> list[bytes]:
        """The 4th ``TRIGIN`` frame: the trigger model's state before the step (int64 words,
        ``pokerdaq.trigger.model_state``), with the first and every ``daq.trigger_state_every_steps``-th
        step; none for a logic without a model."""
        state = getattr(self.logic, "model_state", None) if self.record_inputs else None
        every = self.cfg.daq.trigger_state_every_steps
        self.state_steps += 1
        return [] if state is None or self.state_steps % every else [state().tobytes()]

    def _step_row(self, first: int, busy: bool, prims: np.ndarray) -> np.ndarray:
        """The trigger-input row of a decision from slice ``first``, with the state it starts from."""
        step = np.zeros(1, TRIGGER_STEP_DTYPE)
        step["first_slice"] = first
        step["busy"] = busy
        step["n_primitives"] = len(prims)
        state = getattr(self.logic, "decision_state", None)  # the synthetic logic has none
        if state is not None:
            dead_until, prescale, accepted = state()
            step["dead_until"] = dead_until
            step["prescale_counts"][0, : len(prescale)] = prescale
            step["events_before"] = accepted
        return step

    def _logic_step(self, first: int, last: int, prims: np.ndarray, busy: bool, cuts: list[int]):
        """The trigger logic over slices ``first..last``: one call, or slice by slice if it cannot."""
        if first == last:
            return self.logic.process_slice(first, prims, busy, cuts=cuts)
        if isinstance(self.logic, StretchTriggerLogic):
            return self.logic.process_stretch(first, last, prims, busy, cuts=cuts)
        outs = []
        for k in range(first, last + 1):
            upto = self.logic.decided_until(k)
            mine = [c for c in cuts if c <= upto]
            cuts = cuts[len(mine) :]
            outs.append(self.logic.process_slice(k, prims if k == first else prims[:0], busy, cuts=mine))
        return TriggerOutput(
            np.concatenate([o.timestamps for o in outs]),
            np.concatenate([o.trigger_words for o in outs]),
            busy_ticks=sum(o.busy_ticks for o in outs),
            dead_ticks=sum(o.dead_ticks for o in outs),
            cut_counts=[c for o in outs for c in o.cut_counts],
        )

    def _spill_row(self, stop: int, counts: ScalerCounts, end_event: int, final: bool = False) -> dict:
        """Close the spill in progress at tick ``stop`` (its events: numbers below ``end_event``)."""
        base = self.spill_base
        row = {
            "spill": self.spill,
            "start_timestamp": self.spill * self.spill_ticks,
            "stop_timestamp": int(stop),
            "beam_counts": counts.beam_coincidences - base.beam_coincidences,
            "triggers_raw": counts.attempts - base.attempts,
            "triggers_accepted": end_event - self.spill_first_event,
            "busy_ticks": counts.busy_ticks - base.busy_ticks,
            "trigger_bits": self.spill_bits,
            "first_event": self.spill_first_event,
            "end_event": end_event,
            "final": final,
        }
        self.spill += 1
        self.spill_base = counts
        self.spill_first_event = end_event
        self.spill_bits = [0] * 32
        return row

    def _send_scalers(self, row: dict) -> None:
        self.send_with_deadline(
            self.need(self.push, "trigger_records"),
            [b"SCALERS", json.dumps(row).encode()],
            "scalers to the event builder",
        )
        self.spill_rows += 1

    def _to_boards(self, msg: list[bytes]) -> None:
        for b in sorted(self.live):
            try:
                self.send_with_deadline(
                    self.need(self.router, "triggers"), [f"board{b}".encode(), *msg], f"decision to board {b}"
                )
            except zmq.ZMQError as err:
                if err.errno == zmq.EHOSTUNREACH:  # its process is gone
                    self._mark_dead(b, "disconnected")
                else:
                    raise

    def _end(self) -> None:
        self.ended = True
        end = encode_slice(
            TRIGGER_MAGIC,
            board_id=TP_ID,
            run_number=self.run_number,
            flags=int(SliceFlags.END_OF_RUN),
            slice_index=self.next_slice,
            records=np.zeros(0, DECISION_DTYPE),
        )
        self._to_boards(end)
        for b in sorted(self.dead):  # best effort: a board taken for dead may still be alive
            try:
                self.need(self.router, "triggers").send_multipart([f"board{b}".encode(), *end], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        # to the builder: slice_index of the end message = number of events issued
        fin = encode_slice(
            TRIGGER_MAGIC,
            board_id=TP_ID,
            run_number=self.run_number,
            flags=int(SliceFlags.END_OF_RUN | SliceFlags.RECORDS),
            slice_index=self.next_event,
            records=np.zeros(0, DECISION_DTYPE),
        )
        # the last (partial) spill row: the spill in progress up to the decided time; a run
        # always has at least one row
        if self.decided > self.spill * self.spill_ticks or self.spill_rows == 0:
            self._send_scalers(self._spill_row(self.decided, self.logic.scaler_counts(), self.next_event, final=True))
        self.send_with_deadline(self.need(self.push, "trigger_records"), fin, "end of run to the event builder")
        self.notify_drained()

    def stats(self) -> dict[str, Any]:
        st = self.cfg.daq.slice_ticks
        total_ticks = self.next_slice * st
        counters = self.logic.counters()
        counts = self.logic.scaler_counts()
        names = list(getattr(self.logic, "trigger_names", ()))
        types = {}
        for bit, name in enumerate(names):
            c = counters.get(name)
            types[name] = {
                "bit": bit,
                "accepted": self.accepted_bits[bit],
                "candidates": c.candidates if c else 0,
                "lost_dead_time": c.lost_dead_time if c else 0,
                "lost_busy": c.lost_busy if c else 0,
                # accepted by the logic in the last slice but beyond --events
                "trimmed": (c.accepted - self.accepted_bits[bit]) if c else 0,
            }
        return {
            **dict(self.counters),
            "events_issued": self.next_event,
            "slices_decided": self.next_slice,
            "decided_ticks": self.decided,
            "spill_rows": self.spill_rows,
            "scaler_totals": {"beam_counts": counts.beam_coincidences, "triggers_raw": counts.attempts},
            "ticks": total_ticks,
            "busy_ticks": self.busy_ticks,
            "dead_ticks": self.dead_ticks,
            "live_fraction": (1.0 - min(total_ticks, self.busy_ticks + self.dead_ticks) / total_ticks)
            if total_ticks
            else 1.0,
            "sampling_rate_hz": self.cfg.digitizer.sampling_rate_hz,
            "trigger_types": types,
            "dead_boards": {str(b): why for b, why in self.dead.items()},
            "live_boards": sorted(self.live),
            # seconds since each board's last message (slice, stretch or heartbeat)
            "board_silence_s": {str(b): time.monotonic() - t for b, t in self.last_seen.items()},
            "ended": self.ended,
            "stage_cpu_s": dict(self.stage_cpu),
        }

    def close(self) -> None:
        for s in (self.router, self.push):
            if s is not None:
                s.close(0)
