"""``pokerdaq import``: waveforms recorded by other digitizers as a pokerdaq run file.

Sources (docs/replay-inspect.md "Bringing your own data"):

- ``hdf5``: a dataset (``--dataset``, default the only 3-D one) shaped events x channels x
  samples; ``numpy``: ``.npy`` arrays or one array of an ``.npz`` (``--dataset``), same shape.
  Any integer dtype is taken as ADC codes; floating point needs ``--gain G`` (code =
  value / G, rounded to the nearest integer). Several files are concatenated along events.
- ``wavedump``: CAEN WaveDump binary output, one ``wave_N.dat`` per channel N, each event a
  24-byte header of six little-endian uint32 (event size in bytes including the header,
  board id, pattern, channel, event counter, trigger time tag) followed by uint16 samples.

The channel map CSV (header ``source,name``) says which pokerdaq channel each source channel
is; channels not listed are not recorded and are absent from the file (not zeros). The run
file is written under a temporary name and renamed when complete: bad input leaves nothing.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pokerdaq.config import Config, ConfigError

from ._records import EVENT_DTYPE

FORMATS = ("hdf5", "numpy", "wavedump")
WAVEDUMP_HEADER = np.dtype(
    [
        ("event_size", "<u4"),
        ("board_id", "<u4"),
        ("pattern", "<u4"),
        ("channel", "<u4"),
        ("event_counter", "<u4"),
        ("trigger_time_tag", "<u4"),
    ]
)
"""The 24-byte WaveDump event header (all six words little-endian uint32)."""
WAVEDUMP_COUNTER_BITS = 24  # the V1725 event counter wraps at 2^24
WAVEDUMP_TTT_BITS = 31  # trigger time tag: 31 bits, bit 31 is the roll-over flag
WAVEDUMP_TICKS_PER_TTT = 2  # one TTT count = 8 ns = 2 ticks of the 250 MHz sample clock
BATCH_EVENTS = 1024


class ImportInputError(ValueError):
    """Bad input to ``pokerdaq import``: one line naming the file, the offset and the field."""

    def __init__(self, path: str | os.PathLike[str], offset: str, field: str, message: str) -> None:
        super().__init__(f"{path}: {offset}: {field}: {message}")


@dataclass(frozen=True)
class ChannelAssignment:
    """Source channel (index along the channel axis, or WaveDump's N) -> pokerdaq channel number."""

    sources: np.ndarray  # int64, in channel-number order
    channels: np.ndarray  # int64 channel numbers of cfg.channel_map, increasing


def read_channel_map(path: str | os.PathLike[str], cfg: Config) -> ChannelAssignment:
    """Parse the ``source,name`` CSV against the configuration's channel map.

    Raises
    ------
    ImportInputError
        A wrong header, a source that is not an integer >= 0, a source or name given twice,
        or a name that is not a channel of ``cfg.channel_map`` (naming the line).
    """
    table = cfg.channel_map.table
    names = {n.decode(): i for i, n in enumerate(table["name"])}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ImportInputError(path, "line 1", "file", f"not a readable UTF-8 CSV file ({err})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0]] != ["source", "name"]:
        got = ",".join(rows[0]) if rows else ""
        raise ImportInputError(path, "line 1", "header", f"{got!r}, expected 'source,name'")
    sources: dict[int, int] = {}
    seen: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise ImportInputError(path, f"line {line}", "row", f"{','.join(row)!r}, expected two fields source,name")
        src_text, name = row[0].strip(), row[1].strip()
        if not re.fullmatch(r"\d+", src_text):
            raise ImportInputError(path, f"line {line}", "source", f"{src_text!r}, expected an integer >= 0")
        src = int(src_text)
        if name not in names:
            raise ImportInputError(
                path,
                f"line {line}",
                "name",
                f"{name!r} is not a channel of the "
                f"configuration's channel map ({len(names)} channels, e.g. {next(iter(names))!r})",
            )
        if src in sources:
            raise ImportInputError(path, f"line {line}", "source", f"{src} is mapped twice")
        if names[name] in seen:
            raise ImportInputError(
                path, f"line {line}", "name", f"{name!r} is mapped twice (also line {seen[names[name]]})"
            )
        sources[src] = names[name]
        seen[names[name]] = line
    if not sources:
        raise ImportInputError(path, "line 2", "row", "no channels mapped")
    order = sorted(sources, key=lambda s: sources[s])
    return ChannelAssignment(np.asarray(order, dtype=np.int64), np.asarray([sources[s] for s in order], dtype=np.int64))


# ---------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """One input file: events x channels x samples, read in slices of events."""

    path: Path
    shape: tuple[int, ...]  # (events, channels, samples)
    dtype: np.dtype
    read: Callable[..., np.ndarray]  # (start, stop, source_channels) -> array (k, channels, samples)
    close: Callable[[], object] | None = None


def _hdf5_source(path: Path, dataset: str | None) -> _Source:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise ImportInputError(path, "offset 0", "file", f"not a readable HDF5 file ({err})") from None
    try:
        if dataset is None:
            found: list[str] = []
            h5.visititems(
                lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None
            )
            if len(found) != 1:
                raise ImportInputError(
                    path,
                    "/",
                    "--dataset",
                    f"{len(found)} three-dimensional datasets "
                    f"({', '.join(found) or 'none'}), name one with --dataset PATH",
                )
            dataset = found[0]
        if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
            raise ImportInputError(path, f"/{dataset.lstrip('/')}", "--dataset", "no such dataset")
        ds = h5[dataset]
    except BaseException:
        h5.close()
        raise
    if ds.ndim != 3:
        h5.close()
        raise ImportInputError(path, ds.name, "shape", f"{ds.shape}, expected events x channels x samples")
    return _Source(path, tuple(int(x) for x in ds.shape), ds.dtype, lambda a, b, chans: ds[a:b][:, chans, :], h5.close)


def _numpy_source(path: Path, dataset: str | None) -> _Source:
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ImportInputError(path, "offset 0", "file", f"not a readable .npy/.npz file ({err})") from None
    close = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        close = loaded.close
        keys = list(loaded.files)
        key = dataset
        if key is None:
            if len(keys) != 1:
                loaded.close()
                raise ImportInputError(
                    path,
                    "archive",
                    "--dataset",
                    f"{len(keys)} arrays ({', '.join(keys)}), name one with --dataset NAME",
                )
            key = keys[0]
        if key not in keys:
            loaded.close()
            raise ImportInputError(path, "archive", "--dataset", f"{key!r} not among {', '.join(keys)}")
        arr = loaded[key]
    else:
        arr = loaded
    if arr.ndim != 3:
        if close:
            close()
        raise ImportInputError(path, "array", "shape", f"{arr.shape}, expected events x channels x samples")
    return _Source(
        path, tuple(int(x) for x in arr.shape), arr.dtype, lambda a, b, chans: np.asarray(arr[a:b][:, chans, :]), close
    )


def _wavedump_channel(name: str) -> int | None:
    m = re.fullmatch(r"wave_?(\d+)\.dat", name)
    return int(m.group(1)) if m else None


def _unwrap(values: np.ndarray, bits: int) -> np.ndarray:
    """A counter of ``bits`` bits made monotonic: each decrease is one roll-over."""
    v = values.astype(np.int64) & ((1 << bits) - 1)
    wraps = np.concatenate([[0], np.cumsum(np.diff(v) < 0)])
    return v + (wraps << bits)


@dataclass
class _WaveDump:
    """The channel files of one WaveDump recording, checked: same events, same record length."""

    files: dict[int, np.memmap]  # source channel N -> (events, 12 + samples) uint16 records
    n_samples: int
    headers: np.ndarray  # WAVEDUMP_HEADER of the first mapped channel's events


def _wavedump_sources(paths: Sequence[Path], assignment: ChannelAssignment) -> _WaveDump:
    by_channel: dict[int, Path] = {}
    for p in paths:
        n = _wavedump_channel(p.name)
        if n is None:
            raise ImportInputError(p, "offset 0", "file name", f"{p.name!r}, expected wave_N.dat (N: the channel)")
        if n in by_channel:
            raise ImportInputError(p, "offset 0", "file name", f"channel {n} given twice (also {by_channel[n]})")
        by_channel[n] = p
    missing = [int(s) for s in assignment.sources if int(s) not in by_channel]
    if missing:
        raise ImportInputError(
            paths[0].parent / f"wave_{missing[0]}.dat",
            "offset 0",
            "source",
            f"channel {missing[0]} is in the channel map but its file is not among the inputs",
        )
    files: dict[int, np.memmap] = {}
    ref_headers: np.ndarray | None = None
    ref_path: Path | None = None
    record_bytes = None
    for src in (int(s) for s in assignment.sources):
        p = by_channel[src]
        size = p.stat().st_size
        if size < WAVEDUMP_HEADER.itemsize:
            raise ImportInputError(
                p,
                "offset 0",
                "event_size",
                f"file of {size} bytes, shorter than one {WAVEDUMP_HEADER.itemsize}-byte event header (truncated)",
            )
        first = np.fromfile(p, dtype=WAVEDUMP_HEADER, count=1)[0]
        ev_size = int(first["event_size"])
        if ev_size <= WAVEDUMP_HEADER.itemsize or (ev_size - WAVEDUMP_HEADER.itemsize) % 2:
            raise ImportInputError(
                p,
                "offset 0",
                "event_size",
                f"{ev_size}, expected 24 header bytes plus "
                "an even number of sample bytes (is the header enabled in WaveDump?)",
            )
        if record_bytes is None:
            record_bytes = ev_size
        elif ev_size != record_bytes:
            raise ImportInputError(
                p,
                "offset 0",
                "event_size",
                f"{ev_size}, but {ref_path} has {record_bytes} (expected one record length for all channels)",
            )
        n_events, rest = divmod(size, ev_size)
        if rest:
            raise ImportInputError(
                p,
                f"offset {n_events * ev_size}",
                "event_size",
                f"last event has {rest} of {ev_size} bytes (truncated file)",
            )
        rec = np.memmap(p, dtype=np.uint16, mode="r", shape=(n_events, ev_size // 2))
        headers = np.ascontiguousarray(rec[:, :12]).view(WAVEDUMP_HEADER).reshape(n_events)
        bad = np.flatnonzero(headers["event_size"] != ev_size)
        if len(bad):
            k = int(bad[0])
            raise ImportInputError(
                p,
                f"offset {k * ev_size}",
                "event_size",
                f"{int(headers['event_size'][k])} in event {k}, expected {ev_size} like event 0",
            )
        bad = np.flatnonzero(headers["channel"] != src)
        if len(bad):
            k = int(bad[0])
            raise ImportInputError(
                p,
                f"offset {k * ev_size + 12}",
                "channel",
                f"{int(headers['channel'][k])} in event {k}, expected {src} (the N of {p.name})",
            )
        if ref_headers is None:
            ref_headers, ref_path = headers, p
        else:
            if n_events != len(ref_headers):
                k = min(n_events, len(ref_headers))
                raise ImportInputError(
                    p,
                    f"offset {k * ev_size}",
                    "event_counter",
                    f"{n_events} events, but {ref_path} has {len(ref_headers)} (channel files out of step)",
                )
            bad = np.flatnonzero(headers["event_counter"] != ref_headers["event_counter"])
            if len(bad):
                k = int(bad[0])
                raise ImportInputError(
                    p,
                    f"offset {k * ev_size + 16}",
                    "event_counter",
                    f"{int(headers['event_counter'][k])} in event {k}, but "
                    f"{ref_path} has {int(ref_headers['event_counter'][k])} "
                    "(channel files out of step)",
                )
        files[src] = rec
    assert ref_headers is not None and record_bytes is not None and ref_path is not None
    if not len(ref_headers):
        raise ImportInputError(ref_path, "offset 0", "event_size", "no events")
    counters = _unwrap(ref_headers["event_counter"], WAVEDUMP_COUNTER_BITS)
    bad = np.flatnonzero(np.diff(counters) <= 0)
    if len(bad):
        k = int(bad[0]) + 1
        raise ImportInputError(
            ref_path,
            f"offset {k * record_bytes + 16}",
            "event_counter",
            f"{int(ref_headers['event_counter'][k])} in event {k} repeats the previous event's",
        )
    return _WaveDump(files, (record_bytes - WAVEDUMP_HEADER.itemsize) // 2, ref_headers)


# ---------------------------------------------------------------------------- conversion


def _to_codes(
    block: np.ndarray, path: Path, first_event: int, chans: np.ndarray, gain: float | None, negative: bool, adc_max: int
) -> np.ndarray:
    """ADC codes (uint16) of a block of source samples, range-checked."""
    if block.dtype.kind == "f":
        if gain is None:
            raise ImportInputError(
                path, f"event {first_event}", "dtype", f"{block.dtype} samples need --gain G (ADC code = value / G)"
            )
        codes = np.rint(block / gain)
        finite = np.isfinite(codes)
        if not finite.all():
            e, c, s = (int(x) for x in np.argwhere(~finite)[0])
            raise ImportInputError(
                path,
                f"event {first_event + e}, channel {int(chans[c])}, sample {s}",
                "samples",
                f"{block[e, c, s]!r}, expected a finite number",
            )
    elif block.dtype.kind in "iu":
        if gain is not None:
            codes = np.rint(block.astype(np.float64) / gain)
        else:
            codes = block.astype(np.int64)
    else:
        raise ImportInputError(path, "array", "dtype", f"{block.dtype}, expected integer or floating-point samples")
    if negative:
        codes = adc_max - codes
    bad = (codes < 0) | (codes > adc_max)
    if bad.any():
        e, c, s = (int(x) for x in np.argwhere(bad)[0])
        hint = " (negative pulses? --polarity negative)" if not negative and codes[e, c, s] < 0 else ""
        raise ImportInputError(
            path,
            f"event {first_event + e}, channel {int(chans[c])}, sample {s}",
            "samples",
            f"{block[e, c, s]!r} gives ADC code {int(codes[e, c, s])}, expected 0..{adc_max} "
            f"(digitizer.adc_bits){hint}",
        )
    return codes.astype(np.uint16)


def _prepare_config(cfg: Config, n_samples: int, channels: np.ndarray, where: str) -> Config:
    """The configuration with the imported window length, checked against the pulse finder."""
    from pokerdaq.dsp import PulseParams

    if cfg.digitizer.window_samples != n_samples:
        try:
            cfg = cfg.replace(digitizer={"window_samples": n_samples})
        except ConfigError as err:
            raise ImportInputError(
                where, "shape", "samples", f"windows of {n_samples} samples do not fit the configuration: {err}"
            ) from None
    names = cfg.channel_map.table["name"]
    for ch in channels:  # one channel at a time: the message names the channel
        try:
            PulseParams.from_config(cfg, [int(ch)]).check_window(n_samples)
        except ValueError as err:
            raise ImportInputError(
                where,
                "shape",
                "samples",
                f"windows of {n_samples} samples do not fit the pulse finder of channel {names[ch].decode()!r}: {err}",
            ) from None
    return cfg


def _blocks(
    sources: list[_Source], assignment: ChannelAssignment, gain: float | None, negative: bool, adc_max: int
) -> Iterator[np.ndarray]:
    chans = assignment.sources
    for src in sources:
        n = src.shape[0]
        for a in range(0, n, BATCH_EVENTS):
            b = min(n, a + BATCH_EVENTS)
            yield _to_codes(src.read(a, b, chans), src.path, a, assignment.channels, gain, negative, adc_max)


def import_run(
    paths: Sequence[str | os.PathLike[str]],
    fmt: str,
    channel_map: str | os.PathLike[str],
    output: str | os.PathLike[str],
    cfg: Config,
    *,
    dataset: str | None = None,
    gain: float | None = None,
    polarity: str = "positive",
    overwrite: bool = False,
) -> Path:
    """Write the waveforms of another digitizer as a pokerdaq run file.

    Parameters
    ----------
    paths
        Input files: HDF5 files, ``.npy``/``.npz`` files, or WaveDump ``wave_N.dat`` files.
    fmt
        ``"hdf5"``, ``"numpy"`` or ``"wavedump"``.
    channel_map
        CSV file ``source,name`` (:func:`read_channel_map`).
    output
        The run file to write (written as a temporary file, renamed when complete).
    cfg
        Detector, digitizer and pulse-finder configuration; its window length is replaced by
        the imported one.
    dataset
        HDF5 dataset path or ``.npz`` array name (default: the only candidate).
    gain
        Values per ADC count: ADC code = value / gain (needed for floating-point samples).
    polarity
        ``"positive"`` or ``"negative"`` (code = adc_max - value: pulses going down).
    overwrite
        Replace an existing output file.

    Returns
    -------
    pathlib.Path
        The run file.

    Raises
    ------
    ImportInputError
        For any bad input, naming file, offset and field; no output is left behind.
    """
    if fmt not in FORMATS:
        raise ImportInputError("--format", "argument", "format", f"{fmt!r}, expected one of {', '.join(FORMATS)}")
    if polarity not in ("positive", "negative"):
        raise ImportInputError("--polarity", "argument", "polarity", f"{polarity!r}, expected positive or negative")
    if gain is not None and not (np.isfinite(gain) and gain > 0):
        raise ImportInputError("--gain", "argument", "gain", f"{gain!r}, expected a number > 0")
    files = [Path(p) for p in paths]
    if not files:
        raise ImportInputError("SRC", "argument", "inputs", "expected at least one input file")
    for p in files:
        if not p.is_file():
            raise ImportInputError(p, "offset 0", "file", "no such file")
    out = Path(output)
    if out.exists() and not overwrite:
        raise ImportInputError(out, "offset 0", "--output", "exists; pass --overwrite to replace it")
    assignment = read_channel_map(channel_map, cfg)
    negative = polarity == "negative"
    adc_max = cfg.digitizer.adc_max

    sources: list[_Source] = []
    wd: _WaveDump | None = None
    try:
        if fmt == "wavedump":
            wd = _wavedump_sources(files, assignment)
            n_samples, n_events = wd.n_samples, len(wd.headers)
            where = str(files[0])
        else:
            opener = _hdf5_source if fmt == "hdf5" else _numpy_source
            for p in files:
                sources.append(opener(p, dataset))
            n_ch, n_samples = sources[0].shape[1:]
            for s in sources:
                if s.shape[1:] != (n_ch, n_samples):
                    raise ImportInputError(
                        s.path,
                        "shape",
                        "samples",
                        f"{s.shape[1]} channels x {s.shape[2]} samples, "
                        f"but {sources[0].path} has {n_ch} x {n_samples} (expected equal)",
                    )
            top = int(assignment.sources.max())
            if top >= n_ch:
                raise ImportInputError(
                    channel_map,
                    "source",
                    "source",
                    f"{top} is beyond the {n_ch} channels (0..{n_ch - 1}) of {sources[0].path}",
                )
            n_events = sum(s.shape[0] for s in sources)
            where = str(sources[0].path)
        if n_events == 0:
            raise ImportInputError(where, "shape", "events", "no events")
        run_cfg = _prepare_config(cfg, n_samples, assignment.channels, where)
        return _write(out, run_cfg, assignment, sources, wd, gain, negative, adc_max, fmt)
    finally:
        for s in sources:
            if s.close is not None:
                s.close()


def _write(
    out: Path,
    cfg: Config,
    assignment: ChannelAssignment,
    sources: list[_Source],
    wd: _WaveDump | None,
    gain: float | None,
    negative: bool,
    adc_max: int,
    fmt: str,
) -> Path:
    from ._layout import part_path
    from ._writer import RunFileWriter

    # the writer makes TMP.part and renames it to TMP at close; TMP becomes the output only
    # after every event was converted and written: a failure anywhere leaves no output file
    tmp = out.with_name(f".{out.name}.importing")
    for p in (tmp, part_path(tmp)):
        p.unlink(missing_ok=True)
    writer = RunFileWriter(tmp, cfg, producer=f"import ({fmt})", overwrite=True, channels=assignment.channels)
    ok = False
    try:
        if wd is not None:
            counters = _unwrap(wd.headers["event_counter"], WAVEDUMP_COUNTER_BITS)
            ticks = _unwrap(wd.headers["trigger_time_tag"], WAVEDUMP_TTT_BITS) * WAVEDUMP_TICKS_PER_TTT
            n = len(counters)
            for a in range(0, n, BATCH_EVENTS):
                b = min(n, a + BATCH_EVENTS)
                block = np.stack([np.asarray(wd.files[int(s)][a:b, 12:]) for s in assignment.sources], axis=1)
                src = next(iter(wd.files.values())).filename  # a memmap of a file: never None
                codes = _to_codes(
                    block,
                    Path(src),  # type: ignore[arg-type]
                    a,
                    assignment.channels,
                    gain,
                    negative,
                    adc_max,
                )
                writer.write_events(_headers(counters[a:b], ticks[a:b]), codes)
        else:
            first = 0
            for codes in _blocks(sources, assignment, gain, negative, adc_max):
                numbers = np.arange(first, first + len(codes), dtype=np.int64)
                writer.write_events(_headers(numbers, np.zeros(len(codes), np.int64)), codes)
                first += len(codes)
        ok = True
    finally:
        writer.close()
        if ok:
            os.replace(tmp, out)
        else:
            tmp.unlink(missing_ok=True)
    return out


def _headers(numbers: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    h = np.zeros(len(numbers), EVENT_DTYPE)
    h["event_number"] = numbers
    h["timestamp"] = ticks
    return h
