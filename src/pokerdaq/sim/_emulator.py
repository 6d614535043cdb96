"""Public emulator API: readout windows around beam particles, and a continuous sample stream."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ._beam import BLOCK_SAMPLES, BeamTimeline
from ._rng import mix64
from ._templates import I_SUB, Tables, build_tables, noise_banks
from ._truth import TRUTH_DTYPE
from ._waveform import NOISE_BLOCK_BITS, render_spans_bucketed, render_windows

NOISE_BANK_SIZE = 1 << 15
"""Noise bank length: 2 x 128 kB of float32 stay in the L2 cache (the kernels read them at
random offsets, one cache miss per line otherwise)."""


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} = {value!r}: expected an integer")
    if value < minimum:
        raise ValueError(f"{name} = {value!r}: expected an integer >= {minimum}")
    return int(value)


def _check_seed(cfg: Config, seed: int | None) -> int:
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg = {type(cfg).__name__}: expected a pokerdaq.config.Config (load_config())")
    if seed is None:
        return cfg.run.seed
    return _check_int("seed", seed, 0)


def _check_channels(cfg: Config, channels: Sequence[int] | np.ndarray | None) -> np.ndarray:
    n = len(cfg.channel_map)
    if channels is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(channels)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"channels = {channels!r}: expected a non-empty 1D sequence of channel numbers")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise ValueError(f"channels = {channels!r}: channel {int(bad[0])} is outside 0..{n - 1}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"channels = {channels!r}: expected distinct channel numbers")
    return arr.astype(np.int64)


_ENGINES: OrderedDict[tuple[Config, int], _Engine] = OrderedDict()
_ENGINES_KEPT = 4  # (cfg, seed) pairs whose engine a process keeps (one in a DAQ run)


@dataclass
class _Engine:
    """Tables, noise banks and the beam time line of one (config, seed)."""

    cfg: Config
    seed: int
    tables: Tables
    white: np.ndarray
    corr: np.ndarray
    timeline: BeamTimeline
    seed_key: np.uint64

    @classmethod
    def create(cls, cfg: Config, seed: int) -> _Engine:
        """The engine of (cfg, seed), shared by every stream of the process that asks for it.

        Tables, noise banks and beam blocks depend only on (cfg, seed), and a block is the same
        whoever asks for it: the boards of one front-end process share one time line instead
        of each generating every block again (issue 14: 8 core-s per beam-s with 12 copies).
        """
        key = (cfg, int(seed))
        eng = _ENGINES.get(key)
        if eng is None:
            eng = cls._new(cfg, seed)
            _ENGINES[key] = eng
            if len(_ENGINES) > _ENGINES_KEPT:
                _ENGINES.popitem(last=False)
        else:
            _ENGINES.move_to_end(key)
        return eng

    @classmethod
    def _new(cls, cfg: Config, seed: int) -> _Engine:
        white, corr = noise_banks(
            seed, cfg.digitizer.sample_ns, cfg.digitizer.correlated_noise_ns, NOISE_BANK_SIZE, 1 << NOISE_BLOCK_BITS
        )
        return cls(
            cfg, seed, build_tables(cfg), white, corr, BeamTimeline(cfg, seed), np.uint64(mix64(np.uint64(seed)))
        )

    def _common(self):
        t = self.tables
        return (
            t.chan_f,
            t.chan_i,
            self.seed_key,
            t.templates,
            t.span_fine,
            t.span_ns,
            t.scint_tau,
            t.scint_cum,
            t.scint_rise,
            t.lookback_ns,
            self.white,
            self.corr,
            self.cfg.digitizer.sample_ns,
            float(self.cfg.digitizer.adc_max),
        )

    def windows(self, starts: np.ndarray, n: int, sel: np.ndarray, hits) -> np.ndarray:
        row_of = np.full(len(self.cfg.channel_map), -1, np.int64)
        row_of[sel] = np.arange(len(sel))
        out = np.empty((len(starts), len(sel), n), np.uint16)
        render_windows(starts.astype(np.int64), n, sel, row_of, *hits, *self._common(), out)
        return out

    def span(self, s0: int, n: int, sel: np.ndarray, bucketed) -> np.ndarray:
        """Samples [s0, s0 + n) of channels ``sel``; ``bucketed``: :func:`bucket_hits` of their hits."""
        out = np.empty((len(sel), n), np.uint16)
        render_spans_bucketed(
            np.zeros(len(sel), np.int64),
            np.ones(len(sel), np.int64),
            np.array([s0], np.int64),
            np.array([n], np.int64),
            np.zeros(1, np.int64),
            sel,
            *bucketed,
            *self._common(),
            out,
        )
        return out

    def spans(self, starts: np.ndarray, lengths: np.ndarray, sel: np.ndarray, bucketed) -> np.ndarray:
        offsets = np.zeros(len(starts), np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        out = np.empty((len(sel), int(lengths.sum())), np.uint16)
        render_spans_bucketed(
            np.zeros(len(sel), np.int64),
            np.full(len(sel), len(starts), np.int64),
            starts,
            lengths,
            offsets,
            sel,
            *bucketed,
            *self._common(),
            out,
        )
        return out

    def row_spans(
        self,
        span_lo: np.ndarray,
        span_hi: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        offsets: np.ndarray,
        width: int,
        sel: np.ndarray,
        bucketed,
    ) -> np.ndarray:
        """Spans chosen per row (:func:`render_spans_bucketed`) into a zeroed (len(sel), width) array."""
        out = np.zeros((len(sel), width), np.uint16)
        render_spans_bucketed(span_lo, span_hi, starts, lengths, offsets, sel, *bucketed, *self._common(), out)
        return out

    def block_range(self, s0: int, s1: int) -> tuple[int, int]:
        """Blocks whose hits can contribute to samples [s0, s1)."""
        sample_ns = self.cfg.digitizer.sample_ns
        k0 = int(np.floor((s0 * sample_ns - self.tables.lookback_ns) / (BLOCK_SAMPLES * sample_ns)))
        return k0, (s1 - 1) // BLOCK_SAMPLES


def bucket_hits(hits, sel: np.ndarray, n_channels: int):
    """The hits of channels ``sel``, grouped by row of ``sel`` (time order kept within each).

    Returns ``(seg, hit_t, hit_ch, hit_e, hit_key)``: the hits of ``sel[r]`` are
    ``[seg[r], seg[r + 1])`` (the layout of :func:`render_spans_bucketed`).
    """
    hit_t, hit_ch, hit_e, hit_key = hits
    row_of = np.full(n_channels, -1, np.int64)
    row_of[sel] = np.arange(len(sel))
    row = row_of[hit_ch]
    mine = np.flatnonzero(row >= 0)
    order = mine[np.argsort(row[mine], kind="stable")]
    seg = np.zeros(len(sel) + 1, np.int64)
    np.cumsum(np.bincount(row[mine], minlength=len(sel)), out=seg[1:])
    return (
        seg,
        np.ascontiguousarray(hit_t[order]),
        np.ascontiguousarray(hit_ch[order]),
        np.ascontiguousarray(hit_e[order]),
        np.ascontiguousarray(hit_key[order]),
    )


def iter_windows(
    cfg: Config,
    n_events: int,
    seed: int | None = None,
    *,
    batch_events: int = 4096,
    channels: Sequence[int] | np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Emulate one readout window per beam particle, in batches.

    Event i is beam particle i (in time order, from t = 0); its window of
    ``digitizer.window_samples`` samples starts ``digitizer.pretrigger_samples`` before the
    sample in which the particle arrives, so the sampling phase is random. The window also
    holds every other beam particle and Lu-176 decay that falls in it (pile-up).

    Parameters
    ----------
    cfg
        The configuration.
    n_events
        Number of events (beam particles), >= 0.
    seed
        Random seed; default ``cfg.run.seed``. Same seed and config give the same samples.
    batch_events
        Events per yielded batch, >= 1.
    channels
        Channel numbers to emulate (default all, in channel-map order).

    Yields
    ------
    samples : np.ndarray
        (n, n_channels, window_samples) uint16 ADC codes 0..adc_max.
    truth : np.ndarray
        (n,) ``TRUTH_DTYPE``; ``event`` is the event number, ``n_pileup`` the number of other
        beam particles in the window.
    """
    n_events = _check_int("n_events", n_events, 0)
    batch_events = _check_int("batch_events", batch_events, 1)
    seed = _check_seed(cfg, seed)
    sel = _check_channels(cfg, channels)
    eng = _Engine.create(cfg, seed)
    yield from _windows(eng, n_events, batch_events, sel)


def _event_batches(tl: BeamTimeline, n_events: int, batch: int):
    """Yield (first block, last block, truth) for consecutive batches of beam particles."""
    pending: list[tuple[int, np.ndarray]] = []
    n_pending = 0
    k = 0
    remaining = n_events
    while remaining > 0:
        take = min(batch, remaining)
        while n_pending < take:
            k = tl.next_block_with_beam(k)
            tr = tl.block(k).truth
            if len(tr):
                pending.append((k, tr))
                n_pending += len(tr)
            k += 1
        parts, blocks, need = [], [], take
        while need:
            kk, tr = pending[0]
            blocks.append(kk)
            if len(tr) <= need:
                parts.append(tr)
                pending.pop(0)
                need -= len(tr)
            else:
                parts.append(tr[:need])
                pending[0] = (kk, tr[need:])
                need = 0
        n_pending -= take
        remaining -= take
        yield blocks[0], blocks[-1], np.concatenate(parts)


def _windows(eng: _Engine, n_events: int, batch_events: int, sel: np.ndarray):
    tl = eng.timeline
    dig = eng.cfg.digitizer
    n, pre, sample_ns = dig.window_samples, dig.pretrigger_samples, dig.sample_ns
    lookback = eng.tables.lookback_ns
    for ka, kb, truth in _event_batches(tl, n_events, batch_events):
        hits = tl.hits(ka - 1, kb + 1)
        starts = truth["t_sample"] - pre
        # pile-up: other beam particles whose pulses reach the window
        around = np.concatenate([tl.block(j).truth["t_ns"] for j in range(max(ka - 1, 0), kb + 2)])
        lo = np.searchsorted(around, starts * sample_ns - lookback)
        hi = np.searchsorted(around, (starts + n) * sample_ns)
        truth["n_pileup"] = np.minimum(hi - lo - 1, np.iinfo(np.uint16).max)
        yield eng.windows(starts, n, sel, hits), truth


def emulate_windows(
    cfg: Config, n_events: int, seed: int | None = None, *, channels: Sequence[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All windows of :func:`iter_windows` in one array.

    Returns
    -------
    samples : np.ndarray
        (n_events, n_channels, window_samples) uint16.
    truth : np.ndarray
        (n_events,) ``TRUTH_DTYPE``.
    """
    parts = list(iter_windows(cfg, n_events, seed, channels=channels, batch_events=max(n_events, 1)))
    sel = _check_channels(cfg, channels)
    if not parts:
        return (np.zeros((0, len(sel), cfg.digitizer.window_samples), np.uint16), np.zeros(0, TRUTH_DTYPE))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class SampleStream:
    """A continuous stream of samples of every (or some) channel, read in chunks.

    The samples do not depend on how the stream is cut into chunks, and the stream of a
    channel subset (e.g. ``cfg.channel_map.channels_on_board(b)``) equals the corresponding
    rows of the all-channel stream.

    Parameters
    ----------
    cfg
        The configuration.
    seed
        Random seed; default ``cfg.run.seed``.
    channels
        Channel numbers (default all), in the order of the returned rows.
    """

    def __init__(
        self, cfg: Config, seed: int | None = None, channels: Sequence[int] | np.ndarray | None = None
    ) -> None:
        self.cfg = cfg
        self.seed = _check_seed(cfg, seed)
        self.channels = _check_channels(cfg, channels)
        self._eng = _Engine.create(cfg, self.seed)
        self.position = 0
        """Absolute sample index of the next sample to be read."""
        self._span_cache: dict[tuple[int, int], tuple[tuple, np.ndarray]] = {}
        self._extent_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def timeline_cpu_s(self) -> float:
        """CPU seconds this stream's beam time line has spent generating blocks (benchmarks)."""
        return self._eng.timeline.generate_cpu_s

    def _blocks(self, k0: int, k1: int):
        """This stream's hits (:func:`bucket_hits`) and the beam truth of blocks k0..k1, kept for
        the next reads (small chunks; slices and readout windows ask for different block ranges)."""
        hit = self._span_cache.get((k0, k1))
        if hit is None:
            tl = self._eng.timeline
            truth = np.concatenate([tl.block(k).truth for k in range(max(k0, 0), k1 + 1)])
            bucketed = bucket_hits(tl.hits(k0, k1), self.channels, len(self.cfg.channel_map))
            hit = (bucketed, truth)
            self._span_cache[(k0, k1)] = hit
            if len(self._span_cache) > 4:
                self._span_cache.pop(next(iter(self._span_cache)))
        return hit

    def read(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n_samples`` samples.

        Returns
        -------
        samples : np.ndarray
            (n_channels, n_samples) uint16.
        truth : np.ndarray
            ``TRUTH_DTYPE`` rows of the beam particles arriving in these samples
            (``t_sample`` is the absolute sample index).
        """
        n_samples = _check_int("n_samples", n_samples, 1)
        s0, s1 = self.position, self.position + n_samples
        k0, k1 = self._eng.block_range(s0, s1)
        hits, truth = self._blocks(k0, k1)
        samples = self._eng.span(s0, n_samples, self.channels, hits)
        truth = truth[(truth["t_sample"] >= s0) & (truth["t_sample"] < s1)]
        self.position = s1
        return samples, truth

    def read_at(self, start: int, n_samples: int) -> np.ndarray:
        """Samples ``[start, start + n_samples)`` of the stream, read out of order.

        Random access: equal bit for bit to what :meth:`read` returns for these samples, and
        :attr:`position` does not move.

        Returns
        -------
        np.ndarray
            (n_channels, n_samples) uint16.
        """
        start = _check_int("start", start, 0)
        n_samples = _check_int("n_samples", n_samples, 1)
        hits, _truth = self._blocks(*self._eng.block_range(start, start + n_samples))
        return self._eng.span(start, n_samples, self.channels, hits)

    def read_windows(self, starts: Sequence[int] | np.ndarray, n_samples: int) -> np.ndarray:
        """Windows ``[starts[e], starts[e] + n_samples)`` of the stream, in one call (they may overlap).

        Each equals bit for bit what :meth:`read_at` returns for it; :attr:`position` does not move.

        Returns
        -------
        np.ndarray
            (len(starts), n_channels, n_samples) uint16.
        """
        a = np.asarray(starts)
        if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"starts = {starts!r}: expected a non-empty 1D integer sequence")
        a = a.astype(np.int64)
        if a.min() < 0:
            raise ValueError(f"starts: {int(a.min())}, expected sample indices >= 0")
        n = _check_int("n_samples", n_samples, 1)
        hits, _truth = self._blocks(*self._eng.block_range(int(a.min()), int(a.max()) + n))
        out = self._eng.spans(a, np.full(len(a), n, np.int64), self.channels, hits)
        return np.ascontiguousarray(out.reshape(len(self.channels), len(a), n).transpose(1, 0, 2))

    def read_spans(self, starts: Sequence[int] | np.ndarray, stops: Sequence[int] | np.ndarray) -> np.ndarray:
        """Several sample ranges ``[starts[j], stops[j])`` of the stream, concatenated, in one call.

        Each range equals bit for bit what :meth:`read` returns for those samples; the
        ranges are given in increasing, non-overlapping order. :attr:`position` does not move.

        Returns
        -------
        np.ndarray
            (n_channels, sum(stops - starts)) uint16, range after range.
        """
        a = np.asarray(starts)
        b = np.asarray(stops)
        if (
            a.ndim != 1
            or b.shape != a.shape
            or a.size == 0
            or not np.issubdtype(a.dtype, np.integer)
            or not np.issubdtype(b.dtype, np.integer)
        ):
            raise ValueError(
                f"starts, stops = {starts!r}, {stops!r}: expected two non-empty 1D integer sequences of the same length"
            )
        a, b = a.astype(np.int64), b.astype(np.int64)
        if a[0] < 0:
            raise ValueError(f"starts[0] = {int(a[0])}: expected a sample index >= 0")
        if np.any(b <= a):
            j = int(np.flatnonzero(b <= a)[0])
            raise ValueError(f"stops[{j}] = {int(b[j])}: expected > starts[{j}] = {int(a[j])}")
        if np.any(a[1:] < b[:-1]):
            j = int(np.flatnonzero(a[1:] < b[:-1])[0]) + 1
            raise ValueError(
                f"starts[{j}] = {int(a[j])}: expected >= stops[{j - 1}] = {int(b[j - 1])} "
                "(ranges in increasing order, not overlapping)"
            )
        hits, _truth = self._blocks(*self._eng.block_range(int(a[0]), int(b[-1])))
        return self._eng.spans(a, b - a, self.channels, hits)

    def read_row_spans(self, groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """Ranges chosen per group of rows, each group's concatenated in its rows, in one call.

        ``groups``: ``(rows, starts, stops)`` per group (rows: indices into the stream's
        channels, each in one group; ranges as for :meth:`read_spans`). Row ``r`` of group
        ``g`` holds the ranges of ``g`` concatenated, each equal bit for bit to what
        :meth:`read` returns, then zeros up to the longest group's total.

        Returns
        -------
        np.ndarray
            (n_channels, max over groups of sum(stops - starts)) uint16.
        """
        n_rows = len(self.channels)
        span_lo = np.zeros(n_rows, np.int64)
        span_hi = np.zeros(n_rows, np.int64)
        starts, lengths, offsets = [], [], []
        n_spans, width, s_lo, s_hi = 0, 0, None, None
        for rows, a, b in groups:
            a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
            span_lo[rows] = n_spans
            n_spans += len(a)
            span_hi[rows] = n_spans
            if len(a):
                ln = b - a
                off = np.zeros(len(a), np.int64)
                np.cumsum(ln[:-1], out=off[1:])
                starts.append(a)
                lengths.append(ln)
                offsets.append(off)
                width = max(width, int(ln.sum()))
                s_lo = int(a[0]) if s_lo is None else min(s_lo, int(a[0]))
                s_hi = int(b[-1]) if s_hi is None else max(s_hi, int(b[-1]))
        if s_lo is None or s_hi is None:
            return np.zeros((n_rows, 0), np.uint16)
        bucketed, _truth = self._blocks(*self._eng.block_range(s_lo, s_hi))
        return self._eng.row_spans(
            span_lo,
            span_hi,
            np.concatenate(starts),
            np.concatenate(lengths),
            np.concatenate(offsets),
            width,
            self.channels,
            bucketed,
        )

    def hit_extents(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the energy hits of the stream's channels put signal, for hits reaching ``[start, stop)``.

        A hit (beam particle deposit or Lu-176 decay) at time t in a channel adds signal only
        to the samples s with t <= s * T < t + span (``span`` = the pulse span of the
        channel's subsystem, after which the emulator stops following a pulse); every other
        sample is pedestal + noise + dark counts. The extents are widened by one sample on
        each side (rounding).

        Returns
        -------
        first, end : np.ndarray
            int64, one entry per hit whose extent ``[first, end)`` overlaps ``[start, stop)``,
            in increasing ``first``.
        """
        start = _check_int("start", start, 0)
        stop = _check_int("stop", stop, start + 1)
        k0, k1 = self._eng.block_range(start, stop)
        firsts, ends = [], []
        for k in range(max(k0, 0), k1 + 1):
            f, e = self._block_extents(k)
            firsts.append(f)
            ends.append(e)
        first, end = np.concatenate(firsts), np.concatenate(ends)
        keep = (end > start) & (first < stop)
        return first[keep], end[keep]

    def _block_extents(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self._extent_cache:
            blk = self._eng.timeline.block(k)
            mine = np.isin(blk.hit_ch, self.channels)
            t, ch = blk.hit_t[mine], blk.hit_ch[mine]
            sample_ns = self.cfg.digitizer.sample_ns
            span = self._eng.tables.span_ns[self._eng.tables.chan_i[ch, I_SUB]]
            first = np.floor(t / sample_ns).astype(np.int64)  # hits are in time order: so is first
            end = np.ceil((t + span) / sample_ns).astype(np.int64) + 1
            if len(self._extent_cache) >= 4:
                self._extent_cache.pop(next(iter(self._extent_cache)))
            self._extent_cache[k] = (first, end)
        return self._extent_cache[k]


def emulate_channel(
    cfg: Config,
    channel: int,
    deposits_mev: Sequence[float] | np.ndarray,
    seed: int | None = None,
    *,
    n_samples: int | None = None,
    t0_ns: float | None = None,
) -> np.ndarray:
    """Waveforms of one channel, one per deposit, without beam or background (tests, benchmarks).

    Deposit k arrives ``t0_ns`` after the start of its own window of ``n_samples`` samples;
    windows are far enough apart that pulses do not overlap. Photoelectron statistics, SiPM
    effects, dark counts, noise and quantisation are those of the channel's configuration.

    Parameters
    ----------
    cfg
        The configuration.
    channel
        Channel number (see ``cfg.channel_map``).
    deposits_mev
        Energy deposited for each waveform, in MeV (>= 0, finite).
    seed
        Random seed; default ``cfg.run.seed``.
    n_samples
        Samples per waveform, default ``digitizer.window_samples``.
    t0_ns
        Arrival time in the window, default ``digitizer.pretrigger_samples`` samples.

    Returns
    -------
    np.ndarray
        (len(deposits_mev), n_samples) uint16 ADC codes.
    """
    seed = _check_seed(cfg, seed)
    dig = cfg.digitizer
    (channel,) = _check_channels(cfg, [_check_int("channel", channel, 0)])
    dep = np.asarray(deposits_mev, dtype=np.float64)
    if dep.ndim != 1 or not np.all(np.isfinite(dep)) or np.any(dep < 0):
        raise ValueError(f"deposits_mev = {deposits_mev!r}: expected a 1D sequence of finite energies >= 0")
    n = dig.window_samples if n_samples is None else _check_int("n_samples", n_samples, 1)
    t0 = dig.pretrigger_samples * dig.sample_ns if t0_ns is None else float(t0_ns)
    if not np.isfinite(t0) or t0 < 0:
        raise ValueError(f"t0_ns = {t0_ns!r}: expected a finite time >= 0")
    white, corr = noise_banks(seed, dig.sample_ns, dig.correlated_noise_ns, NOISE_BANK_SIZE, 1 << NOISE_BLOCK_BITS)
    eng = _Engine(cfg, seed, build_tables(cfg), white, corr, None, np.uint64(mix64(np.uint64(seed))))  # type: ignore[arg-type]
    stride = n + int(np.ceil((eng.tables.lookback_ns + t0) / dig.sample_ns)) + 1
    starts = np.arange(len(dep), dtype=np.int64) * stride
    k = np.arange(len(dep), dtype=np.uint64)
    hits = (
        starts * dig.sample_ns + t0,
        np.full(len(dep), channel, np.int64),
        dep,
        (k << np.uint64(12)) | np.uint64(channel),
    )
    return eng.windows(starts, n, np.array([channel], np.int64), hits)[:, 0, :]
