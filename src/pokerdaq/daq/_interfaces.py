"""The two narrow interfaces between the DAQ transport and the physics behind it.

The DAQ (board processes, trigger processor, event builder, writer) moves bytes and keeps
time; *what* the boards see and *which* triggers are accepted is injected through:

* :class:`FrontEndLogic`, one object per board, living in the board process: it produces,
  slice by slice, the board's samples and its trigger primitives, and finds the pulses of
  a readout window;
* :class:`TriggerLogic`, one object in the trigger processor: it turns the primitives of
  all boards for one time slice into accepted triggers and keeps per-type counters.

Time is counted in 250 MHz ticks from the run start. Slice ``k`` covers ticks
``[k * slice_ticks, (k + 1) * slice_ticks)``; ``slice_ticks`` is ``cfg.daq.slice_ticks``.

Implementations: :mod:`pokerdaq.daq._synthetic` (deterministic development source) and
:mod:`pokerdaq.daq._physics` (emulator + pulse finder + trigger model). Which one a run uses
is chosen by ``cfg.daq.front_end`` / ``cfg.daq.trigger_logic`` in
:func:`pokerdaq.daq._factory.make_front_end` and :func:`pokerdaq.daq._factory.make_trigger_logic`.
Both are constructed inside the process that uses them (after the 'spawn'), from the
configuration, the board number and the run seed only, so they need not be picklable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(slots=True)
class SliceOutput:
    """What a board's front end produced for one time slice.

    Attributes
    ----------
    samples
        (n_channels, slice_ticks) uint16 ADC codes, rows in the order of the board's channels;
        or None: the front end renders readout windows on demand with
        ``read_window(first_tick, n_samples) -> (n_channels, n_samples) uint16`` (the
        activity-driven physics front end, which does not emulate the whole stream).
    primitives
        Trigger primitives, :data:`pokerdaq.daq._wire.PRIMITIVE_DTYPE` (time in 1/64 sample
        since the run start, integral_net, channel, board, peak, quality): the pulses of the
        slice, for the trigger. A pulse may be reported in the slice after the one it lies in
        (a stream pulse finder needs the samples after the crossing).
    """

    samples: np.ndarray | None
    primitives: np.ndarray


@dataclass(slots=True)
class TypeCounters:
    """Counters of one trigger type (one bit of the trigger word)."""

    candidates: int = 0  # the condition fired
    accepted: int = 0  # ... and a trigger was issued with this bit set
    lost_dead_time: int = 0  # ... but inside the dead time after an accepted trigger
    lost_busy: int = 0  # ... but the DAQ was busy (a board's queue above its busy mark)


@dataclass(slots=True, frozen=True)
class ScalerCounts:
    """Running totals of the trigger scalers kept per spill (``/scalers`` rows), from the run start.

    ``beam_coincidences``: beam-counter coincidences (physics: beam candidates, the raw BEAM
    scaler of docs/firmware-spec.md 2.12; synthetic: multiplicity coincidences);
    ``attempts``: trigger candidates that passed a prescaler (= accepted + lost to dead time +
    lost to busy, one per candidate whatever its number of types); ``busy_ticks``: ticks
    during which busy vetoed triggers.
    """

    beam_coincidences: int = 0
    attempts: int = 0
    busy_ticks: int = 0


@dataclass(slots=True)
class TriggerOutput:
    """Accepted triggers of one slice: (n,) arrays, in time order."""

    timestamps: np.ndarray  # uint64, 250 MHz ticks since run start
    trigger_words: np.ndarray  # uint32 bit masks
    busy_ticks: int = 0  # ticks of this slice lost to busy
    dead_ticks: int = 0  # ticks of this slice inside the dead time
    extra: dict = field(default_factory=dict)
    cut_counts: list[ScalerCounts] = field(default_factory=list)
    """:class:`ScalerCounts` at each of the ``cuts`` passed to ``process_slice`` (same order)."""


@runtime_checkable
class FrontEndLogic(Protocol):
    """Per-board front-end logic (the FADC firmware and what it digitizes).

    Constructed once per board and run; ``channels`` are ``cfg.channel_map.channels_on_board(board)``.
    """

    board: int
    channels: np.ndarray

    def process_slice(self, slice_index: int) -> SliceOutput:
        """Samples and trigger primitives of slice ``slice_index``.

        Called with slice_index = 0, 1, 2, ... in order, once each. Must be deterministic
        for a given (configuration, seed, board, slice_index).
        """
        ...

    def find_pulses(self, window: np.ndarray, first_tick: int) -> np.ndarray:
        """Pulses of a readout window.

        Parameters
        ----------
        window
            (n_channels, window_samples) uint16, the readout window of every channel, cut
            by the board from its ring buffer; ``first_tick`` is the absolute tick of column 0.

        Returns
        -------
        numpy.ndarray
            Pulse records, :data:`pokerdaq.dsp._records.PULSE_DTYPE`, ``channel`` being the
            channel-map number and times relative to the window start.
        """
        ...


@runtime_checkable
class TriggerLogic(Protocol):
    """The trigger: primitives of every board for one slice in, accepted triggers out."""

    trigger_names: tuple[str, ...]
    """Name of each trigger-word bit, bit 0 first."""

    def decided_until(self, slice_index: int) -> int:
        """The tick below which every candidate is decided once slice ``slice_index`` is processed.

        Candidates are ordered by their timestamp (the event timestamp: the reference tick);
        the value never decreases with ``slice_index``.
        """
        ...

    def scaler_counts(self) -> ScalerCounts:
        """Running scaler totals over every candidate decided so far."""
        ...

    def process_slice(
        self, slice_index: int, primitives: np.ndarray, busy: bool, cuts: Sequence[int] = ()
    ) -> TriggerOutput:
        """Accepted triggers of one slice.

        Parameters
        ----------
        slice_index
            0, 1, 2, ... in order, once each.
        primitives
            Primitives of all live boards for this slice, concatenated
            (:data:`pokerdaq.daq._wire.PRIMITIVE_DTYPE`, ``board`` set, not sorted).
        busy
            True when any live board reported busy for this slice: every candidate of the
            slice is lost to busy (counted in ``lost_busy``) and ``busy_ticks`` is the slice.
        cuts
            Increasing ticks in ``(decided_until(slice_index - 1), decided_until(slice_index)]``
            (spill ends): ``cut_counts[i]`` are the running scaler totals over the candidates
            with timestamp below ``cuts[i]``, and the busy ticks up to it.

        Returns
        -------
        TriggerOutput
            Accepted triggers, time ordered; the caller numbers the events. Their timestamps
            lie in slice ``slice_index`` or ``slice_index - 1`` (a trigger whose decision
            needs the next slice's primitives may come one slice late; the boards keep
            their samples that long), and never before an earlier output's last timestamp.
        """
        ...

    def counters(self) -> dict[str, TypeCounters]:
        """Cumulative counters per trigger type name."""
        ...


class OnDemandFrontEnd(FrontEndLogic, Protocol):
    """A :class:`FrontEndLogic` that renders its readout windows itself: its slices come without
    samples (``SliceOutput.samples`` None) and the board asks it for the window of a trigger."""

    def read_window(self, first_tick: int, n_samples: int) -> np.ndarray:
        """(n_channels, n_samples) uint16: the samples from absolute tick ``first_tick``."""
        ...


@runtime_checkable
class StretchFrontEnd(Protocol):
    """Optional part of a :class:`FrontEndLogic` that can fast-forward (``daq.fast_forward``).

    A board with such a front end sends one primitive message for a *stretch* of slices
    (docs/wire-format.md 2.1, ``last_slice``) instead of one per slice. The activity-driven
    physics front end (:mod:`._sparse`) has it; a front end without it sends every slice.
    """

    def stretch_end(self, slice_index: int, max_slices: int) -> int:
        """The last slice (``>= slice_index``, at most ``max_slices`` slices on) of a stretch from ``slice_index``."""
        ...

    def process_stretch(self, first_slice: int, last_slice: int) -> SliceOutput:
        """The primitives of slices ``first_slice..last_slice``: those of ``process_slice``, concatenated.

        Called in place of ``process_slice`` for those slices (the same in-order rule); the
        front end renders readout windows on demand (``samples`` is None).
        """
        ...


@runtime_checkable
class StretchTriggerLogic(Protocol):
    """Optional part of a :class:`TriggerLogic` that decides a stretch of slices in one call."""

    def process_stretch(
        self, first_slice: int, last_slice: int, primitives: np.ndarray, busy: bool, cuts: Sequence[int] = ()
    ) -> TriggerOutput:
        """Accepted triggers of slices ``first_slice..last_slice``, as ``process_slice`` for each in turn.

        ``primitives``: every primitive the boards reported in those slices; ``busy`` holds for
        the whole stretch; ``cuts`` in ``(decided_until(first_slice - 1), decided_until(last_slice)]``.
        Timestamps lie in slices ``first_slice - 1`` to ``last_slice``. A logic without this
        method is called slice by slice (the first call gets the primitives).
        """
        ...
