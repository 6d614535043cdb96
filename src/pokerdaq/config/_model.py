"""The configuration schema: one frozen dataclass per TOML table.

The embedded default, ``pokerdaq/configs/poker.toml``, documents where every number comes
from. Field bounds are checked by :func:`pokerdaq.config._schema.build`; relations between
fields are checked in ``__post_init__``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ._schema import ConfigError, bounded

ELECTRON_MASS_MEV = 0.51099895

SUBSYSTEMS = ("beam_counters", "srd", "preshower", "ecal", "veto", "hcal")
"""Subsystem names, in beam order. The channel map numbers channels in this order."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    run_number: int = bounded(1, ge=0, lt=2**32)
    seed: int = bounded(20261121, ge=0, lt=2**63)


@dataclass(frozen=True, slots=True)
class BeamConfig:
    species: Literal["e+", "e-"] = "e+"
    energy_gev: float = bounded(100.0, gt=0.0, le=400.0)
    energy_spread: float = bounded(0.01, ge=0.0, lt=0.5)
    rate_hz: float = bounded(100e3, gt=0.0, le=1e8)
    spill_length_s: float = bounded(4.8, gt=0.0)
    spill_period_s: float = bounded(14.4, gt=0.0)
    hadron_fraction: float = bounded(0.005, ge=0.0, le=1.0)
    muon_fraction: float = bounded(0.001, ge=0.0, le=1.0)
    signal_fraction: float = bounded(0.0, ge=0.0, le=1.0)
    aprime_mass_mev: float = bounded(250.0, gt=0.0)

    def __post_init__(self) -> None:
        if self.spill_length_s > self.spill_period_s:
            raise ConfigError("spill_length_s", self.spill_length_s,
                              f"at most beam.spill_period_s = {self.spill_period_s}")
        if self.hadron_fraction + self.muon_fraction + self.signal_fraction > 1.0:
            raise ConfigError("signal_fraction", self.signal_fraction,
                              "hadron_fraction + muon_fraction + signal_fraction <= 1")
        if self.signal_fraction > 0 and self.resonance_energy_gev >= self.energy_gev:
            max_mass = math.sqrt(2.0 * ELECTRON_MASS_MEV * self.energy_gev * 1e3)
            raise ConfigError(
                "aprime_mass_mev", self.aprime_mass_mev,
                f"a mass below {max_mass:.1f} MeV: the resonance E_R = M^2/(2 m_e) = "
                f"{self.resonance_energy_gev:.1f} GeV must lie below beam.energy_gev = "
                f"{self.energy_gev} (or set beam.signal_fraction = 0)",
            )

    @property
    def resonance_energy_gev(self) -> float:
        """Positron energy of resonant annihilation, E_R = M_A'^2 / (2 m_e), in GeV."""
        return self.aprime_mass_mev**2 / (2.0 * ELECTRON_MASS_MEV) / 1e3


@dataclass(frozen=True, slots=True)
class ScintillatorConfig:
    """Light emission: a sum of exponentials with a common rise time."""

    decay_ns: tuple[float, ...] = bounded((10.0,), gt=0.0)
    fractions: tuple[float, ...] = bounded((1.0,), ge=0.0, le=1.0)
    rise_ns: float = bounded(0.5, ge=0.0)
    light_yield_pe_per_mev: float = bounded(5.0, gt=0.0)

    def __post_init__(self) -> None:
        if len(self.decay_ns) != len(self.fractions) or not self.decay_ns:
            raise ConfigError("fractions", self.fractions,
                              f"one fraction per decay time ({len(self.decay_ns)})")
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ConfigError("fractions", self.fractions, "fractions summing to 1")


@dataclass(frozen=True, slots=True)
class SipmConfig:
    """The SiPM (or the group of SiPMs read as one channel) and its single-cell pulse."""

    n_cells: int = bounded(1_436_044, ge=1)
    gain_adc_per_pe: float = bounded(0.04, gt=0.0)
    gain_spread: float = bounded(0.1, ge=0.0, lt=1.0)
    crosstalk_prob: float = bounded(0.01, ge=0.0, lt=1.0)
    afterpulse_prob: float = bounded(0.005, ge=0.0, lt=1.0)
    afterpulse_tau_ns: float = bounded(20.0, gt=0.0)
    dark_rate_hz: float = bounded(1e6, ge=0.0)
    pulse_rise_ns: float = bounded(2.0, gt=0.0)
    pulse_decay_ns: float = bounded(15.0, gt=0.0)

    def __post_init__(self) -> None:
        if self.pulse_rise_ns >= self.pulse_decay_ns:
            raise ConfigError("pulse_rise_ns", self.pulse_rise_ns,
                              f"less than sipm.pulse_decay_ns = {self.pulse_decay_ns}")


@dataclass(frozen=True, slots=True)
class ElectronicsConfig:
    pedestal_adc: float = bounded(400.0, ge=0.0, le=16383.0)
    noise_adc: float = bounded(2.0, ge=0.0)
    correlated_noise_adc: float = bounded(0.5, ge=0.0)
    shaping_ns: float = bounded(4.0, ge=0.0)


@dataclass(frozen=True, slots=True)
class PulseFinderConfig:
    """Per-channel pulse-finder registers; see docs/firmware-spec.md for their widths."""

    threshold_adc: int = bounded(20, ge=1, le=16383)
    nsb: int = bounded(2, ge=0, le=63)
    nsa: int = bounded(12, ge=1, le=511)
    nsat: int = bounded(2, ge=1, le=15)
    nped: int = bounded(8, ge=1, le=32)
    maxped: int = bounded(16383, ge=0, le=16383)
    max_pulses: int = bounded(3, ge=0, le=15)
    pedestal_mode: Literal["measured", "configured"] = "measured"
    pedestal_adc: int = bounded(400, ge=0, le=16383)
    algorithm: Literal["poker", "fadc250"] = "poker"

    def __post_init__(self) -> None:
        if self.algorithm == "fadc250" and self.pedestal_mode != "measured":
            raise ConfigError("pedestal_mode", self.pedestal_mode,
                              "measured with algorithm = fadc250 (firmware-spec.md 1.13)")
        if self.algorithm == "fadc250" and self.max_pulses != 3:
            raise ConfigError("max_pulses", self.max_pulses,
                              "3 with algorithm = fadc250 (firmware-spec.md 1.13)")
        if self.nped & (self.nped - 1):
            raise ConfigError("nped", self.nped, "a power of two (1, 2, 4, 8, 16 or 32)")
        if self.nsat > self.nsa:
            raise ConfigError("nsat", self.nsat, f"at most nsa = {self.nsa}")


@dataclass(frozen=True, slots=True)
class SubsystemConfig:
    """A group of identical channels: a grid of cells, possibly in several modules."""

    prefix: str
    modules: int = bounded(1, ge=1)
    rows: int = bounded(1, ge=1)
    cols: int = bounded(1, ge=1)
    cell_size_mm: float = bounded(20.0, gt=0.0)
    new_board: bool = True
    scintillator: ScintillatorConfig = field(default_factory=ScintillatorConfig)
    sipm: SipmConfig = field(default_factory=SipmConfig)
    electronics: ElectronicsConfig = field(default_factory=ElectronicsConfig)
    pulse_finder: PulseFinderConfig = field(default_factory=PulseFinderConfig)

    @property
    def n_channels(self) -> int:
        return self.modules * self.rows * self.cols


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    beam_counters: SubsystemConfig
    srd: SubsystemConfig
    preshower: SubsystemConfig
    ecal: SubsystemConfig
    veto: SubsystemConfig
    hcal: SubsystemConfig
    lyso_background_hz: float = bounded(3e4, ge=0.0)


@dataclass(frozen=True, slots=True)
class DigitizerConfig:
    sampling_rate_hz: float = bounded(250e6, gt=0.0)
    adc_bits: int = bounded(14, ge=8, le=16)
    input_range_v: float = bounded(2.0, gt=0.0)
    inputs_per_board: int = bounded(12, ge=1, le=64)
    window_samples: int = bounded(64, ge=4, le=1024)
    pretrigger_samples: int = bounded(16, ge=0)
    correlated_noise_ns: float = bounded(200.0, gt=0.0)

    def __post_init__(self) -> None:
        if self.pretrigger_samples >= self.window_samples:
            raise ConfigError("pretrigger_samples", self.pretrigger_samples,
                              f"less than digitizer.window_samples = {self.window_samples}")

    @property
    def sample_ns(self) -> float:
        return 1e9 / self.sampling_rate_hz

    @property
    def adc_max(self) -> int:
        return (1 << self.adc_bits) - 1


@dataclass(frozen=True, slots=True)
class ResponseConfig:
    """Parametrised detector response used by the emulator (pokerdaq.sim, docs/simulation.md).

    Energies of minimum-ionising particles (``*_mip_mev``) are most-probable values of a
    Landau (Moyal) distribution of relative width ``mip_width``.
    """

    ecal_stochastic: float = bounded(0.025, gt=0.0, lt=1.0)
    ecal_constant: float = bounded(0.005, ge=0.0, lt=1.0)
    preshower_x0: float = bounded(8.8, gt=0.0)
    ecal_x0: float = bounded(24.7, gt=0.0)
    critical_energy_mev: float = bounded(9.6, gt=0.0)
    lateral_core_fraction: float = bounded(0.85, ge=0.0, le=1.0)
    lateral_core_mm: float = bounded(3.0, gt=0.0)
    lateral_halo_mm: float = bounded(15.0, gt=0.0)
    beam_spot_mm: float = bounded(3.0, ge=0.0)
    signal_line_width: float = bounded(0.02, ge=0.0, lt=0.5)
    srd_mean_mev_at_100gev: float = bounded(30.0, ge=0.0)
    srd_spectrum_shape: float = bounded(2.0, gt=0.0)
    counter_mip_mev: float = bounded(1.0, gt=0.0)
    preshower_mip_mev: float = bounded(80.0, gt=0.0)
    ecal_mip_mev: float = bounded(250.0, gt=0.0)
    veto_mip_mev: float = bounded(10.0, gt=0.0)
    hcal_mip_mev: float = bounded(1100.0, gt=0.0)
    mip_width: float = bounded(0.1, ge=0.0, lt=1.0)
    hadron_ecal_interaction_prob: float = bounded(0.77, ge=0.0, le=1.0)
    hcal_stochastic: float = bounded(0.6, ge=0.0, lt=5.0)
    hcal_lateral_mm: float = bounded(80.0, gt=0.0)
    hcal_longitudinal_modules: float = bounded(0.8, gt=0.0)
