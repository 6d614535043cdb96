"""Truth of triggered readout windows: which beam particle of the time line an event holds.

The DAQ reads out windows around trigger times, not around particles. For an event with
trigger (reference) tick ``T`` and readout window ``[S, S + n)`` (``S = T - pretrigger``), the
truth row is that of the beam particle of the run's :class:`~pokerdaq.sim._beam.BeamTimeline`
(the one the boards' emulator renders) chosen by this rule (docs/hdf5-layout.md, "Truth of
DAQ runs"):

* candidates: the particles whose arrival tick ``t_sample`` lies in ``[S, S + n)``;
* the event's particle is the latest candidate with ``t_sample <= T`` (a beam trigger's
  reference time is the earliest beam-counter pulse time, which follows the arrival of its
  particle by about one tick), else the earliest candidate (all arrived after ``T``);
* ``n_pileup``: the other particles whose pulses reach the window, i.e. arriving from
  ``lookback_ns`` before ``S`` to the window end (the same count as :func:`iter_windows`);
* no candidate: a row with ``species = Species.NONE``, ``event = 2**64 - 1``, ``t_sample = T``,
  ``t_ns = T x sample period``, every energy and position 0 and ``n_pileup`` the particles
  whose pulses reach the window.
"""

from __future__ import annotations

import numpy as np

from ._beam import BLOCK_SAMPLES, BeamTimeline
from ._truth import NO_PARTICLE_EVENT, TRUTH_DTYPE, Species


def window_truth(
    timeline: BeamTimeline, ref_ticks: np.ndarray, first_ticks: np.ndarray, n_samples: int, lookback_ns: float
) -> np.ndarray:
    """One ``TRUTH_DTYPE`` row per readout window, by the matching rule of the module docstring.

    Parameters
    ----------
    timeline
        The beam time line of the run (same configuration and seed as the emulator that
        rendered the windows).
    ref_ticks
        Trigger reference tick ``T`` of each window (the DAQ event timestamp), integers >= 0.
    first_ticks
        First tick ``S`` of each window (``T - pretrigger``; may be negative at the run start).
    n_samples
        Window length in samples, >= 1.
    lookback_ns
        How long before a window a particle's pulse can still reach it
        (``pokerdaq.sim.build_tables(cfg).lookback_ns``), >= 0.

    Returns
    -------
    np.ndarray
        ``TRUTH_DTYPE`` rows, one per window, in the order given.

    Raises
    ------
    ValueError
        For arrays of different shapes, a window that does not contain its reference tick, or
        a bad ``n_samples`` / ``lookback_ns``.
    """
    ref = np.asarray(ref_ticks)
    first = np.asarray(first_ticks)
    if ref.ndim != 1 or first.shape != ref.shape:
        raise ValueError(f"ref_ticks, first_ticks: shapes {ref.shape} and {first.shape}, expected two equal 1-d shapes")
    if len(ref) and not (np.issubdtype(ref.dtype, np.integer) and np.issubdtype(first.dtype, np.integer)):
        raise ValueError(f"ref_ticks, first_ticks: dtypes {ref.dtype}, {first.dtype}, expected integers")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples: {n_samples!r}, expected an integer >= 1")
    if not (np.isfinite(lookback_ns) and lookback_ns >= 0):
        raise ValueError(f"lookback_ns: {lookback_ns!r}, expected a finite number >= 0")
    ref = ref.astype(np.int64)
    first = first.astype(np.int64)
    bad = (ref < first) | (ref >= first + n_samples)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"ref_ticks[{i}] = {int(ref[i])}: expected inside its window [{int(first[i])}, {int(first[i]) + n_samples})"
        )
    return _window_truth(timeline, ref, first, int(n_samples), float(lookback_ns))


def _window_truth(tl: BeamTimeline, ref: np.ndarray, first: np.ndarray, n: int, lookback_ns: float) -> np.ndarray:
    out = np.zeros(len(ref), TRUTH_DTYPE)
    if len(ref) == 0:
        return out
    sample_ns = tl.sample_ns
    # every block that can hold a particle arriving from lookback before a window to its end;
    # blocks are in time order, so their truth rows concatenated stay sorted by time
    k0 = np.floor((first * sample_ns - lookback_ns) / tl.block_ns).astype(np.int64)
    k1 = (first + n - 1) // BLOCK_SAMPLES
    need = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(k0.tolist(), k1.tolist())]))
    need = need[need >= 0]
    parts = [tl.block(int(k)).truth for k in need]
    around = np.concatenate(parts) if parts else np.zeros(0, TRUTH_DTYPE)
    t_sample, t_ns = around["t_sample"], around["t_ns"]
    lo = np.searchsorted(t_sample, first, side="left")  # candidates [lo, hi)
    hi = np.searchsorted(t_sample, first + n, side="left")
    latest = np.searchsorted(t_sample, ref, side="right") - 1  # latest arrival <= T
    pick = np.where(latest >= lo, latest, lo)
    matched = hi > lo
    reach_lo = np.searchsorted(t_ns, first * sample_ns - lookback_ns, side="left")
    reach_hi = np.searchsorted(t_ns, (first + n) * sample_ns, side="left")
    n_reach = reach_hi - reach_lo
    out[matched] = around[pick[matched]]
    none = ~matched
    out["event"][none] = NO_PARTICLE_EVENT
    out["species"][none] = Species.NONE
    out["t_sample"][none] = ref[none]
    out["t_ns"][none] = ref[none] * sample_ns
    out["n_pileup"] = np.minimum(n_reach - matched, np.iinfo(np.uint16).max)
    return out
