"""Writer process: built events from the event builder -> :class:`pokerdaq.io.RunFileWriter`.

A PULL (bound, ``records`` endpoint) receives events in event-number order; they are
appended in batches of ``daq.writer_batch_events`` (or after 0.2 s). The end-of-run message
of the builder closes the file: ``NAME.part`` is renamed to ``NAME`` with
``closed_cleanly`` set. ``daq.writer_delay_s`` adds an artificial delay per batch: a slow
disk, for the backpressure tests only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from pokerdaq.dsp._records import PULSE_DTYPE

from ._node import Node, NodeError

FLUSH_INTERVAL_S = 0.2


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
            if frames[0] != b"EV" or len(frames) != 4:
                raise NodeError("malformed message from the event builder")
            self.batch.append((np.frombuffer(frames[1], dtype=self.EVENT_DTYPE), frames[2], frames[3]))
        if self.batch and (len(self.batch) >= self.cfg.daq.writer_batch_events or self.end_info is not None
                           or time.monotonic() - self.last_write > FLUSH_INTERVAL_S):
            self._write_batch()
        if self.end_info is not None:
            self._write_scalers()
            self._close()
            self.notify_drained()
        return got > 0

    def _write_batch(self) -> None:
        t0 = time.perf_counter()
        headers = np.concatenate([h for h, _, _ in self.batch])
        samples = np.frombuffer(b"".join(s for _, s, _ in self.batch), dtype=np.uint16)
        samples = samples.reshape(len(self.batch), self.n_channels, self.window)
        pulses = np.frombuffer(b"".join(p for _, _, p in self.batch), dtype=PULSE_DTYPE)
        self.writer.write_events(headers, samples, pulses)
        self.events_written += len(headers)
        self.incomplete += int((headers["missing_boards"] != 0).sum())
        self.bytes_written += headers.nbytes + samples.nbytes + pulses.nbytes
        self.batches += 1
        self.batch = []
        if self.cfg.daq.writer_delay_s:
            time.sleep(self.cfg.daq.writer_delay_s)  # test-only slow-disk emulation (daq.writer_delay_s)
        self.last_write = time.monotonic()
        self.write_seconds += time.perf_counter() - t0

    def _write_scalers(self) -> None:
        """One /scalers row for the whole run (the DAQ does not follow spills yet)."""
        from pokerdaq.io._records import SCALER_DTYPE
        trig = (self.end_info or {}).get("trigger_scalers")
        built = (self.end_info or {}).get("stats", {})
        if not trig or self.writer is None:
            return
        row = np.zeros(1, dtype=SCALER_DTYPE)
        row["spill"] = 0
        row["start_timestamp"] = 0
        row["stop_timestamp"] = trig["ticks"]
        row["triggers_raw"] = trig["candidates"]      # summed over the trigger types
        row["triggers_accepted"] = trig["accepted"]
        row["events_built"] = built.get("events_built", 0)
        row["events_incomplete"] = built.get("events_incomplete", 0)
        row["events_dropped"] = 0          # the DAQ sheds no event (see docs/daq.md)
        row["busy_ticks"] = trig["busy_ticks"]
        row["trigger_bits"][0] = trig["trigger_bits"][:row["trigger_bits"].shape[1]]
        self.writer.write_scalers(row)

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
                self._close()
        finally:
            if self.sock is not None:
                self.sock.close(0)
