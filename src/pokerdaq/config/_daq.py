"""DAQ configuration schema (the [daq] table): endpoints, buffers, time-outs, output files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ._schema import ConfigError, bounded

ENDPOINT_NAMES = ("control", "triggers", "fragments", "trigger_records", "records", "monitor", "credits")
"""The sockets of a run, one endpoint each (``<name>_endpoint`` keys of [daq])."""


@dataclass(frozen=True, slots=True)
class SyntheticSourceConfig:
    """The synthetic front-end and trigger of :mod:`pokerdaq.daq._synthetic` (development only)."""

    hit_boards: int = bounded(3, ge=1, le=64)
    multiplicity: int = bounded(2, ge=1, le=64)
    coincidence_ticks: int = bounded(8, ge=1, le=1024)
    amplitude_adc: int = bounded(800, ge=1, le=16000)
    threshold_adc: int = bounded(100, ge=1, le=16000)
    random_period_ticks: int = bounded(1_000_000, ge=0)


@dataclass(frozen=True, slots=True)
class DaqConfig:
    # ---- which physics runs behind the DAQ interfaces (pokerdaq.daq._interfaces) ----
    front_end: Literal["synthetic", "physics", "physics-stream"] = "physics"
    trigger_logic: Literal["synthetic", "physics"] = "physics"
    synthetic: SyntheticSourceConfig = field(default_factory=SyntheticSourceConfig)

    # ---- processes and endpoints ----
    boards_per_process: int = bounded(4, ge=1, le=64)
    transport: Literal["ipc", "tcp"] = "ipc"
    control_endpoint: str = ""
    triggers_endpoint: str = ""
    fragments_endpoint: str = ""
    trigger_records_endpoint: str = ""
    records_endpoint: str = ""
    monitor_endpoint: str = ""
    credits_endpoint: str = ""

    # ---- time slices, buffers and flow control ----
    slice_ticks: int = bounded(131072, ge=256, le=1 << 24)
    max_slices_ahead: int = bounded(8, ge=2, le=1024)
    fast_forward: bool = True
    fast_forward_slices: int = bounded(256, ge=2, le=16384)   # a stretch is computed in one go: well within board_timeout_s
    board_queue_events: int = bounded(128, ge=1, le=1 << 20)
    busy_fraction: float = bounded(0.5, gt=0.0, le=1.0)
    hwm: int = bounded(50, ge=1, le=1 << 20)
    send_timeout_ms: int = bounded(100, ge=1, le=60_000)
    max_message_bytes: int = bounded(16 << 20, ge=1024)

    # ---- time-outs ----
    board_timeout_s: float = bounded(2.0, gt=0.0)
    builder_timeout_s: float = bounded(2.0, gt=0.0)
    stall_timeout_s: float = bounded(20.0, gt=0.0)
    command_timeout_s: float = bounded(60.0, gt=0.0)
    start_timeout_s: float = bounded(300.0, gt=0.0)

    # ---- event builder ----
    max_events_in_flight: int = bounded(512, ge=2, le=1 << 20)

    # ---- writer and monitoring ----
    writer_batch_events: int = bounded(256, ge=1, le=1 << 20)
    writer_delay_s: float = bounded(0.0, ge=0.0, le=10.0)
    rotate_events: int = bounded(0, ge=0)
    rotate_bytes: int = bounded(0, ge=0)
    compression: Literal["gzip", "zstd", "lz4", "none"] = "gzip"
    monitor_interval_s: float = bounded(1.0, gt=0.0)
    monitor_hwm: int = bounded(4, ge=1, le=1000)

    def __post_init__(self) -> None:
        for name in ENDPOINT_NAMES:
            value = getattr(self, f"{name}_endpoint")
            if value and not value.startswith(("ipc://", "tcp://")):
                raise ConfigError(f"{name}_endpoint", value,
                                  "an empty string (automatic) or an ipc:// or tcp:// ZeroMQ endpoint")
        if self.synthetic.multiplicity > self.synthetic.hit_boards:
            raise ConfigError("synthetic.multiplicity", self.synthetic.multiplicity,
                              f"at most daq.synthetic.hit_boards = {self.synthetic.hit_boards}")
