"""The emulator -> pulse finder -> trigger chain, in stream and window mode (CLI, benchmarks).

Stream mode feeds :class:`pokerdaq.sim.SampleStream` chunks through
:class:`pokerdaq.dsp.PulseStream` into two trigger models on the same pulses: the configured
one (prescalers, dead time, random triggers: the rates and live time) and an unprescaled,
dead-time-free copy whose beam candidates are matched to the beam particles one to one (the
efficiencies).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..config import SUBSYSTEMS, Config
from ._dtypes import TRIGGER_DTYPE, ConditionBits, TriggerBits
from ._model import TriggerCounters, TriggerModel


def stream_config(cfg: Config) -> Config:
    """``cfg`` with every pulse finder in stream-mode form: configured pedestal, no pulse limit.

    Stream mode (docs/firmware-spec.md 1.1) has no window to measure a pedestal in; the
    configured pedestal is the electronics baseline rounded to an ADC code.
    """
    return cfg.replace(
        detector={
            s: {
                "pulse_finder": {
                    "pedestal_mode": "configured",
                    "max_pulses": 0,
                    "pedestal_adc": int(round(cfg.subsystem(s).electronics.pedestal_adc)),
                }
            }
            for s in SUBSYSTEMS
        }
    )


def unprescaled_config(cfg: Config) -> Config:
    """``cfg`` with every prescaler at 1, no dead time and no random trigger (raw decisions)."""
    return cfg.replace(
        trigger={"dead_time_ns": 0.0, "random_rate_hz": 0.0, "prescale": {name: 1 for name in TriggerBits.NAMES}}
    )


@dataclass
class ChainResult:
    """Output of :func:`run_stream_chain`."""

    triggers: np.ndarray  # TRIGGER_DTYPE, the configured model's accepted triggers
    raw: np.ndarray  # TRIGGER_DTYPE, every candidate of the unprescaled model
    truth: np.ndarray  # TRUTH_DTYPE of the beam particles
    counters: TriggerCounters
    seconds: dict = field(default_factory=dict)  # wall time per stage
    samples: int = 0


def run_stream_chain(cfg: Config, n_events: int, seed: int, *, chunk: int = 65536) -> ChainResult:
    """Stream the emulator until ``n_events`` beam particles have arrived, then drain.

    Parameters
    ----------
    cfg : Config
        Any configuration; its pulse finders are put in stream form (:func:`stream_config`).
    n_events : int
        Beam particles to stream (>= 1).
    seed : int
        Seed of the emulator and of the random trigger.
    chunk : int
        Samples per read.
    """
    from ..dsp import PulseParams, PulseStream
    from ..sim import SampleStream

    if n_events < 1:
        raise ValueError(f"n_events = {n_events}: expected >= 1")
    if chunk < 1:
        raise ValueError(f"chunk = {chunk}: expected >= 1")
    cfg = stream_config(cfg)
    params = PulseParams.from_config(cfg)
    lag = int((params.nsa + params.nsb).max())  # pulses with time < (seen - lag) * 64 are final
    stream, finder = SampleStream(cfg, seed=seed), PulseStream(params)
    model, raw_model = TriggerModel(cfg, seed=seed), TriggerModel(unprescaled_config(cfg), seed=seed)
    out, raw, truth = [], [], []
    n_truth = 0
    secs = {"emulator": 0.0, "pulse_finder": 0.0, "trigger": 0.0}
    while n_truth < n_events:
        t0 = time.perf_counter()
        samples, tr = stream.read(chunk)
        t1 = time.perf_counter()
        pulses = finder.process(samples)
        t2 = time.perf_counter()
        end = max(finder.samples_seen - lag, model.tick)
        out.append(model.process(pulses, end))
        t3 = time.perf_counter()
        raw.append(raw_model.process(pulses, end))
        secs["emulator"] += t1 - t0
        secs["pulse_finder"] += t2 - t1
        secs["trigger"] += t3 - t2
        truth.append(tr)
        n_truth += len(tr)
    pulses = finder.finish()
    for m, dest in ((model, out), (raw_model, raw)):
        dest.append(m.process(pulses, finder.samples_seen))
        dest.append(m.finish())
    truth_all = np.concatenate(truth)
    return ChainResult(
        np.concatenate(out) if out else np.zeros(0, TRIGGER_DTYPE),
        np.concatenate(raw),
        truth_all,
        model.counters,
        secs,
        stream.position,
    )


def match_to_particles(raw: np.ndarray, truth: np.ndarray, max_delay_ticks: int = 8) -> np.ndarray:
    """For each beam particle, the index of its beam candidate in ``raw`` (or -1).

    A candidate belongs to the particle whose arrival tick ``t_sample`` is the latest at or
    before ``T_REF >> 6``, if within ``max_delay_ticks``.
    """
    beam = np.flatnonzero((raw["conditions"] & ConditionBits.RANDOM) == 0)
    ticks = raw["ref_time"][beam] >> 6
    owner = np.searchsorted(truth["t_sample"], ticks, side="right") - 1
    ok = owner >= 0
    ok[ok] &= (ticks[ok] - truth["t_sample"][owner[ok]]) <= max_delay_ticks
    match = np.full(len(truth), -1, np.int64)
    match[owner[ok][::-1]] = beam[ok][::-1]  # the first candidate of a particle wins
    return match


def stream_pulses(
    cfg: Config, channels: np.ndarray, seed: int, n_samples: int, chunk: int = 65536
) -> tuple[np.ndarray, int]:
    """Emulate and pulse-find ``n_samples`` of a channel subset (e.g. some boards) in stream mode.

    One worker of a multi-process front end: the subset's samples equal the corresponding rows
    of the all-channel stream (pokerdaq.sim.SampleStream), so the pulses of several workers
    together equal those of one all-channel stream.

    Returns
    -------
    pulses : numpy.ndarray of PULSE_DTYPE
        All pulses of the subset, in the order the stream emitted them, ``finish()`` included.
    n_particles : int
        Beam particles that arrived in the span.
    """
    from ..dsp import PulseParams, PulseStream
    from ..sim import SampleStream

    cfg = stream_config(cfg)
    channels = np.asarray(channels, dtype=np.int64)
    stream = SampleStream(cfg, seed=seed, channels=channels)
    finder = PulseStream(PulseParams.from_config(cfg, channels), channel_ids=channels)
    out, n_particles, done = [], 0, 0
    while done < n_samples:
        n = min(chunk, n_samples - done)
        samples, truth = stream.read(n)
        out.append(finder.process(samples))
        n_particles += len(truth)
        done += n
    out.append(finder.finish())
    return np.concatenate(out), n_particles
