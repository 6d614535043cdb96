"""Byte-exact messages of the DAQ data path; the layout is specified in docs/wire-format.md.

Three families of messages travel on ZeroMQ sockets:

* the **fragment** (board -> event builder): one board's readout of one accepted trigger,
  a fixed 56-byte header, the channel blocks, the pulse records and a CRC-32 trailer;
* the **primitive message** (board -> trigger processor): one board's trigger primitives
  of one time slice, plus its busy state;
* the **trigger message** (trigger processor -> boards, and -> event builder): the accepted
  triggers of one time slice (decisions), or the trigger records of the event builder.

Everything is little-endian and encoded/decoded with numpy structured dtypes: no
per-sample Python loop. The fragment decoder trusts no length and no count before it has
checked it, and raises :class:`FragmentError` with a :class:`Reason` for every malformed
input (and never any other exception for bytes that came off a socket).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.trigger import TRIGGER_DTYPE

# --------------------------------------------------------------------------------------
# fragment
# --------------------------------------------------------------------------------------
FRAGMENT_MAGIC = b"PKFR"
FRAGMENT_VERSION = 1

FRAGMENT_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S4"),  # b"PKFR"
        ("version", "<u2"),  # FRAGMENT_VERSION
        ("header_size", "<u2"),  # 56
        ("run_number", "<u4"),
        ("board_id", "<u2"),
        ("n_channels", "<u2"),
        ("event_number", "<u8"),
        ("timestamp", "<u8"),  # trigger time, 250 MHz ticks since run start
        ("trigger_word", "<u4"),
        ("flags", "<u4"),  # FragmentFlags
        ("samples_per_channel", "<u4"),
        ("n_pulses", "<u4"),
        ("payload_length", "<u4"),  # bytes between the header and the CRC trailer
        ("reserved", "<u4"),  # 0
    ]
)
"""Fragment header, 56 bytes (docs/wire-format.md, table 1)."""

CHANNEL_BLOCK_HEADER_DTYPE = np.dtype([("channel", "<u2"), ("channel_flags", "<u2")])
"""Head of one channel block: channel number in the channel map, per-channel flags (0)."""

WIRE_PULSE_DTYPE = PULSE_DTYPE.newbyteorder("<")
"""Pulse record on the wire: :data:`pokerdaq.dsp._records.PULSE_DTYPE`, packed, little-endian."""

CRC_DTYPE = np.dtype("<u4")

HEADER_SIZE = FRAGMENT_HEADER_DTYPE.itemsize
_HEADER_STRUCT = struct.Struct("<4sHHIHHQQIIIIII")  # FRAGMENT_HEADER_DTYPE, for fast decoding
_CRC_STRUCT = struct.Struct("<I")
_U16_STRUCT = struct.Struct("<H")
_FAST_HEADER_STRUCT = struct.Struct("<12sHHQQIIIIII")  # the same, magic..run_number as one string
TRAILER_SIZE = CRC_DTYPE.itemsize
PULSE_SIZE = WIRE_PULSE_DTYPE.itemsize

MAX_CHANNELS = 64
"""Most channel blocks in one fragment (a Waveboard has 12 inputs; the limit leaves room)."""
MAX_SAMPLES = 4096
"""Most samples per channel block."""
MAX_PULSES_PER_CHANNEL = 16
"""Most pulse records per channel (the firmware's max_pulses register holds at most 15)."""
MAX_FINE_TIME = 63
"""Largest ``fine_time`` of a pulse record (a 6-bit field, docs/firmware-spec.md)."""


class FragmentFlags(enum.IntFlag):
    """Bits of the fragment header ``flags`` field."""

    NONE = 0
    WINDOW_CLIPPED = 1 << 0  # the readout window reached before the run start: those samples are 0
    BOARD_BUSY = 1 << 1  # the board was busy (queue above its busy mark) when it read this out


FRAGMENT_FLAGS_MASK = int(FragmentFlags.WINDOW_CLIPPED | FragmentFlags.BOARD_BUSY)
"""The defined bits of the fragment ``flags``; any other bit set is BAD_FLAGS."""


class Reason(enum.Enum):
    """Why a message was rejected; the event builder counts rejections by these names."""

    TRUNCATED = "truncated"  # shorter than its header or its declared length
    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    BAD_HEADER_SIZE = "bad_header_size"
    BAD_COUNT = "bad_count"  # a count above its documented maximum
    LENGTH_MISMATCH = "length_mismatch"  # payload_length disagrees with the counts, or bytes follow
    BAD_CRC = "bad_crc"
    BAD_RESERVED = "bad_reserved"  # a reserved field is not 0 (checked after the CRC)
    WRONG_RUN = "wrong_run"
    BAD_FLAGS = "bad_flags"  # a fragment flag bit that is not defined (bits 2..31)
    BAD_CHANNEL_FLAGS = "bad_channel_flags"  # a channel block's channel_flags is not 0
    BAD_SAMPLE = "bad_sample"  # a sample above digitizer.adc_max (builder: the ADC cannot give it)
    BAD_PULSE_TIME = "bad_pulse_time"  # a pulse's coarse_time outside the window or fine_time > 63
    BAD_BOARD = "bad_board"  # board id not in this run's channel map
    BAD_CHANNELS = "bad_channels"  # channel blocks are not exactly the board's channels
    BAD_PULSE = "bad_pulse"  # a pulse record names a channel not in the fragment
    BAD_FRAMES = "bad_frames"  # a multipart message where one frame is expected
    TOO_LARGE = "too_large"  # refused by ZMQ_MAXMSGSIZE (counted from the socket monitor)
    # reasons of the event builder (valid fragments that do not fit an event)
    DUPLICATE = "duplicate"  # second fragment of the same board for an event
    LATE = "late"  # the event was already written
    MISMATCH = "mismatch"  # timestamp or trigger word disagrees with the trigger record
    ORPHAN = "orphan"  # no trigger record: a number the records skipped, at or beyond the
    # end of run, or none before the time-out
    ORPHAN_SHED = "orphan_shed"  # no trigger record yet and the orphan store full (highest number shed)
    BEYOND_CREDIT = "beyond_credit"  # no trigger record and a number at or above the builder's credit:
    # no board that keeps to the credit reads it out


class FragmentError(ValueError):
    """A fragment failed a check; ``reason`` is a :class:`Reason`.

    For BAD_CRC of a message whose header passed every check before the CRC (magic, version,
    header size, counts, lengths), ``board_id`` and ``event_number`` are the header's (what
    the builder attributes the failure to: CHECKSUM_ERROR); otherwise they are None.
    """

    def __init__(
        self, reason: Reason, detail: str, board_id: int | None = None, event_number: int | None = None
    ) -> None:
        self.reason = reason
        self.board_id = board_id
        self.event_number = event_number
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True, slots=True)
class Fragment:
    """A decoded fragment.

    ``channels`` (n_channels,) and ``samples`` (n_channels, samples_per_channel) are read-only
    uint16 views of the message; the pulse records stay bytes (``pulse_bytes``, ``n_pulses``
    records, what the writer needs) and :attr:`pulses` decodes them.
    """

    run_number: int
    board_id: int
    event_number: int
    timestamp: int
    trigger_word: int
    flags: int
    channels: np.ndarray
    samples: np.ndarray
    pulse_bytes: bytes
    n_pulses: int

    @property
    def pulses(self) -> np.ndarray:
        """The pulse records, :data:`pokerdaq.dsp._records.PULSE_DTYPE`."""
        return np.frombuffer(self.pulse_bytes, dtype=WIRE_PULSE_DTYPE).astype(PULSE_DTYPE)


def payload_length(n_channels: int, samples_per_channel: int, n_pulses: int) -> int:
    """Payload bytes of a fragment with these counts."""
    return n_channels * (CHANNEL_BLOCK_HEADER_DTYPE.itemsize + 2 * samples_per_channel) + n_pulses * PULSE_SIZE


def encode_fragment(
    *,
    run_number: int,
    board_id: int,
    event_number: int,
    timestamp: int,
    trigger_word: int,
    flags: int,
    channels: np.ndarray,
    samples: np.ndarray,
    pulses: np.ndarray,
) -> bytes:
    """Encode one fragment.

    Parameters
    ----------
    channels
        (n_channels,) channel numbers, in the order of ``samples`` rows.
    samples
        (n_channels, samples_per_channel) ADC codes (uint16).
    pulses
        Pulse records (:data:`PULSE_DTYPE`), any number (up to the documented maximum).

    Returns
    -------
    bytes
        Header, channel blocks, pulse records and the CRC-32 trailer.
    """
    samples = np.asarray(samples)
    channels = np.asarray(channels)
    if samples.ndim != 2 or samples.shape[0] != channels.shape[0]:
        raise ValueError(f"samples: shape {samples.shape}, expected ({channels.shape[0]}, n_samples)")
    n_ch, n_s = samples.shape
    if n_ch > MAX_CHANNELS or n_s > MAX_SAMPLES or len(pulses) > n_ch * MAX_PULSES_PER_CHANNEL:
        raise ValueError(
            f"fragment counts ({n_ch} channels, {n_s} samples, {len(pulses)} pulses) exceed the wire-format maxima"
        )
    plen = payload_length(n_ch, n_s, len(pulses))
    buf = np.zeros(HEADER_SIZE + plen + TRAILER_SIZE, dtype=np.uint8)
    hdr = buf[:HEADER_SIZE].view(FRAGMENT_HEADER_DTYPE)
    hdr["magic"] = FRAGMENT_MAGIC
    hdr["version"] = FRAGMENT_VERSION
    hdr["header_size"] = HEADER_SIZE
    hdr["run_number"] = run_number
    hdr["board_id"] = board_id
    hdr["n_channels"] = n_ch
    hdr["event_number"] = event_number
    hdr["timestamp"] = timestamp
    hdr["trigger_word"] = trigger_word
    hdr["flags"] = flags
    hdr["samples_per_channel"] = n_s
    hdr["n_pulses"] = len(pulses)
    hdr["payload_length"] = plen
    block = CHANNEL_BLOCK_HEADER_DTYPE.itemsize + 2 * n_s
    blocks = buf[HEADER_SIZE : HEADER_SIZE + n_ch * block].reshape(n_ch, block)
    blocks[:, 0:2] = channels.astype("<u2").view(np.uint8).reshape(n_ch, 2)
    blocks[:, 4:] = np.ascontiguousarray(samples, dtype="<u2").view(np.uint8).reshape(n_ch, 2 * n_s)
    if len(pulses):
        start = HEADER_SIZE + n_ch * block
        buf[start : start + len(pulses) * PULSE_SIZE] = np.asarray(pulses, dtype=WIRE_PULSE_DTYPE).view(np.uint8)
    crc = zlib.crc32(buf[: HEADER_SIZE + plen])  # type: ignore[arg-type]  # an ndarray is a Buffer; numpy's stubs omit it
    buf[HEADER_SIZE + plen :] = np.array([crc], dtype=CRC_DTYPE).view(np.uint8)
    return buf.tobytes()


def peek_header(buf) -> np.void:
    """The header of a fragment whose length is at least :data:`HEADER_SIZE` (not checked further)."""
    return np.frombuffer(buf, dtype=FRAGMENT_HEADER_DTYPE, count=1)[0]


def decode_fragment(buf, expected_run: int | None = None, adc_max: int | None = None) -> Fragment:
    """Decode and check one fragment.

    Checks, in this order: length of the fixed part (TRUNCATED), magic, version, header
    size, counts against their maxima (BAD_COUNT), declared payload length against the
    counts (LENGTH_MISMATCH), message length against the declared length (TRUNCATED when
    short, LENGTH_MISMATCH when bytes follow), CRC-32 over header and payload, reserved
    fields, run number, flag bits (BAD_FLAGS), channel numbers unique (BAD_CHANNELS),
    channel_flags 0 (BAD_CHANNEL_FLAGS), samples at most ``adc_max`` (BAD_SAMPLE, when given),
    pulse channels among the fragment's channels (BAD_PULSE), pulse times within the window
    (BAD_PULSE_TIME: ``0 <= coarse_time < samples_per_channel``, ``fine_time <= 63``).

    Parameters
    ----------
    buf
        The message bytes (bytes, memoryview or a zmq Frame buffer).
    expected_run
        When given, a fragment of another run is rejected with WRONG_RUN.
    adc_max
        When given, a fragment with a sample above it is rejected with BAD_SAMPLE.

    Raises
    ------
    FragmentError
        With the first failed check's :class:`Reason`. Nothing else is raised for any input.
    """
    try:
        mv = memoryview(buf).cast("B")
    except TypeError as err:
        raise FragmentError(Reason.TRUNCATED, f"not a byte buffer ({err})") from None
    n = mv.nbytes
    if n < HEADER_SIZE + TRAILER_SIZE:
        raise FragmentError(Reason.TRUNCATED, f"{n} bytes, less than header and trailer ({HEADER_SIZE + TRAILER_SIZE})")
    (
        magic,
        version,
        header_size,
        run_number,
        board_id,
        n_ch,
        event_number,
        timestamp,
        trigger_word,
        flags,
        n_s,
        n_p,
        plen_declared,
        reserved,
    ) = _HEADER_STRUCT.unpack_from(mv, 0)
    if magic != FRAGMENT_MAGIC:
        raise FragmentError(Reason.BAD_MAGIC, f"magic {magic!r}, expected {FRAGMENT_MAGIC!r}")
    if version != FRAGMENT_VERSION:
        raise FragmentError(Reason.BAD_VERSION, f"version {version}, expected {FRAGMENT_VERSION}")
    if header_size != HEADER_SIZE:
        raise FragmentError(Reason.BAD_HEADER_SIZE, f"header_size {header_size}, expected {HEADER_SIZE}")
    if n_ch > MAX_CHANNELS or n_s > MAX_SAMPLES or n_p > n_ch * MAX_PULSES_PER_CHANNEL:
        raise FragmentError(
            Reason.BAD_COUNT,
            f"n_channels {n_ch} (max {MAX_CHANNELS}), samples_per_channel "
            f"{n_s} (max {MAX_SAMPLES}), n_pulses {n_p} (max {MAX_PULSES_PER_CHANNEL} per channel)",
        )
    plen = payload_length(n_ch, n_s, n_p)
    if plen_declared != plen:
        raise FragmentError(Reason.LENGTH_MISMATCH, f"payload_length {plen_declared}, the counts give {plen}")
    total = HEADER_SIZE + plen + TRAILER_SIZE
    if n < total:
        raise FragmentError(Reason.TRUNCATED, f"{n} bytes, the header declares {total}")
    if n > total:
        raise FragmentError(Reason.LENGTH_MISMATCH, f"{n} bytes, the header declares {total}")
    (crc,) = _CRC_STRUCT.unpack_from(mv, HEADER_SIZE + plen)
    if zlib.crc32(mv[: HEADER_SIZE + plen]) != crc:
        raise FragmentError(
            Reason.BAD_CRC, "CRC-32 over header and payload does not match the trailer", board_id, event_number
        )
    if reserved != 0:
        raise FragmentError(Reason.BAD_RESERVED, f"reserved {reserved}, expected 0")
    if expected_run is not None and run_number != expected_run:
        raise FragmentError(Reason.WRONG_RUN, f"run {run_number}, expected {expected_run}")
    if flags & ~FRAGMENT_FLAGS_MASK:
        raise FragmentError(Reason.BAD_FLAGS, f"flags {flags:#x}, defined bits {FRAGMENT_FLAGS_MASK:#x}")
    block = CHANNEL_BLOCK_HEADER_DTYPE.itemsize + 2 * n_s
    raw = np.frombuffer(mv, dtype="<u2", count=n_ch * block // 2, offset=HEADER_SIZE).reshape(n_ch, block // 2)
    channels = raw[:, 0]
    channel_set = set(channels.tolist())
    if len(channel_set) != n_ch:
        raise FragmentError(Reason.BAD_CHANNELS, "a channel number appears twice")
    if raw[:, 1].any():
        raise FragmentError(Reason.BAD_CHANNEL_FLAGS, f"channel_flags {raw[:, 1].tolist()}, expected 0")
    if adc_max is not None and n_ch and n_s and int(raw[:, 2:].max()) > adc_max:
        raise FragmentError(Reason.BAD_SAMPLE, f"sample {int(raw[:, 2:].max())}, expected at most adc_max {adc_max}")
    start = HEADER_SIZE + n_ch * block
    for i in range(n_p):  # the pulse's channel is its first field (u16)
        if _U16_STRUCT.unpack_from(mv, start + i * PULSE_SIZE)[0] not in channel_set:
            raise FragmentError(Reason.BAD_PULSE, "a pulse record names a channel without a channel block")
    if n_p:
        recs = np.frombuffer(mv, dtype=WIRE_PULSE_DTYPE, count=n_p, offset=start)
        coarse, fine = recs["coarse_time"], recs["fine_time"]
        if (coarse < 0).any() or (coarse >= n_s).any() or (fine > MAX_FINE_TIME).any():
            raise FragmentError(
                Reason.BAD_PULSE_TIME,
                f"coarse_time {coarse.tolist()} (window {n_s}), fine_time {fine.tolist()} (max {MAX_FINE_TIME})",
            )
    return Fragment(
        run_number,
        board_id,
        event_number,
        timestamp,
        trigger_word,
        flags,
        channels,
        raw[:, 2:],
        mv[start : start + n_p * PULSE_SIZE].tobytes(),
        n_p,
    )


CRC_RESIDUE = 0x2144DF1C
"""``zlib.crc32`` of any byte string followed by its own CRC-32 (little-endian): the CRC-32
residue. For a message of checked length, ``zlib.crc32(message) == CRC_RESIDUE`` holds exactly
when the trailer equals the CRC-32 of header and payload (for fixed leading bytes the CRC of
the last four is a bijection of them), so one pass over the whole message does the CRC check."""


class CheckedFragment(NamedTuple):
    """A fragment accepted by :class:`RunFragmentDecoder`: header fields and the message itself.

    The samples are the channel blocks ``buf[HEADER_SIZE:pulses_start]`` (``n_channels`` rows of
    ``4 + 2 S`` bytes: channel, channel flags, S little-endian u16 samples), the pulse records
    ``buf[pulses_start:pulses_start + n_pulses * PULSE_SIZE]``: nothing is copied or decoded
    until the event is assembled.
    """

    board_id: int
    event_number: int
    timestamp: int
    trigger_word: int
    flags: int
    n_pulses: int
    pulses_start: int
    buf: Any  # bytes-like (bytes, zmq.Frame: the buffer protocol): the whole message


_PULSE1_STRUCT = struct.Struct(f"<HxqB{PULSE_SIZE - 12}x")  # one pulse record: channel, coarse_time, fine_time
_new_checked = tuple.__new__  # CheckedFragment without the keyword-argument machinery (hot path)


class RunFragmentDecoder:
    """:func:`decode_fragment` plus the event builder's channel-map checks, for one run, fast.

    A fragment is accepted when :func:`decode_fragment` (with ``expected_run=run_number`` and
    ``adc_max``) accepts it, its board is in ``board_channels``, its channel blocks are exactly
    that board's channels in that order, and its ``samples_per_channel`` is ``window``
    (docs/wire-format.md 1.4 and 1.5). The common case (a valid fragment of this run) is checked
    with a few ``struct`` calls on the message bytes and one CRC pass (:data:`CRC_RESIDUE`): the
    channel numbers and channel flags (as one u32 per block) are compared with the board's
    expected tuple, which also proves the channels unique and the flags 0; the samples are
    checked against ``adc_max`` as one big-integer AND of the channel blocks with a mask of the
    bits above ``adc_max``; the pulse channels, coarse and fine times come from one ``struct``
    call. Anything that fails a check goes to the documented decoder (:meth:`reference`), so a
    rejected fragment gets exactly its documented :class:`Reason`.

    Parameters
    ----------
    run_number
        The run's number (WRONG_RUN otherwise).
    board_channels
        Board id -> its channel numbers in input order (``cfg.channel_map.channels_on_board``).
    window
        Samples per channel (``digitizer.window_samples``; BAD_COUNT otherwise).
    adc_max
        Largest valid sample, ``2**adc_bits - 1`` (``digitizer.adc_max``; BAD_SAMPLE above it);
        None: no sample check.
    """

    def __init__(
        self,
        run_number: int,
        board_channels: dict[int, np.ndarray | list[int]],
        window: int,
        adc_max: int | None = None,
    ) -> None:
        self.run_number = int(run_number)
        self.window = int(window)
        if adc_max is not None and (adc_max < 0 or adc_max & (adc_max + 1)):
            raise ValueError(f"adc_max {adc_max}: expected 2**bits - 1")
        self.adc_max = None if adc_max is None else int(adc_max)
        self.block_size = CHANNEL_BLOCK_HEADER_DTYPE.itemsize + 2 * self.window
        self.board_channel_lists = {int(b): [int(c) for c in chans] for b, chans in board_channels.items()}
        self._prefix = FRAGMENT_MAGIC + struct.pack("<HHI", FRAGMENT_VERSION, HEADER_SIZE, self.run_number)
        # sample check. A sample above adc_max = 2**k - 1 (k >= 8) has a high byte above
        # adc_max >> 8: the channel blocks' odd bytes (one C-level slice) may hold only the bytes
        # of self._high_ok (one C-level translate deletes them; anything left is too high). The
        # odd bytes also hold the high bytes of the channel numbers (a board whose channel numbers
        # are not all below 256 * ((adc_max >> 8) + 1) falls back to the mask below) and of the
        # channel flags (0: checked by the channel Struct).
        limit = self.adc_max if self.adc_max is not None and self.adc_max < 0xFFFF else None  # None: no check
        self._high_ok = bytes(range((limit >> 8) + 1)) if limit is not None and limit >= 0xFF else None
        # fallback (exact for any k): an AND of the channel blocks, as one integer, with the bits above k - 1
        high = ~limit & 0xFFFF if limit is not None else 0
        block_mask = int.from_bytes(b"\0\0\0\0" + high.to_bytes(2, "little") * self.window, "little")
        # board -> (n_channels, most pulses, channel-block bytes, channel-number Struct, expected
        #           channel tuple, channel set, sample mask (0: none or by the odd bytes), end of
        #           the channel blocks, allowed odd bytes (None: no odd-byte check))
        self._boards: dict[int, tuple] = {}
        for b, chans in self.board_channel_lists.items():
            # a board the documented decoder would always refuse (too many or repeated channels,
            # too long a window) gets no fast path: the reference decides every fragment of it
            if len(chans) <= MAX_CHANNELS and len(set(chans)) == len(chans) and self.window <= MAX_SAMPLES:
                # channel | channel_flags << 16 as one u32 per block: equal to the channel when the flags are 0
                fmt = "<" + f"I{self.block_size - 4}x" * (len(chans) - 1) + "I" if chans else "<"
                by_bytes = self._high_ok is not None and all(c >> 8 < len(self._high_ok) for c in chans)
                mask = 0 if by_bytes else sum(block_mask << (8 * self.block_size * i) for i in range(len(chans)))
                self._boards[b] = (
                    len(chans),
                    len(chans) * MAX_PULSES_PER_CHANNEL,
                    len(chans) * self.block_size,
                    struct.Struct(fmt),
                    tuple(chans),
                    frozenset(chans),
                    mask,
                    HEADER_SIZE + len(chans) * self.block_size,
                    self._high_ok if by_bytes else None,
                )
        self._pulse_structs: dict[int, struct.Struct] = {}  # n_pulses -> the pulses' channel, coarse, fine times

    def _pulse_struct(self, n_pulses: int) -> struct.Struct:
        s = self._pulse_structs.get(n_pulses)
        if s is None:  # at most MAX_CHANNELS x MAX_PULSES_PER_CHANNEL entries
            # channel (u16), pulse_index skipped, coarse_time (i64), fine_time (u8), the rest skipped
            s = self._pulse_structs[n_pulses] = struct.Struct("<" + f"HxqB{PULSE_SIZE - 12}x" * n_pulses)
        return s

    def _pulses_ok(self, board: tuple, buf, n_p: int, pulses_start: int) -> bool:
        fields = (self._pulse_structs.get(n_p) or self._pulse_struct(n_p)).unpack_from(buf, pulses_start)
        coarse, fine = fields[1::3], fields[2::3]
        return (
            board[5].issuperset(fields[0::3])
            and min(coarse) >= 0
            and max(coarse) < self.window
            and max(fine) <= MAX_FINE_TIME
        )

    def decode(self, buf) -> CheckedFragment:
        """Check one message (bytes-like); return it as a :class:`CheckedFragment`.

        Raises
        ------
        FragmentError
            With the :class:`Reason` of the documented decoder and channel-map checks.
        """
        try:
            # magic, version, header_size and run_number as one 12-byte string (a shorter
            # message raises struct.error: the documented decoder says TRUNCATED)
            (prefix, board_id, n_ch, event_number, timestamp, trigger_word, flags, n_s, n_p, plen, reserved) = (
                _FAST_HEADER_STRUCT.unpack_from(buf, 0)
            )
            board = self._boards.get(board_id)
            if (
                board is not None
                and prefix == self._prefix
                and n_ch == board[0]
                and n_s == self.window
                and reserved == 0
                and flags <= FRAGMENT_FLAGS_MASK
                and n_p <= board[1]
                and plen == board[2] + n_p * PULSE_SIZE
                and len(buf) == HEADER_SIZE + plen + TRAILER_SIZE
                and zlib.crc32(buf) == CRC_RESIDUE
                and board[3].unpack_from(buf, HEADER_SIZE) == board[4]
                and not (
                    board[8] is not None
                    and bytes(memoryview(buf)[HEADER_SIZE + 1 : board[7]])[::2].translate(None, board[8])
                )
                and not (board[6] and int.from_bytes(memoryview(buf)[HEADER_SIZE : board[7]], "little") & board[6])
            ):
                start = board[7]
                if n_p == 1:  # the common case, inline: channel, coarse and fine time of the one pulse
                    ch, coarse, fine = _PULSE1_STRUCT.unpack_from(buf, start)
                    ok = ch in board[5] and 0 <= coarse < self.window and fine <= MAX_FINE_TIME
                else:
                    ok = n_p == 0 or self._pulses_ok(board, buf, n_p, start)
                if ok:
                    return _new_checked(
                        CheckedFragment, (board_id, event_number, timestamp, trigger_word, flags, n_p, start, buf)
                    )
        except (TypeError, ValueError, BufferError, struct.error):
            pass  # not a plain byte buffer, or too short: the documented decoder says why
        return self.reference(buf)

    def reference(self, buf) -> CheckedFragment:
        """The documented checks, one after the other: :func:`decode_fragment` (with ``adc_max``),
        then board id (BAD_BOARD), channel list (BAD_CHANNELS) and window length (BAD_COUNT)."""
        frag = decode_fragment(buf, self.run_number, self.adc_max)
        chans = self.board_channel_lists.get(frag.board_id)
        if chans is None:
            raise FragmentError(Reason.BAD_BOARD, f"board_id {frag.board_id} is not in the channel map")
        if frag.channels.tolist() != chans:
            raise FragmentError(
                Reason.BAD_CHANNELS, f"board {frag.board_id}: channel blocks {frag.channels.tolist()}, expected {chans}"
            )
        if frag.samples.shape[1] != self.window:
            raise FragmentError(
                Reason.BAD_COUNT, f"samples_per_channel {frag.samples.shape[1]}, expected {self.window}"
            )
        data = memoryview(buf).cast("B").tobytes()  # a plain copy: what the builder keeps
        return CheckedFragment(
            frag.board_id,
            frag.event_number,
            frag.timestamp,
            frag.trigger_word,
            frag.flags,
            frag.n_pulses,
            HEADER_SIZE + len(chans) * self.block_size,
            data,
        )


# --------------------------------------------------------------------------------------
# primitive messages: board -> trigger processor (two frames: header, primitive records)
# --------------------------------------------------------------------------------------
PRIMITIVE_MAGIC = b"PKPR"
TRIGGER_MAGIC = b"PKTR"
MESSAGE_VERSION = 2
MAX_STRETCH_SLICES = 1 << 20
"""Most slices one slice message may cover (``last_slice - slice_index < MAX_STRETCH_SLICES``):
about 69 s of run time at 16384-tick slices, 550 s at the default 131072; a board splits longer stretches."""

PRIMITIVE_DTYPE = np.dtype(
    [
        ("time", "<i8"),  # pulse time, 1/64 sample (62.5 ps) since run start (PULSE_DTYPE 'time')
        ("integral_net", "<i4"),  # pedestal-subtracted integral, ADC counts (PULSE_DTYPE 'integral_net')
        ("channel", "<u2"),  # channel number in the channel map
        ("board", "<u2"),  # board that found it
        ("peak", "<u2"),  # peak ADC code
        ("quality", "<u2"),  # QualityBits of the pulse
    ]
)
"""One trigger primitive (20 bytes): what the trigger needs of a pulse."""

SLICE_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S4"),  # b"PKPR" (primitives) or b"PKTR" (triggers)
        ("version", "<u2"),
        ("board_id", "<u2"),  # sender board (primitives); 0xFFFF from the trigger processor
        ("run_number", "<u4"),
        ("flags", "<u4"),  # SliceFlags
        ("slice_index", "<u8"),
        ("count", "<u4"),  # records in the second frame
        ("reserved", "<u4"),
        ("last_slice", "<u8"),  # the message covers slices [slice_index, last_slice] (version 2)
    ]
)
"""Header frame of primitive and trigger messages (40 bytes, docs/wire-format.md 2.1)."""


class SliceFlags(enum.IntFlag):
    NONE = 0
    BUSY = 1 << 0  # primitives: the board's fragment queue is above its busy mark
    END_OF_RUN = 1 << 1  # triggers: no trigger follows; primitives: the board has stopped
    RECORDS = 1 << 2  # triggers: a trigger-record message to the event builder
    HEARTBEAT = 1 << 3  # primitives: no slice, the board is alive but stalled (queue full)


DECISION_DTYPE = np.dtype(
    [(name, TRIGGER_DTYPE[name].newbyteorder("<")) for name in ("event_number", "timestamp", "trigger_word")]
    + [("reserved", "<u4"), ("dead_boards", "<u8")]  # boards the trigger processor has marked dead (bit b = board b)
)
"""An accepted trigger on the wire (32 bytes, docs/wire-format.md 2.3): a decision to the boards
and a trigger record to the builder. Its first three fields are those of the one trigger record,
:data:`pokerdaq.trigger.TRIGGER_DTYPE` (little-endian)."""


class MessageError(ValueError):
    """A primitive or trigger message failed a check."""


class StretchError(MessageError):
    """A slice message whose ``last_slice`` is below its ``slice_index`` or too far beyond it."""


def encode_slice(
    magic: bytes,
    *,
    board_id: int,
    run_number: int,
    flags: int,
    slice_index: int,
    records: np.ndarray,
    last_slice: int | None = None,
) -> list[bytes]:
    """Two frames: a :data:`SLICE_HEADER_DTYPE` header and the records' bytes.

    ``last_slice`` (default ``slice_index``): the message covers the slices
    ``[slice_index, last_slice]`` (a fast-forward stretch when above ``slice_index``).
    """
    last_slice = slice_index if last_slice is None else last_slice
    if not 0 <= last_slice - slice_index < MAX_STRETCH_SLICES:
        raise ValueError(
            f"last_slice = {last_slice}: expected in [slice_index, slice_index + "
            f"{MAX_STRETCH_SLICES}) with slice_index = {slice_index}"
        )
    hdr = np.zeros(1, dtype=SLICE_HEADER_DTYPE)
    hdr["magic"] = magic
    hdr["version"] = MESSAGE_VERSION
    hdr["board_id"] = board_id
    hdr["run_number"] = run_number
    hdr["flags"] = flags
    hdr["slice_index"] = slice_index
    hdr["count"] = len(records)
    hdr["last_slice"] = last_slice
    return [hdr.tobytes(), np.ascontiguousarray(records).tobytes()]


def decode_slice(frames, magic: bytes, record_dtype: np.dtype) -> tuple[np.void, np.ndarray]:
    """Check and decode a two-frame slice message; raises :class:`MessageError`."""
    if len(frames) != 2:
        raise MessageError(f"{len(frames)} frames, expected 2")
    head, body = memoryview(frames[0]).cast("B"), memoryview(frames[1]).cast("B")
    if head.nbytes != SLICE_HEADER_DTYPE.itemsize:
        raise MessageError(f"header of {head.nbytes} bytes, expected {SLICE_HEADER_DTYPE.itemsize}")
    h = np.frombuffer(head, dtype=SLICE_HEADER_DTYPE, count=1)[0]
    if bytes(h["magic"]) != magic or int(h["version"]) != MESSAGE_VERSION:
        raise MessageError(
            f"magic {bytes(h['magic'])!r} version {int(h['version'])}, expected {magic!r} v{MESSAGE_VERSION}"
        )
    if body.nbytes != int(h["count"]) * record_dtype.itemsize:
        raise MessageError(f"body of {body.nbytes} bytes for {int(h['count'])} records of {record_dtype.itemsize}")
    first, last = int(h["slice_index"]), int(h["last_slice"])
    if last < first or last - first >= MAX_STRETCH_SLICES:
        raise StretchError(
            f"last_slice {last} for slice_index {first}: expected in [slice_index, slice_index + {MAX_STRETCH_SLICES})"
        )
    return h, np.frombuffer(body, dtype=record_dtype).copy()
