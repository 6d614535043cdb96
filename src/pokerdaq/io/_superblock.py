"""Clear the "file is open for write" mark that a dead HDF5 writer leaves, like ``h5clear -s``.

A file opened for writing in the HDF5 1.8+ format (superblock version 2 or 3) carries file
consistency flags in its superblock until it is closed. HDF5 then refuses to open it
("file is already open for write"); a SWMR reader may open it only when the writer used SWMR.
h5py has no call for HDF5's ``h5clear`` tool, so :func:`recover` uses this when a ``.part``
file cannot be opened otherwise: it resets the flags and rewrites the superblock checksum
(Bob Jenkins' lookup3, as in HDF5's ``H5_checksum_lookup3``). Superblock layout: HDF5 File
Format Specification, "Superblock, versions 2 and 3".
"""

from __future__ import annotations

import os
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Jenkins lookup3 ``hashlittle`` of ``data``, byte by byte (HDF5's metadata checksum)."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    k = 0
    while length > 12:
        a = (a + int.from_bytes(data[k : k + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[k + 4 : k + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[k + 8 : k + 12], "little")) & _MASK
        a = (a - c) & _MASK
        a ^= _rot(c, 4)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rot(a, 6)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rot(b, 8)
        b = (b + a) & _MASK
        a = (a - c) & _MASK
        a ^= _rot(c, 16)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rot(a, 19)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rot(b, 4)
        b = (b + a) & _MASK
        length -= 12
        k += 12
    if length == 0:
        return c
    tail = data[k:] + bytes(12 - length)  # the missing bytes add nothing
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b
    c = (c - _rot(b, 14)) & _MASK
    a ^= c
    a = (a - _rot(c, 11)) & _MASK
    b ^= a
    b = (b - _rot(a, 25)) & _MASK
    c ^= b
    c = (c - _rot(b, 16)) & _MASK
    a ^= c
    a = (a - _rot(c, 4)) & _MASK
    b ^= a
    b = (b - _rot(a, 14)) & _MASK
    c ^= b
    c = (c - _rot(b, 24)) & _MASK
    return c


def _superblock_size(head: bytes) -> int:
    size_of_offsets = head[9]
    return 12 + 4 * size_of_offsets + 4  # fixed part, 4 addresses, checksum


def status_flags(path: str | os.PathLike[str]) -> int:
    """File consistency flags of a version 2/3 superblock at offset 0 (0 = closed properly).

    Raises
    ------
    ValueError
        When the file does not start with a version 2 or 3 superblock or its checksum is wrong.
    """
    head = _read_superblock(Path(path))
    return head[11]


def _read_superblock(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(12 + 4 * 8 + 4)
    if len(head) < 12 or head[:8] != SIGNATURE:
        raise ValueError(f"path: {str(path)!r} does not start with an HDF5 superblock")
    if head[8] not in (2, 3):
        raise ValueError(
            f"path: {str(path)!r} has superblock version {head[8]}, expected 2 or 3 (libver v110 or later)"
        )
    size = _superblock_size(head)
    with open(path, "rb") as fh:
        head = fh.read(size)
    stored = int.from_bytes(head[size - 4 : size], "little")
    if lookup3(head[: size - 4]) != stored:
        raise ValueError(f"path: {str(path)!r} superblock checksum mismatch")
    return head


def clear_status_flags(path: str | os.PathLike[str]) -> int:
    """Reset the superblock's file consistency flags and fix its checksum, in place.

    Returns the flags found. Only for a file whose writer is dead: clearing the mark of a
    file still being written lets a second writer corrupt it.
    """
    path = Path(path)
    head = bytearray(_read_superblock(path))
    size = len(head)
    found = head[11]
    if found:
        head[11] = 0
        head[size - 4 :] = lookup3(bytes(head[: size - 4])).to_bytes(4, "little")
        with open(path, "r+b") as fh:
            fh.write(head)
            fh.flush()
            os.fsync(fh.fileno())
    return found


def stored_end_of_file(path: str | os.PathLike[str]) -> int:
    """The end of the file as its version 2/3 superblock records it (base address + end-of-file
    address): a file shorter than this lost its tail.

    Raises
    ------
    ValueError
        As :func:`status_flags`.
    """
    head = _read_superblock(Path(path))
    size = head[9]
    base = int.from_bytes(head[12 : 12 + size], "little")
    eof = int.from_bytes(head[12 + 2 * size : 12 + 3 * size], "little")
    return base + eof
