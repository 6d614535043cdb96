"""Shared helpers of the dsp tests: record comparison and analytic SiPM-like waveforms."""

from __future__ import annotations

import numpy as np

from pokerdaq.dsp import PULSE_DTYPE, QualityBits

SAMPLE_NS = 4.0
ADC_MAX = 16383

_BIT_NAMES = {getattr(QualityBits, n): n for n in dir(QualityBits) if n.isupper()}


def quality_names(q: int) -> list[str]:
    return [name for bit, name in sorted(_BIT_NAMES.items()) if q & bit]


def assert_records_equal(got: np.ndarray, want: np.ndarray, context: str = "") -> None:
    """Field-by-field equality, with a message naming the first differing record and field."""
    assert got.dtype == PULSE_DTYPE, f"{context}: dtype {got.dtype}"
    assert len(got) == len(want), (
        f"{context}: {len(got)} pulses found, reference {len(want)}\n"
        f"got crossings {list(zip(got['channel'], got['crossing']))}\n"
        f"want crossings {list(zip(want['channel'], want['crossing']))}"
    )
    for name in PULSE_DTYPE.names:
        diff = np.flatnonzero(got[name] != want[name])
        if diff.size:
            i = int(diff[0])
            extra = ""
            if name == "quality":
                extra = f" (got {quality_names(int(got[i]['quality']))}, want {quality_names(int(want[i]['quality']))})"
            raise AssertionError(
                f"{context}: record {i} field {name!r}: got {got[i][name]}, "
                f"want {want[i][name]}{extra}\n got {got[i]}\nwant {want[i]}"
            )


def sipm_shape(t_ns: np.ndarray, rise_ns: float, decay_ns: float) -> np.ndarray:
    """Difference of exponentials starting at t = 0, normalised to a maximum of 1."""
    t = np.clip(t_ns, 0.0, None)
    f = np.exp(-t / decay_ns) - np.exp(-t / rise_ns)
    t_max = np.log(decay_ns / rise_ns) * rise_ns * decay_ns / (decay_ns - rise_ns)
    f_max = np.exp(-t_max / decay_ns) - np.exp(-t_max / rise_ns)
    return np.where(t_ns > 0, f / f_max, 0.0)


def half_max_time_ns(rise_ns: float, decay_ns: float) -> float:
    """Time after the pulse start at which the rising edge reaches half the maximum."""
    t = np.linspace(0.0, 50.0, 500_001)
    f = sipm_shape(t, rise_ns, decay_ns)
    return float(t[np.argmax(f >= 0.5)])


def make_windows(
    rng: np.random.Generator,
    amplitudes: np.ndarray,
    t0_ns: np.ndarray,
    n_samples: int = 64,
    baseline: float = 400.0,
    noise: float = 2.0,
    rise_ns: float = 2.0,
    decay_ns: float = 15.0,
) -> np.ndarray:
    """One single-channel window per event: pulse of ``amplitudes`` starting at ``t0_ns``.

    Samples are sampled at 4 ns, with Gaussian noise, rounded and clipped to 14 bits.
    Returns uint16 of shape (events, 1, n_samples).
    """
    t = np.arange(n_samples) * SAMPLE_NS
    wave = baseline + amplitudes[:, None] * sipm_shape(t[None, :] - t0_ns[:, None], rise_ns, decay_ns)
    wave += rng.normal(0.0, noise, wave.shape)
    return np.clip(np.rint(wave), 0, ADC_MAX).astype(np.uint16)[:, None, :]
