"""Writer process: built events from the event builder -> :class:`pokerdaq.io.RunFileWriter`.

A PULL (bound, ``records`` endpoint) receives events in event-number order; they are
appended in batches of ``daq.writer_batch_events`` (or after 0.2 s). The end-of-run message
of the builder closes the file: ``NAME.part`` is renamed to ``NAME`` with
``closed_cleanly`` set. ``daq.writer_delay_s`` adds an artificial delay per batch: a slow
disk, for the backpressure tests only.

Emulator truth: in a run whose front end is the emulator (``daq.front_end`` ``"physics"`` or
``"physics-stream"``) every event gets the ``SIMULATED`` flag and a ``/truth`` row, computed
here, in one place, by :func:`pokerdaq.sim.window_truth` from the run's beam time line (the
boards' emulator configuration and seed) and the event's readout window (matching rule:
docs/hdf5-layout.md, "Truth of DAQ runs").

Per-spill scalers: the trigger processor's ``SCALERS`` rows (forwarded by the builder) are
completed with the spill's events as they pass (built, INCOMPLETE, dropped = issued but
never received) and written once every event of the spill has gone by, in spill order.

Trigger inputs: the trigger processor's ``TRIGIN`` messages (one decision step and its
primitives, forwarded by the builder) are appended to ``/trigger_inputs`` of the file open
when they are written (with each batch of events, at the latest every ``TRIGIN_BATCH`` steps);
a malformed one is counted, never written.
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from pokerdaq.dsp._records import PULSE_DTYPE

from ._node import Node, NodeError

FLUSH_INTERVAL_S = 0.2
TRIGIN_BATCH = 4096


class WriterNode(Node):
    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        from pokerdaq.io._records import EVENT_DTYPE
        self.EVENT_DTYPE = EVENT_DTYPE
        self.path = Path(params["output"])
        self.n_channels = len(cfg.channel_map)
        self.window = cfg.digitizer.window_samples
        self.batch: list[tuple[np.ndarray, bytes, bytes]] = []
        self.last_write = time.monotonic()
        self.writer = None
        self.events_written = 0
        self.bytes_written = 0
        self.batches = 0
        self.incomplete = 0
        self.files: list[str] = []
        self.end_info: dict | None = None
        self.sock: zmq.Socket | None = None
        self.write_seconds = 0.0
        # per-spill scalers: rows waiting for their events, and event counts per spill
        self.spill_ticks = max(1, int(round(cfg.beam.spill_period_s * cfg.digitizer.sampling_rate_hz)))
        self.pending_rows: collections.deque = collections.deque()
        self.spill_events: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0])  # built, incomplete
        self.last_event: int = -1
        self.scaler_rows = 0
        self.bad_scaler_messages = 0
        self.scaler_totals = collections.Counter()
        from pokerdaq.io import TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE
        self.trigin_dtypes = (TRIGGER_STEP_DTYPE, TRIGGER_PRIMITIVE_DTYPE)
        self.trigin: list[tuple[np.ndarray, np.ndarray]] = []
        self.trigger_steps = 0
        self.trigger_primitives = 0
        self.bad_trigger_input_messages = 0
        # emulator truth (module docstring)
        self.truth = None
        if cfg.daq.front_end in ("physics", "physics-stream"):
            from pokerdaq.sim import build_tables
            from pokerdaq.sim._beam import BeamTimeline
            from pokerdaq.trigger._chain import stream_config
            scfg = stream_config(cfg)   # what the boards' emulator runs with
            self.truth = (BeamTimeline(scfg, int(params["seed"])), build_tables(scfg).lookback_ns)
        self.truth_matched = 0

    def bind(self) -> dict[str, str]:
        self.sock = self.socket(zmq.PULL, hwm=max(2, self.cfg.daq.hwm // 4))
        return {"records": self.bind_socket(self.sock, self.params["endpoints"]["records"])}

    def on_start(self) -> None:
        from pokerdaq.io import RunFileWriter
        daq = self.cfg.daq
        self.writer = RunFileWriter(
            self.path, self.cfg, producer="pokerdaq run",
            rotate_events=daq.rotate_events or None, rotate_bytes=daq.rotate_bytes or None,
            flush_every_events=max(1, daq.writer_batch_events), overwrite=bool(self.params.get("overwrite", False)),
            trigger_seed=int(self.params["seed"]),
        )

    def sockets(self):
        return [(self.sock, zmq.POLLIN)] if self.end_info is None else []

    def step(self, ready: dict) -> bool:
        if self.end_info is not None:
            return False
        got = 0
        while len(self.batch) < self.cfg.daq.writer_batch_events:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            got += 1
            if frames[0] == b"END":
                self.end_info = json.loads(frames[1])
                break
            if frames[0] == b"SCALERS" and len(frames) == 2:
                self._on_scaler_row(frames[1])
                continue
            if frames[0] == b"TRIGIN" and len(frames) == 3:
                self._on_trigger_inputs(frames[1], frames[2])
                continue
            if frames[0] != b"EV" or len(frames) != 4:
                raise NodeError("malformed message from the event builder")
            self.batch.append((np.frombuffer(frames[1], dtype=self.EVENT_DTYPE), frames[2], frames[3]))
        if self.batch and (len(self.batch) >= self.cfg.daq.writer_batch_events or self.end_info is not None
                           or time.monotonic() - self.last_write > FLUSH_INTERVAL_S):
            self._write_batch()
        if len(self.trigin) >= TRIGIN_BATCH or (self.trigin and self.end_info is not None):
            self._write_trigger_inputs()
        self._write_scalers(final=self.end_info is not None)
        if self.end_info is not None:
            self._close()
            self.notify_drained()
        return got > 0

    def _write_batch(self) -> None:
        t0 = time.perf_counter()
        headers = np.concatenate([h for h, _, _ in self.batch])
        samples = np.frombuffer(b"".join(s for _, s, _ in self.batch), dtype=np.uint16)
        samples = samples.reshape(len(self.batch), self.n_channels, self.window)
        pulses = np.frombuffer(b"".join(p for _, _, p in self.batch), dtype=PULSE_DTYPE)
        truth = None
        if self.truth is not None:
            from pokerdaq.io._records import EventFlags
            from pokerdaq.sim import window_truth
            timeline, lookback_ns = self.truth
            ref = headers["timestamp"].astype(np.int64)
            truth = window_truth(timeline, ref, ref - self.cfg.digitizer.pretrigger_samples, self.window, lookback_ns)
            headers["flags"] |= np.uint32(EventFlags.SIMULATED)
            self.truth_matched += int((truth["species"] >= 0).sum())
        self._write_trigger_inputs()   # the decisions of these events (and later ones) first
        self.writer.write_events(headers, samples, pulses, truth)
        self._count_spill_events(headers)
        self.events_written += len(headers)
        self.incomplete += int((headers["missing_boards"] != 0).sum())
        self.bytes_written += headers.nbytes + samples.nbytes + pulses.nbytes
        self.batches += 1
        self.batch = []
        if self.cfg.daq.writer_delay_s:
            time.sleep(self.cfg.daq.writer_delay_s)  # test-only slow-disk emulation (daq.writer_delay_s)
        self.last_write = time.monotonic()
        self.write_seconds += time.perf_counter() - t0

    _ROW_KEYS = ("spill", "start_timestamp", "stop_timestamp", "beam_counts", "triggers_raw", "triggers_accepted",
                 "busy_ticks", "trigger_bits", "first_event", "end_event")

    def _on_scaler_row(self, body: bytes) -> None:
        """A spill row of the trigger processor: kept until its events have gone by; a malformed one is counted."""
        try:
            row = json.loads(body)
            ok = (isinstance(row, dict) and all(isinstance(row.get(k), int) for k in self._ROW_KEYS if k != "trigger_bits")
                  and isinstance(row.get("trigger_bits"), list))
        except ValueError:
            ok = False
        if not ok:
            self.bad_scaler_messages += 1
            return
        self.pending_rows.append(row)

    def _on_trigger_inputs(self, step: bytes, prims: bytes) -> None:
        """A decision step and its primitives: kept for the next write; a malformed one is counted."""
        step_dtype, prim_dtype = self.trigin_dtypes
        if len(step) != step_dtype.itemsize or len(prims) % prim_dtype.itemsize:
            self.bad_trigger_input_messages += 1
            return
        row = np.frombuffer(step, dtype=step_dtype)
        p = np.frombuffer(prims, dtype=prim_dtype)
        if int(row["n_primitives"][0]) != len(p):
            self.bad_trigger_input_messages += 1
            return
        self.trigin.append((row, p))

    def _write_trigger_inputs(self) -> None:
        if not self.trigin or self.writer is None:
            return
        steps = np.concatenate([s for s, _ in self.trigin])
        prims = np.concatenate([p for _, p in self.trigin])
        self.writer.write_trigger_inputs(steps, prims)
        self.trigger_steps += len(steps)
        self.trigger_primitives += len(prims)
        self.bytes_written += steps.nbytes + prims.nbytes
        self.trigin = []

    def _count_spill_events(self, headers: np.ndarray) -> None:
        from pokerdaq.io._records import EventFlags
        spills = headers["timestamp"] // np.uint64(self.spill_ticks)
        incomplete = (headers["flags"] & np.uint32(EventFlags.INCOMPLETE)) != 0
        for m in np.unique(spills).tolist():
            here = spills == m
            counts = self.spill_events[int(m)]
            counts[0] += int(here.sum())
            counts[1] += int(incomplete[here].sum())
        self.last_event = int(headers["event_number"][-1])

    def _write_scalers(self, final: bool = False) -> None:
        """Write the spill rows whose events have all gone by (all of them at the end of the run)."""
        from pokerdaq.io._records import SCALER_DTYPE
        while self.pending_rows and self.writer is not None:
            r = self.pending_rows[0]
            if not final and self.last_event < int(r["end_event"]) - 1:
                return   # events of this spill are still to come
            self.pending_rows.popleft()
            built, incomplete = self.spill_events.pop(int(r["spill"]), (0, 0))
            row = np.zeros(1, dtype=SCALER_DTYPE)
            for name in ("spill", "start_timestamp", "stop_timestamp", "beam_counts", "triggers_raw",
                         "triggers_accepted", "busy_ticks"):
                row[name] = r[name]
            row["events_built"] = built
            row["events_incomplete"] = incomplete
            # issued (accepted) but never received: nothing is shed today (docs/daq.md), counted anyway
            row["events_dropped"] = max(int(r["triggers_accepted"]) - built, 0)
            row["trigger_bits"][0] = r["trigger_bits"][:row["trigger_bits"].shape[1]]
            self.writer.write_scalers(row)
            self.scaler_rows += 1
            for name in ("beam_counts", "triggers_raw", "triggers_accepted", "busy_ticks", "events_built",
                         "events_incomplete", "events_dropped"):
                self.scaler_totals[name] += int(row[name][0])
            self.scaler_totals["final_stop_timestamp"] = int(r["stop_timestamp"])

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.files = [str(p) for p in self.writer.closed_files]
            self.writer = None

    def stats(self) -> dict[str, Any]:
        return {
            "events_written": self.events_written,
            "events_incomplete": self.incomplete,
            "bytes_written": self.bytes_written,
            "batches": self.batches,
            "write_seconds": self.write_seconds,
            "files": self.files,
            "current_file": str(self.writer.part_path) if self.writer is not None else None,
            "closed": self.writer is None and bool(self.files),
            "scaler_rows": self.scaler_rows,
            "bad_scaler_messages": self.bad_scaler_messages,
            "scaler_totals": dict(self.scaler_totals),
            "truth_rows": self.events_written if self.truth is not None else 0,
            "truth_matched": self.truth_matched,
            "trigger_steps": self.trigger_steps,
            "trigger_primitives": self.trigger_primitives,
            "bad_trigger_input_messages": self.bad_trigger_input_messages,
        }

    def close(self) -> None:
        # leaving without an end of run (run control aborted the run): what was received is
        # valid, so write it and close the file; the run summary reports the abort. A writer
        # that is killed instead leaves NAME.part, flushed up to its last batch, for
        # pokerdaq.io.recover().
        try:
            if self.writer is not None:
                if self.batch:
                    self._write_batch()
                self._write_trigger_inputs()
                self._write_scalers(final=True)   # the rows of the spills that ended are valid too
                self._close()
        finally:
            if self.sock is not None:
                self.sock.close(0)
