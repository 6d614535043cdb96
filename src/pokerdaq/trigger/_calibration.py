"""Energy calibration of the trigger primitives: ADC integral per MeV and SiPM saturation LUTs.

The firmware multiplies ``integral_net`` by an integer gain (docs/firmware-spec.md 2.3); the
gain is ``2**F * 16 / adc_per_mev`` where ``adc_per_mev`` is the mean ``integral_net`` (ADC
counts x samples) per MeV deposited in a channel. It comes, in order of preference, from

1. ``[trigger] adc_per_mev.<subsystem>`` in the configuration (a measured value, e.g. from
   :func:`calibrate_from_simulation` or from beam data), or
2. :func:`derived_adc_per_mev`, computed from the detector configuration:
   ``light yield x SiPM gain x pulse area in samples x containment of [c-NSB, c+NSA)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import fftconvolve

from ..config import Config
from ._dtypes import CHANNEL_ENERGY_BITS, ENERGY_LSB_MEV

_DT_NS = 0.05  # integration grid of the analytic pulse model


def _pulse_shape(cfg: Config, subsystem: str) -> tuple[np.ndarray, float]:
    """Mean single-photoelectron response on a fine grid (ADC counts), and the grid step in ns.

    emission (sum of exponentials with a common rise) (x) SiPM cell pulse (bi-exponential
    normalised to a peak of ``gain_adc_per_pe``) (x) electronics shaping (Gaussian sigma).
    """
    sub = cfg.subsystem(subsystem)
    sc, sipm, el = sub.scintillator, sub.sipm, sub.electronics
    t_max = 8.0 * max(max(sc.decay_ns), sipm.pulse_decay_ns) + 50.0
    t = np.arange(0.0, t_max, _DT_NS)
    emission = np.zeros_like(t)
    for tau, frac in zip(sc.decay_ns, sc.fractions):
        if sc.rise_ns > 0:
            shape = (np.exp(-t / tau) - np.exp(-t / sc.rise_ns)) / (tau - sc.rise_ns)
        else:
            shape = np.exp(-t / tau) / tau
        emission += frac * shape
    emission /= emission.sum()
    cell = np.exp(-t / sipm.pulse_decay_ns) - np.exp(-t / sipm.pulse_rise_ns)
    cell *= sipm.gain_adc_per_pe / cell.max()
    pulse = fftconvolve(emission, cell)[: len(t)]
    if el.shaping_ns > 0:
        half = int(4 * el.shaping_ns / _DT_NS)
        k = np.exp(-0.5 * (np.arange(-half, half + 1) * _DT_NS / el.shaping_ns) ** 2)
        pulse = fftconvolve(pulse, k / k.sum(), mode="same")
    return pulse, _DT_NS


def derived_adc_per_mev(cfg: Config, subsystem: str) -> float:
    """``integral_net`` per MeV predicted from the configuration (small-signal, no saturation).

    ``pe/MeV = light_yield * (1 + afterpulse) / (1 - crosstalk)`` (crosstalk as a geometric
    chain); each photoelectron gives the pulse of :func:`_pulse_shape`; the pulse finder sums
    the samples ``[c - NSB, c + NSA)``, where the crossing ``c`` of a large pulse is taken at
    5 % of its peak. The result is an approximation of the emulator; prefer a measured value
    (:func:`calibrate_from_simulation`) in ``[trigger] adc_per_mev``.
    """
    sub = cfg.subsystem(subsystem)
    sample_ns = cfg.digitizer.sample_ns
    pulse, dt = _pulse_shape(cfg, subsystem)
    crossing_ns = float(np.argmax(pulse >= 0.05 * pulse.max())) * dt
    pf = sub.pulse_finder
    lo_ns = (math.ceil(crossing_ns / sample_ns) - pf.nsb) * sample_ns
    hi_ns = lo_ns + (pf.nsb + pf.nsa) * sample_ns
    t = np.arange(len(pulse)) * dt
    inside = pulse[(t >= lo_ns) & (t < hi_ns)].sum() * dt / sample_ns  # ADC x samples per pe
    pe_per_mev = (
        sub.scintillator.light_yield_pe_per_mev * (1.0 + sub.sipm.afterpulse_prob) / (1.0 - sub.sipm.crosstalk_prob)
    )
    return float(pe_per_mev * inside)


def adc_per_mev(cfg: Config, subsystem: str) -> float:
    """The calibration in use: ``[trigger] adc_per_mev.<subsystem>`` if set, else derived."""
    configured = cfg.trigger.adc_per_mev.get(subsystem)
    return float(configured) if configured is not None else derived_adc_per_mev(cfg, subsystem)


def sipm_saturation_lut(cfg: Config, subsystem: str, n_entries: int) -> tuple[np.ndarray, int]:
    """Piecewise-linear inverse of the SiPM saturation curve, as integer LUT entries.

    A channel of ``N`` cells fires ``N (1 - exp(-npe / N))`` cells for ``npe`` photoelectrons,
    so a measured (saturated) energy ``Em`` corresponds to the true energy
    ``E = -(N / k) ln(1 - k Em / N)`` with ``k`` photoelectrons per LSB. Entry ``i`` holds
    ``round(E(i << shift))``; the table covers ``Em`` up to half the asymptote ``N / k``
    (true energy 0.69 N / k) and saturates beyond.

    Returns
    -------
    lut : numpy.ndarray of int64, shape (n_entries + 1,)
    shift : int
        ``log2`` of the LUT spacing in LSB.
    """
    sub = cfg.subsystem(subsystem)
    pe_per_lsb = sub.scintillator.light_yield_pe_per_mev * ENERGY_LSB_MEV
    n_cells = float(sub.sipm.n_cells)
    e_max = 2**CHANNEL_ENERGY_BITS - 1
    asymptote = n_cells / pe_per_lsb
    span = min(0.5 * asymptote, float(e_max))
    shift = max(0, math.ceil(math.log2(max(span / n_entries, 1.0))))
    em = np.arange(n_entries + 1, dtype=np.float64) * (1 << shift)
    arg = np.clip(1.0 - pe_per_lsb * em / n_cells, 1e-12, None)
    true = -np.log(arg) * asymptote
    lut = np.minimum(np.round(true), e_max).astype(np.int64)
    return lut, shift


def calibrate_from_simulation(
    cfg: Config, n_pulses: int = 400, seed: int = 1, target_integral_adc: float = 2000.0
) -> dict[str, float]:
    """Measure ``adc_per_mev`` per subsystem with the emulator and the pulse finder.

    For each subsystem, ``n_pulses`` deposits of one energy are emulated in its first channel
    (:func:`pokerdaq.sim.emulate_channel`, no beam, no background); the energy is chosen to give
    an integral of about ``target_integral_adc`` (from :func:`derived_adc_per_mev`), far above
    threshold and noise. The mean ``integral_net`` of the first pulse of each window, divided by
    the deposit corrected for the SiPM saturation ``N (1 - exp(-npe / N)) / npe`` (a per-mille
    effect at this energy), is the small-signal calibration.

    Returns
    -------
    dict
        subsystem -> ADC counts x samples per MeV, ready for ``[trigger] adc_per_mev``.
    """
    from ..dsp import PulseParams, find_pulses_batch
    from ..sim import emulate_channel

    if n_pulses < 10:
        raise ValueError(f"n_pulses = {n_pulses}: expected >= 10")
    out: dict[str, float] = {}
    for name in cfg.detector.__dataclass_fields__:
        if name == "lyso_background_hz":
            continue
        sub = cfg.subsystem(name)
        channel = int(cfg.channel_map.channels_of(name)[0])
        e_mev = target_integral_adc / derived_adc_per_mev(cfg, name)
        samples = emulate_channel(cfg, channel, np.full(n_pulses, e_mev), seed=seed)
        params = PulseParams.from_config(cfg, [channel])
        rec, offsets = find_pulses_batch(samples[:, None, :], params)
        first = rec["integral_net"][offsets[:-1][np.diff(offsets) > 0]].astype(np.float64)
        if len(first) < n_pulses // 2:
            raise RuntimeError(f"calibration of {name}: only {len(first)} of {n_pulses} pulses found")
        npe = e_mev * sub.scintillator.light_yield_pe_per_mev
        n_cells = float(sub.sipm.n_cells)
        saturation = n_cells * -math.expm1(-npe / n_cells) / npe
        out[name] = float(first.mean() / (e_mev * saturation))
    return out
