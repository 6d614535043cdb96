"""Per-channel pulse-finder registers (docs/firmware-spec.md section 1.2), validated."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pokerdaq._regmap import PULSE_FINDER_RANGES
from pokerdaq.config import Config

ADC_MAX = 16383
"""Largest 14-bit ADC code: the upper rail of the registers' u14 fields and of the RTL.
A digitizer of ``digitizer.adc_bits`` bits has its rail at ``PulseParams.adc_max``."""

PED_MEASURED = 0
PED_CONFIGURED = 1

ALGORITHM_POKER = 0
ALGORITHM_FADC250 = 1
ALGORITHMS = {"poker": ALGORITHM_POKER, "fadc250": ALGORITHM_FADC250}
"""Values of the ``algorithm`` register (docs/firmware-spec.md 1.2 and 1.13)."""

FADC250_MAX_PULSES = 3
"""fADC250 firmware v3 reports at most 3 pulses per window (docs/firmware-spec.md 1.13)."""

REGISTER_RANGES: dict[str, tuple[int, int]] = {
    name: bounds for name, bounds in PULSE_FINDER_RANGES.items() if name != "algorithm"
}
"""Register -> (lowest, highest) allowed value, docs/firmware-spec.md 1.2, in register order:
from firmware_models/registers.toml (``pokerdaq._regmap``). ``algorithm`` is checked apart
(:meth:`PulseParams._check_algorithm`): the kernels of each algorithm take their own registers."""

# the defaults of PulseParams.uniform: those of pokerdaq.config.PulseFinderConfig
_UNIFORM_DEFAULTS = {
    "thr": 20,
    "nsb": 2,
    "nsa": 12,
    "nsat": 2,
    "nped_log2": 3,
    "maxped": 16383,
    "max_pulses": 3,
    "ped_mode": PED_MEASURED,
    "ped_cfg": 400,
    "algorithm": ALGORITHM_POKER,
}


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True, eq=False)
class PulseParams:
    """Pulse-finder registers of a set of channels, one int32 array entry per channel.

    Field names follow the register names of docs/firmware-spec.md section 1.2 in lower
    case; ``ped_mode`` is 0 (measured) or 1 (configured); ``algorithm`` (optional, spec
    1.13) is 0 (POKER, the default) or 1 (fADC250 firmware v3, which needs ``ped_mode = 0``
    and ``max_pulses = 3``). Every register is checked against its range at construction,
    and ``nsat <= nsa``; the checks that depend on the window length are made by
    :func:`pokerdaq.dsp.find_pulses`.

    Raises
    ------
    ValueError
        Naming the register, the channel and the value, e.g.
        ``PulseParams.nsa[channel 3] = 600: expected 1..511``.
    TypeError
        When a register is not an integer array.
    """

    thr: np.ndarray
    nsb: np.ndarray
    nsa: np.ndarray
    nsat: np.ndarray
    nped_log2: np.ndarray
    maxped: np.ndarray
    max_pulses: np.ndarray
    ped_mode: np.ndarray
    ped_cfg: np.ndarray
    adc_max: int = ADC_MAX
    """The digitizer's upper rail, ``(1 << digitizer.adc_bits) - 1`` (:meth:`from_config` sets
    it): samples above it are refused, a sample at it flags OVERFLOW. Not a register."""
    algorithm: np.ndarray | None = None
    """0 = POKER (spec 1.3-1.11), 1 = fADC250 v3 (spec 1.13); None = POKER on every channel.
    Not in ``REGISTER_RANGES``: the kernels of each algorithm take their own registers."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.adc_max, bool)
            or not isinstance(self.adc_max, (int, np.integer))
            or not 255 <= int(self.adc_max) <= 65535
        ):
            raise ValueError(f"PulseParams.adc_max = {self.adc_max!r}: expected (1 << adc_bits) - 1, 255..65535")
        object.__setattr__(self, "adc_max", int(self.adc_max))
        n = None
        for name, (low, high) in REGISTER_RANGES.items():
            raw = np.asarray(getattr(self, name))
            if raw.dtype.kind not in "iub":
                raise TypeError(f"PulseParams.{name}: expected integers, got dtype {raw.dtype}")
            if raw.ndim != 1:
                raise ValueError(f"PulseParams.{name}: expected one value per channel (1-D), got shape {raw.shape}")
            if n is None:
                n = raw.shape[0]
            elif raw.shape[0] != n:
                raise ValueError(f"PulseParams.{name}: {raw.shape[0]} channels, expected {n} like PulseParams.thr")
            bad = (raw < low) | (raw > high)
            if bad.any():
                ch = _first_bad(bad)
                raise ValueError(f"PulseParams.{name}[channel {ch}] = {int(raw[ch])}: expected {low}..{high}")
            arr = np.ascontiguousarray(raw, dtype=np.int32)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        bad = self.nsat > self.nsa
        if bad.any():
            ch = _first_bad(bad)
            raise ValueError(
                f"PulseParams.nsat[channel {ch}] = {int(self.nsat[ch])}: expected at most nsa = {int(self.nsa[ch])}"
            )
        self._check_algorithm(int(n))  # type: ignore[arg-type]  # REGISTER_RANGES is not empty: n is set

    def _check_algorithm(self, n: int) -> None:
        raw = np.zeros(n, dtype=np.int64) if self.algorithm is None else np.asarray(self.algorithm)
        if raw.dtype.kind not in "iub" or raw.shape != (n,):
            raise ValueError(
                f"PulseParams.algorithm: expected {n} integers (0 poker, 1 fadc250),"
                f" got dtype {raw.dtype} shape {raw.shape}"
            )
        low, high = PULSE_FINDER_RANGES["algorithm"]
        bad = (raw < low) | (raw > high)
        if bad.any():
            ch = _first_bad(bad)
            raise ValueError(f"PulseParams.algorithm[channel {ch}] = {int(raw[ch])}: expected 0 (poker) or 1 (fadc250)")
        fadc = raw == ALGORITHM_FADC250
        # fADC250 v3 has a measured pedestal and a fixed limit of 3 pulses (spec 1.13)
        bad = fadc & (self.ped_mode != PED_MEASURED)
        if bad.any():
            ch = _first_bad(bad)
            raise ValueError(
                f"PulseParams.ped_mode[channel {ch}] = {int(self.ped_mode[ch])}: "
                "the fadc250 algorithm measures its pedestal (expected 0)"
            )
        bad = fadc & (self.max_pulses != FADC250_MAX_PULSES)
        if bad.any():
            ch = _first_bad(bad)
            raise ValueError(
                f"PulseParams.max_pulses[channel {ch}] = "
                f"{int(self.max_pulses[ch])}: the fadc250 algorithm reports at most "
                f"{FADC250_MAX_PULSES} pulses (expected {FADC250_MAX_PULSES})"
            )
        arr = np.ascontiguousarray(raw, dtype=np.int32)
        arr.flags.writeable = False
        object.__setattr__(self, "algorithm", arr)

    @property
    def fadc250(self) -> np.ndarray:
        """Boolean per channel: the channel runs the fADC250 v3 algorithm (spec 1.13)."""
        return np.asarray(self.algorithm == ALGORITHM_FADC250)  # __post_init__ made algorithm an array

    @functools.cached_property
    def registers_int64(self) -> tuple[np.ndarray, ...]:
        """The registers as int64 arrays, in the order of ``REGISTER_RANGES`` (thr, nsb,
        nsa, nsat, nped_log2, maxped, max_pulses, ped_mode, ped_cfg), for the kernels.
        Computed once: the register arrays are read-only."""
        return tuple(getattr(self, name).astype(np.int64) for name in REGISTER_RANGES)

    @property
    def n_channels(self) -> int:
        """Number of channels described."""
        return int(self.thr.shape[0])

    @property
    def nped(self) -> np.ndarray:
        """Number of pedestal samples, ``1 << nped_log2``."""
        return np.left_shift(1, self.nped_log2).astype(np.int32)

    @classmethod
    def uniform(cls, n_channels: int, adc_max: int = ADC_MAX, **registers: int) -> PulseParams:
        """The same registers on ``n_channels`` channels (for tests and tools).

        Registers not given take the defaults of :class:`pokerdaq.config.PulseFinderConfig`
        (thr 20, nsb 2, nsa 12, nsat 2, nped_log2 3, maxped 16383, max_pulses 3, measured
        pedestal, ped_cfg 400, algorithm 0 = poker).
        """
        if int(n_channels) < 1:
            raise ValueError(f"n_channels = {n_channels}: expected at least 1")
        unknown = set(registers) - set(_UNIFORM_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown register(s) {sorted(unknown)}: expected " + ", ".join(_UNIFORM_DEFAULTS))
        values = {**_UNIFORM_DEFAULTS, **registers}
        return cls(**{k: np.full(int(n_channels), v, dtype=np.int64) for k, v in values.items()}, adc_max=adc_max)

    @classmethod
    def from_config(cls, cfg: Config, channels: Sequence[int] | np.ndarray | None = None) -> PulseParams:
        """Registers of each channel from its subsystem's ``pulse_finder`` table.

        Parameters
        ----------
        cfg
            The run configuration; channel ``i`` of ``cfg.channel_map`` takes the registers
            of ``cfg.detector.<its subsystem>.pulse_finder``.
        channels
            Channel numbers to describe, in this order (for example one board's
            ``cfg.channel_map.channels_on_board(b)``); all channels when None.
        """
        table = cfg.channel_map.table
        if channels is None:
            chans = np.arange(len(table))
        else:
            chans = np.asarray(channels)
            if chans.ndim != 1 or chans.dtype.kind not in "iu":
                raise ValueError(f"channels: expected a 1-D integer array, got {chans!r}")
            bad = (chans < 0) | (chans >= len(table))
            if bad.any():
                raise ValueError(
                    f"channels: channel {int(chans[_first_bad(bad)])} is not in the channel map (0..{len(table) - 1})"
                )
        cols: dict[str, list[int]] = {k: [] for k in REGISTER_RANGES}
        algorithm: list[int] = []
        for ch in chans:
            pf = cfg.subsystem(table["subsystem"][ch].decode()).pulse_finder
            cols["thr"].append(pf.threshold_adc)
            cols["nsb"].append(pf.nsb)
            cols["nsa"].append(pf.nsa)
            cols["nsat"].append(pf.nsat)
            cols["nped_log2"].append(int(pf.nped).bit_length() - 1)
            cols["maxped"].append(pf.maxped)
            cols["max_pulses"].append(pf.max_pulses)
            cols["ped_mode"].append(PED_CONFIGURED if pf.pedestal_mode == "configured" else PED_MEASURED)
            cols["ped_cfg"].append(pf.pedestal_adc)
            algorithm.append(ALGORITHMS[pf.algorithm])
        return cls(
            **{k: np.asarray(v, dtype=np.int64) for k, v in cols.items()},
            algorithm=np.asarray(algorithm, dtype=np.int64),
            adc_max=cfg.digitizer.adc_max,
        )

    def replace(self, **registers: Any) -> PulseParams:
        """A copy with some registers replaced (a scalar is broadcast to every channel)."""
        values: dict[str, Any] = {}
        for name, value in registers.items():
            if name not in REGISTER_RANGES and name != "algorithm":
                raise TypeError(f"unknown register {name!r}: expected " + ", ".join(REGISTER_RANGES) + ", algorithm")
            arr = np.asarray(value)
            values[name] = np.full(self.n_channels, arr) if arr.ndim == 0 else arr
        return dataclasses.replace(self, **values)

    def select(self, channels: Sequence[int] | np.ndarray) -> PulseParams:
        """The registers of a subset of these channels (indices into this object)."""
        idx = np.asarray(channels)
        return PulseParams(
            **{k: getattr(self, k)[idx] for k in REGISTER_RANGES},
            algorithm=None if self.algorithm is None else self.algorithm[idx],
            adc_max=self.adc_max,
        )

    def check_window(self, n_samples: int) -> None:
        """Check the window-mode rules of docs/firmware-spec.md section 1.2 for ``N = n_samples``.

        Raises
        ------
        ValueError
            ``nsb + nsa > N``, or a measured pedestal with ``nped >= N``.
        """
        too_long = (self.nsb + self.nsa) > n_samples
        if too_long.any():
            ch = _first_bad(too_long)
            raise ValueError(
                f"PulseParams.nsa[channel {ch}] = {int(self.nsa[ch])}: nsb + nsa = "
                f"{int(self.nsb[ch] + self.nsa[ch])} is longer than the window of {n_samples} "
                "samples (expected nsb + nsa <= N)"
            )
        if n_samples < 4 and self.fadc250.any():
            ch = _first_bad(self.fadc250)
            raise ValueError(
                f"PulseParams.algorithm[channel {ch}] = 1: the fadc250 algorithm reads the "
                f"first 4 samples for its timing pedestal, the window has {n_samples} "
                "(expected N >= 4)"
            )
        ped_long = (self.ped_mode == PED_MEASURED) & (self.nped >= n_samples)
        if ped_long.any():
            ch = _first_bad(ped_long)
            raise ValueError(
                f"PulseParams.nped_log2[channel {ch}] = {int(self.nped_log2[ch])}: a measured "
                f"pedestal of {int(self.nped[ch])} samples leaves no sample to search in a "
                f"window of {n_samples} (expected nped < N, or ped_mode = 1)"
            )
