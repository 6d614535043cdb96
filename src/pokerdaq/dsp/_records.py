"""The pulse record: one row per pulse found, as defined in docs/firmware-spec.md."""

from __future__ import annotations

import numpy as np

PULSE_DTYPE = np.dtype(
    [
        ("channel", np.uint16),  # channel number in the channel map
        ("pulse_index", np.uint8),  # 0, 1, 2 ... within the window (or stream) of this channel, low 8 bits
        ("coarse_time", np.int64),  # sample index of the sample before the mid-amplitude crossing
        ("fine_time", np.uint8),  # 0..63, in 1/64 of a sample (62.5 ps at 250 MHz)
        ("time", np.int64),  # coarse_time * 64 + fine_time
        ("crossing", np.int64),  # sample index of the threshold crossing
        ("peak", np.uint16),  # VPEAK, raw ADC code of the peak sample
        ("integral", np.uint32),  # raw sum of samples in [crossing - NSB, crossing + NSA), clipped
        ("integral_net", np.int32),  # integral minus the pedestal scaled to the samples summed
        ("pedestal", np.uint32),  # pedestal SUM over NPED samples
        ("n_over", np.uint16),  # samples above threshold from the crossing on (saturates at 65535)
        ("quality", np.uint16),  # QualityBits
    ]
)
"""Pulse record (numpy structured dtype). Field widths and meaning: docs/firmware-spec.md."""


class QualityBits:
    """Bit positions of ``PULSE_DTYPE['quality']``; docs/firmware-spec.md section 'Quality bits'."""

    PEDESTAL_BAD = 1 << 0  # a pedestal sample above MAXPED (measured mode)
    NSA_BEYOND_WINDOW = 1 << 1  # crossing + NSA runs past the end of the window: integral truncated
    NSB_BEFORE_WINDOW = 1 << 2  # crossing - NSB lies before the window start: integral truncated
    OVERFLOW = 1 << 3  # a sample in the integration range at the upper rail (16383)
    UNDERFLOW = 1 << 4  # a sample in the integration range at the lower rail (0)
    PEAK_BEYOND_NSA = 1 << 5  # no falling sample within NSA: peak is the first maximum in NSA
    PEAK_NOT_FOUND = 1 << 6  # window ended before a falling sample: peak is the first maximum
    TIME_BAD = 1 << 7  # no sample pair straddling VMID: time = crossing * 64
    PILEUP = 1 << 8  # another candidate crossing inside this pulse's open range (c, c+NSA)
    MORE_PULSES = 1 << 9  # a further valid pulse followed but max_pulses was reached
    TIMING_PEDESTAL_BAD = 1 << 10  # fadc250 only: one of x[0..3] > MAXPED or > THR, or out of range
