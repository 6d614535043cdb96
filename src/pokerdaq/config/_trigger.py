"""Trigger configuration schema (the [trigger] table); see docs/firmware-spec.md Part 2.

Physical quantities (ns, MeV, GeV, Hz) are given here; ``pokerdaq.trigger.TriggerRegisters``
turns them into the integer registers of the firmware, with the rounding defined in the
specification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from ._model import SUBSYSTEMS as _SUBSYSTEMS
from ._schema import Bounds, ConfigError, did_you_mean


@dataclass(frozen=True, slots=True)
class PrescaleConfig:
    """One prescale factor per trigger type: accept exactly 1 in N raw triggers; 0 disables."""

    physics: Annotated[int, Bounds(ge=0, lt=2**24)]
    beam: Annotated[int, Bounds(ge=0, lt=2**24)]
    random: Annotated[int, Bounds(ge=0, lt=2**24)]
    calibration: Annotated[int, Bounds(ge=0, lt=2**24)]
    muon: Annotated[int, Bounds(ge=0, lt=2**24)]


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    # --- time ---
    latency_ns: Annotated[float, Bounds(ge=0.0)]
    dead_time_ns: Annotated[float, Bounds(ge=0.0)]

    # --- calibration: channel energy = (integral_net * GAIN) >> gain_frac_bits, LSB 1/16 MeV ---
    gain_frac_bits: Annotated[int, Bounds(ge=0, le=20)]
    adc_per_mev: Mapping[str, float]  # a FrozenMap once built: read-only, hashable
    saturation_correction: tuple[str, ...]
    saturation_lut_entries: Annotated[int, Bounds(ge=2, le=1024)]

    # --- beam counters ---
    beam_min_counters: Annotated[int, Bounds(ge=1, le=8)]
    beam_threshold_mev: Annotated[float, Bounds(ge=0.0)]
    beam_window_ns: Annotated[float, Bounds(gt=0.0, le=1000.0)]
    pileup_guard_ns: Annotated[float, Bounds(ge=0.0, le=10000.0)]

    # --- SRD tag ---
    srd_min_channels: Annotated[int, Bounds(ge=1, le=16)]
    srd_emin_mev: Annotated[float, Bounds(ge=0.0)]
    srd_emax_mev: Annotated[float, Bounds(gt=0.0)]
    srd_reference_gev: Annotated[float, Bounds(gt=0.0)]
    srd_threshold_exponent: Annotated[float, Bounds(ge=0.0, le=6.0)]
    srd_emin_floor_mev: Annotated[float, Bounds(ge=0.0)]
    srd_window_ns: tuple[float, float]

    # --- VETO ---
    veto_threshold_mev: Annotated[float, Bounds(ge=0.0)]
    veto_window_ns: tuple[float, float]

    # --- calorimeters ---
    calo_window_ns: tuple[float, float]
    hcal_window_ns: tuple[float, float]
    ecal_cut_gev: float | None
    ecal_cut_beam_fraction: Annotated[float, Bounds(gt=0.0, le=2.0)]
    preshower_min_mev: Annotated[float, Bounds(ge=0.0)]
    calibration_min_beam_fraction: Annotated[float, Bounds(ge=0.0, le=2.0)]
    mip_window_mev: tuple[float, float]
    hcal_threshold_mev: Annotated[float, Bounds(ge=0.0)]

    # --- random trigger ---
    random_mode: Literal["poisson", "periodic"]
    random_rate_hz: Annotated[float, Bounds(ge=0.0, le=1e8)]

    prescale: PrescaleConfig

    def __post_init__(self) -> None:
        for name, value in self.adc_per_mev.items():
            if name not in _SUBSYSTEMS:
                hint = did_you_mean(name, _SUBSYSTEMS) or " (" + ", ".join(_SUBSYSTEMS) + ")"
                raise ConfigError(f"adc_per_mev.{name}", value, "a subsystem name" + hint)
            if not (value > 0.0 and math.isfinite(value)):
                raise ConfigError(f"adc_per_mev.{name}", value, "a finite value > 0")
        for name in self.saturation_correction:
            if name not in _SUBSYSTEMS:
                raise ConfigError(
                    "saturation_correction",
                    self.saturation_correction,
                    "a list of subsystem names: " + ", ".join(_SUBSYSTEMS),
                )
        if self.saturation_lut_entries & (self.saturation_lut_entries - 1):
            raise ConfigError("saturation_lut_entries", self.saturation_lut_entries, "a power of two")
        if self.srd_emin_mev > self.srd_emax_mev:
            raise ConfigError("srd_emin_mev", self.srd_emin_mev, f"at most srd_emax_mev = {self.srd_emax_mev}")
        for key in ("srd_window_ns", "veto_window_ns", "calo_window_ns", "hcal_window_ns", "mip_window_mev"):
            lo, hi = getattr(self, key)
            if not lo < hi:
                raise ConfigError(key, [lo, hi], "[start, end] with start < end")
            if key != "mip_window_mev" and max(abs(lo), abs(hi)) > 1e4:
                raise ConfigError(key, [lo, hi], "values within +-10000")
        if self.mip_window_mev[0] < 0:
            raise ConfigError("mip_window_mev", list(self.mip_window_mev), "a non-negative lower edge")
        if self.ecal_cut_gev is not None and not self.ecal_cut_gev > 0:
            raise ConfigError("ecal_cut_gev", self.ecal_cut_gev, "a value > 0 (or leave it out)")

    def srd_emin_at(self, beam_energy_gev: float) -> float:
        """The SRD lower threshold at a beam energy: ``emin * (E/E_ref)**exponent``, not below the floor."""
        scaled = self.srd_emin_mev * (beam_energy_gev / self.srd_reference_gev) ** self.srd_threshold_exponent
        return max(scaled, self.srd_emin_floor_mev)

    def ecal_cut_at(self, beam_energy_gev: float) -> float:
        """The physics-trigger ECAL cut in GeV: ``ecal_cut_gev`` or a fraction of the beam energy."""
        if self.ecal_cut_gev is not None:
            return self.ecal_cut_gev
        return self.ecal_cut_beam_fraction * beam_energy_gev
