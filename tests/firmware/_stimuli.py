"""Seeded stimuli for the pulse-finder RTL: batches of windows for a bank of channels.

A campaign is a sequence of batches. In a batch every channel keeps its registers and all
windows have the same length N (the bank shares the window framing); registers change only
between batches, after the RTL has drained (docs: firmware_models/README.md). Kinds:

- ``corner``: registers drawn over their full ranges (NSB + NSA == N, NSAT == NSA, MAXPED
  below the pedestal, thresholds above the rail ...), samples built from segments placed
  around the absolute threshold T: runs equal to T, T +- 1, rails, plateaus, ramps that end
  at the window edges.
- ``physics``: difference-of-exponentials pulses on a noisy pedestal, Poisson multiplicity
  (noise-only windows, pile-up), amplitudes up to saturation at 16383.
  About 10 % of corner windows are abandoned: no ``in_last``, the next window starts
  (the RTL then reports only pulses closed inside the window, ``c + NSA <= N``).
- ``stream``: stream mode (configured pedestal, MAX_PULSES = 0) over one long window with
  48-bit start indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pokerdaq._regmap import PULSE_FINDER

# the POKER registers in register order (firmware_models/registers.toml); a 10th column is ALGORITHM
REG_NAMES = tuple(r.name for r in PULSE_FINDER if r.name != "algorithm")
RAIL = 16383


@dataclass
class Campaign:
    """Stimulus for one simulation run (all arrays, saved with ``np.savez``)."""

    nch: int
    regs: np.ndarray  # (B, nch, 9) int64, columns REG_NAMES
    batch_n: np.ndarray  # (B,) window length N of each batch
    batch_nwin: np.ndarray  # (B,) windows in each batch
    samples: np.ndarray  # (S, nch) uint16, all windows back to back
    gaps: np.ndarray  # (S,) uint8, idle clocks (valid low) before each sample
    index0: np.ndarray  # (W,) uint64, absolute index of each window's first sample
    last_sent: np.ndarray  # (W,) uint8, 0: the window is abandoned (no in_last; the next
    # window's in_first follows), never the last window of a batch

    def save(self, path) -> None:
        np.savez(
            path,
            nch=self.nch,
            regs=self.regs,
            batch_n=self.batch_n,
            batch_nwin=self.batch_nwin,
            samples=self.samples,
            gaps=self.gaps,
            index0=self.index0,
            last_sent=self.last_sent,
        )

    @property
    def n_channel_windows(self) -> int:
        return int(self.batch_nwin.sum()) * self.nch

    def windows(self):
        """Yield (window number, batch number, N, index0, samples (N, nch) view)."""
        pos = 0
        w = 0
        for b, (n, nwin) in enumerate(zip(self.batch_n, self.batch_nwin)):
            for _ in range(int(nwin)):
                yield w, b, int(n), int(self.index0[w]), self.samples[pos : pos + n]
                pos += int(n)
                w += 1


# ---------------------------------------------------------------------------- registers


def _corner_regs(rng: np.random.Generator, n: int) -> tuple[list[int], int]:
    u = rng.random()
    if u < 0.45:
        nsa = int(rng.integers(1, min(8, n) + 1))
    elif u < 0.8:
        nsa = int(rng.integers(1, min(64, n) + 1))
    else:
        nsa = int(rng.integers(1, min(511, n) + 1))
    room = min(63, n - nsa)
    u = rng.random()
    nsb = 0 if u < 0.25 else (room if u < 0.4 else int(rng.integers(0, room + 1)))
    u = rng.random()
    nsat_max = min(15, nsa)
    nsat = 1 if u < 0.4 else (nsat_max if u < 0.55 else int(rng.integers(1, nsat_max + 1)))
    ped_mode = int(rng.random() < 0.5) if n >= 2 else 1
    log2_max = 5 if ped_mode else min(5, int(np.floor(np.log2(n - 1))))
    nped_log2 = int(rng.integers(0, log2_max + 1))
    u = rng.random()
    if u < 0.6:
        base = int(rng.integers(0, 2000))
    elif u < 0.7:
        base = int(rng.integers(0, 6))
    elif u < 0.8:
        base = int(rng.integers(16300, RAIL + 1))
    else:
        base = int(rng.integers(0, RAIL + 1))
    u = rng.random()
    if u < 0.6:
        thr = int(rng.integers(1, 41))
    elif u < 0.9:
        thr = int(rng.integers(1, 1001))
    else:
        thr = int(rng.integers(1, RAIL + 1))
    maxped = int(np.clip(base + rng.integers(-4, 12), 0, RAIL))
    u = rng.random()
    max_pulses = 0 if u < 0.4 else (int(rng.integers(1, 5)) if u < 0.85 else int(rng.integers(1, 16)))
    ped_cfg = int(np.clip(base + rng.integers(-2, 3), 0, RAIL))
    return [thr, nsb, nsa, nsat, nped_log2, maxped, max_pulses, ped_mode, ped_cfg], base


def _physics_regs(rng: np.random.Generator, n: int, base: int) -> list[int]:
    nsa = int(rng.integers(3, min(40, n) + 1))
    nsb = int(rng.integers(0, min(4, n - nsa) + 1))
    nsat = int(rng.integers(1, min(3, nsa) + 1))
    ped_mode = int(rng.random() < 0.3)
    nped_log2 = int(rng.integers(2, min(4, int(np.floor(np.log2(n - 1)))) + 1))
    thr = int(rng.integers(10, 121))
    maxped = int(min(RAIL, base + 30))
    max_pulses = int(rng.choice([0, 1, 2, 3]))
    return [thr, nsb, nsa, nsat, nped_log2, maxped, max_pulses, ped_mode, base]


# ---------------------------------------------------------------------------- samples


def _corner_samples(rng: np.random.Generator, n: int, regs: list[int], base: int) -> np.ndarray:
    thr, _, nsa, _, nped_log2, maxped, _, ped_mode, ped_cfg = regs
    x = np.empty(n, dtype=np.int64)
    nped = 1 << nped_log2
    start = 0
    if ped_mode == 0:
        ped = base + rng.integers(-3, 4, size=nped)
        if rng.random() < 0.2:  # a spike above MAXPED in the pedestal
            ped[rng.integers(0, nped)] = maxped + int(rng.integers(1, 50))
        ped = np.clip(ped, 0, RAIL)
        x[:nped] = ped
        start = nped
        ped_sum = int(ped.sum())
    else:
        ped_sum = ped_cfg << nped_log2
    t_abs = (ped_sum >> nped_log2) + thr

    def levels() -> int:  # a level near T, the baseline or a rail, or anywhere
        choices = [
            t_abs - 2,
            t_abs - 1,
            t_abs,
            t_abs + 1,
            t_abs + 2,
            base,
            0,
            RAIL,
            int(rng.integers(0, RAIL + 1)),
            t_abs + int(rng.integers(-20, 300)),
        ]
        return int(rng.choice(choices))

    pos = start
    while pos < n:
        kind = rng.integers(0, 6)
        if kind == 0:  # flat run at a level near T or a rail
            seg = np.full(int(rng.integers(1, 9)), levels())
        elif kind == 1:  # noise straddling T
            seg = t_abs + rng.integers(-3, 4, size=int(rng.integers(1, 17)))
        elif kind == 2:  # pulse: rise, optional plateau, fall
            top = int(rng.integers(t_abs + 1, max(t_abs + 2, RAIL + 200)))
            rise = np.linspace(t_abs - int(rng.integers(0, 5)), top, int(rng.integers(1, 6)))
            plateau = np.full(int(rng.integers(0, 4)), top)
            fall = np.linspace(top, t_abs - int(rng.integers(-3, 30)), int(rng.integers(1, 2 * nsa + 3)))
            seg = np.concatenate([rise, plateau, fall]).astype(np.int64)
        elif kind == 3:  # rail run
            seg = np.full(int(rng.integers(1, 6)), RAIL if rng.random() < 0.6 else 0)
        elif kind == 4:  # slow ramp (peak beyond NSA)
            seg = np.linspace(t_abs - 2, t_abs + int(rng.integers(1, 3000)), int(rng.integers(2, nsa + 4))).astype(
                np.int64
            )
        else:  # quiet baseline
            seg = base + rng.integers(-3, 4, size=int(rng.integers(1, 20)))
        k = min(len(seg), n - pos)
        x[pos : pos + k] = seg[:k]
        pos += k
    return np.clip(x, 0, RAIL).astype(np.uint16)


def _two_exp(dt: np.ndarray, tau_r: float, tau_d: float) -> np.ndarray:
    """Difference of exponentials, zero before its start (dt <= 0)."""
    d = np.maximum(dt, 0.0)
    return np.exp(-d / tau_d) - np.exp(-d / tau_r)


def _physics_samples(rng: np.random.Generator, n: int, base: int, lam: float) -> np.ndarray:
    with np.errstate(under="ignore"):  # exp() of long tails underflows to 0: fine
        return _physics_samples_body(rng, n, base, lam)


def _physics_samples_body(rng: np.random.Generator, n: int, base: int, lam: float) -> np.ndarray:
    sigma = rng.uniform(0.0, 8.0)
    x = base + rng.normal(0.0, sigma, size=n)
    t = np.arange(n, dtype=np.float64)
    tau_r = rng.uniform(0.5, 3.0)
    tau_d = rng.uniform(tau_r + 0.5, 20.0)
    tpk = tau_r * tau_d / (tau_d - tau_r) * np.log(tau_d / tau_r)
    norm = np.exp(-tpk / tau_d) - np.exp(-tpk / tau_r)
    for _ in range(rng.poisson(lam)):
        t0 = rng.uniform(-10.0, n)
        amp = np.exp(rng.uniform(np.log(5.0), np.log(40000.0)))
        dt = t - t0
        shape = _two_exp(dt, tau_r, tau_d) / norm
        x += amp * shape
        if rng.random() < 0.3:  # pile-up partner a few samples later
            dt2 = dt - rng.uniform(1.0, 15.0)
            x += amp * rng.uniform(0.1, 1.5) * _two_exp(dt2, tau_r, tau_d) / norm
    return np.clip(np.rint(x), 0, RAIL).astype(np.uint16)


# ---------------------------------------------------------------------------- campaign


def make_campaign(
    seed: int,
    n_channel_windows: int,
    nch: int,
    kinds: tuple[str, ...] = ("corner", "physics"),
    windows_per_batch: int = 8,
) -> Campaign:
    """At least ``n_channel_windows`` channel-windows of the given kinds, deterministic in seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, nch]))
    regs, batch_n, batch_nwin, chunks, gaps, index0, last_sent = [], [], [], [], [], [], []
    total = 0
    b = 0
    while total < n_channel_windows:
        kind = kinds[b % len(kinds)]
        b += 1
        if kind == "stream":
            n = int(rng.integers(4000, 20000))
            nwin = 1
        elif kind == "physics":
            n = int(rng.choice([32, 64, 128, 256]))
            nwin = windows_per_batch
        else:
            u = rng.random()
            n = (
                int(rng.integers(1, 97))
                if u < 0.6
                else (int(rng.integers(97, 401)) if u < 0.85 else int(rng.integers(401, 1025)))
            )
            nwin = windows_per_batch
        batch_regs, bases = [], []
        for _ in range(nch):
            if kind == "corner":
                r, base = _corner_regs(rng, n)
            else:
                base = int(rng.integers(50, 3000))
                r = _physics_regs(rng, n, base)
                if kind == "stream":
                    r[7], r[6] = 1, 0  # configured pedestal, unlimited pulses
            batch_regs.append(r)
            bases.append(base)
        lam = rng.uniform(0.0, 3.0) if kind == "physics" else rng.uniform(20.0, 200.0) * n / 10000
        for k in range(nwin):
            # corner batches abandon some windows (in_first without in_last before it)
            last_sent.append(0 if (kind == "corner" and k < nwin - 1 and rng.random() < 0.1) else 1)
            win = np.empty((n, nch), dtype=np.uint16)
            for ch in range(nch):
                if kind == "corner":
                    win[:, ch] = _corner_samples(rng, n, batch_regs[ch], bases[ch])
                else:
                    win[:, ch] = _physics_samples(rng, n, bases[ch], lam)
            chunks.append(win)
            start = 0 if (kind != "stream" and rng.random() < 0.8) else int(rng.integers(0, (1 << 48) - n - 1))
            index0.append(start)
        gap_p = float(rng.choice([0.0, 0.0, 0.05, 0.3]))
        n_slots = n * nwin
        g = (rng.random(n_slots) < gap_p) * rng.integers(1, 4, size=n_slots)
        gaps.append(g.astype(np.uint8))
        regs.append(batch_regs)
        batch_n.append(n)
        batch_nwin.append(nwin)
        total += nwin * nch
    return Campaign(
        nch=nch,
        regs=np.asarray(regs, dtype=np.int64),
        batch_n=np.asarray(batch_n, dtype=np.int64),
        batch_nwin=np.asarray(batch_nwin, dtype=np.int64),
        samples=np.concatenate(chunks, axis=0),
        gaps=np.concatenate(gaps),
        index0=np.asarray(index0, dtype=np.uint64),
        last_sent=np.asarray(last_sent, dtype=np.uint8),
    )
