"""The event builder's fast fragment check (RunFragmentDecoder) against the documented checks.

The reference here is written out as docs/wire-format.md 1.4 and 1.5 state it: decode_fragment
(its own tests are in test_daq_wire.py), then the builder's channel-map checks (board id,
channel list, window length). For valid fragments and for every kind of corruption, the fast
decoder must accept exactly what the reference accepts, with the same header fields and the
same sample and pulse bytes, and reject the rest with the reference's reason.
"""

import struct
import zlib

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pokerdaq.daq._wire import (
    CRC_RESIDUE,
    HEADER_SIZE,
    PULSE_SIZE,
    CheckedFragment,
    FragmentError,
    Reason,
    RunFragmentDecoder,
    decode_fragment,
    encode_fragment,
)
from pokerdaq.dsp._records import PULSE_DTYPE

RUN = 41
WINDOW = 16
# a small channel map: board -> channels in input order (board 2 has one channel, board 5 none)
BOARDS = {0: [0, 1, 2], 1: [3, 4, 5, 6], 2: [7], 3: [9, 8, 10], 5: []}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(buf, run=RUN, boards=BOARDS, window=WINDOW, adc_max=None):
    """(board, event, timestamp, trigger word, flags, samples (n_ch, S) u16, pulse bytes) or the Reason."""
    try:
        frag = decode_fragment(buf, run, adc_max)
    except FragmentError as err:
        return err.reason
    if frag.board_id not in boards:
        return Reason.BAD_BOARD
    if frag.channels.tolist() != boards[frag.board_id]:
        return Reason.BAD_CHANNELS
    if frag.samples.shape[1] != window:
        return Reason.BAD_COUNT
    return (
        frag.board_id,
        frag.event_number,
        frag.timestamp,
        frag.trigger_word,
        frag.flags,
        frag.samples.tolist(),
        frag.pulse_bytes,
    )


def fast(decoder, buf):
    """The same tuple (or Reason) from RunFragmentDecoder.decode, read back from its byte offsets."""
    try:
        got = decoder.decode(buf)
    except FragmentError as err:
        return err.reason
    assert isinstance(got, CheckedFragment)
    data = bytes(memoryview(got.buf).cast("B"))
    n_ch = len(BOARDS[got.board_id])
    blocks = np.frombuffer(data[HEADER_SIZE : got.pulses_start], "<u2").reshape(n_ch, 2 + WINDOW)
    pulses = data[got.pulses_start : got.pulses_start + got.n_pulses * PULSE_SIZE]
    return (got.board_id, got.event_number, got.timestamp, got.trigger_word, got.flags, blocks[:, 2:].tolist(), pulses)


DECODER = RunFragmentDecoder(RUN, {b: np.array(c, np.int64) for b, c in BOARDS.items()}, WINDOW)


class FastPathOnly(RunFragmentDecoder):
    """The decoder with its fallback removed: whatever it accepts, the fast path accepted."""

    def reference(self, buf):
        raise AssertionError("the fast path refused a valid fragment")


@st.composite
def fragments(draw):
    """Encoded fragments: mostly valid for BOARDS, with channel lists, windows, pulse channels,
    runs and boards that are sometimes wrong (each field drawn to hit the checks)."""
    board = draw(st.sampled_from([0, 1, 2, 3, 5, 9]))
    chans = list(BOARDS.get(board, [3, 4]))
    kind = draw(st.sampled_from(["good"] * 4 + ["permuted", "other", "repeated", "missing", "extra"]))
    if kind == "permuted" and len(chans) > 1:
        chans = chans[::-1]
    elif kind == "other":
        chans = [draw(st.integers(0, 20)) for _ in range(max(1, len(chans)))]
    elif kind == "repeated" and chans:
        chans = chans + [chans[0]]
    elif kind == "missing" and chans:
        chans = chans[:-1]
    elif kind == "extra":
        chans = chans + [draw(st.integers(11, 30))]
    window = draw(st.sampled_from([WINDOW] * 5 + [WINDOW - 1, 1, 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    samples = rng.integers(0, 16384, (len(chans), window), dtype=np.uint16)
    n_p = draw(st.integers(0, 5)) if chans else 0
    pulses = np.zeros(n_p, PULSE_DTYPE)
    if n_p:
        pool = chans if draw(st.booleans()) else chans + [draw(st.integers(0, 40))]
        pulses["channel"] = [draw(st.sampled_from(pool)) for _ in range(n_p)]
        pulses["integral"] = rng.integers(0, 2**32, n_p, dtype=np.uint64)
        pulses["time"] = rng.integers(-(2**40), 2**40, n_p)
    run = draw(st.sampled_from([RUN] * 6 + [RUN + 1, 0]))
    return encode_fragment(
        run_number=run,
        board_id=board,
        event_number=draw(st.integers(0, 2**64 - 1)),
        timestamp=draw(st.integers(0, 2**64 - 1)),
        trigger_word=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.integers(0, 3)),
        channels=np.array(chans, np.uint16),
        samples=samples,
        pulses=pulses,
    )


def _recrc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


@settings(max_examples=300, **SETTINGS)
@given(buf=fragments())
def test_encoded_fragments_give_the_reference_result(buf):
    expected = reference(buf)
    assert fast(DECODER, buf) == expected
    assert fast(DECODER, zmq.Frame(buf)) == expected  # what the builder receives
    if not isinstance(expected, Reason):  # every valid fragment takes the fast path
        assert fast(FastPathOnly(RUN, BOARDS, WINDOW), buf) == expected


@settings(max_examples=400, **SETTINGS)
@given(buf=fragments(), data=st.data())
def test_corrupted_fragments_give_the_reference_reason(buf, data):
    """Any byte changed, with the CRC left stale or recomputed (so the checks after it are reached)."""
    bad = bytearray(buf)
    n_ch, n_s, n_p = struct.unpack_from("<H", buf, 14)[0], *struct.unpack_from("<II", buf, 40)
    pulses_start = HEADER_SIZE + n_ch * (4 + 2 * n_s)
    # half of the draws hit a byte a check reads: the header, a channel number, a pulse's channel
    targeted = (
        [*range(HEADER_SIZE)]
        + [HEADER_SIZE + i * (4 + 2 * n_s) + k for i in range(n_ch) for k in (0, 1)]
        + [pulses_start + i * PULSE_SIZE + k for i in range(n_p) for k in (0, 1)]
    )
    offset = data.draw(st.sampled_from(targeted) | st.integers(0, len(bad) - 1))
    bad[offset] = (bad[offset] + data.draw(st.integers(1, 255))) % 256
    for variant in (bytes(bad), _recrc(bytearray(bad))):
        assert fast(DECODER, variant) == reference(variant)


@settings(max_examples=200, **SETTINGS)
@given(buf=fragments(), cut=st.integers(0, 2000), tail=st.binary(max_size=8))
def test_truncated_or_extended_fragments_give_the_reference_reason(buf, cut, tail):
    for variant in (buf[: cut % (len(buf) + 1)], buf + tail, buf[:-4] + tail):
        assert fast(DECODER, variant) == reference(variant)


@settings(max_examples=200, **SETTINGS)
@given(
    head=st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE),
    tail=st.binary(max_size=200),
    board=st.sampled_from([0, 1, 2, 3]),
)
def test_random_headers_give_the_reference_reason(head, tail, board):
    """Random counts and lengths behind a valid magic, version, size, run and board, CRC made valid."""
    fields = bytearray(b"PKFR" + struct.pack("<HHIH", 1, 56, RUN, board) + head[14:] + tail + b"\0\0\0\0")
    for variant in (bytes(fields), _recrc(fields)):
        assert fast(DECODER, variant) == reference(variant)


ADC_MAX = (1 << 14) - 1
DECODER_ADC = RunFragmentDecoder(RUN, BOARDS, WINDOW, adc_max=ADC_MAX)


@settings(max_examples=300, **SETTINGS)
@given(buf=fragments(), data=st.data())
def test_content_checks_give_the_reference_result(buf, data):
    """With adc_max: one sample, a channel_flags word, a pulse's coarse or fine time set to any
    value (CRC recomputed), so the sample, channel-flag and pulse-time checks are reached."""
    n_ch, n_s, n_p = struct.unpack_from("<H", buf, 14)[0], *struct.unpack_from("<II", buf, 40)
    block = 4 + 2 * n_s
    variants = [buf]
    if n_ch and n_s:
        bad = bytearray(buf)
        at = HEADER_SIZE + data.draw(st.integers(0, n_ch - 1)) * block + 4 + 2 * data.draw(st.integers(0, n_s - 1))
        struct.pack_into(
            "<H", bad, at, data.draw(st.sampled_from([ADC_MAX, ADC_MAX + 1, 0x8000, 0xFFFF]) | st.integers(0, 0xFFFF))
        )
        variants.append(_recrc(bad))
    if n_ch:
        bad = bytearray(buf)
        struct.pack_into(
            "<H", bad, HEADER_SIZE + data.draw(st.integers(0, n_ch - 1)) * block + 2, data.draw(st.integers(0, 0xFFFF))
        )
        variants.append(_recrc(bad))
    if n_p:
        bad = bytearray(buf)
        at = HEADER_SIZE + n_ch * block + data.draw(st.integers(0, n_p - 1)) * PULSE_SIZE
        struct.pack_into(
            "<q", bad, at + 3, data.draw(st.sampled_from([-1, 0, n_s - 1, n_s]) | st.integers(-(2**63), 2**63 - 1))
        )
        struct.pack_into("<B", bad, at + 11, data.draw(st.sampled_from([0, 63, 64, 255])))
        variants.append(_recrc(bad))
    for variant in variants:
        assert fast(DECODER_ADC, variant) == reference(variant, adc_max=ADC_MAX)
        assert fast(DECODER_ADC, zmq.Frame(variant)) == reference(variant, adc_max=ADC_MAX)


def test_foreign_objects_get_a_fragment_error():
    for junk in (b"", "PKFR" * 40, None, 12, np.zeros(40, np.uint32), memoryview(b"x" * 100)[::2]):
        with pytest.raises(FragmentError):
            DECODER.decode(junk)


def test_crc_residue_is_the_trailer_check():
    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        trailer = zlib.crc32(data).to_bytes(4, "little")
        assert zlib.crc32(data + trailer) == CRC_RESIDUE
        for k in range(4):
            wrong = bytearray(trailer)
            wrong[k] ^= 1 << (n + k) % 8
            assert zlib.crc32(data + bytes(wrong)) != CRC_RESIDUE


def test_boards_the_documented_decoder_always_refuses_get_no_fast_path():
    """Repeated channels in the map: the reference says BAD_CHANNELS, so must the decoder."""
    boards = {0: [4, 4]}
    buf = encode_fragment(
        run_number=RUN,
        board_id=0,
        event_number=1,
        timestamp=2,
        trigger_word=1,
        flags=0,
        channels=np.array([4, 4], np.uint16),
        samples=np.zeros((2, WINDOW), np.uint16),
        pulses=np.zeros(0, PULSE_DTYPE),
    )
    with pytest.raises(FragmentError) as info:
        RunFragmentDecoder(RUN, boards, WINDOW).decode(buf)
    assert info.value.reason is Reason.BAD_CHANNELS == reference(buf, boards=boards)


def test_event_assembly_equals_per_board_copies(tmp_path):
    """The builder's one-gather event assembly against a naive per-board copy: every board present,
    some missing, none; samples (zeros for missing boards), pulses and the header, byte for byte."""
    from pokerdaq.config import load_config
    from pokerdaq.daq._builder import EventBuilderNode
    from pokerdaq.io._records import EVENT_DTYPE, EventFlags

    cfg = load_config()
    cmap, window = cfg.channel_map, cfg.digitizer.window_samples
    node = EventBuilderNode(
        cfg, "assembly", f"ipc://{tmp_path}/ctl", {"run_number": cfg.run.run_number, "endpoints": {}}
    )
    try:
        rng = np.random.default_rng(11)
        boards = list(range(cmap.n_boards))
        for ev_no, present in enumerate((boards, boards[1:], [0, 5, 11], [7], [])):
            samples = {
                b: rng.integers(0, 16384, (len(cmap.channels_on_board(b)), window), dtype=np.uint16) for b in present
            }
            pulses = {}
            for b in present:
                pulses[b] = np.zeros(int(rng.integers(0, 4)), PULSE_DTYPE)
                pulses[b]["channel"] = cmap.channels_on_board(b)[0]
                pulses[b]["integral"] = rng.integers(0, 2**32, len(pulses[b]), dtype=np.uint64)
            asm = node.assembler
            dead = sum(1 << b for b in boards if b not in present)  # complete without them
            asm.record(ev_no, 777, 5, dead, 0.0)
            for b in present[::-1]:  # arrival order does not matter
                buf = encode_fragment(
                    run_number=cfg.run.run_number,
                    board_id=b,
                    event_number=ev_no,
                    timestamp=777,
                    trigger_word=5,
                    flags=0,
                    channels=cmap.channels_on_board(b),
                    samples=samples[b],
                    pulses=pulses[b],
                )
                asm.take(node.decoder.decode(zmq.Frame(buf)), 0.0)
            assert asm.emit() == 1
            tag, header, got_samples, got_pulses = asm.out.popleft()
            asm.sent(1)
            expected = np.zeros((len(cmap), window), np.uint16)
            for b in present:
                expected[cmap.channels_on_board(b)] = samples[b]
            head = np.zeros(1, EVENT_DTYPE)
            head[["event_number", "timestamp", "trigger_word", "missing_boards"]] = (ev_no, 777, 5, dead)
            head["flags"] = EventFlags.INCOMPLETE if dead else 0
            head["n_pulses"] = sum(len(pulses[b]) for b in present)
            assert tag == b"EV" and header == head.tobytes(), present
            assert got_samples == expected.tobytes(), present
            assert got_pulses == b"".join(pulses[b].tobytes() for b in sorted(present)), present
    finally:
        node.close()
        node.ctx.destroy(0)


@pytest.mark.parametrize("chans", [[3, 4], [300, 301]])  # odd-byte check; channel numbers too big for it: the mask
def test_sample_check_of_an_8_bit_adc(chans):
    boards = {0: chans}
    for top, expected in ((0xFF, None), (0x100, Reason.BAD_SAMPLE), (0xFFFF, Reason.BAD_SAMPLE)):
        samples = np.zeros((2, WINDOW), np.uint16)
        samples[1, WINDOW - 1] = top
        buf = encode_fragment(
            run_number=RUN,
            board_id=0,
            event_number=1,
            timestamp=2,
            trigger_word=1,
            flags=0,
            channels=np.array(chans, np.uint16),
            samples=samples,
            pulses=np.zeros(0, PULSE_DTYPE),
        )
        ref = reference(buf, boards=boards, adc_max=0xFF)
        decoder = (RunFragmentDecoder if expected else FastPathOnly)(RUN, boards, WINDOW, adc_max=0xFF)
        got = fast_reason(decoder, buf)
        assert got == (ref if isinstance(ref, Reason) else None) == expected


def fast_reason(decoder, buf):
    try:
        decoder.decode(zmq.Frame(buf))
    except FragmentError as err:
        return err.reason
    return None
