"""Counters of a run file: events, flags, trigger bits, pulses, scalers."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io import EventFlags
from ..trigger import TriggerBits


def file_counters(events: np.ndarray, scalers: np.ndarray, n_pulses_total: int) -> dict[str, Any]:
    """Counts of a file's events by flag and trigger bit, and the scaler totals.

    Parameters
    ----------
    events
        ``EVENT_DTYPE`` headers.
    scalers
        ``SCALER_DTYPE`` rows.
    n_pulses_total
        Rows of ``/pulses``.
    """
    flags = events["flags"].astype(np.uint32)
    words = events["trigger_word"].astype(np.uint32)
    out: dict[str, Any] = {"events": int(len(events)), "pulses": int(n_pulses_total)}
    out["flags"] = {f.name: int(np.count_nonzero(flags & np.uint32(f.value))) for f in EventFlags if f.value and f.name}
    out["trigger_accepted"] = {
        n: int(np.count_nonzero(words >> np.uint32(k) & np.uint32(1))) for k, n in enumerate(TriggerBits.NAMES)
    }
    out["trigger_raw"] = {
        n: int(np.count_nonzero(words >> np.uint32(k + TriggerBits.RAW_SHIFT) & np.uint32(1)))
        for k, n in enumerate(TriggerBits.NAMES)
    }
    out["events_without_trigger_word"] = int(np.count_nonzero(words == 0))
    if len(events):
        ts = events["timestamp"].astype(np.float64)
        out["time_span_s"] = float((ts.max() - ts.min()) * 4e-9)
    if len(scalers):
        total: dict[str, Any] = {
            k: int(scalers[k].sum())
            for k in (
                "beam_counts",
                "triggers_raw",
                "triggers_accepted",
                "events_built",
                "events_incomplete",
                "events_dropped",
                "busy_ticks",
            )
        }
        ticks = int((scalers["stop_timestamp"].astype(np.int64) - scalers["start_timestamp"].astype(np.int64)).sum())
        total["spills"] = int(len(scalers))
        # what the scalers measure: the DAQ's busy ticks only (the trigger's dead time is not in
        # /scalers), so this is not the run summary's live time (neither dead nor busy)
        total["not_busy_fraction"] = 1.0 - total["busy_ticks"] / ticks if ticks > 0 else None
        out["scalers"] = total
    return out
