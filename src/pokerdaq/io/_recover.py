"""recover(): turn a ``NAME.part`` left by a dead writer into a final, readable ``NAME``."""

from __future__ import annotations

import logging
import os
import zlib
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from . import _layout as L
from ._superblock import clear_status_flags, status_flags
from ._writer import utc_now_iso

log = logging.getLogger(__name__)

_BLOCK = 1024


def recover(path_part: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Make a run file left as ``NAME.part`` by a writer that died final and readable.

    Only for a file whose writer is dead (see docs/hdf5-layout.md, Recovery). Keeps the
    events up to the writer's last flush (the ``n_events`` attribute), drops rows
    written after it and any event whose samples fail their CRC-32, and writes ``NAME`` with
    ``recovered = 1``, ``closed_cleanly = 0`` and the counts below, then deletes ``NAME.part``.
    The survivors are logged (logger ``pokerdaq.io._recover``, level WARNING) and stored as
    attributes ``n_events``, ``recovered_rows_after_flush`` and ``recovered_checksum_failures``.

    Parameters
    ----------
    path_part
        The ``.part`` file.
    overwrite
        Replace an existing ``NAME`` instead of refusing.

    Returns
    -------
    Path
        The final file ``NAME``.

    Raises
    ------
    ValueError
        When ``path_part`` does not end in ``.part``.
    FileExistsError
        When ``NAME`` exists and ``overwrite`` is false.
    OSError
        When the file cannot be read as HDF5 at all.
    """
    part = Path(path_part)
    final = L.final_path(part)
    if not part.exists():
        raise FileNotFoundError(f"path_part: {str(part)!r} does not exist")
    if final.exists() and not overwrite:
        raise FileExistsError(f"path_part: final file {str(final)!r} exists; pass overwrite=True to replace it")
    temp = final.with_name(final.name + ".recovering")
    mtime = datetime.fromtimestamp(part.stat().st_mtime, timezone.utc).isoformat(timespec="microseconds")

    with _open_dead_writers_file(part) as src:
        attrs = dict(src.attrs.items())
        rows = src[L.EVENTS].shape[0]
        n = min(int(attrs.get("n_events", 0)), rows, src[L.SAMPLES].shape[0], src[L.CRC32].shape[0],
                *([src[L.TRUTH].shape[0]] if L.TRUTH in src else []))
        keep = _events_passing_crc(src, n)
        n_pulses = src[L.EVENTS]["n_pulses"][:n].astype(np.int64) if n else np.zeros(0, np.int64)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(n_pulses, out=offsets[1:])
        pulses_rows = src[L.PULSES].shape[0]
        if offsets[-1] > pulses_rows:   # header flushed without its pulses: cannot happen with the writer's order
            cut = int(np.searchsorted(offsets[1:], pulses_rows, side="right"))
            keep = keep[keep < cut]
        n_scalers = min(int(attrs.get("n_scalers", src[L.SCALERS].shape[0])), src[L.SCALERS].shape[0])

        with h5py.File(temp, "w", libver=L.LIBVER) as dst:
            for k, v in attrs.items():
                dst.attrs[k] = v
            for name in (L.CHANNEL_MAP, L.SCALERS, L.EVENTS, L.SAMPLES, L.CRC32, L.PULSES, L.TRUTH):
                if name in src:
                    # H5Ocopy keeps dtype, chunking, filters and dataset attributes exactly
                    dst.copy(src[name], name)
            _compact(dst, keep, offsets, n_scalers)
            kept = len(keep)
            a = dst.attrs
            a["n_events"] = np.uint64(kept)
            a["n_pulses"] = np.uint64(dst[L.PULSES].shape[0])
            a["n_scalers"] = np.uint64(n_scalers)
            if kept:
                numbers = dst[L.EVENTS]["event_number"]
                a["first_event_number"] = np.uint64(numbers[0])
                a["last_event_number"] = np.uint64(numbers[-1])
            a["closed_cleanly"] = np.uint8(0)
            a["recovered"] = np.uint8(1)
            a["stop_time_utc"] = mtime        # last modification of the .part file: best estimate
            a["recovered_time_utc"] = utc_now_iso()
            a["recovered_rows_after_flush"] = np.uint64(rows - n)
            a["recovered_checksum_failures"] = np.uint64(n - kept)
    L.durable_rename(temp, final)
    part.unlink()
    log.warning("recovered %s: %d events survived (%d rows after the last flush dropped, %d failed CRC-32)",
                final, kept, rows - n, n - kept)
    return final


def _open_dead_writers_file(part: Path) -> h5py.File:
    try:
        return L.open_for_reading(part)
    except OSError as err:
        # not a SWMR writer (or one that died before SWMR started): its "open for write" mark
        # blocks every open; clear it as h5clear -s would, then read
        try:
            flags = status_flags(part)
        except ValueError:
            raise err from None
        if not flags:
            raise
        log.warning("%s: clearing the file-open mark (flags %#x) left by its dead writer", part, flags)
        clear_status_flags(part)
        return L.open_for_reading(part)


def _events_passing_crc(src: h5py.File, n: int) -> np.ndarray:
    crc = src[L.CRC32][:n]
    good = np.ones(n, dtype=bool)
    samples = src[L.SAMPLES]
    for start in range(0, n, _BLOCK):
        try:
            block = samples[start : min(start + _BLOCK, n)]
        except OSError:   # a chunk that cannot be read (fletcher32 or decompression failure)
            for i in range(start, min(start + _BLOCK, n)):
                try:
                    good[i] = zlib.crc32(samples[i]) == int(crc[i])
                except OSError:
                    good[i] = False
            continue
        for k, ev in enumerate(block):
            good[start + k] = zlib.crc32(ev) == int(crc[start + k])
    return np.flatnonzero(good)


def _compact(dst: h5py.File, keep: np.ndarray, offsets: np.ndarray, n_scalers: int) -> None:
    """Keep only rows ``keep`` of the per-event datasets (in place) and their pulses."""
    n = len(offsets) - 1
    contiguous = len(keep) == n  # the usual case: a prefix, only trailing rows to cut
    per_event = [name for name in (L.EVENTS, L.SAMPLES, L.CRC32, L.TRUTH) if name in dst]
    if not contiguous:
        for name in per_event:
            ds = dst[name]
            for out in range(0, len(keep), _BLOCK):
                idx = keep[out : out + _BLOCK]
                ds[out : out + len(idx)] = ds[idx]   # idx increasing and >= out: safe in place
        pulses = dst[L.PULSES]
        rows = [np.arange(offsets[i], offsets[i + 1]) for i in keep]
        sel = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        if len(sel):
            pulses[: len(sel)] = pulses[sel]
        n_pulses = len(sel)
    else:
        n_pulses = int(offsets[-1])
    for name in per_event:
        ds = dst[name]
        ds.resize((len(keep), *ds.shape[1:]))
    dst[L.PULSES].resize((n_pulses,))
    dst[L.SCALERS].resize((n_scalers,))
