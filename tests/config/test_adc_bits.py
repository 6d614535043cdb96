"""``digitizer.adc_bits`` is honoured: a 12-bit digitizer clips at 4095 and the pulse finders flag it.

The emulator, the synthetic DAQ source, the numba pulse finder and its naive reference all take
the rail ``(1 << adc_bits) - 1`` from the configuration; the 14-bit RTL refuses any other width.
"""

import numpy as np
import pytest

from pokerdaq.cli import main
from pokerdaq.config import ConfigError, load_config
from pokerdaq.daq._synthetic import synthetic_samples
from pokerdaq.dsp import PulseParams, QualityBits, find_pulses_batch
from pokerdaq.dsp._reference import find_pulses_reference
from pokerdaq.sim import emulate_windows

RAIL_12 = 4095


@pytest.fixture(scope="module")
def cfg12():
    return load_config(sets=["digitizer.adc_bits=12"])


@pytest.fixture(scope="module")
def windows12(cfg12):
    samples, _ = emulate_windows(cfg12, 40, seed=3)
    return samples


def test_emulator_clips_at_the_12_bit_rail(cfg12, windows12):
    assert cfg12.digitizer.adc_max == RAIL_12
    assert windows12.max() == RAIL_12  # 100 GeV showers saturate 12 bits
    assert (windows12 == RAIL_12).sum() > 10
    # the same events at 14 bits go above 4095: the clipping is the rail, not the physics
    samples14, _ = emulate_windows(load_config(), 40, seed=3)
    assert samples14.max() > RAIL_12


def test_pulse_finder_and_reference_flag_overflow_at_4095(cfg12, windows12):
    params = PulseParams.from_config(cfg12)
    assert params.adc_max == RAIL_12
    records, offsets = find_pulses_batch(windows12, params)
    at_rail = records["peak"] == RAIL_12
    assert at_rail.any()
    assert (records["quality"][at_rail] & QualityBits.OVERFLOW).all()
    # with the 14-bit rail the same samples carry no OVERFLOW at all: the flag follows adc_bits
    rec14, _ = find_pulses_batch(windows12, PulseParams.from_config(load_config()))
    assert not (rec14["quality"] & QualityBits.OVERFLOW).any()
    # the naive reference agrees record for record on windows with a rail sample
    hot = np.flatnonzero((windows12 == RAIL_12).any(axis=(1, 2)))[:3]
    assert len(hot)
    for e in hot:
        ref = find_pulses_reference(windows12[e], params)
        np.testing.assert_array_equal(records[offsets[e] : offsets[e + 1]], ref)


def test_pulse_finder_refuses_samples_above_the_rail(cfg12, windows12):
    params = PulseParams.from_config(cfg12)
    bad = windows12[:1].copy()
    bad[0, 5, 7] = RAIL_12 + 1
    with pytest.raises(ValueError, match=r"samples\[0, 5, 7\] = 4096: expected an ADC code 0..4095"):
        find_pulses_batch(bad, params)


def test_synthetic_source_clips_at_the_rail(cfg12):
    cfg = cfg12.replace(daq={"synthetic": {"amplitude_adc": 16000}})
    board = 0
    out = synthetic_samples(cfg, 5, board, 0, cfg.daq.slice_ticks * 4)
    assert out.max() == RAIL_12


def test_hil_rtl_refuses_other_adc_bits(capsys):
    assert main(["hil", "--dut", "rtl", "--generate", "1", "--set", "digitizer.adc_bits=12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pokerdaq hil: configuration key 'digitizer.adc_bits' = 12: expected 14 for --dut rtl")
    assert err.count("\n") == 1, err


def test_baseline_above_the_rail_is_refused():
    with pytest.raises(ConfigError, match=r"pedestal_adc' = 400.0: expected at most digitizer.adc_max = 255"):
        load_config(sets=["digitizer.adc_bits=8"])
    assert load_config(sets=["digitizer.adc_bits=9"]).digitizer.adc_max == 511
