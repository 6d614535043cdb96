"""recover(): turn a ``NAME.part`` left by a dead writer into a final, readable ``NAME``.

The source is read chunk by chunk and nothing it holds is trusted: a chunk that cannot be read
(Fletcher-32 or decompression failure, a lost chunk index, a missing file tail) loses the
events it holds, never the run; every kept event's samples match its CRC-32.
"""

from __future__ import annotations

import logging
import os
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import _layout as L
from ._superblock import clear_status_flags, status_flags, stored_end_of_file
from ._writer import utc_now_iso

log = logging.getLogger(__name__)

# what h5py raises for an unreadable object or chunk (HDF5 errors map to these)
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


def recover(path_part: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Make a run file left as ``NAME.part`` by a writer that died final and readable.

    Only for a file whose writer is dead (see docs/hdf5-layout.md, Recovery). Keeps the
    events up to the writer's last flush (the ``n_events`` attribute) whose chunks can be read
    and whose samples pass their CRC-32, with their pulses and truth rows; drops rows written
    after the flush. A file whose tail is missing (full disk, machine death) is recovered up to
    what is intact. Writes ``NAME`` with ``recovered = 1``, ``closed_cleanly = 0`` and the
    counts below, then deletes ``NAME.part``. The counts are logged (logger
    ``pokerdaq.io._recover``, level WARNING) and stored as attributes ``n_events``,
    ``recovered_rows_after_flush``, ``recovered_checksum_failures`` and
    ``recovered_scalers_lost``.

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
        When the file cannot be read as an HDF5 run file at all (its first blocks are lost).
    """
    part = Path(path_part)
    final = L.final_path(part)
    if not part.exists():
        raise FileNotFoundError(f"path_part: {str(part)!r} does not exist")
    if final.exists() and not overwrite:
        raise FileExistsError(f"path_part: final file {str(final)!r} exists; pass overwrite=True to replace it")
    temp = final.with_name(final.name + ".recovering")
    mtime = datetime.fromtimestamp(part.stat().st_mtime, UTC).isoformat(timespec="microseconds")

    with _open_dead_writers_file(part) as src:
        attrs = _attributes(src)
        from ._stream_records import is_stream_layout

        if is_stream_layout(attrs.get("layout_version")):  # a streaming recording (docs/hdf5-layout.md)
            from ._stream_layout import recover_stream

            counts = recover_stream(part, src, final)
            kept = counts["blocks_kept"]
    if is_stream_layout(attrs.get("layout_version")):
        part.unlink()
        log.warning(
            "recovered %s (streaming recording): %d blocks of hits survived (%d lost, %d rows after "
            "the last flush dropped)",
            final,
            counts["blocks_kept"],
            counts["blocks_lost"],
            counts["rows_after_flush"],
        )
        return final
    with _open_dead_writers_file(part) as src:
        attrs = _attributes(src)
        try:
            with h5py.File(temp, "w", libver=L.LIBVER) as dst:
                counts = _copy_intact(src, dst, attrs)
                a = dst.attrs
                for k, v in attrs.items():
                    a[k] = v
                kept = counts["kept"]
                a["n_events"] = np.uint64(kept)
                a["n_pulses"] = np.uint64(dst[L.PULSES].shape[0])
                a["n_scalers"] = np.uint64(dst[L.SCALERS].shape[0])
                for name, attr in (
                    (L.TRIGGER_STEPS, "n_trigger_steps"),
                    (L.TRIGGER_PRIMITIVES, "n_trigger_primitives"),
                ):
                    a[attr] = np.uint64(dst[name].shape[0] if name in dst else 0)
                a["recovered_trigger_steps_lost"] = np.uint64(counts["trigger_steps_lost"])
                if kept:
                    numbers = dst[L.EVENTS]["event_number"]
                    first, last = numbers[0], numbers[-1]
                else:
                    first = last = 0
                a["first_event_number"] = np.uint64(first)
                a["last_event_number"] = np.uint64(last)
                a["closed_cleanly"] = np.uint8(0)
                a["recovered"] = np.uint8(1)
                a["stop_time_utc"] = mtime  # last modification of the .part file: best estimate
                a["recovered_time_utc"] = utc_now_iso()
                a["recovered_rows_after_flush"] = np.uint64(counts["after_flush"])
                a["recovered_checksum_failures"] = np.uint64(counts["flushed"] - kept)
                a["recovered_scalers_lost"] = np.uint64(counts["scalers_lost"])
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    L.durable_rename(temp, final)
    part.unlink()
    log.warning(
        "recovered %s: %d events survived (%d rows after the last flush dropped, %d failed their "
        "checks or could not be read, %d scaler rows lost)",
        final,
        kept,
        counts["after_flush"],
        counts["flushed"] - kept,
        counts["scalers_lost"],
    )
    return final


def _open_dead_writers_file(part: Path) -> h5py.File:
    """Open the file plainly read-only after undoing what its dead writer left.

    Its "open for write" mark is cleared as ``h5clear -s`` would (a SWMR read of a damaged
    file retries each bad metadata block many times, with sleeps), and a file shorter than its
    superblock says is extended with zeros (sparse) to that length: HDF5 refuses to open a
    truncated file, and the lost tail then reads as zeros, which every checksum rejects.
    """
    try:
        flags = status_flags(part)
    except ValueError as err:
        raise _unreadable(part, err) from None
    if flags:
        log.warning("%s: clearing the file-open mark (flags %#x) left by its dead writer", part, flags)
        clear_status_flags(part)
    end = stored_end_of_file(part)
    size = part.stat().st_size
    if size < end:
        log.warning(
            "%s: %d bytes of its tail are missing (the file has %d of %d); recovering what is intact",
            part,
            end - size,
            size,
            end,
        )
        os.truncate(part, end)
    try:
        return h5py.File(part, "r", rdcc_nbytes=L.CHUNK_CACHE_BYTES)
    except OSError as err:
        raise _unreadable(part, err) from None


def _unreadable(part: Path | str, why: object) -> OSError:
    return OSError(f"path_part: {str(part)!r} is not a readable HDF5 run file ({why})")


def _attributes(src: h5py.File) -> dict:
    out = {}
    try:
        names = list(src.attrs)
    except _READ_ERRORS as err:
        raise _unreadable(src.filename, f"its attributes are lost: {err}") from None
    for k in names:
        try:
            out[k] = src.attrs[k]
        except _READ_ERRORS:
            log.warning("%s: attribute %r unreadable, not copied", src.filename, k)
    return out


def _dataset(src: h5py.File, name: str) -> h5py.Dataset | None:
    try:
        ds = src[name]
        ds.shape  # noqa: B018 - the dataspace is read here
        return ds
    except _READ_ERRORS:
        log.warning("%s: dataset %s unreadable", src.filename, name)
        return None


def _rows(ds: h5py.Dataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``0..n-1`` of a 1-d dataset, read chunk by chunk, and which of them could be read."""
    ok = np.zeros(n, dtype=bool)
    out = np.zeros(n, dtype=ds.dtype)
    step = ds.chunks[0] if ds.chunks else max(n, 1)
    for a in range(0, n, step):
        b = min(a + step, n)
        try:
            out[a:b] = ds[a:b]
            ok[a:b] = True
        except _READ_ERRORS:
            pass
    return out, ok


def _like(dst: h5py.File, src: h5py.Dataset, name: str, shape: tuple[int, ...]) -> h5py.Dataset:
    """An empty dataset with the source's type, chunks, filters and attributes."""
    if "/" in name:
        dst.require_group(name.rsplit("/", 1)[0])
    space = h5py.h5s.create_simple((0, *shape), (h5py.h5s.UNLIMITED, *shape))
    h5py.h5d.create(dst.id, name.encode(), src.id.get_type(), space, dcpl=src.id.get_create_plist())
    ds = dst[name]
    for k in src.attrs:
        try:
            ds.attrs[k] = src.attrs[k]
        except _READ_ERRORS:
            pass
    return ds


def _append(ds: h5py.Dataset, rows: np.ndarray) -> None:
    if len(rows):
        m = ds.shape[0]
        ds.resize((m + len(rows), *ds.shape[1:]))
        ds[m:] = rows


def _copy_intact(src: h5py.File, dst: h5py.File, attrs: dict) -> dict[str, int]:
    """Copy what is intact: the channel map, the flushed events that pass every check, their
    pulses and truth rows, the readable scaler rows. Returns the counts."""
    # h5py is untyped (a Dataset is Any to mypy); the entries that may be None are checked below
    ds: dict[str, Any] = {name: _dataset(src, name) for name in (L.EVENTS, L.SAMPLES, L.CRC32, L.PULSES, L.SCALERS)}
    truth = _dataset(src, L.TRUTH) if L.TRUTH in src else None
    if ds[L.EVENTS] is None or ds[L.SAMPLES] is None or ds[L.CRC32] is None or ds[L.PULSES] is None:
        raise _unreadable(src.filename, "its event datasets are lost")
    rows = ds[L.EVENTS].shape[0]
    flushed = min(int(attrs.get("n_events", 0)), rows)
    n = min(flushed, ds[L.SAMPLES].shape[0], ds[L.CRC32].shape[0], *([truth.shape[0]] if truth is not None else []))

    try:
        dst.copy(src[L.CHANNEL_MAP], L.CHANNEL_MAP)
    except _READ_ERRORS:
        log.warning("%s: /channel_map unreadable, not copied", src.filename)
    shape = ds[L.SAMPLES].shape[1:]
    out = {
        name: _like(dst, ds[name], name, shape if name == L.SAMPLES else ())
        for name in (L.EVENTS, L.SAMPLES, L.CRC32, L.PULSES)
    }
    if truth is not None:
        out[L.TRUTH] = _like(dst, truth, L.TRUTH, ())
    out[L.SCALERS] = _like(dst, ds[L.SCALERS], L.SCALERS, ()) if ds[L.SCALERS] is not None else None

    headers, ok = _rows(ds[L.EVENTS], n)
    crc, crc_ok = _rows(ds[L.CRC32], n)
    ok &= crc_ok
    truth_rows = None
    if truth is not None:
        truth_rows, truth_ok = _rows(truth, n)
        ok &= truth_ok
    ok &= _increasing(headers["event_number"], ok)
    # pulses: found by their event_number among the readable rows (an unreadable header block
    # leaves the offsets unknown); an event keeps its pulses only if all n_pulses of them are there
    pulses, pulses_ok = _rows(ds[L.PULSES], ds[L.PULSES].shape[0])
    pulses = pulses[pulses_ok]
    numbers = headers["event_number"]
    lo = np.searchsorted(pulses["event_number"], numbers, side="left")
    hi = np.searchsorted(pulses["event_number"], numbers, side="right")
    ok &= (hi - lo) == headers["n_pulses"].astype(np.int64)

    samples = ds[L.SAMPLES]
    step = samples.chunks[0] if samples.chunks else max(n, 1)
    kept = 0
    for a in range(0, n, step):
        b = min(a + step, n)
        if not ok[a:b].any():
            continue
        try:
            block = samples[a:b]
        except _READ_ERRORS:
            ok[a:b] = False
            continue
        for k in range(b - a):
            if ok[a + k]:
                # numpy's stubs do not declare an ndarray a Buffer (it is one)
                ok[a + k] = zlib.crc32(np.ascontiguousarray(block[k])) == int(crc[a + k])  # type: ignore[arg-type]
        keep = np.flatnonzero(ok[a:b])
        if not len(keep):
            continue
        idx = a + keep
        _append(out[L.SAMPLES], block[keep])
        _append(out[L.EVENTS], headers[idx])
        _append(out[L.CRC32], crc[idx])
        if truth_rows is not None:
            _append(out[L.TRUTH], truth_rows[idx])
        sel = np.concatenate([np.arange(lo[i], hi[i]) for i in idx])
        _append(out[L.PULSES], pulses[sel])
        kept += len(idx)

    scalers_lost = 0
    if out[L.SCALERS] is not None:
        n_scalers = min(int(attrs.get("n_scalers", ds[L.SCALERS].shape[0])), ds[L.SCALERS].shape[0])
        sc, sc_ok = _rows(ds[L.SCALERS], n_scalers)
        _append(out[L.SCALERS], sc[sc_ok])
        scalers_lost = int((~sc_ok).sum())
    steps_lost = _copy_trigger_inputs(src, dst, attrs)
    _copy_trigger_state(src, dst)
    return {
        "kept": kept,
        "flushed": flushed,
        "after_flush": rows - flushed,
        "scalers_lost": scalers_lost,
        "trigger_steps_lost": steps_lost,
    }


def _copy_trigger_inputs(src: h5py.File, dst: h5py.File, attrs: dict) -> int:
    """Copy the flushed ``/trigger_inputs`` (decision steps and their primitives) that can be read.

    The steps index the primitives by count, so what is kept is a prefix: the steps up to the
    first one that cannot be read or whose primitives cannot all be read. Returns the flushed
    steps left out.
    """
    if L.TRIGGER_STEPS not in src or L.TRIGGER_PRIMITIVES not in src:
        return 0
    steps_ds, prims_ds = _dataset(src, L.TRIGGER_STEPS), _dataset(src, L.TRIGGER_PRIMITIVES)
    if steps_ds is None or prims_ds is None:
        return int(attrs.get("n_trigger_steps", 0))
    out_steps = _like(dst, steps_ds, L.TRIGGER_STEPS, ())
    out_prims = _like(dst, prims_ds, L.TRIGGER_PRIMITIVES, ())
    n_steps = min(int(attrs.get("n_trigger_steps", 0)), steps_ds.shape[0])
    n_prims = min(int(attrs.get("n_trigger_primitives", 0)), prims_ds.shape[0])
    steps, ok = _rows(steps_ds, n_steps)
    prims, prims_ok = _rows(prims_ds, n_prims)
    whole = int(np.argmin(ok)) if not ok.all() else n_steps  # readable steps, a prefix
    readable = int(np.argmin(prims_ok)) if not prims_ok.all() else n_prims
    need = np.cumsum(steps["n_primitives"][:whole].astype(np.int64))
    whole = int(np.searchsorted(need, readable, side="right"))  # steps whose primitives are all there
    _append(out_steps, steps[:whole])
    _append(out_prims, prims[: int(need[whole - 1]) if whole else 0])
    return n_steps - whole


def _copy_trigger_state(src: h5py.File, dst: h5py.File) -> None:
    """Copy ``/trigger_inputs/state`` and its steps when all of them can be read, else leave them
    empty (a state is used whole or not at all; replay checks its CRC)."""
    names = (L.TRIGGER_STATE, L.TRIGGER_STATE_STEPS, L.TRIGGER_STATE_PRIMITIVES)
    if not all(name in src for name in names):
        return
    found = [_dataset(src, name) for name in names]
    sources = [d for d in found if d is not None]
    if len(sources) < len(found):
        return
    outs = [_like(dst, d, name, ()) for d, name in zip(sources, names)]
    read = [_rows(d, d.shape[0]) for d in sources]
    if all(ok.all() for _, ok in read):
        for out, (rows, _) in zip(outs, read):
            _append(out, rows)
    else:  # the attributes then describe no state
        outs[0].attrs["first_slice"] = np.int64(-1)
        outs[0].attrs["state_version"] = np.int64(0)


def _increasing(numbers: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Readable rows whose event number is above every readable one before it (a zeroed or
    stale row never passes as an event)."""
    good = ok.copy()
    last = -1
    for i in np.flatnonzero(ok).tolist():
        v = int(numbers[i])
        if v <= last:
            good[i] = False
        else:
            last = v
    return good
