"""Python port of JLab's fADC250 firmware emulation, version 3 (firmware 0x0C12).

Ported by hand, statement by statement, from GlueX halld_recon
``src/libraries/DAQ/Df250EmulatorAlgorithm_v3.cc`` (JeffersonLab/halld_recon, commit
00aa2b010ffc3a5c0f6431efa822b3931eeb080b, ``Df250EmulatorAlgorithm_v3::EmulateFirmware``);
sample words as ``src/libraries/DAQ/DEVIOWorkerThread.cc`` of the same repository (commit
046a3ecfb6d0737e31356a0fd2a979b67deb2e2e, ``MakeDf250WindowRawData``) unpacks them: 13 bits, a
12-bit code and an out-of-range bit; the emulator takes 0x1fff as overflow, 0x1000 as underflow.

It is written from the C++ and not from docs/firmware-spec.md on purpose: the tests compare
the spec's implementations (naive reference, numba kernel, RTL) against it. The loop
structure follows the C++ (one index ``i`` reused by the integration and re-arming loops,
1-based TC and TMID, the quality bits of ``QF_emulated``) so that a reader can check it line
by line; unsigned C++ arithmetic is noted where it matters.

:func:`v3_to_records` maps the port's output to PULSE_DTYPE records as docs/firmware-spec.md
1.13.7 defines the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pokerdaq.dsp import PULSE_DTYPE, QualityBits

MAX_PULSES = 3  # const int max_pulses = 3
OVERFLOW_WORD = 0x1FFF
UNDERFLOW_WORD = 0x1000

# QF_emulated bit positions of the C++ (QF |= 1 << k)
QF_BAD_PEDESTAL = 1 << 0
QF_NSA_BEYOND_PTW = 1 << 1
QF_OVERFLOW = 1 << 2
QF_UNDERFLOW = 1 << 3
QF_VPEAK_BEYOND_NSA = 1 << 4
QF_VPEAK_NOT_FOUND = 1 << 5
QF_BAD_TIMING_PEDESTAL = 1 << 6


@dataclass(frozen=True)
class V3Pulse:
    """One Df250PulseData as the emulator fills it (emulated values)."""

    pulse_number: int
    TC: int  # threshold crossing, 1-based (TC = i + 1)
    integral: int
    pedestal: int
    VPEAK: int
    TMID: int  # course_time, 1-based; 0 when the walk back found nothing
    TFINE: int
    nsamples_over_threshold: int
    QF: int


def emulate_v3(samples: list[int], NSA: int, NSB: int, THR: int, NPED: int, MAXPED: int, NSAT: int) -> list[V3Pulse]:
    """``EmulateFirmware`` on one window of 13-bit sample words."""
    NW = len(samples)
    assert NSB >= 0, "the port covers NSB >= 0 (the POKER register is u6)"
    assert NSAT <= NW and NPED <= NW and NW >= 4, "the C++ reads out of bounds otherwise"
    code = [s & 0xFFF for s in samples]

    npulses = 0
    TC = [0] * MAX_PULSES
    pulse_integral = [0] * MAX_PULSES
    has_overflow = [False] * MAX_PULSES
    has_underflow = [False] * MAX_PULSES
    n_above = [0] * MAX_PULSES
    nsa_beyond_ptw = [False] * MAX_PULSES
    vpeak_beyond_nsa = [False] * MAX_PULSES
    vpeak_not_found = [False] * MAX_PULSES

    # first pass: threshold crossings and integrals
    MAX_SAMPLE = NW - NSAT
    i = 0
    while i < MAX_SAMPLE:  # for (i = 0; i < MAX_SAMPLE; i++)
        if code[i] > THR:
            TC[npulses] = i + 1
            if NSAT > 1:
                samples_over_threshold = 1
                # for (j = i+1; (samples[j] & 0xfff) > THR && j < MAX_SAMPLE+1; j++)
                # (the i == 0 branch of the C++ does the same: its inner test repeats the
                # loop condition)
                j = i + 1
                while code[j] > THR and j < MAX_SAMPLE + 1:
                    samples_over_threshold += 1
                    if samples_over_threshold == NSAT:
                        break
                    j += 1
                if samples_over_threshold != NSAT:
                    i += 1  # continue
                    continue
            # integral
            ibegin = (i - NSB) if i > NSB else 0
            iend = (i + NSA) if (i + NSA) < NW else NW
            nsa_beyond_ptw[npulses] = (i + NSA - 1) >= NW
            i = ibegin
            while i < iend:
                pulse_integral[npulses] += code[i]
                if samples[i] == OVERFLOW_WORD:
                    has_overflow[npulses] = True
                if samples[i] == UNDERFLOW_WORD:
                    has_underflow[npulses] = True
                if i + 1 >= TC[npulses] and code[i] > THR:
                    n_above[npulses] += 1
                i += 1
            # for (; i < NW && (samples[i] & 0xfff) >= THR; ++i) {}
            while i < NW and code[i] >= THR:
                i += 1
            npulses += 1
            if npulses == MAX_PULSES:
                break
        i += 1  # the for loop's ++i

    # pedestal, VMIN and the timing-pedestal conditions
    bad_pedestal = False
    bad_timing_pedestal = False
    no_timing_calculation = False
    pedestal = 0
    VMIN = 0
    for k in range(NPED):
        pedestal += code[k]
        if k < 4:
            VMIN += code[k]
        if code[k] > MAXPED:
            bad_pedestal = True
        if samples[k] in (OVERFLOW_WORD, UNDERFLOW_WORD):
            bad_pedestal = True
    VMIN //= NPED  # uint32 division
    for k in range(4):
        if code[k] > MAXPED or code[k] > THR:
            bad_timing_pedestal = True
        if samples[k] in (UNDERFLOW_WORD, OVERFLOW_WORD):
            bad_timing_pedestal = True
        if code[k] > THR:
            no_timing_calculation = True

    pulses = []
    for p in range(npulses):
        VPEAK = 0
        TPEAK = 0
        TMID = 0
        TFINE = 0
        if no_timing_calculation:
            TMID = TC[p]
            TFINE = 0
            VPEAK = 0
        while True:  # one pass, left with break
            ipeak = TC[p]
            while ipeak < NW - 1:
                if code[ipeak] < code[ipeak - 1]:
                    VPEAK = code[ipeak - 1]
                    TPEAK = ipeak - 1
                    break
                ipeak += 1
            if ipeak > TC[p] + NSA:
                vpeak_beyond_nsa[p] = True
            if VPEAK == 0:
                TMID = TC[p]
                TFINE = 0
                VPEAK = 0
                vpeak_beyond_nsa[p] = True
                vpeak_not_found[p] = True
                break
            if no_timing_calculation:
                break
            VMID = (VMIN + VPEAK) >> 1
            k = TPEAK
            while k >= 1:  # unsigned: stops after k = 1
                if code[k - 1] <= VMID and code[k] > VMID:
                    TMID = k
                    break
                k -= 1
            if TMID == 0:
                TFINE = 0
            else:
                Vnext = code[TMID]
                Vlast = code[TMID - 1]
                if Vnext > Vlast and VMID >= Vlast:
                    TFINE = 64 * (VMID - Vlast) // (Vnext - Vlast)
                else:
                    TFINE = 62
                if TFINE == 64:
                    TFINE = 0
            break

        QF = 0
        if bad_pedestal:
            QF |= QF_BAD_PEDESTAL
        if nsa_beyond_ptw[p]:
            QF |= QF_NSA_BEYOND_PTW
        if has_overflow[p]:
            QF |= QF_OVERFLOW
        if has_underflow[p]:
            QF |= QF_UNDERFLOW
        if vpeak_beyond_nsa[p]:
            QF |= QF_VPEAK_BEYOND_NSA
        if vpeak_not_found[p]:
            QF |= QF_VPEAK_NOT_FOUND
        if bad_timing_pedestal:
            QF |= QF_BAD_TIMING_PEDESTAL
        pulses.append(V3Pulse(p, TC[p], pulse_integral[p], pedestal, VPEAK, TMID, TFINE, n_above[p], QF))
    return pulses


_QF_TO_QUALITY = {
    QF_BAD_PEDESTAL: QualityBits.PEDESTAL_BAD,
    QF_NSA_BEYOND_PTW: QualityBits.NSA_BEYOND_WINDOW,
    QF_OVERFLOW: QualityBits.OVERFLOW,
    QF_UNDERFLOW: QualityBits.UNDERFLOW,
    QF_VPEAK_BEYOND_NSA: QualityBits.PEAK_BEYOND_NSA,
    QF_VPEAK_NOT_FOUND: QualityBits.PEAK_NOT_FOUND,
    QF_BAD_TIMING_PEDESTAL: QualityBits.TIMING_PEDESTAL_BAD,
}


def v3_to_records(pulses: list[V3Pulse], channel: int, NSA: int, NSB: int, NW: int, nped_log2: int) -> list[tuple]:
    """PULSE_DTYPE rows of one window's v3 pulses (docs/firmware-spec.md 1.13.7)."""
    rows = []
    for v in pulses:
        c = v.TC - 1
        quality = 0
        for qf, bit in _QF_TO_QUALITY.items():
            if v.QF & qf:
                quality |= bit
        if v.TMID == 0:
            # v3 course_time 0: no straddle of VMID found; the record keeps the crossing
            quality |= QualityBits.TIME_BAD
            coarse = c
        else:
            coarse = v.TMID - 1
        n_int = min(c + NSA, NW) - max(c - NSB, 0)
        net = v.integral - ((v.pedestal * n_int) >> nped_log2)
        rows.append(
            (
                channel,
                v.pulse_number,
                coarse,
                v.TFINE,
                coarse * 64 + v.TFINE,
                c,
                v.VPEAK,
                v.integral,
                net,
                v.pedestal,
                v.nsamples_over_threshold,
                quality,
            )
        )
    return rows


def port_records(
    samples: np.ndarray, nsa: int, nsb: int, thr: int, nped_log2: int, maxped: int, nsat: int
) -> np.ndarray:
    """The port over windows (channels, N) with the same registers, as PULSE_DTYPE."""
    rows = []
    for ch in range(samples.shape[0]):
        words = [int(s) for s in samples[ch]]
        pulses = emulate_v3(words, nsa, nsb, thr, 1 << nped_log2, maxped, nsat)
        rows += v3_to_records(pulses, ch, nsa, nsb, len(words), nped_log2)
    return np.array(rows, dtype=PULSE_DTYPE)
