"""Property test: any split into write calls and any rotation limits give back the input, in order."""

from __future__ import annotations

import numpy as np
import pytest
from _io_helpers import make_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pokerdaq.io import RunFile, RunFileWriter


@pytest.fixture(scope="module")
def small_cfg(cfg):
    # short windows keep each example's files small; the layout logic is the same
    return cfg.replace(digitizer={"window_samples": 8, "pretrigger_samples": 2})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    rotate_events=st.one_of(st.none(), st.integers(1, 25)),
    rotate_kib=st.one_of(st.none(), st.integers(1, 40)),
    flush_every=st.integers(1, 30),
    with_truth=st.booleans(),
)
def test_any_split_and_rotation_round_trips(
    small_cfg, tmp_path_factory, n, cuts, rotate_events, rotate_kib, flush_every, with_truth
):
    folder = tmp_path_factory.mktemp("prop")
    headers, samples, pulses, truth = make_batch(small_cfg, n, first_event=1000, with_truth=with_truth)
    bounds = sorted({0, n, *[c for c in cuts if c < n]})
    offsets = np.concatenate([[0], np.cumsum(headers["n_pulses"], dtype=np.int64)])
    rotate_bytes = None if rotate_kib is None else rotate_kib * 1024
    with RunFileWriter(
        folder / "run.h5",
        small_cfg,
        rotate_events=rotate_events,
        rotate_bytes=rotate_bytes,
        flush_every_events=flush_every,
    ) as w:
        for i, j in zip(bounds[:-1], bounds[1:]):
            w.write_events(
                headers[i:j], samples[i:j], pulses[offsets[i] : offsets[j]], None if truth is None else truth[i:j]
            )
    assert sorted(folder.iterdir()) == sorted(w.closed_files)  # nothing else left, no .part
    files = [RunFile(p) for p in w.closed_files]
    assert [f.attrs["file_index"] for f in files] == list(range(len(files)))
    assert all(len(f) > 0 for f in files)
    if rotate_events is not None:
        assert all(len(f) <= rotate_events for f in files)
        assert all(len(f) == rotate_events for f in files[:-1]) or rotate_bytes is not None
    np.testing.assert_array_equal(np.concatenate([f.events for f in files]), headers)
    np.testing.assert_array_equal(np.concatenate([f.samples[:] for f in files]), samples)
    got_pulses = np.concatenate([f.pulses for f in files])
    np.testing.assert_array_equal(got_pulses["time"], pulses["time"])
    np.testing.assert_array_equal(got_pulses["event_number"], np.repeat(headers["event_number"], headers["n_pulses"]))
    if truth is not None:
        np.testing.assert_array_equal(np.concatenate([f.truth for f in files]), truth)
    for f in files:
        assert len(f.verify()) == 0
        f.close()
