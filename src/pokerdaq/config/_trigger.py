"""Trigger configuration schema (the [trigger] table); see docs/firmware-spec.md."""

from __future__ import annotations

from dataclasses import dataclass

from ._schema import bounded


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    latency_ns: float = bounded(400.0, ge=0.0)
    dead_time_ns: float = bounded(1000.0, ge=0.0)
