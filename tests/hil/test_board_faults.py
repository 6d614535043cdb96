"""Real board-emulator processes on loopback TCP: clean runs, every injected fault, error replies."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zmq
from _hil_boards import board_process

from pokerdaq.dsp import PulseParams
from pokerdaq.hil import DutFault, TcpDut
from pokerdaq.hil._protocol import ErrorCode, MsgType, decode, encode, registers_payload

# reply time-outs: generous where a healthy reply is awaited (the machine may be loaded), short
# where the test waits for the time-out itself (drop, late: the late reply comes at 1.5 x TIMED)
RELAXED = "20"
TIMED = "2"
LATE_S = "3"
EXPECTS_TIMEOUT = {"drop", "late"}


def _hil(endpoint, tmp_path, *extra, timeout=RELAXED):
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pokerdaq.cli",
            "hil",
            "--dut",
            endpoint,
            "--generate",
            "24",
            "--batch",
            "8",
            "--timeout",
            timeout,
            "--report",
            str(report),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "250", **_environ()},
    )
    return proc, json.loads(report.read_text())


def _environ():
    import os

    return dict(os.environ)


def test_clean_board_passes(tmp_path):
    with board_process() as (endpoint, _):
        proc, rep = _hil(endpoint, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert rep["passed"] and rep["windows_sent"] == 24 and rep["pulses_dut"] == rep["pulses_reference"] > 200
    # the board's trigger record of every window agrees with trigger_windows on the reference pulses
    assert rep["triggers_compared"] and rep["trigger_windows_compared"] == 24
    assert rep["trigger_mismatched_windows"] == 0 and rep["trigger_field_mismatches"] == {}
    assert rep["triggers_dut"] == rep["triggers_reference"] and rep["triggers_reference"]["beam"] > 0
    assert "PASS" in proc.stdout


@pytest.mark.parametrize(
    "fault,kind,text",
    [
        ("bitflip", "corrupt", "payload CRC-32"),
        ("drop", "timeout", "no reply to WINDOWS 8..15 (seq 4)"),
        ("late", "late", "reply to WINDOWS 8..15 (seq 4) arrived after"),
        ("disconnect", "disconnect", "closed the connection while WINDOWS 8..15 (seq 4)"),
    ],
)
def test_every_injected_fault_is_detected(fault, kind, text, tmp_path):
    with board_process("--fault", fault, "--late-s", LATE_S) as (endpoint, board):
        proc, rep = _hil(endpoint, tmp_path, timeout=TIMED if fault in EXPECTS_TIMEOUT else RELAXED)
        if fault == "disconnect":
            assert board.wait(timeout=30) == 0  # the board really went away
    assert proc.returncode == 1, proc.stdout
    assert rep["fault"]["kind"] == kind, rep["fault"]
    assert text in rep["fault"]["message"]
    assert rep["fault"]["windows_completed"] == 8  # the first request (windows 0..7) was answered and compared
    assert rep["mismatched_channel_windows"] == 0 and not rep["passed"]
    assert f"DUT FAULT ({kind})" in proc.stdout


def test_wrong_values_in_a_valid_reply_are_a_mismatch(tmp_path):
    with board_process("--fault", "wrong") as (endpoint, _):
        proc, rep = _hil(endpoint, tmp_path)
    assert proc.returncode == 1
    assert rep["fault"] is None
    assert rep["mismatched_channel_windows"] == 1 and rep["field_mismatches"] == {"integral": 1}
    assert rep["trigger_mismatched_windows"] == 0  # the board's trigger words came from its correct pulses
    m = rep["first_mismatch"]
    assert 8 <= m["window"] < 16 and m["fields"] == ["integral"]
    assert abs(m["values"]["integral"]["reference"] - m["values"]["integral"]["dut"]) == 1
    assert "first mismatch: window" in proc.stdout


def test_a_wrong_trigger_word_in_a_valid_reply_is_a_trigger_mismatch(tmp_path):
    """Fault 'trigger': one raw-type bit of one trigger word flipped, pulses intact, CRCs valid."""
    with board_process("--fault", "trigger") as (endpoint, _):
        proc, rep = _hil(endpoint, tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert rep["fault"] is None and not rep["passed"]
    assert rep["mismatched_channel_windows"] == 0 and rep["field_mismatches"] == {}
    assert rep["trigger_mismatched_windows"] == 1 and rep["trigger_field_mismatches"] == {"trigger_word": 1}
    m = rep["first_trigger_mismatch"]
    assert 8 <= m["window"] < 16 and m["fields"] == ["trigger_word"]  # the second request (windows 8..15)
    ref, dut = m["values"]["trigger_word"]["reference"], m["values"]["trigger_word"]["dut"]
    assert ref ^ dut == 1 << 9  # raw BEAM bit
    assert "first trigger mismatch: window" in proc.stdout and "trigger_word: reference 0x" in proc.stdout


def test_a_wrong_trigger_register_on_the_board_is_caught(tmp_path):
    """The board adds 2 to BEAM_K after CONFIGURE_TRIGGER: 4 of the 3 beam counters needed, BEAM lost."""
    with board_process("--trigger-offset", "beam_k=2") as (endpoint, _):
        proc, rep = _hil(endpoint, tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert rep["fault"] is None and rep["mismatched_channel_windows"] == 0  # pulses agree
    assert rep["trigger_mismatched_windows"] > 0
    assert "conditions" in rep["trigger_field_mismatches"] and "trigger_word" in rep["trigger_field_mismatches"]
    m = rep["first_trigger_mismatch"]
    assert m["window"] == min(x["window"] for x in rep["trigger_mismatches"])
    # the reference had BEAM (bit 0 of conditions), the board lost it
    assert m["values"]["conditions"]["reference"] & 1 and not m["values"]["conditions"]["dut"] & 1
    assert "FAIL" in proc.stdout


def test_a_retry_recovers_a_dropped_reply(tmp_path):
    with board_process("--fault", "drop") as (endpoint, _):
        proc, rep = _hil(endpoint, tmp_path, "--retries", "1", timeout=TIMED)
    assert proc.returncode == 0, proc.stdout
    assert rep["passed"] and rep["windows_sent"] == 24


def test_nothing_listening_is_reported(tmp_path):
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(0)
    ctx.term()
    proc, rep = _hil(f"tcp://127.0.0.1:{port}", tmp_path, timeout=TIMED)
    assert proc.returncode == 1
    assert rep["fault"]["kind"] == "no-connection" and "nothing listening" in rep["fault"]["message"]


def test_board_error_replies(tmp_path):
    with board_process() as (endpoint, _):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 20000)
        sock.connect(endpoint)

        def ask(frames):
            sock.send_multipart([b""] + frames)
            reply = sock.recv_multipart()
            return decode(reply[1:])

        samples = np.full((1, 4, 32), 400, "<u2").tobytes()
        h, p = ask(encode(MsgType.WINDOWS, 1, samples, count=1, n_channels=4, n_samples=32))
        assert (h.type, h.seq, ErrorCode(h.count)) == (MsgType.ERROR, 1, ErrorCode.NOT_CONFIGURED)
        bad = PulseParams.uniform(4)
        payload = bytearray(registers_payload(bad))
        payload[8:12] = (600).to_bytes(4, "little", signed=True)  # nsa of channel 0 = 600 > 511
        h, p = ask(encode(MsgType.CONFIGURE, 2, bytes(payload), count=4, n_channels=4))
        assert ErrorCode(h.count) == ErrorCode.BAD_REGISTERS and b"nsa" in p and b"600" in p
        frames = encode(MsgType.CONFIGURE, 3, registers_payload(bad), count=4, n_channels=4)
        corrupted = bytearray(frames[1])
        corrupted[0] ^= 1
        h, p = ask([frames[0], bytes(corrupted)])
        assert (h.seq, ErrorCode(h.count)) == (3, ErrorCode.BAD_PAYLOAD_CRC)
        h, _ = ask(encode(MsgType.CONFIGURE, 4, registers_payload(bad), count=4, n_channels=4))
        assert h.type == MsgType.ACK
        h, p = ask(encode(MsgType.WINDOWS, 5, samples[:-2], count=1, n_channels=4, n_samples=32))
        assert ErrorCode(h.count) == ErrorCode.BAD_SIZE
        sock.close(0)
        ctx.term()

        # through the harness: an ERROR reply is a fault with the board's explanation
        dut = TcpDut(endpoint, timeout_s=5.0)
        try:
            assert "emulator" in dut.ping()
            dut.configure(PulseParams.uniform(4))
            with pytest.raises(DutFault, match="NOT_CONFIGURED") as err:
                dut.process(0, np.full((2, 6, 32), 400, np.uint16))
            assert err.value.kind == "error-reply"
        finally:
            dut.close()
