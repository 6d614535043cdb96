"""Rotation into sub-run files by event count and by bytes: names, file_index, consecutive events."""

from __future__ import annotations

import numpy as np
from _io_helpers import make_batch

from pokerdaq.io import EVENT_DTYPE, SCALER_DTYPE, STORED_PULSE_DTYPE, RunFile, RunFileWriter, run_paths


def _read_all(paths):
    files = [RunFile(p) for p in paths]
    events = np.concatenate([f.events for f in files])
    samples = np.concatenate([f.samples[: len(f)] for f in files])
    return files, events, samples


def test_rotation_by_events(cfg, tmp_path):
    path = tmp_path / "run_000042.h5"
    batches = [make_batch(cfg, 45, first_event=45 * k) for k in range(5)]  # 225 events
    with RunFileWriter(path, cfg, rotate_events=100) as w:
        for b in batches:
            w.write_events(*b)
            # a full file is closed when the next event arrives: 100 events in a file, not 45 x 3
            assert len(w.closed_files) == b[0]["event_number"][-1] // 100
    expected = [path, tmp_path / "run_000042_0001.h5", tmp_path / "run_000042_0002.h5"]
    assert w.closed_files == expected
    assert sorted(tmp_path.iterdir()) == sorted(expected)  # no .part and no empty file left behind
    assert run_paths(path) == expected
    files, events, samples = _read_all(expected)
    assert [len(f) for f in files] == [100, 100, 25]
    assert [f.attrs["file_index"] for f in files] == [0, 1, 2]
    assert [f.attrs["previous_file"] for f in files] == ["", path.name, expected[1].name]
    np.testing.assert_array_equal(events["event_number"], np.arange(225))
    np.testing.assert_array_equal(samples, np.concatenate([b[1] for b in batches]))
    for f in files:  # every file's pulses belong to its own events, truth rows line up
        assert set(f.pulses["event_number"].tolist()) <= set(f.events["event_number"].tolist())
        assert len(f.pulses) == f.events["n_pulses"].sum()
        assert len(f.truth) == len(f)
        assert f.closed_cleanly


def test_rotation_by_bytes(cfg, tmp_path):
    path = tmp_path / "run.h5"
    headers, samples, _, _ = make_batch(cfg, 37, with_truth=False)
    headers["n_pulses"] = 0
    event_bytes = EVENT_DTYPE.itemsize + samples[0].nbytes + 4  # header + samples + crc32, as documented
    with RunFileWriter(path, cfg, rotate_bytes=10 * event_bytes + event_bytes // 2) as w:
        w.write_events(headers, samples)
    assert [p.name for p in w.closed_files] == ["run.h5", "run_0001.h5", "run_0002.h5", "run_0003.h5"]
    files, events, got = _read_all(w.closed_files)
    assert [len(f) for f in files] == [10, 10, 10, 7]
    assert [f.attrs["file_index"] for f in files] == [0, 1, 2, 3]
    np.testing.assert_array_equal(events["event_number"], np.arange(37))
    np.testing.assert_array_equal(got, samples)


def test_rotation_by_bytes_counts_pulses_and_truth(cfg, tmp_path):
    headers, samples, pulses, truth = make_batch(cfg, 30)
    per_event = (
        EVENT_DTYPE.itemsize
        + samples[0].nbytes
        + 4
        + truth.dtype.itemsize
        + headers["n_pulses"].astype(int) * STORED_PULSE_DTYPE.itemsize
    )
    limit = int(per_event[:8].sum())  # exactly the first 8 events
    with RunFileWriter(tmp_path / "r.h5", cfg, rotate_bytes=limit) as w:
        w.write_events(headers, samples, pulses, truth)
    files, events, _ = _read_all(w.closed_files)
    assert len(files[0]) == 8
    assert all(per_event[f.events["event_number"].astype(int)].sum() <= limit for f in files)
    np.testing.assert_array_equal(events["event_number"], np.arange(30))
    np.testing.assert_array_equal(np.concatenate([f.truth for f in files]), truth)


def test_single_event_larger_than_rotate_bytes_gets_its_own_file(cfg, tmp_path):
    headers, samples, pulses, truth = make_batch(cfg, 3)
    with RunFileWriter(tmp_path / "r.h5", cfg, rotate_bytes=100) as w:
        w.write_events(headers, samples, pulses, truth)
    assert [len(RunFile(p)) for p in w.closed_files] == [1, 1, 1]


def test_a_full_file_stays_open_for_the_scaler_rows_of_its_events(cfg, tmp_path):
    # rows written after the event that fills a file go to that file, not to a new empty one
    path = tmp_path / "run.h5"
    with RunFileWriter(path, cfg, rotate_events=10) as w:
        w.write_events(*make_batch(cfg, 10))
        assert w.closed_files == [] and w.file_index == 0  # full, still open
        rows = np.zeros(2, SCALER_DTYPE)
        rows["spill"] = [0, 1]
        w.write_scalers(rows)
        w.write_events(*make_batch(cfg, 3, first_event=10))  # the next event closes it
        assert w.closed_files == [path]
        w.write_scalers(rows[:1])
        assert w.n_events_flushed == 10 + 3
    assert [p.name for p in w.closed_files] == ["run.h5", "run_0001.h5"]
    with RunFile(w.closed_files[0]) as f:
        assert len(f) == 10 and f.scalers["spill"].tolist() == [0, 1]
    with RunFile(w.closed_files[1]) as f:
        assert len(f) == 3 and len(f.scalers) == 1
    # the last full file of a run is closed by close(): no empty file follows
    with RunFileWriter(tmp_path / "b.h5", cfg, rotate_events=5) as w:
        w.write_events(*make_batch(cfg, 10))
        w.write_scalers(rows)
    assert [p.name for p in w.closed_files] == ["b.h5", "b_0001.h5"]
