"""Bad input to the writer: a ValueError naming the argument and the value, and nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from _io_helpers import make_batch

from pokerdaq.io import EVENT_DTYPE, SCALER_DTYPE, RunFile, RunFileWriter


def _bad_cases(cfg):
    h, s, p, t = make_batch(cfg, 6)
    wrong_numbers = h.copy()
    wrong_numbers["event_number"][3] = wrong_numbers["event_number"][2]
    too_high = s.copy()
    too_high[2, 5, 9] = cfg.digitizer.adc_max + 1
    bad_channel = p.copy()
    bad_channel["channel"][0] = 130
    return {
        "headers dtype": ((h.astype([(n, "<i8") for n in EVENT_DTYPE.names]), s, p, t), r"headers: dtype"),
        "headers 2-d": ((h.reshape(2, 3), s, p, t), r"headers: shape \(2, 3\)"),
        "samples dtype": ((h, s.astype(np.int16), p, t), r"samples: dtype int16"),
        "samples channels": ((h, s[:, :129], p, t), r"samples: shape \(6, 129, 64\), expected \(6, 130, 64\)"),
        "samples length": ((h, s[:5], p, t), r"samples: shape \(5, 130, 64\), expected \(6, 130, 64\)"),
        "samples window": ((h, s[:, :, :32], p, t), r"samples: shape \(6, 130, 32\)"),
        "samples range": ((h, too_high, p, t), r"samples: value 16384 at \(event, channel, sample\) = \(2, 5, 9\)"),
        "event order": ((wrong_numbers, s, p, t), r"headers\['event_number'\]: 2 at index 3"),
        "pulses count": ((h, s, p[:-1], t), rf"pulses: {len(p) - 1} rows, but headers\['n_pulses'\] sums to {len(p)}"),
        "pulses missing": ((h, s, None, t), rf"pulses: None, but headers\['n_pulses'\] sums to {len(p)}"),
        "pulses dtype": ((h, s, np.zeros(len(p), [("x", "f4")]), t), r"pulses: dtype"),
        "pulses channel": ((h, s, bad_channel, t), r"pulses\['channel'\]: 130 at row 0"),
        "truth length": ((h, s, p, t[:4]), r"truth: shape \(4,\), expected \(6,\)"),
        "truth plain": ((h, s, p, np.zeros(6)), r"truth: float64, expected a numpy structured array"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "headers dtype",
        "headers 2-d",
        "samples dtype",
        "samples channels",
        "samples length",
        "samples window",
        "samples range",
        "event order",
        "pulses count",
        "pulses missing",
        "pulses dtype",
        "pulses channel",
        "truth length",
        "truth plain",
    ],
)
def test_bad_input_raises_and_writes_nothing(cfg, tmp_path, case):
    args, pattern = _bad_cases(cfg)[case]
    path = tmp_path / "r.h5"
    with RunFileWriter(path, cfg) as w:
        with pytest.raises(ValueError, match=pattern):
            w.write_events(*args)
    with RunFile(path) as f:
        assert len(f) == 0
        assert f.samples.shape[0] == 0 and f.pulses.shape[0] == 0 and f.events.shape[0] == 0


def test_event_numbers_must_increase_across_calls_and_truth_dtype_is_fixed(cfg, tmp_path):
    with RunFileWriter(tmp_path / "r.h5", cfg) as w:
        w.write_events(*make_batch(cfg, 5, first_event=10))
        with pytest.raises(ValueError, match=r"headers\['event_number'\]: 12 at index 0, expected more than .* 14"):
            w.write_events(*make_batch(cfg, 5, first_event=12))
        h, s, p, t = make_batch(cfg, 2, first_event=15)
        with pytest.raises(ValueError, match=r"truth: dtype .* expected the run's truth dtype"):
            w.write_events(h, s, p, t.astype([("energy_gev", "f4"), ("species", "S8"), ("signal", "?")]))
        with pytest.raises(ValueError, match=r"spill_scalers: dtype"):
            w.write_scalers(np.zeros(2, [("spill", "u4")]))
    f = RunFile(tmp_path / "r.h5")
    assert len(f) == 5 and len(f.scalers) == 0
    np.testing.assert_array_equal(f.events["event_number"], np.arange(10, 15))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"rotate_events": 0}, r"rotate_events: 0"),
        ({"rotate_bytes": -5}, r"rotate_bytes: -5"),
        ({"flush_every_events": 0}, r"flush_every_events: 0"),
        ({"compression": "bzip2"}, r"compression: 'bzip2'"),
        ({"producer": ""}, r"producer: ''"),
    ],
)
def test_bad_writer_arguments(cfg, tmp_path, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RunFileWriter(tmp_path / "r.h5", cfg, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_scalers_round_trip_and_bad_config(cfg, tmp_path):
    with pytest.raises(ValueError, match="config: dict"):
        RunFileWriter(tmp_path / "r.h5", {"run": 1})
    s = np.zeros(4, SCALER_DTYPE)
    s["spill"] = np.arange(4)
    s["busy_ticks"] = [5, 6, 7, 8]
    with RunFileWriter(tmp_path / "r.h5", cfg) as w:
        w.write_scalers(s[:2])
        w.write_scalers(s[2:])
    np.testing.assert_array_equal(RunFile(tmp_path / "r.h5").scalers, s)
