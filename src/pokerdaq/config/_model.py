"""The configuration schema: one frozen dataclass per TOML table.

The embedded default, ``pokerdaq/configs/poker.toml``, documents where every number comes
from. Field bounds are checked by :func:`pokerdaq.config._schema.build`; relations between
fields are checked in ``__post_init__``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from .._regmap import PULSE_FINDER_RANGES
from ._schema import Bounds, ConfigError

ELECTRON_MASS_MEV = 0.51099895

SUBSYSTEMS = ("beam_counters", "srd", "preshower", "ecal", "veto", "hcal")
"""Subsystem names, in beam order. The channel map numbers channels in this order."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    run_number: Annotated[int, Bounds(ge=0, lt=2**32)]
    seed: Annotated[int, Bounds(ge=0, lt=2**63)]


@dataclass(frozen=True, slots=True)
class BeamConfig:
    species: Literal["e+", "e-"]
    energy_gev: Annotated[float, Bounds(gt=0.0, le=400.0)]
    energy_spread: Annotated[float, Bounds(ge=0.0, lt=0.5)]
    rate_hz: Annotated[float, Bounds(gt=0.0, le=1e8)]
    spill_length_s: Annotated[float, Bounds(gt=0.0)]
    spill_period_s: Annotated[float, Bounds(gt=0.0)]
    hadron_fraction: Annotated[float, Bounds(ge=0.0, le=1.0)]
    muon_fraction: Annotated[float, Bounds(ge=0.0, le=1.0)]
    signal_fraction: Annotated[float, Bounds(ge=0.0, le=1.0)]
    aprime_mass_mev: Annotated[float, Bounds(gt=0.0)]

    def __post_init__(self) -> None:
        if self.spill_length_s > self.spill_period_s:
            raise ConfigError(
                "spill_length_s", self.spill_length_s, f"at most beam.spill_period_s = {self.spill_period_s}"
            )
        if self.hadron_fraction + self.muon_fraction + self.signal_fraction > 1.0:
            raise ConfigError(
                "signal_fraction", self.signal_fraction, "hadron_fraction + muon_fraction + signal_fraction <= 1"
            )
        if self.signal_fraction > 0 and self.resonance_energy_gev >= self.energy_gev:
            max_mass = math.sqrt(2.0 * ELECTRON_MASS_MEV * self.energy_gev * 1e3)
            raise ConfigError(
                "aprime_mass_mev",
                self.aprime_mass_mev,
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

    decay_ns: Annotated[tuple[float, ...], Bounds(gt=0.0)]
    fractions: Annotated[tuple[float, ...], Bounds(ge=0.0, le=1.0)]
    rise_ns: Annotated[float, Bounds(ge=0.0)]
    light_yield_pe_per_mev: Annotated[float, Bounds(gt=0.0)]

    def __post_init__(self) -> None:
        if len(self.decay_ns) != len(self.fractions) or not self.decay_ns:
            raise ConfigError("fractions", self.fractions, f"one fraction per decay time ({len(self.decay_ns)})")
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ConfigError("fractions", self.fractions, "fractions summing to 1")


@dataclass(frozen=True, slots=True)
class SipmConfig:
    """The SiPM (or the group of SiPMs read as one channel) and its single-cell pulse."""

    n_cells: Annotated[int, Bounds(ge=1)]
    gain_adc_per_pe: Annotated[float, Bounds(gt=0.0)]
    gain_spread: Annotated[float, Bounds(ge=0.0, lt=1.0)]
    crosstalk_prob: Annotated[float, Bounds(ge=0.0, lt=1.0)]
    afterpulse_prob: Annotated[float, Bounds(ge=0.0, lt=1.0)]
    afterpulse_tau_ns: Annotated[float, Bounds(gt=0.0)]
    dark_rate_hz: Annotated[float, Bounds(ge=0.0)]
    pulse_rise_ns: Annotated[float, Bounds(gt=0.0)]
    pulse_decay_ns: Annotated[float, Bounds(gt=0.0)]

    def __post_init__(self) -> None:
        if self.pulse_rise_ns >= self.pulse_decay_ns:
            raise ConfigError(
                "pulse_rise_ns", self.pulse_rise_ns, f"less than sipm.pulse_decay_ns = {self.pulse_decay_ns}"
            )


@dataclass(frozen=True, slots=True)
class ElectronicsConfig:
    pedestal_adc: Annotated[float, Bounds(ge=0.0, le=16383.0)]
    noise_adc: Annotated[float, Bounds(ge=0.0)]
    correlated_noise_adc: Annotated[float, Bounds(ge=0.0)]
    shaping_ns: Annotated[float, Bounds(ge=0.0)]


def _register(name: str) -> Bounds:
    """Bounds of a pulse-finder register, from firmware_models/registers.toml (pokerdaq._regmap)."""
    low, high = PULSE_FINDER_RANGES[name]
    return Bounds(ge=low, le=high)


_NPED_LOW, _NPED_HIGH = (1 << v for v in PULSE_FINDER_RANGES["nped_log2"])


@dataclass(frozen=True, slots=True)
class PulseFinderConfig:
    """Per-channel pulse-finder registers; see docs/firmware-spec.md 1.2 for their widths.

    The bounds are those of the firmware register map (firmware_models/registers.toml);
    ``nped`` is ``1 << NPED_LOG2``.
    """

    threshold_adc: Annotated[int, _register("thr")]
    nsb: Annotated[int, _register("nsb")]
    nsa: Annotated[int, _register("nsa")]
    nsat: Annotated[int, _register("nsat")]
    nped: Annotated[int, Bounds(ge=_NPED_LOW, le=_NPED_HIGH)]
    maxped: Annotated[int, _register("maxped")]
    max_pulses: Annotated[int, _register("max_pulses")]
    pedestal_mode: Literal["measured", "configured"]
    pedestal_adc: Annotated[int, _register("ped_cfg")]
    algorithm: Literal["poker", "fadc250"]

    def __post_init__(self) -> None:
        if self.algorithm == "fadc250" and self.pedestal_mode != "measured":
            raise ConfigError(
                "pedestal_mode", self.pedestal_mode, "measured with algorithm = fadc250 (firmware-spec.md 1.13)"
            )
        if self.algorithm == "fadc250" and self.max_pulses != 3:
            raise ConfigError("max_pulses", self.max_pulses, "3 with algorithm = fadc250 (firmware-spec.md 1.13)")
        if self.nped & (self.nped - 1):
            raise ConfigError("nped", self.nped, "a power of two (1, 2, 4, 8, 16 or 32)")
        if self.nsat > self.nsa:
            raise ConfigError("nsat", self.nsat, f"at most nsa = {self.nsa}")


@dataclass(frozen=True, slots=True)
class SubsystemConfig:
    """A group of identical channels: a grid of cells, possibly in several modules."""

    prefix: str
    modules: Annotated[int, Bounds(ge=1)]
    rows: Annotated[int, Bounds(ge=1)]
    cols: Annotated[int, Bounds(ge=1)]
    cell_size_mm: Annotated[float, Bounds(gt=0.0)]
    new_board: bool
    scintillator: ScintillatorConfig
    sipm: SipmConfig
    electronics: ElectronicsConfig
    pulse_finder: PulseFinderConfig

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
    lyso_background_hz: Annotated[float, Bounds(ge=0.0)]


@dataclass(frozen=True, slots=True)
class DigitizerConfig:
    sampling_rate_hz: Annotated[float, Bounds(gt=0.0)]
    adc_bits: Annotated[int, Bounds(ge=8, le=16)]
    input_range_v: Annotated[float, Bounds(gt=0.0)]
    inputs_per_board: Annotated[int, Bounds(ge=1, le=64)]
    window_samples: Annotated[int, Bounds(ge=4, le=1024)]
    pretrigger_samples: Annotated[int, Bounds(ge=0)]
    correlated_noise_ns: Annotated[float, Bounds(gt=0.0)]

    def __post_init__(self) -> None:
        if self.pretrigger_samples >= self.window_samples:
            raise ConfigError(
                "pretrigger_samples",
                self.pretrigger_samples,
                f"less than digitizer.window_samples = {self.window_samples}",
            )

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

    ecal_stochastic: Annotated[float, Bounds(gt=0.0, lt=1.0)]
    ecal_constant: Annotated[float, Bounds(ge=0.0, lt=1.0)]
    preshower_x0: Annotated[float, Bounds(gt=0.0)]
    ecal_x0: Annotated[float, Bounds(gt=0.0)]
    critical_energy_mev: Annotated[float, Bounds(gt=0.0)]
    lateral_core_fraction: Annotated[float, Bounds(ge=0.0, le=1.0)]
    lateral_core_mm: Annotated[float, Bounds(gt=0.0)]
    lateral_halo_mm: Annotated[float, Bounds(gt=0.0)]
    beam_spot_mm: Annotated[float, Bounds(ge=0.0)]
    signal_line_width: Annotated[float, Bounds(ge=0.0, lt=0.5)]
    srd_mean_mev_at_100gev: Annotated[float, Bounds(ge=0.0)]
    srd_spectrum_shape: Annotated[float, Bounds(gt=0.0)]
    counter_mip_mev: Annotated[float, Bounds(gt=0.0)]
    preshower_mip_mev: Annotated[float, Bounds(gt=0.0)]
    ecal_mip_mev: Annotated[float, Bounds(gt=0.0)]
    veto_mip_mev: Annotated[float, Bounds(gt=0.0)]
    hcal_mip_mev: Annotated[float, Bounds(gt=0.0)]
    mip_width: Annotated[float, Bounds(ge=0.0, lt=1.0)]
    hadron_ecal_interaction_prob: Annotated[float, Bounds(ge=0.0, le=1.0)]
    hcal_stochastic: Annotated[float, Bounds(ge=0.0, lt=5.0)]
    hcal_lateral_mm: Annotated[float, Bounds(gt=0.0)]
    hcal_longitudinal_modules: Annotated[float, Bounds(gt=0.0)]
