"""Devices under test: the numba model (harness self-check) and a remote board over ZeroMQ.

A DUT takes the pulse-finder registers once (:meth:`configure`) and then batches of readout
windows (:meth:`process`), and returns PULSE_DTYPE records with the index of the window
(within the batch) each came from. A DUT that fails to answer correctly raises
:class:`DutFault` with a diagnostic. A DUT that also returns trigger decisions has
:meth:`configure_trigger` (trigger registers) and then returns, after the pulses, a pair
(TRIGGER_DTYPE records, window index of each) from :meth:`process`.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import zmq
import zmq.utils.monitor

from ..dsp import PulseParams, find_pulses_batch
from ..trigger import TriggerRegisters, trigger_windows
from ._protocol import (
    WIRE_PULSE_DTYPE,
    ErrorCode,
    Header,
    MsgType,
    PayloadCrcError,
    ProtocolError,
    decode,
    encode,
    pulses_from_wire,
    registers_payload,
    trigger_registers_payload,
    triggers_from_wire,
)


class DutFault(Exception):
    """The DUT broke the protocol or did not answer: ``kind`` classifies, the message explains.

    Kinds: ``corrupt`` (CRC or framing error in a reply), ``timeout`` (no reply), ``late``
    (the reply came after the time-out), ``disconnect`` (the connection dropped),
    ``error-reply`` (the board answered ERROR), ``protocol`` (a reply that does not fit the
    request), ``no-connection`` (never connected).
    """

    def __init__(self, kind: str, message: str, **context) -> None:
        super().__init__(message)
        self.kind = kind
        self.context = context


class Dut(Protocol):
    name: str
    batch_windows: int | None  # windows per process() call the DUT prefers (None: all at once)

    def configure(self, params: PulseParams) -> None: ...
    def process(self, first_window: int, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def close(self) -> None: ...


class ModelDut:
    """The numba pulse finder as the DUT: checks the harness itself."""

    name = "model"
    batch_windows: int | None = 64

    def __init__(self) -> None:
        self._params: PulseParams | None = None
        self._trigger: tuple[TriggerRegisters, int] | None = None

    def configure(self, params: PulseParams) -> None:
        self._params = params

    def configure_trigger(self, regs: TriggerRegisters, default_ref: int) -> None:
        self._trigger = (regs, default_ref)

    def process(self, first_window: int, samples: np.ndarray) -> tuple:
        assert self._params is not None, "configure() first"
        pulses, offsets = find_pulses_batch(samples, self._params)
        window = np.repeat(np.arange(len(samples), dtype=np.int64), np.diff(offsets))
        if self._trigger is None:
            return pulses, window
        regs, default_ref = self._trigger
        triggers = trigger_windows(pulses, window, len(samples), regs, default_ref=default_ref)
        return pulses, window, (triggers, np.arange(len(samples), dtype=np.int64))

    def close(self) -> None:
        pass


_MONITOR_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED


class TcpDut:
    """A board speaking docs/hil-protocol.md at ``endpoint`` (``tcp://host:port``).

    Parameters
    ----------
    endpoint
        The board's ROUTER (or REP) endpoint.
    timeout_s
        Seconds to wait for each reply.
    retries
        Times a request is re-sent (same sequence number) after a time-out.
    batch_windows
        Windows per WINDOWS request.
    """

    name = "tcp"

    def __init__(self, endpoint: str, *, timeout_s: float = 5.0, retries: int = 0, batch_windows: int = 16) -> None:
        if not endpoint.startswith("tcp://"):
            raise ValueError(f"endpoint = {endpoint!r}: expected tcp://HOST:PORT")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s = {timeout_s!r}: expected > 0")
        if retries < 0:
            raise ValueError(f"retries = {retries!r}: expected >= 0")
        if batch_windows < 1:
            raise ValueError(f"batch_windows = {batch_windows!r}: expected >= 1")
        self.endpoint = endpoint
        self.name = endpoint
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.batch_windows = int(batch_windows)
        self.seq = 0
        self.stale_replies = 0
        self.connected = False
        self.ever_connected = False
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDTIMEO, int(self.timeout_s * 1000))
        self._sock.setsockopt(zmq.SNDHWM, 4)  # bounded: at most a few requests queued
        self._monitor = self._sock.get_monitor_socket(_MONITOR_EVENTS)
        self._sock.connect(endpoint)
        self._n_channels = 0
        self._n_samples = 0
        self._with_trigger = False

    # ------------------------------------------------------------------ protocol

    def _drain_monitor(self) -> str | None:
        """Apply pending socket events; 'disconnect' when the connection dropped."""
        dropped = None
        while self._monitor.poll(0):
            ev = zmq.utils.monitor.recv_monitor_message(self._monitor)
            if ev["event"] == zmq.EVENT_CONNECTED:
                self.connected = self.ever_connected = True
            elif ev["event"] == zmq.EVENT_DISCONNECTED:
                self.connected = False
                dropped = "disconnect"
        return dropped

    def _wait(self, seq: int, deadline: float, what: str) -> tuple[Header, bytes] | None:
        """The reply to ``seq`` before ``deadline``; None on time-out. Raises DutFault on faults."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready = dict(poller.poll(int(left * 1000)))  # what pyzmq does with a float
            if self._monitor in ready and self._drain_monitor() == "disconnect":
                raise DutFault(
                    "disconnect",
                    f"{self.endpoint}: the board closed the connection while {what} (seq {seq}) was outstanding",
                    seq=seq,
                )
            if self._sock not in ready:
                continue
            frames = self._sock.recv_multipart()
            if frames and frames[0] == b"":
                frames = frames[1:]
            try:
                header, payload = decode(frames)
            except PayloadCrcError as err:
                if err.header.seq != seq:
                    self.stale_replies += 1
                    continue
                raise DutFault("corrupt", f"{self.endpoint}: reply to {what} (seq {seq}): {err}", seq=seq) from None
            except ProtocolError as err:
                raise DutFault(
                    "corrupt", f"{self.endpoint}: reply to {what} (seq {seq}) is malformed: {err}", seq=seq
                ) from None
            if header.seq != seq:
                # a late answer to an earlier request: counted, never taken for this one
                self.stale_replies += 1
                continue
            if header.type == MsgType.ERROR:
                try:
                    code = ErrorCode(header.count).name
                except ValueError:
                    code = f"code {header.count}"
                raise DutFault(
                    "error-reply",
                    f"{self.endpoint}: board answered {what} (seq {seq}) with ERROR "
                    f"{code}: {payload.decode(errors='replace')}",
                    seq=seq,
                    code=code,
                )
            return header, payload

    def request(self, msg_type: MsgType, payload: bytes = b"", *, what: str, **fields) -> tuple[Header, bytes]:
        """Send one request and return its reply (header, payload), with time-out and retries."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        seq = self.seq
        frames = [b""] + encode(msg_type, seq, payload, **fields)
        t0 = time.monotonic()
        for _attempt in range(self.retries + 1):
            try:
                self._sock.send_multipart(frames, copy=len(payload) < 65536)
            except zmq.Again:
                raise DutFault(
                    "timeout",
                    f"{self.endpoint}: {what} (seq {seq}) could not be sent within "
                    f"{self.timeout_s:g} s (no connection to the board?)",
                    seq=seq,
                ) from None
            got = self._wait(seq, time.monotonic() + self.timeout_s, what)
            if got is not None:
                return got
        # no reply in time: wait one more time-out to tell a late reply from a lost one
        waited = time.monotonic() - t0
        self._drain_monitor()
        if not self.ever_connected:
            raise DutFault(
                "no-connection",
                f"{self.endpoint}: no connection to the board (nothing listening?): "
                f"{what} (seq {seq}) unanswered after {waited:.2f} s",
                seq=seq,
            )
        got = self._wait(seq, time.monotonic() + self.timeout_s, what)
        if got is not None:
            late = time.monotonic() - t0
            raise DutFault(
                "late",
                f"{self.endpoint}: reply to {what} (seq {seq}) arrived after {late:.2f} s, "
                f"beyond the {self.timeout_s:g} s time-out ({self.retries + 1} attempt(s))",
                seq=seq,
                latency_s=late,
            )
        raise DutFault(
            "timeout",
            f"{self.endpoint}: no reply to {what} (seq {seq}) within {self.timeout_s:g} s "
            f"x {self.retries + 1} attempt(s) plus {self.timeout_s:g} s grace: the board dropped the "
            f"request or hung",
            seq=seq,
        )

    # ------------------------------------------------------------------ DUT interface

    def ping(self) -> str:
        _, payload = self.request(MsgType.PING, what="PING")
        return payload.decode(errors="replace")

    def configure(self, params: PulseParams) -> None:
        header, _ = self.request(
            MsgType.CONFIGURE, registers_payload(params), what="CONFIGURE", n_channels=params.n_channels
        )
        if header.type != MsgType.ACK or header.count != params.n_channels:
            raise DutFault(
                "protocol",
                f"{self.endpoint}: CONFIGURE answered with type 0x{header.type:02x} "
                f"count {header.count}, expected ACK for {params.n_channels} channels",
            )
        self._n_channels = params.n_channels

    def configure_trigger(self, regs: TriggerRegisters, default_ref: int) -> None:
        header, _ = self.request(
            MsgType.CONFIGURE_TRIGGER,
            trigger_registers_payload(regs, default_ref),
            what="CONFIGURE_TRIGGER",
            n_channels=regs.n_channels,
        )
        if header.type != MsgType.ACK:
            raise DutFault(
                "protocol", f"{self.endpoint}: CONFIGURE_TRIGGER answered with type 0x{header.type:02x}, expected ACK"
            )
        self._with_trigger = True

    def process(self, first_window: int, samples: np.ndarray) -> tuple:
        n, nch, ns = samples.shape
        what = f"WINDOWS {first_window}..{first_window + n - 1}"
        header, payload = self.request(
            MsgType.WINDOWS,
            np.ascontiguousarray(samples, "<u2").tobytes(),
            what=what,
            first_window=first_window,
            count=n,
            n_channels=nch,
            n_samples=ns,
        )
        if header.type != MsgType.RESULT or header.first_window != first_window:
            raise DutFault(
                "protocol",
                f"{self.endpoint}: {what} answered with type 0x{header.type:02x} "
                f"first_window {header.first_window}, expected RESULT for window {first_window}",
            )
        split = header.count * WIRE_PULSE_DTYPE.itemsize if self._with_trigger else len(payload)
        try:
            pulses, window = pulses_from_wire(payload[:split], header.count)
            if self._with_trigger:
                triggers, trig_window = triggers_from_wire(payload[split:], n)
        except ProtocolError as err:
            raise DutFault("corrupt", f"{self.endpoint}: reply to {what}: {err}") from None
        if len(window) and (window.min() < 0 or window.max() >= n):
            raise DutFault(
                "protocol", f"{self.endpoint}: reply to {what} names window {int(window.max())} outside 0..{n - 1}"
            )
        if not self._with_trigger:
            return pulses, window
        if len(trig_window) and (trig_window.min() < 0 or trig_window.max() >= n):
            raise DutFault(
                "protocol",
                f"{self.endpoint}: reply to {what} has a trigger record for window "
                f"{int(trig_window.max())} outside 0..{n - 1}",
            )
        return pulses, window, (triggers, trig_window)

    def close(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)
        self._ctx.term()
