"""Pedestal, noise RMS and correlation as configured; samples stay in [0, 16383]."""

import math

import numpy as np
import pytest

from pokerdaq.sim import emulate_channel, emulate_windows


@pytest.mark.parametrize("name", ["ECAL_r2c7", "S1"])
def test_pedestal_and_noise_rms(cfg, name):
    ch = cfg.channel_map.index(name)
    sub_name = cfg.channel_map.table["subsystem"][ch].decode()
    sub = cfg.subsystem(sub_name)
    c = cfg.replace(detector={sub_name: {"sipm": {"dark_rate_hz": 0.0}}})
    w = emulate_channel(c, ch, np.zeros(3000), seed=40).astype(np.float64)
    e = sub.electronics
    expected_rms = math.sqrt(e.noise_adc**2 + e.correlated_noise_adc**2 + 1.0 / 12.0)  # + quantisation
    assert w.mean() == pytest.approx(e.pedestal_adc, abs=0.05)
    assert w.std() == pytest.approx(expected_rms, rel=0.03)


def test_correlated_noise_is_slow(cfg):
    c = cfg.replace(
        detector={
            "ecal": {"electronics": {"noise_adc": 0.0, "correlated_noise_adc": 20.0}, "sipm": {"dark_rate_hz": 0.0}}
        }
    )
    w = emulate_channel(c, c.channel_map.index("ECAL_r0c0"), np.zeros(2000), seed=41).astype(np.float64)
    assert w.std() == pytest.approx(20.0, rel=0.05)
    d = w - w.mean()
    lag1 = (d[:, 1:] * d[:, :-1]).mean() / d.var()
    rho = math.exp(-c.digitizer.sample_ns / c.digitizer.correlated_noise_ns)
    assert lag1 == pytest.approx(rho, abs=0.01)
    # white noise only: no correlation between neighbouring samples
    c = cfg.replace(detector={"ecal": {"electronics": {"noise_adc": 20.0, "correlated_noise_adc": 0.0}}})
    d = emulate_channel(c, c.channel_map.index("ECAL_r0c0"), np.zeros(2000), seed=41).astype(np.float64)
    d -= d.mean()
    # (a 2^15-sample bank has a lag-1 autocorrelation of order 1/sqrt(2^15) = 0.006)
    assert abs((d[:, 1:] * d[:, :-1]).mean() / d.var()) < 0.025


def test_huge_deposits_clip_at_the_rail(cfg):
    ch = cfg.channel_map.index("ECAL_r4c4")
    w = emulate_channel(cfg, ch, np.full(200, 5e5), seed=42)  # 500 GeV in one crystal
    assert w.dtype == np.uint16
    assert w.max() == 16383
    assert (w.max(axis=1) == 16383).all()
    assert w.min() >= 300  # baseline stays, nothing wraps around


def test_low_pedestal_clips_at_zero(cfg):
    c = cfg.replace(detector={"ecal": {"electronics": {"pedestal_adc": 0.0, "noise_adc": 3.0}}})
    w = emulate_channel(c, c.channel_map.index("ECAL_r0c0"), np.zeros(500), seed=43)
    assert w.max() <= 16383  # a wrapped negative value would show up as a huge code
    assert 0.4 < (w == 0).mean() < 0.65  # half the noise is below 0 and is clipped


def test_full_windows_stay_in_range_at_high_energy(cfg):
    c = cfg.replace(beam={"energy_gev": 300.0})
    s, truth = emulate_windows(c, 200, seed=44)
    assert s.dtype == np.uint16 and s.shape == (200, len(c.channel_map), c.digitizer.window_samples)
    assert s.max() <= 16383
    assert (s == 16383).any()  # 300 GeV saturates the central crystal's ADC
