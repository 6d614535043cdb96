"""Which trigger-model state and decision steps make a file of a rotated run checkable alone.

Socket-free; the writer process (``_writer.py``) drives it. Every ``TRIGIN`` message of the
trigger processor carries, besides the decision step and its primitives, the trigger model's
whole state before the step (``pokerdaq.trigger.model_state``). The writer keeps the steps
received since the one that decided the next event to write (:meth:`StateHistory.trim`), and
when a file gets its first event ``e`` (:meth:`StateHistory.for_file`) it stores in that file
the state before the step that decided ``e`` and the steps from there up to the file's own
first step (they lie in earlier files): ``/trigger_inputs/state``, ``state_steps`` and
``state_primitives`` (docs/hdf5-layout.md, "Trigger state"). Replay then starts the model from
that state, feeds those steps and then the file's own, and reproduces every decision of the
file's events without the earlier files.

The trigger processor sends the state with every ``daq.trigger_state_every_steps``-th step
(and the first), not at rotation: rotation by bytes is known only when the writer's file is
full, and the trigger processor knows nothing of files. A step is one slice (``daq.slice_ticks``
= 524 us) or more, the state about 100 int64 words plus three per record still buffered in an
open window, during a spill about as large as a step's primitives: with N = 1 a file stores
no step it does not need but the ``TRIGIN`` bytes double; with N (4 in poker.toml) a file
stores up to N - 1 steps more (from the last state to the deciding step), for 1/N of the sending.
"""

from __future__ import annotations

import collections

import numpy as np

MAX_STEPS = 1 << 16
"""Steps kept at most; beyond it the oldest are shed (counted): a file whose first event was
decided by a shed step gets no state (replay then needs the run from file 0)."""


class StateHistory:
    """The decision steps (with their primitives and the state before each) still needed."""

    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        self.max_steps = int(max_steps)
        self._steps: collections.deque[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = collections.deque()
        self.shed = 0
        self.files_without_state = 0

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: np.ndarray, prims: np.ndarray, state: np.ndarray | None) -> None:
        """A decision step (one ``TRIGGER_STEP_DTYPE`` row), its primitives and the state before
        it (None: this step came without one, ``daq.trigger_state_every_steps``)."""
        self._steps.append((step, prims, state))
        while len(self._steps) > self.max_steps:
            self._steps.popleft()
            self.shed += 1

    def trim(self, next_event: int) -> None:
        """Forget the steps before the last one with a state at or before the step that decides
        event ``next_event`` (or a later event)."""
        keep = self._start(next_event)
        for _ in range(keep or 0):
            self._steps.popleft()

    def _start(self, event: int) -> int | None:
        """Index of the last step with a state whose accepted count before it is <= ``event``."""
        start = None
        for i, (step, _, state) in enumerate(self._steps):
            if int(step["events_before"][0]) > event:
                break
            if state is not None:
                start = i
        return start

    def for_file(
        self, first_event: int, own_first_slice: int | None
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """First slice of the state's step, the state, the steps and the primitives to store in a
        file whose first event is ``first_event``.

        ``own_first_slice``: the first slice of the steps already stored in that file (None: none
        yet; every step received so far is then in earlier files). None when the step that
        decided ``first_event`` is no longer kept (shed) or was never received with a state.
        """
        start = self._start(first_event)
        if start is None:
            self.files_without_state += 1
            return None
        chosen = list(self._steps)[start:]
        if own_first_slice is not None:
            chosen = [c for c in chosen if int(c[0]["first_slice"][0]) < own_first_slice]
        state = self._steps[start][2]
        assert state is not None
        from pokerdaq.io import TRIGGER_PRIMITIVE_DTYPE, TRIGGER_STEP_DTYPE

        steps = np.concatenate([c[0] for c in chosen]) if chosen else np.zeros(0, TRIGGER_STEP_DTYPE)
        prims = np.concatenate([c[1] for c in chosen]) if chosen else np.zeros(0, TRIGGER_PRIMITIVE_DTYPE)
        return int(self._steps[start][0]["first_slice"][0]), state, steps, prims
