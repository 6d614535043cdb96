"""The streaming recording on disk: writer, reader and recovery (docs/hdf5-layout.md, "Streaming recordings").

Same crash safety as run files (:class:`pokerdaq.io.RunFileWriter`): written as ``NAME.part``
in SWMR mode, data first and the row counts (attributes) after it, flushed at least every
``flush_interval_s``, renamed to ``NAME`` at close; a ``.part`` left by a dead writer is made
final by :func:`recover_stream` (``pokerdaq recover``), keeping every block up to the last
flush whose hits and samples pass their CRC-32.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

import pokerdaq
from pokerdaq.config import CHANNEL_DTYPE, Config, loads_config

from . import _layout as L
from ._records import SCALER_DTYPE, TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE
from ._stream_records import (
    BLOCK_CHUNK_ROWS,
    BLOCKS,
    BOARD_MESSAGE_DTYPE,
    BOARD_MESSAGES,
    DECISION_CHUNK_ROWS,
    DECISIONS,
    HIT_CHUNK_ROWS,
    HIT_SAMPLES,
    HITS,
    L0_THRESHOLD,
    SAMPLE_CHUNK,
    STREAM_BLOCK_DTYPE,
    STREAM_DECISION_DTYPE,
    STREAM_HIT_DTYPE,
    is_stream_layout,
    stream_layout_json,
)
from ._writer import utc_now_iso

log = logging.getLogger(__name__)

_ROW_DATASETS = (BLOCKS, BOARD_MESSAGES, DECISIONS, L.SCALERS, L.TRIGGER_STEPS, L.TRIGGER_PRIMITIVES)
_COUNT_ATTR = {
    HITS: "n_hits",
    HIT_SAMPLES: "n_samples",
    BLOCKS: "n_blocks",
    BOARD_MESSAGES: "n_board_messages",
    DECISIONS: "n_decisions",
    L.SCALERS: "n_scalers",
    L.TRIGGER_STEPS: "n_trigger_steps",
    L.TRIGGER_PRIMITIVES: "n_trigger_primitives",
}


class StreamFileWriter:
    """Write a trigger-less streaming recording (one file), crash-safely.

    Parameters
    ----------
    path
        Final name, e.g. ``run_000001.h5`` (written as ``run_000001.h5.part``).
    config
        The run configuration (stored; its channel map checks every hit).
    l0_threshold
        int64 (channels,): the absolute L0 threshold of every channel of the map (ADC code; a
        sample above it starts or extends a hit).
    pad_before, pad_after
        Samples kept before a hit's first and after its last sample above the L0 threshold.
    trigger_seed
        The run seed of the online trigger (random trigger).
    compression, overwrite, flush_interval_s
        As for :class:`pokerdaq.io.RunFileWriter`.

    Raises
    ------
    ValueError, FileExistsError
        For a bad argument (named), or an existing file without ``overwrite``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: Config,
        *,
        l0_threshold: np.ndarray,
        pad_before: int,
        pad_after: int,
        trigger_seed: int,
        compression: str | None = None,
        overwrite: bool = False,
        flush_interval_s: float = 1.0,
        producer: str = "pokerdaq run --streaming",
    ) -> None:
        if not isinstance(config, Config):
            raise ValueError(f"config: {type(config).__name__} given, expected a pokerdaq.config.Config")
        self.config = config
        self.path = Path(path)
        self.part_path = L.part_path(self.path)
        self.compression = config.daq.compression if compression is None else compression
        self._filter = L.compression_filter(self.compression)
        self._table = np.asarray(config.channel_map.table, dtype=CHANNEL_DTYPE)
        thr = np.asarray(l0_threshold, dtype=np.int64)
        if thr.shape != (len(self._table),):
            raise ValueError(f"l0_threshold: shape {thr.shape}, expected ({len(self._table)},), one per channel")
        for name, v in (("pad_before", pad_before), ("pad_after", pad_after)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: {v!r}, expected an integer >= 1")
        self._adc_max = int(config.digitizer.adc_max)
        self.flush_interval_s = float(flush_interval_s)
        for p in (self.path, self.part_path):
            if p.exists() and not overwrite:
                raise FileExistsError(f"path: {str(p)!r} exists; pass overwrite=True to replace it")
        self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        h5 = h5py.File(self.part_path, "w", libver=L.LIBVER, rdcc_nbytes=L.CHUNK_CACHE_BYTES, rdcc_nslots=10007)
        try:
            self._create(h5, config, thr, int(pad_before), int(pad_after), int(trigger_seed), producer)
            h5.flush()
            h5.swmr_mode = True
        except BaseException:
            h5.close()
            self.part_path.unlink(missing_ok=True)
            raise
        self._h5: h5py.File | None = h5
        self._ds = {name: h5[name] for name in (HITS, HIT_SAMPLES, *_ROW_DATASETS)}
        self._last_flush = time.monotonic()
        self._last_slice = -1
        self.n_hits = 0
        self.n_samples = 0
        self.n_blocks = 0

    def _create(
        self, h5: h5py.File, cfg: Config, thr: np.ndarray, before: int, after: int, seed: int, producer: str
    ) -> None:
        a = h5.attrs
        a["layout_version"] = stream_layout_json()
        a["run_number"] = np.uint32(cfg.run.run_number)
        a["file_index"] = np.uint32(0)
        a["producer"] = producer
        a["start_time_utc"] = utc_now_iso()
        a["stop_time_utc"] = ""
        a["config_toml"] = cfg.text
        a["config_overlay"] = cfg.overlay.to_json()
        a["package_version"] = pokerdaq.__version__
        a["closed_cleanly"] = np.uint8(0)
        a["recovered"] = np.uint8(0)
        a["slice_ticks"] = np.uint64(cfg.daq.slice_ticks)
        a["sampling_rate_hz"] = np.float64(cfg.digitizer.sampling_rate_hz)
        a["adc_bits"] = np.uint32(cfg.digitizer.adc_bits)
        a["compression"] = self.compression
        a["pad_before"] = np.uint32(before)
        a["pad_after"] = np.uint32(after)
        a["last_slice"] = np.int64(-1)
        for name in _COUNT_ATTR.values():
            a[name] = np.uint64(0)
        h5.create_dataset(L.CHANNEL_MAP, data=self._table)
        t = h5.create_dataset(L0_THRESHOLD, data=thr)
        t.attrs["meaning"] = "absolute ADC code per channel of /channel_map: samples above it are L0 hits"
        h5.create_dataset(
            HITS,
            shape=(0,),
            maxshape=(None,),
            dtype=STREAM_HIT_DTYPE,
            chunks=(HIT_CHUNK_ROWS,),
            fletcher32=True,
            **self._filter,
        )
        h5.create_dataset(
            HIT_SAMPLES,
            shape=(0,),
            maxshape=(None,),
            dtype=np.uint16,
            chunks=(SAMPLE_CHUNK,),
            fletcher32=True,
            **self._filter,
        )
        for name, dtype, rows in (
            (BLOCKS, STREAM_BLOCK_DTYPE, BLOCK_CHUNK_ROWS),
            (BOARD_MESSAGES, BOARD_MESSAGE_DTYPE, BLOCK_CHUNK_ROWS),
            (DECISIONS, STREAM_DECISION_DTYPE, DECISION_CHUNK_ROWS),
            (L.SCALERS, SCALER_DTYPE, L.SCALER_CHUNK_ROWS),
            (L.TRIGGER_STEPS, TRIGGER_STEP_DTYPE, L.TRIGGER_STEP_CHUNK_ROWS),
            (L.TRIGGER_PRIMITIVES, TRIGGER_PRIMITIVE_DTYPE, L.TRIGGER_PRIMITIVE_CHUNK_ROWS),
        ):
            h5.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(rows,), fletcher32=True, **self._filter
            )
        h5[L.TRIGGER_STEPS].attrs["trigger_seed"] = np.int64(seed)

    # ------------------------------------------------------------------ writing
    def write_block(
        self,
        first_slice: int,
        last_slice: int,
        hits: np.ndarray,
        samples: np.ndarray,
        board_messages: np.ndarray,
        missing_boards: int = 0,
    ) -> None:
        """Append one time-ordered block: slices ``first_slice..last_slice``, their hits and samples.

        ``hits['sample_offset']`` count from the start of ``samples`` and must tile it in order
        (each hit's samples follow the previous hit's).

        Raises
        ------
        ValueError
            Naming the field and the value, before anything is written.
        """
        self._check_open()
        hits = np.atleast_1d(np.asarray(hits))
        samples = np.asarray(samples)
        msgs = np.atleast_1d(np.asarray(board_messages))
        if hits.dtype != STREAM_HIT_DTYPE or msgs.dtype != BOARD_MESSAGE_DTYPE:
            raise ValueError(
                f"hits / board_messages: dtypes {hits.dtype} / {msgs.dtype}, expected "
                "STREAM_HIT_DTYPE / BOARD_MESSAGE_DTYPE"
            )
        if samples.dtype != np.uint16 or samples.ndim != 1:
            raise ValueError(f"samples: {samples.dtype} {samples.shape}, expected 1-d uint16")
        if first_slice <= self._last_slice or last_slice < first_slice:
            raise ValueError(f"slices {first_slice}..{last_slice}: expected a range after slice {self._last_slice}")
        check_hits(hits, samples, self._table, self._adc_max)
        hits = hits.copy()
        hits["sample_offset"] += np.uint64(self.n_samples)
        block = np.zeros(1, STREAM_BLOCK_DTYPE)
        block["first_slice"], block["last_slice"] = first_slice, last_slice
        block["first_hit"], block["n_hits"] = self.n_hits, len(hits)
        block["missing_boards"] = missing_boards
        block["first_sample"], block["n_samples"] = self.n_samples, len(samples)
        block["hits_crc32"] = zlib.crc32(hits.tobytes())
        block["samples_crc32"] = zlib.crc32(np.ascontiguousarray(samples, "<u2").tobytes())
        # data first, the block row last: a row of /stream/blocks marks data that is written
        self._append(HIT_SAMPLES, samples)
        self._append(HITS, hits)
        self._append(BOARD_MESSAGES, msgs)
        self._append(BLOCKS, block)
        self.n_hits += len(hits)
        self.n_samples += len(samples)
        self.n_blocks += 1
        self._last_slice = int(last_slice)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def write_decisions(self, records: np.ndarray) -> None:
        """Append online trigger decisions (``STREAM_DECISION_DTYPE``)."""
        self._check_open()
        records = np.atleast_1d(np.asarray(records))
        if records.dtype != STREAM_DECISION_DTYPE:
            raise ValueError(f"decisions: dtype {records.dtype}, expected STREAM_DECISION_DTYPE")
        self._append(DECISIONS, records)

    def write_scalers(self, rows: np.ndarray) -> None:
        """Append per-spill scaler rows (``SCALER_DTYPE``) as the trigger processor sent them."""
        self._check_open()
        rows = np.atleast_1d(np.asarray(rows))
        if rows.dtype != SCALER_DTYPE:
            raise ValueError(f"scalers: dtype {rows.dtype}, expected SCALER_DTYPE")
        self._append(L.SCALERS, rows)

    def write_trigger_inputs(self, steps: np.ndarray, primitives: np.ndarray) -> None:
        """Append decision steps and their primitives (as :meth:`pokerdaq.io.RunFileWriter.write_trigger_inputs`)."""
        self._check_open()
        steps, primitives = np.atleast_1d(np.asarray(steps)), np.atleast_1d(np.asarray(primitives))
        if steps.dtype != TRIGGER_STEP_DTYPE or primitives.dtype != TRIGGER_PRIMITIVE_DTYPE:
            raise ValueError("trigger inputs: expected TRIGGER_STEP_DTYPE / TRIGGER_PRIMITIVE_DTYPE rows")
        if int(steps["n_primitives"].sum()) != len(primitives):
            raise ValueError(
                f"trigger inputs: steps hold {int(steps['n_primitives'].sum())} primitives, {len(primitives)} given"
            )
        self._append(L.TRIGGER_PRIMITIVES, primitives)
        self._append(L.TRIGGER_STEPS, steps)

    def _append(self, name: str, rows: np.ndarray) -> None:
        if len(rows):
            ds = self._ds[name]
            m = ds.shape[0]
            ds.resize((m + len(rows),))
            ds[m:] = rows

    def flush(self) -> None:
        """Data to disk, then the row counts (attributes), then again: a reader trusting the counts
        never sees a half-written row."""
        if self._h5 is None:
            return
        self._h5.flush()
        a = self._h5.attrs
        for name, attr in _COUNT_ATTR.items():
            a[attr] = np.uint64(self._ds[name].shape[0])
        a["last_slice"] = np.int64(self._last_slice)
        self._h5.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush, mark ``closed_cleanly``, rename ``NAME.part`` to ``NAME``. Idempotent."""
        if self._h5 is None:
            return
        self.flush()
        self._h5.attrs["stop_time_utc"] = utc_now_iso()
        self._h5.attrs["closed_cleanly"] = np.uint8(1)
        self._ds = {}
        self._h5.close()
        self._h5 = None
        L.durable_rename(self.part_path, self.path)

    def __enter__(self) -> StreamFileWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._h5 is None:
            raise ValueError(f"stream writer for {str(self.path)!r} is closed")


def check_hits(hits: np.ndarray, samples: np.ndarray, table: np.ndarray, adc_max: int) -> None:
    """Refuse (ValueError naming field and row) hits that the layout may not hold."""
    if not len(hits):
        if len(samples):
            raise ValueError(f"samples: {len(samples)} samples for no hit")
        return
    n = hits["n_samples"].astype(np.int64)
    ends = np.cumsum(n)
    if np.any(n < 1):
        raise ValueError(f"hits['n_samples']: 0 at row {int(np.argmin(n))}, expected >= 1")
    if int(ends[-1]) != len(samples) or np.any(hits["sample_offset"].astype(np.int64) != ends - n):
        raise ValueError(
            f"hits['sample_offset']: the hits' samples ({int(ends[-1])}) do not tile the "
            f"{len(samples)} samples in order"
        )
    ch = hits["channel"].astype(np.int64)
    if int(ch.max()) >= len(table):
        raise ValueError(f"hits['channel']: {int(ch.max())}, expected < {len(table)} channels")
    wrong = np.flatnonzero(table["board"][ch] != hits["board"])
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(
            f"hits['board']: {int(hits['board'][i])} at row {i}, channel {int(ch[i])} is on board "
            f"{int(table['board'][ch[i]])}"
        )
    bad = np.flatnonzero(
        (hits["crossing_tick"] < hits["first_tick"])
        | (hits["crossing_tick"] >= hits["first_tick"] + n.astype(np.uint64))
    )
    if bad.size:
        raise ValueError(f"hits['crossing_tick']: row {int(bad[0])} outside its samples")
    if len(samples) and int(samples.max()) > adc_max:
        raise ValueError(f"samples: value {int(samples.max())}, expected at most digitizer.adc_max = {adc_max}")


class StreamFile:
    """Read a streaming recording (also one still written, or a ``.part`` of a dead writer, up to its counts).

    Attributes
    ----------
    attrs, config, channel_table, l0_threshold, pad_before, pad_after, slice_ticks
        What the file says about itself.
    hits, samples, blocks, board_messages, decisions, scalers
        The stored rows up to the flushed counts.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with L.open_for_reading(self.path) as h5:
            attrs = dict(h5.attrs)
            if not is_stream_layout(attrs.get("layout_version")):
                raise ValueError(
                    f"{self.path}: layout_version {attrs.get('layout_version')!r}, "
                    "expected a pokerdaq streaming recording"
                )
            self.attrs = attrs

            def rows(name: str) -> np.ndarray:
                n = int(attrs.get(_COUNT_ATTR[name], 0))
                return np.asarray(h5[name][:n])

            self.blocks = rows(BLOCKS)
            self.hits = rows(HITS)
            self.samples = rows(HIT_SAMPLES)
            self.board_messages = rows(BOARD_MESSAGES)
            self.decisions = rows(DECISIONS)
            self.scalers = rows(L.SCALERS)
            self.trigger_steps = rows(L.TRIGGER_STEPS)
            self.trigger_primitives = rows(L.TRIGGER_PRIMITIVES)
            seed = int(h5[L.TRIGGER_STEPS].attrs.get("trigger_seed", -1))
            self.channel_table = np.asarray(h5[L.CHANNEL_MAP][:])
            self.l0_threshold = np.asarray(h5[L0_THRESHOLD][:], dtype=np.int64)
        self.trigger_seed = None if seed < 0 else seed
        self.config = loads_config(_text(attrs["config_toml"]), f"{self.path}: config_toml")
        self.pad_before = int(attrs["pad_before"])
        self.pad_after = int(attrs["pad_after"])
        self.slice_ticks = int(attrs["slice_ticks"])
        self.last_slice = int(attrs["last_slice"])

    def check(self) -> int:
        """Blocks whose CRC-32 of hits or samples fails (0 for an intact file)."""
        bad = 0
        for b in self.blocks:
            h0, nh = int(b["first_hit"]), int(b["n_hits"])
            s0, ns = int(b["first_sample"]), int(b["n_samples"])
            bad += zlib.crc32(self.hits[h0 : h0 + nh].tobytes()) != int(b["hits_crc32"]) or zlib.crc32(
                self.samples[s0 : s0 + ns].astype("<u2").tobytes()
            ) != int(b["samples_crc32"])
        return bad

    def bytes_stored(self) -> int:
        """Uncompressed bytes of the hits and their samples (the stream's payload)."""
        return int(self.hits.nbytes + self.samples.nbytes)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def is_stream_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an HDF5 file whose ``layout_version`` names the streaming layout."""
    try:
        if not h5py.is_hdf5(path):
            return False
        with L.open_for_reading(Path(path)) as h5:
            return is_stream_layout(h5.attrs.get("layout_version"))
    except OSError:
        return False


def recover_stream(part: Path, src: h5py.File, final: Path) -> dict[str, int]:
    """Copy the intact part of a dead stream writer's ``.part`` (open, read-only) to ``final``.

    Keeps the blocks up to the last flush (``n_blocks``) in order, up to the first one whose
    rows cannot be read or whose CRC-32 fails (the stream must stay continuous for the pulse
    finder), with their hits, samples and board messages; the decisions, trigger inputs and
    scaler rows up to their flushed counts that can be read. Returns the counts.
    """
    from ._recover import _READ_ERRORS, _attributes, _like, _rows

    attrs = _attributes(src)
    temp = final.with_name(final.name + ".recovering")
    mtime = datetime.fromtimestamp(part.stat().st_mtime, UTC).isoformat(timespec="microseconds")
    counts = {"blocks_kept": 0, "blocks_lost": 0, "rows_after_flush": 0}
    try:
        with h5py.File(temp, "w", libver=L.LIBVER) as dst:
            for name in (L.CHANNEL_MAP, L0_THRESHOLD):
                dst.copy(src[name], name)
            out = {name: _like(dst, src[name], name, ()) for name in (HITS, HIT_SAMPLES, *_ROW_DATASETS)}
            n_blocks = min(int(attrs.get("n_blocks", 0)), src[BLOCKS].shape[0])
            counts["rows_after_flush"] = src[BLOCKS].shape[0] - n_blocks
            blocks, ok = _rows(src[BLOCKS], n_blocks)
            kept = 0
            msgs_total = 0
            last_slice = -1
            msg_rows, msg_ok = _rows(
                src[BOARD_MESSAGES], min(int(attrs.get("n_board_messages", 0)), src[BOARD_MESSAGES].shape[0])
            )
            for i in range(n_blocks):
                if not ok[i]:
                    break
                b = blocks[i]
                h0, nh, s0, ns = int(b["first_hit"]), int(b["n_hits"]), int(b["first_sample"]), int(b["n_samples"])
                try:
                    hits = np.asarray(src[HITS][h0 : h0 + nh])
                    samples = np.asarray(src[HIT_SAMPLES][s0 : s0 + ns])
                except _READ_ERRORS:
                    break
                if zlib.crc32(hits.tobytes()) != int(b["hits_crc32"]) or zlib.crc32(
                    samples.astype("<u2").tobytes()
                ) != int(b["samples_crc32"]):
                    break
                # the board messages of the block: those covering its slices (board messages end in it)
                sel = (msg_rows["last_slice"] <= b["last_slice"]) & (msg_rows["last_slice"] >= b["first_slice"])
                if not msg_ok[sel].all():
                    break
                for name, rows in (
                    (HIT_SAMPLES, samples),
                    (HITS, hits),
                    (BOARD_MESSAGES, msg_rows[sel]),
                    (BLOCKS, blocks[i : i + 1]),
                ):
                    ds = out[name]
                    if len(rows):
                        m = ds.shape[0]
                        ds.resize((m + len(rows),))
                        ds[m:] = rows
                msgs_total += int(sel.sum())
                kept += 1
                last_slice = int(b["last_slice"])
            counts["blocks_kept"] = kept
            counts["blocks_lost"] = n_blocks - kept
            for name in (DECISIONS, L.SCALERS, L.TRIGGER_STEPS, L.TRIGGER_PRIMITIVES):
                n = min(int(attrs.get(_COUNT_ATTR[name], 0)), src[name].shape[0])
                rows, rok = _rows(src[name], n)
                upto = int(np.argmin(rok)) if not rok.all() else n  # a prefix: the steps index the primitives
                if len(rows[:upto]):
                    out[name].resize((upto,))
                    out[name][:] = rows[:upto]
                counts[f"{name}_lost"] = n - upto
            a = dst.attrs
            for k, v in attrs.items():
                a[k] = v
            for name, attr in _COUNT_ATTR.items():
                a[attr] = np.uint64(out[name].shape[0])
            a["last_slice"] = np.int64(last_slice)
            a["closed_cleanly"] = np.uint8(0)
            a["recovered"] = np.uint8(1)
            a["stop_time_utc"] = mtime
            a["recovered_time_utc"] = utc_now_iso()
            a["recovered_blocks_lost"] = np.uint64(counts["blocks_lost"])
            a["recovered_rows_after_flush"] = np.uint64(counts["rows_after_flush"])
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    L.durable_rename(temp, final)
    return counts
