"""A SYNTHETIC, deterministic source for developing and testing the DAQ transport.

This is not physics. It exists so that the processes, sockets, event builder and writer
can be exercised (and their output checked event by event) without the emulator, the
pulse finder and the trigger model:

* samples: a pedestal plus a fixed seeded noise table (read cyclically, shifted per
  channel), plus a fixed pulse shape for every synthetic "particle";
* particles: per slice, a Poisson number (beam.rate_hz) at uniform random ticks (kept only
  inside the spills' on-time, beam.spill_length_s every beam.spill_period_s), each hitting
  ``daq.synthetic.hit_boards`` distinct boards on one random input each. Every board draws
  the same particles from ``SeedSequence([seed, slice])`` and keeps its own hits, so the
  boards agree without talking to each other;
* primitives: rising edges of ``samples > pedestal + threshold_adc``;
* trigger: bit 0 "multiplicity" = primitives from at least ``multiplicity`` distinct boards
  within ``coincidence_ticks``; bit 1 "random" = a trigger every ``random_period_ticks``;
  a non-paralysable dead time of ``trigger.dead_time_ns`` after each accepted trigger.

:func:`synthetic_samples` recomputes any board's samples for any tick range, so tests can
compare every written window with what the source produced.
"""

from __future__ import annotations

import numpy as np

from pokerdaq.config import Config
from pokerdaq.dsp._records import PULSE_DTYPE

from ._interfaces import ScalerCounts, SliceOutput, TriggerOutput, TypeCounters
from ._wire import PRIMITIVE_DTYPE

PEDESTAL = 400
NOISE_LENGTH = 1 << 16
PULSE_SHAPE = np.array([0.3, 1.0, 0.8, 0.62, 0.48, 0.37, 0.28, 0.21, 0.16, 0.12, 0.09, 0.07, 0.05, 0.035, 0.02, 0.01])
"""Synthetic pulse shape, peak normalised to 1, one value per 4 ns sample."""

TRIGGER_NAMES = ("multiplicity", "random")


def _noise_table(seed: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    return rng.integers(-3, 4, size=NOISE_LENGTH).astype(np.int32)


def _board_layout(cfg: Config) -> list[np.ndarray]:
    cmap = cfg.channel_map
    return [cmap.channels_on_board(b) for b in range(cmap.n_boards)]


PARTICLE_DTYPE = np.dtype([("time", np.int64), ("board", np.int64), ("channel", np.int64), ("amplitude", np.int64)])


def slice_particles(cfg: Config, seed: int, slice_index: int, layout: list[np.ndarray] | None = None) -> np.ndarray:
    """Synthetic particles of one slice: one (time, board, channel, amplitude) row per hit, time ordered."""
    if slice_index < 0:
        return np.zeros(0, PARTICLE_DTYPE)
    syn = cfg.daq.synthetic
    layout = _board_layout(cfg) if layout is None else layout
    n_boards = len(layout)
    ticks = cfg.daq.slice_ticks
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, slice_index]))
    n = int(rng.poisson(cfg.beam.rate_hz * ticks / cfg.digitizer.sampling_rate_hz))
    times = np.sort(rng.integers(0, ticks, size=n)) + slice_index * ticks
    hits = min(syn.hit_boards, n_boards)
    boards = np.argsort(rng.random((n, n_boards)), axis=1)[:, :hits]  # distinct boards per particle
    n_inputs = np.array([len(c) for c in layout])
    inputs = (rng.random((n, hits)) * n_inputs[boards]).astype(np.int64)
    amps = (syn.amplitude_adc * (0.5 + rng.random((n, hits)))).astype(np.int64)
    out = np.zeros(n * hits, PARTICLE_DTYPE)
    out["time"] = np.repeat(times, hits)
    out["board"] = boards.ravel()
    out["channel"] = [layout[b][i] for b, i in zip(boards.ravel().tolist(), inputs.ravel().tolist())]
    out["amplitude"] = amps.ravel()
    # beam only inside the spills (drawn as above, then cut: the same particles in every spill)
    period_ns, length_ns = cfg.beam.spill_period_s * 1e9, cfg.beam.spill_length_s * 1e9
    on = np.fmod(times * cfg.digitizer.sample_ns, period_ns) < length_ns
    return out[np.repeat(on, hits)]


def synthetic_samples(
    cfg: Config,
    seed: int,
    board: int,
    first_tick: int,
    n_ticks: int,
    _noise: np.ndarray | None = None,
    _layout: list[np.ndarray] | None = None,
    _particles=None,
) -> np.ndarray:
    """The synthetic samples of one board, (n_channels, n_ticks) uint16, ticks from ``first_tick``.

    Ticks before 0 read as 0 (no data before the run start).
    """
    layout = _board_layout(cfg) if _layout is None else _layout
    particles = (lambda s: slice_particles(cfg, seed, s, layout)) if _particles is None else _particles
    channels = layout[board]
    noise = _noise_table(seed) if _noise is None else _noise
    noise2 = np.concatenate([noise, noise])
    out = np.empty((len(channels), n_ticks), dtype=np.int32)
    for row, ch in enumerate(channels.tolist()):
        done = 0
        while done < n_ticks:  # the noise table is read cyclically, shifted per channel
            start = (first_tick + done + ch * 7919) % NOISE_LENGTH
            k = min(n_ticks - done, NOISE_LENGTH)
            out[row, done : done + k] = noise2[start : start + k]
            done += k
    out += PEDESTAL
    st = cfg.daq.slice_ticks
    first_slice = (first_tick - len(PULSE_SHAPE)) // st
    last_slice = (first_tick + n_ticks - 1) // st
    row_of = {int(c): i for i, c in enumerate(channels)}
    for s in range(max(first_slice, 0), last_slice + 1):
        parts = particles(s)
        parts = parts[parts["board"] == board]
        for p in parts:
            rel = int(p["time"]) - first_tick + np.arange(len(PULSE_SHAPE))
            ok = (rel >= 0) & (rel < n_ticks)
            out[row_of[int(p["channel"])], rel[ok]] += (p["amplitude"] * PULSE_SHAPE[ok]).astype(np.int32)
    if first_tick < 0:
        out[:, : min(-first_tick, n_ticks)] = 0
    return np.clip(out, 0, cfg.digitizer.adc_max).astype(np.uint16)  # the digitizer rails


class SyntheticFrontEnd:
    """Synthetic :class:`~pokerdaq.daq._interfaces.FrontEndLogic` of one board (development only)."""

    def __init__(self, cfg: Config, board: int, seed: int) -> None:
        self.cfg = cfg
        self.board = board
        self.seed = seed
        self.channels = cfg.channel_map.channels_on_board(board)
        self._noise = _noise_table(seed)
        self._layout = _board_layout(cfg)
        self._particles: dict[int, np.ndarray] = {}
        self._threshold = PEDESTAL + cfg.daq.synthetic.threshold_adc
        self._last_above = np.zeros(len(self.channels), dtype=bool)

    def process_slice(self, slice_index: int) -> SliceOutput:
        st = self.cfg.daq.slice_ticks
        for old in [k for k in self._particles if k < slice_index - 1]:
            del self._particles[old]
        samples = synthetic_samples(
            self.cfg, self.seed, self.board, slice_index * st, st, self._noise, self._layout, self._slice_particles
        )
        above = samples > self._threshold
        prev = np.concatenate([self._last_above[:, None], above[:, :-1]], axis=1)
        rows, cols = np.nonzero(above & ~prev)
        self._last_above = above[:, -1].copy()
        prims = np.zeros(len(rows), dtype=PRIMITIVE_DTYPE)
        prims["time"] = (cols + slice_index * st) * 64
        prims["channel"] = self.channels[rows]
        prims["board"] = self.board
        if len(rows):
            idx = np.minimum(cols[:, None] + np.arange(4)[None, :], st - 1)
            peak = samples[rows[:, None], idx].max(axis=1).astype(np.int64)
            prims["peak"] = peak
            prims["integral_net"] = peak - PEDESTAL
        return SliceOutput(samples, prims)

    def _slice_particles(self, s: int) -> np.ndarray:
        if s not in self._particles:
            self._particles[s] = slice_particles(self.cfg, self.seed, s, self._layout)
        return self._particles[s]

    def find_pulses(self, window: np.ndarray, first_tick: int) -> np.ndarray:
        return simple_pulses(window, self.channels, self._threshold)


def simple_pulses(
    window: np.ndarray, channels: np.ndarray, threshold: int, nsb: int = 2, nsa: int = 12, nped: int = 8
) -> np.ndarray:
    """A minimal threshold pulse finder (synthetic source only; the real one is pokerdaq.dsp)."""
    above = window > threshold
    rising = above & ~np.concatenate([np.zeros((len(window), 1), bool), above[:, :-1]], axis=1)
    rows, cols = np.nonzero(rising)
    out = np.zeros(len(rows), dtype=PULSE_DTYPE)
    n = window.shape[1]
    csum = np.concatenate([np.zeros((len(window), 1), np.int64), np.cumsum(window, axis=1, dtype=np.int64)], axis=1)
    ped = csum[:, min(nped, n)]
    for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        lo, hi = max(c - nsb, 0), min(c + nsa, n)
        integral = int(csum[r, hi] - csum[r, lo])
        out[k] = (
            channels[r],
            (rows[:k] == r).sum(),
            c,
            0,
            c * 64,
            c,
            int(window[r, c:hi].max()),
            integral,
            integral - int(ped[r]) * (hi - lo) // nped,
            int(ped[r]),
            int(above[r, c:].sum()),
            0,
        )
    return out


class SyntheticTrigger:
    """Synthetic :class:`~pokerdaq.daq._interfaces.TriggerLogic`: multiplicity + random (development only)."""

    trigger_names: tuple[str, ...] = TRIGGER_NAMES

    def __init__(self, cfg: Config, seed: int) -> None:
        self.cfg = cfg
        syn = cfg.daq.synthetic
        self._mult = syn.multiplicity
        self._window = syn.coincidence_ticks
        self._period = syn.random_period_ticks
        self._dead = int(round(cfg.trigger.dead_time_ns * cfg.digitizer.sampling_rate_hz / 1e9))
        self._last_accept = -(1 << 62)
        self._counters = {name: TypeCounters() for name in TRIGGER_NAMES}
        self._coincidences = 0  # multiplicity coincidences (the synthetic "beam counter")
        self._attempts = 0  # candidates (no prescalers here: every one is an attempt)
        self._busy_ticks = 0

    def candidates(self, slice_index: int, primitives: np.ndarray) -> list[tuple[int, int]]:
        """(timestamp, trigger word) of every condition that fired in this slice, time ordered."""
        st = self.cfg.daq.slice_ticks
        cands: list[tuple[int, int]] = []
        prims = np.sort(primitives, order="time")
        times, boards = prims["time"].astype(np.int64) // 64, prims["board"]
        i = 0
        while i < len(times):
            t0 = times[i]
            j = np.searchsorted(times, t0 + self._window)
            if len(np.unique(boards[i:j])) >= self._mult:
                cands.append((int(t0), 1))
                i = j
            else:
                i += 1
        if self._period:
            first = -(-slice_index * st // self._period) * self._period
            for t in range(first + self._period // 2, (slice_index + 1) * st, self._period):
                if t >= slice_index * st:
                    cands.append((t, 2))
        cands.sort()
        merged: list[tuple[int, int]] = []
        for t, w in cands:  # conditions within one coincidence window form one trigger
            if merged and t - merged[-1][0] < self._window:
                merged[-1] = (merged[-1][0], merged[-1][1] | w)
            else:
                merged.append((t, w))
        return merged

    def decided_until(self, slice_index: int) -> int:
        # the candidates of slice k are decided with slice k
        return (max(slice_index, -1) + 1) * self.cfg.daq.slice_ticks

    def scaler_counts(self) -> ScalerCounts:
        return ScalerCounts(self._coincidences, self._attempts, self._busy_ticks)

    def process_slice(self, slice_index: int, primitives: np.ndarray, busy: bool, cuts=()) -> TriggerOutput:
        st = self.cfg.daq.slice_ticks
        ts, words = [], []
        dead_ticks = 0
        cut_counts = []
        pending = [int(c) for c in cuts]
        t_slice = slice_index * st
        for t, w in self.candidates(slice_index, primitives) + [(None, 0)]:
            while pending and (t is None or t >= pending[0]):  # scalers up to each cut
                self._busy_ticks += (pending[0] - t_slice) if busy else 0
                t_slice = pending.pop(0)
                cut_counts.append(self.scaler_counts())
            if t is None:
                break
            bits = [n for b, n in enumerate(TRIGGER_NAMES) if w >> b & 1]
            self._coincidences += w & 1
            self._attempts += 1
            for n in bits:
                self._counters[n].candidates += 1
            if busy:
                for n in bits:
                    self._counters[n].lost_busy += 1
            elif t < self._last_accept + self._dead:
                for n in bits:
                    self._counters[n].lost_dead_time += 1
            else:
                self._last_accept = t
                ts.append(t)
                words.append(w)
                dead_ticks += self._dead
                for n in bits:
                    self._counters[n].accepted += 1
        self._busy_ticks += ((slice_index + 1) * st - t_slice) if busy else 0
        return TriggerOutput(
            np.array(ts, dtype=np.uint64),
            np.array(words, dtype=np.uint32),
            busy_ticks=st if busy else 0,
            dead_ticks=dead_ticks,
            cut_counts=cut_counts,
        )

    def counters(self) -> dict[str, TypeCounters]:
        return {
            k: TypeCounters(v.candidates, v.accepted, v.lost_dead_time, v.lost_busy) for k, v in self._counters.items()
        }
