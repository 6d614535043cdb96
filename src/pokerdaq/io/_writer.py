"""RunFileWriter: append events to HDF5 run files with the layout of docs/hdf5-layout.md."""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

import pokerdaq
from pokerdaq.config import CHANNEL_DTYPE, Config
from pokerdaq.dsp._records import PULSE_DTYPE

from . import _layout as L
from ._records import (
    EVENT_DTYPE,
    SCALER_DTYPE,
    STORED_PULSE_DTYPE,
    TRIGGER_PRIMITIVE_DTYPE,
    TRIGGER_STEP_DTYPE,
    layout_version_json,
)

log = logging.getLogger(__name__)


_STATE_NAMES = (L.TRIGGER_STATE, L.TRIGGER_STATE_STEPS, L.TRIGGER_STATE_PRIMITIVES)


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with microseconds, e.g. ``2026-11-21T20:00:00.000000+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def config_text(config: Config) -> str:
    """The TOML text to store: the effective configuration (``Config.text``, never empty)."""
    return config.text


@dataclass
class _Batch:
    """A validated batch of events, ready to be written (possibly split across files)."""

    headers: np.ndarray  # EVENT_DTYPE (n,)
    samples: np.ndarray  # uint16 (n, n_channels, window)
    crc32: np.ndarray  # uint32 (n,)
    pulses: np.ndarray  # STORED_PULSE_DTYPE (sum n_pulses,)
    pulse_offsets: np.ndarray  # int64 (n + 1,)
    truth: np.ndarray | None  # (n,) or None

    def __len__(self) -> int:
        return len(self.headers)

    def slice(self, i: int, j: int) -> _Batch:
        """Events i:j (views), with their pulses."""
        p0, p1 = int(self.pulse_offsets[i]), int(self.pulse_offsets[j])
        return _Batch(
            self.headers[i:j],
            self.samples[i:j],
            self.crc32[i:j],
            self.pulses[p0:p1],
            self.pulse_offsets[i : j + 1] - p0,
            None if self.truth is None else self.truth[i:j],
        )

    def event_bytes(self) -> np.ndarray:
        """Uncompressed bytes of each event: header, samples, crc, its pulses and truth row."""
        n = len(self.headers)
        fixed = EVENT_DTYPE.itemsize + self.samples[0].nbytes + 4 if n else 0
        per = np.full(n, fixed, dtype=np.int64)
        per += np.diff(self.pulse_offsets) * STORED_PULSE_DTYPE.itemsize
        if self.truth is not None:
            per += self.truth.dtype.itemsize
        return per


class RunFileWriter:
    """Write a run's events into one or more HDF5 files (sub-runs), crash-safely.

    The file is created as ``NAME.part``, written in HDF5 SWMR mode, flushed every
    ``flush_every_events`` events or ``flush_interval_s`` seconds (checked at each write), and
    renamed to ``NAME`` by :meth:`close`. A writer killed between flushes leaves a ``.part``
    file that :func:`pokerdaq.io.recover` turns into a final file with every event up to the
    last flush. Layout: docs/hdf5-layout.md. One thread writes; the writer has no thread of its
    own and handles no signals (a SIGTERM handler of the caller calls :meth:`close`).

    Parameters
    ----------
    path
        Final name of the first file, e.g. ``run_000123.h5``. Later files of the run (rotation)
        are ``run_000123_0001.h5``, ``run_000123_0002.h5`` ...
    config
        The run configuration: its text is stored, its channel map and digitizer window fix the
        shape of ``samples``.
    producer
        Free text naming the program that wrote the file (``"run"``, ``"simulate"`` ...).
    rotate_events
        Start a new file before an event that would make the current one hold more than this
        many events (None: never). A full file is closed when the next event arrives or at
        :meth:`close`, so scaler rows written in between join the events before them.
    rotate_bytes
        Start a new file before an event that would take the uncompressed event data of the
        current file (headers, samples, checksums, pulses, truth) above this many bytes. The
        file on disk is smaller (compressed). A single larger event still gets a file.
    flush_every_events
        Flush (make the data durable and visible to readers) after this many events.
    flush_interval_s
        Also flush when this much time has passed since the last flush, at the next write.
    compression
        ``"gzip"`` (deflate + shuffle, readable by any HDF5 tool), ``"zstd"`` (Blosc2 zstd +
        bit-shuffle), ``"lz4"`` (Blosc2) or ``"none"``; None: the configuration's
        ``daq.compression``.
    overwrite
        Replace existing files of the same names instead of refusing.
    channels
        Channel numbers of ``config.channel_map`` that were recorded, in the order of the
        samples' channel axis (``pokerdaq import``: a digitizer that read a subset); None:
        every channel of the map.

    Raises
    ------
    ValueError
        For a bad argument, naming it and its value.
    FileExistsError
        When the file or its ``.part`` already exists and ``overwrite`` is false.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: Config,
        *,
        producer: str = "run",
        rotate_events: int | None = None,
        rotate_bytes: int | None = None,
        flush_every_events: int = 1000,
        flush_interval_s: float = 1.0,
        compression: str | None = None,
        overwrite: bool = False,
        channels: np.ndarray | None = None,
        trigger_seed: int | None = None,
    ) -> None:
        if not isinstance(config, Config):
            raise ValueError(f"config: {type(config).__name__} given, expected a pokerdaq.config.Config")
        for name, value in (("rotate_events", rotate_events), ("rotate_bytes", rotate_bytes)):
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name}: {value!r}, expected None or an integer >= 1")
        if (
            not isinstance(flush_every_events, (int, np.integer))
            or isinstance(flush_every_events, bool)
            or flush_every_events < 1
        ):
            raise ValueError(f"flush_every_events: {flush_every_events!r}, expected an integer >= 1")
        if not (isinstance(flush_interval_s, (int, float)) and flush_interval_s > 0):
            raise ValueError(f"flush_interval_s: {flush_interval_s!r}, expected a number > 0")
        if compression is None:
            compression = config.daq.compression
        self._filter = L.compression_filter(compression)  # raises ValueError naming compression
        if not isinstance(producer, str) or not producer:
            raise ValueError(f"producer: {producer!r}, expected a non-empty string")

        self.config = config
        self.first_path = Path(path)
        self.producer = producer
        self.compression = compression
        self.rotate_events = None if rotate_events is None else int(rotate_events)
        self.rotate_bytes = None if rotate_bytes is None else int(rotate_bytes)
        self.flush_every_events = int(flush_every_events)
        self.flush_interval_s = float(flush_interval_s)
        self._overwrite = overwrite
        self.trigger_seed = None if trigger_seed is None else int(trigger_seed)
        self._config_text = config_text(config)
        self._channel_table = np.asarray(config.channel_map.table, dtype=CHANNEL_DTYPE)
        if channels is not None:
            chans = np.asarray(channels)
            if (
                chans.ndim != 1
                or chans.dtype.kind not in "iu"
                or not len(chans)
                or len(np.unique(chans)) != len(chans)
                or chans.min() < 0
                or chans.max() >= len(self._channel_table)
            ):
                raise ValueError(
                    f"channels: {chans!r}, expected distinct channel numbers "
                    f"0..{len(self._channel_table) - 1} of the channel map"
                )
            self._channel_table = self._channel_table[chans]
        self.n_channels = len(self._channel_table)
        self.window_samples = int(config.digitizer.window_samples)
        self._adc_max = int(config.digitizer.adc_max)
        event_nbytes = self.n_channels * self.window_samples * 2
        self._sample_chunk_events = max(1, L.SAMPLE_CHUNK_BYTES // event_nbytes)

        self.closed_files: list[Path] = []
        """Final paths of the files closed so far, in order."""
        self.n_events_total = 0
        """Events written by this writer, all files together."""
        self._truth_dtype: np.dtype | None = None
        self._run_has_truth: bool | None = None  # decided by the first non-empty batch
        self._last_event_number: int | None = None
        self._file_index = 0
        self._n_closed_files = 0  # events in the files closed so far
        self._h5: h5py.File | None = None
        self._closed = False
        self.first_event_hook: Callable[[int], None] | None = None
        """Called with the event number before a file's first events are written (the DAQ writer
        stores the trigger state there with :meth:`write_trigger_state`)."""
        self._open_file()

    # ------------------------------------------------------------------ public API

    @property
    def path(self) -> Path:
        """Final name of the file being written (or of the next one, between rotations)."""
        return L.rotated_path(self.first_path, self._file_index)

    @property
    def part_path(self) -> Path:
        """Name of the file being written: :attr:`path` + ``.part``."""
        return L.part_path(self.path)

    @property
    def file_index(self) -> int:
        """Index of the current file within the run (0 for the first)."""
        return self._file_index

    @property
    def n_events(self) -> int:
        """Events in the current file."""
        return self._n

    @property
    def n_events_flushed(self) -> int:
        """Events made durable so far, all files together: the closed files' and the current
        file's ``n_events`` attribute (what :func:`pokerdaq.io.recover` finds after a crash)."""
        return self._n_closed_files + (self._n_flushed if self._h5 is not None else 0)

    def write_events(
        self,
        headers: np.ndarray,
        samples: np.ndarray,
        pulses: np.ndarray | None = None,
        truth: np.ndarray | None = None,
    ) -> None:
        """Append events.

        Parameters
        ----------
        headers
            ``EVENT_DTYPE`` array (n,). ``event_number`` must increase strictly, also across
            calls. ``n_pulses`` says how many of ``pulses`` belong to each event.
        samples
            uint16 array (n, n_channels, window_samples), values <= ``digitizer.adc_max``.
        pulses
            The pulses of these events in event order, either ``PULSE_DTYPE`` rows (event link
            taken from ``headers['n_pulses']``) or ``STORED_PULSE_DTYPE`` rows (their
            ``event_number`` must repeat each header's number ``n_pulses`` times). None: no
            pulses, then every ``n_pulses`` must be 0.
        truth
            A structured array with one row per event (same dtype for the whole run), or None.
            Whether a run has truth is fixed by its first non-empty call.

        Raises
        ------
        ValueError
            Naming the argument and the value, before anything is written.
        """
        self._check_open()
        batch = self._validate(headers, samples, pulses, truth)
        n = len(batch.headers)
        if n == 0:
            return
        if self._run_has_truth is None:
            self._run_has_truth = batch.truth is not None
            self._truth_dtype = None if batch.truth is None else batch.truth.dtype
        sizes = batch.event_bytes()
        start = 0
        while start < n:
            if self._h5 is None:
                self._open_file()
            if self._run_has_truth and not self._has_truth_dataset:
                self._add_truth_dataset()
            k = self._events_that_fit(sizes[start:])
            if k == 0:
                self._rotate()
                continue
            self._append(batch, start, start + k, int(sizes[start : start + k].sum()))
            start += k
        # a full file stays open until the next event arrives (or close()): scaler rows written
        # now still join the file that holds the events before them (docs/hdf5-layout.md, Rotation)
        self.n_events_total += n
        if self._h5 is not None and (
            self._since_flush >= self.flush_every_events or time.monotonic() - self._last_flush >= self.flush_interval_s
        ):
            self.flush()

    def write_scalers(self, spill_scalers: np.ndarray) -> None:
        """Append per-spill scaler rows (``SCALER_DTYPE``) to the current file: the one that
        holds the last event written (a full file is still open until the next event).

        Raises
        ------
        ValueError
            For a wrong dtype or shape, before anything is written.
        """
        self._check_open()
        arr = np.asarray(spill_scalers)
        if arr.dtype != SCALER_DTYPE:
            raise ValueError(f"spill_scalers: dtype {arr.dtype}, expected pokerdaq.io.SCALER_DTYPE {SCALER_DTYPE}")
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            raise ValueError(f"spill_scalers: shape {arr.shape}, expected one dimension (spills,)")
        if len(arr) == 0:
            return
        if self._h5 is None:
            self._open_file()
        ds = self._ds[L.SCALERS]
        m = ds.shape[0]
        ds.resize((m + len(arr),))
        ds[m:] = arr
        self.flush()

    def write_trigger_inputs(self, steps: np.ndarray, primitives: np.ndarray) -> None:
        """Append decision steps of the online trigger and their primitives to the current file.

        ``steps`` (``TRIGGER_STEP_DTYPE``): one row per decision of the trigger processor, in
        order; ``primitives`` (``TRIGGER_PRIMITIVE_DTYPE``): those of the steps, concatenated
        (``sum(steps["n_primitives"])`` rows). docs/hdf5-layout.md, "Trigger inputs".

        Raises
        ------
        ValueError
            For a wrong dtype or a primitive count that does not add up, before anything is written.
        """
        self._check_open()
        steps, primitives = np.atleast_1d(np.asarray(steps)), np.atleast_1d(np.asarray(primitives))
        if steps.dtype != TRIGGER_STEP_DTYPE or primitives.dtype != TRIGGER_PRIMITIVE_DTYPE:
            raise ValueError(
                f"trigger inputs: dtypes {steps.dtype} / {primitives.dtype}, expected "
                "pokerdaq.io TRIGGER_STEP_DTYPE / TRIGGER_PRIMITIVE_DTYPE"
            )
        if int(steps["n_primitives"].sum()) != len(primitives):
            raise ValueError(
                f"trigger inputs: steps hold {int(steps['n_primitives'].sum())} primitives, {len(primitives)} given"
            )
        if len(steps) == 0:
            return
        if self._h5 is None:
            self._open_file()
        for name, arr in ((L.TRIGGER_PRIMITIVES, primitives), (L.TRIGGER_STEPS, steps)):  # steps last
            ds = self._ds[name]
            m = ds.shape[0]
            ds.resize((m + len(arr),))
            ds[m:] = arr

    def write_trigger_state(
        self, first_slice: int, state: np.ndarray, steps: np.ndarray, primitives: np.ndarray, version: int
    ) -> None:
        """Store in the current file the trigger model's state before the step of slice
        ``first_slice`` (int64 words of ``pokerdaq.trigger.model_state``, format ``version``) and
        the steps (with their primitives) from there up to the file's own first step, which lie
        in earlier files. Once per file. docs/hdf5-layout.md, "Trigger state".

        Raises
        ------
        ValueError
            For wrong dtypes, a primitive count that does not add up, or a second call for one file.
        """
        self._check_open()
        state = np.atleast_1d(np.asarray(state))
        if state.dtype != np.int64 or state.ndim != 1 or not len(state):
            raise ValueError(f"trigger state: {state.dtype} shape {state.shape}, expected int64 words")
        if (
            steps.dtype != TRIGGER_STEP_DTYPE
            or primitives.dtype != TRIGGER_PRIMITIVE_DTYPE
            or int(steps["n_primitives"].sum()) != len(primitives)
        ):
            raise ValueError("trigger state: steps / primitives of the wrong dtype or count")
        if self._h5 is None:
            self._open_file()
        ds = self._ds[L.TRIGGER_STATE]
        if ds.shape[0]:
            raise ValueError(f"trigger state: {str(self.part_path)!r} holds one already")
        for name, arr in ((L.TRIGGER_STATE_PRIMITIVES, primitives), (L.TRIGGER_STATE_STEPS, steps)):
            self._ds[name].resize((len(arr),))
            self._ds[name][:] = arr
        ds.resize((len(state),))
        ds[:] = state  # last: a state present means its steps are written
        ds.attrs["first_slice"] = np.int64(first_slice)
        ds.attrs["state_version"] = np.int64(version)

    def flush(self) -> None:
        """Make everything written so far durable, then publish the new event count.

        Data first, then the ``n_events`` attribute, then a second flush: a reader (or
        :func:`recover`) that trusts ``n_events`` rows never sees a half-written event.
        """
        if self._h5 is None:
            return
        self._h5.flush()
        a = self._h5.attrs
        a["n_events"] = np.uint64(self._n)
        a["n_pulses"] = np.uint64(self._n_pulses)
        a["n_scalers"] = np.uint64(self._ds[L.SCALERS].shape[0])
        a["n_trigger_steps"] = np.uint64(self._ds[L.TRIGGER_STEPS].shape[0])
        a["n_trigger_primitives"] = np.uint64(self._ds[L.TRIGGER_PRIMITIVES].shape[0])
        if self._n and self._first_event_number is not None and self._last_event_number is not None:  # set together
            a["first_event_number"] = np.uint64(self._first_event_number)
            a["last_event_number"] = np.uint64(self._last_event_number)
        self._h5.flush()
        self._since_flush = 0
        self._last_flush = time.monotonic()
        self._n_flushed = self._n

    def close(self) -> None:
        """Flush, write ``stop_time_utc`` and ``closed_cleanly``, rename ``.part`` to the final name.

        Idempotent. After it, :attr:`closed_files` lists every file of the run.
        """
        if self._closed:
            return
        self._closed = True
        if self._h5 is not None:
            self._close_file()

    def __enter__(self) -> RunFileWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ files

    def _open_file(self) -> None:
        final = self.path
        part = L.part_path(final)
        for p in (final, part):
            if p.exists() and not self._overwrite:
                hint = " (left by a writer that died? pokerdaq.io.recover() makes it final)" if p == part else ""
                raise FileExistsError(f"path: {str(p)!r} exists{hint}; pass overwrite=True to replace it")
        if final.exists():
            final.unlink()
        final.parent.mkdir(parents=True, exist_ok=True)
        h5 = h5py.File(part, "w", libver=L.LIBVER, rdcc_nbytes=L.CHUNK_CACHE_BYTES, rdcc_nslots=10007)
        try:
            self._create_layout(h5)
            if self._run_has_truth:
                self._create_truth(h5)
            h5.flush()
            # SWMR from the start: a file whose writer dies stays readable (SWMR read) at any time
            h5.swmr_mode = True
        except BaseException:
            h5.close()
            part.unlink(missing_ok=True)
            raise
        self._h5 = h5
        self._ds = {
            name: h5[name]
            for name in (
                L.EVENTS,
                L.SAMPLES,
                L.CRC32,
                L.PULSES,
                L.SCALERS,
                L.TRUTH,
                L.TRIGGER_STEPS,
                L.TRIGGER_PRIMITIVES,
                *_STATE_NAMES,
            )
            if name in h5
        }
        self._has_truth_dataset = bool(self._run_has_truth)
        self._n = 0  # events (rows) written to this file
        self._n_flushed = 0  # of those, durable (the file's n_events attribute)
        self._n_pulses: int = 0
        self._bytes = 0
        self._since_flush = 0
        self._last_flush = time.monotonic()
        self._first_event_number: int | None = None
        log.debug("opened %s", part)

    def _create_layout(self, h5: h5py.File) -> None:
        a = h5.attrs
        a["layout_version"] = layout_version_json()
        a["run_number"] = np.uint32(self.config.run.run_number)
        a["file_index"] = np.uint32(self._file_index)
        a["producer"] = self.producer
        a["start_time_utc"] = utc_now_iso()
        a["stop_time_utc"] = ""
        a["config_toml"] = self._config_text
        a["config_overlay"] = self.config.overlay.to_json()  # what the user gave on top of poker.toml
        a["package_version"] = pokerdaq.__version__
        a["n_events"] = np.uint64(0)
        a["n_pulses"] = np.uint64(0)
        a["n_scalers"] = np.uint64(0)
        a["n_trigger_steps"] = np.uint64(0)
        a["n_trigger_primitives"] = np.uint64(0)
        a["first_event_number"] = np.uint64(0)
        a["last_event_number"] = np.uint64(0)
        a["closed_cleanly"] = np.uint8(0)
        a["recovered"] = np.uint8(0)
        a["n_channels"] = np.uint32(self.n_channels)
        a["window_samples"] = np.uint32(self.window_samples)
        a["sampling_rate_hz"] = np.float64(self.config.digitizer.sampling_rate_hz)
        a["adc_bits"] = np.uint32(self.config.digitizer.adc_bits)
        a["compression"] = self.compression
        a["rotate_events"] = np.uint64(self.rotate_events or 0)
        a["rotate_bytes"] = np.uint64(self.rotate_bytes or 0)
        a["previous_file"] = self.closed_files[-1].name if self.closed_files else ""

        h5.create_dataset(L.CHANNEL_MAP, data=self._channel_table)
        h5.create_dataset(
            L.EVENTS,
            shape=(0,),
            maxshape=(None,),
            dtype=EVENT_DTYPE,
            chunks=(L.EVENT_CHUNK_ROWS,),
            fletcher32=True,
            **self._filter,
        )
        shape = (self.n_channels, self.window_samples)
        samples = h5.create_dataset(
            L.SAMPLES,
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=np.uint16,
            chunks=(self._sample_chunk_events, *shape),
            fletcher32=True,
            **self._filter,
        )
        samples.attrs["dims"] = "event,channel,sample"
        samples.attrs["compression"] = self.compression
        crc = h5.create_dataset(
            L.CRC32, shape=(0,), maxshape=(None,), dtype=np.uint32, chunks=(L.EVENT_CHUNK_ROWS,), fletcher32=True
        )
        crc.attrs["algorithm"] = "CRC-32 (zlib.crc32) of the event's samples, C order, little-endian uint16"
        h5.create_dataset(
            L.PULSES,
            shape=(0,),
            maxshape=(None,),
            dtype=STORED_PULSE_DTYPE,
            chunks=(L.PULSE_CHUNK_ROWS,),
            fletcher32=True,
            **self._filter,
        )
        h5.create_dataset(
            L.SCALERS, shape=(0,), maxshape=(None,), dtype=SCALER_DTYPE, chunks=(L.SCALER_CHUNK_ROWS,), fletcher32=True
        )
        # created in every file (SWMR adds no dataset later); empty unless the DAQ writes them
        steps = h5.create_dataset(
            L.TRIGGER_STEPS,
            shape=(0,),
            maxshape=(None,),
            dtype=TRIGGER_STEP_DTYPE,
            chunks=(L.TRIGGER_STEP_CHUNK_ROWS,),
            fletcher32=True,
        )
        steps.attrs["trigger_seed"] = np.int64(-1 if self.trigger_seed is None else self.trigger_seed)
        h5.create_dataset(
            L.TRIGGER_PRIMITIVES,
            shape=(0,),
            maxshape=(None,),
            dtype=TRIGGER_PRIMITIVE_DTYPE,
            chunks=(L.TRIGGER_PRIMITIVE_CHUNK_ROWS,),
            fletcher32=True,
            **self._filter,
        )
        # filled once, with the file's first events (write_trigger_state): docs/hdf5-layout.md "Trigger state"
        state = h5.create_dataset(
            L.TRIGGER_STATE,
            shape=(0,),
            maxshape=(None,),
            dtype=np.int64,
            chunks=(L.TRIGGER_STATE_CHUNK_WORDS,),
            fletcher32=True,
        )
        state.attrs["state_version"] = np.int64(0)
        state.attrs["first_slice"] = np.int64(-1)
        h5.create_dataset(
            L.TRIGGER_STATE_STEPS,
            shape=(0,),
            maxshape=(None,),
            dtype=TRIGGER_STEP_DTYPE,
            chunks=(L.TRIGGER_STATE_STEP_CHUNK_ROWS,),
            fletcher32=True,
        )
        h5.create_dataset(
            L.TRIGGER_STATE_PRIMITIVES,
            shape=(0,),
            maxshape=(None,),
            dtype=TRIGGER_PRIMITIVE_DTYPE,
            chunks=(L.TRIGGER_PRIMITIVE_CHUNK_ROWS,),
            fletcher32=True,
            **self._filter,
        )

    def _create_truth(self, h5: h5py.File) -> None:
        h5.create_dataset(
            L.TRUTH,
            shape=(0,),
            maxshape=(None,),
            dtype=self._truth_dtype,
            chunks=(L.TRUTH_CHUNK_ROWS,),
            fletcher32=True,
            **self._filter,
        )

    def _add_truth_dataset(self) -> None:
        # SWMR forbids new datasets, and the truth dtype is known only at the first write: close
        # the (still event-free) file, add /truth, and resume SWMR writing
        assert self._h5 is not None
        self._ds = {}
        self._h5.close()
        part = self.part_path
        h5 = h5py.File(part, "r+", libver=L.LIBVER, rdcc_nbytes=L.CHUNK_CACHE_BYTES, rdcc_nslots=10007)
        self._create_truth(h5)
        h5.flush()
        h5.swmr_mode = True
        self._h5 = h5
        self._ds = {
            name: h5[name]
            for name in (
                L.EVENTS,
                L.SAMPLES,
                L.CRC32,
                L.PULSES,
                L.SCALERS,
                L.TRUTH,
                L.TRIGGER_STEPS,
                L.TRIGGER_PRIMITIVES,
                *_STATE_NAMES,
            )
            if name in h5
        }
        self._has_truth_dataset = True

    def _close_file(self) -> None:
        assert self._h5 is not None
        self.flush()
        self._h5.attrs["stop_time_utc"] = utc_now_iso()
        self._h5.attrs["closed_cleanly"] = np.uint8(1)
        self._ds = {}
        self._h5.close()
        self._h5 = None
        final = self.path
        L.durable_rename(L.part_path(final), final)
        self.closed_files.append(final)
        self._n_closed_files += self._n
        log.info("closed %s: %d events", final, self._n)

    def _rotate(self) -> None:
        if self._h5 is not None:
            self._close_file()
        self._file_index += 1  # the next file opens when the next event or scaler arrives

    def _events_that_fit(self, sizes: np.ndarray) -> int:
        k = len(sizes)
        if self.rotate_events is not None:
            k = min(k, self.rotate_events - self._n)
        if self.rotate_bytes is not None:
            room = self.rotate_bytes - self._bytes
            k = min(k, int(np.searchsorted(np.cumsum(sizes[:k]), room, side="right")))
            if k == 0 and self._n == 0:
                k = 1  # an event larger than rotate_bytes still gets a file of its own
        return max(k, 0)

    def _append(self, b: _Batch, i: int, j: int, nbytes: int) -> None:
        """Write events i:j of a batch into the current file."""
        seg = b.slice(i, j)
        if self._first_event_number is None and self.first_event_hook is not None and L.TRIGGER_STATE in self._ds:
            self.first_event_hook(int(seg.headers["event_number"][0]))  # may call write_trigger_state
        self._write_rows(seg)
        if self._first_event_number is None:
            self._first_event_number = int(seg.headers["event_number"][0])
        self._last_event_number = int(seg.headers["event_number"][-1])
        self._n += len(seg)
        self._n_pulses += len(seg.pulses)
        self._bytes += nbytes
        self._since_flush += len(seg)

    def _write_rows(self, b: _Batch) -> None:
        # Dataset handles stay open for the file's lifetime: closing a dataset flushes its chunk
        # cache, so reopening per batch compressed every partly filled chunk again (measured 2x
        # slower). The 32 MiB chunk cache keeps partly filled chunks until they are complete.
        h5 = self._ds
        n0, k = self._n, len(b)
        q0, q = self._n_pulses, len(b.pulses)
        # data first, headers last: a row of /events marks an event whose data is written
        ds = h5[L.SAMPLES]
        ds.resize((n0 + k, *ds.shape[1:]))
        ds[n0:] = b.samples
        ds = h5[L.CRC32]
        ds.resize((n0 + k,))
        ds[n0:] = b.crc32
        if q:
            ds = h5[L.PULSES]
            ds.resize((q0 + q,))
            ds[q0:] = b.pulses
        if b.truth is not None:
            ds = h5[L.TRUTH]
            ds.resize((n0 + k,))
            ds[n0:] = b.truth
        ds = h5[L.EVENTS]
        ds.resize((n0 + k,))
        ds[n0:] = b.headers

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {str(self.first_path)!r} is closed")

    # ------------------------------------------------------------------ validation

    def _validate(
        self, headers: np.ndarray, samples: np.ndarray, pulses: np.ndarray | None, truth: np.ndarray | None
    ) -> _Batch:
        if not isinstance(headers, np.ndarray) or headers.dtype != EVENT_DTYPE:
            got = headers.dtype if isinstance(headers, np.ndarray) else type(headers).__name__
            raise ValueError(f"headers: dtype {got}, expected pokerdaq.io.EVENT_DTYPE {EVENT_DTYPE}")
        if headers.ndim != 1:
            raise ValueError(f"headers: shape {headers.shape}, expected one dimension (events,)")
        n = len(headers)
        if not isinstance(samples, np.ndarray) or samples.dtype != np.uint16:
            got = samples.dtype if isinstance(samples, np.ndarray) else type(samples).__name__
            raise ValueError(f"samples: dtype {got}, expected uint16")
        expected = (n, self.n_channels, self.window_samples)
        if samples.shape != expected:
            raise ValueError(
                f"samples: shape {samples.shape}, expected {expected} = (len(headers), channels in the "
                f"channel map, digitizer.window_samples)"
            )
        if n == 0:
            if pulses is not None and len(pulses):
                raise ValueError(f"pulses: {len(pulses)} rows for 0 events")
            return _Batch(
                headers, samples, np.zeros(0, np.uint32), np.zeros(0, STORED_PULSE_DTYPE), np.zeros(1, np.int64), None
            )
        numbers = headers["event_number"]
        if n > 1 and not np.all(numbers[1:] > numbers[:-1]):
            bad = int(np.flatnonzero(numbers[1:] <= numbers[:-1])[0]) + 1
            raise ValueError(
                f"headers['event_number']: {int(numbers[bad])} at index {bad} follows "
                f"{int(numbers[bad - 1])}, expected strictly increasing event numbers"
            )
        if self._last_event_number is not None and int(numbers[0]) <= self._last_event_number:
            raise ValueError(
                f"headers['event_number']: {int(numbers[0])} at index 0, expected more than "
                f"the last event number written, {self._last_event_number}"
            )
        top = int(samples.max())
        if top > self._adc_max:
            where = np.unravel_index(int(np.argmax(samples)), samples.shape)
            raise ValueError(
                f"samples: value {top} at (event, channel, sample) = {tuple(int(x) for x in where)}, "
                f"expected at most digitizer.adc_max = {self._adc_max}"
            )
        counts = headers["n_pulses"].astype(np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        stored = self._validate_pulses(pulses, headers, counts, int(offsets[-1]))
        truth = self._validate_truth(truth, n)
        samples = np.ascontiguousarray(samples)
        crc = np.fromiter((zlib.crc32(ev) for ev in samples), dtype=np.uint32, count=n)
        return _Batch(headers, samples, crc, stored, offsets, truth)

    def _validate_pulses(
        self, pulses: np.ndarray | None, headers: np.ndarray, counts: np.ndarray, total: int
    ) -> np.ndarray:
        if pulses is None:
            if total:
                raise ValueError(
                    f"pulses: None, but headers['n_pulses'] sums to {total}; pass the pulses or set n_pulses to 0"
                )
            return np.zeros(0, STORED_PULSE_DTYPE)
        if not isinstance(pulses, np.ndarray) or pulses.dtype not in (PULSE_DTYPE, STORED_PULSE_DTYPE):
            got = pulses.dtype if isinstance(pulses, np.ndarray) else type(pulses).__name__
            raise ValueError(f"pulses: dtype {got}, expected PULSE_DTYPE or pokerdaq.io.STORED_PULSE_DTYPE")
        if pulses.ndim != 1:
            raise ValueError(f"pulses: shape {pulses.shape}, expected one dimension (pulses,)")
        if len(pulses) != total:
            raise ValueError(f"pulses: {len(pulses)} rows, but headers['n_pulses'] sums to {total}")
        link = np.repeat(np.ascontiguousarray(headers["event_number"]), counts)
        if pulses.dtype == STORED_PULSE_DTYPE:
            if not np.array_equal(pulses["event_number"], link):
                bad = int(np.flatnonzero(pulses["event_number"] != link)[0])
                raise ValueError(
                    f"pulses['event_number']: {int(pulses['event_number'][bad])} at row {bad}, "
                    f"expected {int(link[bad])} (pulses in event order, n_pulses per event)"
                )
            stored = pulses
        else:
            stored = np.empty(total, STORED_PULSE_DTYPE)
            stored["event_number"] = link
            for name in PULSE_DTYPE.names or ():
                stored[name] = pulses[name]
        if total and int(stored["channel"].max()) >= self.n_channels:
            bad = int(np.argmax(stored["channel"]))
            raise ValueError(
                f"pulses['channel']: {int(stored['channel'][bad])} at row {bad}, expected "
                f"less than {self.n_channels} channels"
            )
        return stored

    def _validate_truth(self, truth: np.ndarray | None, n: int) -> np.ndarray | None:
        if self._run_has_truth is not None and (truth is not None) != self._run_has_truth:
            state = "with" if self._run_has_truth else "without"
            raise ValueError(
                f"truth: {'None' if truth is None else 'an array'} given, but this run started {state} truth"
            )
        if truth is None:
            return None
        if not isinstance(truth, np.ndarray) or truth.dtype.names is None:
            got = truth.dtype if isinstance(truth, np.ndarray) else type(truth).__name__
            raise ValueError(f"truth: {got}, expected a numpy structured array")
        if truth.dtype.hasobject:
            raise ValueError(f"truth: dtype {truth.dtype} has object fields, expected fixed-size fields")
        if self._truth_dtype is not None and truth.dtype != self._truth_dtype:
            raise ValueError(f"truth: dtype {truth.dtype}, expected the run's truth dtype {self._truth_dtype}")
        if truth.shape != (n,):
            raise ValueError(f"truth: shape {truth.shape}, expected ({n},), one row per event")
        return truth
