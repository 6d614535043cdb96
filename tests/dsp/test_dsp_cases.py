"""Hand-computed corner cases of docs/firmware-spec.md Part 1, checked on kernel and reference.

Every expected number below was worked out by hand from the spec text (the arithmetic is in
the comments), not by running either implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
from dsp_helpers import assert_records_equal

from pokerdaq.dsp import PULSE_DTYPE, PulseParams, QualityBits, find_pulses
from pokerdaq.dsp._reference import find_pulses_reference

Q = QualityBits
IMPLEMENTATIONS = {"kernel": find_pulses, "reference": find_pulses_reference}


def _records(*rows) -> np.ndarray:
    return np.array(list(rows), dtype=PULSE_DTYPE)


def _check(impl, samples, params, want):
    got = IMPLEMENTATIONS[impl](np.asarray(samples, dtype=np.uint16), params)
    assert_records_equal(got, want, impl)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_measured_pedestal_twelve_samples(impl):
    # NPED = 4: PED_SUM = 100 + 101 + 99 + 102 = 402, P = 402 >> 2 = 100, T = 120.
    # c = 5 (x[4] = 100 <= 120 < 150), confirmed by x[5], x[6] > 120 (NSAT = 2).
    # peak: x[7] = 250 < x[6] = 300 -> p = 6, VPEAK = 300.
    # integral [c - NSB, c + NSA) = [4, 10): 100 + 150 + 300 + 250 + 180 + 120 = 1100;
    # net = 1100 - ((402 * 6) >> 2) = 1100 - 603 = 497.
    # VMID = (100 + 300) >> 1 = 200; x[5] = 150 <= 200 < x[6] = 300 -> COARSE 5,
    # FINE = (50 << 6) // 150 = 3200 // 150 = 21, TIME = 5 * 64 + 21 = 341.
    # N_OVER: 150, 300, 250, 180 > 120, then x[9] = 120 is not above T -> 4.
    x = [[100, 101, 99, 102, 100, 150, 300, 250, 180, 120, 101, 100]]
    params = PulseParams.uniform(1, thr=20, nsb=1, nsa=5, nsat=2, nped_log2=2, max_pulses=3)
    _check(impl, x, params, _records((0, 0, 5, 21, 341, 5, 300, 1100, 497, 402, 4, 0)))


# Configured pedestal 100 with NPED = 8: PED_SUM = 800, P = 100, T = 120; NSB 2, NSA 4, NSAT 1.
_RAILS = [[130, 16383, 16383, 90, 0, 100, 121, 100, 200, 110, 16383, 16383]]
# x[0] = 130 is above T but has no sample before it: no crossing until the signal came down.
# pulse 0: c = 6 (x[5] = 100 <= 120 < 121). Pile-up: x[7] = 100 <= 120 < x[8] = 200.
#   peak: x[7] < x[6] -> p = 6, VPEAK 121. integral [4, 10) = 0+100+121+100+200+110 = 631,
#   UNDERFLOW (x[4] = 0), net = 631 - (800 * 6 >> 3) = 31. VMID = (100 + 121) >> 1 = 110:
#   x[5] = 100 <= 110 < 121 -> COARSE 5, FINE = (10 << 6) // 21 = 30, TIME 350. N_OVER 1.
_P0 = (0, 0, 5, 30, 350, 6, 121, 631, 31, 800, 1, int(Q.PILEUP | Q.UNDERFLOW))
# pulse 1: c = 10 (next search from c + NSA = 10; x[9] = 110 <= 120 < 16383). Window ends at
#   12 < c + NSA = 14: NSA_BEYOND_WINDOW; no falling sample before the end: PEAK_NOT_FOUND,
#   p = first maximum = 10. integral [8, 12) = 200 + 110 + 16383 + 16383 = 33076, OVERFLOW,
#   net = 33076 - (800 * 4 >> 3) = 32676. VMID = (100 + 16383) >> 1 = 8241:
#   x[9] = 110 <= 8241 < 16383 -> COARSE 9, FINE = (8131 << 6) // 16273 = 520384 // 16273 = 31,
#   TIME 607. N_OVER = 2 (the window ends).
_P1 = (0, 1, 9, 31, 607, 10, 16383, 33076, 32676, 800, 2, int(Q.NSA_BEYOND_WINDOW | Q.OVERFLOW | Q.PEAK_NOT_FOUND))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_configured_pedestal_rails_pileup_window_end(impl):
    params = PulseParams.uniform(1, thr=20, nsb=2, nsa=4, nsat=1, nped_log2=3, ped_mode=1, ped_cfg=100, max_pulses=0)
    _check(impl, _RAILS, params, _records(_P0, _P1))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_max_pulses_flags_the_last_reported(impl):
    params = PulseParams.uniform(1, thr=20, nsb=2, nsa=4, nsat=1, nped_log2=3, ped_mode=1, ped_cfg=100, max_pulses=1)
    p0 = list(_P0)
    p0[-1] |= int(Q.MORE_PULSES)
    _check(impl, _RAILS, params, _records(tuple(p0)))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_no_crossing_at_the_first_search_sample(impl):
    # measured NPED = 4, P = 100, T = 110: x[4] = 200 is above T but c - 1 = 3 < SEARCH_START
    # = 4, and the signal never comes back to T: no pulse at all.
    x = [[100] * 4 + [200] * 8]
    params = PulseParams.uniform(1, thr=10, nsb=0, nsa=4, nsat=1, nped_log2=2)
    _check(impl, x, params, _records())
    # one sample later the crossing is legal: c = 5, and the plateau never falls inside NSA:
    # PEAK_BEYOND_NSA, p = first maximum = 5, VPEAK 200; NSB = 0 so lo = c and no sample pair
    # below the peak is inside [lo, p]: TIME_BAD, COARSE = c, FINE 0.
    # integral [5, 9) = 800, net = 800 - (400 * 4 >> 2) = 400; N_OVER = 4.
    x = [[100] * 5 + [200] * 7]
    _check(impl, x, params, _records((0, 0, 5, 0, 320, 5, 200, 800, 400, 400, 4, int(Q.PEAK_BEYOND_NSA | Q.TIME_BAD))))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sample_equal_to_threshold_and_unconfirmed_candidate(impl):
    # configured P = 50, T = 60. x[2] = 60 equals T: not above. x[4] = 61 is a candidate but
    # x[5] = 60 fails NSAT = 2. c = 6: x[5] = 60 <= 60 < 70, x[7] = 80 confirms. NSB 1 NSA 3:
    # integral [5, 9) = 60 + 70 + 80 + 40 = 250, net = 250 - (50 * 4) = 50 (NPED = 1).
    # peak p = 7 (x[8] = 40 < 80), VMID = (50 + 80) >> 1 = 65: x[6] = 70 <= 65? no; k = 6:
    # x[5] = 60 <= 65 < 70 -> COARSE 5, FINE = (5 << 6) // 10 = 32, TIME 352. N_OVER 2.
    # The pulse at c = 1 (configured: search from c = 1; x[0] = 50 <= 60 < x[1] = 61) is not
    # confirmed: x[2] = 60.
    x = [[50, 61, 60, 50, 61, 60, 70, 80, 40, 50]]
    params = PulseParams.uniform(1, thr=10, nsb=1, nsa=3, nsat=2, nped_log2=0, ped_mode=1, ped_cfg=50, max_pulses=0)
    _check(impl, x, params, _records((0, 0, 5, 32, 352, 6, 80, 250, 50, 50, 2, 0)))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_nsb_before_window_and_pedestal_bad(impl):
    # configured P = 10, T = 15: c = 1 with NSB = 3 -> lo = 0, NSB_BEFORE_WINDOW.
    # integral [0, 3) = 10 + 40 + 20 = 70, net = 70 - 30 = 40; peak p = 1 (20 < 40), VMID 25,
    # x[0] = 10 <= 25 < 40 -> COARSE 0, FINE = (15 << 6) // 30 = 32, TIME 32. N_OVER 2.
    x = [[10, 40, 20, 10, 10, 10]]
    params = PulseParams.uniform(1, thr=5, nsb=3, nsa=2, nsat=1, nped_log2=0, ped_mode=1, ped_cfg=10, max_pulses=0)
    _check(impl, x, params, _records((0, 0, 0, 32, 32, 1, 40, 70, 40, 10, 2, int(Q.NSB_BEFORE_WINDOW))))
    # measured, NPED = 2 with x[1] = 31 > MAXPED = 30: every pulse of the window is flagged.
    # PED_SUM = 29 + 31 = 60, P = 30, T = 35; c = 3 (x[2] = 30, x[3] = 50), NSB 0, NSA 2:
    # integral 50 + 45 = 95, net = 95 - (60 * 2 >> 1) = 35; peak p = 3, VMID 40, k = 3:
    # x[2] = 30 <= 40 < 50 but k must be > lo = 3: TIME_BAD. c = 5 is the second pulse
    # (x[4] = 45 > T: no candidate at 5? x[4] = 45 > 35 -> not a crossing) -> one pulse.
    x = [[29, 31, 30, 50, 45, 60, 30, 30]]
    params = PulseParams.uniform(1, thr=5, nsb=0, nsa=2, nsat=1, nped_log2=1, maxped=30)
    _check(impl, x, params, _records((0, 0, 3, 0, 192, 3, 50, 95, 35, 60, 2, int(Q.PEDESTAL_BAD | Q.TIME_BAD))))


def test_channel_ids_and_order():
    x = np.full((3, 16), 100, dtype=np.uint16)
    x[0, 10:12] = 500
    x[2, 3:5] = 500
    x[2, 9:11] = 500
    params = PulseParams.uniform(3, thr=20, nsb=1, nsa=4, nsat=1, nped_log2=1)
    got = find_pulses(x, params, channel_ids=np.array([17, 18, 129]))
    assert got["channel"].tolist() == [17, 129, 129]
    assert got["pulse_index"].tolist() == [0, 0, 1]
    assert got["crossing"].tolist() == [10, 3, 9]


def test_any_integer_dtype_gives_the_same_records():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 16384, (4, 40))
    params = PulseParams.uniform(4, thr=300, nsa=5, max_pulses=0)
    want = find_pulses(x.astype(np.uint16), params)
    assert len(want) > 4
    for dtype in (np.int16, np.int32, np.int64, np.uint32):
        assert_records_equal(find_pulses(x.astype(dtype), params), want, str(dtype))
    # a non-contiguous view is accepted too
    wide = np.zeros((4, 80), dtype=np.uint16)
    wide[:, ::2] = x
    assert_records_equal(find_pulses(wide[:, ::2], params), want, "strided")
