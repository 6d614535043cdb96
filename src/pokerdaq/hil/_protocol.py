"""Wire format of the hardware-in-the-loop protocol (docs/hil-protocol.md, version 2).

Every message is two ZeroMQ frames after the routing envelope: a 40-byte header and a payload
(possibly empty). All integers little-endian. The header carries the message type, the
sequence number the reply echoes, the first window number, a count, the window shape, the
payload length and two CRC-32 (zlib / IEEE 802.3): of the payload, and of the header's first
36 bytes.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._regmap import PULSE_FINDER
from ..dsp import PULSE_DTYPE
from ..trigger import TRIGGER_DTYPE

MAGIC = b"PKHL"
VERSION = 3  # 2: trigger registers (CONFIGURE_TRIGGER) and trigger records in RESULT; 3: ALGORITHM in CONFIGURE
HEADER = struct.Struct("<4sHHIQIHHII")  # without the trailing header CRC
HEADER_SIZE = HEADER.size + 4  # 40 bytes (tests/hil/test_protocol.py)

REGISTER_NAMES = tuple(r.name for r in PULSE_FINDER)
"""The pulse-finder registers in register order (firmware_models/registers.toml), ``algorithm`` last."""
REGISTERS_DTYPE = np.dtype([(n, "<i4") for n in REGISTER_NAMES])
"""CONFIGURE payload: one row per channel, the registers of docs/firmware-spec.md 1.2 in register order."""

WIRE_PULSE_DTYPE = np.dtype(
    [("window", "<u8")] + [(n, PULSE_DTYPE[n].newbyteorder("<")) for n in PULSE_DTYPE.names or ()]
)
"""RESULT payload: one packed row per pulse; ``window`` counts from the request's first window
(absolute window number = header ``first_window`` + ``window``)."""

WIRE_TRIGGER_DTYPE = np.dtype(
    [("window", "<u8")] + [(n, TRIGGER_DTYPE[n].newbyteorder("<")) for n in TRIGGER_DTYPE.names or ()]
)
"""RESULT payload after the pulse records, when trigger registers were configured: one packed
row per window of the request, in window order (``TRIGGER_DTYPE`` of docs/firmware-spec.md
Part 2, window mode)."""

MAX_PAYLOAD = 256 << 20  # 256 MiB: a request larger than this is refused (bounded memory)


class MsgType(enum.IntEnum):
    """Message types (header ``type``). Replies have bit 7 set."""

    PING = 0x01
    CONFIGURE = 0x02
    WINDOWS = 0x03
    CONFIGURE_TRIGGER = 0x04
    PONG = 0x81
    ACK = 0x82
    RESULT = 0x83
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """``count`` field of an ERROR reply; the payload is a UTF-8 explanation."""

    BAD_HEADER = 1  # wrong magic, version, length or header CRC
    BAD_PAYLOAD_CRC = 2  # payload CRC-32 does not match the header
    BAD_SIZE = 3  # payload length does not match count x channels x samples
    NOT_CONFIGURED = 4  # WINDOWS before CONFIGURE, or a different channel count
    BAD_REGISTERS = 5  # register values out of range (message says which)
    UNKNOWN_TYPE = 6
    INTERNAL = 7


class ProtocolError(Exception):
    """A message that does not follow docs/hil-protocol.md."""


@dataclass(frozen=True)
class Header:
    type: int
    seq: int
    first_window: int = 0
    count: int = 0
    n_channels: int = 0
    n_samples: int = 0
    payload_len: int = 0
    payload_crc: int = 0


def encode(
    msg_type: int,
    seq: int,
    payload: bytes = b"",
    *,
    first_window: int = 0,
    count: int = 0,
    n_channels: int = 0,
    n_samples: int = 0,
) -> list[bytes]:
    """Header and payload frames of one message."""
    head = HEADER.pack(
        MAGIC,
        VERSION,
        int(msg_type),
        seq & 0xFFFFFFFF,
        first_window,
        count,
        n_channels,
        n_samples,
        len(payload),
        zlib.crc32(payload),
    )
    return [head + struct.pack("<I", zlib.crc32(head)), payload]


def decode(frames: list[bytes]) -> tuple[Header, bytes]:
    """Check and split a message (header frame, payload frame).

    Raises
    ------
    ProtocolError
        Naming what is wrong: frame count, length, magic, version, header CRC, payload length
        or payload CRC (with both values).
    """
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames (header, payload), got {len(frames)}")
    head, payload = bytes(frames[0]), bytes(frames[1])
    if len(head) != HEADER_SIZE:
        raise ProtocolError(f"header of {len(head)} bytes, expected {HEADER_SIZE}")
    magic, version, mtype, seq, first, count, nch, ns, plen, pcrc = HEADER.unpack(head[:-4])
    (hcrc,) = struct.unpack("<I", head[-4:])
    if zlib.crc32(head[:-4]) != hcrc:
        raise ProtocolError(
            f"header CRC-32 0x{zlib.crc32(head[:-4]):08x} != 0x{hcrc:08x} in the message (corrupted header)"
        )
    if magic != MAGIC:
        raise ProtocolError(f"magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, expected {VERSION}")
    header = Header(mtype, seq, first, count, nch, ns, plen, pcrc)
    if len(payload) != plen:
        raise ProtocolError(f"payload of {len(payload)} bytes, header says {plen}")
    crc = zlib.crc32(payload)
    if crc != pcrc:
        raise PayloadCrcError(
            header, f"payload CRC-32 0x{crc:08x} != 0x{pcrc:08x} in the header (corrupted payload, {plen} bytes)"
        )
    return header, payload


class PayloadCrcError(ProtocolError):
    """The header is intact (its sequence number can be trusted) but the payload is corrupted."""

    def __init__(self, header: Header, message: str) -> None:
        super().__init__(message)
        self.header = header


def registers_payload(params) -> bytes:
    """CONFIGURE payload of a :class:`pokerdaq.dsp.PulseParams`."""
    rows = np.zeros(params.n_channels, REGISTERS_DTYPE)
    for name in REGISTER_NAMES:
        rows[name] = getattr(params, name)
    return rows.tobytes()


def params_from_payload(payload: bytes, n_channels: int):
    """PulseParams from a CONFIGURE payload (raises ValueError naming a bad register)."""
    from ..dsp import PulseParams

    if len(payload) != n_channels * REGISTERS_DTYPE.itemsize:
        raise ValueError(
            f"CONFIGURE payload of {len(payload)} bytes, expected {n_channels} x {REGISTERS_DTYPE.itemsize}"
        )
    rows = np.frombuffer(payload, REGISTERS_DTYPE)
    registers: dict[str, Any] = {n: rows[n].astype(np.int64) for n in REGISTER_NAMES}
    return PulseParams(**registers)


def _to_wire(records: np.ndarray, window: np.ndarray, wire_dtype: np.dtype) -> bytes:
    """Records with a leading window-index column, as the RESULT payload carries them."""
    out = np.zeros(len(records), wire_dtype)
    out["window"] = window
    for n in records.dtype.names or ():  # structured records: names is never None
        out[n] = records[n]
    return out.tobytes()


def _from_wire(
    payload: bytes, count: int, wire_dtype: np.dtype, dtype: np.dtype, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(records, window offsets) of ``count`` wire records; a length that lies is a ProtocolError."""
    if len(payload) != count * wire_dtype.itemsize:
        raise ProtocolError(f"{what} of {len(payload)} bytes, expected {count} x {wire_dtype.itemsize}")
    wire = np.frombuffer(payload, wire_dtype)
    rec = np.zeros(len(wire), dtype)
    for n in dtype.names or ():  # a structured dtype: names is never None
        rec[n] = wire[n]
    return rec, wire["window"].astype(np.int64)


def pulses_to_wire(pulses: np.ndarray, window: np.ndarray) -> bytes:
    return _to_wire(pulses, window, WIRE_PULSE_DTYPE)


def pulses_from_wire(payload: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(PULSE_DTYPE records, window offsets) of a RESULT payload."""
    return _from_wire(payload, count, WIRE_PULSE_DTYPE, PULSE_DTYPE, "RESULT payload (count pulses)")


_TRIGGER_TABLES = ("ch_role", "ch_bit", "ch_board", "ch_gain", "ch_lut")


def trigger_registers_payload(regs, default_ref: int) -> bytes:
    """CONFIGURE_TRIGGER payload of a :class:`pokerdaq.trigger.TriggerRegisters` (int64 words).

    Layout: ``default_ref, random_seed, n_params, n_channels, n_luts, lut_width``, then
    ``params``, the per-channel tables ``ch_role, ch_bit, ch_board, ch_gain, ch_lut``, the LUTs
    (row-major) and ``lut_shift``.
    """
    luts = np.asarray(regs.luts, np.int64).reshape(len(regs.lut_shift), -1)
    head = [default_ref, regs.random_seed, len(regs.params), regs.n_channels, luts.shape[0], luts.shape[1]]
    parts = [np.array(head, np.int64), regs.params] + [getattr(regs, t) for t in _TRIGGER_TABLES]
    parts += [luts.ravel(), regs.lut_shift]
    return np.concatenate([np.asarray(a, "<i8").ravel() for a in parts]).tobytes()


def trigger_registers_from_payload(payload: bytes):
    """(TriggerRegisters, default_ref) of a CONFIGURE_TRIGGER payload (ValueError when malformed)."""
    from ..trigger import TriggerRegisters
    from ..trigger._registers import N_PARAMS

    if len(payload) < 48 or len(payload) % 8:
        raise ValueError(f"CONFIGURE_TRIGGER payload of {len(payload)} bytes: expected 6 + n int64 words")
    words = np.frombuffer(payload, "<i8").astype(np.int64)
    default_ref, seed, n_params, n_ch, n_luts, lut_w = (int(v) for v in words[:6])
    if n_params != N_PARAMS:
        raise ValueError(f"CONFIGURE_TRIGGER n_params = {n_params}: expected {N_PARAMS}")
    if not (0 < n_ch <= 65535 and 0 <= n_luts <= 64 and 0 <= lut_w <= 1 << 16):
        raise ValueError(f"CONFIGURE_TRIGGER n_channels {n_ch}, n_luts {n_luts}, lut_width {lut_w}: out of range")
    expected = 6 + n_params + 5 * n_ch + n_luts * lut_w + n_luts
    if len(words) != expected:
        raise ValueError(f"CONFIGURE_TRIGGER payload of {len(words)} words, expected {expected}")
    at = 6
    params = words[at : at + n_params].copy()
    at += n_params
    tables = {}
    for t in _TRIGGER_TABLES:
        tables[t] = words[at : at + n_ch].copy()
        at += n_ch
    luts = words[at : at + n_luts * lut_w].reshape(n_luts, lut_w).copy()
    at += n_luts * lut_w
    lut_shift = words[at : at + n_luts].copy()
    if (tables["ch_lut"] >= n_luts).any():
        raise ValueError(f"CONFIGURE_TRIGGER ch_lut = {int(tables['ch_lut'].max())}: expected < n_luts {n_luts}")
    regs = TriggerRegisters(
        params=params, luts=luts, lut_shift=lut_shift, adc_per_mev={}, random_seed=seed, sample_ns=0.0, **tables
    )
    return regs, default_ref


def triggers_to_wire(triggers: np.ndarray) -> bytes:
    return _to_wire(triggers, np.arange(len(triggers)), WIRE_TRIGGER_DTYPE)


def triggers_from_wire(payload: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(TRIGGER_DTYPE records, window offsets) of the trigger part of a RESULT payload."""
    return _from_wire(payload, count, WIRE_TRIGGER_DTYPE, TRIGGER_DTYPE, "RESULT trigger part (count windows)")
