"""Physics validation of the trigger with the emulator (pokerdaq.sim) and the pulse finder (pokerdaq.dsp).

Window mode: one readout window per beam particle (emulate_windows -> find_pulses_batch ->
trigger_windows), fixed seeds. The numbers are printed (pytest -s) and quoted in the report;
the assertions guard the physics and catch regressions of any part of the chain.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from pokerdaq.config import SUBSYSTEMS, load_config
from pokerdaq.dsp import PulseParams, PulseStream, find_pulses_batch
from pokerdaq.sim import SampleStream, Species, emulate_windows
from pokerdaq.trigger import (
    ConditionBits,
    TriggerBits,
    TriggerModel,
    calibrate_from_simulation,
    derived_adc_per_mev,
    trigger_windows,
)
from pokerdaq.trigger._chain import match_to_particles

N_EVENTS = 3000


def _config(energy, *, mix=(0.0, 0.0, 0.0), calo_nsa=None):
    signal, hadron, muon = mix
    cfg = load_config().replace(
        beam={
            "energy_gev": energy,
            "aprime_mass_mev": 250.0 if energy > 62 else 150.0,
            "signal_fraction": signal,
            "hadron_fraction": hadron,
            "muon_fraction": muon,
        }
    )
    if calo_nsa is not None:
        cfg = cfg.replace(detector={s: {"pulse_finder": {"nsa": calo_nsa}} for s in ("preshower", "ecal")})
        cfg = cfg.replace(trigger={"adc_per_mev": calibrate_from_simulation(cfg, 400, seed=1)})
    return cfg


@functools.cache
def _chain(energy, mix=(0.0, 0.0, 0.0), calo_nsa=None, n=N_EVENTS, seed=3):
    cfg = _config(energy, mix=mix, calo_nsa=calo_nsa)
    samples, truth = emulate_windows(cfg, n, seed=seed)
    rec, offsets = find_pulses_batch(samples, PulseParams.from_config(cfg))
    window = np.repeat(np.arange(n), np.diff(offsets))
    return cfg, truth, trigger_windows(rec, window, n, cfg)


def _srd_chain(cfg, n, seed):
    """Beam counters + SRD only (the SRD tag needs nothing else): many windows, quickly."""
    cmap = cfg.channel_map
    chans = np.concatenate([cmap.channels_of("beam_counters"), cmap.channels_of("srd")])
    samples, truth = emulate_windows(cfg, n, seed=seed, channels=chans)
    rec, offsets = find_pulses_batch(samples, PulseParams.from_config(cfg, chans), channel_ids=chans)
    window = np.repeat(np.arange(n), np.diff(offsets))
    return truth, rec, trigger_windows(rec, window, n, cfg)


def _frac(mask):
    return float(np.mean(mask)) if len(mask) else float("nan")


def _err(p, n):
    return float(np.sqrt(max(p * (1 - p), 1.0 / n) / n))


SRD_MIX = (0.0, 0.3, 0.2)  # e+ 50 %, hadrons 30 %, muons 20 %


@pytest.mark.slow
def test_srd_tag_efficiency_and_false_tags():
    """SRD tag for e+ at 100, 60, 40 GeV and false tags of hadrons/muons in the same beam.

    POKER design study: 99 % at 60 GeV, 89 % at 40 GeV. Default SRD: 900 pe/MeV, 8 ADC pulse
    threshold (4 sigma of the noise), EMIN 0.375 MeV at 100 GeV scaled as E^4 down to the
    1-LSB floor (0.0625 MeV) at 60 and 40 GeV. Measured (seed 3, 1509 e+ each): 0.994 / 0.993
    / 0.924; the old 30 ADC threshold at 300 pe/MeV gave 0.986 / 0.801 / 0.111. The false tags
    of this beam are almost all an e+ within a few ns of the hadron or muon (one in-time
    particle for the counters); the intrinsic rate is in the test below.
    """
    results = {}
    for energy in (100.0, 60.0, 40.0):
        cfg, truth, out = _chain(energy, SRD_MIX)
        tag = (out["conditions"] & ConditionBits.SRD) != 0
        ep = truth["species"] == Species.POSITRON
        bkg = (truth["species"] == Species.HADRON) | (truth["species"] == Species.MUON)
        eff, fake = _frac(tag[ep]), _frac(tag[bkg])
        ideal = _frac(truth["e_srd_mev"][ep] >= cfg.trigger.srd_emin_at(energy))
        results[energy] = (eff, _err(eff, ep.sum()), fake)
        print(
            f"\nSRD {energy:.0f} GeV, emin {cfg.trigger.srd_emin_at(energy):.4f} MeV: e+ efficiency {eff:.4f} "
            f"+- {_err(eff, ep.sum()):.4f} (n={ep.sum()}; true SR sum above emin: {ideal:.4f}); false tags "
            f"hadrons+muons {fake:.4f} +- {_err(fake, bkg.sum()):.4f} (n={bkg.sum()})"
        )
        assert eff <= ideal + 2 * _err(eff, ep.sum())  # one channel above emin needs the sum above it
        assert fake < 0.01, energy
    # bounds: measured minus about 3 standard errors (~1500 e+); 40 GeV: the POKER design figure
    assert results[100.0][0] > 0.985 and results[60.0][0] > 0.985
    assert results[40.0][0] > 0.89
    assert results[100.0][0] >= results[60.0][0] - 0.005 > results[40.0][0]


@pytest.mark.slow
def test_srd_false_tags_from_noise_and_lyso_background():
    """Hadron/muon beam only (no e+, so no synchrotron light at all), 40000 windows at 40 GeV.

    Noise only (LYSO background off): the 8 ADC / NSAT 2 pulse finder finds almost no pulse
    (measured 1 in 160000 channel windows: 24 Hz per channel; 6 ADC would give ~4 kHz) and
    none reaches the 0.0625 MeV floor. LYSO background on: false tags are the in-time Lu-176
    decays, 4 channels x (rate of pulses above EMIN) x the 48 ns SRD window (measured 0.118 %).
    """
    n = 40_000
    base = _config(40.0, mix=(0.0, 0.5, 0.5))
    srd = base.channel_map.channels_of("srd")
    live_s = n * len(srd) * base.digitizer.window_samples * base.digitizer.sample_ns * 1e-9
    emin_adc = base.trigger.srd_emin_at(40.0) * base.trigger.adc_per_mev["srd"]
    width_s = (base.trigger.srd_window_ns[1] - base.trigger.srd_window_ns[0]) * 1e-9
    for lyso_hz in (0.0, base.detector.lyso_background_hz):
        cfg = base.replace(detector={"lyso_background_hz": lyso_hz})
        truth, rec, out = _srd_chain(cfg, n, seed=5)
        assert not (truth["species"] == Species.POSITRON).any()
        fake = _frac((out["conditions"] & ConditionBits.SRD) != 0)
        pulses = rec[np.isin(rec["channel"], srd)]
        rate, rate_above = len(pulses) / live_s, np.sum(pulses["integral_net"] >= emin_adc) / live_s
        expected = len(srd) * rate_above * width_s
        print(
            f"\nSRD, LYSO background {lyso_hz:g} Hz, 40 GeV: false tags {fake:.5f} +- {_err(fake, n):.5f} "
            f"(n={n}; expected from the pulse rate above emin {expected:.5f}); SRD pulses {rate:.3g} Hz per "
            f"channel, {rate_above:.3g} Hz above emin"
        )
        if lyso_hz == 0.0:
            assert fake == 0.0 and rate_above == 0.0
            assert rate < 500.0
        else:
            # Lu-176 gives pulses at up to its decay rate per channel (~7.5 kHz), most above the floor
            assert 0.5 * lyso_hz / len(srd) < rate_above < rate <= lyso_hz / len(srd) * 1.1
            assert abs(fake - expected) < 4 * _err(expected, n)
            assert fake < 0.002


@pytest.mark.slow
def test_muon_and_calibration_triggers():
    """Muon trigger (MIP in PKR-CAL + HCAL or VETO) and calibration trigger (ECAL only) at 100 GeV."""
    cfg, truth, out = _chain(100.0, SRD_MIX)
    word = out["trigger_word"]
    sp = truth["species"]
    rows = {}
    for name, bit in (("muon", TriggerBits.MUON), ("calibration", TriggerBits.CALIBRATION)):
        for label, sel in (
            ("e+", sp == Species.POSITRON),
            ("hadrons", sp == Species.HADRON),
            ("muons", sp == Species.MUON),
        ):
            rows[(name, label)] = _frac((word[sel] & bit) != 0)
            print(f"\n{name} trigger on {label}: {rows[(name, label)]:.4f} (n={sel.sum()})", end="")
    # measured 0.965 (600 muons) and 0.993 (1509 e+): bounds about 3 standard errors below
    assert rows[("muon", "muons")] > 0.94 and rows[("muon", "e+")] < 0.01
    assert rows[("calibration", "e+")] > 0.985 and rows[("calibration", "muons")] < 0.01  # pile-up e+ only


@pytest.mark.slow
def test_physics_trigger_signal_efficiency_and_beam_rejection():
    """Dark-matter events (E_ECAL < 50 GeV) at 100 GeV: > 95 % triggered; ordinary e+ rejected."""
    cfg, truth, out = _chain(100.0, (0.3, 0.0, 0.0))
    physics = (out["trigger_word"] & TriggerBits.PHYSICS) != 0
    e_true = truth["e_preshower_gev"] + truth["e_ecal_gev"]
    signal = truth["is_signal"] & (e_true < 50.0)
    beam_ep = ~truth["is_signal"] & (truth["species"] == Species.POSITRON)
    eff, acc = _frac(physics[signal]), _frac(physics[beam_ep])
    clean = signal & (truth["n_pileup"] == 0)
    print(
        f"\nphysics trigger at 100 GeV: signal (E_ECAL < 50 GeV) efficiency {eff:.4f} +- {_err(eff, signal.sum()):.4f} "
        f"(n={signal.sum()}; without pile-up {_frac(physics[clean]):.4f}, n={clean.sum()}); "
        f"ordinary e+ accepted {acc:.5f} +- {_err(acc, beam_ep.sum()):.5f} (n={beam_ep.sum()})"
    )
    losses = {
        name: _frac((out["conditions"][signal] & bit) == 0)
        for name, bit in (
            ("beam", ConditionBits.BEAM),
            ("srd", ConditionBits.SRD),
            ("ecal_low", ConditionBits.ECAL_LOW),
            ("preshower", ConditionBits.PRESHOWER),
        )
    }
    losses["veto"] = _frac((out["conditions"][signal] & ConditionBits.VETO) != 0)
    print("  signal losses by condition:", {k: round(v, 4) for k, v in losses.items()})
    assert signal.sum() > 300
    assert eff > 0.95  # measured 0.968 +- 0.006: the losses are pile-up (E_CALO above the cut, SRD merged)
    assert _frac(physics[clean]) > 0.99  # measured 0.996 (828)
    assert acc < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("energy", [40.0, 100.0])
def test_ecal_energy_resolution(energy):
    """sigma(E_CALO)/E from pulse-finder integrals against 2.5 %/sqrt(E) (+) 0.5 %.

    E_CALO is the trigger's pre-shower + ECAL sum; windows with pile-up are left out (their
    measured pedestal is biased). Default NSA = 32 (128 ns, 4.3 slow-component decay times),
    8 ADC threshold: measured 0.689 % at 40 GeV (required 0.637 %) and 0.557 % at 100 GeV
    (0.559 %), scale 0.988 / 0.994 (2782 windows, statistical error ~0.01 % absolute). With
    NSA = 12 the 30 ns PbWO4 component is cut at a sampling-phase dependent point (about 1 %
    extra spread). The rest above the requirement at 40 GeV: crystals below 8 ADC (~85 MeV).
    """
    required = float(np.hypot(0.025 / np.sqrt(energy), 0.005))
    sigmas = {}
    for nsa in (None, 12):
        cfg, truth, out = _chain(energy, calo_nsa=nsa)
        ok = truth["n_pileup"] == 0
        ratio = out["e_calo"][ok] / 16e3 / truth["energy_gev"][ok]
        q16, q50, q84 = np.percentile(ratio, [15.87, 50.0, 84.13])
        sigma = (q84 - q16) / 2 / q50
        sigmas[nsa] = (q50, sigma)
        t16, t84 = np.percentile(
            (truth["e_preshower_gev"] + truth["e_ecal_gev"])[ok] / truth["energy_gev"][ok], [15.87, 84.13]
        )
        print(
            f"\nE_CALO at {energy:.0f} GeV, NSA {nsa or cfg.detector.ecal.pulse_finder.nsa}: scale {q50:.4f}, "
            f"sigma/E {sigma:.5f} +- {sigma / np.sqrt(2 * ok.sum()):.5f} (central 68 %, n={ok.sum()}); required "
            f"{required:.5f}; emulated deposit alone {(t84 - t16) / 2:.5f}"
        )
    # default: measured + ~4 standard errors; 100 GeV meets the requirement within 6 %
    assert sigmas[None][1] < {40.0: 1.14, 100.0: 1.06}[energy] * required
    assert abs(sigmas[None][0] - 1) < 0.02
    assert sigmas[None][1] < 0.8 * sigmas[12][1]


@pytest.mark.slow
def test_configured_calibration_matches_the_emulator():
    cfg = load_config()
    measured = calibrate_from_simulation(cfg, 300, seed=2)
    for name in SUBSYSTEMS:
        configured = cfg.trigger.adc_per_mev[name]
        print(
            f"\n{name}: configured {configured:.5g}, measured {measured[name]:.5g}, "
            f"derived {derived_adc_per_mev(cfg, name):.5g} ADC x samples / MeV"
        )
        assert abs(measured[name] / configured - 1) < 0.01, name
        assert abs(derived_adc_per_mev(cfg, name) / configured - 1) < 0.03, name


@pytest.mark.slow
def test_stream_chain_triggers_every_beam_particle():
    """Continuous emulator stream -> PulseStream -> TriggerModel, chunking-independent."""
    cfg = load_config().replace(
        detector={s: {"pulse_finder": {"pedestal_mode": "configured", "max_pulses": 0}} for s in SUBSYSTEMS},
        beam={"signal_fraction": 0.2},
        trigger={"prescale": {"beam": 1, "calibration": 1, "muon": 1}, "dead_time_ns": 0.0, "random_rate_hz": 0.0},
    )
    params = PulseParams.from_config(cfg)
    lag = int((params.nsa + params.nsb).max())

    def run(chunks):
        stream, finder, model = SampleStream(cfg, seed=4), PulseStream(params), TriggerModel(cfg, seed=4)
        out, truth = [], []
        for n in chunks:
            samples, tr = stream.read(n)
            truth.append(tr)
            out.append(model.process(finder.process(samples), finder.samples_seen - lag))
        out.append(model.process(finder.finish(), finder.samples_seen))
        out.append(model.finish())
        return np.concatenate(out), np.concatenate(truth), model.counters

    out, truth, counters = run([50_000] * 4)
    again, _, _ = run([7_919] * 25 + [2_025])
    assert np.array_equal(out, again)
    assert counters.late_records == 0
    beam = out[(out["trigger_word"] & TriggerBits.BEAM) != 0]
    # one beam trigger per isolated particle, at its time (T_REF within 4 samples after it)
    match = match_to_particles(beam, truth)
    gaps = np.diff(truth["t_sample"])
    isolated = np.ones(len(truth), bool)
    isolated[1:] &= gaps > 100
    isolated[:-1] &= gaps > 100
    assert len(truth) > 50 and isolated.sum() > 0.9 * len(truth)
    assert (match[isolated] >= 0).all() and len(beam) <= len(truth)
    delay = (beam["ref_time"][match[isolated]] >> 6) - truth["t_sample"][isolated]
    assert ((delay >= 0) & (delay <= 4)).all(), delay
    signal = truth["is_signal"]
    phys = np.zeros(len(truth), bool)
    phys[match >= 0] = (beam["trigger_word"][match[match >= 0]] & TriggerBits.PHYSICS) != 0
    print(
        f"\nstream: {len(truth)} particles ({signal.sum()} signal, {isolated.sum()} isolated), "
        f"{len(out)} triggers, physics on signal {phys[signal].sum()}/{signal.sum()}, on others "
        f"{phys[~signal].sum()}; counters {counters.as_dict()['raw']}"
    )
    assert phys[signal & isolated].all() and phys[~signal].sum() <= 1
