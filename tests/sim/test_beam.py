"""Beam time structure and species mix, SRD E^4 law."""

import numpy as np
import pytest
from scipy import stats

from pokerdaq.sim import SampleStream, Species, emulate_windows
from pokerdaq.sim._beam import BeamTimeline


def particles(cfg, seed, n_blocks):
    tl = BeamTimeline(cfg, seed)
    return np.concatenate([tl.block(k).truth for k in range(n_blocks)])


def test_inter_arrival_times_are_exponential_at_the_rate(cfg):
    c = cfg.replace(beam={"rate_hz": 2e6})
    t = particles(c, 50, 3)["t_ns"]  # 12.6 ms inside the first spill, ~25k particles
    gaps = np.diff(t)
    assert len(gaps) > 20000
    rate_ns = c.beam.rate_hz * 1e-9
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate_ns)).pvalue > 0.01
    assert gaps.mean() * rate_ns == pytest.approx(1.0, abs=4 / np.sqrt(len(gaps)))
    # a wrong rate is rejected: the test can fail
    assert stats.kstest(gaps, "expon", args=(0, 0.97 / rate_ns)).pvalue < 1e-3


def test_spill_structure(cfg):
    c = cfg.replace(beam={"rate_hz": 1e6, "spill_length_s": 1e-3, "spill_period_s": 3e-3})
    t = particles(c, 51, 3)["t_ns"]  # 12.6 ms: four spills (the fifth starts at 12 ms)
    period, length = 3e6, 1e6
    phase = np.mod(t, period)
    assert (phase < length).all()
    counts = np.bincount((t // period).astype(int))[:4]
    assert np.all(np.abs(counts - 1000) < 5 * np.sqrt(1000))
    # the particle index runs on through the gaps
    assert np.array_equal(particles(c, 51, 3)["event"], np.arange(len(t)))


def test_species_mix_and_signal_line(cfg):
    c = cfg.replace(beam={"hadron_fraction": 0.2, "muon_fraction": 0.1, "signal_fraction": 0.1})
    tr = particles(c, 52, 60)
    n = len(tr)
    for code, frac in ((Species.HADRON, 0.2), (Species.MUON, 0.1)):
        k = (tr["species"] == code).sum()
        assert abs(k - frac * n) < 5 * np.sqrt(n * frac * (1 - frac))
    sig = tr[tr["is_signal"]]
    assert abs(len(sig) - 0.1 * n) < 5 * np.sqrt(n * 0.09)
    assert (sig["species"] == Species.POSITRON).all()
    e_r = c.beam.resonance_energy_gev
    assert sig["e_miss_gev"].mean() == pytest.approx(e_r, rel=0.005)
    assert sig["e_miss_gev"].std() / e_r == pytest.approx(c.response.signal_line_width, rel=0.15)
    assert (tr["e_miss_gev"][~tr["is_signal"]] == 0).all()
    # signal: ECAL gets E - E_miss, nothing in HCAL or VETO
    e_cal = sig["e_ecal_gev"] + sig["e_preshower_gev"]
    assert np.median(e_cal / (sig["energy_gev"] - sig["e_miss_gev"])) == pytest.approx(0.995, abs=0.01)
    assert (sig["e_hcal_gev"] == 0).all() and (sig["e_veto_mev"] == 0).all()
    mu = tr[tr["species"] == Species.MUON]
    assert np.median(mu["e_ecal_gev"]) == pytest.approx(c.response.ecal_mip_mev / 1e3, rel=0.2)
    assert (mu["e_srd_mev"] == 0).all() and (tr[tr["species"] == Species.HADRON]["e_srd_mev"] == 0).all()
    had = tr[tr["species"] == Species.HADRON]
    assert np.median(had["e_hcal_gev"] / had["energy_gev"]) > 0.5


def srd_charge(cfg, energy, seed):
    c = cfg.replace(
        beam={
            "energy_gev": energy,
            "energy_spread": 0.0,
            "rate_hz": 2e4,
            "signal_fraction": 0.0,
            "hadron_fraction": 0.0,
            "muon_fraction": 0.0,
        },
        detector={"lyso_background_hz": 0.0, "srd": {"sipm": {"dark_rate_hz": 0.0}}},
    )
    srd = c.channel_map.channels_of("srd")
    s, tr = emulate_windows(c, 2500, seed=seed, channels=srd)
    q = (s.astype(np.float64) - c.detector.srd.electronics.pedestal_adc).sum(axis=(1, 2))
    clean = tr["n_pileup"] == 0
    return q[clean], tr[clean]


def test_srd_deposits_scale_as_e4(cfg):
    q100, t100 = srd_charge(cfg, 100.0, 53)
    q40, t40 = srd_charge(cfg, 40.0, 54)
    law = (100.0 / 40.0) ** 4
    assert t100["e_srd_mev"].mean() / t40["e_srd_mev"].mean() == pytest.approx(law, rel=0.10)
    assert q100.mean() / q40.mean() == pytest.approx(law, rel=0.10)
    assert t100["e_srd_mev"].max() < 200.0 and np.percentile(t100["e_srd_mev"], 99) > 60.0


def test_lyso_background_rate_and_spectrum(cfg):
    tl = BeamTimeline(cfg.replace(beam={"rate_hz": 1.0}), 55)
    blocks = [tl.block(k) for k in range(10)]
    srd = set(cfg.channel_map.channels_of("srd").tolist())
    e = np.concatenate([b.hit_e[np.isin(b.hit_ch, list(srd))] for b in blocks])
    duration_s = 10 * tl.block_ns * 1e-9
    expected = cfg.detector.lyso_background_hz * duration_s
    assert abs(len(e) - expected) < 5 * np.sqrt(expected)
    assert e.max() < 1.2 and 0.2 < np.median(e) < 0.7  # beta (596 keV endpoint) + gammas


def srd_pulses_between_spills(c, seed):
    srd = c.channel_map.channels_of("srd")
    stream = SampleStream(c, seed=seed, channels=srd)
    stream.read(300_000)  # past the 1 ms spill
    s, truth = stream.read(250_000)  # 1 ms without beam
    assert len(truth) == 0
    thr = c.detector.srd.electronics.pedestal_adc + 20  # 10 sigma of noise, ~0.15 MeV
    return ((s[:, 1:] >= thr) & (s[:, :-1] < thr)).sum()


def test_srd_sees_background_without_beam(cfg):
    c = cfg.replace(beam={"spill_length_s": 1e-3, "spill_period_s": 10.0})
    # ~30 Lu-176 decays in 1 ms, most of them above 0.15 MeV
    assert 15 < srd_pulses_between_spills(c, 56) < 45
    assert srd_pulses_between_spills(c.replace(detector={"lyso_background_hz": 0.0}), 56) == 0


def test_block_store_shares_identical_blocks(cfg, tmp_path):
    """Blocks taken from a run's block store (use_block_store) equal generated ones field for
    field, and old blocks are evicted from the folder (and generated again, the same)."""
    from pokerdaq.sim import _beam

    ref = BeamTimeline(cfg, 13)
    try:
        _beam.use_block_store(tmp_path)
        first, second = BeamTimeline(cfg, 13), BeamTimeline(cfg, 13)
        ks = list(range(_beam.STORE_KEEP_BLOCKS + 2))
        for k in ks:
            first.block(k)
        for k in (ks[-1], ks[-2]):
            got, want = second.block(k), ref.block(k)
            for name in ("truth", "hit_t", "hit_ch", "hit_e", "hit_key"):
                a, b = getattr(got, name), getattr(want, name)
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        assert len(list(tmp_path.glob("block-*.npz"))) == _beam.STORE_KEEP_BLOCKS
        # an evicted block is generated again, the same
        assert second.block(0).hit_key.tobytes() == ref.block(0).hit_key.tobytes()
    finally:
        _beam.use_block_store(None)
