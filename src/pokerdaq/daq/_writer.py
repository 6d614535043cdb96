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
not written) and written once every event of the spill has gone by, in spill order, right
after the spill's last written event and before any later one: so a row is in the file that
holds the last written event of its spill (rule: docs/hdf5-layout.md, "Per-spill scalers").

No content of a message stops the writer: a built event that the file may not hold (a
sample above ``digitizer.adc_max``, a frame of the wrong size, an event number that does not
increase, a pulse of an unknown channel ...) is not written, counted by reason
(``events_rejected``) and the run goes on (docs/daq.md, "Flow control and what is counted").

Trigger inputs: the trigger processor's ``TRIGIN`` messages (one decision step and its
primitives, forwarded by the builder) are appended to ``/trigger_inputs`` of the file open
when they are written (with each batch of events, at the latest every ``TRIGIN_BATCH`` steps);
a malformed one is counted, never written. Each file also gets, with its first event, the
trigger model's state (carried by the ``TRIGIN`` messages) and the steps that make it
checkable alone (``_trigger_state.py``, docs/hdf5-layout.md "Trigger state").
"""

from __future__ import annotations

import collections
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from pokerdaq.dsp._records import PULSE_DTYPE

from ._node import Node, NodeError

if TYPE_CHECKING:
    from pokerdaq.io import RunFileWriter

FLUSH_INTERVAL_S = 0.2
TRIGIN_BATCH = 4096

log = logging.getLogger(__name__)


class Rejected:
    """Reasons for which the writer does not write a built event (``events_rejected`` keys)."""

    BAD_MESSAGE = "bad_message"  # not an EV / SCALERS / END message of the builder
    BAD_HEADER = "bad_header"  # header frame not one EVENT_DTYPE record
    BAD_SAMPLES = "bad_samples"  # samples frame not n_channels x window_samples u16
    BAD_PULSES = "bad_pulses"  # pulses frame not n_pulses PULSE_DTYPE records
    EVENT_ORDER = "event_order"  # event number not above the last one received
    SAMPLE_ABOVE_ADC_MAX = "sample_above_adc_max"
    BAD_PULSE_CHANNEL = "bad_pulse_channel"  # a pulse of a channel the channel map does not have
    WRITER_VALIDATION = "writer_validation"  # anything else pokerdaq.io.RunFileWriter refuses


class WriterNode(Node):
    def __init__(self, cfg, name, control_endpoint, params) -> None:
        super().__init__(cfg, name, control_endpoint, params)
        from pokerdaq.io._records import EVENT_DTYPE

        self.EVENT_DTYPE = EVENT_DTYPE
        self.path = Path(params["output"])
        self.n_channels = len(cfg.channel_map)
        self.window = cfg.digitizer.window_samples
        self.batch: list[tuple[np.ndarray, bytes, bytes]] = []
        self.sample_bytes = self.n_channels * self.window * 2
        self.rejected: collections.Counter = collections.Counter()  # events not written, by reason
        self.last_rejection = ""
        self.last_received = -1  # highest event number received (written or rejected): gone by
        self.last_write = time.monotonic()
        self.writer: RunFileWriter | None = None
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
        self.scaler_rows = 0
        self.bad_scaler_messages = 0
        self.scaler_totals: collections.Counter[str] = collections.Counter()
        from pokerdaq.io import TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE

        self.trigin_dtypes = (TRIGGER_STEP_DTYPE, TRIGGER_PRIMITIVE_DTYPE)
        self.trigin: list[tuple[np.ndarray, np.ndarray]] = []
        self.trigger_steps = 0
        self.trigger_primitives = 0
        self.bad_trigger_input_messages = 0
        # the trigger state stored in each file of a rotated run (_trigger_state.py)
        from ._trigger_state import StateHistory

        self.state_history = StateHistory()
        self.trigin_file_first_slice: dict[int, int] = {}  # file index -> first slice of its own steps
        self.trigger_state_files = 0
        self.trigger_state_bytes = 0
        # emulator truth (module docstring)
        self.truth = None
        if cfg.daq.front_end in ("physics", "physics-stream"):
            from pokerdaq.sim import build_tables
            from pokerdaq.sim._beam import BeamTimeline, use_block_store
            from pokerdaq.trigger._chain import stream_config

            # the boards' blocks: truth from the run's one time line (set for every run: a node
            # host keeps the module state from one run to the next)
            use_block_store(params.get("block_store") or None)
            scfg = stream_config(cfg)  # what the boards' emulator runs with
            self.truth = (BeamTimeline(scfg, int(params["seed"])), build_tables(scfg).lookback_ns)
        self.truth_matched = 0
        from ._display import DisplayTap

        self.display = DisplayTap(cfg, int(params["run_number"]))  # spectra + latest event, lossy (_display.py)
        # CPU seconds (this thread) by stage, for the benchmarks (bench/bench_daq.py)
        self.stage_cpu: collections.defaultdict[str, float] = collections.defaultdict(float)

    def bind(self) -> dict[str, str]:
        self.sock = self.socket(zmq.PULL, hwm=max(2, self.cfg.daq.hwm // 4))
        return {"records": self.bind_socket(self.sock, self.params["endpoints"]["records"])}

    def connect(self, endpoints: dict[str, str]) -> None:
        self.display.connect(self.ctx, endpoints, self.cfg.daq.display_hwm, self.keys)

    def on_start(self) -> None:
        from pokerdaq.io import RunFileWriter

        daq = self.cfg.daq
        self.writer = RunFileWriter(
            self.path,
            self.cfg,
            producer="pokerdaq run",
            rotate_events=daq.rotate_events or None,
            rotate_bytes=daq.rotate_bytes or None,
            flush_every_events=max(1, daq.writer_batch_events),
            overwrite=bool(self.params.get("overwrite", False)),
            trigger_seed=int(self.params["seed"]),
        )
        self.writer.first_event_hook = self._store_trigger_state

    def sockets(self):
        return [(self.sock, zmq.POLLIN)] if self.end_info is None else []

    def step(self, ready: dict) -> bool:
        if self.end_info is not None:
            return False
        got = 0
        # only a readable socket is read (a receive that raises zmq.Again costs as much as one that gets)
        while self.sock in ready and len(self.batch) < self.cfg.daq.writer_batch_events:
            try:
                frames = self.need(self.sock, "records").recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            got += 1
            if frames[0] == b"END" and len(frames) == 2:
                self.end_info = self._end_info(frames[1])
                break
            if frames[0] == b"SCALERS" and len(frames) == 2:
                self._on_scaler_row(frames[1])
                continue
            if frames[0] == b"TRIGIN" and len(frames) in (3, 4):
                self._on_trigger_inputs(frames[1], frames[2], frames[3] if len(frames) == 4 else None)
                continue
            self._on_event(frames)
        if self.batch and (
            len(self.batch) >= self.cfg.daq.writer_batch_events
            or self.end_info is not None
            or time.monotonic() - self.last_write > FLUSH_INTERVAL_S
        ):
            self._write_batch()
        if len(self.trigin) >= TRIGIN_BATCH or (self.trigin and self.end_info is not None):
            self._write_trigger_inputs()
        # events still in the batch have not gone by: a row waits for them
        gone = self.last_received if not self.batch else int(self.batch[0][0]["event_number"][0]) - 1
        self._write_scalers(gone, final=self.end_info is not None)
        self.display.tick(force=self.end_info is not None)
        if self.end_info is not None:
            self._close()
            self.notify_drained()
        return got > 0

    @staticmethod
    def _end_info(body: bytes) -> dict:
        try:
            info = json.loads(body)
        except ValueError:
            info = None
        return info if isinstance(info, dict) else {}  # the end of the run all the same

    def _reject(self, reason: str, why: str, n: int = 1) -> None:
        if not self.rejected[reason]:  # the first of each reason is logged, all are counted
            log.warning("writer: event not written (%s): %s", reason, why)
        self.rejected[reason] += n
        self.last_rejection = f"{reason}: {why}"

    def _on_event(self, frames: list[bytes]) -> None:
        """Check the frames of one built event (sizes, order); a bad one is counted, never raised."""
        if len(frames) != 4 or frames[0] != b"EV":
            self._reject(Rejected.BAD_MESSAGE, f"{len(frames)} frames, first {bytes(frames[0][:8])!r}")
            return
        if len(frames[1]) != self.EVENT_DTYPE.itemsize:
            self._reject(Rejected.BAD_HEADER, f"header of {len(frames[1])} bytes, expected {self.EVENT_DTYPE.itemsize}")
            return
        header = np.frombuffer(frames[1], dtype=self.EVENT_DTYPE)
        number = int(header["event_number"][0])
        if number <= self.last_received:
            self._reject(Rejected.EVENT_ORDER, f"event {number} after event {self.last_received}")
            return
        self.last_received = number
        if len(frames[2]) != self.sample_bytes:
            self._reject(
                Rejected.BAD_SAMPLES, f"event {number}: {len(frames[2])} sample bytes, expected {self.sample_bytes}"
            )
            return
        want = int(header["n_pulses"][0]) * PULSE_DTYPE.itemsize
        if len(frames[3]) != want:
            self._reject(Rejected.BAD_PULSES, f"event {number}: {len(frames[3])} pulse bytes, expected {want}")
            return
        self.batch.append((header, frames[2], frames[3]))

    def _content_ok(self, headers: np.ndarray, samples: np.ndarray, pulses: np.ndarray) -> np.ndarray:
        """Events whose content the file may hold; the others are counted by reason."""
        adc_max = self.cfg.digitizer.adc_max
        ok = samples.reshape(len(headers), -1).max(axis=1) <= adc_max
        for i in np.flatnonzero(~ok).tolist():
            self._reject(
                Rejected.SAMPLE_ABOVE_ADC_MAX,
                f"event {int(headers['event_number'][i])}: sample "
                f"{int(samples[i].max())} above digitizer.adc_max = {adc_max}",
            )
        if len(pulses):
            owner = np.repeat(np.arange(len(headers)), headers["n_pulses"].astype(np.int64))
            bad = np.unique(owner[pulses["channel"] >= self.n_channels])
            for i in bad.tolist():
                if ok[i]:
                    self._reject(
                        Rejected.BAD_PULSE_CHANNEL,
                        f"event {int(headers['event_number'][i])}: a pulse of channel >= {self.n_channels}",
                    )
            ok[bad] = False
        return ok

    def _write_batch(self) -> None:
        """Write the batch: its events in order, each spill's row right after the spill's last event."""
        t0 = time.perf_counter()
        headers = np.concatenate([h for h, _, _ in self.batch])
        samples = np.frombuffer(b"".join(s for _, s, _ in self.batch), dtype=np.uint16)
        samples = samples.reshape(len(self.batch), self.n_channels, self.window)
        pulses = np.frombuffer(b"".join(p for _, _, p in self.batch), dtype=PULSE_DTYPE)
        seen = int(headers["event_number"][-1])
        self.batch = []
        ok = self._content_ok(headers, samples, pulses)
        if not ok.all():
            keep_pulses = np.repeat(ok, headers["n_pulses"].astype(np.int64))
            headers, samples, pulses = headers[ok], samples[ok], pulses[keep_pulses]
        offsets = np.zeros(len(headers) + 1, np.int64)
        np.cumsum(headers["n_pulses"], out=offsets[1:])
        numbers = headers["event_number"]
        start = 0
        while start < len(headers) and self.pending_rows:
            end = int(self.pending_rows[0]["end_event"])
            if seen < end - 1:
                break  # the oldest open spill goes on beyond this batch
            cut = int(np.searchsorted(numbers, end))
            if cut > start:
                self._write_events(headers[start:cut], samples[start:cut], pulses[offsets[start] : offsets[cut]])
                start = cut
            self._write_scalers(seen, final=False, only_one=True)
        if start < len(headers):
            self._write_events(headers[start:], samples[start:], pulses[offsets[start] :])
        self.batches += 1
        if self.cfg.daq.writer_delay_s:
            time.sleep(self.cfg.daq.writer_delay_s)  # test-only slow-disk emulation (daq.writer_delay_s)
        self.last_write = time.monotonic()
        self.write_seconds += time.perf_counter() - t0

    def _write_events(self, headers: np.ndarray, samples: np.ndarray, pulses: np.ndarray) -> None:
        """Write events; should the file writer still refuse some, write the others one by one."""
        try:
            self._write_checked(headers, samples, pulses)
        except ValueError as err:  # raised before anything is written (RunFileWriter.write_events)
            log.warning("writer: batch of %d events refused (%s); writing them one by one", len(headers), err)
            offsets = np.zeros(len(headers) + 1, np.int64)
            np.cumsum(headers["n_pulses"], out=offsets[1:])
            for i in range(len(headers)):
                try:
                    self._write_checked(headers[i : i + 1], samples[i : i + 1], pulses[offsets[i] : offsets[i + 1]])
                except ValueError as one:
                    self._reject(Rejected.WRITER_VALIDATION, f"event {int(headers['event_number'][i])}: {one}")

    def _write_checked(self, headers: np.ndarray, samples: np.ndarray, pulses: np.ndarray) -> None:
        if not len(headers):
            return
        truth = None
        if self.truth is not None:
            from pokerdaq.io._records import EventFlags
            from pokerdaq.sim import window_truth

            timeline, lookback_ns = self.truth
            ref = headers["timestamp"].astype(np.int64)
            c0 = time.thread_time()
            truth = window_truth(timeline, ref, ref - self.cfg.digitizer.pretrigger_samples, self.window, lookback_ns)
            self.stage_cpu["truth"] += time.thread_time() - c0
            headers["flags"] |= np.uint32(EventFlags.SIMULATED)
        c0 = time.thread_time()
        self._write_trigger_inputs()  # the decisions of these events (and later ones) first
        writer = self.writer
        if writer is None:
            raise NodeError("events before the run file was opened (start comes first)")
        writer.write_events(headers, samples, pulses, truth)
        self.state_history.trim(int(headers["event_number"][-1]) + 1)
        self.display.observe(headers, samples, pulses)
        self.stage_cpu["file"] += time.thread_time() - c0
        if truth is not None:
            self.truth_matched += int((truth["species"] >= 0).sum())
        self._count_spill_events(headers)
        self.events_written += len(headers)
        self.incomplete += int((headers["missing_boards"] != 0).sum())
        self.bytes_written += headers.nbytes + samples.nbytes + pulses.nbytes

    _ROW_KEYS = (
        "spill",
        "start_timestamp",
        "stop_timestamp",
        "beam_counts",
        "triggers_raw",
        "triggers_accepted",
        "busy_ticks",
        "trigger_bits",
        "first_event",
        "end_event",
    )

    def _on_scaler_row(self, body: bytes) -> None:
        """A spill row of the trigger processor: kept until its events have gone by; a malformed one is counted."""

        def count(v) -> bool:  # what a uint64 column holds
            return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64

        try:
            row = json.loads(body)
            bits = row.get("trigger_bits") if isinstance(row, dict) else None
            ok = (
                all(count(row.get(k)) for k in self._ROW_KEYS if k != "trigger_bits")
                and isinstance(bits, list)
                and len(bits) == 32
                and all(count(b) for b in bits)
            )
        except ValueError:
            ok = False
        if not ok:
            self.bad_scaler_messages += 1
            return
        self.pending_rows.append(row)

    def _on_trigger_inputs(self, step: bytes, prims: bytes, state: bytes | None = None) -> None:
        """A decision step, its primitives (and the trigger model's state before it): kept for
        the next write; a malformed one is counted."""
        step_dtype, prim_dtype = self.trigin_dtypes
        if (
            len(step) != step_dtype.itemsize
            or len(prims) % prim_dtype.itemsize
            or (state is not None and (len(state) % 8 or not state))
        ):
            self.bad_trigger_input_messages += 1
            return
        row = np.frombuffer(step, dtype=step_dtype)
        p = np.frombuffer(prims, dtype=prim_dtype)
        if int(row["n_primitives"][0]) != len(p):
            self.bad_trigger_input_messages += 1
            return
        self.trigin.append((row, p))
        self.state_history.add(row, p, None if state is None else np.frombuffer(state, dtype=np.int64))

    def _store_trigger_state(self, first_event: int) -> None:
        """A file gets its first event: store the state and steps that make it checkable alone."""
        from pokerdaq.trigger import STATE_VERSION

        writer = self.writer
        assert writer is not None  # called by it
        found = self.state_history.for_file(first_event, self.trigin_file_first_slice.get(writer.file_index))
        if found is None:
            return
        first_slice, state, steps, prims = found
        writer.write_trigger_state(first_slice, state, steps, prims, STATE_VERSION)
        self.trigger_state_files += 1
        self.trigger_state_bytes += state.nbytes + steps.nbytes + prims.nbytes

    def _write_trigger_inputs(self) -> None:
        if not self.trigin or self.writer is None:
            return
        steps = np.concatenate([s for s, _ in self.trigin])
        prims = np.concatenate([p for _, p in self.trigin])
        self.writer.write_trigger_inputs(steps, prims)
        self.trigin_file_first_slice.setdefault(self.writer.file_index, int(steps["first_slice"][0]))
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

    def _write_scalers(self, seen: int, final: bool = False, only_one: bool = False) -> None:
        """Write the spill rows whose events have all gone by (event ``seen`` received; all at the end)."""
        from pokerdaq.io._records import SCALER_DTYPE

        while self.pending_rows and self.writer is not None:
            r = self.pending_rows[0]
            if not final and seen < int(r["end_event"]) - 1:
                return  # events of this spill are still to come
            self.pending_rows.popleft()
            built, incomplete = self.spill_events.pop(int(r["spill"]), (0, 0))
            row = np.zeros(1, dtype=SCALER_DTYPE)
            for name in (
                "spill",
                "start_timestamp",
                "stop_timestamp",
                "beam_counts",
                "triggers_raw",
                "triggers_accepted",
                "busy_ticks",
            ):
                row[name] = r[name]
            row["events_built"] = built
            row["events_incomplete"] = incomplete
            # issued (accepted) but not written: never received, or rejected here (events_rejected)
            row["events_dropped"] = max(int(r["triggers_accepted"]) - built, 0)
            row["trigger_bits"][0] = r["trigger_bits"][: row["trigger_bits"].shape[1]]
            self.writer.write_scalers(row)
            self.scaler_rows += 1
            for name in (
                "beam_counts",
                "triggers_raw",
                "triggers_accepted",
                "busy_ticks",
                "events_built",
                "events_incomplete",
                "events_dropped",
            ):
                self.scaler_totals[name] += int(row[name][0])
            self.scaler_totals["final_stop_timestamp"] = int(r["stop_timestamp"])
            if only_one:
                return

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
            "events_rejected": dict(self.rejected),
            "last_rejection": self.last_rejection,
            "events_flushed": self.writer.n_events_flushed if self.writer is not None else self.events_written,
            "scaler_rows": self.scaler_rows,
            "bad_scaler_messages": self.bad_scaler_messages,
            "scaler_totals": dict(self.scaler_totals),
            "truth_rows": self.events_written if self.truth is not None else 0,
            "truth_matched": self.truth_matched,
            "trigger_steps": self.trigger_steps,
            "trigger_primitives": self.trigger_primitives,
            "bad_trigger_input_messages": self.bad_trigger_input_messages,
            "trigger_state_files": self.trigger_state_files,
            "trigger_state_bytes": self.trigger_state_bytes,
            "trigger_state_steps_shed": self.state_history.shed,
            "files_without_trigger_state": self.state_history.files_without_state,
            **self.display.stats(),
            "stage_cpu_s": dict(self.stage_cpu),
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
                self._write_scalers(self.last_received, final=True)  # the rows of the spills that ended are valid too
                self._close()
        finally:
            self.display.close()
            if self.sock is not None:
                self.sock.close(0)
