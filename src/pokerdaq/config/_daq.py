"""DAQ configuration schema (the [daq] table): endpoints, buffers, time-outs, output files."""

from __future__ import annotations

from dataclasses import dataclass

from ._schema import bounded


@dataclass(frozen=True, slots=True)
class DaqConfig:
    builder_timeout_s: float = bounded(2.0, gt=0.0)
