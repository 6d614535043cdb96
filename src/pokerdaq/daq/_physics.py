"""The physics behind the DAQ interfaces: emulator stream + pulse finder + trigger model.

* :class:`PhysicsFrontEnd` (one per board; ``daq.front_end = "physics-stream"``, the reference
  for the default activity-driven front end of :mod:`._sparse`, which gives the same data):
  :class:`pokerdaq.sim.SampleStream` of the board's
  channels (the stream of a channel subset equals those rows of the all-channel stream, so
  the boards agree on the beam without talking), a stream-mode
  :class:`pokerdaq.dsp.PulseStream` for the trigger primitives, and the window-mode
  :func:`pokerdaq.dsp.find_pulses` for the readout window of an accepted trigger.
* :class:`PhysicsTrigger`: :class:`pokerdaq.trigger.TriggerModel`, fed slice by slice. A
  stream pulse is reported up to one slice after the one it lies in, so the model is run one
  slice behind (``end_sample`` = start of the current slice): the triggers of decision ``k``
  lie in slice ``k - 1`` (or just before it: the reference time precedes the issue tick by the
trigger latency), which the boards' ring buffers keep.

The pulse finders use the stream-mode configuration of ``pokerdaq.trigger._chain.stream_config``
(configured pedestal) for primitives, and the configuration as given for readout windows.
"""

from __future__ import annotations

import numpy as np

from pokerdaq.config import Config

from ._interfaces import ScalerCounts, SliceOutput, TriggerOutput, TypeCounters
from ._wire import PRIMITIVE_DTYPE


def warm_up_window(n_channels: int, n_samples: int) -> np.ndarray:
    """A readout window that drives every window-mode pulse-finder kernel: two pulses per channel.

    A flat window finds no pulse, so the kernels that measure and gather pulses would be
    compiled (or loaded from numba's cache) only at the first real readout, in the middle of
    the run, stalling the board for seconds with a cold cache. Two pulses in every row fill
    the per-block scratch of :func:`pokerdaq.dsp.find_pulses`, which reaches the overflow
    path as well.
    """
    window = np.full((n_channels, n_samples), 400, np.uint16)
    for start in (n_samples // 4, (3 * n_samples) // 4):
        window[:, start : start + 3] = 4000
    return window


class PhysicsFrontEnd:
    """:class:`~pokerdaq.daq._interfaces.FrontEndLogic` of one board with the real emulator and pulse finder."""

    def __init__(self, cfg: Config, board: int, seed: int) -> None:
        from pokerdaq.dsp import PulseParams, PulseStream
        from pokerdaq.sim import SampleStream
        from pokerdaq.trigger._chain import stream_config

        self.cfg = cfg
        self.board = board
        self.channels = cfg.channel_map.channels_on_board(board)
        scfg = stream_config(cfg)
        self._stream = SampleStream(scfg, seed=seed, channels=self.channels)
        self._finder = PulseStream(PulseParams.from_config(scfg, self.channels), channel_ids=self.channels)
        self._window_params = PulseParams.from_config(cfg, self.channels)
        self._ticks = cfg.daq.slice_ticks
        self._next = 0
        # compile (or load from numba's cache) every kernel now, during configure, not in the
        # middle of the run: the trigger processor would take a board stuck in the JIT for dead
        scratch = SampleStream(scfg, seed=seed, channels=self.channels)
        finder = PulseStream(PulseParams.from_config(scfg, self.channels), channel_ids=self.channels)
        finder.process(scratch.read(min(self._ticks, 4096))[0])
        finder.finish()
        self.find_pulses(warm_up_window(len(self.channels), cfg.digitizer.window_samples), 0)

    def process_slice(self, slice_index: int) -> SliceOutput:
        if slice_index != self._next:
            raise ValueError(f"slice_index {slice_index}: expected {self._next} (slices are read in order)")
        self._next += 1
        samples, _truth = self._stream.read(self._ticks)
        pulses = self._finder.process(samples)
        prims = np.zeros(len(pulses), dtype=PRIMITIVE_DTYPE)
        for name in ("time", "integral_net", "channel", "peak", "quality"):
            prims[name] = pulses[name]
        prims["board"] = self.board
        return SliceOutput(np.ascontiguousarray(samples, dtype=np.uint16), prims)

    def find_pulses(self, window: np.ndarray, first_tick: int) -> np.ndarray:
        from pokerdaq.dsp import find_pulses

        return find_pulses(window, self._window_params, channel_ids=self.channels)


class PhysicsTrigger:
    """:class:`~pokerdaq.daq._interfaces.TriggerLogic` with the integer trigger model of pokerdaq.trigger."""

    def __init__(self, cfg: Config, seed: int) -> None:
        from pokerdaq.dsp._records import PULSE_DTYPE
        from pokerdaq.trigger import TriggerBits, TriggerModel
        from pokerdaq.trigger._registers import P_LAT

        self.cfg = cfg
        self._model = TriggerModel(cfg, seed=seed)
        self.trigger_names = tuple(TriggerBits.NAMES)
        self._beam_type = self.trigger_names.index("beam")
        # a candidate with reference tick r is decided at its issue tick r + LATENCY
        self._latency = int(self._model.registers[P_LAT])
        self._ticks = cfg.daq.slice_ticks
        self._pulse_dtype = PULSE_DTYPE
        self._busy_before = 0
        self._dead_before = 0
        # compile the model's kernels now (configure), not on the first slice: an empty slice,
        # then a beam particle's primitives (every channel pulsing at one time) through a decision
        scratch = TriggerModel(cfg, seed=seed)
        scratch.process(np.zeros(0, PULSE_DTYPE), self._ticks)
        particle = np.zeros(len(cfg.channel_map), PULSE_DTYPE)
        particle["channel"] = np.arange(len(particle))
        particle["time"] = (self._ticks + 100) * 64
        particle["integral_net"] = 1000
        particle["peak"] = 500
        scratch.process(particle, 3 * self._ticks)
        scratch.finish()

    def decided_until(self, slice_index: int) -> int:
        # the model runs to issue tick k * slice_ticks: reference ticks below that - LATENCY are decided
        return max(max(slice_index, 0) * self._ticks - self._latency, 0)

    def decision_state(self) -> tuple[int, np.ndarray, int]:
        """Dead time (tick), prescaler counts per type and triggers accepted so far: what the
        next decision starts from (recorded with the run's trigger inputs)."""
        return self._model.dead_until, self._model.prescale_counts, int(self._model.counters.triggers)

    def model_state(self) -> np.ndarray:
        """The trigger model's whole state (``pokerdaq.trigger.model_state``): sent with each
        decision step's trigger inputs, so a later file of the run is replayed alone."""
        from pokerdaq.trigger import model_state

        return model_state(self._model)

    def scaler_counts(self) -> ScalerCounts:
        c = self._model.counters
        # every beam candidate has the BEAM condition (spec 2.5/2.6): the raw BEAM scaler counts them
        return ScalerCounts(int(c.raw[self._beam_type]), c.attempts, c.busy_ticks)

    def process_slice(self, slice_index: int, primitives: np.ndarray, busy: bool, cuts=()) -> TriggerOutput:
        return self.process_stretch(slice_index, slice_index, primitives, busy, cuts)

    def process_stretch(
        self, first_slice: int, last_slice: int, primitives: np.ndarray, busy: bool, cuts=()
    ) -> TriggerOutput:
        # the model's decisions do not depend on how the stream is cut into calls
        # (docs/firmware-spec.md 2.13): slices first..last in one call equal one call per slice
        records = np.zeros(len(primitives), dtype=self._pulse_dtype)
        for name in ("time", "integral_net", "channel", "peak", "quality"):
            records[name] = primitives[name]
        # one slice behind: every pulse of slice k - 1 has been reported by the end of slice k
        end = max(last_slice, 0) * self._ticks
        # the model stops at each cut (issue tick cut + LATENCY: the candidates with reference
        # tick below the cut) to read its scalers there; the decisions do not depend on how
        # the stream is cut into calls (docs/firmware-spec.md 2.13)
        parts, cut_counts = [], []
        for cut in cuts:
            parts.append(self._model.process(records, int(cut) + self._latency, busy=bool(busy)))
            records = records[:0]
            cut_counts.append(self.scaler_counts())
        parts.append(self._model.process(records, end, busy=bool(busy)))
        trig = np.concatenate(parts) if len(parts) > 1 else parts[0]
        c = self._model.counters
        busy_ticks, self._busy_before = c.busy_ticks - self._busy_before, c.busy_ticks
        dead_ticks, self._dead_before = c.dead_ticks - self._dead_before, c.dead_ticks
        # the event timestamp is the trigger reference time (the particle), not the issue tick
        # (reference + latency): the readout window is cut around it
        return TriggerOutput(
            (trig["ref_time"] >> 6).astype(np.uint64),
            trig["trigger_word"].astype(np.uint32),
            busy_ticks=busy_ticks,
            dead_ticks=dead_ticks,
            cut_counts=cut_counts,
        )

    def counters(self) -> dict[str, TypeCounters]:
        c = self._model.counters
        # candidates = passed the prescaler = accepted + lost to dead time + lost to busy
        return {
            name: TypeCounters(int(c.prescaled[i]), int(c.accepted[i]), int(c.lost_dead[i]), int(c.lost_busy[i]))
            for i, name in enumerate(self.trigger_names)
        }
