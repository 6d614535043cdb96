"""The fragment wire format: byte-exact layout, round trip, and every corruption rejected with its reason."""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pokerdaq.daq._wire import (
    _FAST_HEADER_STRUCT,
    _HEADER_STRUCT,
    FRAGMENT_HEADER_DTYPE,
    HEADER_SIZE,
    PRIMITIVE_DTYPE,
    PRIMITIVE_MAGIC,
    PULSE_SIZE,
    TRAILER_SIZE,
    FragmentError,
    MessageError,
    Reason,
    decode_fragment,
    decode_slice,
    encode_fragment,
    encode_slice,
)
from pokerdaq.dsp._records import PULSE_DTYPE

N_CH, N_S = 12, 64


def _fragment(n_pulses=3, seed=0, **over):
    rng = np.random.default_rng(seed)
    channels = np.arange(24, 24 + N_CH, dtype=np.uint16)
    samples = rng.integers(0, 16384, size=(N_CH, N_S), dtype=np.uint16)
    pulses = np.zeros(n_pulses, PULSE_DTYPE)
    pulses["channel"] = channels[rng.integers(0, N_CH, n_pulses)]
    pulses["time"] = rng.integers(0, 64 * N_S, n_pulses)
    pulses["integral"] = rng.integers(0, 2**32, n_pulses, dtype=np.uint64)
    args = dict(
        run_number=7,
        board_id=2,
        event_number=2**40 + 5,
        timestamp=2**50 + 3,
        trigger_word=0b101,
        flags=0,
        channels=channels,
        samples=samples,
        pulses=pulses,
    )
    args.update(over)
    return args, encode_fragment(**args)


GOOD_ARGS, GOOD = _fragment()


def test_layout_is_byte_exact():
    """The header fields sit at the offsets documented in docs/wire-format.md, little-endian."""
    buf = GOOD
    assert HEADER_SIZE == 56 and PULSE_SIZE == 46 and TRAILER_SIZE == 4
    assert _HEADER_STRUCT.size == _FAST_HEADER_STRUCT.size == HEADER_SIZE  # the fast decoders' struct formats
    assert buf[0:4] == b"PKFR"
    version, hsize, run, board, nch = struct.unpack_from("<HHIHH", buf, 4)
    assert (version, hsize, run, board, nch) == (1, 56, 7, 2, N_CH)
    ev, ts, word, flags, ns, npl, plen, reserved = struct.unpack_from("<QQIIIIII", buf, 16)
    assert (ev, ts, word, flags, ns, npl, reserved) == (2**40 + 5, 2**50 + 3, 0b101, 0, N_S, 3, 0)
    assert plen == N_CH * (4 + 2 * N_S) + 3 * 46 == len(buf) - 60
    # first channel block: channel number, flags, then the samples
    ch0, chflags = struct.unpack_from("<HH", buf, 56)
    assert (ch0, chflags) == (24, 0)
    assert struct.unpack_from(f"<{N_S}H", buf, 60) == tuple(GOOD_ARGS["samples"][0].tolist())
    # CRC-32 (zlib) over header and payload in the last 4 bytes
    assert struct.unpack_from("<I", buf, len(buf) - 4)[0] == zlib.crc32(buf[:-4])
    assert FRAGMENT_HEADER_DTYPE.itemsize == 56


@pytest.mark.parametrize("n_pulses", [0, 1, 7])
def test_round_trip(n_pulses):
    args, buf = _fragment(n_pulses=n_pulses, seed=n_pulses)
    frag = decode_fragment(buf, expected_run=7)
    assert (frag.run_number, frag.board_id, frag.event_number, frag.timestamp, frag.trigger_word) == (
        7,
        2,
        2**40 + 5,
        2**50 + 3,
        0b101,
    )
    np.testing.assert_array_equal(frag.channels, args["channels"])
    np.testing.assert_array_equal(frag.samples, args["samples"])
    assert frag.samples.dtype == np.uint16 and frag.pulses.dtype == PULSE_DTYPE
    np.testing.assert_array_equal(frag.pulses, args["pulses"])


def _expected_reasons(offset: int) -> set[Reason]:
    """Which reason(s) a change of the byte at ``offset`` of GOOD must produce."""
    if offset < 4:
        return {Reason.BAD_MAGIC}
    if offset < 6:
        return {Reason.BAD_VERSION}
    if offset < 8:
        return {Reason.BAD_HEADER_SIZE}
    if 14 <= offset < 16 or 40 <= offset < 48:  # n_channels, samples_per_channel, n_pulses
        return {Reason.BAD_COUNT, Reason.LENGTH_MISMATCH}
    if 48 <= offset < 52:  # payload_length
        return {Reason.LENGTH_MISMATCH}
    return {Reason.BAD_CRC}  # every other byte is covered by the CRC only


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(0, len(GOOD) - 1), value=st.integers(0, 255))
def test_any_corrupted_byte_is_rejected_with_its_reason(offset, value):
    if GOOD[offset] == value:
        value = (value + 1) % 256
    bad = bytearray(GOOD)
    bad[offset] = value
    with pytest.raises(FragmentError) as info:
        decode_fragment(bytes(bad), expected_run=7)
    assert info.value.reason in _expected_reasons(offset), (offset, info.value)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, len(GOOD) - 1))
def test_any_truncation_is_rejected_as_truncated(length):
    with pytest.raises(FragmentError) as info:
        decode_fragment(GOOD[:length])
    assert info.value.reason is Reason.TRUNCATED


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(min_size=0, max_size=400))
def test_arbitrary_bytes_only_ever_raise_fragment_error(junk):
    with pytest.raises(FragmentError):
        decode_fragment(junk)


@settings(max_examples=300, deadline=None)
@given(head=st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE), tail=st.binary(max_size=300))
def test_headers_with_valid_magic_and_random_fields_never_crash(head, tail):
    """Random counts and lengths behind a valid magic/version/size: a FragmentError, never anything else."""
    buf = b"PKFR" + struct.pack("<HH", 1, 56) + head[8:] + tail
    with pytest.raises(FragmentError):
        decode_fragment(buf)


def test_lying_lengths_and_counts():
    # payload_length consistent with bigger counts than the message holds: TRUNCATED, not a read past the end
    bad = bytearray(GOOD)
    struct.pack_into("<H", bad, 14, 64)  # n_channels = 64
    struct.pack_into("<I", bad, 48, 64 * (4 + 2 * N_S) + 3 * 46)
    with pytest.raises(FragmentError) as info:
        decode_fragment(bytes(bad))
    assert info.value.reason is Reason.TRUNCATED
    # counts above the documented maxima
    for off, fmt, value in [(14, "<H", 65), (40, "<I", 4097), (44, "<I", N_CH * 16 + 1), (44, "<I", 2**32 - 1)]:
        bad = bytearray(GOOD)
        struct.pack_into(fmt, bad, off, value)
        with pytest.raises(FragmentError) as info:
            decode_fragment(bytes(bad))
        assert info.value.reason is Reason.BAD_COUNT, (off, value)
    # trailing bytes after the CRC
    with pytest.raises(FragmentError) as info:
        decode_fragment(GOOD + b"\0")
    assert info.value.reason is Reason.LENGTH_MISMATCH


def _recrc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def test_checks_after_the_crc():
    with pytest.raises(FragmentError) as info:
        decode_fragment(GOOD, expected_run=8)
    assert info.value.reason is Reason.WRONG_RUN
    bad = bytearray(GOOD)
    struct.pack_into("<I", bad, 52, 1)  # reserved
    with pytest.raises(FragmentError) as info:
        decode_fragment(_recrc(bad))
    assert info.value.reason is Reason.BAD_RESERVED
    bad = bytearray(GOOD)
    struct.pack_into("<H", bad, 56 + (4 + 2 * N_S), 24)  # second block claims the first block's channel
    with pytest.raises(FragmentError) as info:
        decode_fragment(_recrc(bad))
    assert info.value.reason is Reason.BAD_CHANNELS
    bad = bytearray(GOOD)
    struct.pack_into("<H", bad, 56 + N_CH * (4 + 2 * N_S), 999)  # first pulse names a foreign channel
    with pytest.raises(FragmentError) as info:
        decode_fragment(_recrc(bad))
    assert info.value.reason is Reason.BAD_PULSE


def test_encoder_refuses_counts_the_decoder_would_refuse():
    args = dict(GOOD_ARGS)
    args["samples"] = np.zeros((N_CH, 4097), np.uint16)
    with pytest.raises(ValueError, match="maxima"):
        encode_fragment(**args)
    args["samples"] = np.zeros((N_CH + 1, N_S), np.uint16)
    with pytest.raises(ValueError, match="samples"):
        encode_fragment(**args)


def test_slice_messages_round_trip_and_checks():
    prims = np.zeros(3, PRIMITIVE_DTYPE)
    prims["time"] = [5, 6, 2**40]
    prims["integral_net"] = [-3, 100, 2**30]
    prims["channel"] = [1, 2, 3]
    frames = encode_slice(PRIMITIVE_MAGIC, board_id=4, run_number=9, flags=1, slice_index=77, records=prims)
    assert len(frames[0]) == 40 and len(frames[1]) == 3 * 20  # docs/wire-format.md 2.1, version 2
    assert frames[0][:6] == b"PKPR\x02\x00" and frames[0][32:40] == (77).to_bytes(8, "little")
    head, got = decode_slice(frames, PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)
    assert (
        int(head["board_id"]),
        int(head["run_number"]),
        int(head["flags"]),
        int(head["slice_index"]),
        int(head["last_slice"]),
    ) == (4, 9, 1, 77, 77)
    np.testing.assert_array_equal(got, prims)
    for bad in (
        [frames[0]],
        [frames[0], frames[1][:-1]],
        [b"XXXX" + frames[0][4:], frames[1]],
        [frames[0][:-1], frames[1]],
    ):
        with pytest.raises(MessageError):
            decode_slice(bad, PRIMITIVE_MAGIC, PRIMITIVE_DTYPE)
