"""DAQ configuration schema (the [daq] table): endpoints, buffers, time-outs, output files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from ._schema import Bounds, ConfigError

ENDPOINT_NAMES = ("control", "triggers", "fragments", "trigger_records", "records", "monitor", "credits", "display")
"""The sockets of a run, one endpoint each (``<name>_endpoint`` keys of [daq])."""


@dataclass(frozen=True, slots=True)
class SyntheticSourceConfig:
    """The synthetic front-end and trigger of :mod:`pokerdaq.daq._synthetic` (development only)."""

    hit_boards: Annotated[int, Bounds(ge=1, le=64)]
    multiplicity: Annotated[int, Bounds(ge=1, le=64)]
    coincidence_ticks: Annotated[int, Bounds(ge=1, le=1024)]
    amplitude_adc: Annotated[int, Bounds(ge=1, le=16000)]
    threshold_adc: Annotated[int, Bounds(ge=1, le=16000)]
    random_period_ticks: Annotated[int, Bounds(ge=0)]


@dataclass(frozen=True, slots=True)
class DaqConfig:
    # ---- which physics runs behind the DAQ interfaces (pokerdaq.daq._interfaces) ----
    front_end: Literal["synthetic", "physics", "physics-stream"]
    # "triggered": boards read out accepted triggers; "streaming": boards send L0 hits of every
    # crossing, written trigger-less (pokerdaq.daq._streaming, docs/daq.md "Streaming")
    mode: Literal["triggered", "streaming"]
    l0_threshold_percent: Annotated[int, Bounds(ge=1, le=100)]
    trigger_logic: Literal["synthetic", "physics"]
    synthetic: SyntheticSourceConfig

    # ---- processes and endpoints ----
    boards_per_process: Annotated[int, Bounds(ge=1, le=64)]
    transport: Literal["ipc", "tcp"]
    control_endpoint: str
    triggers_endpoint: str
    fragments_endpoint: str
    trigger_records_endpoint: str
    records_endpoint: str
    monitor_endpoint: str
    credits_endpoint: str
    display_endpoint: str

    # ---- time slices, buffers and flow control ----
    slice_ticks: Annotated[int, Bounds(ge=256, le=1 << 24)]
    max_slices_ahead: Annotated[int, Bounds(ge=2, le=1024)]
    fast_forward: bool
    # a stretch is computed in one go: at most 16384 slices stays well within board_timeout_s
    fast_forward_slices: Annotated[int, Bounds(ge=2, le=16384)]
    board_queue_events: Annotated[int, Bounds(ge=1, le=1 << 20)]
    busy_fraction: Annotated[float, Bounds(gt=0.0, le=1.0)]
    hwm: Annotated[int, Bounds(ge=1, le=1 << 20)]
    send_timeout_ms: Annotated[int, Bounds(ge=1, le=60_000)]
    max_message_bytes: Annotated[int, Bounds(ge=1024)]

    # ---- time-outs ----
    board_timeout_s: Annotated[float, Bounds(gt=0.0)]
    builder_timeout_s: Annotated[float, Bounds(gt=0.0)]
    stall_timeout_s: Annotated[float, Bounds(gt=0.0)]
    command_timeout_s: Annotated[float, Bounds(gt=0.0)]
    start_timeout_s: Annotated[float, Bounds(gt=0.0)]
    # ---- heartbeats (run control hears every node; docs/daq.md "Heartbeats") ----
    heartbeat_interval_s: Annotated[float, Bounds(gt=0.0, le=10.0)]
    heartbeat_timeout_s: Annotated[float, Bounds(gt=0.0, le=60.0)]
    on_silent_board: Literal["error", "continue"]
    # ---- nodes started on their own (``pokerdaq node``), on this or other hosts ----
    remote_nodes: tuple[str, ...]
    # ---- CURVE (pokerdaq.daq._curve) ----
    curve: bool
    curve_keys: str

    # ---- event builder ----
    max_events_in_flight: Annotated[int, Bounds(ge=2, le=1 << 20)]

    # ---- writer and monitoring ----
    writer_batch_events: Annotated[int, Bounds(ge=1, le=1 << 20)]
    writer_delay_s: Annotated[float, Bounds(ge=0.0, le=10.0)]
    rotate_events: Annotated[int, Bounds(ge=0)]
    rotate_bytes: Annotated[int, Bounds(ge=0)]
    trigger_state_every_steps: Annotated[int, Bounds(ge=1, le=1 << 20)]
    compression: Literal["gzip", "zstd", "lz4", "none"]
    monitor_interval_s: Annotated[float, Bounds(gt=0.0)]
    monitor_hwm: Annotated[int, Bounds(ge=1, le=1000)]
    display_interval_s: Annotated[float, Bounds(gt=0.0, le=3600.0)]
    display_hwm: Annotated[int, Bounds(ge=1, le=1000)]

    def __post_init__(self) -> None:
        if self.mode == "streaming" and (self.front_end, self.trigger_logic) != ("physics", "physics"):
            raise ConfigError(
                "mode",
                self.mode,
                f'"triggered" with front_end = {self.front_end!r} and trigger_logic = '
                f'{self.trigger_logic!r} (streaming cuts its L0 hits in the "physics" front end)',
            )
        if self.mode == "streaming" and (self.rotate_events or self.rotate_bytes):
            raise ConfigError(
                "mode", self.mode, '"triggered" with rotate_events / rotate_bytes (a streaming recording is one file)'
            )
        for name in ENDPOINT_NAMES:
            value = getattr(self, f"{name}_endpoint")
            if value and not value.startswith(("ipc://", "tcp://")):
                raise ConfigError(
                    f"{name}_endpoint", value, "an empty string (automatic) or an ipc:// or tcp:// ZeroMQ endpoint"
                )
        if self.remote_nodes and self.transport != "tcp":
            raise ConfigError(
                "remote_nodes",
                list(self.remote_nodes),
                'nodes on other hosts need daq.transport = "tcp" (ipc reaches this host only)',
            )
        if self.heartbeat_timeout_s < 2 * self.heartbeat_interval_s:
            raise ConfigError(
                "heartbeat_timeout_s",
                self.heartbeat_timeout_s,
                f"at least twice daq.heartbeat_interval_s = {self.heartbeat_interval_s}",
            )
        if self.synthetic.multiplicity > self.synthetic.hit_boards:
            raise ConfigError(
                "synthetic.multiplicity",
                self.synthetic.multiplicity,
                f"at most daq.synthetic.hit_boards = {self.synthetic.hit_boards}",
            )
