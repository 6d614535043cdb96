"""fadc250 mode (docs/firmware-spec.md 1.13): numba kernel, naive reference and a Python port
of JLab's fADC250 v3 emulation (``fadc250_v3_port``), bit for bit.

Waveforms are generated here: noise only, square and slow pulses, double pulses, pulses at
the window edges, samples equal to the threshold, rails and out-of-range words.
"""

from __future__ import annotations

import numpy as np
import pytest
from dsp_helpers import assert_records_equal
from fadc250_v3_port import emulate_v3, port_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pokerdaq.config import ConfigError, default_config_text, loads_config
from pokerdaq.dsp import PULSE_DTYPE, PulseParams, PulseStream, QualityBits, find_pulses, find_pulses_batch
from pokerdaq.dsp._reference import find_pulses_reference

OVF, UNF = 0x1FFF, 0x1000


def _params(n_ch: int, thr: int, nsb: int, nsa: int, nsat: int, nped_log2: int, maxped: int) -> PulseParams:
    return PulseParams.uniform(
        n_ch, thr=thr, nsb=nsb, nsa=nsa, nsat=nsat, nped_log2=nped_log2, maxped=maxped, algorithm=1
    )


def _three_way(words: np.ndarray, regs: dict) -> np.ndarray:
    """Port, reference and kernel on (channels, N) words; returns the kernel's records."""
    params = _params(words.shape[0], **regs)
    want = port_records(words, regs["nsa"], regs["nsb"], regs["thr"], regs["nped_log2"], regs["maxped"], regs["nsat"])
    ref = find_pulses_reference(words, params)
    got = find_pulses(words, params)
    assert_records_equal(ref, want, f"reference vs v3 port, regs {regs}")
    assert_records_equal(got, want, f"numba vs v3 port, regs {regs}")
    return got


def _waveform(rng: np.random.Generator, n: int, thr: int) -> np.ndarray:
    """One window of 13-bit words: a baseline below THR, some of the generated features."""
    base = int(rng.integers(max(0, thr - 40), thr + 1))
    x = base + rng.integers(-3, 4, n)
    kind = rng.integers(0, 8)
    for _ in range(int(rng.integers(0, 4))):
        start = int(rng.integers(-3, n))
        width = int(rng.integers(1, 20))
        amp = int(rng.integers(1, 600))
        if kind % 2:  # slow pulse: a ramp up and an exponential-ish tail
            t = np.arange(n) - start
            shape = np.where(t < 0, 0, np.where(t < width, amp * (t + 1) // width, amp * width // np.maximum(t + 1, 1)))
            x = x + shape
        else:  # square pulse
            x[max(start, 0) : max(start + width, 0)] += amp
    if kind in (2, 3):
        x[rng.random(n) < 0.2] = thr  # samples equal to the threshold
    if kind in (4, 5):
        x[rng.random(n) < 0.2] = thr + 1
    x = np.clip(x, 0, 4095)
    words = x.astype(np.int64)
    if kind >= 6:  # rails and out-of-range words
        hit = rng.random(n)
        words[hit < 0.05] = OVF
        words[(hit >= 0.05) & (hit < 0.08)] = UNF
        odd = (hit >= 0.08) & (hit < 0.10)
        words[odd] = 0x1000 | rng.integers(0, 4096, int(odd.sum()))
    return words.astype(np.uint16)


REGISTER_SETS = [
    dict(thr=108, nsb=3, nsa=9, nsat=2, nped_log2=2, maxped=512),
    dict(thr=100, nsb=0, nsa=1, nsat=1, nped_log2=0, maxped=4095),
    dict(thr=120, nsb=5, nsa=20, nsat=3, nped_log2=3, maxped=150),
    dict(thr=90, nsb=2, nsa=6, nsat=4, nped_log2=1, maxped=16383),
    dict(thr=4095, nsb=1, nsa=4, nsat=1, nped_log2=2, maxped=0),
    dict(thr=60, nsb=63, nsa=40, nsat=15, nped_log2=5, maxped=100),
]


def test_generated_campaign_bit_exact_and_every_bit_reached():
    rng = np.random.default_rng(250)
    compared = pulses = 0
    quality = np.zeros(11, dtype=np.int64)
    for regs in REGISTER_SETS:
        for n in (4, 8, 33, 64, 100, 128):
            if regs["nsb"] + regs["nsa"] > n or (1 << regs["nped_log2"]) >= n:
                continue
            words = np.stack([_waveform(rng, n, regs["thr"]) for _ in range(300)])
            got = _three_way(words, regs)
            compared += words.shape[0]
            pulses += len(got)
            quality += ((got["quality"][:, None].astype(np.int64) >> np.arange(11)) & 1).sum(0)
    assert compared >= 6000 and pulses >= 3000, (compared, pulses)
    # every fadc250 bit (spec 1.13.7) occurs; NSB_BEFORE_WINDOW, PILEUP, MORE_PULSES never
    for bit in (0, 1, 3, 4, 5, 6, 7, 10):
        assert quality[bit] > 0, (bit, quality.tolist())
    assert quality[2] == quality[8] == quality[9] == 0, quality.tolist()


@st.composite
def _window_and_regs(draw):
    n = draw(st.integers(4, 72))
    nsa = draw(st.integers(1, n))
    nsb = draw(st.integers(0, min(63, n - nsa)))
    nsat = draw(st.integers(1, min(15, nsa)))
    nped_log2 = draw(st.integers(0, 5).filter(lambda k: (1 << k) < n))
    thr = draw(st.integers(1, 200))
    maxped = draw(st.integers(0, 300))
    word = st.one_of(st.integers(0, 220), st.sampled_from([thr - 1, thr, thr + 1, OVF, UNF]), st.integers(0, 0x1FFF))
    words = draw(st.lists(word.filter(lambda v: 0 <= v <= 0x1FFF), min_size=n, max_size=n))
    return np.array([words], dtype=np.uint16), dict(
        thr=thr, nsb=nsb, nsa=nsa, nsat=nsat, nped_log2=nped_log2, maxped=maxped
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_window_and_regs())
def test_hypothesis_windows_bit_exact(case):
    words, regs = case
    _three_way(words, regs)


def test_batch_and_mixed_algorithms_keep_row_order():
    # channels 0 and 2 poker (14-bit codes), 1 and 3 fadc250 (13-bit words): the records of
    # each channel are those of its own algorithm, in channel order within each event
    rng = np.random.default_rng(7)
    n_ev, n = 40, 64
    samples = np.stack([np.stack([_waveform(rng, n, 108) for _ in range(4)]) for _ in range(n_ev)])
    algorithm = np.array([0, 1, 0, 1])
    params = PulseParams.uniform(4, thr=30, nsb=3, nsa=9, nsat=2, nped_log2=2, maxped=512)
    params = params.replace(algorithm=algorithm, thr=np.array([30, 108, 30, 108]))
    samples[:, algorithm == 0] &= 0x0FFF  # poker rows: plain codes
    records, offsets = find_pulses_batch(samples, params)
    want = np.concatenate([find_pulses_reference(samples[e], params) for e in range(n_ev)])
    assert_records_equal(records, want, "mixed batch vs reference")
    assert offsets[-1] == len(records) and len(records) > 50
    for e in range(n_ev):
        assert_records_equal(records[offsets[e] : offsets[e + 1]], find_pulses(samples[e], params), f"event {e}")


def test_hall_d_playback_vector():
    # halld-level1 list, 2016-10-02 (A. Somov, logbook entry 3425013): fADC250 playback with
    # NPED 4, NSB 3, NSA 9, READ_THR 108, a 100-sample window (W_WIDTH), two rectangular
    # pulses on a baseline of 100 (samples 1-32 below, the rest at 100)
    shape = [100] * 9 + [266] * 8 + [100] * 4 + [200] * 3 + [100] * 8
    words = np.array([shape + [100] * (100 - len(shape))], dtype=np.uint16)
    regs = dict(thr=108, nsb=3, nsa=9, nsat=2, nped_log2=2, maxped=512)
    got = _three_way(words, regs)
    assert len(got) == 2
    assert (got["pedestal"] == 400).all()
    assert got["integral"].tolist() == [2528, 1500]
    assert got["peak"].tolist() == [266, 200]
    assert got["n_over"].tolist() == [8, 3]
    assert got["fine_time"].tolist() == [32, 32]
    assert (got["quality"] == 0).all()
    # the entry gives coarse times 52 and 64 (1-based, for the pulses' place in the playback
    # window, which it does not state): 12 samples apart, as here (v3 TMID 9 and 21)
    v3 = emulate_v3([int(v) for v in words[0]], 9, 3, 108, 4, 512, 2)
    assert [p.TMID for p in v3] == [9, 21]
    assert int(np.diff(got["coarse_time"])[0]) == 64 - 52


def test_v3_rules_that_differ_from_poker():
    regs = dict(thr=108, nsb=1, nsa=4, nsat=2, nped_log2=2, maxped=512)
    params = _params(1, **regs)
    # a crossing in the pedestal samples, at sample 0, is found; no time (timing pedestal)
    w = np.array([[300, 300, 100, 100, 100, 100, 100, 100, 100, 100]], dtype=np.uint16)
    (r,) = _three_way(w, regs)
    assert r["crossing"] == 0 and r["coarse_time"] == 0 and r["fine_time"] == 0
    assert r["quality"] & QualityBits.TIMING_PEDESTAL_BAD
    # re-arming needs a sample strictly below THR: a tail at THR hides the second pulse
    w = np.array([[100] * 5 + [300] * 4 + [108] * 3 + [300] * 4 + [100] * 4], dtype=np.uint16)
    assert len(_three_way(w, regs)) == 1
    w[0, 10] = 107
    assert len(_three_way(w, regs)) == 2
    # the last sample is never the fall after a peak: peak not found, peak 0
    w = np.array([[100] * 6 + [200, 300, 400, 100]], dtype=np.uint16)
    (r,) = _three_way(w, regs)
    assert r["peak"] == 0 and r["quality"] & QualityBits.PEAK_NOT_FOUND
    # samples over threshold are counted, not a run
    w = np.array([[100] * 6 + [300, 300, 100, 300, 250, 100, 100, 100]], dtype=np.uint16)
    (r,) = _three_way(w, regs)
    assert r["n_over"] == 3
    assert find_pulses(w, params)["n_over"][0] == 3


def test_noise_only_and_rails_in_pedestal():
    regs = dict(thr=108, nsb=3, nsa=9, nsat=2, nped_log2=2, maxped=4095)
    rng = np.random.default_rng(1)
    noise = (100 + rng.integers(-4, 5, (200, 64))).astype(np.uint16)
    assert len(_three_way(noise, regs)) == 0
    w = np.full((2, 32), 100, dtype=np.uint16)
    w[:, 12:16] = 300
    w[0, 1] = UNF  # out of range in the pedestal: PEDESTAL_BAD and
    w[1, 2] = OVF  # the timing pedestal bit (and OVF: no time)
    got = _three_way(w, regs)
    assert (got["quality"] & QualityBits.PEDESTAL_BAD).all()
    assert (got["quality"] & QualityBits.TIMING_PEDESTAL_BAD).all()


def test_fadc250_validation_errors():
    base = PulseParams.uniform(2)
    with pytest.raises(ValueError, match=r"PulseParams.algorithm\[channel 1\] = 2"):
        base.replace(algorithm=np.array([0, 2]))
    with pytest.raises(ValueError, match=r"ped_mode\[channel 0\] = 1: the fadc250"):
        base.replace(algorithm=1, ped_mode=1)
    with pytest.raises(ValueError, match=r"max_pulses\[channel 0\] = 0: the fadc250"):
        base.replace(algorithm=1, max_pulses=0)
    fadc = base.replace(algorithm=np.array([0, 1]), nped_log2=1, nsa=2, nsb=0)
    with pytest.raises(ValueError, match=r"samples\[1, 3\] = 8192: channel 1 runs the fadc250"):
        find_pulses(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 8192, 0]], dtype=np.uint16), fadc)
    with pytest.raises(ValueError, match="expected N >= 4"):
        find_pulses(np.zeros((2, 3), dtype=np.uint16), fadc.replace(nsa=1, nsat=1, nped_log2=0))
    with pytest.raises(
        ValueError,
        match=r"algorithm\[channel 1\] = 1: the fadc250 algorithm "
        r"is a window-mode",
    ):
        PulseStream(fadc.replace(ped_mode=np.array([1, 0]), max_pulses=np.array([0, 3])))


def test_config_algorithm_register():
    cfg = loads_config(default_config_text())
    assert all(
        cfg.subsystem(s).pulse_finder.algorithm == "poker"
        for s in ("beam_counters", "srd", "preshower", "ecal", "veto", "hcal")
    )
    assert (PulseParams.from_config(cfg).algorithm == 0).all()
    text = default_config_text().replace(
        "[detector.ecal.pulse_finder]", '[detector.ecal.pulse_finder]\nalgorithm = "fadc250"', 1
    )
    text = _drop_second(text, "[detector.ecal.pulse_finder]", 'algorithm = "poker"')
    cfg = loads_config(text)
    params = PulseParams.from_config(cfg)
    is_ecal = cfg.channel_map.table["subsystem"] == b"ecal"
    assert (params.algorithm == is_ecal).all() and is_ecal.any()
    assert PULSE_DTYPE["quality"] == np.uint16


def _drop_second(text: str, table: str, line: str) -> str:
    head, tail = text.split(table, 1)
    return head + table + tail.replace("\n" + line, "", 1)


def test_config_rejects_what_fadc250_cannot_do():
    cfg = loads_config(default_config_text())
    cases = [
        ({"algorithm": "fadc125"}, "detector.ecal.pulse_finder.algorithm", "fadc125"),
        (
            {"algorithm": "fadc250", "pedestal_mode": "configured"},
            "detector.ecal.pulse_finder.pedestal_mode",
            "configured",
        ),
        ({"algorithm": "fadc250", "max_pulses": 0}, "detector.ecal.pulse_finder.max_pulses", 0),
    ]
    for table, key, value in cases:
        with pytest.raises(ConfigError) as info:
            cfg.replace(detector={"ecal": {"pulse_finder": table}})
        assert info.value.key == key and info.value.value == value, str(info.value)
    ok = cfg.replace(detector={"ecal": {"pulse_finder": {"algorithm": "fadc250"}}})
    assert ok.subsystem("ecal").pulse_finder.algorithm == "fadc250"
