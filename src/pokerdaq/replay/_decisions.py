"""Window-mode pulse finding and trigger decisions for stored readout windows.

One function gives, for a batch of stored windows and a configuration, exactly what the
emulated front-end computes online in window mode: the pulses (``pokerdaq.dsp``) and the
trigger record of each window (``pokerdaq.trigger.trigger_windows``). Prescalers act on the
sequence of windows in file order (:class:`Prescaler`), as the firmware's counters act on the
sequence of raw triggers (docs/firmware-spec.md 2.8): a type with factor N accepts raw
triggers N, 2N, 3N ...; factor 0 disables the type.

Trigger word of a replayed window: bits 0-7 the types after prescaling, bits 8-15 the raw
types (``TriggerBits``), as in the streaming model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..dsp import PulseParams, find_pulses_batch
from ..trigger import TRIGGER_DTYPE, TriggerBits, TriggerRegisters, trigger_windows
from ..trigger._registers import P_PRESCALE

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
        return cls(cfg, PulseParams.from_config(cfg, chans), TriggerRegisters.from_config(cfg),
                   int(cfg.digitizer.pretrigger_samples) * 64, chans)

    @property
    def prescale(self) -> np.ndarray:
        return self.registers.params[P_PRESCALE:P_PRESCALE + N_TYPES].astype(np.int64)


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
