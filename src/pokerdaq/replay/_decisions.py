"""Window-mode pulse finding and trigger decisions for stored readout windows.

One function gives, for a batch of stored windows and a configuration, exactly what the
emulated front-end computes online in window mode: the pulses (``pokerdaq.dsp``) and the
trigger record of each window (``pokerdaq.trigger.trigger_windows``). Prescalers act on the
sequence of windows in file order (:class:`Prescaler`), as the firmware's counters act on the
sequence of raw triggers (docs/firmware-spec.md 2.8): a type with factor N accepts raw
triggers N, 2N, 3N ...; factor 0 disables the type.

Trigger word of a replayed window: bits 0-7 the types after prescaling, bits 8-15 the raw
types (``TriggerBits``), as in the streaming model.

DAQ runs (``pokerdaq run``) were decided online in stream mode, on primitives outside the
stored windows, with dead time, busy and prescalers: :func:`stream_decisions` feeds the
primitives the trigger processor recorded (``/trigger_inputs`` of the run's files, in order)
through :class:`pokerdaq.trigger.TriggerModel` step by step, as the trigger processor did, and
checks the dead time and prescaler state recorded with each step on the way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..dsp import PulseParams, find_pulses_batch
from ..dsp._records import PULSE_DTYPE
from ..trigger import (
    TRIGGER_DTYPE,
    TriggerBits,
    TriggerCounters,
    TriggerModel,
    TriggerRegisters,
    trigger_windows,
)
from ..trigger._registers import P_BEAM_W, P_DEAD, P_PRESCALE

N_TYPES = len(TriggerBits.NAMES)
RAW_SHIFT = TriggerBits.RAW_SHIFT
TYPE_MASK = (1 << N_TYPES) - 1


@dataclass(frozen=True)
class WindowSetup:
    """Everything derived from one configuration that window-mode replay needs."""

    config: Config
    pulse_params: PulseParams
    registers: TriggerRegisters
    default_ref: int
    channels: np.ndarray | None = None
    """Channel numbers of the samples' channel axis (a recorded subset); None: all channels."""

    @classmethod
    def from_config(cls, cfg: Config, channels: np.ndarray | None = None) -> WindowSetup:
        """The setup of ``cfg`` for windows holding ``channels`` (default: every channel)."""
        chans = None if channels is None else np.asarray(channels, dtype=np.int64)
        return cls(
            cfg,
            PulseParams.from_config(cfg, chans),
            TriggerRegisters.from_config(cfg),
            int(cfg.digitizer.pretrigger_samples) * 64,
            chans,
        )

    @property
    def prescale(self) -> np.ndarray:
        return self.registers.params[P_PRESCALE : P_PRESCALE + N_TYPES].astype(np.int64)


class Prescaler:
    """The per-type prescale counters, carried from batch to batch of a file."""

    def __init__(self, factors: np.ndarray) -> None:
        self.factors = np.asarray(factors, dtype=np.int64)
        self.counts = np.zeros(N_TYPES, dtype=np.int64)

    def apply(self, raw_types: np.ndarray) -> np.ndarray:
        """Types kept after prescaling for each window (uint32 masks, bits 0..N_TYPES-1)."""
        raw_types = np.asarray(raw_types, dtype=np.uint32)
        kept = np.zeros(len(raw_types), dtype=np.uint32)
        for k in range(N_TYPES):
            fired = (raw_types >> np.uint32(k)) & np.uint32(1)
            factor = int(self.factors[k])
            if factor <= 0:
                continue
            # running count of raw triggers of this type, continuing from earlier batches
            running = self.counts[k] + np.cumsum(fired, dtype=np.int64)
            keep = (fired == 1) & (running % factor == 0)
            kept |= keep.astype(np.uint32) << np.uint32(k)
            self.counts[k] = int(running[-1]) % factor if len(running) else self.counts[k]
        return kept


def replay_windows(samples: np.ndarray, setup: WindowSetup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pulses and trigger records of a batch of readout windows.

    Parameters
    ----------
    samples
        uint16 (events, channels, window_samples) stored samples; the channel axis holds
        ``setup.channels`` (all channels of the map when None). Pulses carry those channel
        numbers, so the trigger sums see absent channels as silent.
    setup
        :class:`WindowSetup` of the configuration to apply.

    Returns
    -------
    pulses : numpy.ndarray
        PULSE_DTYPE records ordered by event, channel, pulse index.
    offsets : numpy.ndarray
        int64 (events + 1,): pulses of event e are ``pulses[offsets[e]:offsets[e+1]]``.
    triggers : numpy.ndarray
        TRIGGER_DTYPE (events,): conditions, sums and the raw types (bits 8-15 of
        ``trigger_word``; the low byte still holds the raw types, before prescaling).
    """
    pulses, offsets = find_pulses_batch(samples, setup.pulse_params, setup.channels)
    return pulses, offsets, trigger_pulses(pulses, offsets, setup)


def trigger_pulses(pulses: np.ndarray, offsets: np.ndarray, setup: WindowSetup) -> np.ndarray:
    """Trigger records (TRIGGER_DTYPE) of windows whose pulses are known: those of window e
    are ``pulses[offsets[e]:offsets[e+1]]`` (as :func:`replay_windows` returns them)."""
    n_events = len(offsets) - 1
    if n_events == 0:
        return np.zeros(0, TRIGGER_DTYPE)
    window = np.repeat(np.arange(n_events, dtype=np.int64), np.diff(offsets))
    return trigger_windows(pulses, window, n_events, setup.registers, default_ref=setup.default_ref)


def decision_words(triggers: np.ndarray, prescaler: Prescaler) -> np.ndarray:
    """Trigger words of replayed windows: prescaled types in bits 0-7, raw types in bits 8-15."""
    raw = (triggers["trigger_word"].astype(np.uint32) >> np.uint32(RAW_SHIFT)) & np.uint32(TYPE_MASK)
    return (raw << np.uint32(RAW_SHIFT)) | prescaler.apply(raw)


@dataclass
class StreamDecisions:
    """The stream-mode trigger over a run's recorded primitives.

    ``ref_tick`` / ``words``: every accepted trigger in order (its event number is its index),
    the reference tick (the event timestamp) and the word (bits 0-7 accepted types, 8-15 raw);
    ``counters``: the model's counters over the whole run; ``state_mismatches``: steps whose
    recorded dead time / prescaler counts / accepted count differ from the model's before the
    step (``first_state_mismatch`` details the first).
    """

    ref_tick: np.ndarray
    words: np.ndarray
    counters: TriggerCounters
    steps: int
    primitives: int
    state_mismatches: int = 0
    first_state_mismatch: dict | None = None
    first_event: int = 0
    """Event number of ``words[0]``: 0 from the start of the run, else the accepted count of the restored state."""


def raw_registers(regs: TriggerRegisters) -> TriggerRegisters:
    """``regs`` with every prescaler at 1 and no dead time: every candidate that fires a type is output."""
    params = regs.params.copy()
    params[P_PRESCALE : P_PRESCALE + N_TYPES] = 1
    params[P_DEAD] = 0
    return dataclasses.replace(regs, params=params)


def stream_decisions(
    registers: TriggerRegisters,
    steps: np.ndarray,
    primitives: np.ndarray,
    slice_ticks: int,
    *,
    check_state: bool = True,
    busy: bool = True,
    model: TriggerModel | None = None,
) -> StreamDecisions:
    """Decide again, step by step, what the trigger processor decided online.

    Parameters
    ----------
    registers
        Trigger registers (with the run's random-trigger seed).
    steps, primitives
        ``TRIGGER_STEP_DTYPE`` rows of the whole run in order, and their primitives
        (``TRIGGER_PRIMITIVE_DTYPE``, ``steps["n_primitives"]`` rows each, concatenated).
    slice_ticks
        ``daq.slice_ticks`` of the run.
    check_state
        Compare the recorded dead time, prescaler counts and accepted count before each step
        with the model's (meaningful with the run's own registers only).
    busy
        Apply the recorded busy flags (False: every step live, for raw decisions).
    model
        A model of ``registers`` restored to the state before ``steps[0]`` (a later file of a
        run alone, :mod:`pokerdaq.replay._state`); default a fresh one (the run from its start).

    Returns
    -------
    StreamDecisions
    """
    model = TriggerModel(registers) if model is None else model
    first_event = int(model.counters.triggers)
    offsets = np.concatenate([[0], np.cumsum(steps["n_primitives"].astype(np.int64))])
    if offsets[-1] != len(primitives):
        raise ValueError(f"trigger inputs: the steps hold {int(offsets[-1])} primitives, {len(primitives)} stored")
    refs, words = [], []
    out = StreamDecisions(
        np.zeros(0, np.uint64),
        np.zeros(0, np.uint32),
        model.counters,
        len(steps),
        len(primitives),
        first_event=first_event,
    )
    for i in range(len(steps)):
        st = steps[i]
        if check_state:
            dead, pre, acc = model.dead_until, model.prescale_counts, model.counters.triggers
            rec_pre = st["prescale_counts"][:N_TYPES]
            if dead != int(st["dead_until"]) or not np.array_equal(pre, rec_pre) or acc != int(st["events_before"]):
                out.state_mismatches += 1
                if out.first_state_mismatch is None:
                    out.first_state_mismatch = {
                        "step": i,
                        "first_slice": int(st["first_slice"]),
                        "recorded": {
                            "dead_until": int(st["dead_until"]),
                            "prescale_counts": rec_pre.tolist(),
                            "accepted": int(st["events_before"]),
                        },
                        "replayed": {"dead_until": dead, "prescale_counts": pre.tolist(), "accepted": acc},
                    }
        p = primitives[offsets[i] : offsets[i + 1]]
        records = np.zeros(len(p), dtype=PULSE_DTYPE)
        for name in ("time", "integral_net", "channel", "peak", "quality"):
            records[name] = p[name]
        # as the trigger processor's logic (pokerdaq.daq PhysicsTrigger): one slice behind
        end = max(int(st["last_slice"]), 0) * int(slice_ticks)
        trig = model.process(records, end, busy=bool(st["busy"]) and busy)
        refs.append((trig["ref_time"] >> 6).astype(np.uint64))
        words.append(trig["trigger_word"].astype(np.uint32))
    if refs:
        out.ref_tick, out.words = np.concatenate(refs), np.concatenate(words)
    out.counters = model.counters
    return out


def raw_types_at(decisions: StreamDecisions, ticks: np.ndarray, tolerance: int) -> np.ndarray:
    """Raw types (bits 0-7) of the raw decisions within ``tolerance`` ticks of each of ``ticks``."""
    ref = decisions.ref_tick.astype(np.int64)
    raw = (decisions.words >> np.uint32(RAW_SHIFT)) & np.uint32(TYPE_MASK)
    t = np.asarray(ticks, dtype=np.int64)
    lo = np.searchsorted(ref, t - tolerance, side="left")
    hi = np.searchsorted(ref, t + tolerance, side="right")
    out = np.zeros(len(t), np.uint32)
    for i in np.flatnonzero(hi > lo):
        out[i] = np.bitwise_or.reduce(raw[lo[i] : hi[i]])
    return out


def match_tolerance(registers: TriggerRegisters) -> int:
    """Ticks by which a new configuration may move a candidate's reference time: the beam coincidence window."""
    return max(1, int(registers.params[P_BEAM_W]) >> 6)
