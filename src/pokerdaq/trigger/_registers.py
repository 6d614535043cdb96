"""Trigger registers: the integer values a firmware build would be loaded with.

:meth:`TriggerRegisters.from_config` converts the physical [trigger] configuration into the
integer registers of docs/firmware-spec.md Part 2 (section 2.2 gives each width and the
rounding); the numba kernels receive them as one int64 vector ``params`` indexed by the
``P_*`` constants below, plus per-channel tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._regmap import N_TRIGGER_PARAMS, TRIGGER_PARAM_INDEX, TRIGGER_SCALARS
from ..config import SUBSYSTEMS, Config, ConfigError
from ._calibration import adc_per_mev, sipm_saturation_lut
from ._dtypes import ENERGY_LSB_MEV, N_TYPES, SUM_BITS, TriggerBits

# roles of channels, as the subsystem order of the channel map
ROLE_BEAM, ROLE_SRD, ROLE_PRS, ROLE_ECAL, ROLE_VETO, ROLE_HCAL = range(6)

# indices into the int64 register vector (= trigger_top word addresses), from
# firmware_models/registers.toml (pokerdaq._regmap): the order is defined there only
_P = TRIGGER_PARAM_INDEX
P_LAT, P_DEAD, P_FRAC = _P["LAT"], _P["DEAD"], _P["FRAC"]
P_BEAM_K, P_BEAM_THR, P_BEAM_W = _P["BEAM_K"], _P["BEAM_THR"], _P["BEAM_W"]
P_SRD_K, P_SRD_EMIN, P_SRD_EMAX, P_SRD_LO, P_SRD_HI = (
    _P["SRD_K"],
    _P["SRD_EMIN"],
    _P["SRD_EMAX"],
    _P["SRD_LO"],
    _P["SRD_HI"],
)
P_VETO_THR, P_VETO_LO, P_VETO_HI = _P["VETO_THR"], _P["VETO_LO"], _P["VETO_HI"]
P_CALO_LO, P_CALO_HI, P_HCAL_LO, P_HCAL_HI = _P["CALO_LO"], _P["CALO_HI"], _P["HCAL_LO"], _P["HCAL_HI"]
P_ECAL_CUT, P_PRS_MIN, P_CALIB_MIN = _P["ECAL_CUT"], _P["PRS_MIN"], _P["CALIB_MIN"]
P_MIP_LO, P_MIP_HI, P_HCAL_THR = _P["MIP_LO"], _P["MIP_HI"], _P["HCAL_THR"]
P_RND_MODE, P_RND_PARAM = _P["RND_MODE"], _P["RND_PARAM"]
P_SPAN_LO, P_SPAN_HI, P_N_BOARDS, P_GUARD = _P["SPAN_LO"], _P["SPAN_HI"], _P["N_BOARDS"], _P["GUARD"]
P_PRESCALE = _P["PRESCALE"]
N_PARAMS = N_TRIGGER_PARAMS
if N_PARAMS != P_PRESCALE + N_TYPES or len(_P) != len(globals().keys() & {f"P_{k}" for k in _P}):
    raise RuntimeError(
        "firmware_models/registers.toml: the trigger scalars do not match pokerdaq.trigger "
        f"(P_* constants, {N_TYPES} prescalers)"
    )

RND_OFF, RND_POISSON, RND_PERIODIC = 0, 1, 2

_MASK_LIMITS = {"beam_counters": 8, "srd": 16, "veto": 16}


def _fine(ns: float, sample_ns: float) -> int:
    """ns -> 1/64 sample, rounded half up (spec 2.2)."""
    return math.floor(ns * 64.0 / sample_ns + 0.5)


def _lsb(mev: float) -> int:
    """MeV -> energy LSB (1/16 MeV), rounded half up, saturated to u24 (spec 2.2)."""
    return min(math.floor(mev / ENERGY_LSB_MEV + 0.5), 2**SUM_BITS - 1)


@dataclass(frozen=True)
class TriggerRegisters:
    """All integer registers of the trigger, derived from a :class:`~pokerdaq.config.Config`.

    Attributes
    ----------
    params : numpy.ndarray of int64, shape (N_PARAMS,)
        Scalar registers, indexed by the ``P_*`` constants of this module.
    ch_role, ch_bit, ch_board, ch_gain, ch_lut : numpy.ndarray of int64, shape (n_channels,)
        Per channel: subsystem role (0..5 in :data:`~pokerdaq.config.SUBSYSTEMS` order), bit in
        the subsystem's mask (module index), board, fixed-point gain, LUT index (-1: none).
    luts : numpy.ndarray of int64, shape (n_luts, entries + 1)
    lut_shift : numpy.ndarray of int64, shape (n_luts,)
    adc_per_mev : dict
        The calibration used per subsystem (ADC counts x samples per MeV).
    random_seed : int
        The 32-bit nonzero seed of the random-trigger generator.
    """

    params: np.ndarray
    ch_role: np.ndarray
    ch_bit: np.ndarray
    ch_board: np.ndarray
    ch_gain: np.ndarray
    ch_lut: np.ndarray
    luts: np.ndarray
    lut_shift: np.ndarray
    adc_per_mev: dict
    random_seed: int
    sample_ns: float

    @property
    def n_channels(self) -> int:
        return len(self.ch_role)

    def __getitem__(self, index: int) -> int:
        return int(self.params[index])

    @classmethod
    def from_config(cls, cfg: Config, seed: int | None = None) -> TriggerRegisters:
        """Registers for configuration ``cfg``; ``seed`` (default ``run.seed``) seeds the random trigger.

        Raises
        ------
        ConfigError
            When a value does not fit its register, or the latency is shorter than the windows.
        """
        tc = cfg.trigger
        sample_ns = cfg.digitizer.sample_ns
        table = cfg.channel_map.table
        n_ch = len(table)
        sub_names = [s.decode() for s in table["subsystem"]]
        for name, limit in _MASK_LIMITS.items():
            n = cfg.subsystem(name).n_channels
            if n > limit:
                raise ConfigError(f"detector.{name}.modules", n, f"at most {limit} channels (trigger mask width)")
        ch_role = np.array([SUBSYSTEMS.index(s) for s in sub_names], dtype=np.int64)
        ch_bit = np.zeros(n_ch, dtype=np.int64)
        for name in SUBSYSTEMS:
            idx = cfg.channel_map.channels_of(name)
            ch_bit[idx] = np.arange(len(idx))
        ch_board = table["board"].astype(np.int64)

        frac = tc.gain_frac_bits
        calib: dict[str, float] = {}
        ch_gain = np.zeros(n_ch, dtype=np.int64)
        for name in SUBSYSTEMS:
            calib[name] = adc_per_mev(cfg, name)
            gain = math.floor((1 << frac) / (ENERGY_LSB_MEV * calib[name]) + 0.5)
            if not 1 <= gain < 2**24:
                raise ConfigError(
                    f"trigger.adc_per_mev.{name}",
                    calib[name],
                    f"a calibration giving a gain register of 1..2**24-1 with gain_frac_bits = {frac} (got {gain})",
                )
            ch_gain[ch_role == SUBSYSTEMS.index(name)] = gain

        ch_lut = np.full(n_ch, -1, dtype=np.int64)
        luts: list[np.ndarray] = []
        shifts: list[int] = []
        for name in tc.saturation_correction:
            lut, shift = sipm_saturation_lut(cfg, name, tc.saturation_lut_entries)
            ch_lut[ch_role == SUBSYSTEMS.index(name)] = len(luts)
            luts.append(lut)
            shifts.append(shift)
        lut_arr = np.array(luts, dtype=np.int64).reshape(len(luts), tc.saturation_lut_entries + 1)

        p = np.zeros(N_PARAMS, dtype=np.int64)
        beam_gev = cfg.beam.energy_gev
        windows = {}
        for key in ("srd_window_ns", "veto_window_ns", "calo_window_ns", "hcal_window_ns"):
            lo, hi = (_fine(v, sample_ns) for v in getattr(tc, key))
            if not lo < hi:
                raise ConfigError(f"trigger.{key}", list(getattr(tc, key)), "a window of at least 1/64 sample")
            windows[key] = (lo, hi)
        p[P_BEAM_W] = max(1, _fine(tc.beam_window_ns, sample_ns))
        p[P_GUARD] = _fine(tc.pileup_guard_ns, sample_ns)
        p[P_SRD_LO], p[P_SRD_HI] = windows["srd_window_ns"]
        p[P_VETO_LO], p[P_VETO_HI] = windows["veto_window_ns"]
        p[P_CALO_LO], p[P_CALO_HI] = windows["calo_window_ns"]
        p[P_HCAL_LO], p[P_HCAL_HI] = windows["hcal_window_ns"]
        p[P_SPAN_LO] = min(0, *(w[0] for w in windows.values()))
        p[P_SPAN_HI] = max(int(p[P_BEAM_W]), *(w[1] for w in windows.values()))

        n_beam = cfg.subsystem("beam_counters").n_channels
        if tc.beam_min_counters > n_beam:
            raise ConfigError("trigger.beam_min_counters", tc.beam_min_counters, f"at most the {n_beam} beam counters")
        n_srd = cfg.subsystem("srd").n_channels
        if tc.srd_min_channels > n_srd:
            raise ConfigError("trigger.srd_min_channels", tc.srd_min_channels, f"at most the {n_srd} SRD channels")
        p[P_BEAM_K] = tc.beam_min_counters
        p[P_BEAM_THR] = _lsb(tc.beam_threshold_mev)
        p[P_SRD_K] = tc.srd_min_channels
        p[P_SRD_EMIN] = _lsb(tc.srd_emin_at(beam_gev))
        p[P_SRD_EMAX] = _lsb(tc.srd_emax_mev)
        p[P_VETO_THR] = _lsb(tc.veto_threshold_mev)
        p[P_ECAL_CUT] = _lsb(tc.ecal_cut_at(beam_gev) * 1e3)
        p[P_PRS_MIN] = _lsb(tc.preshower_min_mev)
        p[P_CALIB_MIN] = _lsb(tc.calibration_min_beam_fraction * beam_gev * 1e3)
        p[P_MIP_LO], p[P_MIP_HI] = _lsb(tc.mip_window_mev[0]), _lsb(tc.mip_window_mev[1])
        p[P_HCAL_THR] = _lsb(tc.hcal_threshold_mev)
        p[P_FRAC] = frac
        p[P_N_BOARDS] = cfg.channel_map.n_boards

        p[P_DEAD] = math.floor(tc.dead_time_ns / sample_ns + 0.5)
        p[P_LAT] = math.ceil(tc.latency_ns / sample_ns - 1e-9)
        need = (int(p[P_SPAN_HI]) + 63) // 64 + 1
        if p[P_LAT] < need:
            raise ConfigError(
                "trigger.latency_ns",
                tc.latency_ns,
                f"at least {need * sample_ns:g} ns: the decision needs every window closed "
                f"(windows end {p[P_SPAN_HI] / 64 * sample_ns:g} ns after the reference time)",
            )

        tick_s = sample_ns * 1e-9
        if tc.random_rate_hz <= 0.0:
            p[P_RND_MODE] = RND_OFF
        elif tc.random_mode == "poisson":
            p[P_RND_MODE] = RND_POISSON
            p[P_RND_PARAM] = min(math.floor(tc.random_rate_hz * tick_s * 2**32 + 0.5), 2**32 - 1)
        else:
            p[P_RND_MODE] = RND_PERIODIC
            p[P_RND_PARAM] = max(1, math.floor(1.0 / (tc.random_rate_hz * tick_s) + 0.5))
        pre = tc.prescale
        for k, name in enumerate(TriggerBits.NAMES):
            p[P_PRESCALE + k] = getattr(pre, name)

        seed = cfg.run.seed if seed is None else int(seed)
        if seed < 0:
            raise ValueError(f"seed = {seed}: expected a non-negative integer")
        rnd = int(np.random.SeedSequence([seed, 0x7472_6967]).generate_state(1, np.uint32)[0]) or 1
        return cls(
            p,
            ch_role,
            ch_bit,
            ch_board,
            ch_gain,
            ch_lut,
            lut_arr,
            np.array(shifts, dtype=np.int64),
            calib,
            rnd,
            sample_ns,
        )

    def describe(self) -> dict[str, int]:
        """Register name -> value, for the run header and the CLI."""
        out = {s.param.lower(): int(self.params[s.index]) for s in TRIGGER_SCALARS if s.count == 1}
        for k, name in enumerate(TriggerBits.NAMES):
            out[f"prescale_{name}"] = int(self.params[P_PRESCALE + k])
        return out
