"""The stateful streaming trigger model and the window-mode function (public API, validation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Config
from ._dtypes import N_TYPES, TRIGGER_DTYPE, TriggerBits
from ._kernels import (
    K_ACCEPTED,
    K_LOST_BUSY,
    K_LOST_DEAD,
    K_PRESCALED,
    K_RAW,
    N_COUNTER_ROWS,
    N_OUT,
    N_STATE,
    O_BMASK,
    O_COND,
    O_ECALO,
    O_EECAL,
    O_EHCAL,
    O_EPRS,
    O_ESRD,
    O_EVENT,
    O_EVETO,
    O_REF,
    O_SMASK,
    O_TIMESTAMP,
    O_VMASK,
    O_WORD,
    S_ATTEMPTS,
    S_DEAD_UNTIL,
    S_EVENT,
    S_LAST_BEAM,
    S_LOST_BUSY,
    S_LOST_DEAD,
    S_PRESCALE,
    S_RND,
    _beam_candidates,
    _board_sums,
    _channel_energies,
    _process_candidates,
    _random_ticks,
    _union_length,
    _windows,
)
from ._registers import (
    P_DEAD,
    P_FRAC,
    P_LAT,
    P_N_BOARDS,
    P_RND_MODE,
    P_RND_PARAM,
    P_SPAN_HI,
    P_SPAN_LO,
    TriggerRegisters,
)

_NEEDED_FIELDS = ("channel", "time", "integral_net")
_FAR_PAST = -(1 << 62)

_COLUMNS = {
    "event_number": O_EVENT,
    "timestamp": O_TIMESTAMP,
    "ref_time": O_REF,
    "trigger_word": O_WORD,
    "conditions": O_COND,
    "beam_mask": O_BMASK,
    "srd_mask": O_SMASK,
    "veto_mask": O_VMASK,
    "e_preshower": O_EPRS,
    "e_ecal": O_EECAL,
    "e_calo": O_ECALO,
    "e_hcal": O_EHCAL,
    "e_srd": O_ESRD,
    "e_veto": O_EVETO,
}


def _to_records(matrix: np.ndarray) -> np.ndarray:
    out = np.zeros(len(matrix), dtype=TRIGGER_DTYPE)
    for name, col in _COLUMNS.items():
        out[name] = matrix[:, col]
    return out


def _registers(cfg: Config | TriggerRegisters, seed: int | None = None) -> TriggerRegisters:
    if isinstance(cfg, TriggerRegisters):
        return cfg
    if isinstance(cfg, Config):
        return TriggerRegisters.from_config(cfg, seed)
    raise TypeError(f"cfg: expected a pokerdaq.config.Config or TriggerRegisters, got {type(cfg).__name__}")


def _check_records(records: np.ndarray, n_channels: int) -> None:
    if not isinstance(records, np.ndarray) or records.dtype.names is None:
        raise TypeError("records: expected a numpy structured array of pokerdaq.dsp.PULSE_DTYPE")
    missing = [f for f in _NEEDED_FIELDS if f not in records.dtype.names]
    if missing:
        raise ValueError(f"records: missing field(s) {', '.join(missing)}; expected PULSE_DTYPE records")
    if records.ndim != 1:
        raise ValueError(f"records: expected a 1-d array, got shape {records.shape}")
    if len(records):
        bad = records["channel"].astype(np.int64) >= n_channels
        if bad.any():
            raise ValueError(
                f"records['channel'] = {int(records['channel'][bad][0])}: expected a channel number below {n_channels}"
            )


def primitive_energies(records: np.ndarray, cfg: Config | TriggerRegisters) -> np.ndarray:
    """Calibrated channel energies (int64, LSB 1/16 MeV) of pulse records (spec 2.3).

    Parameters
    ----------
    records : numpy.ndarray of PULSE_DTYPE
    cfg : Config or TriggerRegisters

    Returns
    -------
    numpy.ndarray of int64, one energy per record.
    """
    regs = _registers(cfg)
    _check_records(records, regs.n_channels)
    return _channel_energies(
        records["channel"].astype(np.int64),
        records["integral_net"].astype(np.int64),
        regs.ch_gain,
        regs.ch_lut,
        regs.luts,
        regs.lut_shift,
        np.int64(regs[P_FRAC]),
    )


def board_partial_sums(records: np.ndarray, ref_time: int, cfg: Config | TriggerRegisters) -> np.ndarray:
    """Per-board partial sums around one reference time (spec 2.4), as a board would send them.

    Parameters
    ----------
    records : numpy.ndarray of PULSE_DTYPE
    ref_time : int
        ``T_REF`` in 1/64 sample.
    cfg : Config or TriggerRegisters

    Returns
    -------
    numpy.ndarray of int64, shape (n_boards, 3)
        Columns: pre-shower, ECAL, HCAL energy in LSB (1/16 MeV), u24 saturating.
    """
    regs = _registers(cfg)
    _check_records(records, regs.n_channels)
    out = np.zeros((regs[P_N_BOARDS], 3), np.int64)
    _board_sums(
        records["time"].astype(np.int64),
        records["channel"].astype(np.int64),
        primitive_energies(records, regs),
        np.int64(ref_time),
        regs.ch_role,
        regs.ch_board,
        regs.params,
        out,
    )
    return out


def trigger_windows(
    records: np.ndarray,
    window: np.ndarray,
    n_windows: int,
    cfg: Config | TriggerRegisters,
    *,
    default_ref: int | None = None,
) -> np.ndarray:
    """Window mode: the trigger decision for each one-particle readout window.

    The reference time of a window is the first beam coincidence found in it (spec 2.5); a
    window without one is evaluated at ``default_ref`` (default: ``pretrigger_samples * 64``)
    with the BEAM condition clear. No prescaler, dead time or random trigger applies: the
    trigger word holds the raw types in both halves.

    Parameters
    ----------
    records : numpy.ndarray of PULSE_DTYPE
        Pulses of all windows; times relative to each window's first sample.
    window : numpy.ndarray of int
        Window index (0 .. n_windows-1) of each record.
    n_windows : int
        Number of windows (rows returned).
    cfg : Config or TriggerRegisters
    default_ref : int, optional
        Reference time in 1/64 sample for windows without a beam coincidence (default:
        ``digitizer.pretrigger_samples * 64`` for a Config, 0 for TriggerRegisters).

    Returns
    -------
    numpy.ndarray of TRIGGER_DTYPE, shape (n_windows,)
    """
    regs = _registers(cfg)
    _check_records(records, regs.n_channels)
    window = np.asarray(window)
    if window.shape != records.shape:
        raise ValueError(f"window: expected shape {records.shape} (one index per record), got {window.shape}")
    if n_windows < 0:
        raise ValueError(f"n_windows = {n_windows}: expected >= 0")
    if len(window) and (window.min() < 0 or window.max() >= n_windows):
        raise ValueError(f"window: indices must lie in 0..{n_windows - 1}, got {window.min()}..{window.max()}")
    if default_ref is None:
        default_ref = 0 if not isinstance(cfg, Config) else cfg.digitizer.pretrigger_samples * 64
    window = window.astype(np.int64)
    times = records["time"].astype(np.int64)
    order = np.lexsort((records["channel"], times, window))
    times = times[order]
    chans = records["channel"].astype(np.int64)[order]
    energies = primitive_energies(records, regs)[order]
    bounds = np.searchsorted(window[order], np.arange(n_windows + 1))
    out = np.zeros((n_windows, N_OUT), np.int64)
    _windows(
        times,
        chans,
        energies,
        bounds[:-1].astype(np.int64),
        bounds[1:].astype(np.int64),
        np.int64(default_ref),
        regs.ch_role,
        regs.ch_bit,
        regs.ch_board,
        regs.params,
        out,
    )
    return _to_records(out)


@dataclass
class TriggerCounters:
    """Counters of a :class:`TriggerModel` run; per-type arrays follow ``TriggerBits.NAMES``.

    ``raw``: the type's condition fired; ``prescaled``: passed its prescaler; ``accepted``: in an
    accepted trigger; ``lost_dead`` / ``lost_busy``: passed the prescaler but arrived during
    dead time / busy. ``prescaled = accepted + lost_dead + lost_busy`` per type.
    Per candidate (a trigger may carry several types): ``attempts`` candidates passed a
    prescaler, ``triggers`` were accepted, ``lost_dead_triggers`` / ``lost_busy_triggers`` were
    not: ``attempts = triggers + lost_dead_triggers + lost_busy_triggers`` (the DAQ scalers'
    raw and accepted trigger counts).
    """

    raw: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, np.int64))
    prescaled: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, np.int64))
    accepted: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, np.int64))
    lost_dead: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, np.int64))
    lost_busy: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, np.int64))
    triggers: int = 0
    ticks: int = 0
    dead_ticks: int = 0
    busy_ticks: int = 0
    live_ticks: int = 0
    late_records: int = 0
    attempts: int = 0
    lost_dead_triggers: int = 0
    lost_busy_triggers: int = 0

    @property
    def live_fraction(self) -> float:
        return self.live_ticks / self.ticks if self.ticks else 1.0

    def as_dict(self) -> dict:
        d: dict[str, Any] = {
            "triggers": self.triggers,
            "ticks": self.ticks,
            "dead_ticks": self.dead_ticks,
            "busy_ticks": self.busy_ticks,
            "live_ticks": self.live_ticks,
            "live_fraction": self.live_fraction,
            "late_records": self.late_records,
            "attempts": self.attempts,
            "lost_dead_triggers": self.lost_dead_triggers,
            "lost_busy_triggers": self.lost_busy_triggers,
        }
        for row in ("raw", "prescaled", "accepted", "lost_dead", "lost_busy"):
            d[row] = {name: int(v) for name, v in zip(TriggerBits.NAMES, getattr(self, row))}
        return d


class TriggerModel:
    """The streaming trigger: successive time slices of pulse records in, accepted triggers out.

    Parameters
    ----------
    cfg : Config or TriggerRegisters
        The configuration (its [trigger] table, channel map, beam energy and sampling rate).
    seed : int, optional
        Seed of the random-trigger generator (default ``run.seed``); registers passed as
        ``cfg`` carry their own seed.
    max_buffered : int
        Limit of buffered records (those still inside an open window); beyond it
        :meth:`process` raises rather than grow without bound.

    Notes
    -----
    Call :meth:`process` with the records whose times lie in the stream up to ``end_sample``
    (every record with ``time < end_sample * 64`` must be in this call or an earlier one) and
    the end sample; triggers are returned once their issue tick is below ``end_sample``. Records
    older than the previous ``end_sample`` are counted in ``counters.late_records`` and dropped.
    :meth:`finish` drains the candidates still open at the end of the run.
    """

    def __init__(self, cfg: Config | TriggerRegisters, seed: int | None = None, *, max_buffered: int = 1 << 22) -> None:
        self.registers = _registers(cfg, seed)
        if max_buffered < 1:
            raise ValueError(f"max_buffered = {max_buffered}: expected >= 1")
        self.max_buffered = max_buffered
        self._state = np.zeros(N_STATE, np.int64)
        self._state[S_DEAD_UNTIL] = _FAR_PAST
        self._state[S_RND] = self.registers.random_seed
        self._state[S_LAST_BEAM] = _FAR_PAST
        self._counters = np.zeros((N_COUNTER_ROWS, N_TYPES), np.int64)
        self._acc = np.zeros((self.registers[P_N_BOARDS], 3), np.int64)
        self._times = np.empty(0, np.int64)
        self._chans = np.empty(0, np.int64)
        self._energies = np.empty(0, np.int64)
        self._tick = 0
        self._next_min = _FAR_PAST
        self._dead_ticks = 0
        self._busy_ticks = 0
        self._live_ticks = 0
        self._late = 0
        self.busy = False

    @property
    def tick(self) -> int:
        """The sample (250 MHz tick) up to which the stream has been processed."""
        return self._tick

    @property
    def dead_until(self) -> int:
        """The tick below which no trigger is issued (the dead time of the last accepted one)."""
        return int(self._state[S_DEAD_UNTIL])

    @property
    def prescale_counts(self) -> np.ndarray:
        """Per trigger type, the raw triggers counted towards its prescaler since it last fired."""
        return self._state[S_PRESCALE : S_PRESCALE + N_TYPES].copy()

    @property
    def counters(self) -> TriggerCounters:
        c = self._counters
        return TriggerCounters(
            raw=c[K_RAW].copy(),
            prescaled=c[K_PRESCALED].copy(),
            accepted=c[K_ACCEPTED].copy(),
            lost_dead=c[K_LOST_DEAD].copy(),
            lost_busy=c[K_LOST_BUSY].copy(),
            triggers=int(self._state[S_EVENT]),
            ticks=self._tick,
            dead_ticks=self._dead_ticks,
            busy_ticks=self._busy_ticks,
            live_ticks=self._live_ticks,
            late_records=self._late,
            attempts=int(self._state[S_ATTEMPTS]),
            lost_dead_triggers=int(self._state[S_LOST_DEAD]),
            lost_busy_triggers=int(self._state[S_LOST_BUSY]),
        )

    def set_busy(self, busy: bool) -> None:
        """Set the busy level used by later :meth:`process` calls that pass no ``busy``."""
        self.busy = bool(busy)

    def _busy_intervals(self, busy, tick0: int, tick1: int) -> tuple[np.ndarray, np.ndarray]:
        if busy is None:
            busy = self.busy
        if isinstance(busy, (bool, np.bool_)):
            if busy:
                return np.array([tick0], np.int64), np.array([tick1], np.int64)
            return np.empty(0, np.int64), np.empty(0, np.int64)
        arr = np.asarray(busy, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"busy: expected a bool or an (n, 2) array of [start, stop) ticks, got shape {arr.shape}")
        if len(arr) and (arr[:, 1] < arr[:, 0]).any():
            raise ValueError("busy: every interval needs start <= stop")
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
        if len(arr) > 1 and (arr[1:, 0] < np.maximum.accumulate(arr[:-1, 1])).any():
            raise ValueError("busy: intervals overlap")
        return arr[:, 0].copy(), arr[:, 1].copy()

    def process(self, records: np.ndarray, end_sample: int, busy=None) -> np.ndarray:
        """Add the records of the stream up to ``end_sample`` and return the triggers issued.

        Parameters
        ----------
        records : numpy.ndarray of PULSE_DTYPE
            New pulses, absolute times (1/64 sample from the start of the run), any order.
        end_sample : int
            The stream is complete up to (excluding) this sample; must not decrease.
        busy : bool or array of shape (n, 2), optional
            The DAQ busy input during this slice: a level for the whole slice, or
            ``[start, stop)`` tick intervals. Default: the level set by :meth:`set_busy`.

        Returns
        -------
        numpy.ndarray of TRIGGER_DTYPE
            Accepted triggers with ``timestamp`` (issue tick) in ``[previous end, end_sample)``.
        """
        regs = self.registers
        _check_records(records, regs.n_channels)
        end_sample = int(end_sample)
        if end_sample < self._tick:
            raise ValueError(f"end_sample = {end_sample}: expected >= the previous end_sample {self._tick}")
        tick0, tick1 = self._tick, end_sample
        busy_start, busy_end = self._busy_intervals(busy, tick0, tick1)

        if len(records):
            times = records["time"].astype(np.int64)
            late = times < tick0 * 64
            if late.any():
                self._late += int(late.sum())
                records, times = records[~late], times[~late]
            energies = primitive_energies(records, regs)
            self._times = np.concatenate([self._times, times])
            self._chans = np.concatenate([self._chans, records["channel"].astype(np.int64)])
            self._energies = np.concatenate([self._energies, energies])
            order = np.lexsort((self._chans, self._times))
            self._times, self._chans, self._energies = self._times[order], self._chans[order], self._energies[order]
        if len(self._times) > self.max_buffered:
            raise RuntimeError(
                f"trigger buffer holds {len(self._times)} records > max_buffered = "
                f"{self.max_buffered}: call process() with shorter slices"
            )

        beam_t, self._next_min = _beam_candidates(
            self._times,
            self._chans,
            self._energies,
            regs.ch_role,
            regs.ch_bit,
            regs.params,
            np.int64(self._next_min),
            np.int64(tick1),
        )
        rnd = _random_ticks(np.int64(tick0), np.int64(tick1), regs[P_RND_MODE], regs[P_RND_PARAM], self._state)
        dead_before = int(self._state[S_DEAD_UNTIL])
        out = np.zeros((len(beam_t) + len(rnd), N_OUT), np.int64)
        n = _process_candidates(
            beam_t,
            rnd,
            self._times,
            self._chans,
            self._energies,
            regs.ch_role,
            regs.ch_bit,
            regs.ch_board,
            regs.params,
            self._acc,
            self._state,
            self._counters,
            busy_start,
            busy_end,
            out,
        )
        out = out[:n]

        # live-time bookkeeping over [tick0, tick1): dead intervals start at issue ticks. A
        # contiguous copy: the kernel then sees one array layout whether or not dead time is
        # carried over below (a second layout is a second compilation, mid-run)
        issue = np.ascontiguousarray(out[:, O_TIMESTAMP])
        if dead_before > tick0:  # dead time carried over from the previous slice
            dead_s = np.concatenate([[tick0], issue])
            dead_e = np.concatenate([[dead_before], issue + regs[P_DEAD]])
        else:
            dead_s, dead_e = issue, issue + regs[P_DEAD]
        dead = _union_length(dead_s, dead_e, np.int64(tick0), np.int64(tick1))
        both_s = np.concatenate([dead_s, busy_start])
        both_e = np.concatenate([dead_e, busy_end])
        order = np.argsort(both_s, kind="stable")
        either = _union_length(both_s[order], both_e[order], np.int64(tick0), np.int64(tick1))
        self._dead_ticks += int(dead)
        self._busy_ticks += int(_union_length(busy_start, busy_end, np.int64(tick0), np.int64(tick1)))
        self._live_ticks += (tick1 - tick0) - int(either)
        self._tick = tick1

        # keep only records still inside a window of a pending candidate
        # future candidates: beam openers at >= next_min, random ones at >= (tick1 - LATENCY) * 64
        keep_from = min(self._next_min, (tick1 - regs[P_LAT]) * 64) + regs[P_SPAN_LO]
        first = int(np.searchsorted(self._times, keep_from))
        if first:
            self._times, self._chans, self._energies = self._times[first:], self._chans[first:], self._energies[first:]
        return _to_records(out)

    def finish(self) -> np.ndarray:
        """End of the run: advance the clock until every open candidate is decided; return those triggers."""
        regs = self.registers
        drain = regs[P_LAT] + (regs[P_SPAN_HI] - min(regs[P_SPAN_LO], 0)) // 64 + 2
        return self.process(
            np.empty(0, dtype=[("channel", np.uint16), ("time", np.int64), ("integral_net", np.int32)]),
            self._tick + drain,
        )
