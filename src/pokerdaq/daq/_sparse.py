"""The activity-driven ("sparse") physics front end: the same primitives and windows, much less work.

:class:`~pokerdaq.daq._physics.PhysicsFrontEnd` emulates and scans the whole 250 MS/s stream
of a board. At 100 kHz most of it is pedestal + noise between particles, which can never
cross a pulse-finder threshold. The beam time line (particles and Lu-176 decays) is known in
advance from the seed, and the emulator can render any sample range exactly
(:meth:`pokerdaq.sim.SampleStream.read_spans`), so this front end

1. takes the hits of the board's channels (:meth:`~pokerdaq.sim.SampleStream.hit_extents`:
   the samples where a hit adds signal), pads each one by ``max(NSB) + 2`` samples before
   and ``max(NSA) + 2`` after and merges them into *active ranges*;
2. renders only the active ranges (one kernel call per slice) and runs a fresh stream-mode
   pulse finder (configured pedestal, no pulse limit) over them concatenated, to the end;
   times, crossings and the per-channel pulse count are then made absolute;
3. reports each pulse in the slice in which the stream finder would report it (the first
   slice whose end is at or after ``crossing + NSA``), in the stream finder's order;
4. renders a readout window on demand (:meth:`read_window`; ``SliceOutput.samples`` is None).

Why the primitives are those of the full stream: outside the active ranges, and in their
padding, a sample holds no hit signal; if noise (and dark counts) never exceeds the
threshold there, the stream finder tests no candidate there, and every pulse it finds in an
active range uses only samples of that range (``[c - NSB - 1, c + NSA)``, with ``c`` a sample
carrying hit signal). :func:`noise_ceiling` checks the noise part of that assumption exactly:
the noise of the emulator comes from finite banks, so its largest value is known. tests/daq
compare both front ends slice by slice. ``daq.front_end = "physics-stream"`` keeps the full
stream selectable.
"""

from __future__ import annotations

import collections
import contextlib
import time

import numba
import numpy as np

from pokerdaq.config import Config

from ._interfaces import SliceOutput
from ._physics import warm_up_window
from ._wire import PRIMITIVE_DTYPE


def noise_ceiling(cfg: Config, channels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest sample that pedestal + electronics noise alone can produce, per channel.

    The emulator's noise is ``noise_adc * white + correlated_noise_adc * corr`` with ``white``
    and ``corr`` read from finite banks (:mod:`pokerdaq.sim._templates`), so the bound is exact:
    ``floor(pedestal + dark baseline + noise_adc * max(white) + correlated_noise_adc * max(corr) + 0.5)``.
    Dark counts (single SiPM cells, a few ADC counts each) come on top.

    Parameters
    ----------
    cfg
        The configuration in stream form (:func:`pokerdaq.trigger._chain.stream_config`).
    channels
        Channel numbers.
    seed
        The run seed (the noise banks depend on it).

    Returns
    -------
    ceiling, threshold, sigma : np.ndarray
        Per channel: the largest noise-only ADC code, the absolute stream threshold
        (configured pedestal + THR: a candidate needs a sample above it) and the noise RMS.
    """
    from pokerdaq.dsp import PulseParams
    from pokerdaq.sim._emulator import _Engine
    from pokerdaq.sim._templates import C_CNOISE, C_DARK_BASELINE, C_NOISE, C_PED

    eng = _Engine.create(cfg, seed)
    chan_f = eng.tables.chan_f[channels]
    params = PulseParams.from_config(cfg, channels)
    ped = chan_f[:, C_PED] + chan_f[:, C_DARK_BASELINE]
    ceiling = np.floor(ped + chan_f[:, C_NOISE] * float(eng.white.max()) + chan_f[:, C_CNOISE] * float(eng.corr.max()) + 0.5)
    threshold = params.ped_cfg.astype(np.int64) + params.thr   # stream mode: PED = PED_CFG
    sigma = np.hypot(chan_f[:, C_NOISE], chan_f[:, C_CNOISE])
    return ceiling.astype(np.int64), threshold.astype(np.int64), sigma


@contextlib.contextmanager
def _one_thread():
    """Run numba's parallel kernels on the calling thread only, for the duration of the block.

    The work of one slice is a few thousand samples: waking the kernel's worker threads costs
    more than that (about 3 ms a call on the loaded 2-core host, against ~0.3 ms of work), and
    a run already has one board process per core.
    """
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


class SparsePhysicsFrontEnd:
    """:class:`~pokerdaq.daq._interfaces.FrontEndLogic` that emulates only where hits put signal.

    Same primitives (every PULSE field, the same slice, the same order) and the same readout
    windows as :class:`~pokerdaq.daq._physics.PhysicsFrontEnd`, under the assumption checked
    by :func:`noise_ceiling` (module docstring).

    Raises
    ------
    ValueError
        When noise alone can reach a channel's threshold (the sparse mode would miss pulses):
        use ``daq.front_end = "physics-stream"``.
    """

    def __init__(self, cfg: Config, board: int, seed: int, *, warm_up: bool = True) -> None:
        from pokerdaq.dsp import PULSE_DTYPE, PulseParams
        from pokerdaq.sim import SampleStream
        from pokerdaq.trigger._chain import stream_config

        self.cfg = cfg
        self.board = board
        self.channels = cfg.channel_map.channels_on_board(board)
        scfg = stream_config(cfg)
        ceiling, threshold, _sigma = noise_ceiling(scfg, self.channels, seed)
        bad = np.flatnonzero(ceiling > threshold)
        if bad.size:
            c = int(self.channels[bad[0]])
            raise ValueError(f"daq.front_end = 'physics': channel {c} (board {board}): noise alone reaches ADC "
                             f"{int(ceiling[bad[0]])}, above its threshold {int(threshold[bad[0]])}; the sparse "
                             "front end needs noise below threshold (expected 'physics-stream' for this setup)")
        self._stream = SampleStream(scfg, seed=seed, channels=self.channels)
        self._params = PulseParams.from_config(scfg, self.channels)
        self._window_params = PulseParams.from_config(cfg, self.channels)
        self._nsa = self._params.nsa.astype(np.int64)
        self._row_of = np.full(len(cfg.channel_map), -1, np.int64)
        self._row_of[self.channels] = np.arange(len(self.channels))
        # padding: a crossing c carries hit signal, its pulse uses [c - NSB - 1, c + NSA)
        self._before = int(self._params.nsb.max()) + 2
        self._after = int(self._params.nsa.max()) + 2
        self._ticks = cfg.daq.slice_ticks
        self._next = 0
        self._done_to = 0           # every active range starting before this sample is processed
        self._n_pulses = np.zeros(len(self.channels), np.int64)
        self._pending = np.zeros(0, PULSE_DTYPE)
        self._pending_slice = np.zeros(0, np.int64)
        self._pending_row = np.zeros(0, np.int64)
        self.samples_emulated = 0   # per channel, in active ranges
        self.ranges_emulated = 0
        self.last_pulses = np.zeros(0, PULSE_DTYPE)
        """The PULSE_DTYPE records behind the last slice's primitives (all fields)."""
        self._stage: collections.Counter[str] = collections.Counter()
        # compile (or load from numba's cache) every kernel during configure
        with _one_thread():
            self._stream.read_spans(np.array([0, 300]), np.array([200, 500]))
            self._stream.read_at(0, cfg.digitizer.window_samples)
            self._find(np.full((len(self.channels), 256), 400, np.uint16))
        self.find_pulses(warm_up_window(len(self.channels), cfg.digitizer.window_samples), 0)
        if warm_up:
            # a throw-away twin takes two real slices and a readout, so that every code path is
            # compiled (or loaded from numba's cache) before the process reports ready: with a
            # cold cache, compiling mid-run would stall the board past the trigger's time-outs
            twin = SparsePhysicsFrontEnd(cfg, board, seed, warm_up=False)
            for k in range(2):
                twin.process_slice(k)
            twin.read_window(cfg.digitizer.pretrigger_samples, cfg.digitizer.window_samples)

    def _find(self, samples: np.ndarray) -> np.ndarray:
        """Pulses of the concatenated active ranges, sorted by row then crossing (times local)."""
        from pokerdaq.dsp import PulseStream
        finder = PulseStream(self._params, channel_ids=self.channels)
        pulses = np.concatenate([finder.process(samples), finder.finish()])
        return pulses[np.lexsort((pulses["crossing"], self._row_of[pulses["channel"]]))]

    def _active_ranges(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The merged active ranges not yet processed that start before sample ``end``."""
        horizon = end + self._ticks
        while True:
            lo = max(self._done_to - self._after, 0)
            first, last = self._stream.hit_extents(lo, horizon + self._before)
            a = np.maximum(first - self._before, 0)
            b = last + self._after
            keep = b > self._done_to
            a, b = a[keep], b[keep]
            if len(a) == 0:
                return a, b
            if a[0] < self._done_to:
                raise RuntimeError(f"board {self.board}: a hit range starts at {int(a[0])}, before the samples "
                                   f"already processed ({self._done_to})")
            reach = np.maximum.accumulate(b)
            new = np.ones(len(a), bool)
            new[1:] = a[1:] > reach[:-1]
            heads = np.flatnonzero(new)
            starts = a[heads]
            stops = reach[np.append(heads[1:] - 1, len(a) - 1)]
            chosen = starts < end
            starts, stops = starts[chosen], stops[chosen]
            # a hit beyond the query starts at or after the horizon: it cannot join a range ending before it
            if len(stops) == 0 or stops[-1] < horizon:
                return starts, stops
            horizon = int(stops[-1]) + self._ticks

    @property
    def stage_cpu(self) -> dict[str, float]:
        """CPU seconds (the calling thread) by stage of the slices since construction (benchmarks):
        ``timeline`` (generating beam blocks), ``ranges`` (active ranges, less the time line),
        ``render`` and ``finder`` (the active ranges)."""
        return dict(self._stage)

    def _process_ranges(self, starts: np.ndarray, stops: np.ndarray) -> None:
        c0 = time.thread_time()
        samples = self._stream.read_spans(starts, stops)
        lengths = stops - starts
        self.samples_emulated += int(lengths.sum())
        self.ranges_emulated += len(starts)
        c1 = time.thread_time()
        pulses = self._find(samples)
        c2 = time.thread_time()
        self._stage["render"] += c1 - c0
        self._stage["finder"] += c2 - c1
        if len(pulses) == 0:
            return
        local0 = np.zeros(len(starts), np.int64)
        np.cumsum(lengths[:-1], out=local0[1:])
        j = np.searchsorted(local0, pulses["crossing"], side="right") - 1
        shift = starts[j] - local0[j]
        pulses["coarse_time"] += shift
        pulses["crossing"] += shift
        pulses["time"] += shift * 64
        # rows come out in board order, each in time order: number them on from the stream's count
        row = self._row_of[pulses["channel"]]
        group_start = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        rank = np.arange(len(row)) - np.repeat(group_start, np.diff(np.r_[group_start, len(row)]))
        pulses["pulse_index"] = (self._n_pulses[row] + rank) & 0xFF
        np.add.at(self._n_pulses, row, 1)
        report = (pulses["crossing"] + self._nsa[row] - 1) // self._ticks
        self._pending = np.concatenate([self._pending, pulses])
        self._pending_slice = np.concatenate([self._pending_slice, report])
        self._pending_row = np.concatenate([self._pending_row, row])

    def process_slice(self, slice_index: int) -> SliceOutput:
        with _one_thread():
            return self._process_slices(slice_index, slice_index)

    def stretch_end(self, slice_index: int, max_slices: int) -> int:
        """The last slice of a fast-forward stretch that may start at ``slice_index``.

        A stretch lies in the beam-off time between two spills, one slice clear of either
        (beam-off: no beam particle, only Lu-176 decays; the beam time line is known in
        advance, :class:`pokerdaq.sim._beam.BeamTimeline`), and ends at the latest on the last
        slice of its aligned block of ``max_slices`` slices, so that boards which start a
        stretch at different slices end it together. Returns ``slice_index`` itself where no
        stretch starts. The choice only sets how slices are grouped into messages: the
        primitives are those of :meth:`process_slice`, whatever the grouping.
        """
        period_ns = self.cfg.beam.spill_period_s * 1e9
        length_ns = self.cfg.beam.spill_length_s * 1e9
        slice_ns = self._ticks * self.cfg.digitizer.sample_ns
        a = (slice_index - 1) * slice_ns        # one slice of guard before ...
        m = np.floor(a / period_ns)
        if slice_index < 1 or a < m * period_ns + length_ns:
            return slice_index
        last = int(np.floor((m + 1) * period_ns / slice_ns)) - 2   # ... and after the stretch
        last = min(last, (slice_index // max_slices + 1) * max_slices - 1)
        return max(last, slice_index)

    def process_stretch(self, first_slice: int, last_slice: int) -> SliceOutput:
        """The primitives of slices ``first_slice`` to ``last_slice`` in one call.

        Equal to the primitives of :meth:`process_slice` for those slices, concatenated in slice
        order (one rendering and pulse-finder pass over every active range of the stretch).
        """
        if last_slice < first_slice:
            raise ValueError(f"last_slice {last_slice}: expected >= first_slice {first_slice}")
        with _one_thread():
            return self._process_slices(first_slice, last_slice)

    def _process_slices(self, slice_index: int, last_slice: int) -> SliceOutput:
        if slice_index != self._next:
            raise ValueError(f"slice_index {slice_index}: expected {self._next} (slices are read in order)")
        self._next = last_slice + 1
        end = (last_slice + 1) * self._ticks
        if self._done_to < end:
            c0, g0 = time.thread_time(), self._stream.timeline_cpu_s
            starts, stops = self._active_ranges(end)
            gen = self._stream.timeline_cpu_s - g0   # blocks this board generated (the time line is shared)
            self._stage["timeline"] += gen
            self._stage["ranges"] += time.thread_time() - c0 - gen
            if len(starts):
                self._process_ranges(starts, stops)
                self._done_to = max(end, int(stops[-1]))
            else:
                self._done_to = end
        now = self._pending_slice <= last_slice
        if self._pending_slice[now].size and self._pending_slice[now].min() < slice_index:
            raise RuntimeError(f"board {self.board}: a pulse due in slice {int(self._pending_slice[now].min())} "
                               f"was found only in slice {slice_index}")
        out = self._pending[now]
        # slice after slice, each in the stream finder's order (row, then crossing)
        order = np.lexsort((out["crossing"], self._pending_row[now], self._pending_slice[now]))
        out = out[order]
        self._pending = self._pending[~now]
        self._pending_slice = self._pending_slice[~now]
        self._pending_row = self._pending_row[~now]
        prims = np.zeros(len(out), dtype=PRIMITIVE_DTYPE)
        for name in ("time", "integral_net", "channel", "peak", "quality"):
            prims[name] = out[name]
        prims["board"] = self.board
        self.last_pulses = out
        return SliceOutput(None, prims)

    def read_window(self, first_tick: int, n_samples: int) -> np.ndarray:
        """Samples ``[first_tick, first_tick + n_samples)`` of the board's channels (exact, on demand)."""
        with _one_thread():
            return self._stream.read_at(first_tick, n_samples)

    def find_pulses(self, window: np.ndarray, first_tick: int) -> np.ndarray:
        from pokerdaq.dsp import find_pulses
        with _one_thread():
            return find_pulses(window, self._window_params, channel_ids=self.channels)
