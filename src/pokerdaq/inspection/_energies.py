"""Per-event energies measured from the stored pulses, as the trigger sums them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..trigger import ENERGY_LSB_MEV, ConditionBits, trigger_windows


@dataclass(frozen=True)
class EventEnergies:
    """In-time energy sums of each event (trigger window mode on the stored pulses).

    Attributes
    ----------
    e_calo_gev, e_hcal_gev, e_srd_mev, e_veto_mev : numpy.ndarray of float64
        Pre-shower + ECAL, HCAL, SRD and VETO sums in the trigger's in-time windows, from the
        integer trigger sums (LSB 1/16 MeV).
    conditions : numpy.ndarray of uint32
        Trigger condition bits (``ConditionBits``) of each event.
    """

    e_calo_gev: np.ndarray
    e_hcal_gev: np.ndarray
    e_srd_mev: np.ndarray
    e_veto_mev: np.ndarray
    conditions: np.ndarray

    @property
    def has_beam(self) -> np.ndarray:
        return (self.conditions & ConditionBits.BEAM) != 0


def event_energies(pulses: np.ndarray, n_pulses: np.ndarray, cfg: Config) -> EventEnergies:
    """Energy sums of each event from its stored pulses.

    Parameters
    ----------
    pulses
        ``STORED_PULSE_DTYPE`` (or ``PULSE_DTYPE``) rows of all events, in event order.
    n_pulses
        Pulses per event (``/events['n_pulses']``).
    cfg
        The run configuration (calibration and trigger windows).
    """
    n_pulses = np.asarray(n_pulses, dtype=np.int64)
    if n_pulses.sum() != len(pulses):
        raise ValueError(f"n_pulses: sums to {int(n_pulses.sum())}, but {len(pulses)} pulses given")
    window = np.repeat(np.arange(len(n_pulses), dtype=np.int64), n_pulses)
    trig = trigger_windows(pulses, window, len(n_pulses), cfg)
    lsb = ENERGY_LSB_MEV
    return EventEnergies(
        e_calo_gev=trig["e_calo"] * lsb * 1e-3,
        e_hcal_gev=trig["e_hcal"] * lsb * 1e-3,
        e_srd_mev=trig["e_srd"] * lsb,
        e_veto_mev=trig["e_veto"] * lsb,
        conditions=trig["conditions"].astype(np.uint32),
    )
