"""Which state and steps the writer stores in a file of a rotated run (socket-free, _trigger_state.py)."""

from __future__ import annotations

import numpy as np

from pokerdaq.daq._trigger_state import StateHistory
from pokerdaq.io import TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE


def _step(first: int, events_before: int, n_prims: int = 1) -> tuple[np.ndarray, np.ndarray]:
    row = np.zeros(1, TRIGGER_STEP_DTYPE)
    row["first_slice"] = row["last_slice"] = first
    row["events_before"] = events_before
    row["n_primitives"] = n_prims
    prims = np.zeros(n_prims, TRIGGER_PRIMITIVE_DTYPE)
    prims["time"] = first
    return row, prims


def _history(every: int, accepted: list[int]) -> StateHistory:
    h = StateHistory()
    for s, before in enumerate(accepted):
        row, prims = _step(s, before)
        h.add(row, prims, np.array([s], np.int64) if s % every == 0 else None)
    return h


def test_state_of_the_deciding_step_and_the_steps_from_it():
    # steps 0..7; events 0-2 decided in step 2, 3 in step 4, 4-5 in step 6
    accepted = [0, 0, 0, 3, 3, 4, 4, 6]
    h = _history(1, accepted)
    first_slice, state, steps, prims = h.for_file(3, None)  # a file starting at event 3, no steps of its own
    assert first_slice == 4 and state.tolist() == [4]  # the last step with 3 accepted before it: 4
    assert steps["first_slice"].tolist() == [4, 5, 6, 7] and prims["time"].tolist() == [4, 5, 6, 7]
    # steps already stored in the file itself are not repeated
    _, _, steps, _ = h.for_file(3, 6)
    assert steps["first_slice"].tolist() == [4, 5]


def test_every_nth_state_starts_earlier_and_trim_keeps_it():
    h = _history(3, [0, 0, 0, 3, 3, 4, 4, 6])  # states before steps 0, 3, 6
    first_slice, state, steps, _ = h.for_file(3, None)
    assert first_slice == 3 and state.tolist() == [3] and steps["first_slice"].tolist() == [3, 4, 5, 6, 7]
    h.trim(4)  # event 4 is next: decided in step 6
    assert len(h) == 2
    assert h.for_file(4, None)[0] == 6
    assert h.for_file(0, None) is None and h.files_without_state == 1  # that step is gone


def test_bounded_history_sheds_and_counts():
    h = StateHistory(max_steps=4)
    for s in range(10):
        row, prims = _step(s, 0)
        h.add(row, prims, np.array([s], np.int64))
    assert len(h) == 4 and h.shed == 6
