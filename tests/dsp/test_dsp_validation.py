"""Registers from the configuration, and bad input rejected with the field and value named."""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, PulseStream, find_pulses, find_pulses_batch


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_from_config_takes_each_subsystems_table(cfg):
    params = PulseParams.from_config(cfg)
    cmap = cfg.channel_map
    assert params.n_channels == len(cmap) == 130
    for sub in ("beam_counters", "srd", "ecal", "veto", "hcal"):
        pf = cfg.subsystem(sub).pulse_finder
        chans = cmap.channels_of(sub)
        assert (params.thr[chans] == pf.threshold_adc).all(), sub
        assert (params.nsa[chans] == pf.nsa).all(), sub
        assert (params.nped[chans] == pf.nped).all(), sub
        assert (params.ped_mode[chans] == (pf.pedestal_mode == "configured")).all(), sub
    assert params.thr.dtype == np.int32
    # one board's channels, in input order
    board = cmap.channels_on_board(1)
    sub_params = PulseParams.from_config(cfg, channels=board)
    assert sub_params.n_channels == len(board)
    assert (sub_params.nsa == params.nsa[board]).all()
    with pytest.raises(ValueError, match="channel 130 is not in the channel map"):
        PulseParams.from_config(cfg, channels=[0, 130])


def test_from_config_follows_a_changed_table(cfg):
    cfg2 = cfg.replace(
        detector={"srd": {"pulse_finder": {"nsa": 30, "nped": 16, "pedestal_mode": "configured", "pedestal_adc": 123}}}
    )
    params = PulseParams.from_config(cfg2)
    srd = cfg2.channel_map.channels_of("srd")
    assert (params.nsa[srd] == 30).all() and (params.nped_log2[srd] == 4).all()
    assert (params.ped_mode[srd] == 1).all() and (params.ped_cfg[srd] == 123).all()
    others = np.setdiff1d(np.arange(params.n_channels), srd)
    assert (params.ped_mode[others] == 0).all()


@pytest.mark.parametrize(
    ("register", "value", "message"),
    [
        ("thr", 0, r"PulseParams.thr\[channel 2\] = 0: expected 1..16383"),
        ("thr", 16384, r"PulseParams.thr\[channel 2\] = 16384"),
        ("nsb", -1, r"PulseParams.nsb\[channel 2\] = -1: expected 0..63"),
        ("nsb", 64, r"nsb\[channel 2\] = 64"),
        ("nsa", 0, r"nsa\[channel 2\] = 0: expected 1..511"),
        ("nsa", 512, r"nsa\[channel 2\] = 512"),
        ("nsat", 16, r"nsat\[channel 2\] = 16: expected 1..15"),
        ("nsat", 13, r"nsat\[channel 2\] = 13: expected at most nsa = 12"),
        ("nped_log2", 6, r"nped_log2\[channel 2\] = 6: expected 0..5"),
        ("maxped", 16384, r"maxped\[channel 2\] = 16384"),
        ("max_pulses", 16, r"max_pulses\[channel 2\] = 16: expected 0..15"),
        ("ped_mode", 2, r"ped_mode\[channel 2\] = 2: expected 0..1"),
        ("ped_cfg", -5, r"ped_cfg\[channel 2\] = -5"),
    ],
)
def test_register_out_of_range(register, value, message):
    good = PulseParams.uniform(4)
    values = getattr(good, register).copy()
    values[2] = value
    with pytest.raises(ValueError, match=message):
        good.replace(**{register: values})


def test_register_type_and_shape():
    with pytest.raises(TypeError, match=r"PulseParams.thr: expected integers, got dtype float64"):
        PulseParams.uniform(2).replace(thr=np.array([20.0, 20.0]))
    with pytest.raises(ValueError, match=r"PulseParams.nsa: 3 channels, expected 2"):
        PulseParams.uniform(2).replace(nsa=np.array([5, 5, 5]))
    with pytest.raises(TypeError, match=r"unknown register\(s\) \['threshold'\]"):
        PulseParams.uniform(2, threshold=5)


def test_window_dependent_registers():
    x = np.full((2, 16), 400, dtype=np.uint16)
    with pytest.raises(
        ValueError,
        match=r"nsa\[channel 1\] = 15: nsb \+ nsa = 17 is longer than "
        r"the window of 16",
    ):
        find_pulses(x, PulseParams.uniform(2, nsb=2).replace(nsa=np.array([12, 15])))
    # NSB + NSA == N is allowed
    assert len(find_pulses(x, PulseParams.uniform(2, nsb=2, nsa=14))) == 0
    with pytest.raises(
        ValueError,
        match=r"nped_log2\[channel 0\] = 4: a measured pedestal of 16 "
        r"samples leaves no sample to search in a window of 16",
    ):
        find_pulses(x, PulseParams.uniform(2, nped_log2=4))
    assert len(find_pulses(x, PulseParams.uniform(2, nped_log2=4, ped_mode=1))) == 0


def test_samples_type_shape_and_range():
    params = PulseParams.uniform(3)
    good = np.full((3, 32), 400, dtype=np.uint16)
    with pytest.raises(TypeError, match=r"samples: expected an integer dtype .* got dtype float64"):
        find_pulses(good.astype(np.float64), params)
    with pytest.raises(TypeError, match=r"samples: expected a numpy integer array"):
        find_pulses(good.tolist(), params)
    with pytest.raises(ValueError, match=r"samples: expected 2 dimensions .* got shape \(96,\)"):
        find_pulses(good.ravel(), params)
    with pytest.raises(ValueError, match=r"samples: 4 channels, but params describe 3"):
        find_pulses(np.full((4, 32), 400, dtype=np.uint16), params)
    with pytest.raises(ValueError, match=r"window of 1025 samples, expected 1..1024"):
        find_pulses(np.full((3, 1025), 400, dtype=np.uint16), params)
    bad = good.copy()
    bad[1, 7] = 16384
    with pytest.raises(ValueError, match=r"samples\[1, 7\] = 16384: expected an ADC code 0..16383"):
        find_pulses(bad, params)
    with pytest.raises(ValueError, match=r"samples\[1, 7\] = 16384"):
        find_pulses(bad.astype(np.int32), params)
    neg = good.astype(np.int16)
    neg[2, 3] = -1
    with pytest.raises(ValueError, match=r"samples\[2, 3\] = -1: expected an ADC code"):
        find_pulses(neg, params)
    bad3 = np.stack([good, bad])
    with pytest.raises(ValueError, match=r"samples\[1, 1, 7\] = 16384"):
        find_pulses_batch(bad3, params)
    with pytest.raises(ValueError, match=r"samples: expected 3 dimensions"):
        find_pulses_batch(good, params)
    with pytest.raises(ValueError, match=r"channel_ids: expected 3 integers"):
        find_pulses(good, params, channel_ids=[1, 2])


def test_stream_rejects_measured_pedestal_and_pulse_limit():
    with pytest.raises(
        ValueError,
        match=r"ped_mode\[channel 0\] = 0: stream mode needs a "
        r"configured pedestal",
    ):
        PulseStream(PulseParams.uniform(2, max_pulses=0))
    with pytest.raises(ValueError, match=r"max_pulses\[channel 0\] = 3: expected 0"):
        PulseStream(PulseParams.uniform(2, ped_mode=1))
    stream = PulseStream(PulseParams.uniform(2, ped_mode=1, max_pulses=0))
    with pytest.raises(ValueError, match=r"chunk\[0, 1\] = 20000"):
        stream.process(np.array([[1, 20000], [1, 1]]))
    with pytest.raises(ValueError, match=r"chunk: expected shape \(2, L\), got \(3, 4\)"):
        stream.process(np.zeros((3, 4), dtype=np.uint16))
    with pytest.raises(TypeError, match=r"chunk: expected a numpy integer array, got float32"):
        stream.process(np.zeros((2, 4), dtype=np.float32))
    stream.finish()
    with pytest.raises(ValueError, match="the stream is finished"):
        stream.process(np.zeros((2, 4), dtype=np.uint16))
