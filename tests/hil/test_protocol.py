"""The wire format: round trips and detection of every single-bit corruption of a header."""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.dsp import PULSE_DTYPE, PulseParams
from pokerdaq.hil._protocol import (
    HEADER_SIZE,
    MsgType,
    PayloadCrcError,
    ProtocolError,
    decode,
    encode,
    params_from_payload,
    pulses_from_wire,
    pulses_to_wire,
    registers_payload,
)


def test_round_trip_keeps_every_field():
    payload = bytes(range(256)) * 3
    frames = encode(
        MsgType.WINDOWS, 0xFFFFFFFF + 5, payload, first_window=2**40 + 3, count=7, n_channels=130, n_samples=64
    )
    assert len(frames[0]) == HEADER_SIZE == 40
    h, p = decode(frames)
    assert (h.type, h.seq, h.first_window, h.count, h.n_channels, h.n_samples) == (
        MsgType.WINDOWS,
        4,
        2**40 + 3,
        7,
        130,
        64,
    )
    assert p == payload


def test_every_header_bit_flip_is_detected():
    frames = encode(MsgType.RESULT, 9, b"abc", count=1)
    for bit in range(HEADER_SIZE * 8):
        head = bytearray(frames[0])
        head[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProtocolError):
            decode([bytes(head), frames[1]])


def test_payload_flip_keeps_the_sequence_number():
    frames = encode(MsgType.RESULT, 77, b"\x00" * 100)
    body = bytearray(frames[1])
    body[50] ^= 0x10
    with pytest.raises(PayloadCrcError, match="payload CRC-32") as err:
        decode([frames[0], bytes(body)])
    assert err.value.header.seq == 77


@pytest.mark.parametrize(
    "frames,match",
    [
        ([b"x" * 40], "2 frames"),
        ([b"x" * 39, b""], "header of 39 bytes"),
    ],
)
def test_malformed_messages_are_named(frames, match):
    with pytest.raises(ProtocolError, match=match):
        decode(frames)


def test_records_and_registers_survive_the_wire():
    rng = np.random.default_rng(3)
    rec = np.zeros(50, PULSE_DTYPE)
    for name in PULSE_DTYPE.names:
        info = np.iinfo(PULSE_DTYPE[name])
        rec[name] = rng.integers(info.min, info.max, size=50, endpoint=True, dtype=PULSE_DTYPE[name])
    win = rng.integers(0, 1000, 50)
    back, back_win = pulses_from_wire(pulses_to_wire(rec, win), 50)
    assert np.array_equal(back, rec) and np.array_equal(back_win, win)
    params = PulseParams.uniform(5, thr=33, nsa=20, ped_mode=1, ped_cfg=1234)
    again = params_from_payload(registers_payload(params), 5)
    for name in ("thr", "nsa", "ped_mode", "ped_cfg", "nsb", "max_pulses"):
        assert np.array_equal(getattr(again, name), getattr(params, name))


def test_configure_carries_the_algorithm_register():
    """Protocol 3: the CONFIGURE row holds every register of firmware_models/registers.toml,
    ALGORITHM included (fADC250 v3 on some channels), and a bad value is refused by name."""
    from pokerdaq._regmap import PULSE_FINDER
    from pokerdaq.hil._protocol import REGISTERS_DTYPE

    assert REGISTERS_DTYPE.names == tuple(r.name for r in PULSE_FINDER)
    params = PulseParams.uniform(4, algorithm=0).replace(algorithm=np.array([0, 1, 1, 0]))
    again = params_from_payload(registers_payload(params), 4)
    assert again.algorithm.tolist() == [0, 1, 1, 0]
    rows = np.frombuffer(registers_payload(params), REGISTERS_DTYPE).copy()
    rows["algorithm"][2] = 2
    with pytest.raises(ValueError, match=r"algorithm\[channel 2\] = 2"):
        params_from_payload(rows.tobytes(), 4)


def test_trigger_registers_and_records_survive_the_wire():
    from pokerdaq.config import load_config
    from pokerdaq.hil._protocol import (
        trigger_registers_from_payload,
        trigger_registers_payload,
        triggers_from_wire,
        triggers_to_wire,
    )
    from pokerdaq.trigger import TRIGGER_DTYPE, TriggerRegisters

    regs = TriggerRegisters.from_config(load_config(), seed=4)
    back, default_ref = trigger_registers_from_payload(trigger_registers_payload(regs, 1234))
    assert default_ref == 1234 and back.random_seed == regs.random_seed
    for name in ("params", "ch_role", "ch_bit", "ch_board", "ch_gain", "ch_lut", "luts", "lut_shift"):
        assert np.array_equal(getattr(back, name), getattr(regs, name)), name
    payload = trigger_registers_payload(regs, 0)
    with pytest.raises(ValueError, match="payload of .* words, expected"):
        trigger_registers_from_payload(payload[:-8])
    rng = np.random.default_rng(9)
    rec = np.zeros(20, TRIGGER_DTYPE)
    for name in TRIGGER_DTYPE.names:
        info = np.iinfo(TRIGGER_DTYPE[name])
        rec[name] = rng.integers(info.min, info.max, size=20, endpoint=True, dtype=TRIGGER_DTYPE[name])
    got, win = triggers_from_wire(triggers_to_wire(rec), 20)
    assert np.array_equal(got, rec) and np.array_equal(win, np.arange(20))
    with pytest.raises(ProtocolError, match="trigger part"):
        triggers_from_wire(triggers_to_wire(rec), 21)
