"""The emulated average pulse has the configured rise and decay times (curve_fit, within 5 %)."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from pokerdaq.sim import emulate_channel

SCINT_NS = 10.0


def model(t, amp, t0, tau_r, tau_d):
    """Exp(SCINT_NS) scintillation (x) (exp(-t/tau_d) - exp(-t/tau_r)), analytically."""
    x = np.clip(t - t0, 0.0, None)

    def term(tau):
        return tau / (tau - SCINT_NS) * (np.exp(-x / tau) - np.exp(-x / SCINT_NS))

    return amp * (term(tau_d) - term(tau_r))


@pytest.mark.parametrize("rise_ns, decay_ns", [(2.0, 15.0), (1.0, 40.0)])
def test_fitted_rise_and_decay(cfg, rise_ns, decay_ns):
    c = cfg.replace(
        detector={
            "ecal": {
                "scintillator": {"decay_ns": [SCINT_NS], "fractions": [1.0], "rise_ns": 0.0},
                "sipm": {
                    "pulse_rise_ns": rise_ns,
                    "pulse_decay_ns": decay_ns,
                    "crosstalk_prob": 0.0,
                    "afterpulse_prob": 0.0,
                    "dark_rate_hz": 0.0,
                    "gain_adc_per_pe": 0.04,
                },
                "electronics": {"shaping_ns": 0.0},
            }
        }
    )
    ch = c.channel_map.index("ECAL_r4c4")
    ped = c.detector.ecal.electronics.pedestal_adc
    # eight sampling phases 0.5 ns apart give an effective 0.5 ns sampling of the average pulse
    t_all, v_all = [], []
    for k in range(8):
        t0 = 40.0 + 0.5 * k
        w = emulate_channel(c, ch, np.full(100, 10_000.0), seed=30 + k, n_samples=100, t0_ns=t0)
        t_all.append(np.arange(100) * 4.0 - 0.5 * k)
        v_all.append(w.mean(axis=0) - ped)
    t, v = np.concatenate(t_all), np.concatenate(v_all)
    p0 = (v.max() * 2, 35.0, rise_ns * 1.5, decay_ns * 0.7)
    popt, _ = curve_fit(model, t, v, p0=p0)
    amp, t0, tau_r, tau_d = popt
    assert t0 == pytest.approx(40.0, abs=0.3)
    assert tau_r == pytest.approx(rise_ns, rel=0.05)
    assert tau_d == pytest.approx(decay_ns, rel=0.05)
    print(f"fit: rise {tau_r:.3f} ns (configured {rise_ns}), decay {tau_d:.3f} ns (configured {decay_ns})")
