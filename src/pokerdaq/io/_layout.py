"""Names, chunk shapes, compression filters and file naming of the run-file layout.

Everything here is described in docs/hdf5-layout.md; change both together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

PART_SUFFIX = ".part"

# SWMR needs the HDF 1.10 file format (superblock v3, extensible chunk indices); a low bound of
# v110 (rather than "latest" = v200 with HDF5 2.0) keeps the files readable by HDF5 1.10 to 1.14
LIBVER = ("v110", "latest")

EVENTS = "events"
SAMPLES = "raw/samples"
CRC32 = "raw/crc32"
PULSES = "pulses"
TRUTH = "truth"
CHANNEL_MAP = "channel_map"
SCALERS = "scalers"
TRIGGER_STEPS = "trigger_inputs/steps"
TRIGGER_PRIMITIVES = "trigger_inputs/primitives"
# the trigger model's state at a step, and the steps from there to the file's own (rotated runs)
TRIGGER_STATE = "trigger_inputs/state"
TRIGGER_STATE_STEPS = "trigger_inputs/state_steps"
TRIGGER_STATE_PRIMITIVES = "trigger_inputs/state_primitives"

SAMPLE_CHUNK_BYTES = 1024 << 10  # ~1 MiB chunks: the h5py/HDF5 sweet spot measured with bench/bench_io.py
EVENT_CHUNK_ROWS = 512  # small per-event chunks: a file that lost its tail keeps all but the last ones
PULSE_CHUNK_ROWS = 2048
TRUTH_CHUNK_ROWS = 512
SCALER_CHUNK_ROWS = 64
TRIGGER_STEP_CHUNK_ROWS = 256
TRIGGER_PRIMITIVE_CHUNK_ROWS = 16384
TRIGGER_STATE_CHUNK_WORDS = 1024  # written once per file: small chunks waste no space on a small state
TRIGGER_STATE_STEP_CHUNK_ROWS = 16
CHUNK_CACHE_BYTES = 32 << 20  # holds several partly filled sample chunks between batches

COMPRESSIONS = ("gzip", "zstd", "lz4", "none")
GZIP_LEVEL = 1  # levels above 1 gain a few per cent in size for half the write speed (bench/bench_compression.py)


def compression_filter(name: str) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords of a compression choice (docs/hdf5-layout.md "Compression").

    ``gzip`` (the poker.toml default, ``daq.compression``): HDF5's built-in deflate, level 1,
    after the built-in byte shuffle -- every HDF5 library and tool (h5dump, HDFView, plain
    h5py) reads it without a plugin. ``zstd``/``lz4``: Blosc2 with bit-shuffle, faster to
    write, but readers need the Blosc2 filter plugin (``hdf5plugin``).
    """
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": True}
    if name == "zstd":
        import hdf5plugin  # only the Blosc2 options need the plugin package

        return dict(hdf5plugin.Blosc2(cname="zstd", clevel=1, filters=hdf5plugin.Blosc2.BITSHUFFLE))
    if name == "lz4":
        import hdf5plugin

        return dict(hdf5plugin.Blosc2(cname="lz4", clevel=5, filters=hdf5plugin.Blosc2.BITSHUFFLE))
    if name == "none":
        return {}
    raise ValueError(f"compression: {name!r}, expected one of {', '.join(COMPRESSIONS)}")


def part_path(final: Path) -> Path:
    """Name of a file while it is written: ``NAME.part``."""
    return final.with_name(final.name + PART_SUFFIX)


def final_path(part: Path) -> Path:
    """Final name of a ``NAME.part`` file."""
    if not part.name.endswith(PART_SUFFIX):
        raise ValueError(f"path_part: {str(part)!r} does not end with {PART_SUFFIX!r}")
    return part.with_name(part.name[: -len(PART_SUFFIX)])


def rotated_path(first: Path, file_index: int) -> Path:
    """File ``file_index`` of a run: ``NAME.h5``, then ``NAME_0001.h5``, ``NAME_0002.h5`` ..."""
    if file_index == 0:
        return first
    return first.with_name(f"{first.stem}_{file_index:04d}{first.suffix}")


def run_paths(first: str | os.PathLike[str], *, with_part: bool = False) -> list[Path]:
    """The finished files of a run, in ``file_index`` order: ``NAME``, ``NAME_0001`` ... while they exist.

    With ``with_part``, also the ``.part`` file that follows them, if there is one (the file a
    writer has open, or left when it died).
    """
    first = Path(first)
    paths: list[Path] = []
    while (p := rotated_path(first, len(paths))).exists():
        paths.append(p)
    if with_part and (p := part_path(rotated_path(first, len(paths)))).exists():
        paths.append(p)
    return paths


def durable_rename(src: Path, dst: Path) -> None:
    """fsync ``src``, rename it to ``dst`` (atomic), fsync the folder: the final name appears
    only for complete data, and survives a power cut once this returns."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_for_reading(path: Path) -> h5py.File:
    """Open a run file read-only, also one still open for writing or left by a killed writer.

    A file written in SWMR mode keeps its "open for write" mark until closed; HDF5 refuses a
    plain read-only open of it but allows a SWMR read, which is safe by SWMR's design.
    """
    # registers the Blosc2 filter for files written with compression "zstd" or "lz4"; the
    # default gzip needs nothing beyond HDF5 itself
    import hdf5plugin  # noqa: F401

    try:
        return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES)
    except FileNotFoundError:
        raise
    except OSError as plain_error:
        try:
            return h5py.File(path, "r", swmr=True, rdcc_nbytes=CHUNK_CACHE_BYTES)
        except OSError:
            raise OSError(f"{path}: not a readable HDF5 run file ({plain_error})") from None
