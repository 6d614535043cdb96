"""Trigger-less streaming (``daq.mode = "streaming"``): L0 hits from the boards, time-ordered blocks to the file.

The Waveboard runs trigger-less for BDX/TriDAS: every channel ships its level-0 hits and
software decides later. Here (docs/daq.md, "Streaming"):

* **boards** (:class:`StreamBoardGroupNode`, front end :class:`StreamingFrontEnd`): the
  activity-driven physics front end renders its active ranges as for a triggered run and sends
  its primitives to the trigger processor as usual; in addition, for every primitive message
  (one slice, or a fast-forward stretch) it sends one *hit message* on the fragment socket: the
  L0 hits of the hits starting in those slices. An L0 hit is a channel's samples from
  ``pad_before`` samples before a sample above its L0 threshold to ``pad_after`` samples after
  the last one of the run (overlapping stretches merged). Accepted triggers are not read out;
* **trigger processor**: unchanged; its decisions, trigger inputs and scaler rows go to the
  builder as in a triggered run;
* **builder** (:class:`StreamBuilderNode`): collects the hit messages of every board and sends
  the writer one time-ordered block per range of slices every board has covered (hits by tick,
  then channel); decisions, trigger inputs and scalers go on as they come;
* **writer** (:class:`StreamWriterNode`): :class:`pokerdaq.io.StreamFileWriter`
  (docs/hdf5-layout.md, "Streaming recordings").

Why the hits hold everything the stream pulse finder needs: a pulse with crossing ``c`` uses
samples ``[c - NSB - 1, c + NSA)`` (docs/firmware-spec.md 1.3); its crossing is a sample above
the pulse threshold, so above any L0 threshold at or below it, so inside a hit with at least
``NSB + 1`` samples before and ``NSA - 1`` after it. Between hits every sample is at or below
the L0 threshold (noise alone stays below it: checked at configure against the emulator's exact
noise ceiling), so no crossing is lost there, and the finder run over the hits of a channel
concatenated finds the pulses of the full stream (the argument of :mod:`pokerdaq.daq._sparse`).
"""

from __future__ import annotations

import collections
import json
import struct
import time
import zlib
from typing import Any

import numpy as np
import zmq

from pokerdaq.config import Config

from ._board import BoardGroupNode
from ._node import Node
from ._sparse import SparsePhysicsFrontEnd, noise_ceiling
from ._wire import DECISION_DTYPE, TRIGGER_MAGIC, MessageError, SliceFlags, decode_slice

HITS_MAGIC = b"L0HT"
HITS_VERSION = 1
HITS_HEADER = struct.Struct("<4sHHIQQIIQI")
"""Hit message header (48 bytes): magic, version, board, run number, first_slice, last_slice,
flags (``StreamFlags``), n_hits, n_samples, CRC-32 of the body (hit rows then samples)."""
BLOCK_HEADER = struct.Struct("<QQI")
"""Builder -> writer block header: first_slice, last_slice, missing_boards."""


# ---------------------------------------------------------------------------- L0 definition
def l0_setup(cfg: Config) -> tuple[np.ndarray, int, int]:
    """The L0 thresholds and the padding of a streaming run.

    Returns
    -------
    threshold : np.ndarray
        int64 (channels,): absolute ADC code per channel, ``PED_CFG + THR * l0_threshold_percent // 100``
        of the stream-mode pulse finder (a sample above it belongs to a hit).
    pad_before, pad_after : int
        ``max(NSB) + 2`` and ``max(NSA) + 2`` over every channel (the padding of the activity-driven front end).
    """
    from pokerdaq.dsp import PulseParams
    from pokerdaq.trigger._chain import stream_config

    params = PulseParams.from_config(stream_config(cfg))
    thr = params.ped_cfg.astype(np.int64) + params.thr.astype(np.int64) * int(cfg.daq.l0_threshold_percent) // 100
    return thr, int(params.nsb.max()) + 2, int(params.nsa.max()) + 2


def l0_hits(
    samples: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    channels: np.ndarray,
    board: int,
    threshold: np.ndarray,
    before: int,
    after: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The L0 hits of rendered ranges.

    Parameters
    ----------
    samples
        (rows, sum(stops - starts)) uint16: ranges ``[starts[j], stops[j])`` concatenated.
    channels, board
        Channel number of each row, and the board.
    threshold
        int64 (rows,): absolute L0 threshold of each row.
    before, after
        Padding (clipped to the range: outside it nothing but noise, below the threshold).

    Returns
    -------
    hits : np.ndarray
        ``STREAM_HIT_DTYPE``, by row then tick; ``sample_offset`` into ``hit_samples``.
    hit_samples : np.ndarray
        uint16, the hits' samples concatenated.
    """
    from pokerdaq.io import STREAM_HIT_DTYPE

    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(stops, np.int64) - starts
    local0 = np.zeros(len(starts), np.int64)
    np.cumsum(lengths[:-1], out=local0[1:])
    parts, los, his, rows = [], [], [], []
    for r in range(samples.shape[0]):
        idx = np.flatnonzero(samples[r] > threshold[r])
        if not idx.size:
            continue
        j = np.searchsorted(local0, idx, side="right") - 1
        lo = np.maximum(idx - before, local0[j])
        hi = np.minimum(idx + after + 1, local0[j] + lengths[j])
        reach = np.maximum.accumulate(hi)
        new = np.ones(len(idx), bool)
        new[1:] = (lo[1:] > reach[:-1]) | (j[1:] != j[:-1])
        heads = np.flatnonzero(new)
        tails = np.append(heads[1:] - 1, len(idx) - 1)
        h = np.zeros(len(heads), STREAM_HIT_DTYPE)
        g_lo, g_hi, g_j = lo[heads], reach[tails], j[heads]
        h["first_tick"] = starts[g_j] + g_lo - local0[g_j]
        h["crossing_tick"] = starts[g_j] + idx[heads] - local0[g_j]
        h["n_samples"] = g_hi - g_lo
        h["channel"] = channels[r]
        h["board"] = board
        parts.append(h)
        los.append(g_lo)
        his.append(g_hi)
        rows.append(np.full(len(heads), r))
    if not parts:
        return np.zeros(0, STREAM_HIT_DTYPE), np.zeros(0, np.uint16)
    hits = np.concatenate(parts)
    lo, hi, row = np.concatenate(los), np.concatenate(his), np.concatenate(rows)
    n = hi - lo
    offsets = np.zeros(len(n), np.int64)
    np.cumsum(n[:-1], out=offsets[1:])
    hits["sample_offset"] = offsets
    # one gather: sample k of hit i is samples[row[i], lo[i] + k]
    col = np.repeat(lo - offsets, n) + np.arange(int(n.sum()))
    return hits, samples[np.repeat(row, n), col].astype(np.uint16)


def select_hits(hits: np.ndarray, samples: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hits ``hits[keep]`` (an index or mask array) and their samples, offsets renumbered from 0."""
    sel = hits[keep]
    n = sel["n_samples"].astype(np.int64)
    if not len(sel):
        return sel, np.zeros(0, np.uint16)
    offsets = np.zeros(len(n), np.int64)
    np.cumsum(n[:-1], out=offsets[1:])
    src = np.repeat(sel["sample_offset"].astype(np.int64) - offsets, n) + np.arange(int(n.sum()))
    out = sel.copy()
    out["sample_offset"] = offsets
    return out, samples[src]


# ---------------------------------------------------------------------------- hit messages
def encode_hits(
    run_number: int, board: int, first_slice: int, last_slice: int, flags: int, hits: np.ndarray, samples: np.ndarray
) -> bytes:
    """One hit message (a single frame): header, hit rows, samples (docs/wire-format.md, "L0 hits")."""
    body = hits.tobytes() + np.ascontiguousarray(samples, "<u2").tobytes()
    return (
        HITS_HEADER.pack(
            HITS_MAGIC,
            HITS_VERSION,
            board,
            run_number,
            first_slice,
            last_slice,
            flags,
            len(hits),
            len(samples),
            zlib.crc32(body),
        )
        + body
    )


class HitsError(ValueError):
    """A malformed hit message; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason


def decode_hits(
    buf: bytes | memoryview, run_number: int, board_channels: dict[int, np.ndarray], slice_ticks: int, adc_max: int
) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Check and decode a hit message; :class:`HitsError` (with its reason) for anything wrong."""
    from pokerdaq.io import STREAM_HIT_DTYPE

    buf = memoryview(buf).cast("B")
    if len(buf) < HITS_HEADER.size:
        raise HitsError("short", f"{len(buf)} bytes, shorter than the {HITS_HEADER.size}-byte header")
    magic, version, board, run, first, last, flags, n_hits, n_samples, crc = HITS_HEADER.unpack_from(buf)
    if magic != HITS_MAGIC or version != HITS_VERSION:
        raise HitsError("bad_magic", f"magic {magic!r} version {version}")
    if run != run_number:
        raise HitsError("wrong_run", f"run {run}, expected {run_number}")
    if board not in board_channels:
        raise HitsError("bad_board", f"board {board}")
    if last < first:
        raise HitsError("bad_slices", f"slices {first}..{last}")
    size = HITS_HEADER.size + n_hits * STREAM_HIT_DTYPE.itemsize + 2 * n_samples
    if len(buf) != size:
        raise HitsError("bad_size", f"{len(buf)} bytes, {size} expected for {n_hits} hits, {n_samples} samples")
    body = buf[HITS_HEADER.size :]
    if zlib.crc32(body) != crc:
        raise HitsError("bad_crc", "CRC-32 of the body does not match")
    split = n_hits * STREAM_HIT_DTYPE.itemsize
    hits = np.frombuffer(body[:split], STREAM_HIT_DTYPE)
    samples = np.frombuffer(body[split:], "<u2")
    n = hits["n_samples"].astype(np.int64)
    ends = np.cumsum(n)
    if len(hits) and (
        np.any(n < 1) or int(ends[-1]) != n_samples or np.any(hits["sample_offset"].astype(np.int64) != ends - n)
    ):
        raise HitsError("bad_offsets", "the hits' samples do not tile the message")
    if len(hits) and (np.any(hits["board"] != board) or not np.isin(hits["channel"], board_channels[board]).all()):
        raise HitsError("bad_channel", f"a hit of a channel not on board {board}")
    ticks_lo, ticks_hi = first, last + 1
    if len(hits):
        sl = hits["first_tick"] // np.uint64(slice_ticks)
        if int(sl.min()) < ticks_lo or int(sl.max()) >= ticks_hi:
            raise HitsError("bad_slices", "a hit outside the message's slices")
    if n_samples and int(samples.max()) > adc_max:
        raise HitsError("sample_above_adc_max", f"sample {int(samples.max())} above {adc_max}")
    return {"board": board, "first_slice": first, "last_slice": last, "flags": flags}, hits, samples


# ---------------------------------------------------------------------------- boards
class StreamingFrontEnd(SparsePhysicsFrontEnd):
    """The activity-driven physics front end that also cuts the L0 hits out of what it renders.

    Same primitives and readout windows as :class:`~pokerdaq.daq._sparse.SparsePhysicsFrontEnd`
    (the padding of its active ranges is at least the L0 padding, which changes no primitive).

    Raises
    ------
    ValueError
        When noise alone can reach a channel's L0 threshold (hits would be lost between the
        rendered ranges): raise ``daq.l0_threshold_percent``.
    """

    def __init__(self, cfg: Config, board: int, seed: int, *, warm_up: bool = True, group: Any = None) -> None:
        from pokerdaq.io import STREAM_HIT_DTYPE
        from pokerdaq.trigger._chain import stream_config

        super().__init__(cfg, board, seed, warm_up=warm_up, group=group)
        thr, self.pad_before, self.pad_after = l0_setup(cfg)
        self.l0 = thr[self.channels]
        ceiling, _thr, _sigma = noise_ceiling(stream_config(cfg), self.channels, seed)
        bad = np.flatnonzero(ceiling > self.l0)
        if bad.size:
            c = int(self.channels[bad[0]])
            raise ValueError(
                f"daq.l0_threshold_percent = {cfg.daq.l0_threshold_percent}: channel {c} (board "
                f"{board}): noise alone reaches ADC {int(ceiling[bad[0]])}, above its L0 threshold "
                f"{int(self.l0[bad[0]])} (expected a higher percentage)"
            )
        # the group of the process renders this board's ranges (SparseGroup): padded for the L0
        # hits, and its rendered samples handed here to cut them out
        self._group.widen(board, self.pad_before, self.pad_after)
        self._group.taps[board] = self._on_rendered
        self._hits = np.zeros(0, STREAM_HIT_DTYPE)
        self._hit_samples = np.zeros(0, np.uint16)

    def _on_rendered(self, a: np.ndarray, b: np.ndarray, samples: np.ndarray) -> None:
        hits, hs = l0_hits(samples, a, b, self.channels, self.board, self.l0, self.pad_before, self.pad_after)
        if len(hits):
            hits["sample_offset"] += np.uint64(len(self._hit_samples))
            self._hits = np.concatenate([self._hits, hits])
            self._hit_samples = np.concatenate([self._hit_samples, hs])

    def take_hits(self, last_slice: int) -> tuple[np.ndarray, np.ndarray]:
        """The hits starting in slices up to ``last_slice`` not taken yet, by tick then channel."""
        due = self._hits["first_tick"] < np.uint64((last_slice + 1) * self._ticks)
        order = np.flatnonzero(due)[np.lexsort((self._hits["channel"][due], self._hits["first_tick"][due]))]
        out = select_hits(self._hits, self._hit_samples, order)
        self._hits, self._hit_samples = select_hits(self._hits, self._hit_samples, np.flatnonzero(~due))
        return out


class StreamBoardGroupNode(BoardGroupNode):
    """Board process of a streaming run: primitives as usual, one hit message per primitive message, no readout."""

    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        self.credit = 1 << 62  # no readout: the builder's credit does not apply
        self.hit_messages = 0
        self.hits_sent = 0

    def connect(self, endpoints: dict[str, str]) -> None:
        super().connect({k: v for k, v in endpoints.items() if k != "credits"})

    def _render_batch(self, board, triggers):
        return None  # nothing is read out: no window to render

    def _read_out(self, board, trig, rendered=None) -> None:
        self.counters["decisions_not_read_out"] += 1  # trigger-less: the decision is recorded, not read out

    def _apply_one(self, board) -> bool:
        was = board.ended
        progressed = super()._apply_one(board)
        if board.ended and not was:
            from pokerdaq.io import STREAM_HIT_DTYPE, StreamFlags

            k = board.next_slice
            self.pending.append(
                encode_hits(
                    self.run_number,
                    board.logic.board,
                    k,
                    k,
                    StreamFlags.END,
                    np.zeros(0, STREAM_HIT_DTYPE),
                    np.zeros(0, np.uint16),
                )
            )
        return progressed

    def _produce(self, board) -> bool:
        if board.ended:
            return False
        if len(self.pending) >= self.queue_limit:
            self.stalled = True  # the builder is slow: stop here (heartbeats keep the board alive)
            return False
        k = board.next_slice
        busy = len(self.pending) >= self.busy_mark
        made = super()._produce(board)
        if board.next_slice > k:
            from pokerdaq.io import StreamFlags

            hits, samples = board.logic.take_hits(board.next_slice - 1)
            self.pending.append(
                encode_hits(
                    self.run_number,
                    board.logic.board,
                    k,
                    board.next_slice - 1,
                    StreamFlags.BUSY if busy else StreamFlags.NONE,
                    hits,
                    samples,
                )
            )
            self.max_pending = max(self.max_pending, len(self.pending))
            self.hit_messages += 1
            self.hits_sent += len(hits)
        return made

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "hit_messages": self.hit_messages, "hits_sent": self.hits_sent}


# ---------------------------------------------------------------------------- builder
class StreamBuilderNode(Node):
    """Orders the boards' hit messages into time-ordered blocks; forwards the trigger's records.

    A block of slices ``[a, b]`` is sent when every board has covered ``b`` (a board that sent
    its END covers everything). With more than ``daq.max_events_in_flight`` hit messages held
    (a board fell silent), the oldest slices that some board has covered are sent without the
    missing boards (``missing_boards``); their late hits are counted (``late_hits``) and dropped.
    After the trigger processor's end of run the builder waits ``daq.builder_timeout_s`` for the
    boards' END, then sends what it holds. Every malformed message is counted by reason.
    """

    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        self.run_number = int(params["run_number"])
        cmap = cfg.channel_map
        self.n_boards = cmap.n_boards
        self.board_channels = {b: cmap.channels_on_board(b) for b in range(self.n_boards)}
        self.ticks = int(cfg.daq.slice_ticks)
        self.adc_max = int(cfg.digitizer.adc_max)
        self.limit = int(cfg.daq.max_events_in_flight)
        self.covered = [-1] * self.n_boards
        self.ended = [False] * self.n_boards
        self.held: list[tuple[dict, np.ndarray, np.ndarray]] = []
        self.emitted = -1
        self.out: collections.deque = collections.deque()
        self.counters: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.trigger_end: float | None = None
        self.events_issued = 0
        self.frag_sock: Any = None  # zmq sockets, made in bind / connect
        self.rec_sock: Any = None
        self.push: Any = None

    def bind(self) -> dict[str, str]:
        eps = self.params["endpoints"]
        self.frag_sock = self.socket(zmq.PULL)
        self.frag_sock.setsockopt(zmq.MAXMSGSIZE, self.cfg.daq.max_message_bytes)
        self.rec_sock = self.socket(zmq.PULL)
        return {
            "fragments": self.bind_socket(self.frag_sock, eps["fragments"]),
            "trigger_records": self.bind_socket(self.rec_sock, eps["trigger_records"]),
        }

    def connect(self, endpoints: dict[str, str]) -> None:
        self.push = self.socket(zmq.PUSH, hwm=max(2, self.cfg.daq.hwm // 4))
        self.push.connect(endpoints["records"])

    def sockets(self):
        socks = []
        if len(self.out) < self.limit:
            socks += [(self.rec_sock, zmq.POLLIN), (self.frag_sock, zmq.POLLIN)]
        if self.out:
            socks.append((self.push, zmq.POLLOUT))
        return socks

    def step(self, ready: dict) -> bool:
        more = False
        while len(self.out) < self.limit:
            try:
                frames = self.rec_sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_records(frames)
            more = True
        n = 0
        while len(self.out) < self.limit and n < 256:
            try:
                frames = self.frag_sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            if len(frames) != 1:
                self.rejected["bad_frames"] += 1
                continue
            self._on_hits(frames[0].buffer)
        more |= n > 0
        self._emit()
        more |= self._send()
        if self.trigger_end is not None and self.state == "running":
            done = all(self.ended)
            if not done and time.monotonic() - self.trigger_end > self.cfg.daq.builder_timeout_s:
                self.counters["boards_without_end"] += sum(not e for e in self.ended)
                done = True
            if done:
                self._emit(final=True)
                if not self.out:
                    self._finish()
                    return False
                more |= self._send()
        return more

    def _on_records(self, frames) -> None:
        if (len(frames) == 2 and frames[0] == b"SCALERS") or (len(frames) in (3, 4) and frames[0] == b"TRIGIN"):
            self.out.append(frames)
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
        if int(head["flags"]) & SliceFlags.END_OF_RUN:
            self.events_issued = int(head["slice_index"])
            self.trigger_end = time.monotonic()
            return
        if len(records):
            self.out.append([b"DECISIONS", records.tobytes()])
            self.counters["decisions"] += len(records)

    def _on_hits(self, buf) -> None:
        from pokerdaq.io import StreamFlags

        try:
            head, hits, samples = decode_hits(buf, self.run_number, self.board_channels, self.ticks, self.adc_max)
        except HitsError as err:
            self.rejected[err.reason] += 1
            return
        b = head["board"]
        if self.ended[b]:
            self.rejected["after_end"] += 1
            return
        if head["flags"] & StreamFlags.END:
            self.ended[b] = True
            return
        if head["first_slice"] != self.covered[b] + 1:
            self.rejected["slice_order"] += 1
            return
        self.covered[b] = head["last_slice"]
        if head["last_slice"] <= self.emitted:
            self.counters["late_hits"] += len(hits)
            return
        self.held.append((head, hits, samples))
        self.counters["hit_messages"] += 1
        self.counters["hits"] += len(hits)

    def _emit(self, final: bool = False) -> None:
        from pokerdaq.io import BOARD_MESSAGE_DTYPE

        if not self.held:
            return
        live = [c for c, e in zip(self.covered, self.ended) if not e]
        top = max(h[0]["last_slice"] for h in self.held)
        ready = min(live) if live and not final else top
        missing = 0
        if ready <= self.emitted and len(self.held) > self.limit:  # a board fell behind: go on without it
            ready = min(c for c in self.covered if c > self.emitted)
            missing = sum(1 << b for b, (c, e) in enumerate(zip(self.covered, self.ended)) if not e and c < ready)
            self.counters["blocks_forced"] += 1
        if ready <= self.emitted:
            return
        hits_parts, sample_parts, msgs, keep = [], [], [], []
        for head, hits, samples in self.held:
            sl = hits["first_tick"] // np.uint64(self.ticks)
            now = sl <= np.uint64(ready)
            h, s = select_hits(hits, samples, np.flatnonzero(now))
            hits_parts.append(h)
            sample_parts.append(s)
            if head["last_slice"] <= ready:
                row = np.zeros(1, BOARD_MESSAGE_DTYPE)
                row["board"], row["flags"] = head["board"], head["flags"]
                row["first_slice"], row["last_slice"], row["n_hits"] = (
                    head["first_slice"],
                    head["last_slice"],
                    len(hits),
                )
                msgs.append(row)
            else:
                rest_h, rest_s = select_hits(hits, samples, np.flatnonzero(~now))
                keep.append((head, rest_h, rest_s))
        self.held = keep
        hits, samples = _join(hits_parts, sample_parts)
        order = np.lexsort((hits["channel"], hits["first_tick"]))
        hits, samples = select_hits(hits, samples, order)
        rows = np.concatenate(msgs) if msgs else np.zeros(0, BOARD_MESSAGE_DTYPE)
        rows = rows[np.lexsort((rows["board"], rows["first_slice"]))]
        self.out.append(
            [
                b"BLOCK",
                BLOCK_HEADER.pack(self.emitted + 1, ready, missing),
                hits.tobytes(),
                samples.astype("<u2").tobytes(),
                rows.tobytes(),
            ]
        )
        self.counters["blocks"] += 1
        self.emitted = ready

    def _send(self) -> bool:
        sent = False
        while self.out:
            try:
                self.push.send_multipart(self.out[0], zmq.NOBLOCK)
            except zmq.Again:
                break
            self.out.popleft()
            sent = True
        return sent

    def _finish(self) -> None:
        info = {"events_issued": self.events_issued, "stats": self.stats()}
        self.send_with_deadline(self.push, [b"END", json.dumps(info).encode()], "end of run to the writer")
        self.notify_drained()

    def stats(self) -> dict[str, Any]:
        return {
            **dict(self.counters),
            "rejected": dict(self.rejected),
            "held_messages": len(self.held),
            "emitted_to_slice": self.emitted,
            "events_built": 0,
            "events_issued": self.events_issued,
        }

    def close(self) -> None:
        for sock in (self.frag_sock, self.rec_sock, self.push):
            if sock is not None:
                sock.close(0)


def _join(hits_parts: list[np.ndarray], sample_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from pokerdaq.io import STREAM_HIT_DTYPE

    if not hits_parts:
        return np.zeros(0, STREAM_HIT_DTYPE), np.zeros(0, np.uint16)
    base = np.cumsum([0] + [len(s) for s in sample_parts[:-1]])
    hits = np.concatenate([h.copy() for h in hits_parts])
    hits["sample_offset"] += np.repeat(base, [len(h) for h in hits_parts]).astype(np.uint64)
    return hits, np.concatenate(sample_parts).astype(np.uint16)


# ---------------------------------------------------------------------------- writer
class StreamWriterNode(Node):
    """Writes the builder's blocks, decisions, trigger inputs and scaler rows with :class:`pokerdaq.io.StreamFileWriter`.

    A malformed message is counted (``rejected`` by reason) and not written; the run goes on.
    """

    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        from pathlib import Path

        self.path = Path(params["output"])
        self.sock: Any = None
        self.writer: Any = None
        self.rejected: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.end_info: dict | None = None
        self.files: list[str] = []
        self.last_rejection = ""

    def bind(self) -> dict[str, str]:
        self.sock = self.socket(zmq.PULL, hwm=max(2, self.cfg.daq.hwm // 4))
        return {"records": self.bind_socket(self.sock, self.params["endpoints"]["records"])}

    def on_start(self) -> None:
        from pokerdaq.io import StreamFileWriter

        thr, before, after = l0_setup(self.cfg)
        self.writer = StreamFileWriter(
            self.path,
            self.cfg,
            l0_threshold=thr,
            pad_before=before,
            pad_after=after,
            trigger_seed=int(self.params["seed"]),
            overwrite=bool(self.params.get("overwrite", False)),
        )

    def sockets(self):
        return [(self.sock, zmq.POLLIN)] if self.end_info is None else []

    def step(self, ready: dict) -> bool:
        if self.end_info is not None:
            return False
        got = 0
        while got < 256:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            got += 1
            kind = frames[0]
            try:
                if kind == b"END" and len(frames) == 2:
                    try:
                        info = json.loads(frames[1])
                    except ValueError:
                        info = {}
                    self.end_info = info if isinstance(info, dict) else {}
                    break
                if kind == b"BLOCK" and len(frames) == 5:
                    self._on_block(frames)
                elif kind == b"DECISIONS" and len(frames) == 2:
                    self._on_decisions(frames[1])
                elif kind == b"TRIGIN" and len(frames) in (3, 4):  # a 4th frame (model state): not stored here
                    self._on_trigger_inputs(frames[1], frames[2])
                elif kind == b"SCALERS" and len(frames) == 2:
                    self._on_scalers(frames[1])
                else:
                    self.rejected["bad_message"] += 1
            except ValueError as err:  # what the file may not hold: counted, never written
                self.rejected[f"{kind.decode(errors='replace').lower()}_invalid"] += 1
                self.last_rejection = str(err)
        if self.end_info is not None:
            self.writer.close()
            self.files = [str(self.path)]
            self.notify_drained()
        return got > 0

    def _on_block(self, frames: list[bytes]) -> None:
        from pokerdaq.io import BOARD_MESSAGE_DTYPE, STREAM_HIT_DTYPE

        if (
            len(frames[1]) != BLOCK_HEADER.size
            or len(frames[2]) % STREAM_HIT_DTYPE.itemsize
            or len(frames[3]) % 2
            or len(frames[4]) % BOARD_MESSAGE_DTYPE.itemsize
        ):
            raise ValueError("block frames of the wrong size")
        first, last, missing = BLOCK_HEADER.unpack(frames[1])
        hits = np.frombuffer(frames[2], STREAM_HIT_DTYPE)
        samples = np.frombuffer(frames[3], "<u2").astype(np.uint16)
        msgs = np.frombuffer(frames[4], BOARD_MESSAGE_DTYPE)
        self.writer.write_block(first, last, hits, samples, msgs, missing)
        self.counts["blocks"] += 1
        self.counts["hits"] += len(hits)
        self.counts["hit_samples"] += len(samples)
        self.counts["bytes_written"] += len(frames[2]) + len(frames[3]) + len(frames[4])
        self.counts["missing_board_blocks"] += missing != 0

    def _on_decisions(self, body: bytes) -> None:
        from pokerdaq.io import STREAM_DECISION_DTYPE

        if len(body) % STREAM_DECISION_DTYPE.itemsize:
            raise ValueError("decision records of the wrong size")
        rec = np.frombuffer(body, STREAM_DECISION_DTYPE)
        self.writer.write_decisions(rec)
        self.counts["decisions"] += len(rec)
        self.counts["bytes_written"] += len(body)

    def _on_trigger_inputs(self, step: bytes, prims: bytes) -> None:
        from pokerdaq.io import TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE

        if len(step) != TRIGGER_STEP_DTYPE.itemsize or len(prims) % TRIGGER_PRIMITIVE_DTYPE.itemsize:
            raise ValueError("trigger inputs of the wrong size")
        self.writer.write_trigger_inputs(
            np.frombuffer(step, TRIGGER_STEP_DTYPE), np.frombuffer(prims, TRIGGER_PRIMITIVE_DTYPE)
        )
        self.counts["trigger_steps"] += 1
        self.counts["bytes_written"] += len(step) + len(prims)

    def _on_scalers(self, body: bytes) -> None:
        from pokerdaq.io import N_TRIGGER_BITS, SCALER_DTYPE

        try:
            row = json.loads(body)
        except ValueError:
            raise ValueError("scaler row not JSON") from None
        if not isinstance(row, dict):
            raise ValueError("scaler row not an object")
        out = np.zeros(1, SCALER_DTYPE)
        for name in (
            "spill",
            "start_timestamp",
            "stop_timestamp",
            "beam_counts",
            "triggers_raw",
            "triggers_accepted",
            "busy_ticks",
        ):
            v = row.get(name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
                raise ValueError(f"scaler row {name} = {v!r}")
            out[name] = v
        bits = row.get("trigger_bits")
        if not isinstance(bits, list) or not all(isinstance(b, int) and b >= 0 for b in bits):
            raise ValueError("scaler row trigger_bits")
        out["trigger_bits"][0, : min(len(bits), N_TRIGGER_BITS)] = bits[:N_TRIGGER_BITS]
        out["events_built"] = row["triggers_accepted"]  # decisions recorded (no events are built)
        self.writer.write_scalers(out)
        self.counts["scaler_rows"] += 1

    def stats(self) -> dict[str, Any]:
        c = self.counts
        return {
            "events_written": c["decisions"],
            "bytes_written": c["bytes_written"],
            "files": self.files,
            "hits_written": c["hits"],
            "hit_samples_written": c["hit_samples"],
            "blocks_written": c["blocks"],
            "missing_board_blocks": c["missing_board_blocks"],
            "decisions_written": c["decisions"],
            "trigger_steps": c["trigger_steps"],
            "scaler_rows": c["scaler_rows"],
            "events_rejected": dict(self.rejected),
        }

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
