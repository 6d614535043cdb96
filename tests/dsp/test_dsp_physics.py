"""The pulse finder on analytic SiPM-like pulses of known amplitude and time.

Truth: a difference of exponentials (rise 4 ns as the 4 ns shaping of the calorimeter
channels in poker.toml, decay 15 ns as ``sipm.pulse_decay_ns``), on a 400 ADC baseline with
2 ADC Gaussian noise from a seeded Generator, sampled at 4 ns and quantised to 14 bits.
Registers: the ECAL defaults of poker.toml (THR 20, NSB 2, NSA 12, NSAT 2, NPED 8 measured).
The figures are printed (``pytest -s``) and asserted with margins of several statistical
standard deviations.
"""

from __future__ import annotations

import numpy as np
import pytest
from dsp_helpers import SAMPLE_NS, half_max_time_ns, make_windows, sipm_shape

from pokerdaq.dsp import PulseParams, QualityBits, find_pulses_batch

RISE_NS, DECAY_NS = 4.0, 15.0
ECAL = dict(thr=20, nsb=2, nsa=12, nsat=2, nped_log2=3, max_pulses=3, ped_mode=0)
N_EVENTS = 2000


def _single_pulses(
    seed: int, amplitude: float, t0_ns: np.ndarray, params: PulseParams, **shape
) -> tuple[np.ndarray, np.ndarray]:
    """Records of the events with exactly one pulse, and the mask of those events."""
    rng = np.random.default_rng(seed)
    w = make_windows(
        rng,
        np.full(len(t0_ns), amplitude),
        t0_ns,
        rise_ns=shape.get("rise", RISE_NS),
        decay_ns=shape.get("decay", DECAY_NS),
    )
    rec, off = find_pulses_batch(w, params)
    one = np.diff(off) == 1
    return rec[off[:-1][one]], one


def _time_ns(rec: np.ndarray) -> np.ndarray:
    return rec["time"] / 64.0 * SAMPLE_NS


def test_time_resolution_vs_amplitude():
    params = PulseParams.uniform(1, **ECAL)
    t_half = half_max_time_ns(RISE_NS, DECAY_NS)
    rng = np.random.default_rng(100)
    sigma_random, sigma_fixed = {}, {}
    for i, (label, amp) in enumerate((("small", 60.0), ("medium", 600.0), ("large", 10000.0))):
        # random phase: the spread includes the interpolation error across the sample grid
        t0 = rng.uniform(80.0, 84.0, N_EVENTS)
        rec, one = _single_pulses(10 + i, amp, t0, params)
        assert one.mean() > 0.995, label
        res = _time_ns(rec) - (t0[one] + t_half)
        sigma_random[label] = res.std()
        assert abs(res.mean()) < 0.5, (label, res.mean())
        # fixed phase: the spread is the noise alone
        t0 = np.full(N_EVENTS, 81.3)
        rec, one = _single_pulses(20 + i, amp, t0, params)
        sigma_fixed[label] = _time_ns(rec).std()
        print(
            f"sigma_t {label} (A = {amp:.0f} ADC, {one.sum()} pulses): random phase "
            f"{sigma_random[label]:.3f} ns, fixed phase {sigma_fixed[label]:.3f} ns"
        )
    # noise term: about noise / slope; the slope grows with A
    assert sigma_fixed["small"] > 3 * sigma_fixed["medium"] > 0
    assert sigma_fixed["small"] < 0.5
    assert sigma_fixed["large"] < 0.05
    # the total is dominated by the linear interpolation of a 4 ns edge sampled every 4 ns
    assert sigma_random["large"] < 0.45 and sigma_random["medium"] < 0.45
    assert sigma_random["small"] < 0.6
    assert sigma_random["small"] >= sigma_random["large"]


def test_integral_linear_below_saturation():
    params = PulseParams.uniform(1, **ECAL)
    amplitudes = np.array([100, 200, 500, 1000, 2000, 5000, 10000, 15000], dtype=float)
    t0 = np.random.default_rng(7).uniform(80.0, 84.0, 500)  # the same phases at every amplitude
    mean_net = []
    for i, amp in enumerate(amplitudes):
        rec, one = _single_pulses(30 + i, amp, t0, params)
        assert one.all()
        assert not (rec["quality"] & QualityBits.OVERFLOW).any()
        mean_net.append(rec["integral_net"].mean())
    mean_net = np.array(mean_net)
    slope = mean_net[-3:].sum() / amplitudes[-3:].sum()
    deviation = mean_net / (slope * amplitudes) - 1.0
    print(
        "integral_net / A:",
        np.round(mean_net / amplitudes, 4).tolist(),
        "max deviation from proportional",
        f"{np.abs(deviation).max():.4f}",
    )
    assert np.abs(deviation).max() < 0.01
    # the slope is the pulse area in samples, less the tail beyond the 14 samples summed
    fine = np.linspace(0.0, 400.0, 400_001)
    area_samples = sipm_shape(fine, RISE_NS, DECAY_NS).sum() * (fine[1] - fine[0]) / SAMPLE_NS
    print(f"integral slope {slope:.4f} per ADC of amplitude, full area {area_samples:.4f}")
    assert 0.9 * area_samples < slope < area_samples
    # at the rail the integral is flagged and no longer linear
    rec, one = _single_pulses(40, 17000.0, t0, params)
    assert (rec["quality"] & QualityBits.OVERFLOW).all()


@pytest.mark.parametrize("nsat", [1, 2])
def test_efficiency_turn_on_at_threshold(nsat):
    """Efficiency vs the noiseless height of the highest sample above the baseline."""
    params = PulseParams.uniform(1, **{**ECAL, "nsat": nsat})
    t0 = np.full(N_EVENTS, 81.0)
    t = np.arange(64) * SAMPLE_NS
    peak_fraction = sipm_shape(t - 81.0, RISE_NS, DECAY_NS).max()
    heights = np.arange(10, 34, 2)
    eff = []
    for i, h in enumerate(heights):
        rng = np.random.default_rng(50 + i)
        w = make_windows(rng, np.full(N_EVENTS, h / peak_fraction), t0, rise_ns=RISE_NS, decay_ns=DECAY_NS)
        rec, off = find_pulses_batch(w, params)
        # found: a pulse crossing within two samples of the true start
        near = np.abs(rec["crossing"] - 81.0 / SAMPLE_NS) <= 2.5
        ev = np.repeat(np.arange(N_EVENTS), np.diff(off))
        eff.append(len(np.unique(ev[near])) / N_EVENTS)
    eff = np.array(eff)
    print(
        f"NSAT {nsat}: efficiency vs height above baseline (ADC):",
        dict(zip(heights.tolist(), np.round(eff, 3).tolist())),
    )
    err = np.sqrt(np.maximum(eff * (1 - eff), 1e-4) / N_EVENTS)
    assert (np.diff(eff) > -3 * (err[1:] + err[:-1])).all(), "turn-on not monotone"
    at_thr = eff[heights == 20][0]
    assert eff[0] < 0.01 and eff[-1] > 0.99
    if nsat == 1:
        assert 0.2 < at_thr < 0.8, at_thr
    else:
        # the second sample is lower than the peak: the turn-on moves to larger heights
        assert at_thr < 0.5


def test_pileup_flagged_when_closer_than_nsa():
    params = PulseParams.uniform(1, **ECAL)
    rng = np.random.default_rng(60)
    fast = dict(rise=1.0, decay=3.0)  # a fast counter-like pulse: back below T within 3 samples
    for gap in range(4, 21):  # samples between the two starts
        t0 = rng.uniform(60.0, 64.0, 400)
        w1 = make_windows(
            np.random.default_rng(61 + gap),
            np.full(400, 500.0),
            t0,
            rise_ns=fast["rise"],
            decay_ns=fast["decay"],
            noise=0.0,
        )
        w2 = make_windows(
            np.random.default_rng(62),
            np.full(400, 500.0),
            t0 + gap * SAMPLE_NS,
            rise_ns=fast["rise"],
            decay_ns=fast["decay"],
            noise=0.0,
        )
        noise = np.rint(rng.normal(0, 2.0, w1.shape)).astype(np.int64)
        w = np.clip(w1.astype(np.int64) + w2.astype(np.int64) - 400 + noise, 0, 16383)
        rec, off = find_pulses_batch(w.astype(np.uint16), params)
        first = rec[off[:-1]]
        flagged = (first["quality"] & QualityBits.PILEUP) != 0
        one, two = (np.diff(off) == 1), (np.diff(off) == 2)
        print(
            f"gap {gap} samples: PILEUP {flagged.mean():.3f}, one pulse {one.mean():.3f}, two pulses {two.mean():.3f}"
        )
        if 5 <= gap < 12:  # second crossing inside the open range of the first (NSA = 12)
            assert flagged.all() and one.all(), gap
        elif gap >= 12:  # second crossing at or after c + NSA: a pulse of its own
            assert not flagged.any() and two.all(), gap
        else:  # closer than the time to fall back to T: often merged, unflagged
            assert 0.5 < flagged.mean() < 1.0 and one.all(), gap
