"""Record dtypes of the pokerdaq run file; numpy only, so importing them needs no h5py.

Field by field description: docs/hdf5-layout.md.
"""

from __future__ import annotations

import enum
import json

import numpy as np

from pokerdaq.daq._wire import PRIMITIVE_DTYPE
from pokerdaq.dsp._records import PULSE_DTYPE

LAYOUT_NAME = "pokerdaq-run"
"""Name stored in the ``layout_version`` file attribute."""

LAYOUT_VERSION = 1
"""Version of the file layout described in docs/hdf5-layout.md (bumped on any incompatible change)."""


def layout_version_json(version: int = LAYOUT_VERSION) -> str:
    """The ``layout_version`` attribute text, e.g. ``{"name": "pokerdaq-run", "version": 1}``."""
    return json.dumps({"name": LAYOUT_NAME, "version": int(version)})


EVENT_DTYPE = np.dtype(
    [
        ("event_number", np.uint64),  # event counter of the run, strictly increasing within a run
        ("timestamp", np.uint64),  # trigger time in 250 MHz clock ticks (4 ns) of the digitizers
        ("trigger_word", np.uint32),  # bit mask of the trigger conditions that fired
        ("flags", np.uint32),  # EventFlags
        ("missing_boards", np.uint64),  # bit b set: board b sent no fragment for this event
        ("n_pulses", np.uint32),  # rows of /pulses that belong to this event
    ]
)
"""Event header, one row per event in ``/events``."""


class EventFlags(enum.IntFlag):
    """Bits of ``EVENT_DTYPE['flags']``: what the event builder found wrong with an event.

    An event with any of these bits is stored (never dropped silently) and counted; analysis
    decides whether to use it.
    """

    NONE = 0
    INCOMPLETE = 1 << 0  # a board's fragment is missing (time-out, eviction, or rejected): see missing_boards
    MISMATCH = 1 << 1  # a fragment's timestamp or trigger word disagreed with the trigger record: rejected
    TRUNCATED = 1 << 2  # a board's readout window began before the run start (fragment WINDOW_CLIPPED): samples 0
    DUPLICATE = 1 << 3  # a board sent a second fragment for this event number; the first was kept
    SEQUENCE_GAP = 1 << 4  # the trigger records skipped event numbers just before this event
    CHECKSUM_ERROR = 1 << 5  # a missing board's fragment failed its CRC (header intact): its samples are 0
    TIMESTAMP_ERROR = 1 << 6  # the timestamp is below the previous trigger record's
    SIMULATED = 1 << 7  # produced by the emulator (a /truth row exists for it)
    BOARD_BUSY = 1 << 8  # a board read this event out while busy (fragment BOARD_BUSY)


STORED_PULSE_DTYPE = np.dtype([("event_number", np.uint64)] + [(n, PULSE_DTYPE[n]) for n in PULSE_DTYPE.names or ()])
"""Row of ``/pulses``: the event number, then every field of :data:`pokerdaq.dsp._records.PULSE_DTYPE`."""

N_TRIGGER_BITS = 32
"""Width of ``EVENT_DTYPE['trigger_word']``; ``SCALER_DTYPE['trigger_bits']`` counts each bit."""

SCALER_DTYPE = np.dtype(
    [
        ("spill", np.uint32),  # spill number within the run, from 0
        ("start_timestamp", np.uint64),  # spill start, 250 MHz ticks
        ("stop_timestamp", np.uint64),  # spill end, 250 MHz ticks
        ("beam_counts", np.uint64),  # beam particles counted (beam-counter coincidence)
        ("triggers_raw", np.uint64),  # trigger decisions, before busy/dead-time vetoes
        ("triggers_accepted", np.uint64),  # triggers accepted (read out)
        ("events_built", np.uint64),  # events the builder completed
        ("events_incomplete", np.uint64),  # of those, flagged INCOMPLETE
        ("events_dropped", np.uint64),  # events shed (queues full) - counted, not written
        ("busy_ticks", np.uint64),  # 250 MHz ticks the DAQ was busy during the spill
        ("trigger_bits", np.uint64, (N_TRIGGER_BITS,)),  # accepted triggers with trigger_word bit i set
    ]
)
"""Per-spill scaler record, one row per spill in ``/scalers``."""


TRIGGER_STEP_DTYPE = np.dtype(
    [
        ("first_slice", np.int64),  # the decision covered slices first_slice..last_slice
        ("last_slice", np.int64),
        ("busy", np.uint8),  # 1: a board reported busy for those slices
        ("n_primitives", np.uint32),  # rows of /trigger_inputs/primitives of this step, in order
        ("dead_until", np.int64),  # dead time before the step: no trigger issued below this tick
        ("prescale_counts", np.int64, (8,)),  # per trigger type, raw triggers counted towards its prescaler
        ("events_before", np.uint64),  # triggers accepted by the trigger logic before the step
    ]
)
"""One decision step of the trigger processor, one row per step in ``/trigger_inputs/steps``."""

TRIGGER_PRIMITIVE_DTYPE = PRIMITIVE_DTYPE
"""Row of ``/trigger_inputs/primitives``: a trigger primitive as the boards send it (docs/wire-format.md)."""
