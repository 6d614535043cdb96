"""The model's state taken mid-stream and restored into a fresh model gives the same later decisions."""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.trigger import TriggerModel, model_state, restore_model_state

from .conftest import records_from_hits, synthetic_particles


def _slices(c, seed, n):
    rng = np.random.default_rng(seed)
    hits, t_end = synthetic_particles(c, rng, n)
    rec = records_from_hits(c, hits)
    cuts = np.linspace(0, (t_end >> 6) + 2000, 40).astype(np.int64)[1:]
    prev, out = 0, []
    for cut in cuts:
        sel = (rec["time"] >= prev * 64) & (rec["time"] < cut * 64)
        out.append((rec[sel], int(cut)))
        prev = cut
    return out


@pytest.mark.parametrize("at", [0, 5, 17, 38])
def test_restored_model_decides_the_rest_alike(cfg, at):
    c = cfg.replace(trigger={"random_rate_hz": 200000.0, "dead_time_ns": 2000.0})
    slices = _slices(c, 11, 300)
    online = TriggerModel(c, seed=9)
    for rec, end in slices[:at]:
        online.process(rec, end, busy=False)
    state = model_state(online)
    fresh = TriggerModel(c, seed=9)
    restore_model_state(fresh, state)
    assert np.array_equal(model_state(fresh), state)
    for k, (rec, end) in enumerate(slices[at:]):
        busy = k % 7 == 3
        a, b = online.process(rec, end, busy=busy), fresh.process(rec, end, busy=busy)
        assert np.array_equal(a, b)
    assert online.counters.as_dict() == fresh.counters.as_dict()
    assert np.array_equal(model_state(online), model_state(fresh))


def test_corrupted_or_foreign_state_refused(cfg):
    model = TriggerModel(cfg, seed=9)
    state = model_state(model)
    bad = state.copy()
    bad[14] += 1
    with pytest.raises(ValueError, match="corrupted"):
        restore_model_state(TriggerModel(cfg, seed=9), bad, "f.h5")
    with pytest.raises(ValueError, match="other trigger registers"):
        restore_model_state(TriggerModel(cfg, seed=10), state, "f.h5")
    with pytest.raises(ValueError, match="magic"):
        restore_model_state(TriggerModel(cfg, seed=9), np.zeros(len(state), np.int64), "f.h5")
