"""Board emulator: a process answering docs/hil-protocol.md with the numba pulse finder.

It behaves like a Waveboard-style digitizer running the pulse-finder firmware in a
stimulus/response test mode, and can misbehave on purpose (fault injection) so that the
harness's fault detection can be tested:

- ``bitflip``: one bit of the reply payload is flipped after the CRC was computed;
- ``drop``: the request is not answered;
- ``late``: the reply is sent after ``late_s`` seconds;
- ``disconnect``: the board closes its socket and exits without replying;
- ``wrong``: one pulse record carries a wrong integral, in a well-formed reply (a logic
  error of the board, visible only to the comparison with the reference);
- ``trigger``: one trigger record carries a wrong trigger word (one raw-type bit flipped), in
  a well-formed reply, pulses untouched (needs trigger registers from CONFIGURE_TRIGGER).

``trigger_offsets`` (``--trigger-offset NAME=DELTA``) adds DELTA to a scalar trigger register
after every CONFIGURE_TRIGGER: a board loaded with a wrong register.

Faults apply to WINDOWS requests, one fault per request, in the order given, starting with
request number ``fault_after`` (0-based).
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from ..dsp import find_pulses_batch
from ..trigger import TriggerBits, TriggerRegisters, trigger_windows
from ..trigger import _registers as trigger_registers_module
from ._protocol import (
    MAX_PAYLOAD,
    VERSION,
    ErrorCode,
    MsgType,
    PayloadCrcError,
    ProtocolError,
    decode,
    encode,
    params_from_payload,
    pulses_to_wire,
    trigger_registers_from_payload,
    triggers_to_wire,
)

FAULTS = ("bitflip", "drop", "late", "disconnect", "wrong", "trigger")
BOARD_NAME = f"pokerdaq hil-board emulator (numba pulse finder + trigger model), protocol {VERSION}".encode()


def trigger_register_index(name: str) -> int:
    """Index in ``TriggerRegisters.params`` of a scalar register named as in ``describe()`` (e.g. ``ecal_cut``)."""
    index = getattr(trigger_registers_module, "P_" + name.upper(), None)
    if not isinstance(index, int) or name.upper() == "PRESCALE":
        raise ValueError(
            f"trigger register {name!r}: expected one of the scalar registers (e.g. ecal_cut, beam_k, srd_emin)"
        )
    return index


def _warm_up(board: BoardEmulator) -> None:
    """Answer CONFIGURE, CONFIGURE_TRIGGER and WINDOWS once through :meth:`BoardEmulator.handle`
    (the real path, the real argument types): every numba kernel of a reply is compiled (or loaded
    from numba's cache) before the board announces that it listens, so that the first request of
    a host is answered as fast as any other, even from a cold cache (seconds of compilation)."""
    from ..config import load_config
    from ..dsp import PulseParams
    from ..trigger import TriggerRegisters
    from ._protocol import registers_payload, trigger_registers_payload

    cfg = load_config()
    params = PulseParams.from_config(cfg)
    n_ch, n_s = params.n_channels, cfg.digitizer.window_samples
    regs = TriggerRegisters.from_config(cfg)
    samples = np.full((2, n_ch, n_s), 400, np.uint16)
    samples[:, :, n_s // 2 : n_s // 2 + 4] = 4000  # a pulse on every channel: every branch runs
    saved = board._windows_requests
    try:
        for msg_type, payload, fields in (
            (MsgType.CONFIGURE, registers_payload(params), {"n_channels": n_ch}),
            (
                MsgType.CONFIGURE_TRIGGER,
                trigger_registers_payload(regs, cfg.digitizer.pretrigger_samples * 64),
                {"n_channels": n_ch},
            ),
            (MsgType.WINDOWS, samples.tobytes(), {"count": 2, "n_channels": n_ch, "n_samples": n_s}),
        ):
            reply, fault = board.handle(encode(msg_type, 0, payload, **fields))
            if reply is not None and fault is None and decode(reply)[0].type == MsgType.ERROR:
                raise RuntimeError(f"hil-board warm-up: {msg_type.name} refused: {decode(reply)[1].decode()}")
    finally:  # a host finds the board as after power-up: unconfigured, no request counted
        board._params = board._trigger = None
        board._windows_requests = saved


@dataclass
class BoardEmulator:
    """The emulated board; :meth:`serve` runs until SIGTERM/SIGINT, ``max_requests`` or a disconnect fault."""

    bind: str
    faults: list[str] = field(default_factory=list)
    fault_after: int = 1
    late_s: float = 30.0
    max_requests: int | None = None
    ready_file: str | None = None
    trigger_offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [f for f in self.faults if f not in FAULTS]
        if bad:
            raise ValueError(f"fault = {bad[0]!r}: expected one of {', '.join(FAULTS)}")
        if self.fault_after < 0:
            raise ValueError(f"fault_after = {self.fault_after}: expected >= 0")
        if not self.late_s > 0:
            raise ValueError(f"late_s = {self.late_s}: expected > 0")
        self._offsets = {trigger_register_index(k): int(v) for k, v in self.trigger_offsets.items()}
        self._params = None
        self._trigger: tuple[TriggerRegisters, int] | None = None
        self._windows_requests = 0
        self._stop = False
        self.endpoint = ""

    def _error(self, seq: int, code: ErrorCode, text: str) -> list[bytes]:
        return encode(MsgType.ERROR, seq, text.encode(), count=int(code))

    def handle(self, frames: list[bytes]) -> tuple[list[bytes] | None, str | None]:
        """Reply frames (None: no reply) and the fault applied (None: none)."""
        try:
            header, payload = decode(frames)
        except PayloadCrcError as err:
            return self._error(err.header.seq, ErrorCode.BAD_PAYLOAD_CRC, str(err)), None
        except ProtocolError as err:
            return self._error(0, ErrorCode.BAD_HEADER, str(err)), None
        seq = header.seq
        if header.type == MsgType.PING:
            return encode(MsgType.PONG, seq, BOARD_NAME), None
        if header.type == MsgType.CONFIGURE:
            try:
                self._params = params_from_payload(payload, header.n_channels)
            except (ValueError, TypeError) as err:
                return self._error(seq, ErrorCode.BAD_REGISTERS, str(err)), None
            return encode(MsgType.ACK, seq, count=header.n_channels, n_channels=header.n_channels), None
        if header.type == MsgType.CONFIGURE_TRIGGER:
            try:
                regs, default_ref = trigger_registers_from_payload(payload)
            except (ValueError, TypeError) as err:
                return self._error(seq, ErrorCode.BAD_REGISTERS, str(err)), None
            for index, delta in self._offsets.items():
                regs.params[index] += delta
            self._trigger = (regs, default_ref)
            return encode(MsgType.ACK, seq, count=regs.n_channels, n_channels=regs.n_channels), None
        if header.type != MsgType.WINDOWS:
            return self._error(seq, ErrorCode.UNKNOWN_TYPE, f"message type 0x{header.type:02x}"), None
        if self._params is None or self._params.n_channels != header.n_channels:
            have = "none" if self._params is None else self._params.n_channels
            return self._error(
                seq,
                ErrorCode.NOT_CONFIGURED,
                f"WINDOWS for {header.n_channels} channels, registers configured for {have}",
            ), None
        expected = header.count * header.n_channels * header.n_samples * 2
        if len(payload) != expected or header.count == 0:
            return self._error(
                seq,
                ErrorCode.BAD_SIZE,
                f"payload of {len(payload)} bytes, expected count "
                f"{header.count} x {header.n_channels} channels x {header.n_samples} samples "
                f"x 2 = {expected} (count >= 1)",
            ), None
        samples = np.frombuffer(payload, "<u2").reshape(header.count, header.n_channels, header.n_samples)
        try:
            pulses, offsets = find_pulses_batch(samples, self._params)
        except ValueError as err:
            return self._error(seq, ErrorCode.BAD_REGISTERS, str(err)), None
        window = np.repeat(np.arange(header.count, dtype=np.uint64), np.diff(offsets))
        body = pulses_to_wire(pulses, window)
        triggers = None
        if self._trigger is not None:
            regs, default_ref = self._trigger
            if regs.n_channels != header.n_channels:
                return self._error(
                    seq,
                    ErrorCode.NOT_CONFIGURED,
                    f"WINDOWS for {header.n_channels} channels, trigger registers configured for {regs.n_channels}",
                ), None
            try:
                triggers = trigger_windows(pulses, window.astype(np.int64), header.count, regs, default_ref=default_ref)
            except (ValueError, TypeError) as err:
                return self._error(seq, ErrorCode.BAD_REGISTERS, str(err)), None
        fault = self._next_fault()
        if fault == "wrong" and len(pulses):
            pulses = pulses.copy()
            pulses["integral"][len(pulses) // 2] ^= 1
            body = pulses_to_wire(pulses, window)
        if fault == "trigger" and triggers is not None:
            triggers["trigger_word"][len(triggers) // 2] ^= TriggerBits.BEAM << TriggerBits.RAW_SHIFT
        if triggers is not None:
            body += triggers_to_wire(triggers)
        reply = encode(
            MsgType.RESULT,
            seq,
            body,
            first_window=header.first_window,
            count=len(pulses),
            n_channels=header.n_channels,
            n_samples=header.n_samples,
        )
        if fault == "bitflip":
            body = bytearray(reply[1]) if reply[1] else bytearray(reply[0])
            body[len(body) // 2] ^= 0x08
            reply = [reply[0], bytes(body)] if reply[1] else [bytes(body), reply[1]]
        return reply, fault

    def _next_fault(self) -> str | None:
        k = self._windows_requests
        self._windows_requests += 1
        i = k - self.fault_after
        if 0 <= i < len(self.faults):
            return self.faults[i]
        return None

    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    def serve(self) -> int:
        """Bind, answer requests; returns the process exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        _warm_up(self)  # compile / load every kernel of a reply before announcing readiness
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_PAYLOAD + 4096)
        sock.setsockopt(zmq.SNDTIMEO, 5000)  # every send has a time-out [facts 5]
        try:
            sock.bind(self.bind)
        except zmq.ZMQError as err:
            print(f"pokerdaq hil-board: --bind {self.bind}: cannot bind ({err})", file=sys.stderr)
            sock.close(0)  # an open socket would make ctx.term() wait for ever
            ctx.term()
            return 2
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.ready_file:
            tmp = Path(self.ready_file + ".tmp")
            tmp.write_text(self.endpoint)
            tmp.replace(self.ready_file)
        print(f"hil-board listening on {self.endpoint}", flush=True)
        served = 0
        try:
            while not self._stop:
                if not sock.poll(200):
                    continue
                msg = sock.recv_multipart()
                # envelope: identity, empty delimiter, header, payload
                if len(msg) < 2 or msg[1] != b"":
                    continue
                identity, frames = msg[0], msg[2:]
                reply, fault = self.handle(frames)
                served += 1
                if fault:
                    print(f"hil-board: injecting fault {fault!r} on request {served}", flush=True)
                if fault == "disconnect":
                    return 0  # socket closed with linger 0: the peer sees the connection drop
                if fault == "drop" or reply is None:
                    continue
                if fault == "late":
                    deadline = time.monotonic() + self.late_s
                    while not self._stop and time.monotonic() < deadline:
                        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                try:
                    sock.send_multipart([identity, b""] + reply)
                except zmq.Again:
                    print("hil-board: reply could not be sent within 5 s (host gone?)", file=sys.stderr)
                if self.max_requests is not None and served >= self.max_requests:
                    break
        finally:
            sock.close(0)
            ctx.term()
        return 0
