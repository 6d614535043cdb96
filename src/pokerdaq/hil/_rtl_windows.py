"""Window mode on the stream trigger RTL: readout windows laid on one time line and mapped back.

``trigger_top`` (firmware_models) is the stream trigger of docs/firmware-spec.md Part 2: it
takes primitives in time order and decides beam candidates, with prescalers, dead time and a
random generator. ``pokerdaq.trigger.trigger_windows`` is window mode (2.13): per readout
window, ``T_REF`` is the window's first beam candidate, else ``default_ref`` with BEAM clear;
no prescaler, dead time, random trigger or pile-up history; both halves of the trigger word
hold the raw types. The RTL DUT reproduces window mode *by construction*:

1. **Time line.** Window ``w`` starts at tick ``base + w * stride``; its primitives keep their
   times relative to the window start (``TIME + 64 * (base + w * stride)``). ``stride``
   (:func:`window_timeline`) is large enough that no candidate of one window sees another's
   primitives (its windows ``[T_REF + SPAN_LO, T_REF + SPAN_HI)`` and its coincidence window
   stay inside its own slot, for ``T_REF`` anywhere in the window or at ``default_ref``), that
   a window's first beam candidate lies at least ``PILEUP_GUARD`` after the previous window's
   last one (so PILEUP is never set on it), and that every decision is complete at the end.
2. **Registers** (:func:`window_mode_registers`): the configuration's registers with
   ``DEAD = 0`` (no dead time), every ``PRESCALE = 1`` (every raw type passes, so the passed
   half equals the raw half), and the random generator periodic with period ``stride``,
   phased (through ``base``) so that it fires once per window with ``T_REF`` exactly at the
   window's ``default_ref``. Busy is never raised. Everything else (calibration, LUTs,
   windows, cuts, ``LATENCY``, ``PILEUP_GUARD``) is loaded unchanged.
3. **Mapping back** (:func:`records_per_window`): a record belongs to the window whose slot
   holds its ``T_REF``. A window's record is its first *beam* record (condition bit RANDOM
   clear; the earliest ``T_REF``, the first beam candidate of 2.5), else its random record,
   with RANDOM removed from the conditions and from both halves of the trigger word (window
   mode: a window without a beam coincidence is evaluated at ``default_ref`` and has no raw
   type). ``T_REF`` and the timestamp are made relative to the window start again; the event
   number becomes the window index, as in ``trigger_windows``. Later beam records of a window
   (a second particle in it) are not part of window mode and are dropped; a window without a
   beam record and with zero or several random records is handed over as it is, so the
   harness reports it (``n_triggers``).

Restrictions (refused with ValueError, never compared): ``default_ref`` must be a whole
sample (a multiple of 64 fine units: a random candidate's ``T_REF`` is
``(ISSUE - LATENCY) * 64``), and the registers must fit the trigger_top build
(``_trigger_stimulus.check_trigger_limits``). A window with more primitives than the RTL's
primitive buffer (1024) makes it drop primitives: the DUT reports that as a fault.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..trigger import TRIGGER_DTYPE, ConditionBits, TriggerBits, TriggerRegisters
from ..trigger._dtypes import N_TYPES
from ..trigger._registers import (
    P_DEAD,
    P_GUARD,
    P_LAT,
    P_PRESCALE,
    P_RND_MODE,
    P_RND_PARAM,
    P_SPAN_HI,
    P_SPAN_LO,
    RND_PERIODIC,
)
from ._trigger_stimulus import TriggerSegment, check_trigger_limits

FINE = 64  # fine time units per sample tick
_RANDOM_BITS = TriggerBits.RANDOM | TriggerBits.RANDOM << TriggerBits.RAW_SHIFT


@dataclass(frozen=True)
class WindowTimeline:
    """Where each window lies on the RTL's time line (ticks), and the random-trigger period."""

    n_windows: int
    n_samples: int
    default_ref: int  # fine units, relative to a window's first sample
    stride: int  # ticks from one window's start to the next; the random-trigger period
    base: int  # tick of window 0's first sample

    def start(self, window) -> np.ndarray:
        """First tick of ``window`` (int or array)."""
        return self.base + np.asarray(window, np.int64) * self.stride

    @property
    def end_tick(self) -> int:
        """Last advance: every decision of the windows made, no random fire beyond the last window."""
        return (self.n_windows + 1) * self.stride - 1

    @property
    def ref_lo(self) -> int:
        """Smallest window-relative T_REF of a window (fine): its first sample or ``default_ref``."""
        return min(0, self.default_ref)


def check_default_ref(default_ref: int) -> None:
    if int(default_ref) % FINE:
        raise ValueError(
            f"default_ref = {default_ref}: the RTL trigger evaluates a window without a beam "
            f"coincidence with a periodic random candidate, whose T_REF is a whole sample; expected a "
            f"multiple of {FINE} fine units (pretrigger_samples * 64)"
        )


def window_timeline(n_windows: int, n_samples: int, default_ref: int, regs: TriggerRegisters) -> WindowTimeline:
    """The time line of ``n_windows`` windows of ``n_samples`` samples for registers ``regs``.

    Raises ValueError for a ``default_ref`` that is not a multiple of 64 (see the module notes).
    """
    if n_windows < 1 or n_samples < 1:
        raise ValueError(f"n_windows = {n_windows}, n_samples = {n_samples}: expected >= 1")
    check_default_ref(default_ref)
    dref = int(default_ref)
    d = dref // FINE
    last = n_samples * FINE - 1  # last fine time of a primitive inside its window
    need_fine = max(
        max(last, dref) + regs[P_SPAN_HI],  # a decision's windows end before the next slot
        n_samples * FINE - min(0, dref) - regs[P_SPAN_LO],  # ... and start after the previous slot's primitives
        last + regs[P_GUARD],  # previous window's last beam candidate outside the guard
    )
    stride = max(
        -(-need_fine // FINE),
        1 + regs[P_LAT] + max(d, 0),  # the random candidate of window 0 at T_REF >= 0
        n_samples - d + 1,
    )  # the last beam decision before the end; no extra random fire
    return WindowTimeline(n_windows, n_samples, dref, int(stride), int(stride - 1 - regs[P_LAT] - d))


def window_mode_registers(regs: TriggerRegisters, timeline: WindowTimeline) -> TriggerRegisters:
    """``regs`` with no dead time, every prescaler 1 and a periodic random trigger of period ``stride``."""
    check_trigger_limits(regs)
    p = regs.params.copy()
    p[P_DEAD] = 0
    p[P_PRESCALE : P_PRESCALE + N_TYPES] = 1
    p[P_RND_MODE] = RND_PERIODIC
    p[P_RND_PARAM] = timeline.stride
    return dataclasses.replace(regs, params=p)


def timeline_segment(
    pulses: np.ndarray, window: np.ndarray, timeline: WindowTimeline, regs: TriggerRegisters
) -> TriggerSegment:
    """The primitives of every window on the time line, one slice (advance) per window.

    ``regs`` are the window-mode registers (:func:`window_mode_registers`). Slice ``w`` ends at
    the next window's first tick, the last one at ``timeline.end_tick``.
    """
    n = timeline.n_windows
    times = pulses["time"].astype(np.int64) + timeline.start(window) * FINE
    order = np.lexsort((pulses["channel"], times))
    rec = np.zeros(len(pulses), dtype=[("channel", np.int64), ("time", np.int64), ("integral_net", np.int64)])
    rec["channel"] = pulses["channel"][order]
    rec["time"] = times[order]
    rec["integral_net"] = pulses["integral_net"][order]
    ends = [int(t) for t in timeline.start(np.arange(1, n))] + [timeline.end_tick]
    cuts = [int(c) for c in np.searchsorted(rec["time"], np.asarray(ends, np.int64) * FINE)]
    cuts[-1] = len(rec)
    return TriggerSegment(regs=regs, records=rec, ends=ends, busy=[False] * n, cuts=cuts)


def records_per_window(records: np.ndarray, timeline: WindowTimeline) -> tuple[np.ndarray, np.ndarray, dict]:
    """Window-mode records (TRIGGER_DTYPE, window-relative) and their window, from the RTL's records.

    Returns ``(triggers, window, counts)``; ``counts`` has ``beam`` and ``random`` records seen,
    ``beam_dropped`` (later beam candidates of a window) and ``unmapped`` (a T_REF outside
    every window's slot: never produced by a correct RTL).
    """
    slot = timeline.stride * FINE
    rel0 = records["ref_time"].astype(np.int64) - timeline.base * FINE - timeline.ref_lo
    win = rel0 // slot
    inside = (win >= 0) & (win < timeline.n_windows)
    is_random = (records["conditions"].astype(np.int64) & ConditionBits.RANDOM) != 0
    counts = {"beam": int((~is_random).sum()), "random": int(is_random.sum()), "unmapped": int((~inside).sum())}
    rec, win, is_random = records[inside], win[inside], is_random[inside]
    # per window: beam records in T_REF order first, then random ones
    order = np.lexsort((rec["ref_time"], is_random, win))
    rec, win, is_random = rec[order], win[order], is_random[order]
    first = np.r_[True, win[1:] != win[:-1]]
    window_has_beam = np.zeros(timeline.n_windows, bool)
    window_has_beam[win[first & ~is_random]] = True
    keep = (first & ~is_random) | (is_random & ~window_has_beam[win])
    counts["beam_dropped"] = int((~is_random & ~keep).sum())
    out = rec[keep].astype(TRIGGER_DTYPE, copy=True)
    w = win[keep]
    start = timeline.start(w)
    out["ref_time"] = out["ref_time"].astype(np.int64) - start * FINE
    out["timestamp"] = (out["timestamp"].astype(np.int64) - start).astype(np.uint64)
    out["event_number"] = w.astype(np.uint64)
    rnd = is_random[keep]
    out["conditions"][rnd] &= np.uint32(~ConditionBits.RANDOM & 0xFFFFFFFF)
    out["trigger_word"][rnd] &= np.uint32(~_RANDOM_BITS & 0xFFFFFFFF)
    return out, w.astype(np.int64), counts
