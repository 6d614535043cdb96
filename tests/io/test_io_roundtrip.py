"""Write real HDF5 run files and read them back: every field, attribute and name survives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from _io_helpers import make_batch

import pokerdaq
from pokerdaq.config import CHANNEL_DTYPE, loads_config
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io import (
    EVENT_DTYPE,
    LAYOUT_VERSION,
    SCALER_DTYPE,
    STORED_PULSE_DTYPE,
    RunFile,
    RunFileWriter,
)


def _scalers(n: int) -> np.ndarray:
    s = np.zeros(n, SCALER_DTYPE)
    s["spill"] = np.arange(n)
    s["triggers_accepted"] = 1000 + np.arange(n)
    s["trigger_bits"][:, 3] = 77
    return s


def test_round_trip_every_dataset(cfg, tmp_path):
    path = tmp_path / "run_000001.h5"
    batches = [make_batch(cfg, n, first_event=first) for n, first in ((70, 0), (1, 70), (129, 71))]
    with RunFileWriter(path, cfg, producer="test") as w:
        for b in batches:
            w.write_events(*b)
        w.write_scalers(_scalers(3))
    headers = np.concatenate([b[0] for b in batches])
    samples = np.concatenate([b[1] for b in batches])
    pulses = np.concatenate([b[2] for b in batches])
    truth = np.concatenate([b[3] for b in batches])

    with RunFile(path) as f:
        assert len(f) == 200
        np.testing.assert_array_equal(f.events, headers)
        assert f.events.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(f.samples[:], samples)
        assert f.samples.dtype == np.uint16 and f.samples.shape == (200, 130, cfg.digitizer.window_samples)
        stored = f.pulses
        assert stored.dtype == STORED_PULSE_DTYPE
        for name in PULSE_DTYPE.names:
            np.testing.assert_array_equal(stored[name], pulses[name])
        np.testing.assert_array_equal(stored["event_number"], np.repeat(headers["event_number"], headers["n_pulses"]))
        np.testing.assert_array_equal(f.truth, truth)
        np.testing.assert_array_equal(f.scalers, _scalers(3))
        assert f.channel_map.table.dtype == CHANNEL_DTYPE
        np.testing.assert_array_equal(f.channel_map.table, cfg.channel_map.table)
        assert f.config == cfg
        assert f.config.text == cfg.text
        np.testing.assert_array_equal(f.crc32, [zlib.crc32(ev) for ev in samples])
        assert len(f.verify()) == 0

        # by event: index, negative index, slice and iteration agree with the input
        e = f[137]
        assert e.event_number == 137
        np.testing.assert_array_equal(e.samples, samples[137])
        np.testing.assert_array_equal(e.pulses["peak"], pulses["peak"][f.pulse_offsets[137] : f.pulse_offsets[138]])
        assert e.truth == truth[137]
        assert f[-1].event_number == 199
        part = f[60:75]
        np.testing.assert_array_equal(part.headers, headers[60:75])
        np.testing.assert_array_equal(part.samples, samples[60:75])
        assert len(part.pulses) == headers["n_pulses"][60:75].sum()
        np.testing.assert_array_equal(part.event(4).pulses, f[64].pulses)
        assert (part.event(4).pulses["event_number"] == 64).all()
        seen = 0
        for i, ev in enumerate(f):
            assert ev.event_number == i
            assert len(ev.pulses) == headers["n_pulses"][i]
            assert (ev.pulses["event_number"] == i).all()
            seen += 1
        assert seen == 200
        with pytest.raises(IndexError):
            f[200]


def test_attributes_present_and_correct(cfg, tmp_path):
    path = tmp_path / "run_000007.h5"
    cfg7 = cfg.replace(run={"run_number": 7})  # a Config changed by replace: stored as its effective TOML
    assert "run_number = 7" in cfg7.text  # the effective TOML, changed key marked [overlay]
    before = datetime.now().astimezone()
    with RunFileWriter(path, cfg7, producer="unit-test") as w:
        w.write_events(*make_batch(cfg7, 10, first_event=100))
    after = datetime.now().astimezone()
    with h5py.File(path, "r") as h5:  # plain h5py: the layout is readable without pokerdaq
        a = h5.attrs
        assert json.loads(a["layout_version"]) == {"name": "pokerdaq-run", "version": LAYOUT_VERSION}
        assert a["run_number"] == 7 and a["file_index"] == 0
        assert a["producer"] == "unit-test"
        start = datetime.fromisoformat(a["start_time_utc"])
        stop = datetime.fromisoformat(a["stop_time_utc"])
        assert start.utcoffset().total_seconds() == 0
        assert before <= start <= stop <= after
        assert loads_config(a["config_toml"]) == cfg7
        assert a["package_version"] == pokerdaq.__version__
        assert a["n_events"] == 10 and a["closed_cleanly"] == 1 and a["recovered"] == 0
        assert (a["first_event_number"], a["last_event_number"]) == (100, 109)
        assert a["n_channels"] == 130 and a["window_samples"] == cfg7.digitizer.window_samples
        assert set(h5) == {"events", "raw", "pulses", "truth", "channel_map", "scalers", "trigger_inputs"}
        assert set(h5["raw"]) == {"samples", "crc32"}
        ds = h5["raw/samples"]
        assert ds.chunks[1:] == ds.shape[1:] and ds.maxshape[0] is None
        assert ds.fletcher32 and len(ds.id.get_create_plist().get_filter(0)) > 0
    assert RunFile(path).config.run.run_number == 7


def test_part_name_while_open_final_name_after_close(cfg, tmp_path):
    path = tmp_path / "run.h5"
    w = RunFileWriter(path, cfg)
    assert w.part_path == tmp_path / "run.h5.part"
    assert w.part_path.exists() and not path.exists()
    w.write_events(*make_batch(cfg, 5))
    w.flush()
    with RunFile(w.part_path) as live:  # a reader can follow the file while it is written (SWMR)
        assert len(live) == 5 and not live.closed_cleanly
    w.close()
    assert path.exists() and not w.part_path.exists()
    assert w.closed_files == [path]
    w.close()  # idempotent
    assert w.closed_files == [path]
    with pytest.raises(ValueError, match="closed"):
        w.write_events(*make_batch(cfg, 1, first_event=5))
    with pytest.raises(FileExistsError, match="run.h5"):
        RunFileWriter(path, cfg)


def test_file_without_truth_or_pulses(cfg, tmp_path):
    headers, samples, _, _ = make_batch(cfg, 20, with_truth=False)
    headers["n_pulses"] = 0
    with RunFileWriter(tmp_path / "r.h5", cfg, compression="none") as w:
        w.write_events(headers, samples)
        with pytest.raises(ValueError, match="truth"):
            w.write_events(*make_batch(cfg, 2, first_event=20)[:3], truth=make_batch(cfg, 2)[3])
    f = RunFile(tmp_path / "r.h5")
    assert f.truth is None and len(f.pulses) == 0 and len(f) == 20
    np.testing.assert_array_equal(f.samples[:], samples)


def test_flush_on_time_publishes_events_to_a_live_reader(cfg, tmp_path):
    # flush_every_events never triggers here: only flush_interval_s can make the events visible
    w = RunFileWriter(tmp_path / "r.h5", cfg, flush_every_events=10**6, flush_interval_s=0.05)
    first = 0
    deadline = time.monotonic() + 30
    visible = 0
    while visible == 0:
        assert time.monotonic() < deadline, "no time-based flush within 30 s"
        w.write_events(*make_batch(cfg, 1, first_event=first))
        first += 1
        with RunFile(w.part_path) as live:
            visible = len(live)
    assert 1 <= visible <= first
    with RunFile(w.part_path) as live:
        np.testing.assert_array_equal(live.events["event_number"], np.arange(visible))
    w.close()
    assert len(RunFile(tmp_path / "r.h5")) == first


def test_layout_readable_with_plain_h5py_as_documented(cfg, tmp_path):
    # the "Reading without pokerdaq" recipe of docs/hdf5-layout.md
    headers, samples, pulses, truth = make_batch(cfg, 12)
    with RunFileWriter(tmp_path / "run_000123.h5", cfg) as w:
        w.write_events(headers, samples, pulses, truth)
    with h5py.File(tmp_path / "run_000123.h5", "r") as f:
        assert json.loads(f.attrs["layout_version"]) == {"name": "pokerdaq-run", "version": 1}
        n = int(f.attrs["n_events"])
        events = f["events"][:n]
        offsets = np.concatenate([[0], np.cumsum(events["n_pulses"], dtype=np.int64)])
        np.testing.assert_array_equal(f["raw/samples"][3], samples[3])
        got = f["pulses"][offsets[3] : offsets[4]]
        assert (got["event_number"] == 3).all()
        np.testing.assert_array_equal(got["integral"], pulses["integral"][offsets[3] : offsets[4]])
        ecal = f["channel_map"]["subsystem"] == b"ecal"
        assert ecal.sum() == 81
        assert int(f.attrs["n_pulses"]) == len(pulses) == f["pulses"].shape[0]


def test_reader_refuses_newer_layout_and_foreign_files(cfg, tmp_path):
    path = tmp_path / "r.h5"
    with RunFileWriter(path, cfg) as w:
        w.write_events(*make_batch(cfg, 2))
    with h5py.File(path, "r+") as f:
        f.attrs["layout_version"] = json.dumps({"name": "pokerdaq-run", "version": LAYOUT_VERSION + 1})
    with pytest.raises(
        ValueError, match=rf"version {LAYOUT_VERSION + 1}, this reader knows .* up to version {LAYOUT_VERSION}"
    ):
        RunFile(path)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["layout_version"] = "not json"
    with pytest.raises(ValueError, match="layout_version attribute 'not json'"):
        RunFile(tmp_path / "other.h5")


def test_record_dtypes_import_without_h5py():
    code = (
        "import sys; from pokerdaq.io import EVENT_DTYPE, EventFlags, LAYOUT_VERSION, SCALER_DTYPE; "
        "assert 'h5py' not in sys.modules, 'h5py imported'; print(EVENT_DTYPE.itemsize)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "36"
