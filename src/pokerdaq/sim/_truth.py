"""Truth record of one beam particle and the species codes."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Species(IntEnum):
    """Particle species code stored in ``TRUTH_DTYPE['species']``.

    ``NONE`` (-1) marks a truth row of a readout window in which no beam particle arrived
    (a DAQ event of a random trigger, or of noise or Lu-176 alone): see
    :func:`pokerdaq.sim.window_truth`.
    """

    NONE = -1
    POSITRON = 0
    ELECTRON = 1
    HADRON = 2
    MUON = 3


TRUTH_DTYPE = np.dtype(
    [
        ("event", np.uint64),  # beam-particle index in time order (= event number in window mode)
        ("t_ns", np.float64),  # absolute arrival time at the calorimeter face
        ("t_sample", np.int64),  # floor(t_ns / sample period): the 250 MHz tick
        ("species", np.int8),  # Species code
        ("energy_gev", np.float64),  # particle energy (beam energy with its spread)
        ("is_signal", np.bool_),  # A' -> invisible event (e+ resonant annihilation)
        ("e_miss_gev", np.float64),  # invisible energy (0 unless is_signal)
        ("x_mm", np.float32),  # impact point on the calorimeter face
        ("y_mm", np.float32),
        ("e_counters_mev", np.float32),  # deposits summed per subsystem
        ("e_srd_mev", np.float32),
        ("e_preshower_gev", np.float32),
        ("e_ecal_gev", np.float32),
        ("e_veto_mev", np.float32),
        ("e_hcal_gev", np.float32),
        ("n_pileup", np.uint16),  # other beam particles whose pulses reach the readout window
    ]
)
"""Per-particle truth kept by the emulator (one row per beam particle)."""

NO_PARTICLE_EVENT = np.uint64(2**64 - 1)
"""``TRUTH_DTYPE['event']`` of a row that describes no beam particle (``species`` = ``Species.NONE``)."""
