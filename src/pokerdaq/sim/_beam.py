"""Beam particles in time: Poisson arrivals inside spills, species mix, energies, deposits.

Time is cut into blocks of ``BLOCK_SAMPLES`` samples. Everything that happens in block k
(beam particles, their deposits, Lu-176 decays in the SRD) is drawn from generators seeded
by ``SeedSequence(seed, spawn_key=(kind, k))``: a block is the same whoever asks for it and
in whatever order, and a Poisson process cut into blocks is still a Poisson process.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ._response import Layout, beam_deposits, lu176_deposits_mev
from ._truth import TRUTH_DTYPE, Species

BLOCK_SAMPLES = 1 << 20
"""Samples per generation block (about 4.2 ms at 250 MS/s, ~420 particles at 100 kHz): large
enough to amortise the numpy overhead of generating a block."""

_KIND_BEAM = 1
_KIND_LYSO = 2
_BACKGROUND_BIT = 1 << 23
_SUBSYSTEM_SUMS = (  # truth field, subsystem, scale from MeV
    ("e_counters_mev", "beam_counters", 1.0),
    ("e_srd_mev", "srd", 1.0),
    ("e_preshower_gev", "preshower", 1e-3),
    ("e_ecal_gev", "ecal", 1e-3),
    ("e_veto_mev", "veto", 1.0),
    ("e_hcal_gev", "hcal", 1e-3),
)


@dataclass(frozen=True)
class Block:
    """Everything that happens in one time block: beam truth and energy hits sorted by time.

    A hit is one (time, channel, energy) deposit; ``hit_key`` identifies it uniquely and
    seeds its photoelectron-level random numbers in the waveform kernel.
    """

    index: int
    truth: np.ndarray
    hit_t: np.ndarray
    hit_ch: np.ndarray
    hit_e: np.ndarray
    hit_key: np.ndarray


_BLOCK_STORE: str | None = None
STORE_KEEP_BLOCKS = 48
"""Blocks kept behind the newest one in a block store (~75 MB at 100 kHz): a reader further
behind generates the block again (same content), it is a cache."""


def use_block_store(folder: str | os.PathLike | None) -> None:
    """Share generated blocks through files in ``folder`` between the processes of one run.

    Every :class:`BeamTimeline` of this process then takes block k from the folder where
    another process (the other front-end processes, the writer for its truth) stored it,
    and stores the blocks it generates there: each block is generated once per run instead
    of once per process (issue 14). A block is the same whoever generates it, so the
    content does not depend on who does. ``None``: each process generates its own.
    """
    global _BLOCK_STORE
    _BLOCK_STORE = None if folder is None else os.fspath(folder)


class BeamTimeline:
    """Lazily generated, cached blocks of the beam time line for one (config, seed)."""

    def __init__(self, cfg: Config, seed: int, cache_blocks: int = 16) -> None:
        self.cfg = cfg
        self.seed = int(seed)
        self.layout = Layout.from_config(cfg)
        self.sample_ns = cfg.digitizer.sample_ns
        self.block_ns = BLOCK_SAMPLES * self.sample_ns
        self._period_ns = cfg.beam.spill_period_s * 1e9
        self._length_ns = cfg.beam.spill_length_s * 1e9
        self._first = [0]  # first particle index of block k, for k < len(self._first)
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._cache_blocks = cache_blocks
        self.blocks_generated = 0
        self.generate_cpu_s = 0.0
        """Blocks generated so far and the CPU seconds (this thread) spent on them (benchmarks)."""

    def _rng(self, kind: int, k: int) -> np.random.Generator:
        return np.random.Generator(np.random.Philox(np.random.SeedSequence(self.seed, spawn_key=(kind, k))))

    def on_intervals(self, k: int) -> list[tuple[float, float]]:
        """Beam-on (in-spill) parts of block k, in absolute ns."""
        a, b = k * self.block_ns, (k + 1) * self.block_ns
        out = []
        for m in range(int(a // self._period_ns), int(b // self._period_ns) + 1):
            lo, hi = max(a, m * self._period_ns), min(b, m * self._period_ns + self._length_ns)
            if hi > lo:
                out.append((lo, hi))
        return out

    def _count(self, k: int, rng: np.random.Generator | None = None) -> int:
        on = sum(hi - lo for lo, hi in self.on_intervals(k))
        if on <= 0.0:
            return 0
        rng = rng if rng is not None else self._rng(_KIND_BEAM, k)
        return int(rng.poisson(self.cfg.beam.rate_hz * on * 1e-9))

    def first_index(self, k: int) -> int:
        """Index of the first beam particle of block k (particles are numbered in time order)."""
        while len(self._first) <= k:
            self._first.append(self._first[-1] + self._count(len(self._first) - 1))
        return self._first[k]

    def next_block_with_beam(self, k: int) -> int:
        """The first block >= k that overlaps a spill."""
        if self.on_intervals(k):
            return k
        m = math.floor(k * self.block_ns / self._period_ns) + 1
        return max(k, int((m * self._period_ns) // self.block_ns))

    def block(self, k: int) -> Block:
        """Block k (generated on first use, then cached)."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        t0 = time.thread_time()
        blk = self._generate(k) if _BLOCK_STORE is None else self._shared(_BLOCK_STORE, k)
        self.generate_cpu_s += time.thread_time() - t0
        self.blocks_generated += 1
        self._cache[k] = blk
        if len(self._cache) > self._cache_blocks:
            self._cache.popitem(last=False)
        return blk

    def _shared(self, store: str, k: int) -> Block:
        """Block k from the block store, generated and stored by the first process that needs it."""
        if not hasattr(self, "_store_key"):
            # the same in every process of the run (not Python's per-process string hash)
            self._store_key = hashlib.sha1(f"{self.cfg!r}|{self.seed}".encode()).hexdigest()[:16]
        path = os.path.join(store, f"block-{self._store_key}-{k}.npz")
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one process generates, the others wait and load
            try:
                with np.load(path) as z:
                    return Block(k, z["truth"], z["hit_t"], z["hit_ch"], z["hit_e"], z["hit_key"])
            except (OSError, ValueError, KeyError):
                pass  # not stored yet (or evicted): generate it
            blk = self._generate(k)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, truth=blk.truth, hit_t=blk.hit_t, hit_ch=blk.hit_ch, hit_e=blk.hit_e, hit_key=blk.hit_key)
            os.replace(tmp, path)
            old = os.path.join(store, f"block-{self._store_key}-{k - STORE_KEEP_BLOCKS}.npz")
            for stale in (old, old + ".lock"):
                try:
                    os.remove(stale)
                except OSError:
                    pass
            return blk
        finally:
            os.close(fd)

    def _generate(self, k: int) -> Block:
        cfg, beam = self.cfg, self.cfg.beam
        # --- beam particles ---
        rng = self._rng(_KIND_BEAM, k)
        n = self._count(k, rng)
        truth = np.zeros(n, TRUTH_DTYPE)
        if n:
            ivals = self.on_intervals(k)
            starts = np.array([lo for lo, _ in ivals])
            lengths = np.array([hi - lo for lo, hi in ivals])
            cum = np.concatenate([[0.0], np.cumsum(lengths)])
            u = np.sort(rng.random(n)) * cum[-1]
            which = np.minimum(np.searchsorted(cum, u, side="right") - 1, len(ivals) - 1)
            t = starts[which] + (u - cum[which])
            beam_species = Species.POSITRON if beam.species == "e+" else Species.ELECTRON
            r = rng.random(n)
            f_sig, f_had, f_mu = beam.signal_fraction, beam.hadron_fraction, beam.muon_fraction
            is_signal = r < f_sig
            species = np.full(n, beam_species, np.int8)
            species[(r >= f_sig) & (r < f_sig + f_had)] = Species.HADRON
            species[(r >= f_sig + f_had) & (r < f_sig + f_had + f_mu)] = Species.MUON
            energy = beam.energy_gev * (1.0 + beam.energy_spread * rng.standard_normal(n))
            e_r = beam.resonance_energy_gev
            line = e_r * (1.0 + cfg.response.signal_line_width * rng.standard_normal(n))
            e_miss = np.where(is_signal, np.clip(line, 0.0, energy), 0.0)
            dep, x, y = beam_deposits(cfg, self.layout, rng, species, energy, e_miss)
            truth["event"] = self.first_index(k) + np.arange(n)
            truth["t_ns"] = t
            truth["t_sample"] = np.floor(t / self.sample_ns).astype(np.int64)
            truth["species"] = species
            truth["energy_gev"] = energy
            truth["is_signal"] = is_signal
            truth["e_miss_gev"] = e_miss
            truth["x_mm"], truth["y_mm"] = x, y
            for field, sub, scale in _SUBSYSTEM_SUMS:
                truth[field] = dep[:, self.layout.channels[sub].ravel()].sum(axis=1) * scale
            rows, chans = np.nonzero(dep > 0.0)
            b_t, b_ch, b_e = t[rows], chans, dep[rows, chans]
            b_key = (
                (np.uint64(k) << np.uint64(36)) | (rows.astype(np.uint64) << np.uint64(12)) | chans.astype(np.uint64)
            )
        else:
            b_t = b_e = np.zeros(0)
            b_ch = np.zeros(0, np.int64)
            b_key = np.zeros(0, np.uint64)
        # --- Lu-176 decays in the SRD (beam on or off) ---
        rng = self._rng(_KIND_LYSO, k)
        nb = int(rng.poisson(cfg.detector.lyso_background_hz * self.block_ns * 1e-9))
        srd = self.layout.channels["srd"].ravel()
        l_t = k * self.block_ns + np.sort(rng.random(nb)) * self.block_ns
        l_ch = srd[rng.integers(0, len(srd), nb)]
        l_e = lu176_deposits_mev(rng, nb)
        l_key = (
            (np.uint64(k) << np.uint64(36))
            | ((np.arange(nb, dtype=np.uint64) | np.uint64(_BACKGROUND_BIT)) << np.uint64(12))
            | l_ch.astype(np.uint64)
        )
        hit_t = np.concatenate([b_t, l_t])
        order = np.argsort(hit_t, kind="stable")
        return Block(
            index=k,
            truth=truth,
            hit_t=np.ascontiguousarray(hit_t[order]),
            hit_ch=np.concatenate([b_ch, l_ch]).astype(np.int64)[order],
            hit_e=np.concatenate([b_e, l_e])[order],
            hit_key=np.concatenate([b_key, l_key])[order],
        )

    def hits(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Concatenated hits of blocks k0..k1 (inclusive; negative blocks are empty)."""
        blocks = [self.block(k) for k in range(max(k0, 0), k1 + 1)]
        if not blocks:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint64)
        return (
            np.concatenate([b.hit_t for b in blocks]),
            np.concatenate([b.hit_ch for b in blocks]),
            np.concatenate([b.hit_e for b in blocks]),
            np.concatenate([b.hit_key for b in blocks]),
        )
