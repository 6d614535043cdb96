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
from collections.abc import Callable

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
    ceiling = np.floor(
        ped + chan_f[:, C_NOISE] * float(eng.white.max()) + chan_f[:, C_CNOISE] * float(eng.corr.max()) + 0.5
    )
    threshold = params.ped_cfg.astype(np.int64) + params.thr  # stream mode: PED = PED_CFG
    sigma = np.hypot(chan_f[:, C_NOISE], chan_f[:, C_CNOISE])
    return ceiling.astype(np.int64), threshold.astype(np.int64), sigma


@contextlib.contextmanager
def _one_thread():
    """Run numba's parallel kernels on the calling thread only, for the duration of the block.

    The work of one slice is a few thousand samples: waking the kernel's worker threads costs
    more than that (about 3 ms a call on the loaded 2-core host, against ~0.3 ms of work), and
    a run already has one board process per core.
    """
    if _PROCESS_ONE_THREAD:  # set for good (use_one_thread): two numba calls less per kernel call
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


_PROCESS_ONE_THREAD = False


def use_one_thread() -> None:
    """Run numba's parallel kernels on the calling thread for the rest of the process.

    For a front-end process (one per core already): :func:`_one_thread` then costs nothing
    per call (it set and reset numba's thread count around every kernel call, ~35 us per
    readout window).
    """
    global _PROCESS_ONE_THREAD
    numba.set_num_threads(1)
    _PROCESS_ONE_THREAD = True


class SparseGroup:
    """The activity-driven emulation of the boards of one process: one pass for all of them.

    The boards of a front-end process render their active ranges and run the stream pulse
    finder together: one kernel call of each per step for all their channels, instead of one
    per board (issue 14: the per-call Python and numpy costs were most of a board's time).
    Each board keeps its own active ranges (those of its channels' hits, as alone): the
    render call renders, row by row, the ranges of the row's board
    (:meth:`pokerdaq.sim.SampleStream.read_row_spans`), each board's concatenated ranges fill its
    rows, zeros after them (below every threshold: no candidate, as in the finder's history
    before the stream), and one stream finder scans every row. A board's pulses are then
    those it finds alone. :class:`SparsePhysicsFrontEnd` takes its board's pulses from here.

    Parameters
    ----------
    cfg
        The configuration (as the boards get it).
    boards
        The boards of the group.
    seed
        The run seed.
    """

    def __init__(self, cfg: Config, boards: tuple[int, ...], seed: int) -> None:
        from pokerdaq.dsp import PULSE_DTYPE, PulseParams
        from pokerdaq.sim import SampleStream
        from pokerdaq.trigger._chain import stream_config

        self.boards = tuple(int(b) for b in boards)
        cmap = cfg.channel_map
        per_board = [cmap.channels_on_board(b) for b in self.boards]
        self.channels = np.concatenate(per_board).astype(np.int64)
        scfg = stream_config(cfg)
        self._stream = SampleStream(scfg, seed=seed, channels=self.channels)
        self.streams = {b: SampleStream(scfg, seed=seed, channels=ch) for b, ch in zip(self.boards, per_board)}
        """Each board's own stream (its hits; its readout windows)."""
        self._params = PulseParams.from_config(scfg, self.channels)
        self._nsa = self._params.nsa.astype(np.int64)
        self._row_of = np.full(len(cmap), -1, np.int64)
        self._row_of[self.channels] = np.arange(len(self.channels))
        bounds = np.cumsum([0] + [len(ch) for ch in per_board])
        self._rows = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(self.boards))]
        self._board_of_row = np.repeat(np.arange(len(self.boards)), np.diff(bounds))
        # padding, per board: a crossing c carries hit signal, its pulse uses [c - NSB - 1, c + NSA)
        self._before = [int(self._params.nsb[r].max()) + 2 for r in self._rows]
        self._after = [int(self._params.nsa[r].max()) + 2 for r in self._rows]
        self._ticks = cfg.daq.slice_ticks
        self.done_to = [0] * len(self.boards)  # per board: every active range starting before this is processed
        self._n_pulses = np.zeros(len(self.channels), np.int64)
        empty = (np.zeros(0, PULSE_DTYPE), np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.pending = {b: empty for b in self.boards}
        """Per board: pulses found, not yet reported (records, report slice, group row)."""
        self.samples_emulated = [0] * len(self.boards)  # per board and channel, in active ranges
        self.ranges_emulated = [0] * len(self.boards)
        self.stage: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.taps: dict[int, Callable[[np.ndarray, np.ndarray, np.ndarray], None]] = {}
        """Per board: called with (starts, stops, samples) of the ranges rendered for it
        (``samples``: its channels' rows, the ranges concatenated), e.g. the L0 hits of a
        streaming run (pokerdaq.daq._streaming)."""

    def widen(self, board: int, before: int, after: int) -> None:
        """Pad the board's active ranges by at least ``before`` / ``after`` samples (before any
        is processed); a wider padding renders more noise around the hits, no other pulse."""
        if max(self.done_to) > 0:
            raise RuntimeError(f"board {board}: padding changed after ranges were processed")
        i = self.boards.index(board)
        self._before[i] = max(self._before[i], int(before))
        self._after[i] = max(self._after[i], int(after))

    def _find(self, samples: np.ndarray) -> np.ndarray:
        """Pulses of the concatenated active ranges, sorted by row then crossing (times local)."""
        from pokerdaq.dsp import PulseStream

        finder = PulseStream(self._params, channel_ids=self.channels)
        pulses = np.concatenate([finder.process(samples), finder.finish()])
        return pulses[np.lexsort((pulses["crossing"], self._row_of[pulses["channel"]]))]

    def _active_ranges(self, i: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The merged active ranges of board ``boards[i]`` not yet processed that start before sample ``end``."""
        horizon = end + self._ticks
        done, before, after = self.done_to[i], self._before[i], self._after[i]
        stream = self.streams[self.boards[i]]
        while True:
            lo = max(done - after, 0)
            first, last = stream.hit_extents(lo, horizon + before)
            a = np.maximum(first - before, 0)
            b = last + after
            keep = b > done
            a, b = a[keep], b[keep]
            if len(a) == 0:
                return a, b
            if a[0] < done:
                raise RuntimeError(
                    f"board {self.boards[i]}: a hit range starts at {int(a[0])}, before the samples "
                    f"already processed ({done})"
                )
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

    def advance(self, end: int) -> None:
        """Process, for every board, each active range that starts before sample ``end`` (once: boards share it)."""
        if min(self.done_to) >= end:
            return
        c0 = time.thread_time()
        g0 = sum(st.timeline_cpu_s for st in self.streams.values()) / len(self.streams)  # one shared time line
        ranges = []
        for i in range(len(self.boards)):
            if self.done_to[i] >= end:
                ranges.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            starts, stops = self._active_ranges(i, end)
            ranges.append((starts, stops))
            self.done_to[i] = max(end, int(stops[-1])) if len(starts) else end
        gen = sum(st.timeline_cpu_s for st in self.streams.values()) / len(self.streams) - g0
        self.stage["timeline"] += gen
        self.stage["ranges"] += time.thread_time() - c0 - gen
        if any(len(a) for a, _ in ranges):
            self._process_ranges(ranges)

    def _process_ranges(self, ranges: list[tuple[np.ndarray, np.ndarray]]) -> None:
        c0 = time.thread_time()
        samples = self._stream.read_row_spans([(rows, a, b) for rows, (a, b) in zip(self._rows, ranges)])
        for i, (a, b) in enumerate(ranges):
            self.samples_emulated[i] += int((b - a).sum())
            self.ranges_emulated[i] += len(a)
        for i, (a, b) in enumerate(ranges):
            tap = self.taps.get(self.boards[i])
            if tap is not None and len(a):
                tap(a, b, samples[self._rows[i], : int((b - a).sum())])
        c1 = time.thread_time()
        pulses = self._find(samples)
        c2 = time.thread_time()
        self.stage["render"] += c1 - c0
        self.stage["finder"] += c2 - c1
        if len(pulses) == 0:
            return
        row = self._row_of[pulses["channel"]]
        # rows come out in group order (board after board), each in time order
        owner = self._board_of_row[row]
        cuts = np.searchsorted(owner, np.arange(len(self.boards) + 1))
        for i, board in enumerate(self.boards):
            lo, hi = int(cuts[i]), int(cuts[i + 1])
            if hi == lo:
                continue
            p, r = pulses[lo:hi], row[lo:hi]
            starts, stops = ranges[i]
            lengths = stops - starts
            local0 = np.zeros(len(starts), np.int64)
            np.cumsum(lengths[:-1], out=local0[1:])
            j = np.searchsorted(local0, p["crossing"], side="right") - 1
            shift = starts[j] - local0[j]
            p["coarse_time"] += shift
            p["crossing"] += shift
            p["time"] += shift * 64
            # number each row's pulses on from the stream's count
            group_start = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
            rank = np.arange(len(r)) - np.repeat(group_start, np.diff(np.r_[group_start, len(r)]))
            p["pulse_index"] = (self._n_pulses[r] + rank) & 0xFF
            np.add.at(self._n_pulses, r, 1)
            report = (p["crossing"] + self._nsa[r] - 1) // self._ticks
            old, sl, rw = self.pending[board]
            self.pending[board] = (np.concatenate([old, p]), np.concatenate([sl, report]), np.concatenate([rw, r]))

    def take(self, board: int, first_slice: int, last_slice: int) -> np.ndarray:
        """The pulses ``board`` reports in slices ``first_slice..last_slice`` (processed up to their end),
        slice after slice, each in the stream finder's order (row, then crossing)."""
        self.advance((last_slice + 1) * self._ticks)
        pulses, report, row = self.pending[board]
        now = report <= last_slice
        if now.any() and report[now].min() < first_slice:
            raise RuntimeError(
                f"board {board}: a pulse due in slice {int(report[now].min())} was found only in slice {first_slice}"
            )
        out = pulses[now]
        out = out[np.lexsort((out["crossing"], row[now], report[now]))]
        if now.any():
            keep = ~now
            self.pending[board] = (pulses[keep], report[keep], row[keep])
        return out


_GROUPS: dict[tuple[Config, int, tuple[int, ...]], SparseGroup] = {}


def sparse_group(cfg: Config, boards: tuple[int, ...], seed: int) -> SparseGroup:
    """The :class:`SparseGroup` of these boards in this process (made once, then shared)."""
    key = (cfg, int(seed), tuple(int(b) for b in boards))
    group = _GROUPS.get(key)
    if group is None:
        if len(_GROUPS) >= 4:
            _GROUPS.pop(next(iter(_GROUPS)))
        group = _GROUPS[key] = SparseGroup(cfg, key[2], key[1])
    return group


class SparsePhysicsFrontEnd:
    """:class:`~pokerdaq.daq._interfaces.FrontEndLogic` that emulates only where hits put signal.

    Same primitives (every PULSE field, the same slice, the same order) and the same readout
    windows as :class:`~pokerdaq.daq._physics.PhysicsFrontEnd`, under the assumption checked
    by :func:`noise_ceiling` (module docstring).

    The boards of a front-end process share a :class:`SparseGroup` (``group``: made by
    :func:`sparse_group`), which renders and scans their ranges in one pass; without one the
    board has a group of its own.

    Raises
    ------
    ValueError
        When noise alone can reach a channel's threshold (the sparse mode would miss pulses):
        use ``daq.front_end = "physics-stream"``.
    """

    def __init__(
        self, cfg: Config, board: int, seed: int, *, warm_up: bool = True, group: SparseGroup | None = None
    ) -> None:
        from pokerdaq.dsp import PULSE_DTYPE, PulseParams
        from pokerdaq.trigger._chain import stream_config

        self.cfg = cfg
        self.board = board
        self.channels = cfg.channel_map.channels_on_board(board)
        scfg = stream_config(cfg)
        ceiling, threshold, _sigma = noise_ceiling(scfg, self.channels, seed)
        bad = np.flatnonzero(ceiling > threshold)
        if bad.size:
            c = int(self.channels[bad[0]])
            raise ValueError(
                f"daq.front_end = 'physics': channel {c} (board {board}): noise alone reaches ADC "
                f"{int(ceiling[bad[0]])}, above its threshold {int(threshold[bad[0]])}; the sparse "
                "front end needs noise below threshold (expected 'physics-stream' for this setup)"
            )
        if group is None:
            group = SparseGroup(cfg, (board,), seed)
        elif board not in group.boards:
            raise ValueError(f"board {board}: not one of the group's boards {group.boards}")
        self._group = group
        self._stream = group.streams[board]  # readout windows
        self._window_params = PulseParams.from_config(cfg, self.channels)
        self._ticks = cfg.daq.slice_ticks
        self._next = 0
        self.last_pulses = np.zeros(0, PULSE_DTYPE)
        """The PULSE_DTYPE records behind the last slice's primitives (all fields)."""
        # compile (or load from numba's cache) every kernel during configure
        with _one_thread():
            self._stream.read_spans(np.array([0, 300]), np.array([200, 500]))
            self._stream.read_at(0, cfg.digitizer.window_samples)
            self._group._find(np.full((len(group.channels), 256), 400, np.uint16))
        self.find_pulses(warm_up_window(len(self.channels), cfg.digitizer.window_samples), 0)
        if warm_up:
            # a throw-away twin takes two real slices and a readout, so that every code path is
            # compiled (or loaded from numba's cache) before the process reports ready: with a
            # cold cache, compiling mid-run would stall the board past the trigger's time-outs
            twin = SparsePhysicsFrontEnd(cfg, board, seed, warm_up=False)
            for k in range(2):
                twin.process_slice(k)
            twin.read_window(cfg.digitizer.pretrigger_samples, cfg.digitizer.window_samples)
            twin.find_pulses_batch(twin.read_windows(np.array([0, 5]), cfg.digitizer.window_samples))

    @property
    def samples_emulated(self) -> int:
        """Samples per channel rendered in the board's active ranges."""
        return self._group.samples_emulated[self._group.boards.index(self.board)]

    @property
    def ranges_emulated(self) -> int:
        """The board's active ranges rendered."""
        return self._group.ranges_emulated[self._group.boards.index(self.board)]

    @property
    def stage_cpu(self) -> dict[str, float]:
        """CPU seconds (the calling thread) by stage of the slices (benchmarks): ``timeline``
        (generating beam blocks), ``ranges`` (active ranges, less the time line), ``render`` and
        ``finder`` (the active ranges). A group's figures are reported by its first board."""
        return dict(self._group.stage) if self.board == self._group.boards[0] else {}

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
        a = (slice_index - 1) * slice_ns  # one slice of guard before ...
        m = np.floor(a / period_ns)
        if slice_index < 1 or a < m * period_ns + length_ns:
            return slice_index
        last = int(np.floor((m + 1) * period_ns / slice_ns)) - 2  # ... and after the stretch
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
        out = self._group.take(self.board, slice_index, last_slice)
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

    def read_windows(self, first_ticks: np.ndarray, n_samples: int) -> np.ndarray:
        """The readout windows starting at ``first_ticks`` (all >= 0) in one call: (k, n_channels, n_samples),
        each equal to :meth:`read_window` of it."""
        with _one_thread():
            return self._stream.read_windows(first_ticks, n_samples)

    def find_pulses(self, window: np.ndarray, first_tick: int) -> np.ndarray:
        from pokerdaq.dsp import find_pulses

        with _one_thread():
            return find_pulses(window, self._window_params, channel_ids=self.channels)

    def find_pulses_batch(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`find_pulses` of windows (k, n_channels, n_samples) in one call: records and
        per-window offsets (:func:`pokerdaq.dsp.find_pulses_batch`)."""
        from pokerdaq.dsp import find_pulses_batch

        with _one_thread():
            return find_pulses_batch(windows, self._window_params, channel_ids=self.channels)
