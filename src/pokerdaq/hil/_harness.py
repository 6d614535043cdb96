"""The harness: stream windows into a DUT, compare its pulses with the reference, report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..dsp import PULSE_DTYPE, PulseParams, find_pulses_batch
from ..trigger import TRIGGER_DTYPE, TriggerRegisters, trigger_windows
from ._dut import DutFault

COMPARED_FIELDS = (
    "pulse_index",
    "crossing",
    "coarse_time",
    "fine_time",
    "time",
    "peak",
    "integral",
    "integral_net",
    "pedestal",
    "n_over",
    "quality",
)
TRIGGER_COMPARED_FIELDS = tuple(n for n in TRIGGER_DTYPE.names or () if n != "event_number")
"""Trigger record fields compared (the event number is the window's place in its request)."""
CONTEXT_SAMPLES = 8
MAX_LISTED = 50


def reference_pulses(samples: np.ndarray, params: PulseParams, kind: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """Reference records and their window index: ``find_pulses_batch`` or the naive reference."""
    if kind == "numba":
        pulses, offsets = find_pulses_batch(samples, params)
        return pulses, np.repeat(np.arange(len(samples), dtype=np.int64), np.diff(offsets))
    if kind == "naive":
        from ..dsp._reference import find_pulses_reference

        parts, windows = [], []
        for w in range(len(samples)):
            rec = find_pulses_reference(samples[w], params)
            parts.append(rec)
            windows.append(np.full(len(rec), w, np.int64))
        if not parts:
            return np.zeros(0, PULSE_DTYPE), np.zeros(0, np.int64)
        return np.concatenate(parts), np.concatenate(windows)
    raise ValueError(f"reference = {kind!r}: expected 'numba' or 'naive'")


def _record(rec: np.void) -> dict[str, int]:
    return {n: int(rec[n]) for n in rec.dtype.names or ()}


@dataclass
class HilReport:
    """Outcome of one harness run (JSON-ready through :meth:`as_dict`)."""

    dut: str
    reference: str
    n_windows: int
    n_channels: int
    window_samples: int
    windows_sent: int = 0
    pulses_reference: int = 0
    pulses_dut: int = 0
    mismatched_windows: int = 0
    mismatched_channel_windows: int = 0
    field_mismatches: dict[str, int] = field(default_factory=dict)
    first_mismatch: dict[str, Any] | None = None
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    fault: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    stale_replies: int = 0
    triggers_compared: bool = False
    trigger_windows_compared: int = 0
    triggers_reference: dict[str, int] = field(default_factory=dict)
    triggers_dut: dict[str, int] = field(default_factory=dict)
    trigger_mismatched_windows: int = 0
    trigger_field_mismatches: dict[str, int] = field(default_factory=dict)
    first_trigger_mismatch: dict[str, Any] | None = None
    trigger_mismatches: list[dict[str, Any]] = field(default_factory=list)
    dut_stats: dict[str, Any] = field(default_factory=dict)
    """What the DUT says about its own run (RTL: simulation clocks and times, trigger records seen)."""

    @property
    def passed(self) -> bool:
        return (
            self.fault is None
            and self.mismatched_channel_windows == 0
            and self.trigger_mismatched_windows == 0
            and self.windows_sent == self.n_windows
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def compare(
    ref: np.ndarray,
    ref_win: np.ndarray,
    dut: np.ndarray,
    dut_win: np.ndarray,
    samples: np.ndarray | Sequence[np.ndarray],
    event_numbers: np.ndarray,
    report: HilReport,
    window_offset: int = 0,
    pulse_index_bits: int = 8,
    max_listed: int = MAX_LISTED,
) -> None:
    """Compare DUT and reference records of a block of windows, accumulating into ``report``.

    The one pulse-record scoreboard: ``pokerdaq hil`` and the firmware tests (every RTL record
    against the naive reference, tests/firmware/_scoreboard.py) both use it.
    Records are matched per (window, channel) in time order. The first difference is kept with
    its event, channel, sample (the crossing), both records and the samples around it;
    ``samples[w]`` is window ``w``'s ``(channels, samples)`` array (windows may differ in
    length), and up to ``max_listed`` mismatching (window, channel) pairs are listed.
    ``pulse_index`` is compared on its low ``pulse_index_bits`` bits (the firmware's width,
    docs/firmware-spec.md 1.10: 4 bits in the RTL, 8 in software).
    """
    if pulse_index_bits < 8:
        mask = (1 << pulse_index_bits) - 1
        ref, dut = ref.copy(), dut.copy()
        ref["pulse_index"] &= mask
        dut["pulse_index"] &= mask

    def order(rec, win):
        idx = np.lexsort((rec["crossing"], rec["channel"], win))
        return rec[idx], win[idx]

    ref, ref_win = order(ref, ref_win)
    dut, dut_win = order(dut, dut_win)
    n_ch_key = 1 << 16
    ref_key = ref_win * n_ch_key + ref["channel"].astype(np.int64)
    dut_key = dut_win * n_ch_key + dut["channel"].astype(np.int64)
    keys = np.union1d(ref_key, dut_key)
    ref_first = np.searchsorted(ref_key, keys)
    ref_n = np.searchsorted(ref_key, keys, side="right") - ref_first
    dut_first = np.searchsorted(dut_key, keys)
    dut_n = np.searchsorted(dut_key, keys, side="right") - dut_first

    bad_key = ref_n != dut_n
    # equal counts: compare row by row
    same = ~bad_key
    rows_r = np.concatenate([np.arange(a, a + n) for a, n in zip(ref_first[same], ref_n[same])] or [np.zeros(0, int)])
    rows_d = np.concatenate([np.arange(a, a + n) for a, n in zip(dut_first[same], dut_n[same])] or [np.zeros(0, int)])
    row_key_index = np.repeat(np.flatnonzero(same), ref_n[same])
    row_bad = np.zeros(len(rows_r), bool)
    for name in COMPARED_FIELDS:
        diff = ref[name][rows_r].astype(np.int64) != dut[name][rows_d].astype(np.int64)
        if diff.any():
            report.field_mismatches[name] = report.field_mismatches.get(name, 0) + int(diff.sum())
        row_bad |= diff
    bad_key[row_key_index[row_bad]] = True
    if bad_key.any():
        report.mismatched_channel_windows += int(bad_key.sum())
        report.mismatched_windows += len(np.unique(keys[bad_key] // n_ch_key))
    n_bad_count = int((ref_n != dut_n).sum())
    if n_bad_count:
        report.field_mismatches["n_pulses"] = report.field_mismatches.get("n_pulses", 0) + n_bad_count

    for k in np.flatnonzero(bad_key):
        if len(report.mismatches) >= max_listed:
            break
        w, ch = int(keys[k] // n_ch_key), int(keys[k] % n_ch_key)
        r = ref[ref_first[k] : ref_first[k] + ref_n[k]]
        d = dut[dut_first[k] : dut_first[k] + dut_n[k]]
        entry: dict[str, Any] = {
            "window": window_offset + w,
            "event_number": int(event_numbers[w]),
            "channel": ch,
            "pulses_reference": int(ref_n[k]),
            "pulses_dut": int(dut_n[k]),
        }
        for i in range(max(len(r), len(d))):
            rr = _record(r[i]) if i < len(r) else None
            dd = _record(d[i]) if i < len(d) else None
            fields = [n for n in COMPARED_FIELDS if rr is None or dd is None or rr[n] != dd[n]]
            if fields:
                sample = (rr or dd)["crossing"]  # type: ignore[index]  # i < max(len(r), len(d)): one exists
                window = samples[w]
                lo, hi = max(0, sample - CONTEXT_SAMPLES), min(window.shape[1], sample + CONTEXT_SAMPLES + 1)
                entry.update(
                    pulse=i,
                    sample=int(sample),
                    fields=fields if rr and dd else ["missing pulse"],
                    reference=rr,
                    dut=dd,
                    context={"first_sample": int(lo), "samples": [int(v) for v in window[ch, lo:hi]]},
                )
                if rr and dd:
                    entry["values"] = {n: {"reference": rr[n], "dut": dd[n]} for n in fields}
                break
        report.mismatches.append(entry)
        if report.first_mismatch is None:
            report.first_mismatch = entry


def _count_types(report_counts: dict[str, int], triggers: np.ndarray) -> None:
    """Accumulate windows per raw trigger type (bits 8-15 of the trigger word)."""
    from ..trigger import TriggerBits

    raw = triggers["trigger_word"].astype(np.int64) >> TriggerBits.RAW_SHIFT
    for k, name in enumerate(TriggerBits.NAMES):
        report_counts[name] = report_counts.get(name, 0) + int(((raw >> k) & 1).sum())


def compare_triggers(
    ref: np.ndarray,
    dut: np.ndarray,
    dut_win: np.ndarray,
    event_numbers: np.ndarray,
    report: HilReport,
    window_offset: int = 0,
) -> None:
    """Compare the DUT's trigger records of a block of windows with the reference, one per window.

    ``ref`` holds one TRIGGER_DTYPE record per window of the block (window order); the DUT's
    records carry their window in ``dut_win``. A window the DUT answered zero or several times
    is a mismatch (field ``n_triggers``); otherwise every field of ``TRIGGER_COMPARED_FIELDS``
    is compared and the first diverging window is kept with its fields and both values.
    """
    n = len(ref)
    counts = np.bincount(dut_win, minlength=n)[:n] if len(dut_win) else np.zeros(n, np.int64)
    bad = counts != 1
    if bad.any():
        report.trigger_field_mismatches["n_triggers"] = report.trigger_field_mismatches.get("n_triggers", 0) + int(
            bad.sum()
        )
    # the DUT record of each window answered exactly once
    order = np.argsort(dut_win, kind="stable")
    aligned = np.zeros(n, TRIGGER_DTYPE)
    single = np.flatnonzero(counts == 1)
    first = np.searchsorted(dut_win[order], single)
    aligned[single] = dut[order][first]
    diffs = {}
    for name in TRIGGER_COMPARED_FIELDS:
        diff = (ref[name].astype(np.int64) != aligned[name].astype(np.int64)) & (counts == 1)
        if diff.any():
            report.trigger_field_mismatches[name] = report.trigger_field_mismatches.get(name, 0) + int(diff.sum())
            diffs[name] = diff
            bad |= diff
    report.trigger_windows_compared += n
    report.trigger_mismatched_windows += int(bad.sum())
    _count_types(report.triggers_reference, ref)
    _count_types(report.triggers_dut, aligned[counts == 1])
    for w in np.flatnonzero(bad):
        if len(report.trigger_mismatches) >= MAX_LISTED:
            break
        entry: dict[str, Any] = {
            "window": window_offset + int(w),
            "event_number": int(event_numbers[w]),
            "triggers_dut": int(counts[w]),
        }
        if counts[w] != 1:
            entry["fields"] = ["n_triggers"]
            entry["values"] = {"n_triggers": {"reference": 1, "dut": int(counts[w])}}
        else:
            fields = [name for name in TRIGGER_COMPARED_FIELDS if name in diffs and diffs[name][w]]
            entry["fields"] = fields
            entry["values"] = {name: {"reference": int(ref[name][w]), "dut": int(aligned[name][w])} for name in fields}
        entry["reference"] = _record(ref[w])
        report.trigger_mismatches.append(entry)
        if report.first_trigger_mismatch is None:
            report.first_trigger_mismatch = entry


def run_hil(
    dut,
    samples: np.ndarray,
    params: PulseParams,
    *,
    event_numbers: np.ndarray | None = None,
    reference: str = "numba",
    trigger: TriggerRegisters | None = None,
    default_ref: int = 0,
) -> HilReport:
    """Send every window to ``dut`` in its preferred batches and compare with the reference.

    Parameters
    ----------
    dut
        A :class:`~pokerdaq.hil._dut.Dut` (model, RTL or TCP board).
    samples
        uint16 (windows, channels, window_samples).
    params
        Pulse-finder registers of the channels.
    event_numbers
        Event number of each window for the report (default: the window index).
    reference
        ``numba`` (``pokerdaq.dsp.find_pulses_batch``) or ``naive`` (the pure-Python reference).
    trigger
        Trigger registers: when given and the DUT returns trigger records (it has
        ``configure_trigger``), the DUT's trigger record of every window is compared with
        ``pokerdaq.trigger.trigger_windows`` on the reference pulses (window mode).
    default_ref
        Reference time (1/64 sample) of windows without a beam coincidence.

    Returns
    -------
    HilReport
        ``passed`` is False on any mismatch or DUT fault (``fault`` says which).
    """
    samples = np.ascontiguousarray(samples, dtype=np.uint16)
    if samples.ndim != 3:
        raise ValueError(f"samples: expected (windows, channels, samples), got shape {samples.shape}")
    n, nch, ns = samples.shape
    if event_numbers is None:
        event_numbers = np.arange(n, dtype=np.int64)
    report = HilReport(dut=dut.name, reference=reference, n_windows=n, n_channels=nch, window_samples=ns)
    t0 = time.monotonic()
    batch = dut.batch_windows or max(n, 1)
    with_trigger = trigger is not None and hasattr(dut, "configure_trigger")
    report.triggers_compared = with_trigger
    try:
        dut.configure(params)
        if with_trigger:
            dut.configure_trigger(trigger, default_ref)
        for a in range(0, n, batch):
            block = samples[a : a + batch]
            got, got_win, *rest = dut.process(a, block)
            ref, ref_win = reference_pulses(block, params, reference)
            if with_trigger:
                trig, trig_win = rest[0]
                ref_trig = trigger_windows(
                    ref,
                    ref_win,
                    len(block),
                    trigger,  # type: ignore[arg-type]  # with_trigger: not None
                    default_ref=default_ref,
                )
                compare_triggers(ref_trig, trig, trig_win, event_numbers[a : a + batch], report, window_offset=a)
            report.windows_sent += len(block)
            report.pulses_reference += len(ref)
            report.pulses_dut += len(got)
            compare(
                ref,
                ref_win,
                got,
                got_win,
                block,
                event_numbers[a : a + batch],
                report,
                window_offset=a,
                pulse_index_bits=int(getattr(dut, "pulse_index_bits", 8)),
            )
    except DutFault as fault:
        report.fault = {
            "kind": fault.kind,
            "message": str(fault),
            **fault.context,
            "windows_completed": report.windows_sent,
        }
    finally:
        report.stale_replies = int(getattr(dut, "stale_replies", 0))
        report.dut_stats = dict(getattr(dut, "stats", {}))
        report.elapsed_s = time.monotonic() - t0
    return report
