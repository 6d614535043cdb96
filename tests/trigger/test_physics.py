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
    ConditionBits, TriggerBits, TriggerModel, calibrate_from_simulation, derived_adc_per_mev,
    trigger_windows,
)

N_EVENTS = 3000


def _config(energy, *, mix=(0.0, 0.0, 0.0), srd_threshold_adc=None, calo_nsa=None):
    signal, hadron, muon = mix
    cfg = load_config().replace(beam={"energy_gev": energy, "aprime_mass_mev": 250.0 if energy > 62 else 150.0,
                                      "signal_fraction": signal, "hadron_fraction": hadron, "muon_fraction": muon})
    if srd_threshold_adc is not None:
        cfg = cfg.replace(detector={"srd": {"pulse_finder": {"threshold_adc": srd_threshold_adc}}})
    if calo_nsa is not None:
        cfg = cfg.replace(detector={s: {"pulse_finder": {"nsa": calo_nsa}} for s in ("preshower", "ecal")})
        cfg = cfg.replace(trigger={"adc_per_mev": calibrate_from_simulation(cfg, 400, seed=1)})
    return cfg


@functools.lru_cache(maxsize=None)
def _chain(energy, mix=(0.0, 0.0, 0.0), srd_threshold_adc=None, calo_nsa=None, n=N_EVENTS, seed=3):
    cfg = _config(energy, mix=mix, srd_threshold_adc=srd_threshold_adc, calo_nsa=calo_nsa)
    samples, truth = emulate_windows(cfg, n, seed=seed)
    rec, offsets = find_pulses_batch(samples, PulseParams.from_config(cfg))
    window = np.repeat(np.arange(n), np.diff(offsets))
    return cfg, truth, trigger_windows(rec, window, n, cfg)


def _frac(mask):
    return float(np.mean(mask)) if len(mask) else float("nan")


def _err(p, n):
    return float(np.sqrt(max(p * (1 - p), 1.0 / n) / n))


SRD_MIX = (0.0, 0.3, 0.2)  # e+ 50 %, hadrons 30 %, muons 20 %


@pytest.mark.slow
def test_srd_tag_efficiency_and_false_tags():
    """SRD tag for e+ at 100, 60, 40 GeV; false tags of hadrons and muons (LYSO background on).

    POKER design study: 99 % at 60 GeV, 89 % at 40 GeV. The default SRD pulse-finder threshold
    (30 ADC, about 0.5 MeV of LYSO light in one channel) hides most of the 40 GeV synchrotron
    light (0.8 MeV mean, shared by 4 channels); 10 ADC (5 sigma of the 2 ADC noise) recovers
    part of it, 6 ADC (3 sigma, with NSAT = 2 confirmation) comes close to the design study.
    """
    results = {}
    for pf_thr in (None, 10, 6):
        for energy in (100.0, 60.0, 40.0):
            cfg, truth, out = _chain(energy, SRD_MIX, pf_thr)
            tag = (out["conditions"] & ConditionBits.SRD) != 0
            ep = truth["species"] == Species.POSITRON
            bkg = (truth["species"] == Species.HADRON) | (truth["species"] == Species.MUON)
            eff, fake = _frac(tag[ep]), _frac(tag[bkg])
            ideal = _frac(truth["e_srd_mev"][ep] >= cfg.trigger.srd_emin_at(energy))
            results[(pf_thr, energy)] = (eff, fake)
            print(f"\nSRD pf-threshold {pf_thr or 30} ADC, {energy:.0f} GeV, emin "
                  f"{cfg.trigger.srd_emin_at(energy):.3f} MeV: e+ efficiency {eff:.4f} +- {_err(eff, ep.sum()):.4f} "
                  f"(n={ep.sum()}; true SR sum above emin: {ideal:.4f}); false tags hadrons+muons "
                  f"{fake:.4f} +- {_err(fake, bkg.sum()):.4f} (n={bkg.sum()})")
    assert results[(None, 100.0)][0] > 0.97
    assert results[(None, 100.0)][0] > results[(None, 60.0)][0] > results[(None, 40.0)][0]
    assert results[(10, 60.0)][0] > 0.95 and results[(10, 40.0)][0] > 0.55
    assert results[(6, 60.0)][0] > 0.975 and results[(6, 40.0)][0] > 0.75
    for key, (eff, fake) in results.items():
        assert fake < 0.01, key
        if key[0] is None:
            assert results[(6, key[1])][0] >= results[(10, key[1])][0] >= eff - 0.01


@pytest.mark.slow
def test_muon_and_calibration_triggers():
    """Muon trigger (MIP in PKR-CAL + HCAL or VETO) and calibration trigger (ECAL only) at 100 GeV."""
    cfg, truth, out = _chain(100.0, SRD_MIX)
    word = out["trigger_word"]
    sp = truth["species"]
    rows = {}
    for name, bit in (("muon", TriggerBits.MUON), ("calibration", TriggerBits.CALIBRATION)):
        for label, sel in (("e+", sp == Species.POSITRON), ("hadrons", sp == Species.HADRON),
                           ("muons", sp == Species.MUON)):
            rows[(name, label)] = _frac((word[sel] & bit) != 0)
            print(f"\n{name} trigger on {label}: {rows[(name, label)]:.4f} (n={sel.sum()})", end="")
    assert rows[("muon", "muons")] > 0.9 and rows[("muon", "e+")] < 0.01
    assert rows[("calibration", "e+")] > 0.95 and rows[("calibration", "muons")] == 0.0


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
    print(f"\nphysics trigger at 100 GeV: signal (E_ECAL < 50 GeV) efficiency {eff:.4f} +- {_err(eff, signal.sum()):.4f} "
          f"(n={signal.sum()}; without pile-up {_frac(physics[clean]):.4f}, n={clean.sum()}); "
          f"ordinary e+ accepted {acc:.5f} +- {_err(acc, beam_ep.sum()):.5f} (n={beam_ep.sum()})")
    losses = {name: _frac((out["conditions"][signal] & bit) == 0) for name, bit in
              (("beam", ConditionBits.BEAM), ("srd", ConditionBits.SRD), ("ecal_low", ConditionBits.ECAL_LOW),
               ("preshower", ConditionBits.PRESHOWER))}
    losses["veto"] = _frac((out["conditions"][signal] & ConditionBits.VETO) != 0)
    print("  signal losses by condition:", {k: round(v, 4) for k, v in losses.items()})
    assert signal.sum() > 300
    assert eff > 0.95
    assert acc < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("energy", [40.0, 100.0])
def test_ecal_energy_resolution(energy):
    """sigma(E_CALO)/E from pulse-finder integrals against 2.5 %/sqrt(E) (+) 0.5 %.

    E_CALO is the trigger's pre-shower + ECAL sum; windows with pile-up are left out (their
    measured pedestal is biased). With the default NSA = 12 (48 ns) the slow PbWO4 component
    (30 ns, 20 %) is cut at a sampling-phase dependent point: about 1.3 % extra spread.
    NSA = 24 (96 ns) removes it.
    """
    required = float(np.hypot(0.025 / np.sqrt(energy), 0.005))
    sigmas = {}
    for nsa in (None, 24):
        cfg, truth, out = _chain(energy, calo_nsa=nsa)
        ok = truth["n_pileup"] == 0
        ratio = out["e_calo"][ok] / 16e3 / truth["energy_gev"][ok]
        q16, q50, q84 = np.percentile(ratio, [15.87, 50.0, 84.13])
        sigma = (q84 - q16) / 2 / q50
        sigmas[nsa] = (q50, sigma)
        t16, t84 = np.percentile((truth["e_preshower_gev"] + truth["e_ecal_gev"])[ok] / truth["energy_gev"][ok],
                                 [15.87, 84.13])
        print(f"\nE_CALO at {energy:.0f} GeV, NSA {nsa or 12}: scale {q50:.4f}, sigma/E {sigma:.4f} "
              f"(central 68 %, n={ok.sum()}); required {required:.4f}; emulated deposit alone {(t84 - t16) / 2:.4f}")
    # NSA = 24: within 1.5x the requirement (the rest: crystals below the 20 ADC pulse threshold)
    assert sigmas[24][1] < 1.5 * required
    assert abs(sigmas[24][0] - 1) < 0.05
    assert sigmas[None][1] < 0.025 and abs(sigmas[None][0] - 1) < 0.05
    assert sigmas[24][1] < sigmas[None][1]


@pytest.mark.slow
def test_configured_calibration_matches_the_emulator():
    cfg = load_config()
    measured = calibrate_from_simulation(cfg, 300, seed=2)
    for name in SUBSYSTEMS:
        configured = cfg.trigger.adc_per_mev[name]
        print(f"\n{name}: configured {configured:.5g}, measured {measured[name]:.5g}, "
              f"derived {derived_adc_per_mev(cfg, name):.5g} ADC x samples / MeV")
        assert abs(measured[name] / configured - 1) < 0.01, name
        assert abs(derived_adc_per_mev(cfg, name) / configured - 1) < 0.03, name


@pytest.mark.slow
def test_stream_chain_triggers_every_beam_particle():
    """Continuous emulator stream -> PulseStream -> TriggerModel, chunking-independent."""
    cfg = load_config().replace(
        detector={s: {"pulse_finder": {"pedestal_mode": "configured", "max_pulses": 0}} for s in SUBSYSTEMS},
        beam={"signal_fraction": 0.2},
        trigger={"prescale": {"beam": 1, "calibration": 1, "muon": 1}, "dead_time_ns": 0.0, "random_rate_hz": 0.0})
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
    # one beam trigger per particle, at the particle's time (T_REF within 4 samples after it)
    assert len(beam) == len(truth) > 50
    delay = (beam["ref_time"] >> 6) - truth["t_sample"]
    assert ((delay >= 0) & (delay <= 4)).all(), delay
    signal = truth["is_signal"]
    phys = (beam["trigger_word"] & TriggerBits.PHYSICS) != 0
    print(f"\nstream: {len(truth)} particles ({signal.sum()} signal), {len(out)} triggers, "
          f"physics on signal {phys[signal].sum()}/{signal.sum()}, on others {phys[~signal].sum()}; "
          f"counters {counters.as_dict()['raw']}")
    assert phys[signal].sum() >= signal.sum() - 1 and phys[~signal].sum() <= 1
