"""Trigger output record, trigger-word and condition bit maps (docs/firmware-spec.md Part 2)."""

from __future__ import annotations

import numpy as np

ENERGY_LSB_MEV = 1.0 / 16.0
"""Energy unit of every trigger primitive and sum: 1/16 MeV (62.5 keV)."""

CHANNEL_ENERGY_BITS = 22
"""Channel energies saturate at 2**22 - 1 LSB (262 GeV)."""

SUM_BITS = 24
"""Board partial sums and global sums saturate at 2**24 - 1 LSB (1049 GeV)."""

TRIGGER_DTYPE = np.dtype(
    [
        ("event_number", np.uint64),  # 0, 1, 2 ... per accepted trigger (window mode: window index)
        ("timestamp", np.uint64),  # issue tick, 250 MHz: (ref_time >> 6) + LATENCY
        ("ref_time", np.int64),  # reference time T_REF in 1/64 sample (62.5 ps)
        ("trigger_word", np.uint32),  # bits 0-7 types after prescale, bits 8-15 raw types
        ("conditions", np.uint32),  # ConditionBits
        ("beam_mask", np.uint8),  # beam counters hit in [T_REF, T_REF + W_BEAM)
        ("srd_mask", np.uint16),  # SRD channels with a pulse in [EMIN, EMAX] in the SRD window
        ("veto_mask", np.uint16),  # VETO channels with a pulse >= VETO_THR in the VETO window
        ("e_preshower", np.uint32),  # global sums, LSB 1/16 MeV, u24 saturating
        ("e_ecal", np.uint32),  # ECAL main section
        ("e_calo", np.uint32),  # pre-shower + ECAL main (the "ECAL energy" of the conditions)
        ("e_hcal", np.uint32),
        ("e_srd", np.uint32),
        ("e_veto", np.uint32),
    ]
)
"""One row per trigger. Field widths and meaning: docs/firmware-spec.md Part 2."""


class ConditionBits:
    """Bit positions of ``TRIGGER_DTYPE['conditions']``."""

    BEAM = 1 << 0  # >= BEAM_K distinct beam counters in [T_REF, T_REF + W_BEAM)
    SRD = 1 << 1  # >= SRD_K SRD channels with a pulse energy in [SRD_EMIN, SRD_EMAX]
    VETO = 1 << 2  # a VETO pulse >= VETO_THR
    ECAL_LOW = 1 << 3  # E_CALO < ECAL_CUT
    PRESHOWER = 1 << 4  # E_PRS >= PRS_MIN
    ECAL_CALIB = 1 << 5  # E_CALO >= CALIB_MIN
    ECAL_MIP = 1 << 6  # MIP_LO <= E_CALO < MIP_HI
    HCAL = 1 << 7  # E_HCAL >= HCAL_THR
    RANDOM = 1 << 8  # the candidate came from the random generator
    PILEUP = 1 << 9  # the previous beam candidate lies less than PILEUP_GUARD before T_REF

    NAMES = ("beam", "srd", "veto", "ecal_low", "preshower", "ecal_calib", "ecal_mip", "hcal", "random", "pileup")


class TriggerBits:
    """Bit positions of the trigger types in ``trigger_word`` (raw types: the same bits << 8)."""

    PHYSICS = 1 << 0  # BEAM & SRD & ECAL_LOW & PRESHOWER & !VETO & !PILEUP
    BEAM = 1 << 1  # BEAM
    RANDOM = 1 << 2  # RANDOM
    CALIBRATION = 1 << 3  # BEAM & ECAL_CALIB
    MUON = 1 << 4  # BEAM & ECAL_MIP & (HCAL | VETO)

    NAMES = ("physics", "beam", "random", "calibration", "muon")
    RAW_SHIFT = 8


N_TYPES = len(TriggerBits.NAMES)
